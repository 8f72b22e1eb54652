#!/usr/bin/python3
"""Issue 14: broadcast with two shards under overload must deliver every message to every
subscriber exactly once, in seq order, and no reader may see anything else.

The loss in the issue was the bench's: when one of a subscriber's own sends completed (a pong,
or its close frame at the end of the run), ringcast-bench freed the buffer holding the first
part of a broadcast message still being assembled, so the rest read as an "other" message,
the next one as a gap, and a message that kept only part of its "seq" as a seq jump.

BenchUnderOverload reproduces those conditions with ringcast-bench (JSON mode): server pings
every 50 ms (pongs complete mid-message), receive buffers so few and small that every message
spans several loop turns, 4 KB messages, tiny MPSC rings and frame arena. It fails without the
bench fix. ServerUnderOverload checks the gateway alone with raw subscribers that do not read
while POST /publish batches land: cross-shard rings overflow into the outboxes, the arena
runs out (heap frames), and sends to the full sockets are partial. Gateway started by
harness.py with --shards 2 --pin_shards=false. No timing assertions.
"""
import json
import os
import re
import selectors
import socket
import struct
import subprocess
import unittest

import harness

BENCH = os.environ.get("RINGCAST_BENCH") or os.path.join(harness.REPO, "build", "bin",
                                                         "ringcast-bench")
OVERLOAD = {
    "pin_shards": "false",
    "mpsc_ring_entries": 64,      # the smallest ring: a burst waits in the outbox
    "mpsc_drain_max": 16,         # and comes out 16 items per loop turn
    "frame_arena_bytes": 65536,   # 16 frames of 2 KiB per shard, then heap frames
    "send_queue_age_max_ms": 0,   # a slow reader is slow, not a slow consumer
}


def metrics(port, by_shard=False):
    """{family: sum over labels} from GET /metrics; by_shard: {(family, shard): sum}."""
    status, _, body = harness.http_get(port, "/metrics")
    assert status == 200, status
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            family, _, labels = name.partition("{")
            shard = re.search(r'shard="(\d+)"', labels)
            k = (family, shard.group(1) if shard else None) if by_shard else family
            out[k] = out.get(k, 0) + float(value)
    return out


def bench_broadcast(case, subs, args):
    """Runs ringcast-bench broadcast (1 s, subs subscribers, args added) against case's
    server and asserts every delivery arrived once and in order; (counters, broadcast, why)."""
    p = subprocess.run(
        [BENCH, "broadcast", "--url", case.url("/ws"), "-c", str(subs), "-d", "1", "--rate",
         "0", "--settle", "0", "--sub-ack", "--drain", str(harness.scale(30)), "-q"] + args,
        capture_output=True, text=True, timeout=harness.scale(60))
    line = next((l for l in p.stdout.splitlines() if l.startswith("{")), None)
    case.assertIsNotNone(line, p.stderr)
    j = json.loads(line)
    c, b = j["counters"], j["broadcast"]
    why = "bench exit %d: %s\n%s" % (p.returncode, json.dumps(c), p.stderr[-3000:])
    for k in ("gaps", "missing", "duplicates", "out_of_order", "undelivered",
              "unexpected_closes", "closed_by_server", "protocol_errors"):
        case.assertEqual(c[k], 0, "%s: %s" % (k, why))
    case.assertEqual(p.returncode, 0, why)
    case.assertGreater(b["expected_deliveries"], 0, why)
    case.assertEqual(b["delivered"], b["expected_deliveries"], why)
    return c, b, why


@unittest.skipIf(harness.REF, "drives ringcast's pub/sub protocol and metrics")
@unittest.skipUnless(os.access(BENCH, os.X_OK), "ringcast-bench not built")
class BenchUnderOverload(harness.ServerTestCase):
    shards = 2
    server_opts = dict(OVERLOAD, ping_interval_ms=50)

    def test_every_subscriber_gets_every_message_once_in_order(self):
        subs = 200
        c, b, why = bench_broadcast(self, subs, ["-s", "4000", "--pub-rate", "400",
                                                 "--recv-buf-size", "256", "--recv-bufs", "16",
                                                 "--dump-other", "3"])
        # Nothing but acks besides the broadcasts: one per subscription and per publish.
        self.assertEqual(c["other_msgs"], subs + c["published"], why)
        # The conditions held: pongs went out and the receive ring ran dry mid-message.
        self.assertGreater(c["pings"], 0, why)
        self.assertGreater(c["recv_enobufs"], 0, why)
        m = metrics(self.port)
        self.assertGreater(m["ringcast_arena_exhausted_total"], 0)
        self.assertEqual(m["ringcast_deliveries_total"], b["expected_deliveries"])


