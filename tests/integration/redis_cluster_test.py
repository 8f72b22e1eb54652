"""The Redis engine (issue 10) with real processes on loopback: our own redis-server processes
(harness.RedisServer) and several ringcast nodes (engine = redis). Three nodes deliver every
message once, in order, with the same seq everywhere, whichever node took the publish (WS or
POST /publish); a client resumes with since on another node; redis-server killed with -9 in
the middle of a publish stream and restarted: no crash, refusals during the outage, nothing
acked lost, and what subscribers missed is an explicit gap or reset; a node killed, its
clients resume on the others; two Redis instances, one down affects only its topics.
"""

import asyncio
import http.client
import json
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import RedisServer, Server, scale  # noqa: E402

import websockets  # noqa: E402

PREFIX = "ringcast:"


def node(redis_addresses, shards=2, **opts):
    opts.setdefault("redis_reconnect_min_ms", 20)
    opts.setdefault("redis_reconnect_max_ms", 200)
    return Server(shards, engine="redis", redis_addresses=redis_addresses, **opts).start()


def http_publish(port, topic, data, id=None):
    body = {"topic": topic, "data": data}
    if id is not None:
        body["id"] = id
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scale(10))
    c.request("POST", "/publish", body=json.dumps(body))
    r = c.getresponse()
    out = (r.status, json.loads(r.read() or b"null"))
    c.close()
    return out


def health(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scale(10))
    c.request("GET", "/health")
    r = c.getresponse()
    out = (r.status, json.loads(r.read()))
    c.close()
    return out


def wait_healthy(ports, timeout=10):
    deadline = time.monotonic() + scale(timeout)
    while time.monotonic() < deadline:
        if all(health(p)[0] == 200 for p in ports):
            return
        time.sleep(0.05)
    raise AssertionError("nodes not healthy: %r" % [health(p) for p in ports])


class Client:
    """A /ws client that keeps everything it receives, by topic."""

    def __init__(self, ws):
        self.ws = ws
        self.seen = []

    @classmethod
    async def connect(cls, port):
        return cls(await websockets.connect("ws://127.0.0.1:%d/ws" % port, max_size=None))

    async def recv(self, timeout=10):
        m = json.loads(await asyncio.wait_for(self.ws.recv(), scale(timeout)))
        self.seen.append(m)
        return m

    async def until(self, pred, timeout=10):
        """Receives until pred(message); returns that message."""
        deadline = time.monotonic() + scale(timeout)
        while True:
            m = await self.recv(max(0.01, deadline - time.monotonic()))
            if pred(m):
                return m

    async def sub(self, topic, since=None, epoch=None):
        req = {"op": "sub", "topic": topic}
        if since is not None:
            req["since"] = since
        if epoch is not None:
            req["epoch"] = epoch
        await self.ws.send(json.dumps(req))
        return await self.until(lambda m: m.get("topic") == topic and (
            m.get("op") == "reset" or (m.get("op") == "ack" and m.get("of") == "sub")))

    async def pub(self, topic, data, id=None):
        req = {"op": "pub", "topic": topic, "data": data}
        if id is not None:
            req["id"] = id
        await self.ws.send(json.dumps(req))
        return await self.until(lambda m: (m.get("op") == "ack" and m.get("of") == "pub") or
                                m.get("op") == "error")

    def msgs(self, topic):
        return [m for m in self.seen if m.get("op") == "msg" and m.get("topic") == topic]

    async def drain(self, quiet=0.3):
        """Receives until nothing arrives for quiet seconds."""
        try:
            while True:
                await self.recv(quiet)
        except asyncio.TimeoutError:
            pass

    async def close(self):
        await self.ws.close()


class RedisTestCase(unittest.TestCase):
    def setUp(self):
        self.redis = []
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            if n.alive():
                n.stop_and_check()
        for r in self.redis:
            r.kill()

    def start_redis(self, count=1):
        self.redis = [RedisServer().start() for _ in range(count)]
        return ",".join(r.address for r in self.redis)

    def start_nodes(self, count, addresses, **opts):
        self.nodes = [node(addresses, **opts) for _ in range(count)]
        wait_healthy([n.port for n in self.nodes])
        return self.nodes

    def check_alive(self):
        for n in self.nodes:
            self.assertTrue(n.alive(), "node died:\n" + harness.tail(n.log()))


