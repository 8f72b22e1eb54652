"""examples/chat.c, the embedding example: it prints the runtime's readiness line, every client
of /chat joins "room", a text message from one client reaches every client (sender included)
as one byte-identical msg envelope whose data is the text as a JSON string, and SIGTERM drains
(close 1001) and exits 0 with no sanitizer report.

Environment: RINGCAST_BUILD (build directory holding examples/chat, default <repo>/build).
"""

import asyncio
import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import scale  # noqa: E402

import websockets  # noqa: E402

BUILD = os.environ.get("RINGCAST_BUILD") or "build"
CHAT = os.path.join(harness.REPO, BUILD, "examples", "chat")

_procs = []


@atexit.register
def _kill_all():
    for p in _procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Chat:
    """examples/chat on a free port, its output in a temporary file. started() waits for its
    readiness line (retrying on a port lost to a race)."""

    def __init__(self):
        if not os.access(CHAT, os.X_OK):
            raise AssertionError("example not built: %s (make BUILD=... all)" % CHAT)
        self.proc = None

    def started(self):
        for attempt in range(3):
            self.port = harness.free_port()
            self.log = tempfile.TemporaryFile(mode="w+", prefix="ringcast-chat-")
            self.proc = subprocess.Popen([CHAT, str(self.port)], stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=self.log,
                                         start_new_session=True)
            _procs.append(self.proc)
            try:
                self.wait_ready()
                return self
            except AssertionError:
                if "in use" not in self.output() or attempt == 2:
                    raise
                self.log.close()

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self):
        line = "ready on "
        deadline = time.monotonic() + scale(10)
        while time.monotonic() < deadline:
            out = self.output()
            if line in out and ":%d " % self.port in out:
                return out
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError("chat not ready (exit %s):\n%s" % (self.proc.poll(),
                                                                harness.tail(self.output())))

    def stop(self):
        """SIGTERM; returns (exit status, output)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(scale(15))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("chat did not exit after SIGTERM:\n" + self.output())
        out = self.output()
        self.log.close()
        return rc, out

    def url(self):
        return "ws://127.0.0.1:%d/chat" % self.port

    def run(self, coro, timeout=30):
        """Runs coro; if it fails because the example died, says so with its output."""
        try:
            return asyncio.run(asyncio.wait_for(coro, scale(timeout)))
        except Exception as e:
            if self.proc.poll() is not None and self.proc.returncode != 0:
                raise AssertionError("the example died (exit %s) during the case (%r); "
                                     "output:\n%s" % (self.proc.returncode, e,
                                                       harness.tail(self.output(), 30)))
            raise


def check_clean_exit(test, rc, out):
    for marker in harness.SANITIZER_MARKERS:
        test.assertNotIn(marker, out, "sanitizer report:\n" + harness.tail(out, 80))
    test.assertEqual(rc, 0, "exit status; output:\n" + harness.tail(out))


async def connect(url):
    return await websockets.connect(url, ping_interval=None, compression=None,
                                    open_timeout=scale(10), close_timeout=scale(5))


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), scale(5))


class ChatExampleTest(unittest.TestCase):
    def test_message_reaches_all_three_then_sigterm_exits_0(self):
        """3 clients; a message from each reaches all three as the same msg envelope (seq
        1, 2, 3; quotes, backslashes, control characters and UTF-8 survive); a binary
        message is not published; SIGTERM closes them with 1001 and the example exits 0."""
        chat = Chat().started()
        self.assertIn("ringcast: ready on", chat.output())
        texts = ['hello, "room"', "back\\slash\ttab\nnewline é€😀", "{not json}"]

        async def go():
            clients = [await connect(chat.url()) for _ in range(3)]
            await clients[1].send(b"\x00binary is ignored")
            for seq, (sender, text) in enumerate(zip(clients, texts), start=1):
                await sender.send(text)
                got = [await recv(ws) for ws in clients]
                self.assertEqual(len(set(got)), 1, "not byte-identical: %r" % got)
                self.assertEqual(json.loads(got[0]),
                                 {"op": "msg", "topic": "room", "seq": seq, "data": text})
            stopped = asyncio.ensure_future(asyncio.to_thread(chat.stop))
            for ws in clients:
                await asyncio.wait_for(ws.wait_closed(), scale(10))
                self.assertEqual(ws.close_code, 1001)
            return await stopped
        check_clean_exit(self, *chat.run(go()))

    def test_a_client_leaving_does_not_disturb_the_others(self):
        """One of three clients vanishes (no close handshake); the two others still get each
        message once; a late joiner gets only what follows its join."""
        chat = Chat().started()

        async def go():
            a, b, c = [await connect(chat.url()) for _ in range(3)]
            c.transport.abort()
            await a.send("one")
            for ws in (a, b):
                self.assertEqual(json.loads(await recv(ws))["data"], "one")
            late = await connect(chat.url())
            await b.send("two")
            for ws in (a, b, late):
                m = json.loads(await recv(ws))
                self.assertEqual((m["seq"], m["data"]), (2, "two"))
            for ws in (a, b, late):
                await ws.close()
        chat.run(go())
        check_clean_exit(self, *chat.stop())

    def test_usage_without_a_port(self):
        """No port argument: a usage line on stderr and exit 2."""
        r = subprocess.run([CHAT], capture_output=True, text=True, timeout=scale(10))
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage:", r.stderr)


if __name__ == "__main__":
    harness.main(budget_s=60)
