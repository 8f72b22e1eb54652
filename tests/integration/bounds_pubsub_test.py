"""Pub/sub structure bounds (issue 9): the attacks of the issue at a small scale with small
limits, each asserting its bound, its counter and that the gateway keeps serving.

- Compressed publishes that inflate a thousandfold, to one topic and to several: history
  stays within history_bytes_max per topic and the shard's share of history_total_bytes_max
  (ringcast_history_bytes, evictions by cause), the process RSS stays bounded, and a client
  resuming from an evicted seq gets a gap.
- Tiny publishes to thousands of distinct topics: past topics_max each is answered error 16
  (busy) and counted, the owned topics stay at the limit, RSS bounded; one connection
  creating topics faster than topics_per_second_max is refused the same way.
- Outbox backpressure: 2 shards with tiny cross-shard rings and outboxes, a burst of
  publishes: every publish is either acked or refused as busy, and every acked message
  reaches the subscriber in seq order (nothing sequenced is lost).
- slow_consumer_policy=latest: a reader that reads late ends with the ticker's latest value,
  every skipped seq announced by a gap, seq order kept, never closed.
"""
import json
import os
import socket
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ASAN, OP_CLOSE, OP_TEXT, encode_frame, scale  # noqa: E402
from pubsub_test import compact, kernel_send_bytes_max, metric_sum, metrics  # noqa: E402

DIV = 10 if ASAN else 1


