"""permessage-deflate (RFC 7692, issue 5) with headless Chromium, whose offer is
"permessage-deflate; client_max_window_bits" and whose inflater, unlike zlib's users, goes on
after a final block (see src/pmd.h): a page served from tests/integration/chromium/ connects to
/echo and /ws, echoes compressible and incompressible text and binary messages from 0 B to
1 MiB (single and pipelined), subscribes three sockets to a topic and checks every broadcast
byte-exact, and writes a JSON verdict into the DOM, which the test reads over the DevTools
protocol (--remote-debugging-port; --dump-dom cannot wait for WebSocket traffic). The same
page against --deflate=false expects no extension. /metrics proves both directions were
compressed.

Chromium is Debian's `chromium` package (tools/install-deps.sh). Without /usr/bin/chromium
(or $CHROMIUM) the file fails, unless RINGCAST_ALLOW_SKIP_CHROMIUM=1, where it prints SKIP and
exits 0.
"""

import asyncio
import functools
import html
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import scale  # noqa: E402

import websockets  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PAGES = os.path.join(harness.HERE, "chromium")
RESULT_RE = re.compile(r'<pre id="result">(.*?)</pre>', re.S)


def chromium_missing():
    return not os.access(CHROMIUM, os.X_OK)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


class PageServer:
    """tests/integration/chromium/ over HTTP on a free port, in a thread."""

    def __enter__(self):
        handler = functools.partial(QuietHandler, directory=PAGES)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_page(url, timeout=45, expr=None, extra_args=()):
    """Loads url in headless Chromium and waits, over the DevTools protocol, until the page's
    #result leaves "pending" (--dump-dom alone cannot wait: virtual time does not stop for
    WebSocket traffic, so the DOM would be dumped before the first echo). Returns (verdict
    dict or None, the page's DOM, chromium's stderr). expr, if given, is evaluated instead of
    reading #result: a JSON verdict, or "pending". extra_args go to Chromium."""
    profile = tempfile.mkdtemp(prefix="ringcast-chromium-")
    err_path = os.path.join(profile, "stderr.txt")
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
            "--user-data-dir=" + profile, "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0", *extra_args, url]
    with open(err_path, "w") as errf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=errf, start_new_session=True)
    try:
        return asyncio.run(asyncio.wait_for(devtools_wait(proc, err_path, expr),
                                            scale(timeout)))
    except asyncio.TimeoutError:
        return None, "", "timed out after %ss\n%s" % (scale(timeout), read(err_path))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


async def devtools_wait(proc, err_path, expr=None):
    endpoint = None
    while endpoint is None:
        if proc.poll() is not None:
            return None, "", "chromium exited with %s\n%s" % (proc.returncode, read(err_path))
        m = re.search(r"DevTools listening on (ws://\S+)", read(err_path))
        if m:
            endpoint = m.group(1)
        else:
            await asyncio.sleep(0.05)
    host = endpoint.split("/")[2]
    page = None
    while page is None:
        _, _, body = await asyncio.to_thread(harness.http_get, int(host.split(":")[1]), "/json")
        pages = [t for t in json.loads(body) if t.get("type") == "page"]
        if pages:
            page = pages[0]["webSocketDebuggerUrl"]
        else:
            await asyncio.sleep(0.05)
    async with websockets.connect(page, max_size=None, compression=None,
                                  ping_interval=None) as cdp:
        ids = iter(range(1, 1 << 30))

        async def evaluate(expr):
            i = next(ids)
            await cdp.send(json.dumps({"id": i, "method": "Runtime.evaluate",
                                       "params": {"expression": expr, "returnByValue": True}}))
            while True:
                r = json.loads(await cdp.recv())
                if r.get("id") == i:
                    return r.get("result", {}).get("result", {}).get("value")
        text = "pending"
        while text in (None, "", "pending"):
            await asyncio.sleep(0.1)
            text = await evaluate(expr or
                                  "(document.getElementById('result') || {}).textContent")
        dom = await evaluate("document.documentElement.outerHTML") or ""
    if expr:
        return json.loads(text), dom, read(err_path)
    m = RESULT_RE.search(dom)
    try:
        verdict = json.loads(html.unescape(m.group(1))) if m else None
    except ValueError:
        verdict = {"ok": False, "raw": m.group(1)}
    return verdict, dom, read(err_path)


