"""Per-connection timers with small values: handshake timeout, server pings, idle timeout and
close timeout. Raw sockets stay truly silent (Python websockets would answer pings by itself).
Bounds are loose (timers may run on a coarse wheel); a lower bound proves the timer, not
something else, closed the connection.
"""

import asyncio
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, ConnectionClosed,  # noqa: E402
                     RawClient, scale)

import websockets  # noqa: E402


def wait_closed_silently(c, limit):
    """Reads (never answers) until the server closes TCP. Returns (seconds until the server
    gave up on the connection: its close frame, or TCP close if none came first; frames seen)."""
    start = time.monotonic()
    frames = []
    gave_up = None
    while True:
        left = limit - (time.monotonic() - start)
        if left <= 0:
            raise AssertionError("connection still open after %.1fs; frames: %r"
                                 % (limit, frames))
        try:
            f = c.recv_frame(timeout=left)
        except ConnectionClosed:
            return (gave_up if gave_up is not None else time.monotonic() - start), frames
        except socket.timeout:
            continue
        frames.append(f)
        if f.opcode == OP_CLOSE and gave_up is None:
            gave_up = time.monotonic() - start


class HandshakeTimeoutTest(harness.ServerTestCase):
    server_opts = {"handshake_timeout_ms": 300, "ping_interval_ms": 0}

    def test_silent_connection_closed(self):
        """A connection that sends nothing is closed after handshake_timeout_ms (300)."""
        with RawClient(self.port) as c:
            start = time.monotonic()
            c.expect_eof(timeout=scale(3))
            self.assertGreaterEqual(time.monotonic() - start, 0.2, "closed before the timeout")

    def test_partial_request_closed(self):
        """A connection that stops mid-request is closed after the handshake timeout."""
        with RawClient(self.port) as c:
            c.send(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            start = time.monotonic()
            c.expect_eof(timeout=scale(3))
            self.assertGreaterEqual(time.monotonic() - start, 0.2, "closed before the timeout")

    def test_completed_handshake_outlives_timeout(self):
        """After a quick 101, the handshake timer no longer applies: echo works 1s later."""
        with RawClient.upgraded(self.port) as c:
            time.sleep(1.0)
            c.send_frame(OP_TEXT, b"still here")
            self.assertEqual(c.recv_message(), (OP_TEXT, b"still here"))


class PingIdleTest(harness.ServerTestCase):
    """close_timeout_ms=300 bounds the wait for a close reply that a silent client never sends."""
    server_opts = {"ping_interval_ms": 200, "idle_timeout_ms": 1000, "close_timeout_ms": 300}

    def test_server_sends_pings(self):
        """With ping_interval_ms=200 the server pings; pings keep coming after a pong."""
        with RawClient.upgraded(self.port) as c:
            for _ in range(2):
                f = c.recv_frame(timeout=scale(2))
                self.assertEqual(f.opcode, OP_PING, f)
                self.assertTrue(f.fin)
                self.assertLessEqual(len(f.payload), 125)
                c.send_frame(OP_PONG, f.payload)

    def test_client_answering_pings_stays_open(self):
        """A raw client that only answers pings outlives idle_timeout_ms (2.5s > 1s)."""
        with RawClient.upgraded(self.port) as c:
            end = time.monotonic() + 2.5
            pings = 0
            while time.monotonic() < end:
                try:
                    f = c.recv_frame(timeout=max(0.01, end - time.monotonic()))
                except socket.timeout:
                    break
                self.assertEqual(f.opcode, OP_PING, "expected only pings, got %r" % f)
                pings += 1
                c.send_frame(OP_PONG, f.payload)
            self.assertGreaterEqual(pings, 2)
            c.send_frame(OP_TEXT, b"alive")
            self.assertEqual(c.recv_message(pings=[]), (OP_TEXT, b"alive"))

    def test_websockets_client_stays_open(self):
        """Python websockets (answers pings itself, never pings) stays open over 2.5s."""
        async def go():
            async with websockets.connect(self.url(), ping_interval=None,
                                          compression=None) as ws:
                await asyncio.sleep(2.5)
                await ws.send("alive")
                self.assertEqual(await ws.recv(), "alive")
        asyncio.run(asyncio.wait_for(go(), scale(10)))

    def test_silent_client_closed_after_idle_timeout(self):
        """A client that never answers pings and sends nothing is closed after idle_timeout_ms
        (1s; a close frame, if any, must be followed by TCP close after close_timeout_ms)."""
        with RawClient.upgraded(self.port) as c:
            elapsed, frames = wait_closed_silently(c, scale(5))
            self.assertGreaterEqual(elapsed, 0.8, "closed before idle_timeout_ms")
            self.assertTrue(any(f.opcode == OP_PING for f in frames), "no ping before close")
            closes = [f for f in frames if f.opcode == OP_CLOSE]
            if closes:
                self.assertNotIn(closes[0].close_code, (1005, 1006, 1015), closes[0])


class IdleNoPingTest(harness.ServerTestCase):
    server_opts = {"ping_interval_ms": 0, "idle_timeout_ms": 800, "close_timeout_ms": 300}

    def test_no_pings_when_disabled(self):
        """ping_interval_ms=0: no ping in 0.6s (under the idle timeout)."""
        with RawClient.upgraded(self.port) as c:
            with self.assertRaises(socket.timeout):
                f = c.recv_frame(timeout=0.6)
                self.fail("unexpected frame %r" % f)

    def test_active_client_stays_open(self):
        """A client sending a message every 200ms outlives idle_timeout_ms (2s > 0.8s)."""
        with RawClient.upgraded(self.port) as c:
            for i in range(10):
                c.send_frame(OP_TEXT, b"tick %d" % i)
                self.assertEqual(c.recv_message(), (OP_TEXT, b"tick %d" % i))
                time.sleep(0.2)

    def test_silent_client_closed(self):
        """Without pings, a silent client is closed after idle_timeout_ms (800), then TCP."""
        with RawClient.upgraded(self.port) as c:
            elapsed, frames = wait_closed_silently(c, scale(5))
            self.assertGreaterEqual(elapsed, 0.6, "closed before idle_timeout_ms")
            self.assertFalse(any(f.opcode == OP_PING for f in frames), frames)


class CloseTimeoutTest(harness.ServerTestCase):
    server_opts = {"close_timeout_ms": 500}

    def test_unanswered_close_ends_tcp(self):
        """After a server close (1002) that the client never answers, TCP closes in time."""
        with RawClient.upgraded(self.port) as c:
            c.send_frame(OP_TEXT, b"unmasked", mask=False)
            c.expect_close(1002, reply=False)
            c.expect_eof(timeout=scale(3))

    def test_client_close_echoed_and_closed(self):
        """A client close is echoed and TCP closed even if the client then stays silent."""
        with RawClient.upgraded(self.port) as c:
            c.send_close(1000)
            f = c.recv_frame()
            self.assertEqual((f.opcode, f.close_code), (OP_CLOSE, 1000))
            c.expect_eof(timeout=scale(3))


if __name__ == "__main__":
    harness.main()