def deflate(data):
    """data as a permessage-deflate payload (raw DEFLATE, sync flush, tail stripped)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Client(harness.RawClient):
    """A raw /ws client that reads JSON messages."""

    def __init__(self, port, deflate=False, rcvbuf=None):
        self.timeout = scale(10)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(self.timeout)
        s.connect(("127.0.0.1", port))
        self.sock = s
        self.buf = bytearray()
        self.eof = False
        hdrs = [("Sec-WebSocket-Extensions", "permessage-deflate")] if deflate else []
        self.handshake("/ws", headers=hdrs)

    def send_json(self, obj):
        self.send_frame(OP_TEXT, compact(obj).encode())

    def recv_json(self, timeout=None):
        while True:
            f = self.recv_frame(timeout=timeout or scale(10))
            if f.opcode == OP_TEXT:
                return json.loads(f.payload)
            if f.opcode == OP_CLOSE:
                raise AssertionError("closed: %r" % f)

    def answers(self, n, timeout=None):
        """The next n acks and errors (msg frames are skipped)."""
        out = []
        while len(out) < n:
            m = self.recv_json(timeout)
            if m.get("op") in ("ack", "error"):
                out.append(m)
        return out


def busy(m):
    return m.get("op") == "error" and m.get("code") == 16


class HistoryBytesTest(harness.ServerTestCase):
    """History bounded by bytes against compressed publishes that inflate 1000x."""
    shards = 2
    # The inflate rate limit (bounds_edge_test) would close the flooding publisher first:
    # off here, so the flood reaches the history bounds under test.
    server_opts = {"history_bytes_max": 512 << 10, "history_total_bytes_max": 2 << 20,
                   "frame_arena_bytes": 0, "inflate_bytes_per_second_max": 0}
    data_bytes = 200 << 10

    def publish_flood(self, c, topics, per_topic):
        data = b'"' + b"a" * self.data_bytes + b'"'
        n = 0
        for i in range(per_topic):
            frames = []
            for t in topics:
                body = b'{"op":"pub","topic":"%s","data":%s}' % (t.encode(), data)
                frames.append(encode_frame(OP_TEXT, deflate(body), rsv=4))
            c.send(b"".join(frames))
            got = c.answers(len(topics))
            self.assertEqual([m["op"] for m in got], ["ack"] * len(topics), got[:2])
            n += len(topics)
        return n

    def test_inflating_floods_keep_history_within_bytes(self):
        """300 compressed publishes of ~1 KiB inflating to 200 KiB (60 MB inflated), to one
        topic then to 8: history bytes stay under the bounds, evictions are counted by cause,
        RSS grows far less than what was published, a resume from seq 1 gets a gap."""
        c = Client(self.port, deflate=True)
        pid = self.server.proc.pid
        rss0 = vm_rss_kb(pid)
        n = self.publish_flood(c, ["flood.one"], 100 // DIV)
        m = metrics(self.port)
        self.assertLessEqual(metric_sum(m, "ringcast_history_bytes"), 512 << 10)
        evicted = metric_sum(m, "ringcast_history_evictions_total", cause="topic_bytes")
        self.assertGreater(evicted, 0)
        topics = ["flood.%d" % i for i in range(8)]
        n += self.publish_flood(c, topics, 25 // DIV)
        m = metrics(self.port)
        held = int(metric_sum(m, "ringcast_history_bytes"))
        rss = vm_rss_kb(pid) - rss0
        print("\n    %d publishes of %d KiB: history %d KiB, RSS +%d KiB"
              % (n, self.data_bytes >> 10, held >> 10, rss), end=" ", flush=True)
        self.assertLessEqual(held, 2 << 20, "history over history_total_bytes_max")
        evicted = metric_sum(m, "ringcast_history_evictions_total", cause="total_bytes")
        self.assertGreater(evicted, 0)
        self.assertLess(rss, 48 << 10, "RSS grew by %d KiB" % rss)
        r = Client(self.port)
        r.send_json({"op": "sub", "topic": "flood.one", "since": 1})
        first = r.recv_json()
        self.assertEqual(first.get("op"), "gap", first)
        self.assertEqual(first.get("from"), 2)
        r.close()
        c.send_json({"op": "pub", "topic": "still.served", "data": 1})
        self.assertEqual(c.answers(1)[0].get("seq"), 1)
        c.close()


class TopicsMaxTest(harness.ServerTestCase):
    """topics_max against tiny publishes to thousands of distinct topics."""
    shards = 2
    server_opts = {"topics_max": 200, "topics_per_second_max": 0}

    def test_distinct_topics_refused_past_topics_max(self):
        """4,000 publishes with ids to distinct topics: exactly the 200 topics of
        topics_max are created (100 per shard), the rest are answered busy and counted, RSS
        stays bounded; existing topics keep working (WebSocket and POST /publish), new
        subscriptions are refused, and POST /publish to a new topic gets 503 with error 16."""
        n = 4000 // DIV
        c = Client(self.port)
        pid = self.server.proc.pid
        rss0 = vm_rss_kb(pid)
        c.send(b"".join(encode_frame(OP_TEXT, compact(
            {"op": "pub", "topic": "t.%d" % i, "data": i, "id": "k%d" % i}))
            for i in range(n)))
        got = c.answers(n, timeout=scale(30))
        acks = [m for m in got if m["op"] == "ack"]
        refused = [m for m in got if busy(m)]
        self.assertEqual(len(acks) + len(refused), n, [m for m in got if not busy(m)][:3])
        self.assertEqual(len(acks), 200)
        m = metrics(self.port)
        self.assertEqual(metric_sum(m, "ringcast_topics_owned"), 200)
        self.assertEqual(metric_sum(m, "ringcast_topics_refused_total"), n - 200)
        rss = vm_rss_kb(pid) - rss0
        self.assertLess(rss, 16 << 10, "RSS grew by %d KiB" % rss)
        c.send_json({"op": "sub", "topic": "fresh.topic"})
        m = c.answers(1)[0]
        self.assertTrue(busy(m), m)
        c.send_json({"op": "pub", "topic": acks[0]["topic"], "data": "again"})
        self.assertEqual(c.answers(1)[0].get("seq"), 2)
        c.close()
        status, body = post_publish(self.port, [{"topic": "brand.new", "data": 1, "id": "b1"}])
        self.assertEqual(status, 503, body)
        self.assertEqual(json.loads(body).get("code"), 16)
        status, body = post_publish(self.port, {"topic": acks[1]["topic"], "data": 2})
        self.assertEqual((status, json.loads(body).get("seq")), (200, 2))


def post_publish(port, obj):
    """POST /publish with obj as the JSON body: (status, body)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scale(10))
    try:
        conn.request("POST", "/publish", body=compact(obj),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class TopicRateTest(harness.ServerTestCase):
    """topics_per_second_max: one connection creating topics in a burst."""
    shards = 2
    server_opts = {"topics_per_second_max": 20}

    def test_burst_of_new_topics_is_rate_limited(self):
        """500 publishes and 100 subscriptions to new topics at once: only about one
        second's worth of the bucket (20 per second elapsed) creates topics, the rest are
        busy and counted; publishing to a topic that exists is never limited."""
        c = Client(self.port)
        start = time.monotonic()
        c.send(b"".join(encode_frame(OP_TEXT, compact(
            {"op": "pub", "topic": "r.%d" % i, "data": i})) for i in range(500)))
        got = c.answers(500)
        created = sum(1 for m in got if m["op"] == "ack")
        refused = sum(1 for m in got if busy(m))
        c.send(b"".join(encode_frame(OP_TEXT, compact({"op": "sub", "topic": "s.%d" % i}))
                        for i in range(100)))
        subs = c.answers(100)
        elapsed = time.monotonic() - start
        sub_ok = sum(1 for m in subs if m["op"] == "ack")
        allowed = 20 + 20 * (elapsed + 1)
        print("\n    created %d topics, %d subscriptions in %.1fs" % (created, sub_ok, elapsed),
              end=" ", flush=True)
        self.assertEqual(created + refused, 500)
        self.assertLessEqual(created + sub_ok, allowed)
        self.assertGreater(refused, 0)
        self.assertTrue(all(busy(m) for m in subs if m["op"] != "ack"), subs[:3])
        m = metrics(self.port)
        self.assertGreaterEqual(metric_sum(m, "ringcast_topics_rate_limited_total"),
                                500 - created + 100 - sub_ok)
        existing = next(m["topic"] for m in got if m["op"] == "ack")
        for i in range(50):
            c.send_json({"op": "pub", "topic": existing, "data": i})
        self.assertTrue(all(m["op"] == "ack" for m in c.answers(50)),
                        "publishing to an existing topic was limited")
        c.close()


class Reader(threading.Thread):
    """Reads a client's messages until stopped: msg (topic, seq), acks and errors."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.c = client
        self.msgs, self.answers = [], []
        self.stop = False
        self.error = None

    def run(self):
        try:
            while not self.stop:
                try:
                    f = self.c.recv_frame(timeout=0.5)
                except socket.timeout:
                    continue
                if f.opcode != OP_TEXT:
                    continue
                m = json.loads(f.payload)
                if m.get("op") == "msg":
                    self.msgs.append((m["topic"], m["seq"], m["data"]))
                else:
                    self.answers.append(m)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


class OutboxTest(harness.ServerTestCase):
    """Bounded outboxes: tiny rings and outboxes, a burst of publishes across shards."""
    shards = 2
    server_opts = {"mpsc_ring_entries": 64, "mpsc_drain_max": 16, "outbox_items_max": 16,
                   "topics_per_second_max": 0}

    def test_burst_is_acked_or_busy_and_nothing_acked_is_lost(self):
        """20,000 publishes over 16 topics in one burst from each of 2 publishers: each is
        acked or refused with busy (counted); the subscriber gets every acked message of
        every topic, seqs 1..N in order with no hole."""
        topics = ["ob.%d" % i for i in range(16)]
        sub = Client(self.port)
        for t in topics:
            sub.send_json({"op": "sub", "topic": t})
        self.assertTrue(all(m["op"] == "ack" for m in sub.answers(len(topics))))
        sreader = Reader(sub)
        sreader.start()
        n = 20000 // DIV
        pubs, readers = [], []
        for k in range(2):
            p = Client(self.port)
            r = Reader(p)
            r.start()
            pubs.append(p)
            readers.append(r)
        for k, p in enumerate(pubs):
            p.send(b"".join(encode_frame(OP_TEXT, compact(
                {"op": "pub", "topic": topics[i % 16], "data": "%d.%d" % (k, i)}))
                for i in range(n)))
        deadline = time.monotonic() + scale(60)
        while time.monotonic() < deadline and sum(len(r.answers) for r in readers) < 2 * n:
            time.sleep(0.1)
        acked = {}
        refused = 0
        for r in readers:
            self.assertIsNone(r.error)
            self.assertEqual(len(r.answers), n)
            for m in r.answers:
                if m["op"] == "ack":
                    acked.setdefault(m["topic"], set()).add(m["seq"])
                else:
                    self.assertTrue(busy(m), m)
                    refused += 1
        total = sum(len(v) for v in acked.values())
        while time.monotonic() < deadline and len(sreader.msgs) < total:
            time.sleep(0.1)
        sreader.stop = True
        for r in readers:
            r.stop = True
        print("\n    %d acked, %d busy" % (total, refused), end=" ", flush=True)
        self.assertIsNone(sreader.error)
        got = {}
        for topic, seq, _ in sreader.msgs:
            got.setdefault(topic, []).append(seq)
        for t, seqs in acked.items():
            self.assertEqual(got.get(t), list(range(1, len(seqs) + 1)), t)
            self.assertEqual(seqs, set(range(1, len(seqs) + 1)), t)
        m = metrics(self.port)
        self.assertEqual(metric_sum(m, "ringcast_outbox_refusals_total"), refused)
        self.assertGreater(refused, 0, "the burst never filled an outbox")
        for c in pubs + [sub]:
            c.close()


class LatestPolicyTest(harness.ServerTestCase):
    """slow_consumer_policy=latest: conflation for a reader that reads late."""
    shards = 2
    server_opts = {"slow_consumer_policy": "latest", "send_queue_bytes_max": 4096}
    msg_bytes = 1024

    def test_late_reader_gets_latest_value_with_gaps(self):
        """A ticker publishes well past what the kernel and the queue hold for a reader that
        does not read; when it reads, its stream is gap/msg in seq order covering 1..N
        exactly, ending with the latest value; it was never closed; conflations counted."""
        n = 2 * (kernel_send_bytes_max() + 4096) // self.msg_bytes
        slow = Client(self.port, rcvbuf=4096)
        slow.send_json({"op": "sub", "topic": "ticker"})
        self.assertEqual(slow.recv_json().get("op"), "ack")
        p = Client(self.port)
        pad = "x" * self.msg_bytes
        # Rounds small enough that the publisher's own acks stay under its queue limit.
        for base in range(0, n, 16):
            k = min(16, n - base)
            p.send(b"".join(encode_frame(OP_TEXT, compact(
                {"op": "pub", "topic": "ticker", "data": {"v": base + i, "p": pad}}))
                for i in range(k)))
            self.assertTrue(all(m["op"] == "ack" for m in p.answers(k)))
        m = metrics(self.port)
        self.assertGreater(metric_sum(m, "ringcast_conflations_total"), 0)
        last, gaps, msgs, value = 0, 0, 0, None
        while last < n:
            ev = slow.recv_json()
            if ev["op"] == "gap":
                self.assertEqual(ev["from"], last + 1, ev)
                self.assertGreaterEqual(ev["to"], ev["from"])
                last = ev["to"]
                gaps += 1
            else:
                self.assertEqual(ev["op"], "msg", ev)
                self.assertEqual(ev["seq"], last + 1, "seq order")
                last = ev["seq"]
                value = ev["data"]["v"]
                msgs += 1
        print("\n    %d published: %d delivered, %d gaps" % (n, msgs, gaps), end=" ", flush=True)
        self.assertEqual(last, n)
        self.assertEqual(value, n - 1, "the latest value arrives last")
        self.assertGreater(gaps, 0)
        self.assertLess(msgs, n)
        m = metrics(self.port)
        closed = metric_sum(m, "ringcast_connections_closed_total", reason="slow_consumer")
        self.assertEqual(closed, 0)
        slow.close()
        p.close()


if __name__ == "__main__":
    harness.main(budget_s=240)
