"""Shared harness for ringcast's Python integration tests.

Owns: starting a server (ringcast, or the Node reference server when RINGCAST_REF=1) on a free
port, waiting for its readiness line, stopping it with a signal, collecting its output, checking
its exit status and sanitizer reports; a raw RFC 6455 client for malformed input; the unittest
entry point with a whole-file watchdog. Every started process group is killed at exit, whatever
happens to the test.

Environment:
  RINGCAST_BIN   ringcast binary (default <repo>/build/bin/ringcast)
  RINGCAST_REF=1 run against tests/integration/ref/echo-server.mjs instead (sanity check)
  RINGCAST_ASAN=1 the binary is an ASan build: longer timeouts, sanitizer reports fail the test
"""

import atexit
import base64
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REF = os.environ.get("RINGCAST_REF") == "1"
ASAN = os.environ.get("RINGCAST_ASAN") == "1"
BIN = os.environ.get("RINGCAST_BIN") or os.path.join(REPO, "build", "bin", "ringcast")
REF_SERVER = os.path.join(HERE, "ref", "echo-server.mjs")
NODE = os.environ.get("NODE", "node")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


def scale(seconds):
    """A timeout in seconds, stretched for sanitizer builds."""
    return seconds * (4 if ASAN else 1)


def skip_on_ref(reason):
    """Skips a case that the reference server is known not to reproduce (reason says why)."""
    return unittest.skipIf(REF, "reference server differs: " + reason)


def free_port():
    """A TCP port that nothing listens on right now (bound without SO_REUSEPORT to prove it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_live = []  # Servers whose process group may still be running.
_logs = []  # Every server's output file, removed at exit (RINGCAST_KEEP_LOGS=1 keeps them).


def _kill_all():
    for srv in list(_live):
        srv.kill()
    if os.environ.get("RINGCAST_KEEP_LOGS") != "1":
        for path in _logs:
            try:
                os.unlink(path)
            except OSError:
                pass


atexit.register(_kill_all)


def kill_group(proc):
    """SIGKILL to a running process's group (started with start_new_session), then reaps it."""
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


class Server:
    """One server process on a free port, or on port (a restart where another one ran).
    opts become --key=value flags."""

    def __init__(self, shards=2, port=None, **opts):
        self.shards = shards
        self.opts = opts
        self.fixed_port = port
        self.port = None
        self.proc = None
        self.log_path = None
        self.returncode = None

    def argv(self):
        args = ["--port", str(self.port), "--address", "127.0.0.1", "--shards", str(self.shards)]
        opts = dict(self.opts)
        if not REF:
            # The dashboard's stats feed publishes on its own clock; tests that count
            # publishes exactly must not see it unless they ask for it.
            opts.setdefault("stats_interval_ms", 0)
        args += ["--%s=%s" % (k, v) for k, v in opts.items()]
        if REF:
            return [NODE, REF_SERVER] + args
        return [BIN] + args

    def start(self):
        if not REF and not os.access(BIN, os.X_OK):
            raise AssertionError("ringcast binary not found or not executable: %s "
                                 "(set RINGCAST_BIN or build it)" % BIN)
        deadline = time.monotonic() + scale(10)
        for attempt in range(3):
            self.port = self.fixed_port or free_port()
            fd, self.log_path = tempfile.mkstemp(prefix="ringcast-it-", suffix=".log")
            _logs.append(self.log_path)
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=fd,
                                         stderr=fd, start_new_session=True, cwd=REPO)
            os.close(fd)
            _live.append(self)
            while time.monotonic() < deadline:
                if "ready on 127.0.0.1:%d" % self.port in self.log():
                    return self
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
            log = self.log()
            self.kill()
            if "in use" in log.lower() and attempt < 2 and not self.fixed_port:
                continue  # lost a race for the port: try another one
            raise AssertionError("server did not become ready (exit %s); output:\n%s"
                                 % (self.proc.returncode, tail(log)))
        raise AssertionError("server could not bind a free port")

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit status or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._forget()
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signals the server, waits for it and returns its exit status (kills it on timeout)."""
        if self.proc.poll() is None:
            self.send_signal(sig)
        rc = self.wait(timeout if timeout is not None else scale(15))
        if rc is None:
            self.kill()
            raise AssertionError("server did not exit within the timeout after %s; output:\n%s"
                                 % (signal.Signals(sig).name, tail(self.log())))
        return rc

    def kill(self):
        kill_group(self.proc)
        self._forget()

    def _forget(self):
        # The process group may hold helpers even after the leader exits.
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self in _live:
            _live.remove(self)

    def sanitizer_report(self):
        log = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                return log[log.index(marker) - 200 if log.index(marker) > 200 else 0:][:6000]
        return None

    def check_exit(self, rc, expect=0):
        """Asserts the exit status and the absence of sanitizer reports."""
        report = self.sanitizer_report()
        if report:
            raise AssertionError("sanitizer report in server output:\n" + report)
        if rc != expect:
            raise AssertionError("server exit status %r, expected %r; output:\n%s"
                                 % (rc, expect, tail(self.log())))

    def stop_and_check(self):
        rc = self.stop()
        self.check_exit(rc)
        self.cleanup()

    def cleanup(self):
        if os.environ.get("RINGCAST_KEEP_LOGS") == "1":
            return
        if self.log_path and os.path.exists(self.log_path) and not self.alive():
            os.unlink(self.log_path)


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


def exchange(conn, method, path, body=None, headers=None):
    """One request on an http.client connection, which it closes: (response, body bytes)."""
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r, r.read()
    finally:
        conn.close()


def metric_total(port, name):
    """The sum over shards (and labels) of ringcast_<name> from GET /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=scale(5)) as r:
        text = r.read().decode()
    pat = r"^ringcast_%s(?:\{[^}]*\})? (\d+)$" % re.escape(name)
    return sum(int(v) for v in re.findall(pat, text, re.M))


