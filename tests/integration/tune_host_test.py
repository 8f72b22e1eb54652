"""tools/tune-host.sh and the gateway's start-up host check (src/app/hostcheck.c).

Never changes the host. --check reads only. --apply runs against fake /proc/sys trees made
here (--proc-sys, --etc), and against the real kernel only inside a network namespace made
for the test (`unshare -n`, --netns-only: the net.* keys that are per namespace); the host's
values are snapshotted before and compared after. fs.* and vm.* are global, so on the real
kernel they are only ever read.

hostcheck.c keeps its own copy of the recommendation table (the binary cannot read the source
tree); this test compiles it with a small driver and fails if the two tables, or the misses
they report for the same values, differ.

Run: /usr/bin/python3 tests/integration/tune_host_test.py
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "tune-host.sh")
PROBE_SRC = os.path.join(ROOT, "tests", "integration", "hostcheck_probe.c")
MARGIN = 65536
DEFAULT_N = 100000

NAMES = [
    "kernel.osrelease", "kernel.io_uring_disabled", "fs.file-max", "fs.nr_open",
    "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "vm.max_map_count", "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog", "net.core.netdev_max_backlog",
    "net.ipv4.ip_local_port_range", "net.ipv4.tcp_mem", "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem", "net.core.rmem_max", "net.core.wmem_max", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_slow_start_after_idle",
    "net.netfilter.nf_conntrack_max",
]
NETNS_KEYS = [
    "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_slow_start_after_idle",
]
# Every sysctl the script knows, for the before/after snapshot of the real host.
SYSCTLS = [n for n in NAMES if not n.startswith("RLIMIT_") and n != "kernel.osrelease"]
UNLIMITED = "unlimited"


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def tune(*args, **kw):
    return run([SCRIPT, *args], **kw)


def tune_json(*args):
    p = tune(*args, "--json")
    try:
        doc = json.loads(p.stdout)
    except ValueError as e:
        raise AssertionError(f"tune-host.sh {' '.join(args)} --json printed no JSON: {e}\n"
                             f"stdout: {p.stdout!r}\nstderr: {p.stderr!r}")
    return p.returncode, doc


def proc_path(root, name):
    return os.path.join(root, *name.split("."))


def snapshot_host():
    """The host's sysctls as strings (absent ones as None)."""
    values = {}
    for name in SYSCTLS:
        try:
            with open(proc_path("/proc/sys", name)) as f:
                values[name] = " ".join(f.read().split())
        except OSError:
            values[name] = None
    return values


def field_ok(direction, current, recommended):
    if recommended == UNLIMITED:
        return current == UNLIMITED
    if current == UNLIMITED:
        return direction == "ge"
    return {"ge": current >= recommended, "le": current <= recommended,
            "eq": current == recommended}[direction]


def misses_of(doc):
    return [i["name"] for i in doc["items"] if i["status"] in ("LOW", "HIGH")]