def metrics(port):
    status, _, body = harness.http_get(port, "/metrics")
    if status != 200:
        raise AssertionError("GET /metrics answered %d" % status)
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            name = name_labels.partition("{")[0]
            out[name] = out.get(name, 0) + float(value)
    return out


@unittest.skipIf(chromium_missing(), "no chromium")
class ChromiumDeflateTest(harness.ServerTestCase):
    shards = 2
    server_opts = {}

    def load(self, plain=False):
        with PageServer() as pages:
            url = "http://127.0.0.1:%d/deflate.html?port=%d%s" % (
                pages.port, self.port, "&plain=1" if plain else "")
            verdict, dom, err = run_page(url)
        if verdict is None or verdict.get("ok") is not True:
            raise AssertionError("page verdict %r\nDOM: %s\nchromium stderr (tail):\n%s"
                                 % (verdict, dom[-1500:], harness.tail(err, 15)))
        self.assertGreater(verdict["checks"], 100)
        return verdict

    def test_echo_and_pubsub_with_deflate(self):
        m0 = metrics(self.port)
        v = self.load()
        m1 = metrics(self.port)
        d = {k: m1[k] - m0.get(k, 0) for k in m1}
        print("\n    %d checks; server inflated %d messages, compressed %d B into %d B"
              % (v["checks"], d["ringcast_inflated_messages_total"],
                 d["ringcast_deflate_in_bytes_total"], d["ringcast_deflate_out_bytes_total"]),
              end=" ", flush=True)
        # Chromium compresses what it sends; the server compresses its replies and broadcasts.
        self.assertGreater(d["ringcast_inflated_messages_total"], 100)
        self.assertGreater(d["ringcast_deflate_in_bytes_total"], 2 << 20)
        self.assertLess(d["ringcast_deflate_out_bytes_total"],
                        d["ringcast_deflate_in_bytes_total"] * 0.8)
        self.assertEqual(d["ringcast_publishes_total"], 41)


@unittest.skipIf(chromium_missing(), "no chromium")
class ChromiumPlainTest(harness.ServerTestCase):
    shards = 2
    server_opts = {"deflate": "false"}

    def test_same_page_without_deflate(self):
        m0 = metrics(self.port)
        with PageServer() as pages:
            verdict, dom, err = run_page("http://127.0.0.1:%d/deflate.html?port=%d&plain=1"
                                         % (pages.port, self.port))
        if verdict is None or verdict.get("ok") is not True:
            raise AssertionError("page verdict %r\nDOM: %s\nchromium stderr (tail):\n%s"
                                 % (verdict, dom[-1500:], harness.tail(err, 15)))
        m1 = metrics(self.port)
        self.assertEqual(m1["ringcast_inflated_messages_total"],
                         m0["ringcast_inflated_messages_total"])
        self.assertEqual(m1["ringcast_deflate_in_bytes_total"],
                         m0["ringcast_deflate_in_bytes_total"])


def chromium_main(name, budget_s):
    """Runs the calling test file, or fails (skips with RINGCAST_ALLOW_SKIP_CHROMIUM=1)
    without Chromium."""
    if chromium_missing():
        if os.environ.get("RINGCAST_ALLOW_SKIP_CHROMIUM") == "1":
            print("SKIP %s: %s not found (apt-get install chromium; "
                  "tools/install-deps.sh)" % (name, CHROMIUM), flush=True)
            sys.exit(0)
        print("FAIL %s: %s not found: install Debian's chromium "
              "(tools/install-deps.sh) or set RINGCAST_ALLOW_SKIP_CHROMIUM=1 to skip"
              % (name, CHROMIUM), file=sys.stderr, flush=True)
        sys.exit(1)
    harness.main(budget_s=budget_s)


if __name__ == "__main__":
    chromium_main("deflate_chromium_test.py", 58)
