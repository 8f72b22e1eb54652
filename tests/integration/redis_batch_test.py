"""Batched publishes of the Redis engine (issue 10): a loop turn's publishes to one Redis go in
one EVALSHA whose script answers each item. A batch mixing several topics, duplicates (of an
earlier publish and within the batch) and an item Redis refuses answers every publisher with
its own ack or error, in order, and delivers only what was stored; a redis-server killed while
batches are in flight acks nothing it did not store.
"""

import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import RawClient, encode_frame, scale  # noqa: E402
from redis_cluster_test import Client, RedisTestCase, health, http_publish, node  # noqa: E402

PREFIX = "ringcast:"


def evalsha_calls(redis):
    """How many EVALSHA calls redis-server ran (INFO commandstats)."""
    info = redis.command("INFO", "commandstats").decode()
    m = re.search(r"cmdstat_evalsha:calls=(\d+)", info)
    return int(m.group(1)) if m else 0


def metric(port, name):
    """The sum of a counter's samples on /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=scale(5)) as r:
        body = r.read().decode()
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def hash_seq(redis, topic):
    """The last seq the topic's hash holds."""
    return int(re.findall(rb"\$\d+\r\n(\d+)\r\n", redis.command("HGET", PREFIX + "{%s}.m" % topic,
                                                              "s"))[0])


def stream_last_seq(redis, topic):
    """The seq of the newest message the topic's stream holds (its newest entry's payload:
    "<seq> ..." or "<seq>:<n> ..."), 0 if none."""
    reply = redis.command("XREVRANGE", PREFIX + "{%s}.x" % topic, "+", "-", "COUNT", "1")
    m = re.search(rb"\$1\r\nd\r\n\$\d+\r\n(\d+)(?::(\d+))? ", reply)
    return int(m.group(1)) + int(m.group(2) or 1) - 1 if m else 0


async def until_seqs(c, last):
    """Receives until c has had seq last[t] of every topic t."""
    def done(_):
        got = {}
        for m in c.seen:
            if m.get("op") == "msg":
                got[m["topic"]] = max(got.get(m["topic"], 0), m["seq"])
        return all(got.get(t, 0) >= n for t, n in last.items())

    if not done(None):
        await c.until(done)