def write_fake_tree(root, values):
    for name, value in values.items():
        path = proc_path(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(value + "\n")


def read_tree(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for fn in files:
            path = os.path.join(dirpath, fn)
            with open(path) as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


# An untuned host (stock defaults of a 6.x kernel), with a few values already better than
# recommended, which --apply must keep.
FAKE_HOST = {
    "kernel.osrelease": "6.1.0-fake",
    "kernel.io_uring_disabled": "2",
    "fs.file-max": "9223372036854775807",  # better: must stay
    "fs.nr_open": "1048576",
    "vm.max_map_count": "65530",
    "net.core.somaxconn": "4096",
    "net.ipv4.tcp_max_syn_backlog": "2048",
    "net.core.netdev_max_backlog": "1000",
    "net.ipv4.ip_local_port_range": "1024\t60999",  # low end better: must stay 1024
    "net.ipv4.tcp_mem": "10000\t20000\t30000",
    "net.ipv4.tcp_rmem": "4096\t131072\t67108864",  # max better: must stay
    "net.ipv4.tcp_wmem": "4096\t16384\t4194304",
    "net.core.rmem_max": "212992",
    "net.core.wmem_max": "33554432",  # better: must stay
    "net.ipv4.tcp_fin_timeout": "60",
    "net.ipv4.tcp_tw_reuse": "0",
    "net.ipv4.tcp_slow_start_after_idle": "1",
    "net.netfilter.nf_conntrack_max": "262144",
}


class HelpAndUsage(unittest.TestCase):
    def test_help_exits_0(self):
        p = tune("--help")
        self.assertEqual(p.returncode, 0, p.stderr)
        for word in ("--check", "--apply", "--connections", "--json", "--netns-only"):
            self.assertIn(word, p.stdout)

    def test_bad_arguments_exit_2(self):
        for args in (["--connections", "0"], ["--connections", "ten"], ["--bogus"],
                     ["--connections", "1000000001"], ["--connections"]):
            with self.subTest(args=args):
                self.assertEqual(tune(*args).returncode, 2)


class CheckMode(unittest.TestCase):
    """--check on the real host: read-only."""

    def test_json_structure_and_exit_status(self):
        rc, doc = tune_json("--check")
        self.assertEqual(doc["mode"], "check")
        self.assertEqual(doc["connections"], DEFAULT_N)
        self.assertEqual([i["name"] for i in doc["items"]], NAMES)
        for item in doc["items"]:
            with self.subTest(item=item["name"]):
                self.assertIn(item["scope"], ("netns", "global", "process"))
                self.assertIn(item["kind"], ("sysctl", "rlimit", "version"))
                self.assertIn(item["status"], ("OK", "LOW", "HIGH", "SKIP"))
                self.assertTrue(item["why"])
                self.assertTrue(item["recommended"])
                self.assertTrue(1 <= len(item["fields"]) <= 3)
                if item["status"] == "SKIP":
                    self.assertIsNone(item["current"])
                    continue
                self.assertIsInstance(item["current"], str)
                statuses = []
                for f in item["fields"]:
                    self.assertIn(f["direction"], ("ge", "le", "eq"))
                    ok = field_ok(f["direction"], f["current"], f["recommended"])
                    self.assertEqual(f["status"] == "OK", ok, f)
                    statuses.append(f["status"])
                want = ("LOW" if "LOW" in statuses else "HIGH" if "HIGH" in statuses
                        else "OK")
                self.assertEqual(item["status"], want)
        misses = misses_of(doc)
        self.assertEqual(doc["misses"], len(misses))
        self.assertEqual(doc["ready"], not misses)
        self.assertEqual(rc, 0 if not misses else 1, "exit status disagrees with the items")

    def test_text_mode_agrees_with_json(self):
        rc_json, doc = tune_json("--check")
        p = tune("--check")
        self.assertEqual(p.returncode, rc_json)
        lines = {ln.split()[0]: ln for ln in p.stdout.splitlines() if ln.split()}
        for item in doc["items"]:
            self.assertIn(item["name"], lines)
            self.assertIn(f" {item['status']} ", lines[item["name"]])

    def test_recommendations_scale_with_connections(self):
        docs = {}
        for n in (1000, DEFAULT_N, 1000000):
            _, docs[n] = tune_json("--check", "--connections", str(n))
            self.assertEqual(docs[n]["connections"], n)

        def rec(doc, name):
            item = next(i for i in doc["items"] if i["name"] == name)
            return [f["recommended"] for f in item["fields"]]

        for n, doc in docs.items():
            self.assertEqual(rec(doc, "fs.nr_open"), [n + MARGIN])
            self.assertEqual(rec(doc, "fs.file-max"), [2 * n + MARGIN])
            self.assertEqual(rec(doc, "RLIMIT_NOFILE"), [n + MARGIN, n + MARGIN])
            self.assertEqual(rec(doc, "net.ipv4.tcp_mem"), [n // 2, n, 2 * n])
            self.assertEqual(rec(doc, "net.netfilter.nf_conntrack_max"), [2 * n + MARGIN])
            self.assertEqual(rec(doc, "net.core.somaxconn"), [65535])
        small, big = docs[1000], docs[1000000]
        self.assertGreater(rec(big, "fs.nr_open")[0], rec(small, "fs.nr_open")[0])
        # A larger target can only add misses, never remove them.
        self.assertLessEqual(set(misses_of(small)), set(misses_of(big)))

    def test_check_works_unprivileged(self):
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            self.skipTest("needs root to drop to nobody (the suite already runs unprivileged)")
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        p = run([*drop, SCRIPT, "--check", "--json"])
        doc = json.loads(p.stdout)
        _, root_doc = tune_json("--check")
        self.assertEqual([i["status"] for i in doc["items"]],
                         [i["status"] for i in root_doc["items"]])
        self.assertEqual(p.returncode, 0 if doc["ready"] else 1)
        before = snapshot_host()
        p = run([*drop, SCRIPT, "--apply"])
        self.assertEqual(p.returncode, 2, "--apply as non-root must refuse")
        self.assertIn("needs root", p.stderr)
        self.assertEqual(snapshot_host(), before)


class FakeTreeApply(unittest.TestCase):
    """--apply against a fake /proc/sys: every key, global ones included, with no risk."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tune-host-test-")
        self.proc = os.path.join(self.tmp, "proc", "sys")
        self.etc = os.path.join(self.tmp, "etc")
        write_fake_tree(self.proc, FAKE_HOST)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def fake(self, *args):
        return tune_json("--proc-sys", self.proc, "--etc", self.etc, *args)

    def value(self, name):
        with open(proc_path(self.proc, name)) as f:
            return f.read().split()

    def test_check_compares_field_by_field(self):
        rc, doc = self.fake("--check")
        self.assertEqual(rc, 1)
        status = {i["name"]: i["status"] for i in doc["items"]}
        self.assertEqual(status["kernel.osrelease"], "OK")  # 6.1 is the minimum
        self.assertEqual(status["kernel.io_uring_disabled"], "HIGH")
        self.assertEqual(status["fs.file-max"], "OK")  # higher than recommended is fine
        self.assertEqual(status["net.ipv4.ip_local_port_range"], "LOW")  # 60999 < 65535
        self.assertEqual(status["net.ipv4.tcp_rmem"], "HIGH")  # default 131072 > 16384
        self.assertEqual(status["net.core.wmem_max"], "OK")
        self.assertEqual(status["net.ipv4.tcp_tw_reuse"], "LOW")  # 0, wants exactly 1
        port = next(i for i in doc["items"] if i["name"] == "net.ipv4.ip_local_port_range")
        self.assertEqual([f["status"] for f in port["fields"]], ["OK", "LOW"])

    def test_apply_fixes_never_worsens_and_is_idempotent(self):
        rc, doc = self.fake("--apply")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(doc["failures"], 0)
        sysctl_items = [i for i in doc["items"] if i["kind"] == "sysctl"]
        for item in sysctl_items:
            self.assertIn(item["status"], ("OK", "SKIP"), item)
        # Better-than-recommended values are kept, not lowered to the recommendation.
        self.assertEqual(self.value("fs.file-max"), ["9223372036854775807"])
        self.assertEqual(self.value("net.ipv4.tcp_rmem"), ["4096", "16384", "67108864"])
        self.assertEqual(self.value("net.ipv4.ip_local_port_range"), ["1024", "65535"])
        self.assertEqual(self.value("net.core.wmem_max"), ["33554432"])
        # Ceilings come down, limits go up.
        self.assertEqual(self.value("net.ipv4.tcp_fin_timeout"), ["15"])
        self.assertEqual(self.value("kernel.io_uring_disabled"), ["0"])
        self.assertEqual(self.value("net.ipv4.tcp_mem"), ["50000", "100000", "200000"])
        self.assertEqual(doc["systemd"], [f"LimitNOFILE={DEFAULT_N + MARGIN}",
                                          "LimitMEMLOCK=infinity"])
        conf = os.path.join(self.etc, "sysctl.d", "90-ringcast.conf")
        limits = os.path.join(self.etc, "security", "limits.d", "ringcast.conf")
        persisted = {}
        with open(conf) as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    key, value = line.split("=", 1)
                    persisted[key.strip()] = value.split()
        self.assertEqual(persisted["-net.netfilter.nf_conntrack_max"], ["265536"])
        for name in FAKE_HOST:
            if name != "kernel.osrelease" and name != "net.netfilter.nf_conntrack_max":
                self.assertEqual(persisted[name], self.value(name), name)
        with open(limits) as f:
            text = f.read()
        self.assertIn(f"ringcast hard nofile {DEFAULT_N + MARGIN}", text)
        self.assertIn("ringcast soft memlock unlimited", text)

        tree, files = read_tree(self.proc), read_tree(self.etc)
        rc, again = self.fake("--apply")
        self.assertEqual(rc, 0)
        self.assertEqual(again["changes"], [], "a second --apply must change nothing")
        self.assertEqual({f["result"] for f in again["files"]}, {"unchanged"})
        self.assertEqual(read_tree(self.proc), tree)
        self.assertEqual(read_tree(self.etc), files)

    def test_absent_keys_are_skipped(self):
        os.remove(proc_path(self.proc, "net.netfilter.nf_conntrack_max"))
        os.remove(proc_path(self.proc, "kernel.io_uring_disabled"))
        _, doc = self.fake("--check")
        status = {i["name"]: i["status"] for i in doc["items"]}
        self.assertEqual(status["net.netfilter.nf_conntrack_max"], "SKIP")
        self.assertEqual(status["kernel.io_uring_disabled"], "SKIP")
        rc, doc = self.fake("--apply")
        self.assertEqual(rc, 0)
        self.assertFalse(os.path.exists(proc_path(self.proc, "net.netfilter.nf_conntrack_max")))


class HostcheckAgreesWithScript(unittest.TestCase):
    """src/app/hostcheck.c's table and verdicts equal tune-host.sh's."""

    @classmethod
    def setUpClass(cls):
        cc = shutil.which("gcc") or shutil.which("cc")
        if not cc:
            raise unittest.SkipTest("needs a C compiler")
        cls.tmp = tempfile.mkdtemp(prefix="hostcheck-probe-")
        cls.probe = os.path.join(cls.tmp, "hostcheck_probe")
        p = run([cc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wshadow",
                 "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wno-unused-parameter",
                 "-D_GNU_SOURCE", "-I" + os.path.join(ROOT, "src"),
                 "-I" + os.path.join(ROOT, "include"), "-o", cls.probe, PROBE_SRC,
                 os.path.join(ROOT, "src", "base", "rc_assert.c")])
        if p.returncode != 0:
            raise AssertionError("hostcheck probe does not build:\n" + p.stderr)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def probe_table(self, n):
        p = run([self.probe, "table", str(n)])
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def probe_check(self, n, proc_sys=None):
        p = run([self.probe, "check", str(n)] + ([proc_sys] if proc_sys else []))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = p.stdout.splitlines()
        self.assertTrue(lines[-1].startswith("misses="))
        logged = lines[:-1]
        self.assertEqual(int(lines[-1].split("=")[1]), len(logged))
        names = []
        for line in logged:
            # "open-file limit (RLIMIT_NOFILE) is 20000; 165536 or more is recommended ..."
            m = re.match(r"^(?:[^()]+ \((\S+)\)|(\S+)) is .+; .+ (is|are) (recommended|needed)",
                         line)
            self.assertIsNotNone(m, line)
            self.assertIn("kernel-tuning.md", line)
            names.append(m.group(1) or m.group(2))
        return names

    def test_tables_are_equal(self):
        for n in (1, 1000, DEFAULT_N, 1000000, 10000000, 1000000000):
            with self.subTest(connections=n):
                _, doc = tune_json("--check", "--connections", str(n))
                script = [{"name": i["name"],
                           "fields": [{"direction": f["direction"],
                                       "recommended": f["recommended"]}
                                      for f in i["fields"]]} for i in doc["items"]]
                self.assertEqual(self.probe_table(n), script)

    def test_same_misses_on_this_host(self):
        _, doc = tune_json("--check")
        self.assertEqual(self.probe_check(DEFAULT_N), misses_of(doc))
        self.assertEqual(self.probe_check(0), misses_of(doc), "0 must mean the default")
        _, doc = tune_json("--check", "--connections", "1000000")
        self.assertEqual(self.probe_check(1000000), misses_of(doc))

    def test_same_misses_on_fake_trees(self):
        tmp = tempfile.mkdtemp(prefix="hostcheck-fake-")
        try:
            proc, etc = os.path.join(tmp, "proc"), os.path.join(tmp, "etc")
            write_fake_tree(proc, FAKE_HOST)
            for step in ("untuned", "tuned"):
                for n in (1000, 1000000):
                    with self.subTest(step=step, connections=n):
                        _, doc = tune_json("--proc-sys", proc, "--connections", str(n))
                        self.assertEqual(self.probe_check(n, proc), misses_of(doc))
                tune("--apply", "--proc-sys", proc, "--etc", etc)
            os.remove(proc_path(proc, "fs.nr_open"))  # absent: skipped by both
            _, doc = tune_json("--proc-sys", proc)
            self.assertEqual(self.probe_check(DEFAULT_N, proc), misses_of(doc))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class NetnsApply(unittest.TestCase):
    """--apply --netns-only on the real kernel, inside a throw-away network namespace."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root for unshare -n")
        if not shutil.which("unshare"):
            self.skipTest("needs unshare(1)")
        if run(["unshare", "-n", "true"]).returncode != 0:
            self.skipTest("cannot create a network namespace here")
        self.before = snapshot_host()
        self.tmp = tempfile.mkdtemp(prefix="tune-host-netns-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(snapshot_host(), self.before, "the host's sysctls changed")

    def test_apply_in_netns(self):
        host_ns = os.readlink("/proc/self/ns/net")
        etc = os.path.join(self.tmp, "etc")
        # Everything runs in one namespace; the guard refuses to go on in the host's.
        script = (
            'set -u; [ "$(readlink /proc/self/ns/net)" != "$HOST_NS" ] || exit 99\n'
            'T="$SCRIPT --netns-only --json"\n'
            '$T --check; echo "rc=$?" >&2\n'
            '$T --apply --etc "$ETC"; echo "rc=$?" >&2\n'
            '$T --check; echo "rc=$?" >&2\n'
            '$T --apply --etc "$ETC"; echo "rc=$?" >&2\n'
        )
        env = dict(os.environ, HOST_NS=host_ns, SCRIPT=SCRIPT, ETC=etc)
        p = run(["unshare", "-n", "bash", "-c", script], env=env)
        self.assertNotEqual(p.returncode, 99, "unshare did not give a new namespace")
        docs = [json.loads(line) for line in p.stdout.splitlines()]
        rcs = [int(line[3:]) for line in p.stderr.splitlines() if line.startswith("rc=")]
        self.assertEqual(len(docs), 4, p.stdout + p.stderr)
        before, applied, after, again = docs
        for doc in docs:
            self.assertTrue(doc["netns_only"])
            self.assertEqual([i["name"] for i in doc["items"]], NETNS_KEYS)
        self.assertEqual(rcs[0], 0 if before["ready"] else 1)
        self.assertEqual(rcs[1], 0, applied)
        self.assertEqual(applied["failures"], 0)
        self.assertEqual(sorted(c["name"] for c in applied["changes"]),
                         sorted(misses_of(before)))
        self.assertTrue(all(c["result"] == "ok" for c in applied["changes"]))
        self.assertEqual(rcs[2], 0, after)
        self.assertTrue(after["ready"])
        self.assertEqual(misses_of(after), [])
        self.assertEqual(again["changes"], [])
        self.assertEqual(rcs[3], 0)
        with open(os.path.join(etc, "sysctl.d", "90-ringcast.conf")) as f:
            keys = [ln.split("=")[0].strip() for ln in f if "=" in ln and ln[0] != "#"]
        self.assertEqual(keys, NETNS_KEYS)
        self.assertFalse(os.path.exists(os.path.join(etc, "security")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
