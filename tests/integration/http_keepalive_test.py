"""HTTP/1.1 keep-alive on the plain HTTP endpoints: several requests on one connection, pipelined
requests (POST /publish answers wait for sequencing, yet come back in request order),
Connection: close and HTTP/1.0 close after the answer, an idle keep-alive connection is closed
after handshake_timeout_ms."""
import json
import socket
import time

import harness
from harness import ServerTestCase, scale


def read_response(sock, buf=b""):
    """Reads one HTTP response with Content-Length; returns (status, headers, body, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise harness.ConnectionClosed("closed before a response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise harness.ConnectionClosed("closed inside a body")
        rest += chunk
    return status, headers, rest[:n], rest[n:]


def request(method, path, body=b"", extra=""):
    return ("%s %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n" %
            (method, path, len(body), extra)).encode() + body


def publish(topic, data):
    return request("POST", "/publish", json.dumps({"topic": topic, "data": data}).encode())


class KeepAliveTest(ServerTestCase):
    server_opts = {"handshake_timeout_ms": 600}

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=scale(5))
        self.addCleanup(s.close)
        return s

    def test_several_requests_on_one_connection(self):
        """/health, a publish, /metrics and a batch publish share one TCP connection."""
        s = self.connect()
        rest = b""
        s.sendall(request("GET", "/health"))
        st, h, body, rest = read_response(s, rest)
        self.assertEqual((st, json.loads(body)), (200, {"status": "ok"}))
        self.assertNotEqual(h.get("connection"), "close")
        s.sendall(publish("ka.one", 1))
        st, h, body, rest = read_response(s, rest)
        self.assertEqual((st, json.loads(body)), (200, {"seq": 1}))
        s.sendall(request("GET", "/metrics"))
        st, h, body, rest = read_response(s, rest)
        self.assertEqual(st, 200)
        self.assertIn(b"ringcast_publishes_total", body)
        batch = json.dumps([{"topic": "ka.one", "data": 2}, {"topic": "ka.two", "data": 3}])
        s.sendall(request("POST", "/publish", batch.encode()))
        st, h, body, rest = read_response(s, rest)
        self.assertEqual(json.loads(body), {"results": [{"seq": 2}, {"seq": 1}]})

    def test_pipelined_requests_answer_in_order(self):
        """20 publishes and a /health sent in one write come back in order, seqs consecutive."""
        s = self.connect()
        topics = ["pipe.a", "pipe.b", "pipe.c", "pipe.d"]  # spread over both owner shards
        s.sendall(b"".join(publish(topics[i % 4], i) for i in range(20)) +
                  request("GET", "/health"))
        rest, seqs = b"", []
        for i in range(20):
            st, h, body, rest = read_response(s, rest)
            self.assertEqual(st, 200)
            seqs.append(json.loads(body)["seq"])
        self.assertEqual(seqs, [i // 4 + 1 for i in range(20)])
        st, h, body, rest = read_response(s, rest)
        self.assertEqual(json.loads(body), {"status": "ok"})

    def test_connection_close_is_honoured(self):
        """Connection: close gets its answer, then the server closes."""
        s = self.connect()
        s.sendall(request("GET", "/health", extra="Connection: close\r\n"))
        st, h, body, rest = read_response(s)
        self.assertEqual((st, h.get("connection")), (200, "close"))
        self.assertEqual(rest + s.recv(100), b"")

    def test_http10_closes(self):
        """An HTTP/1.0 request without keep-alive closes after its answer."""
        s = self.connect()
        s.sendall(b"GET /health HTTP/1.0\r\nHost: t\r\n\r\n")
        st, h, body, rest = read_response(s)
        self.assertEqual(st, 200)
        self.assertEqual(rest + s.recv(100), b"")

    def test_idle_keepalive_connection_is_closed(self):
        """After an answer, a connection that sends nothing is closed (handshake_timeout_ms)."""
        s = self.connect()
        s.sendall(request("GET", "/health"))
        read_response(s)
        t0 = time.monotonic()
        self.assertEqual(s.recv(100), b"")
        self.assertLess(time.monotonic() - t0, scale(5))

    def test_upgrade_after_a_plain_request(self):
        """A WebSocket upgrade may follow a plain request on the same connection."""
        c = harness.RawClient(self.port)
        self.addCleanup(c.close)
        c.send(request("GET", "/health"))
        self.assertEqual(c.read_response().status, 200)
        c.handshake("/echo")
        c.send_frame(harness.OP_TEXT, b"after keep-alive")
        self.assertEqual(c.recv_message(), (harness.OP_TEXT, b"after keep-alive"))


if __name__ == "__main__":
    harness.main()
