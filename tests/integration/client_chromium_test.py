"""The JS client library in headless Chromium against the real gateway: a page
(tests/integration/chromium/client.html) loads /ringcast.js from the gateway, subscribes and
receives; the gateway is killed and restarted on its port and the page resumes with a reset
(new epoch) and receives again; then a proxy in front of the gateway drops the `Upgrade`
header (the gateway answers 426, as behind a proxy that does not speak WebSocket), the
gateway restarts once more, and the library falls back to Server-Sent Events: messages keep
arriving and the page publishes over POST /publish. The page and the gateway share one origin
through the proxy, which also serves the page. The test reads window.report over the DevTools
protocol. Without Chromium: as deflate_chromium_test.py (RINGCAST_ALLOW_SKIP_CHROMIUM=1)."""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import scale  # noqa: E402
from deflate_chromium_test import CHROMIUM, chromium_main, chromium_missing, read  # noqa: E402

import websockets  # noqa: E402

PAGE = os.path.join(harness.HERE, "chromium", "client.html")


class Proxy:
    """In front of the gateway: serves /client.html itself, forwards everything else, and
    with drop_upgrade removes the Upgrade header of requests (upgrades then get 426)."""

    def __init__(self, target):
        self.target = target
        self.drop_upgrade = False

    async def start(self):
        self.srv = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.srv.sockets[0].getsockname()[1]
        return self

    async def handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /client.html"):
                with open(PAGE, "rb") as f:
                    body = f.read()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                             b"%d\r\nConnection: close\r\n\r\n" % len(body) + body)
                await writer.drain()
                return
            if self.drop_upgrade:
                head = re.sub(rb"(?im)^upgrade:[^\r\n]*\r\n", b"", head)
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
            up_w.write(head)
            await asyncio.gather(self.pipe(reader, up_w), self.pipe(up_r, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def pipe(r, w):
        try:
            while True:
                d = await r.read(65536)
                if not d:
                    break
                w.write(d)
                await w.drain()
        except OSError:
            pass
        finally:
            w.close()


def publish(port, topic, data):
    req = urllib.request.Request("http://127.0.0.1:%d/publish" % port, method="POST",
                                 data=json.dumps({"topic": topic, "data": data}).encode())
    with urllib.request.urlopen(req, timeout=scale(5)) as r:
        return json.loads(r.read())["seq"]


class Browser:
    """Headless Chromium on one page, evaluated over the DevTools protocol."""

    async def start(self, url):
        self.profile = tempfile.mkdtemp(prefix="ringcast-chromium-")
        self.err_path = os.path.join(self.profile, "stderr.txt")
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--disable-dev-shm-usage", "--user-data-dir=" + self.profile,
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", url]
        with open(self.err_path, "w") as errf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=errf,
                                         start_new_session=True)
        endpoint = None
        while endpoint is None:
            if self.proc.poll() is not None:
                raise AssertionError("chromium exited: %s" % read(self.err_path))
            m = re.search(r"DevTools listening on (ws://\S+)", read(self.err_path))
            endpoint = m.group(1) if m else None
            await asyncio.sleep(0.05)
        port = int(endpoint.split("/")[2].split(":")[1])
        page = None
        while page is None:
            _, _, body = await asyncio.to_thread(harness.http_get, port, "/json")
            pages = [t for t in json.loads(body) if t.get("type") == "page"]
            page = pages[0]["webSocketDebuggerUrl"] if pages else None
            await asyncio.sleep(0.05)
        self.cdp = await websockets.connect(page, max_size=None, compression=None,
                                            ping_interval=None)
        self.ids = iter(range(1, 1 << 30))
        return self

    async def evaluate(self, expr):
        i = next(self.ids)
        await self.cdp.send(json.dumps({"id": i, "method": "Runtime.evaluate",
                                        "params": {"expression": expr, "returnByValue": True,
                                                   "awaitPromise": True}}))
        while True:
            r = json.loads(await self.cdp.recv())
            if r.get("id") == i:
                return r.get("result", {}).get("result", {}).get("value")

    async def report(self):
        text = await self.evaluate("JSON.stringify(window.report || null)")
        return json.loads(text) if text else None

    async def until(self, cond, what, timeout=30):
        deadline = time.monotonic() + scale(timeout)
        while True:
            rep = await self.report()
            if rep and cond(rep):
                return rep
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s; report %s; chromium:\n%s"
                                     % (what, rep, harness.tail(read(self.err_path), 15)))
            await asyncio.sleep(0.1)

    async def stop(self):
        try:
            await self.cdp.close()
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


@unittest.skipIf(chromium_missing(), "no chromium")
class ChromiumClientTest(unittest.TestCase):
    def setUp(self):
        self.port = harness.free_port()
        self.server = harness.Server(2, port=self.port).start()
        self.addCleanup(lambda: self.server.kill())

    def restart(self):
        self.server.kill()
        self.server = harness.Server(2, port=self.port).start()

    def test_restart_and_sse_fallback(self):
        asyncio.run(asyncio.wait_for(self.scenario(), scale(90)))
        self.server.stop_and_check()

    async def scenario(self):
        topic = "chromium.client"
        proxy = await Proxy(self.port).start()
        b = await Browser().start("http://127.0.0.1:%d/client.html?topic=%s"
                                  % (proxy.port, topic))
        try:
            await b.until(lambda r: r["loaded"] and r["acks"] >= 1, "/ringcast.js and the ack")
            for i in range(1, 6):
                await asyncio.to_thread(publish, self.port, topic, i)
            await b.until(lambda r: r["data"] == [1, 2, 3, 4, 5], "5 messages")
            await asyncio.to_thread(self.restart)
            rep = await b.until(lambda r: r["resets"] == 1 and r["state"] == "open",
                                "the reset after the restart")
            for i in range(6, 9):
                await asyncio.to_thread(publish, self.port, topic, i)
            rep = await b.until(lambda r: r["data"][-1:] == [8], "messages after the restart")
            self.assertEqual(rep["data"], list(range(1, 9)))
            self.assertEqual(rep["seqs"], [1, 2, 3, 4, 5, 1, 2, 3])
            self.assertEqual(rep["transports"], ["websocket", "websocket"])

            proxy.drop_upgrade = True
            await asyncio.to_thread(self.restart)
            await b.until(lambda r: r["transports"][-1:] == ["sse"] and r["state"] == "open"
                          and r["resets"] == 2, "the fallback to SSE")
            for i in range(9, 12):
                await asyncio.to_thread(publish, self.port, topic, i)
            await b.evaluate("window.pub('from the page')")
            rep = await b.until(lambda r: len(r["data"]) == 12, "messages over SSE")
            self.assertEqual(rep["data"], list(range(1, 12)) + ["from the page"])
            self.assertEqual(rep["published"], [4])
            self.assertEqual((rep["gaps"], rep["errors"]), (0, []))
        finally:
            await b.stop()
            proxy.srv.close()


if __name__ == "__main__":
    chromium_main("client_chromium_test.py", 100)