class Subscriber:
    """A raw /ws client with a 4 KiB receive buffer, read without blocking by a selector."""

    def __init__(self, port, topic):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
        s.settimeout(harness.scale(5))
        s.connect(("127.0.0.1", port))
        key = harness.new_key()
        s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade"
                   "\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                   % key).encode())
        self.sock, self.buf, self.msgs = s, bytearray(), []
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = bytearray(rest)
        sub = json.dumps({"op": "sub", "topic": topic}).encode()
        s.sendall(harness.encode_frame(harness.OP_TEXT, sub))
        while not self.msgs:
            self.fill()
            self.parse()
        ack = json.loads(self.msgs.pop())
        assert ack.get("op") == "ack" and ack.get("of") == "sub", ack
        s.setblocking(False)

    def fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise harness.ConnectionClosed("server closed a subscriber")
        self.buf += chunk

    def parse(self):
        """Moves every whole text message of buf to msgs (a close or binary frame fails)."""
        b, i = self.buf, 0
        while len(b) - i >= 2:
            op, n, at = b[i] & 0x0F, b[i + 1] & 0x7F, i + 2
            if n == 126:
                n, at = (struct.unpack_from("!H", b, i + 2)[0], i + 4) if len(b) - i >= 4 \
                    else (1 << 62, i)
            elif n == 127:
                n, at = (struct.unpack_from("!Q", b, i + 2)[0], i + 10) if len(b) - i >= 10 \
                    else (1 << 62, i)
            if len(b) < at + n:
                break
            assert op in (harness.OP_TEXT, harness.OP_PING), (
                "unexpected frame opcode %d: %r" % (op, bytes(b[at:at + 200])))
            if op == harness.OP_TEXT:
                self.msgs.append(bytes(b[at:at + n]))
            i = at + n
        del b[:i]