class ServerTestCase(unittest.TestCase):
    """One server per test class (server_opts, shards). A case that kills the server fails, and
    the next case gets a fresh server; every server's exit status is checked at class end."""

    server_opts = {}
    shards = 2
    server = None

    @classmethod
    def setUpClass(cls):
        cls._dead = []
        cls.server = Server(cls.shards, **cls.server_opts).start()

    @classmethod
    def tearDownClass(cls):
        problems = list(cls._dead)
        if cls.server is not None:
            try:
                cls.server.stop_and_check()
            except AssertionError as e:
                problems.append(str(e))
        if problems:
            raise AssertionError("\n".join(problems))

    def setUp(self):
        if not self.server.alive():
            type(self).server = Server(self.shards, **self.server_opts).start()

    def tearDown(self):
        srv = self.server
        if not srv.alive():
            rc = srv.proc.returncode
            msg = "server died during %s (exit %s); output:\n%s" % (
                self.id(), rc, tail(srv.log()))
            type(self)._dead.append(msg)
            self.fail(msg)
        report = srv.sanitizer_report()
        if report:
            self.fail("sanitizer report during %s:\n%s" % (self.id(), report))

    @property
    def port(self):
        return self.server.port

    def url(self, path="/echo"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)


# ---------------------------------------------------------------------------------------------
# Raw RFC 6455 client: builds any frame, valid or not, and parses what the server sends.