class ThreeNodes(RedisTestCase):
    def test_every_subscriber_gets_every_message_once_in_order_same_seq(self):
        """Subscribers on three nodes (and both shards of each); publishes alternate between
        a WebSocket on node 0 and POST /publish on nodes 1 and 2."""
        nodes = self.start_nodes(3, self.start_redis())
        topics = ["orders", "prices", "news"]
        per_topic = 20

        async def run():
            subs = []
            for n in nodes:
                for _ in range(4):
                    c = await Client.connect(n.port)
                    for t in topics:
                        ack = await c.sub(t)
                        self.assertEqual(ack["op"], "ack", ack)
                    subs.append(c)
            publisher = await Client.connect(nodes[0].port)
            sent = {t: {} for t in topics}  # seq -> data, from the acks
            for i in range(per_topic * len(topics)):
                t = topics[i % len(topics)]
                data = {"i": i, "via": i % 3}
                if i % 3 == 0:
                    ack = await publisher.pub(t, data)
                    self.assertEqual(ack["op"], "ack", ack)
                    seq = ack["seq"]
                else:
                    status, body = http_publish(nodes[i % 3].port, t, data)
                    self.assertEqual(status, 200, body)
                    seq = body["seq"]
                sent[t][seq] = data
            for t in topics:
                self.assertEqual(sorted(sent[t]), list(range(1, per_topic + 1)))
            for c in subs:
                await c.until(lambda m: sum(1 for x in c.seen if x.get("op") == "msg") ==
                              per_topic * len(topics) or None, timeout=10)
                for t in topics:
                    got = [(m["seq"], m["data"]) for m in c.msgs(t)]
                    self.assertEqual(got, sorted(sent[t].items()))
            await asyncio.sleep(0.2)
            # One channel subscription per topic per node, not per shard or per connection.
            self.assertEqual(numsub(topics).count(b":3\r\n"), len(topics))
            for c in subs:
                self.assertEqual(len([m for m in c.seen if m.get("op") == "msg"]),
                                 per_topic * len(topics), "a duplicate arrived")
                await c.close()
            await publisher.close()

        def numsub(topics):
            return self.redis[0].command("PUBSUB", "NUMSUB", *[PREFIX + t for t in topics])

        asyncio.run(run())
        self.check_alive()
        # ... and none once the last subscriber left.
        deadline = time.monotonic() + scale(5)
        while numsub(topics).count(b":0\r\n") != len(topics):
            self.assertLess(time.monotonic(), deadline, numsub(topics))
            time.sleep(0.05)

    def test_resume_on_another_node_with_since(self):
        nodes = self.start_nodes(3, self.start_redis())

        async def run():
            a = await Client.connect(nodes[0].port)
            ack = await a.sub("resume")
            epoch = ack["epoch"]
            for i in range(5):
                self.assertEqual(http_publish(nodes[1].port, "resume", i)[0], 200)
            await a.until(lambda m: m.get("op") == "msg" and m["seq"] == 5)
            await a.close()
            for i in range(5, 12):
                self.assertEqual(http_publish(nodes[1].port, "resume", i)[0], 200)
            b = await Client.connect(nodes[2].port)
            ack = await b.sub("resume", since=5, epoch=epoch)
            self.assertEqual(ack["op"], "ack", ack)
            self.assertEqual((ack["seq"], ack["epoch"]), (12, epoch))
            self.assertEqual([m["data"] for m in b.msgs("resume")], list(range(5, 12)))
            self.assertEqual([m["seq"] for m in b.msgs("resume")], list(range(6, 13)))
            # Resuming with another epoch is a reset, never a silent ack.
            c = await Client.connect(nodes[1].port)
            reset = await c.sub("resume", since=3, epoch="0123456789abcdef")
            self.assertEqual(reset["op"], "reset", reset)
            for x in (b, c):
                await x.close()

        asyncio.run(run())
        self.check_alive()


    def test_resume_beyond_the_stream_is_a_gap(self):
        """history_messages_max (or a namespace's history_size) bounds what a resume gets
        from the stream: the rest is a gap."""
        nodes = self.start_nodes(2, self.start_redis(), history_messages_max=5,
                                 **{"namespace.small": "history_size=2"})

        async def run():
            for i in range(12):
                self.assertEqual(http_publish(nodes[0].port, "bounded", i)[0], 200)
            c = await Client.connect(nodes[1].port)
            first = await c.sub("bounded")
            c2 = await Client.connect(nodes[1].port)
            ack = await c2.sub("bounded", since=0, epoch=first["epoch"])
            self.assertEqual((ack["op"], ack["seq"]), ("ack", 12), ack)
            gaps = [m for m in c2.seen if m.get("op") == "gap"]
            self.assertEqual([(g["from"], g["to"]) for g in gaps], [(1, 7)], c2.seen)
            self.assertEqual([m["seq"] for m in c2.msgs("bounded")], list(range(8, 13)))
            for i in range(6):
                self.assertEqual(http_publish(nodes[0].port, "small:t", i)[0], 200)
            epoch = (await c.sub("small:t"))["epoch"]
            ack = await c2.sub("small:t", since=0, epoch=epoch)
            self.assertEqual((ack["op"], ack["seq"]), ("ack", 6), ack)
            gaps = [(m["from"], m["to"]) for m in c2.seen
                    if m.get("op") == "gap" and m["topic"] == "small:t"]
            self.assertEqual(gaps, [(1, 4)], c2.seen)
            self.assertEqual([m["seq"] for m in c2.msgs("small:t")], [5, 6])
            for x in (c, c2):
                await x.close()

        asyncio.run(run())
        self.check_alive()

    def test_backend_id_is_deduplicated_across_nodes(self):
        """A POST /publish retried on another node with the same id is not sequenced twice."""
        nodes = self.start_nodes(2, self.start_redis())
        first = http_publish(nodes[0].port, "dedup", 1, id="order-7")
        again = http_publish(nodes[1].port, "dedup", 1, id="order-7")
        other = http_publish(nodes[1].port, "dedup", 2, id="order-8")
        self.assertEqual(first, (200, {"seq": 1}))
        self.assertEqual(again[0], 200)
        self.assertTrue(again[1].get("duplicate"), again)
        self.assertEqual(other, (200, {"seq": 2}))
        self.check_alive()


