"""The memory budget (memory_budget_bytes): the books by category in /metrics match what clients
make the gateway hold and return to zero when they leave; past the soft mark new connections get
a complete 503, new topics and POST /publish are refused and /health says degraded while the
connected clients are still served; at the hard mark the biggest consumers are shed with 1013
and counted while a well-behaved client keeps working and the RSS stays bounded; the start log
states the budget and where it came from.

Kernel socket memory is left out of the budget here (memory_count_kernel=0): it is the host's,
shared with whatever else runs, and would make the marks depend on the machine's load."""
import json
import re
import socket
import threading
import time

import harness
from harness import OP_TEXT, RawClient, ServerTestCase, scale

PARTIAL = 4000  # payload bytes of each held partial frame: one read, one exact allocation


class Scrape:
    """GET /metrics and /health over one keep-alive connection opened before any mark is
    passed (past the soft mark a new connection is refused)."""

    def __init__(self, port):
        self.c = RawClient(port)

    def get(self, path, method="GET", body=b""):
        headers = [("Host", "x")]
        if body:
            headers.append(("Content-Length", str(len(body))))
        self.c.request(method, path, headers=headers, body=body)
        return self.c.read_response(timeout=scale(5))

    def metrics(self):
        return self.get("/metrics").body.decode()

    def value(self, name, labels=""):
        """Sum of name{...labels...} over shards (or the unlabelled gauge)."""
        text = self.metrics()
        pat = r'^%s(?:\{([^}]*)\})? (\d+)$' % re.escape(name)
        total = 0
        for lab, v in re.findall(pat, text, re.M):
            if labels in (lab or ""):
                total += int(v)
        return total

    def category(self, cat):
        return self.value("ringcast_memory_bytes", 'category="%s"' % cat)

    def close(self):
        self.c.close()


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + scale(timeout)
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def send_partial(c, payload_bytes, declared):
    """Sends the first payload_bytes of a frame of declared bytes."""
    c.send(harness.encode_frame(harness.OP_BINARY, b"x" * payload_bytes, length=declared))


def hold_partial(port, payload_bytes, declared):
    """An /echo client that sent the first payload_bytes of a frame of declared bytes."""
    c = RawClient.upgraded(port, "/echo")
    send_partial(c, payload_bytes, declared)
    return c


def new_connection_answer(port):
    """The complete answer a new connection gets to an upgrade request."""
    c = RawClient(port)
    try:
        return c.handshake("/echo", expect=None)
    finally:
        c.close()


def vm_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class BooksTest(ServerTestCase):
    shards = 2
    server_opts = {"memory_count_kernel": 0}

    def test_partial_frames_are_charged_exactly_and_released(self):
        """N connections each holding a partial frame of known size: frame_assembly equals
        their bytes within a small per-connection overhead, and is 0 again once they leave."""
        m = Scrape(self.port)
        n = 20
        try:
            self.assertEqual(m.category("frame_assembly"), 0)
            held = [hold_partial(self.port, PARTIAL, 60000) for _ in range(n)]
            expected = n * PARTIAL
            got = wait_for(lambda: (lambda v: v if v >= expected else 0)(
                m.category("frame_assembly")), what="partial frames charged")
            # Per connection: the buffer header and the inflate tail room, far below 512.
            self.assertLessEqual(got, expected + n * 512, got)
            self.assertGreaterEqual(m.value("ringcast_memory_total_bytes"), got)
            for c in held:
                c.close()
            wait_for(lambda: m.category("frame_assembly") == 0, what="frame_assembly back to 0")
            wait_for(lambda: m.category("send_queue") == 0, what="send_queue back to 0")
            self.assertEqual(m.category("http"), 0)
            self.assertEqual(m.value("ringcast_memory_level"), 0)
        finally:
            m.close()


