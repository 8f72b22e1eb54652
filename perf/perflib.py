"""Shared helpers of ringcast's perf suite (perf/README.md): the servers under test and how to
start them, ringcast-bench runs, process and kernel memory samples, machine description,
result files and gnuplot plots. Python 3 standard library only (Debian's /usr/bin/python3);
plots need gnuplot (gnuplot-nox), and are skipped with a note when it is missing.
"""
import argparse
import datetime
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PERF = ROOT / "perf"

# Slab caches that hold an idle TCP socket (kernel-tuning.md, "Kernel memory per idle TCP
# connection"). TIME-WAIT (tw_sock_TCP) is left out: it belongs to closed connections.
SOCKET_SLABS = ("TCP", "request_sock_TCP", "sock_inode_cache", "dentry", "filp",
                "skbuff_head_cache", "skbuff_small_head", "lsm_inode_cache", "lsm_file_cache",
                "eventpoll_epi", "eventpoll_pwq")

PUBSUB_PATH = "/ws"  # node and gorilla serve pub/sub on any path but /echo


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_dir(args):
    return (ROOT / args.build).resolve()


def bench_path(args):
    if args.bench:
        return Path(args.bench)
    env = os.environ.get("RINGCAST_BENCH")
    return Path(env) if env else build_dir(args) / "bin" / "ringcast-bench"


def ringcast_path(args):
    env = os.environ.get("RINGCAST_BIN")
    return Path(env) if env else build_dir(args) / "bin" / "ringcast"


def build_peers(args):
    """Builds tcp-floor and the gorilla peer into BUILD/perf (quick when up to date)."""
    b = build_dir(args)
    subprocess.run(["make", "-s", "-C", str(PERF / "tcp-floor"), f"BUILD={b}"], check=True)
    if shutil.which("go"):
        subprocess.run([str(PERF / "peers" / "build-gorilla.sh"), str(b)], check=True)