@unittest.skipIf(harness.REF, "checks ringcast's overload metrics")
class ServerUnderOverload(harness.ServerTestCase):
    shards = 2
    server_opts = dict(OVERLOAD, send_queue_bytes_max=16 << 20)

    def subscribers(self, topic):
        """At least 4, and more until each shard holds 2 (SO_REUSEPORT picks the shard), so
        the burst crosses a ring whichever shard owns the topic or takes the POSTs."""
        subs = []
        try:
            for _ in range(64):
                subs.append(Subscriber(self.port, topic))
                m = metrics(self.port, by_shard=True)
                per_shard = [m[("ringcast_subscriptions", k)] for k in ("0", "1")]
                if len(subs) >= 4 and min(per_shard) >= 2:
                    return subs
        except BaseException:
            for s in subs:
                s.sock.close()
            raise
        self.fail("64 connections and a shard still lacks subscribers: %s" % per_shard)

    def test_burst_through_full_rings_and_arena_reaches_everyone_once_in_order(self):
        # More bytes per subscriber than the kernel lets a socket buffer (tcp_wmem's
        # maximum): its queue outgrows the socket while it does not read, so sends are
        # partial and resume mid-frame.
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmem_max = int(f.read().split()[2])
        count = min(max(wmem_max * 5 // 4 // 1024 // 250 * 250, 1000), 8000)
        topic = "issue14.burst"
        subs = self.subscribers(topic)
        readers = len(subs)
        try:
            datas = ["i=%d;" % i + "x" * 1000 for i in range(count)]
            seqs = []
            with harness.RawClient(self.port, timeout=harness.scale(30)) as pub:
                # Batches of 250 (the limit is 256): each one is published in one loop turn,
                # past what a 64-slot ring holds.
                for at in range(0, count, 250):
                    body = json.dumps([{"topic": topic, "data": d}
                                       for d in datas[at:at + 250]]).encode()
                    pub.request("POST", "/publish", headers=[
                        ("Host", "x"), ("Content-Type", "application/json"),
                        ("Content-Length", str(len(body)))], body=body)
                    r = pub.read_response()
                    self.assertEqual(r.status, 200, r.body[:300])
                    seqs += [x["seq"] for x in json.loads(r.body)["results"]]
            self.assertEqual(seqs, list(range(1, count + 1)))
            self.read_all(subs, count)
            for k, s in enumerate(subs):
                got = [json.loads(x) for x in s.msgs]
                self.assertEqual([g["seq"] for g in got], seqs, "subscriber %d" % k)
                self.assertEqual([g["data"] for g in got], datas, "subscriber %d" % k)
        finally:
            for s in subs:
                s.sock.close()
        m = metrics(self.port)
        self.assertGreater(m["ringcast_mpsc_full_total"], 0)
        self.assertGreater(m["ringcast_arena_exhausted_total"], 0)
        self.assertEqual(m["ringcast_deliveries_total"], count * readers)
        self.assertEqual(m["ringcast_slow_drops_total"], 0)

    def read_all(self, subs, count):
        """Reads every subscriber until it holds count messages (bounded by a deadline)."""
        sel = selectors.DefaultSelector()
        for s in subs:
            sel.register(s.sock, selectors.EVENT_READ, s)
        left = len(subs)
        deadline = harness.time.monotonic() + harness.scale(40)
        while left and harness.time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.data
                s.fill()
                s.parse()
                self.assertLessEqual(len(s.msgs), count, "more messages than published")
                if len(s.msgs) == count:
                    sel.unregister(s.sock)
                    left -= 1
        sel.close()
        self.assertEqual(left, 0, "subscribers still short: %s"
                         % [len(s.msgs) for s in subs if len(s.msgs) < count])


def send_json(c, obj):
    c.send_frame(harness.OP_TEXT, json.dumps(obj).encode())


def recv_json(c, timeout=30):
    """The next data message as JSON (pings are set aside); socket.timeout after timeout s."""
    return json.loads(c.recv_message(timeout=harness.scale(timeout), pings=[])[1])


class ShardProbe(harness.ServerTestCase):
    """Learns which shard holds a connection, and which one owns a topic, from the metrics."""
    shards = 2
    server_opts = dict(OVERLOAD, topics_per_second_max=0)  # it learns owners by publishing

    def changed(self, family, act):
        """The shard whose family counter act() changes."""
        before = metrics(self.port, by_shard=True)
        act()
        after = metrics(self.port, by_shard=True)
        hit = [k[1] for k, v in after.items() if k[0] == family and v != before.get(k)]
        self.assertEqual(len(hit), 1, "%s moved on %s" % (family, hit))
        return hit[0]

    def shard_of(self, c):
        topic = "issue14.probe"
        shard = self.changed("ringcast_subscriptions",
                             lambda: (send_json(c, {"op": "sub", "topic": topic}), recv_json(c)))
        send_json(c, {"op": "unsub", "topic": topic})
        self.assertEqual(recv_json(c)["of"], "unsub")
        return shard

    def owner_of(self, c, topic):
        return self.changed("ringcast_topics_owned",
                            lambda: (send_json(c, {"op": "pub", "topic": topic, "data": 0}),
                                     recv_json(c)))

    def clients_on(self, shard, count, elsewhere):
        """count clients on shard; clients met on the other one go to elsewhere (bounded)."""
        out = []
        for _ in range(count * 4 + 64):
            if len(out) == count:
                return out
            c = harness.RawClient.upgraded(self.port, "/ws")
            (out if self.shard_of(c) == shard else elsewhere).append(c)
        self.fail("SO_REUSEPORT put too few connections on shard %s" % shard)

    def a_client_off(self, owner, elsewhere):
        """A client on the shard that is not owner (clients met on owner go to elsewhere)."""
        return self.clients_on("1" if owner == "0" else "0", 1, elsewhere)[0]


@unittest.skipIf(harness.REF, "reads ringcast's per-shard metrics")
class AckThenPublish(ShardProbe):
    """A subscription is acked only once the topic's owner counts the subscriber's shard: a
    publish that follows the ack reaches the subscriber, even while that shard's items to the
    owner wait in its outbox behind a burst (an ack sent at once would let the owner sequence
    publishes before it reads the queued SHARD_SUB, and they would skip the shard)."""

    def test_a_publish_after_the_ack_reaches_the_subscriber(self):
        probe = harness.RawClient.upgraded(self.port, "/ws")
        clients = [probe]
        try:
            # Each name is published once, to learn its owner; the first one's owner is O.
            names = ["issue14.ack.%d" % k for k in range(64)]
            owner = self.owner_of(probe, names[0])
            topics = [names[0]]
            for t in names[1:]:
                if len(topics) < 4 and self.owner_of(probe, t) == owner:
                    topics.append(t)
            self.assertEqual(len(topics), 4, "64 names and 4 do not hash to one shard")
            burst = topics.pop()
            others = []
            # The owner's turns are slow (every burst publish reaches 200 local readers)
            # while it has nothing queued for the other shard, so it reads the publisher.
            fans = self.clients_on(owner, 200, others)
            pub = self.clients_on(owner, 1, others)[0]
            clients += fans + others + [pub]
            for f in fans:
                send_json(f, {"op": "sub", "topic": burst})
                self.assertEqual(recv_json(f)["of"], "sub")
            sub = others[0] if others else self.a_client_off(owner, clients)
            clients.append(sub)
            for topic in topics:
                self.one_trial(sub, pub, topic, burst)
        finally:
            for c in clients:
                c.close()

    def one_trial(self, sub, pub, topic, burst):
        # The burst and the subscription leave in one write: the subscriber's shard queues
        # the burst's 5,000 publishes for the owner, then the SHARD_SUB behind them.
        sub.send(b"".join(harness.encode_frame(harness.OP_TEXT, json.dumps(
            {"op": "pub", "topic": burst, "data": i}).encode()) for i in range(5000))
            + harness.encode_frame(harness.OP_TEXT, json.dumps(
                {"op": "sub", "topic": topic}).encode()))
        while True:
            m = recv_json(sub)
            if m.get("of") == "sub":
                break
            self.assertEqual(m.get("of"), "pub", m)
        self.assertEqual((m["op"], m["topic"]), ("ack", topic), m)
        start = m.get("seq", 0)  # the owner's seq when the subscription began
        for data in ("after-ack", "later"):
            send_json(pub, {"op": "pub", "topic": topic, "data": data})
            self.assertEqual(recv_json(pub)["of"], "pub")
        got = []
        while len(got) < 2:
            try:
                m = recv_json(sub, timeout=10)
            except socket.timeout:
                self.fail("acked on %s, then got %s of the 2 messages published after" % (
                    topic, got))
            if m.get("op") == "msg":
                got.append((m["seq"], m["data"]))
            else:
                self.assertEqual(m.get("of"), "pub", m)
        self.assertEqual(got, [(start + 1, "after-ack"), (start + 2, "later")])
        send_json(sub, {"op": "unsub", "topic": topic})
        while recv_json(sub).get("of") != "unsub":
            pass


@unittest.skipIf(harness.REF, "reads ringcast's per-shard metrics")
class DrainAfterBurst(ShardProbe):
    """SIGTERM while a burst crosses from one shard to the other still ends the process: the
    shard that stops last had its outbox waiting for the one that stopped first, and a turn
    that does not wait used to post no completion (DEFER_TASKRUN), so it spun and never closed
    its connections."""

    def test_drain_right_after_a_cross_shard_burst_ends(self):
        probe = harness.RawClient.upgraded(self.port, "/ws")
        owner = self.owner_of(probe, "issue14.drain")
        clients = [probe]
        sub = self.a_client_off(owner, clients)
        sub.send(b"".join(harness.encode_frame(harness.OP_TEXT, json.dumps(
            {"op": "pub", "topic": "issue14.drain", "data": i}).encode()) for i in range(40000)))
        for c in clients + [sub]:
            c.close()
        rc = self.server.stop()  # fails if it has not exited within 15 s
        self.server.check_exit(rc)
        type(self).server = harness.Server(self.shards, **self.server_opts).start()


if __name__ == "__main__":
    harness.main()
