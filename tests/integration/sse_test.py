"""GET /sse, the Server-Sent Events fallback of the pub/sub protocol: a stream of several
topics gets each sub's ack, then every message as an event whose id is topic~seq~epoch and
whose data is the very JSON a /ws subscriber receives; the browser's Last-Event-ID resumes its
topic (replay after it, or a reset from another epoch) and `since` resumes several; heartbeat
comments keep an idle stream alive; one SSE variant is built per publish, not per stream; a
stream that stops reading is closed as a slow consumer with a last close event (1013);
streams end with a last close event when the gateway drains; bad requests get 400, POST 405,
a missing token 401; the metrics count streams."""
import importlib.util
import json
import os
import re
import socket
import urllib.request

import harness
from harness import ServerTestCase, scale

spec = importlib.util.spec_from_file_location(
    "mint", os.path.join(harness.REPO, "tools", "mint-token.py"))
mint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mint)


def publish(port, topic, data, token=None):
    req = urllib.request.Request("http://127.0.0.1:%d/publish" % port,
                                 data=json.dumps({"topic": topic, "data": data}).encode(),
                                 method="POST")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=scale(5)) as r:
        return json.loads(r.read())["seq"]


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=scale(5)) as r:
        text = r.read().decode()
    return sum(int(v) for v in re.findall(r"^%s\{[^}]*\} (\d+)$" % name, text, re.M))