class SoftMarkTest(ServerTestCase):
    shards = 1
    # 8 MiB budget, soft mark at 2 MiB: three 1 MB partial frames (1 to 2 MB of buffer each,
    # grown geometrically) pass the soft mark and stay below the budget.
    server_opts = {"memory_count_kernel": 0, "memory_budget_bytes": 8 << 20,
                   "memory_soft_percent": 25, "handshake_timeout_ms": 60000}

    def test_soft_mark_refuses_new_work_and_serves_the_connected(self):
        m = Scrape(self.port)
        poster = Scrape(self.port)  # a refused POST closes its connection
        echo = RawClient.upgraded(self.port, "/echo")
        sub = RawClient.upgraded(self.port, "/ws")
        hoarders = []
        try:
            sub.send_frame(OP_TEXT, json.dumps({"op": "sub", "topic": "old"}))
            self.assertEqual(json.loads(sub.recv_message()[1])["op"], "ack")
            self.assertEqual(m.get("/health").status, 200)
            hoarders = [RawClient.upgraded(self.port, "/echo") for _ in range(3)]
            for c in hoarders:
                send_partial(c, 1000000, 2000000)
            wait_for(lambda: m.value("ringcast_memory_level") == 1, what="the soft mark")
            time.sleep(0.2)  # a tick: the shard reads the level once per tick
            # A new connection hears a complete 503 with Retry-After.
            r = new_connection_answer(self.port)
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.header("retry-after"), "1")
            self.assertEqual(r.body, b"memory budget reached, retry\n")
            # A new topic is refused (error 16, busy); the existing one still works.
            sub.send_frame(OP_TEXT, json.dumps({"op": "sub", "topic": "new"}))
            err = json.loads(sub.recv_message()[1])
            self.assertEqual((err["op"], err["code"]), ("error", 16), err)
            sub.send_frame(OP_TEXT, json.dumps({"op": "pub", "topic": "old", "data": 1}))
            got = [json.loads(sub.recv_message()[1]) for _ in range(2)]
            self.assertEqual(sorted(g["op"] for g in got), ["ack", "msg"], got)
            # POST /publish is new work: 503.
            r = poster.get("/publish", "POST", b'{"topic":"old","data":2}')
            self.assertEqual(r.status, 503, r)
            # /health says why.
            r = m.get("/health")
            self.assertEqual(r.status, 503)
            self.assertEqual(json.loads(r.body), {"status": "degraded", "reason": "memory"})
            # The connected client is served.
            echo.send_frame(OP_TEXT, b"still here")
            self.assertEqual(echo.recv_message(), (OP_TEXT, b"still here"))
            self.assertGreaterEqual(m.value("ringcast_memory_refusals_total",
                                            'what="connection"'), 1)
            self.assertGreaterEqual(m.value("ringcast_memory_refusals_total", 'what="topic"'), 1)
            self.assertGreaterEqual(m.value("ringcast_memory_refusals_total",
                                            'what="publish"'), 1)
            self.assertGreaterEqual(m.value("ringcast_connections_closed_total",
                                            'reason="over_budget"'), 1)
            # Once the hoarders leave, new connections are welcome again.
            for c in hoarders:
                c.close()
            wait_for(lambda: m.value("ringcast_memory_level") == 0, what="below the soft mark")
            time.sleep(0.2)
            c = RawClient.upgraded(self.port, "/echo")
            c.close()
            self.assertEqual(m.get("/health").status, 200)
        finally:
            for c in hoarders + [echo, sub]:
                c.close()
            m.close()
            poster.close()