def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def mask_bytes(payload, key):
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None, length=None):
    """A client frame. length overrides the encoded payload length (for lying headers)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        return bytes(head) + key + mask_bytes(payload, key)
    return bytes(head) + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.payload = masked, payload

    @property
    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        return "Frame(fin=%s rsv=%d op=0x%x len=%d%s)" % (
            self.fin, self.rsv, self.opcode, len(self.payload),
            " code=%s" % self.close_code if self.opcode == OP_CLOSE else "")


class ConnectionClosed(Exception):
    pass


class HttpResponse:
    def __init__(self, version, status, reason, headers, body):
        self.version, self.status, self.reason = version, status, reason
        self.headers = headers  # list of (lower-case name, value)
        self.body = body

    def header(self, name):
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None

    def __repr__(self):
        return "HTTP %d %s %r" % (self.status, self.reason, self.headers)


class RawClient:
    """A TCP client speaking raw HTTP/WebSocket bytes."""

    def __init__(self, port, host="127.0.0.1", timeout=None):
        self.timeout = timeout if timeout is not None else scale(5)
        self.sock = socket.create_connection((host, port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- bytes
    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise ConnectionClosed("connection closed by server")
        self.buf += chunk

    def _deadline(self, timeout):
        return time.monotonic() + (timeout if timeout is not None else self.timeout)

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out waiting for %d bytes" % n)
            self._fill(left)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    # -- HTTP
    def request(self, method="GET", path="/echo", version="HTTP/1.1", headers=(), body=b""):
        lines = ["%s %s %s" % (method, path, version)] + ["%s: %s" % h for h in headers]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def read_response(self, timeout=None):
        deadline = self._deadline(timeout)
        while b"\r\n\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out waiting for an HTTP response")
            self._fill(left)
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        status_line, *header_lines = head.split("\r\n")
        version, status, *reason = status_line.split(" ", 2)
        headers = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        resp = HttpResponse(version, int(status), reason[0] if reason else "", headers, b"")
        length = resp.header("content-length")
        if length is not None and resp.status != 101:
            resp.body = self._read_exact(int(length), deadline)
        return resp

    def handshake(self, path="/echo", key=None, headers=(), expect=101):
        """Sends an upgrade request; asserts the expected status (and, for 101, the accept key)."""
        key = key or new_key()
        base = [("Host", "127.0.0.1"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
        names = {h[0].lower() for h in headers}
        self.request("GET", path, headers=[h for h in base if h[0].lower() not in names]
                     + list(headers))
        resp = self.read_response()
        if expect is not None and resp.status != expect:
            raise AssertionError("expected HTTP %d, got %r" % (expect, resp))
        if resp.status == 101 and resp.header("sec-websocket-accept") != accept_key(key):
            raise AssertionError("bad Sec-WebSocket-Accept in %r" % resp)
        return resp

    # -- frames
    def send_frame(self, opcode, payload=b"", **kw):
        self.send(encode_frame(opcode, payload, **kw))

    def send_close(self, code=None, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def recv_frame(self, timeout=None):
        """The next server frame. Raises ConnectionClosed on EOF, socket.timeout on timeout."""
        deadline = self._deadline(timeout)
        b0, b1 = self._read_exact(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8, deadline))[0]
        masked = bool(b1 & 0x80)
        key = self._read_exact(4, deadline) if masked else None
        payload = self._read_exact(n, deadline)
        if masked:
            payload = mask_bytes(payload, key)
        frame = Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload)
        if masked:
            raise AssertionError("server sent a masked frame: %r" % frame)
        return frame

    def recv_message(self, timeout=None, pings=None):
        """Reassembles the next data message; answers nothing. Control frames are collected into
        pings (if given) or rejected. Returns (opcode, payload)."""
        deadline = self._deadline(timeout)
        opcode, parts = None, []
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if f.opcode in (OP_PING, OP_PONG) and pings is not None:
                pings.append(f)
                continue
            if f.opcode == OP_CLOSE:
                raise AssertionError("unexpected close frame %r reason=%r" % (f, f.close_reason))
            if f.opcode >= 0x8:
                raise AssertionError("unexpected control frame %r" % f)
            if opcode is None:
                if f.opcode == OP_CONT:
                    raise AssertionError("server sent a continuation without a start")
                opcode = f.opcode
            elif f.opcode != OP_CONT:
                raise AssertionError("server started a new message mid-message: %r" % f)
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def expect_close(self, code, timeout=None, reply=True):
        """Reads frames until a close; asserts its code (None = empty payload accepted), then
        (optionally) replies and asserts the server closes TCP. Returns the close frame."""
        deadline = self._deadline(timeout)
        seen = []
        while True:
            try:
                f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            except ConnectionClosed:
                raise AssertionError("TCP closed without a close frame (expected %s); frames "
                                     "seen: %r" % (code, seen))
            except socket.timeout:
                raise AssertionError("no close frame within the timeout (expected %s); frames "
                                     "seen: %r" % (code, seen))
            if f.opcode == OP_CLOSE:
                break
            seen.append(f)
        codes = code if isinstance(code, (set, frozenset, tuple, list)) else {code}
        if f.close_code not in codes:
            raise AssertionError("close code %s (reason %r), expected %s; frames before: %r"
                                 % (f.close_code, f.close_reason, code, seen))
        if not f.fin or len(f.payload) > 125 or len(f.payload) == 1:
            raise AssertionError("malformed server close frame %r" % f)
        try:
            f.close_reason.decode("utf-8")
        except UnicodeDecodeError:
            raise AssertionError("server close reason is not UTF-8: %r" % f.close_reason)
        if reply:
            try:
                self.send_close(f.close_code if f.close_code is not None else None)
            except OSError:
                pass  # the server may already have closed after failing the connection
            self.expect_eof()
        return f

    def expect_eof(self, timeout=None):
        """Asserts the server closes TCP within the timeout (extra data frames are discarded)."""
        deadline = self._deadline(timeout if timeout is not None else scale(5))
        self.buf.clear()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("server did not close the TCP connection in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return
            except socket.timeout:
                continue
            if not chunk:
                self.eof = True
                return

    @staticmethod
    def upgraded(port, path="/echo", **kw):
        """A client that completed the opening handshake on path."""
        c = RawClient(port)
        try:
            c.handshake(path, **kw)
        except BaseException:
            c.close()
            raise
        return c


def http_get(port, path, headers=(), method="GET"):
    """A plain HTTP request with http.client; returns (status, headers, body)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scale(5))
    try:
        conn.request(method, path, headers=dict(headers))
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