class Faults(RedisTestCase):
    def test_redis_killed_mid_stream_and_restarted(self):
        addresses = self.start_redis()
        nodes = self.start_nodes(2, addresses)

        async def run():
            subs = [await Client.connect(n.port) for n in nodes for _ in range(2)]
            for c in subs:
                await c.sub("live")
            publisher = await Client.connect(nodes[0].port)
            acked, refused = [], 0
            for i in range(30):
                ack = await publisher.pub("live", i, id="k%d" % i)
                self.assertEqual(ack["op"], "ack", ack)
                acked.append((ack["epoch"], ack["seq"], i))
            self.redis[0].kill()
            for i in range(30, 40):
                ack = await publisher.pub("live", i, id="k%d" % i)
                if ack["op"] == "error":
                    self.assertEqual(ack["code"], 16, ack)
                    refused += 1
                else:
                    acked.append((ack["epoch"], ack["seq"], i))
                await asyncio.sleep(0.02)
            self.assertGreater(refused, 0, "publishes during the outage were not refused")
            self.assertEqual(health(nodes[0].port)[0], 503)
            self.assertIn("redis", health(nodes[0].port)[1]["reason"])
            await asyncio.sleep(0.5)
            self.redis[0].start()
            wait_healthy([n.port for n in nodes])
            await asyncio.sleep(0.3)  # channels subscribed again and synced
            for i in range(40, 60):
                ack = await publisher.pub("live", i, id="k%d" % i)
                self.assertEqual(ack["op"], "ack", ack)
                acked.append((ack["epoch"], ack["seq"], i))
            for c in subs:
                await c.until(lambda m: m.get("op") == "msg" and m["data"] == 59, timeout=10)
                self.check_stream(c, acked)
                await c.close()
            await publisher.close()

        asyncio.run(run())
        self.check_alive()

    def check_stream(self, c, acked):
        """Each acked message arrived, or the subscriber was told it is gone (a gap covering
        it, or a reset after it); seqs only grow within an epoch."""
        epoch, last, got, told = None, 0, set(), []
        for m in c.seen:
            if m.get("topic") != "live":
                continue
            if m["op"] == "reset":
                epoch, last = m["epoch"], m["seq"]
                told.append(("reset", m["epoch"], 0, 0))
            elif m["op"] == "gap":
                told.append(("gap", m["epoch"], m["from"], m["to"]))
                last = m["to"]
            elif m["op"] == "msg":
                self.assertGreater(m["seq"], last, "out of order or twice: %r" % m)
                last = m["seq"]
                got.add(m["data"])
            elif m["op"] == "ack":
                epoch = m.get("epoch")
        for ep, seq, data in acked:
            if data in got:
                continue
            explained = any(k == "reset" or (k == "gap" and e == ep and lo <= seq <= hi)
                            for k, e, lo, hi in told)
            self.assertTrue(explained, "acked message %r (seq %d) lost silently; seen %r"
                            % (data, seq, c.seen))
        self.assertTrue(any(k == "reset" for k, *_ in told), "no reset after Redis lost data")

    def test_subscriber_link_dropped_missed_messages_fetched_from_the_stream(self):
        """Redis keeps its data but drops every subscriber connection: messages published
        meanwhile reach subscribers after the node subscribes again, in order, no gap."""
        nodes = self.start_nodes(2, self.start_redis())

        async def run():
            c = await Client.connect(nodes[0].port)
            await c.sub("catchup")
            for i in range(3):
                self.assertEqual(http_publish(nodes[1].port, "catchup", i)[0], 200)
            await c.until(lambda m: m.get("op") == "msg" and m["seq"] == 3)
            self.redis[0].command("CLIENT", "KILL", "TYPE", "pubsub")
            for i in range(3, 10):
                self.assertEqual(http_publish(nodes[1].port, "catchup", i)[0], 200)
            await c.until(lambda m: m.get("op") == "msg" and m["seq"] == 10, timeout=10)
            self.assertEqual([m["data"] for m in c.msgs("catchup")], list(range(10)))
            self.assertFalse([m for m in c.seen if m.get("op") in ("gap", "reset")], c.seen)
            await c.close()

        asyncio.run(run())
        self.check_alive()

    def test_slow_redis_does_not_stall_client_traffic(self):
        """While Redis sleeps, a publish waits for its answer but the node keeps serving:
        an echo sent after the publish comes back before the publish's ack."""
        (n,) = self.start_nodes(1, self.start_redis(), shards=1)

        async def run():
            c = await Client.connect(n.port)
            echo = await websockets.connect("ws://127.0.0.1:%d/echo" % n.port)
            slow = asyncio.get_running_loop().run_in_executor(
                None, self.redis[0].command, "DEBUG", "SLEEP", "1")
            await asyncio.sleep(0.1)
            await c.ws.send(json.dumps({"op": "pub", "topic": "slow", "data": 1}))
            await echo.send("still here")
            self.assertEqual(await asyncio.wait_for(echo.recv(), scale(5)), "still here")
            self.assertFalse([m for m in c.seen if m.get("op") == "ack"])
            ack = await c.until(lambda m: m.get("op") in ("ack", "error"), timeout=10)
            self.assertEqual((ack["op"], ack["seq"]), ("ack", 1), ack)
            await slow
            await echo.close()
            await c.close()

        asyncio.run(run())
        self.check_alive()

    def test_frozen_redis_times_out_and_recovers(self):
        """SIGSTOP: Redis keeps its connections but stops answering. Publishes are refused
        after redis_command_timeout_ms, /health degrades; after SIGCONT everything is back
        and the subscriber's stream stays in order."""
        nodes = self.start_nodes(1, self.start_redis(), redis_command_timeout_ms=300)

        async def run():
            c = await Client.connect(nodes[0].port)
            p = await Client.connect(nodes[0].port)
            await c.sub("frozen")
            self.assertEqual((await p.pub("frozen", 0, id="f0"))["op"], "ack")
            os.kill(self.redis[0].proc.pid, signal.SIGSTOP)
            try:
                refused = await p.pub("frozen", 1, id="f1")
                self.assertEqual((refused["op"], refused["code"]), ("error", 16), refused)
                deadline = time.monotonic() + scale(5)
                while health(nodes[0].port)[0] != 503:
                    self.assertLess(time.monotonic(), deadline, "health stayed ok")
                    await asyncio.sleep(0.05)
            finally:
                os.kill(self.redis[0].proc.pid, signal.SIGCONT)
            wait_healthy([nodes[0].port])
            # The refused publish may still have been applied (its bytes were in Redis's
            # socket): a retry with the same id is deduplicated either way.
            retry = await p.pub("frozen", 1, id="f1")
            self.assertEqual(retry["op"], "ack", retry)
            ack = await p.pub("frozen", 2, id="f2")
            self.assertEqual(ack["op"], "ack", ack)
            await c.until(lambda m: m.get("op") == "msg" and m["data"] == 2, timeout=10)
            self.assertEqual([m["data"] for m in c.msgs("frozen")], [0, 1, 2])
            self.assertEqual([m["seq"] for m in c.msgs("frozen")], [1, 2, 3])
            for x in (c, p):
                await x.close()

        asyncio.run(run())
        self.check_alive()

    def test_node_killed_clients_resume_on_others(self):
        nodes = self.start_nodes(3, self.start_redis())

        async def run():
            clients = [await Client.connect(nodes[0].port) for _ in range(3)]
            epoch = None
            for c in clients:
                epoch = (await c.sub("failover"))["epoch"]
            for i in range(5):
                self.assertEqual(http_publish(nodes[2].port, "failover", i)[0], 200)
            for c in clients:
                await c.until(lambda m: m.get("op") == "msg" and m["seq"] == 5)
            nodes[0].kill()
            for i in range(5, 10):
                self.assertEqual(http_publish(nodes[2].port, "failover", i)[0], 200)
            for k, c in enumerate(clients):
                last = c.msgs("failover")[-1]["seq"]
                again = await Client.connect(nodes[1 + k % 2].port)
                ack = await again.sub("failover", since=last, epoch=epoch)
                self.assertEqual(ack["op"], "ack", ack)
                self.assertEqual([m["data"] for m in again.msgs("failover")], list(range(5, 10)))
                await again.close()

        asyncio.run(run())
        self.nodes = self.nodes[1:]
        self.check_alive()

    def test_two_instances_one_down_affects_only_its_topics(self):
        addresses = self.start_redis(2)
        (n,) = self.start_nodes(1, addresses)
        topics = ["t%d" % i for i in range(16)]
        for t in topics:
            self.assertEqual(http_publish(n.port, t, "x")[0], 200)
        home = {}
        for t in topics:
            held = [r for r in self.redis
                    if r.command("EXISTS", "%s{%s}.m" % (PREFIX, t)) == b":1\r\n"]
            self.assertEqual(len(held), 1, t)
            home[t] = self.redis.index(held[0])
        self.assertEqual(set(home.values()), {0, 1}, "topics not spread over both instances")

        async def run():
            c = await Client.connect(n.port)
            for t in topics:
                await c.sub(t)
            self.redis[0].kill()
            await asyncio.sleep(0.2)
            for t in topics:
                status, body = http_publish(n.port, t, "after")
                self.assertEqual(status, 503 if home[t] == 0 else 200, (t, body))
            for t in topics:
                if home[t] == 1:
                    await c.until(lambda m: m.get("op") == "msg" and m["topic"] == t)
            self.assertEqual(health(n.port)[0], 503)
            await c.close()

        asyncio.run(run())
        self.check_alive()


if __name__ == "__main__":
    harness.main(budget_s=120)
