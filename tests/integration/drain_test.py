"""Graceful drain on SIGTERM/SIGINT: stop accepting, close 1001 to every connection, wait for the
replies up to drain_timeout_ms, exit 0 (and, under ASan, with no leak report).

Each case starts its own server (2 shards) and stops it with the signal under test.
"""

import asyncio
import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import OP_BINARY, OP_CLOSE, OP_TEXT, RawClient, Server, scale  # noqa: E402

import websockets  # noqa: E402


def ws_connect(port):
    return websockets.connect("ws://127.0.0.1:%d/echo" % port, ping_interval=None,
                              compression=None, open_timeout=scale(10), close_timeout=scale(10))


def assert_not_accepted(port, seconds=1.5):
    """Asserts a new connection gets no 101: refused, reset, closed, non-101, or no answer."""
    try:
        c = RawClient(port, timeout=seconds)
    except (ConnectionRefusedError, ConnectionResetError):
        return "refused"
    with c:
        try:
            r = c.handshake(expect=None)
        except (harness.ConnectionClosed, ConnectionResetError, BrokenPipeError):
            return "closed"
        except socket.timeout:
            return "no answer"
        if r.status == 101:
            raise AssertionError("a new connection was upgraded during/after drain")
        return "HTTP %d" % r.status


class DrainTest(unittest.TestCase):
    def setUp(self):
        self.srv = None

    def tearDown(self):
        if self.srv is not None:
            self.srv.kill()  # no-op when the case already stopped it

    def start(self, **opts):
        self.srv = Server(2, **opts).start()
        return self.srv

    def finish(self, srv, started, limit):
        """Waits for exit up to limit seconds after started; asserts exit 0 and no reports."""
        rc = srv.wait(max(0.1, limit - (time.monotonic() - started)))
        if rc is None:
            srv.kill()
            self.fail("server still running %.1fs after the signal; output:\n%s"
                      % (limit, harness.tail(srv.log())))
        srv.check_exit(rc, 0)
        return time.monotonic() - started

    def drain_websockets_clients(self, sig, count):
        srv = self.start(drain_timeout_ms=int(scale(8000)))

        async def go():
            clients = [await ws_connect(srv.port) for _ in range(count)]
            for i, ws in enumerate(clients):
                await ws.send("hello %d" % i)
                self.assertEqual(await ws.recv(), "hello %d" % i)
            started = time.monotonic()
            srv.send_signal(sig)
            await asyncio.wait_for(asyncio.gather(*(ws.wait_closed() for ws in clients)),
                                   scale(6))
            codes = sorted({ws.close_code for ws in clients})
            self.assertEqual(codes, [1001], "close codes seen by clients")
            return started

        started = asyncio.run(asyncio.wait_for(go(), scale(30)))
        # Every client answered the close: the server must not sit out the 8s deadline.
        self.finish(srv, started, scale(6))
        self.assertEqual(assert_not_accepted(srv.port), "refused")
        srv.cleanup()

    def test_sigterm_closes_all_with_1001_and_exits_0(self):
        """SIGTERM: 40 websockets clients (both shards) see 1001, server exits 0 promptly."""
        self.drain_websockets_clients(signal.SIGTERM, 40)

    def test_sigint_drains_too(self):
        """SIGINT drains like SIGTERM: clients see 1001, exit 0."""
        self.drain_websockets_clients(signal.SIGINT, 5)

    def test_sigterm_without_connections_exits_0(self):
        """SIGTERM with no connection exits 0 promptly."""
        srv = self.start()
        started = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        self.finish(srv, started, scale(5))
        srv.cleanup()

    def test_silent_client_waits_for_drain_deadline(self):
        """A client that never answers the 1001 holds the drain until drain_timeout_ms (1.5s),
        then the server exits 0 and the client sees TCP close."""
        srv = self.start(drain_timeout_ms=1500, close_timeout_ms=30000)
        with RawClient.upgraded(srv.port) as c:
            started = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            f = c.recv_frame(timeout=scale(5))
            self.assertEqual((f.opcode, f.close_code), (OP_CLOSE, 1001), f)
            elapsed = self.finish(srv, started, 1.5 + scale(4))
            self.assertGreaterEqual(elapsed, 1.2, "exited before the drain deadline")
            c.expect_eof(timeout=scale(2))
        srv.cleanup()

    def test_new_connections_refused_while_draining(self):
        """While a silent client holds the drain, a new connection is not upgraded."""
        srv = self.start(drain_timeout_ms=int(scale(4000)), close_timeout_ms=30000)
        with RawClient.upgraded(srv.port) as c:
            started = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            f = c.recv_frame(timeout=scale(5))
            self.assertEqual((f.opcode, f.close_code), (OP_CLOSE, 1001), f)
            self.assertTrue(srv.alive(), "server exited although a client had not replied")
            outcome = assert_not_accepted(srv.port)
            print("(new connection during drain: %s) " % outcome, end="", flush=True)
            c.send_close(1001)
            c.expect_eof(timeout=scale(5))
        self.finish(srv, started, scale(4) + scale(4))
        srv.cleanup()

    def test_drain_mid_message_and_mid_handshake(self):
        """Connections mid-message, mid-handshake and not yet speaking are all ended; the
        upgraded ones with 1001; exit 0."""
        srv = self.start(drain_timeout_ms=2000, handshake_timeout_ms=60000)
        mid_msg = RawClient.upgraded(srv.port)
        mid_msg.send_frame(OP_TEXT, b"half a ", fin=False)
        binary = RawClient.upgraded(srv.port)
        binary.send_frame(OP_BINARY, b"\x00" * 100)
        self.assertEqual(binary.recv_message(), (OP_BINARY, b"\x00" * 100))
        silent_tcp = RawClient(srv.port)
        half_request = RawClient(srv.port)
        half_request.send(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.2)
        try:
            started = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            mid_msg.expect_close(1001)
            binary.expect_close(1001)
            for c in (silent_tcp, half_request):
                c.expect_eof(timeout=2 + scale(4))
            self.finish(srv, started, 2 + scale(4))
        finally:
            for c in (mid_msg, binary, silent_tcp, half_request):
                c.close()
        srv.cleanup()


if __name__ == "__main__":
    harness.main()