def thread_runtimes(pid):
    """{tid: ns on CPU} from /proc/<pid>/task/*/schedstat (empty if unavailable)."""
    out = {}
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    out[int(tid)] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    return out


# ---------------------------------------------------------------------------------------------
# redis-server for the Redis engine's tests: our own processes on free ports, never a service.

class RedisServer:
    """redis-server on a free port (or port, to restart where one ran), without persistence:
    a kill -9 loses everything, as an unlucky production Redis would."""

    def __init__(self, port=None, extra=()):
        self.port = port or free_port()
        self.extra = list(extra)  # more redis-server options (later ones win)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--enable-debug-command", "local"]
            + self.extra,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        _live.append(self)
        deadline = time.monotonic() + scale(10)
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise AssertionError("redis-server did not answer on port %d" % self.port)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL, as a crash: no shutdown, no save."""
        kill_group(self.proc)
        if self in _live:
            _live.remove(self)

    def command(self, *args):
        """One command over a fresh connection; the raw RESP reply."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=scale(5)) as c:
            c.sendall(out)
            return c.recv(65536)


# ---------------------------------------------------------------------------------------------

def _watchdog(signum, frame):
    sys.stderr.write("WATCHDOG: test file exceeded its time budget; stack:\n")
    traceback.print_stack(frame)
    _kill_all()
    sys.stderr.flush()
    os._exit(3)


def _terminated(signum, frame):
    _kill_all()
    os._exit(128 + signum)


def main(budget_s=55):
    """Runs the calling module's unittest cases verbosely; exits non-zero on any failure."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminated)  # e.g. the runner's timeout: leave no server behind
    signal.signal(signal.SIGALRM, _watchdog)
    signal.alarm(int(budget_s * (3 if ASAN else 1)))
    target = "reference server (RINGCAST_REF=1)" if REF else BIN
    print("# server under test: %s%s" % (target, " [ASan]" if ASAN else ""), flush=True)
    start = time.monotonic()
    prog = unittest.main(module="__main__", verbosity=2, exit=False)
    signal.alarm(0)
    _kill_all()
    r = prog.result
    print("# %s: %d run, %d failed, %d errors, %d skipped in %.1fs" % (
        os.path.basename(sys.argv[0]), r.testsRun, len(r.failures), len(r.errors),
        len(r.skipped), time.monotonic() - start), flush=True)
    sys.exit(0 if r.wasSuccessful() else 1)