class Stream:
    """A GET /sse over a raw socket: the response head, then events (comments kept apart)."""

    def __init__(self, port, query, headers=()):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=scale(10))
        extra = "".join("%s: %s\r\n" % h for h in headers)
        self.sock.sendall(("GET /sse?%s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (query, extra)).encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if l)}
        self.comments = 0

    def _until(self, sep):
        while sep not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise harness.ConnectionClosed("stream ended")
            self.buf += chunk
        out, self.buf = self.buf.split(sep, 1)
        return out

    def event(self):
        """The next event as (id or None, parsed data); comment-only blocks are counted."""
        while True:
            block = self._until(b"\n\n").decode()
            ev_id, data = None, []
            for line in block.split("\n"):
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("id: "):
                    ev_id = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
            if data:
                return ev_id, json.loads("\n".join(data))

    def body(self):
        """What is left until the server closes (an error answer's body)."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return self.buf
            self.buf += chunk

    def close(self):
        self.sock.close()


class SseTest(ServerTestCase):
    server_opts = {"sse_heartbeat_ms": 200}

    def stream(self, query, headers=()):
        s = Stream(self.port, query, headers)
        self.addCleanup(s.close)
        return s

    def acked(self, query, topics, headers=()):
        """A stream whose subscriptions were all answered: {topic: ack or reset}."""
        s = self.stream(query, headers)
        self.assertEqual(s.status, 200)
        answers = {}
        while len(answers) < len(topics):
            _, m = s.event()
            self.assertIn(m["op"], ("ack", "reset"))
            answers[m["topic"]] = m
        return s, answers

    def test_stream_of_two_topics(self):
        """Acks then messages; ids carry topic~seq~epoch; data is the /ws envelope."""
        s, acks = self.acked("topics=sse.a,sse.b", ["sse.a", "sse.b"])
        self.assertEqual(s.headers["content-type"], "text/event-stream")
        self.assertEqual(s.headers["cache-control"], "no-cache")
        self.assertEqual(acks["sse.a"]["of"], "sub")
        self.assertEqual(publish(self.port, "sse.a", {"x": 1}), 1)
        self.assertEqual(publish(self.port, "sse.b", [1, "two\nlines"]), 1)
        self.assertEqual(publish(self.port, "sse.a", "three"), 2)
        got = [s.event() for _ in range(3)]
        ea, eb = acks["sse.a"]["epoch"], acks["sse.b"]["epoch"]
        self.assertEqual(got, [
            ("sse.a~1~" + ea, {"op": "msg", "topic": "sse.a", "seq": 1, "data": {"x": 1}}),
            ("sse.b~1~" + eb, {"op": "msg", "topic": "sse.b", "seq": 1, "data": [1, "two\nlines"]}),
            ("sse.a~2~" + ea, {"op": "msg", "topic": "sse.a", "seq": 2, "data": "three"}),
        ])

    def test_last_event_id_resumes_with_replay(self):
        """A browser reconnecting with Last-Event-ID gets what it missed, then the ack."""
        s, acks = self.acked("topics=sse.resume", ["sse.resume"])
        for i in range(1, 4):
            publish(self.port, "sse.resume", i)
        ids = [s.event()[0] for _ in range(3)]
        s.close()
        for i in range(4, 7):
            publish(self.port, "sse.resume", i)
        s2 = self.stream("topics=sse.resume", [("Last-Event-ID", ids[-1])])
        got = [s2.event() for _ in range(4)]
        self.assertEqual([m["data"] for _, m in got[:3]], [4, 5, 6])
        self.assertEqual([m["seq"] for _, m in got[:3]], [4, 5, 6])
        self.assertEqual(got[3][1], {"op": "ack", "of": "sub", "topic": "sse.resume", "seq": 6,
                                     "epoch": acks["sse.resume"]["epoch"]})

    def test_foreign_epoch_gets_reset_and_since_resumes_several(self):
        """Last-Event-ID of another epoch: reset; since= resumes each of several topics."""
        s, acks = self.acked("topics=sse.r1,sse.r2", ["sse.r1", "sse.r2"])
        for t in ("sse.r1", "sse.r2"):
            publish(self.port, t, 1)
            publish(self.port, t, 2)
        s.close()
        _, answers = self.acked("topics=sse.r1", ["sse.r1"],
                                [("Last-Event-ID", "sse.r1~2~0123456789abcdef")])
        self.assertEqual(answers["sse.r1"]["op"], "reset")
        self.assertEqual(answers["sse.r1"]["seq"], 2)
        since = ",".join("%s~1~%s" % (t, acks[t]["epoch"]) for t in ("sse.r1", "sse.r2"))
        s3 = self.stream("topics=sse.r1,sse.r2&since=" + since)
        seen = {}
        while len(seen) < 4:
            ev_id, m = s3.event()
            seen[(m["topic"], m["op"])] = m.get("seq")
        self.assertEqual(seen, {("sse.r1", "msg"): 2, ("sse.r2", "msg"): 2,
                                ("sse.r1", "ack"): 2, ("sse.r2", "ack"): 2})

    def test_heartbeat_comments(self):
        """An idle stream gets comment lines (sse_heartbeat_ms) and stays open."""
        s, _ = self.acked("topics=sse.idle", ["sse.idle"])
        while s.comments < 2:
            s._until(b"\n\n")
            s.comments += 1
        publish(self.port, "sse.idle", "still here")
        self.assertEqual(s.event()[1]["data"], "still here")

    def test_bad_requests(self):
        """No topics, a bad topic, a bad since: 400; POST: 405; counted."""
        before = metric(self.port, "ringcast_sse_refused_total")
        for q in ("", "topics=", "topics=a%20b", "topics=a&since=b~1"):
            s = self.stream(q)
            self.assertEqual(s.status, 400, q)
            s.close()
        c = socket.create_connection(("127.0.0.1", self.port), timeout=scale(5))
        c.sendall(b"POST /sse?topics=a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        self.assertIn(b" 405 ", c.recv(4096))
        c.close()
        self.assertEqual(metric(self.port, "ringcast_sse_refused_total") - before, 4)


class SseOneShardTest(ServerTestCase):
    shards = 1

    def test_one_variant_per_publish_and_drain_close(self):
        """Five streams on one shard share each publish's SSE variant; a drain ends every
        stream with a close event (1001) after what was sent."""
        streams = []
        for _ in range(5):
            s = Stream(self.port, "topics=sse.fan")
            self.addCleanup(s.close)
            s.event()  # the ack
            streams.append(s)
        self.assertEqual(metric(self.port, "ringcast_sse_open"), 5)
        for i in range(10):
            publish(self.port, "sse.fan", i)
        for s in streams:
            self.assertEqual([s.event()[1]["data"] for _ in range(10)], list(range(10)))
        self.assertEqual(metric(self.port, "ringcast_sse_variants_total"), 10)
        self.assertEqual(metric(self.port, "ringcast_sse_streams_total"), 5)
        self.server.stop_and_check()
        for s in streams:
            self.assertEqual(s.event()[1], {"op": "close", "code": 1001,
                                            "reason": "server shutting down"})
            self.assertEqual(s.body(), b"")
        type(self).server = harness.Server(self.shards, **self.server_opts).start()


class SseSlowConsumerTest(ServerTestCase):
    server_opts = {"send_queue_bytes_max": 65536, "close_timeout_ms": 60000}

    def test_stream_that_does_not_read_is_closed(self):
        """A stream whose reader stalls is closed like a slow WebSocket (counted as
        slow_consumer): its backlog is dropped and its last event says 1013."""
        s = Stream(self.port, "topics=sse.slow")
        self.addCleanup(s.close)
        s.event()
        big = "x" * 60000
        for _ in range(400):  # 24 MB: more than loopback's socket buffers hold
            publish(self.port, "sse.slow", big)
        last = None
        try:
            while True:
                last = s.event()[1]
        except harness.ConnectionClosed:
            pass
        self.assertEqual((last["op"], last.get("code")), ("close", 1013), str(last)[:200])
        self.assertEqual(metric(self.port, "ringcast_sse_open"), 0)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port,
                                    timeout=scale(5)) as r:
            text = r.read().decode()
        self.assertEqual(sum(int(v) for v in re.findall(
            r'^ringcast_connections_closed_total\{[^}]*reason="slow_consumer"[^}]*\} (\d+)$',
            text, re.M)), 1)


SECRET = "sse-secret-of-at-least-32-bytes-long"


class SseAuthTest(ServerTestCase):
    server_opts = {"token_hmac_secret": SECRET}

    def test_token_required_and_its_rights(self):
        """Without a token 401; with ?token= the stream runs its topics the token's subs
        allow, and the others get error 15 (counted)."""
        s = Stream(self.port, "topics=sse.auth")
        self.addCleanup(s.close)
        self.assertEqual(s.status, 401)
        tok = mint.mint(SECRET, sub="u1", subs=["sse.auth"], pubs=[">"])
        before = metric(self.port, "ringcast_subscribes_forbidden_total")
        s2 = Stream(self.port, "topics=sse.auth,sse.other&token=" + tok)
        self.addCleanup(s2.close)
        self.assertEqual(s2.status, 200)
        got = {s2.event()[1]["op"] for _ in range(2)}
        self.assertEqual(got, {"ack", "error"})
        self.assertEqual(metric(self.port, "ringcast_subscribes_forbidden_total") - before, 1)
        publish(self.port, "sse.other", 0, token=tok)
        publish(self.port, "sse.auth", 1, token=tok)
        self.assertEqual(s2.event()[1]["data"], 1)


if __name__ == "__main__":
    harness.main()