class ChannelSpy:
    """A plain Redis subscriber of channels, counting the messages each channel message
    carries (1, or n of a "<seq>:<n> ..." payload)."""

    def __init__(self, redis, channels):
        self.sock = socket.create_connection(("127.0.0.1", redis.port), timeout=scale(5))
        args = [b"SUBSCRIBE"] + [c.encode() for c in channels]
        self.sock.sendall(b"*%d\r\n" % len(args) +
                          b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        self.buf = b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not chunk:
                return
            self.buf += chunk

    def counts(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()
        return [int(n) if n else 1 for n in
                re.findall(rb"\r\n\$\d+\r\n\d+(?::(\d+))? \d+ ", self.buf)]


class RawPublisher:
    """A /ws client that sends many publishes in one write, so they reach the owner together
    and leave in one script call."""

    def __init__(self, port):
        self.c = RawClient(port, timeout=scale(10))
        self.c.handshake("/ws")

    def burst(self, reqs):
        self.c.send(b"".join(encode_frame(1, json.dumps(r).encode()) for r in reqs))

    def answers(self, count):
        """The next count acks or errors, in arrival order."""
        out = []
        while len(out) < count:
            _, payload = self.c.recv_message()
            m = json.loads(payload)
            if m.get("op") == "error" or (m.get("op") == "ack" and m.get("of") == "pub"):
                out.append(m)
        return out

    def close(self):
        self.c.close()


class Batches(RedisTestCase):
    def test_batch_answers_each_publisher_in_order(self):
        """Items on three topics, a duplicate of an earlier id, a duplicate within the batch,
        and items of a topic whose stream Redis refuses (a key of the wrong type): each gets
        its own answer in order, seqs per topic consecutive, refused ones never delivered."""
        nodes = self.start_nodes(1, self.start_redis(), shards=1)
        redis = self.redis[0]
        port = nodes[0].port

        async def run():
            sub = await Client.connect(port)
            for t in ("a", "b", "bad"):
                await sub.sub(t)
            pub = RawPublisher(port)
            pub.burst([{"op": "pub", "topic": "a", "data": "first", "id": "x1"},
                       {"op": "pub", "topic": "bad", "data": "stored", "id": "y0"}])
            self.assertEqual([a.get("seq") for a in pub.answers(2)], [1, 1])
            # XADD on this stream now fails (WRONGTYPE): Redis refuses the item alone.
            self.assertTrue(redis.command("SET", PREFIX + "{bad}.x", "broken").startswith(b"+OK"))
            reqs = []
            for i in range(24):
                t = ("a", "b", "bad")[i % 3]
                reqs.append({"op": "pub", "topic": t, "data": i, "id": "k%d" % i})
            reqs.insert(5, {"op": "pub", "topic": "a", "data": "again", "id": "x1"})
            reqs.insert(9, {"op": "pub", "topic": "b", "data": "twice", "id": "k1"})
            calls = evalsha_calls(redis)
            pub.burst(reqs)
            answers = await asyncio.get_running_loop().run_in_executor(
                None, pub.answers, len(reqs))
            batches = evalsha_calls(redis) - calls
            pub.close()
            seq = {"a": 1, "b": 0}
            for req, ans in zip(reqs, answers):
                if req["topic"] == "bad":
                    self.assertEqual(ans["op"], "error", (req, ans))
                    self.assertEqual(ans["code"], 16, ans)
                    continue
                self.assertEqual(ans["op"], "ack", (req, ans))
                self.assertEqual((ans["topic"], ans.get("id")), (req["topic"], req["id"]))
                if req["data"] in ("again", "twice"):  # a duplicate: acked without a seq
                    self.assertNotIn("seq", ans, req)
                    continue
                seq[req["topic"]] += 1
                self.assertEqual(ans["seq"], seq[req["topic"]], (req, ans))
            self.assertLess(batches, len(reqs), "publishes did not share script calls")
            self.assertEqual(seq, {"a": 9, "b": 8})
            await sub.until(lambda m: m.get("op") == "msg" and m["data"] == 21)
            await sub.until(lambda m: m.get("op") == "msg" and m["data"] == 22)
            await sub.drain()
            for t in ("a", "b"):
                got = [(m["seq"], m["data"]) for m in sub.msgs(t)]
                want = ["first"] * (t == "a") + [r["data"] for r in reqs if r["topic"] == t and
                                                 r["data"] not in ("again", "twice")]
                self.assertEqual([d for _, d in got], want)
                self.assertEqual([s for s, _ in got], list(range(1, len(got) + 1)))
            self.assertEqual([m["data"] for m in sub.msgs("bad")], ["stored"])
            await sub.close()

        asyncio.run(run())
        deadline = time.monotonic() + scale(10)  # shards publish their counters periodically
        while metric(port, "ringcast_redis_publish_batches_total") == 0:
            self.assertLess(time.monotonic(), deadline, "no publish batch counted")
            time.sleep(0.1)
        self.assertGreater(metric(port, "ringcast_redis_publish_batched_total"),
                           metric(port, "ringcast_redis_publish_batches_total"))
        # The links' buffers are charged (the books returning to 0 at exit is asserted by
        # debug builds, checked by stop_and_check).
        self.assertGreater(metric(port, 'ringcast_memory_bytes{category="engine"}'), 0)
        self.check_alive()

    def test_redis_killed_mid_batch_acks_nothing_it_did_not_store(self):
        """Bursts of publishes in flight when redis-server (with an append-only file fsynced
        on every write) is killed: every acked message is in the stream after the restart,
        the rest answered busy; nothing hangs."""
        redis = harness.RedisServer(extra=["--appendonly", "yes", "--appendfsync", "always",
                                           "--dir", self.tmpdir()])
        self.redis = [redis.start()]
        nodes = self.start_nodes(1, redis.address, shards=2)
        pubs = [RawPublisher(nodes[0].port) for _ in range(2)]
        sent, answers = 0, []
        for burst in range(40):
            for p in pubs:
                reqs = [{"op": "pub", "topic": "t%d" % (i % 4), "data": sent + i,
                         "id": "d%d" % (sent + i)} for i in range(50)]
                p.burst(reqs)
                sent += len(reqs)
            if burst == 3:
                redis.kill()
            for p in pubs:
                answers.extend(p.answers(50))
        for p in pubs:
            p.close()
        acked = [a for a in answers if a["op"] == "ack"]
        refused = [a for a in answers if a["op"] == "error"]
        self.assertTrue(acked and refused, "expected acks before the kill and refusals after")
        for a in refused:
            self.assertEqual(a["code"], 16, a)
        redis.start()
        last = {}
        for t in range(4):
            reply = redis.command("HMGET", PREFIX + "{t%d}.m" % t, "e", "s")
            e, s = re.findall(rb"\$\d+\r\n(\d+)\r\n", reply)
            last["t%d" % t] = (e.decode(), int(s))
            self.assertEqual(stream_last_seq(redis, "t%d" % t), int(s), "stream and seq disagree")
        for a in acked:
            e, s = last[a["topic"]]
            self.assertEqual(int(a["epoch"], 16), int(e), a)
            self.assertLessEqual(a["seq"], s, "acked %r but Redis does not hold it" % a)
        self.check_alive()

    def test_several_messages_per_channel_message_across_nodes(self):
        """A batch's publishes to one topic leave Redis in one channel message carrying them
        all: subscribers on three nodes (both shards of each) get every message once, in
        order, with the same seq everywhere; a later resume from the middle of a batch gets
        the rest from the stream."""
        nodes = self.start_nodes(3, self.start_redis(), shards=2)
        topics = ["m%d" % i for i in range(4)]
        spy = ChannelSpy(self.redis[0], [PREFIX + t for t in topics])

        async def run():
            subs = []
            for n in nodes:
                for _ in range(2):  # the shards take connections in turn
                    c = await Client.connect(n.port)
                    for t in topics:
                        await c.sub(t)
                    subs.append(c)
            pub = RawPublisher(nodes[0].port)
            reqs = [{"op": "pub", "topic": topics[i % 4], "data": i} for i in range(400)]
            for k in range(0, len(reqs), 100):
                pub.burst(reqs[k:k + 100])
            answers = await asyncio.get_running_loop().run_in_executor(
                None, pub.answers, len(reqs))
            pub.close()
            self.assertEqual([a["op"] for a in answers], ["ack"] * len(reqs))
            for t in topics:
                seqs = [a["seq"] for a in answers if a["topic"] == t]
                self.assertEqual(seqs, list(range(1, 101)), t)
            for c in subs:
                await until_seqs(c, {t: 100 for t in topics})
            for c in subs:
                await c.drain()
                for t in topics:
                    got = [(m["seq"], m["data"]) for m in c.msgs(t)]
                    want = [r["data"] for r in reqs if r["topic"] == t]
                    self.assertEqual(got, list(zip(range(1, 101), want)), t)
                await c.close()
            # Nobody follows the topics any more: a resume from the middle of a stream entry
            # (several messages each) is served from Redis.
            c = await Client.connect(nodes[1].port)
            await c.sub("m0", since=37)
            await until_seqs(c, {"m0": 100})
            await c.drain()
            want = [r["data"] for r in reqs if r["topic"] == "m0"][37:]
            self.assertEqual([(m["seq"], m["data"]) for m in c.msgs("m0")],
                             list(zip(range(38, 101), want)))
            await c.close()

        asyncio.run(run())
        self.assertTrue(any(n > 1 for n in spy.counts()), "no channel message held several")
        self.check_alive()

    def test_big_batch_mixing_topics(self):
        """1000 publishes over 50 topics in one write (redis_publish_batch_max 1024), some
        with ids and duplicates among them: a few script calls; each answer in order, seqs
        consecutive per topic, every stored message delivered once."""
        nodes = self.start_nodes(1, self.start_redis(), shards=1, redis_publish_batch_max=1024)
        port = nodes[0].port

        async def run():
            sub = await Client.connect(port)
            topics = ["big%d" % i for i in range(50)]
            for t in topics:
                await sub.sub(t)
            reqs = []
            for i in range(1000):
                r = {"op": "pub", "topic": topics[(i * 7) % 50], "data": i}
                if i % 3 == 0:
                    r["id"] = "i%d" % (i % 600)  # 600..999: a duplicate of an earlier id
                reqs.append(r)
            pub = RawPublisher(port)
            calls = evalsha_calls(self.redis[0])
            pub.burst(reqs)
            answers = await asyncio.get_running_loop().run_in_executor(
                None, pub.answers, len(reqs))
            pub.close()
            self.assertLess(evalsha_calls(self.redis[0]) - calls, 50)
            seq, ids, stored = {}, set(), {}
            for req, ans in zip(reqs, answers):
                self.assertEqual((ans["op"], ans["topic"]), ("ack", req["topic"]), ans)
                key = (req["topic"], req.get("id"))  # ids are scoped by topic
                if key in ids:
                    self.assertNotIn("seq", ans, req)
                    continue
                if "id" in req:
                    ids.add(key)
                seq[req["topic"]] = seq.get(req["topic"], 0) + 1
                self.assertEqual(ans["seq"], seq[req["topic"]], (req, ans))
                stored.setdefault(req["topic"], []).append(req["data"])
            await until_seqs(sub, seq)
            await sub.drain()
            for t in topics:
                self.assertEqual([m["data"] for m in sub.msgs(t)], stored[t], t)
            await sub.close()

        asyncio.run(run())
        self.check_alive()

    def test_script_failure_partway_keeps_what_was_stored(self):
        """A topic whose hash Redis cannot read (a key of the wrong type) in the middle of a
        batch: its items are refused, the topics before and after it are stored with their
        seq written back, so the stream and the seq agree and later publishes go on."""
        nodes = self.start_nodes(1, self.start_redis(), shards=1)
        redis, port = self.redis[0], nodes[0].port
        self.assertTrue(redis.command("SET", PREFIX + "{bad}.m", "x").startswith(b"+OK"))

        async def run():
            sub = await Client.connect(port)
            for t in ("a", "c"):
                await sub.sub(t)
            pub = RawPublisher(port)
            reqs = [{"op": "pub", "topic": t, "data": "%s%d" % (t, i)}
                    for i in range(3) for t in ("a", "bad", "c")]
            pub.burst(reqs)
            answers = await asyncio.get_running_loop().run_in_executor(
                None, pub.answers, len(reqs))
            for req, ans in zip(reqs, answers):
                if req["topic"] == "bad":
                    self.assertEqual((ans["op"], ans["code"]), ("error", 16), ans)
                else:
                    self.assertEqual(ans["op"], "ack", ans)
            for t in ("a", "c"):
                self.assertEqual([a["seq"] for r, a in zip(reqs, answers) if r["topic"] == t],
                                 [1, 2, 3])
                self.assertEqual(hash_seq(redis, t), 3)
                self.assertEqual(stream_last_seq(redis, t), 3)
            redis.command("DEL", PREFIX + "{bad}.m")
            pub.burst([{"op": "pub", "topic": "a", "data": "a3"},
                       {"op": "pub", "topic": "bad", "data": "bad3"}])
            self.assertEqual([a.get("seq") for a in pub.answers(2)], [4, 1])
            pub.close()
            await sub.until(lambda m: m.get("topic") == "a" and m.get("seq") == 4)
            await sub.drain()
            self.assertEqual([m["data"] for m in sub.msgs("a")], ["a0", "a1", "a2", "a3"])
            self.assertEqual([m["data"] for m in sub.msgs("c")], ["c0", "c1", "c2"])
            await sub.close()

        asyncio.run(run())
        self.check_alive()

    def test_script_flushed_mid_stream_keeps_publish_order(self):
        """SCRIPT FLUSH while batches are in flight: the batches refused NOSCRIPT go again
        once the script is loaded, before any newer one, so a publisher's messages to a
        topic keep their order in seq; none is lost or refused."""
        nodes = self.start_nodes(1, self.start_redis(), shards=1, redis_publish_batch_max=16)
        redis, port = self.redis[0], nodes[0].port

        async def run():
            sub = await Client.connect(port)
            await sub.sub("o")
            pub = RawPublisher(port)
            reqs = [{"op": "pub", "topic": "o", "data": i} for i in range(600)]
            for k in range(0, len(reqs), 100):
                pub.burst(reqs[k:k + 100])
                redis.command("SCRIPT", "FLUSH")
            answers = await asyncio.get_running_loop().run_in_executor(
                None, pub.answers, len(reqs))
            pub.close()
            self.assertEqual([a.get("seq") for a in answers], list(range(1, 601)))
            await sub.until(lambda m: m.get("seq") == 600)
            await sub.drain()
            self.assertEqual([m["data"] for m in sub.msgs("o")], list(range(600)))
            await sub.close()

        asyncio.run(run())
        self.check_alive()

    def tmpdir(self):
        d = os.path.join(os.environ.get("TMPDIR", "/tmp"), "rc-batch-%d-%d" % (os.getpid(),
                                                                            time.monotonic_ns()))
        os.makedirs(d)
        return d


class FakeRedis:
    """A TCP server that answers whatever a connection sends first with one of replies, in
    turn per connection: a broken or hostile Redis."""

    def __init__(self, replies):
        self.replies = replies
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.served = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                try:
                    c.settimeout(scale(5))
                    c.recv(65536)
                    c.sendall(self.replies[self.served % len(self.replies)])
                    self.served += 1
                    c.recv(65536)  # until the node hangs up
                except OSError:
                    pass

    def close(self):
        self.sock.close()


class HostileRedis(RedisTestCase):
    def test_huge_declared_replies_fail_the_link_cleanly(self):
        """A "Redis" answering with an array of 993,399,379 elements (7.9 GB of pointers to
        hiredis) or a string of a GB that keeps coming: the node allocates nothing of it past
        redis_reply_bytes_max, drops the connection, counts it, stays up and degraded, and
        publishes are refused rather than acked."""
        fake = FakeRedis([b"*993399379\r\n",
                          b"$1000000000\r\n" + b"x" * 200000])
        try:
            self.nodes = [node("127.0.0.1:%d" % fake.port, shards=1,
                               redis_reply_bytes_max=65536, redis_backlog_bytes_max=65536)]
            port = self.nodes[0].port
            deadline = time.monotonic() + scale(15)
            while metric(port, "ringcast_redis_reply_oversize_total") < 2:
                self.assertLess(time.monotonic(), deadline, "no oversize reply counted")
                time.sleep(0.1)
            self.assertGreaterEqual(fake.served, 2)
            self.assertEqual(health(port)[0], 503)
            self.assertEqual(http_publish(port, "t", 1)[0], 503)
            self.check_alive()
        finally:
            fake.close()


if __name__ == "__main__":
    harness.main()
