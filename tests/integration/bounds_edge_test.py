"""Issue 9, the edge's bounds: HTTP bodies are appended in place as they arrive (never
re-copied or re-parsed), charged to the memory budget and refused with 503 past it; JSON
messages past json_depth_max or json_elements_max are refused before they are parsed; a
connection inflating more than inflate_bytes_per_second_max closes with 1008; the admin
listener answers /health and /metrics while the public port is full."""
import json
import re
import socket
import time
import urllib.request
import zlib

import harness
from harness import OP_TEXT, ServerTestCase, scale

MIB = 1024 * 1024


def metric(port, name, label="", category=None):
    """The sum of a per-shard series, or the value of a process-wide one by category."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    if category is not None:
        pat = r'^%s\{category="%s"\} (\d+)$' % (name, category)
        return int(re.search(pat, text, re.M).group(1))
    pat = r'^%s\{shard="\d+"%s\} (\d+)$' % (name, label)
    return sum(int(v) for v in re.findall(pat, text, re.M))


def rss_bytes(server):
    with open("/proc/%d/status" % server.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


def http_request(sock, raw):
    """Sends raw, returns the status code and the body of the response."""
    sock.sendall(raw)
    data = read_head(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    while m and len(body) < int(m.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), body


def hold_unfinished_bodies(port, n, held):
    """Opens n connections, each sending all but the last byte of a 1 MiB POST body, into
    held (the caller closes them). Returns how many were answered 503."""
    head = (b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % MIB)
    body = b"x" * (MIB - 1)
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=scale(10))
        held.append(s)
        try:
            s.sendall(head + body)
        except OSError:
            pass  # refused with 503 and closed while we were still sending
    time.sleep(0.5)
    refused = 0
    for s in held:
        s.settimeout(0.2)
        try:
            if s.recv(64).startswith(b"HTTP/1.1 503"):
                refused += 1
        except OSError:
            pass
    return refused


class HttpBodyBudgetTest(ServerTestCase):
    shards = 1
    # Past the budget's soft mark the public port refuses new connections: the metrics are
    # read on the admin port and the served client connects before the flood.
    admin_port = harness.free_port()
    # The bodies' own share is the whole budget here: what refuses them is the budget. The
    # host's TCP memory (other processes' sockets) is left out: on a busy host it alone can
    # take a 64 MiB budget to its hard mark and refuse the trickled body's growth.
    server_opts = {"memory_budget_bytes": 64 * MIB, "body_bytes_max": MIB,
                   "http_memory_percent": 100, "handshake_timeout_ms": 60000,
                   "memory_count_kernel": "false", "admin_port": admin_port}

    def test_unfinished_bodies_stay_within_the_budget(self):
        """200 connections each send all but the last byte of a 1 MiB body: the budget
        (64 MiB) refuses those past it with 503, RSS stays bounded, others are served."""
        before = rss_bytes(self.server)
        held = []
        c = harness.RawClient(self.port)
        c.handshake("/echo")
        try:
            refused = hold_unfinished_bodies(self.port, 200, held)
            grown = rss_bytes(self.server) - before
            self.assertGreater(refused, 100)
            # The budget plus room for the allocator and the receive buffers; ASan keeps
            # freed memory in its quarantine (256 MiB) before reuse.
            margin = 48 * MIB + (256 * MIB if harness.ASAN else 0)
            self.assertLess(grown, 64 * MIB + margin, "RSS grew by %d MiB" % (grown // MIB))
            # A 503 is a body refused, or (past the soft mark) a connection refused.
            self.assertGreaterEqual(metric(self.admin_port, "ringcast_http_budget_refusals_total")
                                    + metric(self.admin_port, "ringcast_connections_refused_total"),
                                    refused)
            c.send_frame(OP_TEXT, b"still served")
            self.assertEqual(c.recv_message(), (OP_TEXT, b"still served"))
        finally:
            c.close()
            for s in held:
                s.close()

    def test_body_trickled_byte_by_byte_completes(self):
        """A 64 KiB publish body sent one byte per send is answered 200 and delivered whole."""
        sub = harness.RawClient(self.port)
        sub.handshake("/ws")
        sub.send_frame(OP_TEXT, b'{"op":"sub","topic":"trickle"}')
        sub.recv_message()
        data = "y" * (64 * 1024 - 64)
        body = json.dumps({"topic": "trickle", "data": data}).encode()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=scale(30))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % len(body))
        for i in range(len(body) - 1):
            s.send(body[i:i + 1])
        status, answer = http_request(s, body[-1:])
        s.close()
        self.assertEqual(status, 200, answer)
        op, msg = sub.recv_message()
        self.assertEqual(json.loads(msg)["data"], data)
        sub.close()



def deflate(data):
    """Raw DEFLATE with the 00 00 ff ff tail stripped (RFC 7692 §7.2.1)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def deflate_client(port, path="/ws"):
    c = harness.RawClient(port)
    c.handshake(path, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    return c


class HttpShareTest(ServerTestCase):
    """Unfinished bodies together hold at most http_memory_percent of the budget: they get 503
    past it, and the rest of the budget stays free, so new clients are still admitted."""
    shards = 1
    admin_port = harness.free_port()
    server_opts = {"memory_budget_bytes": 64 * MIB, "http_memory_percent": 10,
                   "body_bytes_max": MIB, "memory_count_kernel": "false",
                   "handshake_timeout_ms": 60000, "admin_port": admin_port}

    def test_unfinished_bodies_hold_only_their_share(self):
        held = []
        try:
            refused = hold_unfinished_bodies(self.port, 30, held)
            share = 64 * MIB // 10
            http = metric(self.admin_port, "ringcast_memory_bytes", "", category="http")
            self.assertLessEqual(http, share)
            self.assertGreaterEqual(refused, 30 - share // MIB)
            self.assertGreaterEqual(metric(self.admin_port, "ringcast_http_budget_refusals_total"),
                                    refused)
            # Nowhere near the soft mark: a new client is admitted and served.
            with harness.RawClient(self.port) as c:
                c.handshake("/echo")
                c.send_frame(OP_TEXT, b"admitted")
                self.assertEqual(c.recv_message(), (OP_TEXT, b"admitted"))
        finally:
            for s in held:
                s.close()


class JsonLimitsTest(ServerTestCase):
    shards = 1
    server_opts = {"json_depth_max": 8, "json_elements_max": 1000}

    def test_deep_and_wide_messages_are_refused_unparsed(self):
        """Past json_depth_max or json_elements_max: error 1, counted, and the connection
        keeps being served; a POST /publish body past them gets 400."""
        c = harness.RawClient(self.port)
        c.handshake("/ws")
        deep = '{"op":"pub","topic":"t","data":%s}' % ("[" * 9 + "]" * 9)
        wide = '{"op":"pub","topic":"t","data":[%s]}' % ",".join(["0"] * 1000)
        for msg, word in ((deep, "json_depth_max"), (wide, "json_elements_max")):
            c.send_frame(OP_TEXT, msg.encode())
            err = json.loads(c.recv_message()[1])
            self.assertEqual((err["op"], err["code"]), ("error", 1), err)
            self.assertIn(word, err["reason"])
        c.send_frame(OP_TEXT, b'{"op":"pub","topic":"t","data":[[[[1,2,3]]]]}')
        self.assertEqual(json.loads(c.recv_message()[1])["op"], "ack")
        c.close()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=scale(10))
        body = json.dumps({"topic": "t", "data": list(range(2000))}).encode()
        status, answer = http_request(s, b"POST /publish HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        s.close()
        self.assertEqual(status, 400, answer)
        self.assertEqual(metric(self.port, "ringcast_json_limit_rejects_total"), 3)


class InflateRateTest(ServerTestCase):
    shards = 1
    server_opts = {"inflate_bytes_per_second_max": MIB, "message_bytes_max": MIB}

    def test_inflating_too_fast_closes_1008(self):
        """512 KiB messages compressed to a few hundred bytes, sent back to back, pass the
        1 MiB/s inflate budget: 1008 and the inflate_rate counter; others keep being served."""
        bomb = deflate(json.dumps({"op": "ping", "pad": "a" * (512 * 1024)}).encode())
        self.assertLess(len(bomb), 4096)
        c = deflate_client(self.port)
        for _ in range(8):
            try:
                c.send(harness.encode_frame(OP_TEXT, bomb, rsv=4))
            except OSError:
                break
        f = c.expect_close(1008)
        self.assertIn(b"inflate rate", f.close_reason)
        c.close()
        other = deflate_client(self.port)
        other.send(harness.encode_frame(OP_TEXT, deflate(b'{"op":"ping"}'), rsv=4))
        op, data = other.recv_message()
        self.assertEqual(op, OP_TEXT)
        other.close()
        self.assertEqual(metric(self.port, "ringcast_connections_closed_total",
                                ',reason="inflate_rate"'), 1)


def get(port, path):
    """GET path on a fresh connection: (status, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=scale(10))
    try:
        return http_request(s, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    finally:
        s.close()


class AdminListenerTest(ServerTestCase):
    shards = 1
    admin_port = harness.free_port()
    server_opts = {"connections_max": 4, "admin_port": admin_port}

    def test_admin_answers_while_public_port_is_full(self):
        """With connections_max held by WebSockets the public port answers 503, the admin
        port still answers /health and /metrics 200 and serves nothing else."""
        held = []
        try:
            for _ in range(4):
                c = harness.RawClient(self.port)
                c.handshake("/echo")
                held.append(c)
            self.assertEqual(get(self.port, "/health")[0], 503)
            status, body = get(self.admin_port, "/health")
            self.assertEqual(status, 200, body)
            status, body = get(self.admin_port, "/metrics")
            self.assertEqual(status, 200)
            self.assertIn(b"ringcast_connections_open", body)
            self.assertEqual(get(self.admin_port, "/")[0], 200)
            self.assertEqual(get(self.admin_port, "/publish")[0], 404)
            a = harness.RawClient(self.admin_port)
            a.handshake("/echo", expect=404)
            a.close()
            for c in held:
                c.send_frame(OP_TEXT, b"served")
                self.assertEqual(c.recv_message(), (OP_TEXT, b"served"))
        finally:
            for c in held:
                c.close()


class PublicAdminOffTest(ServerTestCase):
    shards = 1
    admin_port = harness.free_port()
    server_opts = {"admin_port": admin_port, "public_admin_endpoints": "false"}

    def test_public_port_hides_admin_endpoints(self):
        """public_admin_endpoints=false: /health and /metrics only on the admin port."""
        self.assertEqual(get(self.port, "/health")[0], 404)
        self.assertEqual(get(self.port, "/metrics")[0], 404)
        self.assertEqual(get(self.admin_port, "/health")[0], 200)
        c = harness.RawClient(self.port)
        c.handshake("/echo")
        c.send_frame(OP_TEXT, b"public")
        self.assertEqual(c.recv_message(), (OP_TEXT, b"public"))
        c.close()


class AdminAllowanceTest(ServerTestCase):
    shards = 1
    admin_port = harness.free_port()
    server_opts = {"admin_port": admin_port, "admin_connections_max": 2}

    def test_admin_connections_over_the_allowance_are_closed(self):
        """Past admin_connections_max an admin connection is closed unanswered (counted as
        over_capacity); once one leaves, the admin port answers again."""
        held = [socket.create_connection(("127.0.0.1", self.admin_port), timeout=scale(5))
                for _ in range(2)]
        try:
            time.sleep(0.2)
            extra = socket.create_connection(("127.0.0.1", self.admin_port), timeout=scale(5))
            try:
                extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(read_head(extra), b"")
            except ConnectionResetError:
                pass
            finally:
                extra.close()
        finally:
            for h in held:
                h.close()
        time.sleep(0.2)
        self.assertEqual(get(self.admin_port, "/health")[0], 200)
        self.assertEqual(metric(self.admin_port, "ringcast_connections_closed_total",
                                ',reason="over_capacity"'), 1)


if __name__ == "__main__":
    harness.main()