class HardMarkTest(ServerTestCase):
    shards = 1
    # A 16 MiB budget; queues may grow far past it, so only the budget stops them.
    # The 1013 waits behind what the kernel holds for a hoarder, which reads only after the
    # publishing: close_timeout_ms outlasts that on a loaded machine.
    server_opts = {"memory_count_kernel": 0, "memory_budget_bytes": 16 << 20,
                   "memory_soft_percent": 50, "send_queue_bytes_max": 256 << 20,
                   "send_queue_age_max_ms": 0, "handshake_timeout_ms": 60000,
                   "close_timeout_ms": 120000}

    def test_hoarders_are_shed_and_a_good_client_is_served(self):
        m = Scrape(self.port)
        pid = self.server.proc.pid
        base_rss = vm_rss(pid)
        echo = RawClient.upgraded(self.port, "/echo")
        pub = RawClient.upgraded(self.port, "/ws")
        hoarders = []
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], vm_rss(pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            # Non-reading subscribers of a busy topic. A fixed receive buffer bounds what the
            # kernel holds for them (above the MSS: a smaller one stalls loopback TCP).
            for _ in range(2):
                h = RawClient(self.port)
                h.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
                h.handshake("/ws")
                h.send_frame(OP_TEXT, json.dumps({"op": "sub", "topic": "busy"}))
                self.assertEqual(json.loads(h.recv_message()[1])["op"], "ack")
                hoarders.append(h)
            # Each publish fits one receive buffer: the publisher holds nothing between
            # messages (at the budget, growth of a partial message would be refused).
            data = "y" * 8000
            shed = 0
            for i in range(6000):
                pub.send_frame(OP_TEXT, json.dumps({"op": "pub", "topic": "busy",
                                                    "data": data}))
                pub.recv_message()
                if i % 100 == 99:
                    shed = m.value("ringcast_memory_shed_total")
                    if shed >= 2:
                        break
            self.assertGreaterEqual(shed, 2, "the hoarders were not shed")
            for h in hoarders:
                f = h.expect_close(1013, timeout=scale(30))
                self.assertEqual(f.close_reason, b"memory budget")
                h.close()  # the server ends the connection at our EOF: the close is counted
            wait_for(lambda: m.value("ringcast_connections_closed_total",
                                     'reason="memory_shed"') >= 2, what="sheds counted")
            # The well-behaved client kept its connection and is served.
            echo.send_frame(OP_TEXT, b"fine")
            self.assertEqual(echo.recv_message(), (OP_TEXT, b"fine"))
            stop.set()
            sampler.join()
            # The budget bounds what clients hold; 32 MiB covers the allocator's slack (ASan's
            # quarantine keeps up to 256 MiB of freed memory on top).
            margin = (32 << 20) + ((256 << 20) if harness.ASAN else 0)
            self.assertLess(peak[0], base_rss + (16 << 20) + margin,
                            "RSS %d, started at %d" % (peak[0], base_rss))
        finally:
            stop.set()
            for c in hoarders + [echo, pub]:
                c.close()
            m.close()

    def test_a_huge_partial_message_is_refused_with_1013(self):
        """A sender of a partial frame larger than the budget hears 1013 "memory budget"."""
        m = Scrape(self.port)
        c = hold_partial(self.port, 0, 15 << 20)
        try:
            chunk = b"z" * 65536
            sent = 0
            while sent < (32 << 20):
                try:
                    c.sock.sendall(chunk)
                except OSError:
                    break
                sent += len(chunk)
            f = c.expect_close(1013, timeout=scale(20), reply=False)
            self.assertEqual(f.close_reason, b"memory budget")
            self.assertGreaterEqual(m.value("ringcast_memory_refusals_total", 'what="growth"'), 1)
            c.close()
            # The next case starts from a server below its marks again.
            wait_for(lambda: m.value("ringcast_memory_level") == 0, what="below the marks")
            time.sleep(0.2)
        finally:
            c.close()
            m.close()


class StartLogTest(ServerTestCase):
    shards = 1
    server_opts = {"memory_budget_bytes": 100 << 20}

    def test_start_log_states_the_budget_and_its_source(self):
        log = self.server.log()
        self.assertRegex(log, r"memory budget 100 MiB \(memory_budget_bytes\)")

    def test_default_budget_comes_from_the_host(self):
        srv = harness.Server(1).start()
        try:
            self.assertRegex(srv.log(), r"memory budget \d+ MiB \(3/4 of the (host's memory|"
                                        r"cgroup's memory.max)\)")
            m = Scrape(srv.port)
            try:
                self.assertGreater(m.value("ringcast_memory_budget_bytes"), 0)
            finally:
                m.close()
        finally:
            srv.stop_and_check()


if __name__ == "__main__":
    harness.main(budget_s=150)