class Server:
    """One server under test: its command for a port and a thread count, and its process."""

    def __init__(self, name, argv, env=None, raw=False, pubsub=True, fd_bound=False):
        self.name, self.argv, self.env = name, argv, env or {}
        self.raw, self.pubsub, self.fd_bound = raw, pubsub, fd_bound
        self.proc, self.port, self.log_path = None, None, None

    def start(self, args, threads=1, port=None, timeout=15):
        """Starts the server and waits until it accepts connections; False if it never does."""
        self.port = port or free_port()
        argv = [a.format(port=self.port, threads=threads) for a in self.argv]
        env = dict(os.environ, **{k: v.format(threads=threads) for k, v in self.env.items()})
        logs = build_dir(args) / "perf" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{self.name}-{self.port}.log"
        if args.pin and shutil.which("taskset"):
            argv = ["taskset", "-c", args.server_cpus] + argv
        with open(self.log_path, "w") as lf:
            self.proc = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT, env=env,
                                         cwd=ROOT, start_new_session=True)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        log(f"perf: {self.name} did not start: see {self.log_path}")
        self.stop()
        return False

    @property
    def pid(self):
        return self.proc.pid if self.proc else 0

    def kill(self):
        """Crash it (SIGKILL): no close frames, the kernel resets the connections."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def url(self, path="/echo"):
        if self.raw:
            return f"tcp://127.0.0.1:{self.port}"
        return f"ws://127.0.0.1:{self.port}{path}"


def servers(args):
    """The servers named by --servers (or --server-cmd), in order, that can run here."""
    b = build_dir(args)
    known = {
        "ringcast": Server("ringcast", [str(ringcast_path(args)), "--address=127.0.0.1",
                                        "--port={port}", "--shards={threads}",
                                        "--pin_shards=false"]),
        "tcp-floor": Server("tcp-floor", [str(b / "perf" / "tcp-floor"), "--port", "{port}",
                                          "--threads", "{threads}"], raw=True, pubsub=False),
        "bcast-floor": Server("bcast-floor", [str(b / "bin" / "bcast-floor"), "--port",
                                              "{port}"]),
        "node": Server("node", ["node", str(PERF / "peers" / "node-ws-echo.mjs"), "--port",
                                "{port}"], fd_bound=True),
        "gorilla": Server("gorilla", [str(b / "perf" / "gorilla-echo"), "-port", "{port}"],
                          env={"GOMAXPROCS": "{threads}"}, fd_bound=True),
    }
    if args.server_cmd:
        return [Server("custom", shlex.split(args.server_cmd), fd_bound=True)]
    out = []
    for name in args.servers.split(","):
        if name not in known:
            sys.exit(f"perf: unknown server {name} (known: {', '.join(known)})")
        exe = known[name].argv[0]
        if not (Path(exe).exists() or shutil.which(exe)):
            log(f"perf: skipping {name}: {exe} not built")
            continue
        out.append(known[name])
    return out


def bench(args, argv, timeout=None):
    """Runs ringcast-bench; returns (exit status, parsed JSON line or None, stderr)."""
    cmd = [str(bench_path(args))] + [str(a) for a in argv]
    if args.pin and shutil.which("taskset"):
        cmd = ["taskset", "-c", args.bench_cpus] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or 3600)
    line = next((l for l in p.stdout.splitlines() if l.startswith("{")), None)
    return p.returncode, json.loads(line) if line else None, p.stderr


def bench_bg(args, argv):
    cmd = [str(bench_path(args))] + [str(a) for a in argv]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_phase(proc, phase):
    """Reads a --progress bench's stderr up to "phase PHASE"; returns its open count, or -1
    when the bench ended first. Lines read are kept in proc.progress_lines."""
    proc.progress_lines = []
    for line in proc.stderr:
        proc.progress_lines.append(line)
        f = line.split()
        if len(f) >= 4 and f[1] == "phase" and f[2] == phase:
            return int(f[3].split("=")[1])
    return -1


def bench_finish(proc, timeout=3600):
    out, err = proc.communicate(timeout=timeout)
    line = next((l for l in out.splitlines() if l.startswith("{")), None)
    return proc.returncode, json.loads(line) if line else None, err


def proc_mem(pid):
    """VmRSS and RssAnon of pid, kB."""
    out = {"rss_kb": 0, "anon_kb": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                out["anon_kb"] = int(line.split()[1])
    except OSError:
        pass
    return out


def kernel_mem():
    """Socket-related kernel memory now: named slabs (bytes), Slab/SUnreclaim, sockstat."""
    out = {"slab_sockets_bytes": 0, "slabs": {}}
    try:
        for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
            f = line.split()
            if f[0] in SOCKET_SLABS:
                b = int(f[1]) * int(f[3])
                out["slabs"][f[0]] = b
                out["slab_sockets_bytes"] += b
    except (OSError, IndexError, ValueError):
        out["slabinfo_unreadable"] = True
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        if k in ("Slab", "SUnreclaim", "MemAvailable", "MemTotal"):
            out[k] = int(v.split()[0]) * 1024
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        f = line.split()
        if f[0] == "TCP:":
            d = dict(zip(f[1::2], map(int, f[2::2])))
            out["tcp_inuse"], out["tcp_tw"] = d.get("inuse", 0), d.get("tw", 0)
            out["tcp_mem_bytes"] = d.get("mem", 0) * 4096
        elif f[0] == "sockets:":
            out["sockets_used"] = int(f[2])
    return out


def wait_tcp_inuse(target, timeout, poll=0.25):
    """Waits until /proc/net/sockstat's TCP inuse reaches target; the last sample."""
    end = time.time() + timeout
    k = kernel_mem()
    while time.time() < end and k.get("tcp_inuse", 0) < target:
        time.sleep(poll)
        k = kernel_mem()
    return k


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = kernel_mem()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "kernel": platform.release(), "cpu": cpu,
        "cores": os.cpu_count(), "mem_total_gib": round(mem.get("MemTotal", 0) / 2**30, 1),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def stats(values):
    """median, MAD, min, max of a list (Seastar perf-tests style)."""
    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "mad": None, "min": None, "max": None, "n": 0}
    med = statistics.median(v)
    return {"median": med, "mad": statistics.median([abs(x - med) for x in v]),
            "min": min(v), "max": max(v), "n": len(v)}


