"""TLS termination (issue 11): wss:// and https:// on tls_port with a test CA made here.

Python websockets over wss (echo, pub/sub with POST /publish over https), /metrics over https,
openssl s_client (TLS 1.0/1.1 and weak suites refused, ALPN answered, renegotiation refused),
session resumption with a ticket, SNI choosing a certificate, SIGHUP swapping the certificate
while connections stay open, and bad input (garbage, a half handshake, an oversized record, an
alert mid-handshake, a forged record and close_notify mid-message): each closes only that
connection and is counted by reason in ringcast_tls_failures_total.
"""

import asyncio
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tls_certs  # noqa: E402
from harness import scale  # noqa: E402

import websockets  # noqa: E402

CERTS_DIR = tempfile.mkdtemp(prefix="ringcast-tls-")
CERTS = tls_certs.make(CERTS_DIR)
SERVER_CERT = os.path.join(CERTS_DIR, "server.pem")
SERVER_KEY = os.path.join(CERTS_DIR, "server.key")
shutil.copy(CERTS["localhost"][0], SERVER_CERT)
shutil.copy(CERTS["localhost"][1], SERVER_KEY)
atexit.register(shutil.rmtree, CERTS_DIR, True)


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, scale(timeout)))


def client_ctx():
    ctx = ssl.create_default_context(cafile=CERTS["ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def s_client(port, *args, stdin=b""):
    """openssl s_client against the TLS port; returns (exit status, stdout+stderr)."""
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-CAfile", CERTS["ca"], "-servername", "localhost"] + list(args),
                       input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=scale(20))
    return p.returncode, p.stdout.decode(errors="replace")


class TlsTest(harness.ServerTestCase):
    tls_port = harness.free_port()
    server_opts = {"tls_port": tls_port, "tls_cert_file": SERVER_CERT,
                   "tls_key_file": SERVER_KEY,
                   "tls_sni_certs": "%s:%s" % CERTS["other"]}

    def setUp(self):
        super().setUp()
        # A restarted server (after a failed case) gets the class's TLS port again.
        self.tport = int(self.server.opts["tls_port"])

    # -- helpers
    def https(self, method, path, body=None, headers=None, ctx=None):
        conn = http.client.HTTPSConnection("localhost", self.tport, timeout=scale(5),
                                           context=ctx or client_ctx())
        r, data = harness.exchange(conn, method, path, body, headers)
        return r.status, data

    def metric(self, name, **labels):
        """The sum over shards of metric name with labels, read over https."""
        st, body = self.https("GET", "/metrics")
        self.assertEqual(st, 200)
        total = 0
        for line in body.decode().splitlines():
            if not line.startswith((name + "{", name + " ")):
                continue
            if all('%s="%s"' % kv in line for kv in labels.items()):
                total += int(line.rsplit(" ", 1)[1])
        return total

    def wait_metric(self, name, at_least, **labels):
        deadline = time.monotonic() + scale(5)
        while time.monotonic() < deadline:
            v = self.metric(name, **labels)
            if v >= at_least:
                return v
            time.sleep(0.05)
        self.fail("%s%r stayed below %d" % (name, labels, at_least))

    def connect(self, path="/echo", **kw):
        opts = dict(max_size=None, compression=None, ping_interval=None, ssl=client_ctx(),
                    open_timeout=scale(10), close_timeout=scale(5))
        opts.update(kw)
        return websockets.connect("wss://localhost:%d%s" % (self.tport, path), **opts)

    def tls_socket(self, server_hostname="localhost", session=None, ctx=None):
        raw = socket.create_connection(("127.0.0.1", self.tport), timeout=scale(5))
        return (ctx or client_ctx()).wrap_socket(raw, server_hostname=server_hostname,
                                                 session=session)

    def assert_still_serving(self):
        st, body = self.https("GET", "/health")
        self.assertEqual((st, body), (200, b'{"status":"ok"}\n'))

    # -- behaviour
    def test_wss_echo(self):
        """Text and binary messages (1 byte to 1 MiB, spanning many records) echo over wss."""
        async def go():
            async with self.connect() as ws:
                for n in (1, 125, 16383, 16384, 70000, 1 << 20):
                    msg = os.urandom(n)
                    await ws.send(msg)
                    self.assertEqual(await ws.recv(), msg)
                await ws.send("héllo")
                self.assertEqual(await ws.recv(), "héllo")
                await ws.close()
                self.assertEqual(ws.close_code, 1000)
        run(go())

    def test_wss_echo_deflate(self):
        """permessage-deflate works over wss as over ws."""
        async def go():
            async with self.connect(compression="deflate") as ws:
                msg = "compressible " * 500
                await ws.send(msg)
                self.assertEqual(await ws.recv(), msg)
        run(go())

    def test_pubsub_over_wss_and_https_publish(self):
        """A wss subscriber gets what POST /publish over https publishes, as on plain ports."""
        async def go():
            async with self.connect("/ws") as ws:
                await ws.send(json.dumps({"op": "sub", "topic": "tls-news"}))
                ack = json.loads(await ws.recv())
                self.assertEqual((ack["op"], ack["of"]), ("ack", "sub"))
                loop = asyncio.get_running_loop()
                st, body = await loop.run_in_executor(None, lambda: self.https(
                    "POST", "/publish", json.dumps({"topic": "tls-news", "data": {"n": 1}}),
                    {"Content-Type": "application/json"}))
                self.assertEqual(st, 200, body)
                msg = json.loads(await ws.recv())
                self.assertEqual((msg["op"], msg["topic"], msg["data"]),
                                 ("msg", "tls-news", {"n": 1}))
        run(go())

    def test_plain_port_unchanged(self):
        """The plain port still speaks plain HTTP beside the TLS one."""
        st, _, body = harness.http_get(self.port, "/health")
        self.assertEqual((st, body), (200, b'{"status":"ok"}\n'))

    def test_https_metrics_and_keepalive(self):
        """/metrics over https lists the TLS families; two requests share one connection."""
        conn = http.client.HTTPSConnection("localhost", self.tport, timeout=scale(5),
                                           context=client_ctx())
        try:
            for _ in range(2):
                conn.request("GET", "/metrics")
                r = conn.getresponse()
                body = r.read().decode()
                self.assertEqual(r.status, 200)
                self.assertIn("ringcast_tls_handshakes_total", body)
                self.assertIn('ringcast_tls_failures_total{shard="0",reason="garbage"}', body)
                self.assertIn('ringcast_memory_bytes{category="tls"}', body)
        finally:
            conn.close()

    def test_alpn_and_versions(self):
        """ALPN answers http/1.1; TLS 1.2 and 1.3 are served."""
        for version in ("-tls1_2", "-tls1_3"):
            rc, out = s_client(self.tport, version, "-alpn", "http/1.1")
            self.assertEqual(rc, 0, out)
            self.assertIn("ALPN protocol: http/1.1", out)
            self.assertIn("Verify return code: 0 (ok)", out)

    def test_old_versions_refused(self):
        """TLS 1.0 and 1.1 are refused (counted as refused)."""
        before = self.metric("ringcast_tls_failures_total", reason="refused")
        for version in ("-tls1", "-tls1_1"):
            rc, out = s_client(self.tport, version, "-cipher", "DEFAULT@SECLEVEL=0")
            self.assertNotEqual(rc, 0, out)
            self.assertNotIn("Cipher is ECDHE", out)
        self.wait_metric("ringcast_tls_failures_total", before + 2, reason="refused")
        self.assert_still_serving()

    def test_weak_suites_refused(self):
        """CBC, RSA key exchange and 3DES suites find no match in TLS 1.2."""
        for cipher in ("AES128-SHA", "ECDHE-ECDSA-AES128-SHA", "DES-CBC3-SHA",
                       "AES256-GCM-SHA384"):
            rc, out = s_client(self.tport, "-tls1_2", "-cipher", cipher + "@SECLEVEL=0")
            self.assertNotEqual(rc, 0, cipher + ": " + out)
        self.assert_still_serving()

    def test_ticket_resumption(self):
        """A second connection resumes with the ticket of the first (TLS 1.3)."""
        before = self.metric("ringcast_tls_resumed_total")
        ctx = client_ctx()
        s = self.tls_socket(ctx=ctx)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertIn(b"200 OK", s.recv(4096))
        time.sleep(0.05)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.recv(4096)  # the ticket arrived before this answer
        session = s.session
        s.close()
        self.assertTrue(session.has_ticket)
        s2 = self.tls_socket(session=session, ctx=ctx)
        try:
            self.assertTrue(s2.session_reused)
            s2.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            self.assertIn(b"200 OK", s2.recv(4096))
        finally:
            s2.close()
        self.wait_metric("ringcast_tls_resumed_total", before + 1)

    def test_sni_chooses_certificate(self):
        """SNI other.test gets the tls_sni_certs certificate, anything else the default."""
        s = self.tls_socket("other.test")
        self.assertEqual(dict(x[0] for x in s.getpeercert()["subject"])["commonName"],
                         "other.test")
        s.close()
        s = self.tls_socket("localhost")
        self.assertEqual(dict(x[0] for x in s.getpeercert()["subject"])["commonName"],
                         "localhost")
        s.close()

    def test_sighup_swaps_certificate(self):
        """After SIGHUP new handshakes get the new certificate; an open wss connection stays."""
        async def go():
            async with self.connect() as ws:
                await ws.send("before")
                self.assertEqual(await ws.recv(), "before")
                shutil.copy(CERTS["swap"][0], SERVER_CERT)
                shutil.copy(CERTS["swap"][1], SERVER_KEY)
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(None, self.sighup, "certificates reloaded")
                    cn = await loop.run_in_executor(None, self.peer_cn)
                    self.assertEqual(cn, "localhost-reloaded")
                finally:
                    shutil.copy(CERTS["localhost"][0], SERVER_CERT)
                    shutil.copy(CERTS["localhost"][1], SERVER_KEY)
                    await loop.run_in_executor(None, self.sighup, "certificates reloaded")
                await ws.send("after")
                self.assertEqual(await ws.recv(), "after")
        run(go())
        self.assertGreaterEqual(self.metric("ringcast_tls_reloads"), 1)

    def sighup(self, marker):
        """Sends SIGHUP and waits until the log shows marker once more than before."""
        seen = self.server.log().count(marker)
        self.server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + scale(5)
        while self.server.log().count(marker) <= seen:
            self.assertLess(time.monotonic(), deadline, "no %r logged" % marker)
            time.sleep(0.02)

    def test_sighup_with_a_broken_file_keeps_the_certificate(self):
        """A certificate file that does not parse at SIGHUP is logged and counted; the old
        certificate keeps serving."""
        before = self.metric("ringcast_tls_reload_failures")
        with open(SERVER_CERT, "rb") as f:
            good = f.read()
        try:
            with open(SERVER_CERT, "wb") as f:
                f.write(b"-----BEGIN CERTIFICATE-----\nnot base64\n")
            self.sighup("certificates not reloaded")
        finally:
            with open(SERVER_CERT, "wb") as f:
                f.write(good)
        self.assertEqual(self.metric("ringcast_tls_reload_failures"), before + 1)
        self.assertEqual(self.peer_cn(), "localhost")

    def peer_cn(self):
        s = self.tls_socket()
        try:
            return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
        finally:
            s.close()

    def close_after(self, frame):
        """Upgrades over TLS, sends frame and reads until the end of the TLS stream, which
        must be a close_notify (a truncation raises SSLEOFError); returns what came after
        the 101."""
        ctx = client_ctx()
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # a truncation raises SSLEOFError
        s = self.tls_socket(ctx=ctx)
        try:
            s.sendall(self.ws_upgrade())
            got = b""
            while b"\r\n\r\n" not in got:
                got += s.recv(4096)
            s.sendall(frame)
            got = got[got.index(b"\r\n\r\n") + 4:]
            while True:
                chunk = s.recv(4096)  # ssl.SSLEOFError here would mean no close_notify
                if not chunk:
                    return got
                got += chunk
        finally:
            s.close()

    def test_close_notify_before_half_close(self):
        """After a protocol error the server's close frame is followed by close_notify: the
        client reads a clean end of the TLS stream, not a truncation."""
        got = self.close_after(b"\x81\x02hi")  # unmasked: 1002
        self.assertEqual((got[0], got[2:4]), (0x88, b"\x03\xea"))  # close, 1002

    def test_close_notify_after_normal_close(self):
        """A client's close (1000) is echoed, then close_notify ends the TLS stream before
        TCP closes."""
        got = self.close_after(harness.encode_frame(0x8, b"\x03\xe8"))
        self.assertEqual(got, b"\x88\x02\x03\xe8")

    # -- bad input: each closes only its connection, counted by reason
    def raw_exchange(self, data, close=False):
        """Sends data on a raw TCP connection to the TLS port; returns what came back until EOF
        (or b'' after close)."""
        with socket.create_connection(("127.0.0.1", self.tport), timeout=scale(5)) as s:
            s.sendall(data)
            if close:
                return b""
            got = b""
            while True:
                try:
                    chunk = s.recv(4096)
                except (ConnectionResetError, socket.timeout):
                    break
                if not chunk:
                    break
                got += chunk
            return got

    def test_garbage_instead_of_client_hello(self):
        """Plain HTTP on the TLS port is garbage: closed, counted, others unaffected."""
        before = self.metric("ringcast_tls_failures_total", reason="garbage")
        self.raw_exchange(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.raw_exchange(os.urandom(64))
        self.wait_metric("ringcast_tls_failures_total", before + 2, reason="garbage")
        self.assert_still_serving()

    def test_half_handshake(self):
        """A client that sends half a ClientHello and leaves is counted incomplete."""
        before = self.metric("ringcast_tls_failures_total", reason="incomplete")
        hello = self.client_hello()
        self.raw_exchange(hello[: len(hello) // 2], close=True)
        self.wait_metric("ringcast_tls_failures_total", before + 1, reason="incomplete")
        self.assert_still_serving()

    def test_oversized_record(self):
        """A record header announcing more than TLS allows is refused at once."""
        before = self.metric("ringcast_tls_failures_total", reason="oversized")
        self.raw_exchange(b"\x16\x03\x01\xff\xff" + b"\x00" * 64)
        self.wait_metric("ringcast_tls_failures_total", before + 1, reason="oversized")
        self.assert_still_serving()

    def test_alert_mid_handshake(self):
        """A fatal alert after a TLS 1.2 ClientHello (still in plaintext then) ends the
        handshake, counted as alert."""
        before = self.metric("ringcast_tls_failures_total", reason="alert")
        hello = self.client_hello(ssl.TLSVersion.TLSv1_2)
        self.raw_exchange(hello + b"\x15\x03\x03\x00\x02\x02\x28")
        self.wait_metric("ringcast_tls_failures_total", before + 1, reason="alert")
        self.assert_still_serving()

    def test_renegotiation_refused(self):
        """A TLS 1.2 client asking to renegotiate is refused and closed."""
        before = self.metric("ringcast_tls_failures_total", reason="renegotiation")
        s_client(self.tport, "-tls1_2", stdin=b"R\n")
        self.wait_metric("ringcast_tls_failures_total", before + 1, reason="renegotiation")
        self.assert_still_serving()

    def test_forged_record_mid_message(self):
        """A record that fails authentication in the middle of a WebSocket message."""
        before = self.metric("ringcast_tls_failures_total", reason="bad_record")
        sock, obj, out = self.mid_message()
        try:
            # A record whose tag is wrong.
            sock.sendall(out.read() + b"\x17\x03\x03\x00\x20" + os.urandom(32))
            self.assertEqual(self.drain(sock), True)
        finally:
            sock.close()
        self.wait_metric("ringcast_tls_failures_total", before + 1, reason="bad_record")
        self.assert_still_serving()

    def test_close_notify_mid_message(self):
        """close_notify in the middle of a message ends that connection like an EOF."""
        before = self.metric("ringcast_connections_closed_total", reason="peer_gone")
        sock, obj, out = self.mid_message()
        try:
            try:
                obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            sock.sendall(out.read())
            self.assertEqual(self.drain(sock), True)
        finally:
            sock.close()
        self.wait_metric("ringcast_connections_closed_total", before + 1, reason="peer_gone")
        self.assert_still_serving()

    # -- raw TLS plumbing for the bad-input cases
    def client_hello(self, max_version=None):
        """The first flight of a real TLS client (captured through memory BIOs)."""
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        ctx = client_ctx()
        if max_version:
            ctx.maximum_version = max_version
        obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return out.read()

    def memory_bio_client(self):
        sock = socket.create_connection(("127.0.0.1", self.tport), timeout=scale(5))
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = client_ctx().wrap_bio(inc, out, server_hostname="localhost")
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(out.read())
                data = sock.recv(65536)
                self.assertTrue(data, "EOF during the handshake")
                inc.write(data)
        sock.sendall(out.read())
        return sock, obj, inc, out

    def mid_message(self):
        """A wss /echo connection (memory BIOs over a socket) with half of a masked text
        frame written to obj but not yet sent: returns (socket, SSLObject, outgoing BIO)."""
        sock, obj, inc, out = self.memory_bio_client()
        obj.write(self.ws_upgrade())
        sock.sendall(out.read())
        self.read_until(sock, obj, inc, out, b"\r\n\r\n")
        obj.write(b"\x81\x85\x00\x00\x00\x00he")
        return sock, obj, out

    @staticmethod
    def ws_upgrade():
        return (b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n")

    def read_until(self, sock, obj, inc, out, marker):
        got = b""
        while marker not in got:
            try:
                got += obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            sock.sendall(out.read())
            data = sock.recv(65536)
            self.assertTrue(data, "EOF before %r" % marker)
            inc.write(data)
        self.assertIn(b"101 Switching Protocols", got)
        return got

    @staticmethod
    def drain(sock):
        """Reads until the server closes; True if it did."""
        sock.settimeout(scale(5))
        try:
            while sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


class TlsLimitsTest(harness.ServerTestCase):
    """handshake_timeout_ms ends a stalled handshake; tls_handshakes_per_turn_max=1 makes
    concurrent handshakes wait their turn, and all of them still complete."""
    shards = 1
    server_opts = {"tls_port": harness.free_port(), "tls_cert_file": SERVER_CERT,
                   "tls_key_file": SERVER_KEY, "handshake_timeout_ms": 300,
                   "tls_handshakes_per_turn_max": 1}

    tls_socket = TlsTest.tls_socket
    metric = TlsTest.metric
    https = TlsTest.https

    def setUp(self):
        super().setUp()
        self.tport = int(self.server.opts["tls_port"])

    def test_stalled_handshake_times_out(self):
        """Half a ClientHello, then silence: closed after handshake_timeout_ms, counted."""
        before = self.metric("ringcast_tls_failures_total", reason="incomplete")
        hello = TlsTest.client_hello(self)
        with socket.create_connection(("127.0.0.1", self.tport), timeout=scale(5)) as s:
            s.sendall(hello[:20])
            self.assertEqual(TlsTest.drain(s), True)
        self.assertEqual(self.metric("ringcast_tls_failures_total", reason="incomplete"),
                         before + 1)
        self.assertGreaterEqual(
            self.metric("ringcast_connections_closed_total", reason="handshake_timeout"), 1)

    def test_handshakes_wait_their_turn(self):
        """32 clients handshake at once with one handshake step per turn: all are served,
        and the deferrals are counted."""
        before = self.metric("ringcast_tls_handshakes_total")
        hello = TlsTest.client_hello(self)
        socks = [socket.create_connection(("127.0.0.1", self.tport), timeout=scale(5))
                 for _ in range(32)]
        try:
            for s in socks:
                s.sendall(hello)  # the same ClientHello: each gets its own ServerHello
            for s in socks:
                self.assertTrue(s.recv(5).startswith(b"\x16\x03"))
        finally:
            for s in socks:
                s.close()
        self.assertGreater(self.metric("ringcast_tls_deferred_total"), 0)
        conns = [self.tls_socket() for _ in range(8)]
        for c in conns:
            c.close()
        self.assertGreaterEqual(self.metric("ringcast_tls_handshakes_total"), before + 8)


class TlsSlowConsumerTest(harness.ServerTestCase):
    """A wss subscriber that stops reading while a topic floods: the slow-consumer policies
    work on TLS connections as on plain ones (their queue holds plaintext frames; what was
    already encrypted is on its way), and the server stays up for everyone else."""
    shards = 1
    server_opts = {"tls_port": harness.free_port(), "tls_cert_file": SERVER_CERT,
                   "tls_key_file": SERVER_KEY, "slow_consumer_policy": "latest",
                   "send_queue_bytes_max": 65536}

    metric = TlsTest.metric
    https = TlsTest.https
    tls_socket = TlsTest.tls_socket

    def setUp(self):
        super().setUp()
        self.tport = int(self.server.opts["tls_port"])

    def test_latest_policy_on_a_stalled_wss_subscriber(self):
        stalled = self.tls_socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(TlsTest.ws_upgrade().replace(b"/echo", b"/ws"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += stalled.recv(4096)
        sub = json.dumps({"op": "sub", "topic": "flood"}).encode()
        stalled.sendall(bytes([0x81, 0x80 | len(sub), 0, 0, 0, 0]) + sub)
        time.sleep(0.2)  # the subscription is in place; from now on nothing is read

        async def flood():
            async with TlsTest.connect(self, "/ws") as pub:
                data = "x" * 12000
                for i in range(400):
                    await pub.send(json.dumps({"op": "pub", "topic": "flood",
                                               "data": {"i": i, "pad": data}}))
        run(flood(), timeout=60)
        deadline = time.monotonic() + scale(10)
        while self.metric("ringcast_conflations_total") == 0:
            self.assertLess(time.monotonic(), deadline, "no conflation happened")
            time.sleep(0.1)
        st, _ = self.https("GET", "/health")
        self.assertEqual(st, 200)
        stalled.close()


BENCH = os.environ.get("RINGCAST_BENCH",
                       os.path.join(harness.REPO, "build", "bin", "ringcast-bench"))


class TlsBenchTest(harness.ServerTestCase):
    """ringcast-bench over wss://: tiny echo, broadcast and churn runs complete without
    errors (the bench verifies every echo and delivery)."""
    server_opts = {"tls_port": harness.free_port(), "tls_cert_file": SERVER_CERT,
                   "tls_key_file": SERVER_KEY}

    def bench(self, *args):
        url = "wss://127.0.0.1:%d%s" % (int(self.server.opts["tls_port"]), args[1])
        p = subprocess.run([BENCH, args[0], "--url", url, "-q"] + list(args[2:]),
                           capture_output=True, text=True, timeout=scale(60))
        line = next((x for x in p.stdout.splitlines() if x.startswith("{")), None)
        self.assertIsNotNone(line, p.stderr)
        result = json.loads(line)
        self.assertTrue(result["ok"], line)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(result["url"].startswith("wss://"))
        return result

    def test_echo(self):
        r = self.bench("echo", "/echo", "-c", "20", "-d", "1", "--warmup", "0.2")
        self.assertGreater(r["counters"]["msgs_recv"], 100)

    def test_broadcast(self):
        r = self.bench("broadcast", "/ws", "-c", "50", "-d", "1", "--pub-rate", "50")
        self.assertEqual(r["counters"]["missing"], 0)

    def test_churn(self):
        r = self.bench("churn", "/echo", "-c", "5", "--churn-rate", "50", "-d", "1")
        self.assertGreater(r["counters"]["churn_cycles"], 10)


class TlsConfigTest(harness.ServerTestCase):
    """Start-up refuses a TLS port without a certificate, naming the key."""
    server_opts = {}

    def test_missing_certificate_refused(self):
        p = subprocess.run([harness.BIN, "--port=0", "--tls_port=%d" % harness.free_port()],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=scale(10))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"tls_cert_file", p.stdout)

    def test_bad_certificate_file_refused(self):
        p = subprocess.run([harness.BIN, "--port=0", "--tls_port=%d" % harness.free_port(),
                            "--tls_cert_file=" + CERTS["ca"] + ".missing",
                            "--tls_key_file=" + CERTS["localhost"][1]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=scale(10))
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(re.search(rb"ca\.pem\.missing: No such file", p.stdout), p.stdout)


if __name__ == "__main__":
    harness.main(budget_s=120)