def results_dir(args):
    d = ROOT / args.out
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_results(args, name, rows, fields, extra=None):
    """perf/results/NAME.json (machine, parameters, rows) and NAME.csv (fields of rows)."""
    d = results_dir(args)
    doc = {"experiment": name, "machine": machine(), "args": vars(args), "rows": rows}
    doc.update(extra or {})
    (d / f"{name}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    with open(d / f"{name}.csv", "w") as f:
        f.write(",".join(fields) + "\n")
        for r in rows:
            f.write(",".join("" if r.get(k) is None else str(r.get(k)) for k in fields) + "\n")
    log(f"perf: wrote {d / (name + '.json')} and .csv")
    return d


def gnuplot(args, name, script, data):
    """Renders perf/results/NAME.png; data maps file names (in a temp dir) to their text."""
    if not shutil.which("gnuplot"):
        log("perf: gnuplot missing (apt-get install gnuplot-nox): no plot")
        return None
    tmp = build_dir(args) / "perf" / "plot"
    tmp.mkdir(parents=True, exist_ok=True)
    for fname, text in data.items():
        (tmp / fname).write_text(text)
    png = results_dir(args) / f"{name}.png"
    m = machine()
    head = (f"set terminal pngcairo size 900,560 font 'sans,10' noenhanced\n"
            f"set output '{png}'\nset key inside right top box opaque\nset grid\n"
            f"set bmargin 5\nset yrange [0:*]\n"
            f"set label 99 '{m['date'][:16]}  {m['cpu'][:40]}  {m['cores']} cores  "
            f"{m['kernel']}' at screen 0.01,0.02 font ',8'\n")
    r = subprocess.run(["gnuplot"], input=head + script, text=True, cwd=tmp,
                       capture_output=True)
    if r.returncode:
        head = head.replace("pngcairo", "png")
        r = subprocess.run(["gnuplot"], input=head + script, text=True, cwd=tmp,
                           capture_output=True)
    if r.returncode:
        log(f"perf: gnuplot failed: {r.stderr.strip()[:400]}")
        return None
    log(f"perf: wrote {png}")
    return png


def common_args(description, servers_default="ringcast,tcp-floor,node,gorilla"):
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=servers_default,
                   help=f"comma-separated servers to measure [{servers_default}]")
    p.add_argument("--server-cmd", help="measure this command instead ({port} and {threads} "
                   "are replaced); it must serve ws://127.0.0.1:{port}/echo")
    p.add_argument("--build", default="build", help="build directory [build]")
    p.add_argument("--bench", help="ringcast-bench binary [$RINGCAST_BENCH or BUILD/bin]")
    p.add_argument("--out", default="perf/results", help="result directory [perf/results]")
    p.add_argument("--quick", action="store_true", help="smaller, shorter runs (smoke)")
    p.add_argument("--repeat", type=int, default=1, help="runs per point (median reported)")
    p.add_argument("--pin", action="store_true",
                   help="pin the bench and the server to separate CPUs (taskset)")
    p.add_argument("--bench-cpus", default="0", help="CPUs of the bench with --pin [0]")
    p.add_argument("--server-cpus", default="1", help="CPUs of the server with --pin [1]")
    return p


def rings_for(n, margin=1000):
    """Rings (threads/shards) needed to hold n direct descriptors: each ring's fixed-file
    table is capped at RLIMIT_NOFILE (kernel-tuning.md, io_uring specifics)."""
    per_ring = max(1000, resource.getrlimit(resource.RLIMIT_NOFILE)[1] - margin)
    return max(1, math.ceil(n / per_ring))


def measure_idle(args, srv, n, rate, hold_s=3.0, extra=()):
    """Opens n idle connections to a started server at rate/s and holds them; samples the
    server's memory and the kernel's socket memory before and while they are all held.
    Loopback: every connection is two sockets, and both ends' kernel memory is counted."""
    k0, u0 = kernel_mem(), proc_mem(srv.pid)
    argv = ["connect", "--url", srv.url(), "-c", n, "--rate", rate, "-t", rings_for(n),
            "-d", hold_s, "--server-pid", srv.pid, "--label", srv.name, "-q", "--progress",
            *extra]
    if srv.raw:
        argv.append("--raw")
    proc = bench_bg(args, argv)
    open_now = wait_phase(proc, "measure")
    held = open_now == n
    time.sleep(0.5)  # let the last handshakes' buffers be freed
    k1, u1 = kernel_mem(), proc_mem(srv.pid)
    rc, j, _ = bench_finish(proc)
    row = {"server": srv.name, "n": n, "held": held, "bench_exit": rc,
           "opened": (j or {}).get("counters", {}).get("opened"),
           "ramp_s": (j or {}).get("ramp_s"),
           "handshake_p99_us": (j or {}).get("handshake_us", {}).get("p99"),
           "stopped_by": (j or {}).get("stopped_by"),
           "rss_kb_before": u0["rss_kb"], "rss_kb_held": u1["rss_kb"],
           "user_bytes_per_conn": round((u1["rss_kb"] - u0["rss_kb"]) * 1024 / n, 1),
           "anon_bytes_per_conn": round((u1["anon_kb"] - u0["anon_kb"]) * 1024 / n, 1),
           "kernel_bytes_per_conn_both_ends":
               round((k1["slab_sockets_bytes"] - k0["slab_sockets_bytes"]) / n, 1),
           "kernel_bytes_per_socket":
               round((k1["slab_sockets_bytes"] - k0["slab_sockets_bytes"]) / (2 * n), 1),
           "slab_bytes_per_socket":
               round((k1.get("Slab", 0) - k0.get("Slab", 0)) / (2 * n), 1),
           "tcp_mem_bytes_held": k1.get("tcp_mem_bytes"),
           "slabs_delta": {s: k1["slabs"].get(s, 0) - k0["slabs"].get(s, 0)
                           for s in SOCKET_SLABS}}
    if not held:
        log(f"perf: {srv.name} n={n}: not every connection was held "
            f"(bench exit {rc}, stopped by {row['stopped_by']})")
    return row
