"""Presence, join/leave and the server API's user operations across nodes (issues 10 and 12)
with the Redis engine: our own redis-server and two or three ringcast nodes of two shards.
The presence list and counts are the union of every node's entries; a join or leave made on
one node reaches subscribers on the others exactly once; a node killed with -9 loses its
entries after presence_ttl_ms, a node stopped gracefully at once; a publish to "#user" on one
node reaches the user's connections on the others; /api/disconnect and /api/unsubscribe on one
node act on the others; /api/info lists every live node; with Redis gone presence answers this
node's entries with "partial":true, the user operations answer {"partial":true}, and nothing
crashes."""
import asyncio
import json
import os
import signal
import sys
import time
import unittest

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import scale  # noqa: E402
from presence_test import SECRET, ask, connect  # noqa: E402
from pubsub_test import http_request, metric_sum, metrics, run  # noqa: E402
from redis_cluster_test import RedisTestCase  # noqa: E402

KEY = "redis-presence-test-key"


def opts(**extra):
    return dict({"token_hmac_secret": SECRET, "api_key": KEY,
                 "namespace.chat": "presence=true,join_leave=true"}, **extra)


def api(port, call, body=None):
    """POST (or GET without a body) /api/<call>; returns (status, parsed JSON)."""
    status, raw = http_request(port, "POST" if body is not None else "GET", "/api/" + call,
                               json.dumps(body).encode() if body is not None else b"",
                               {"Authorization": "apikey " + KEY})
    return status, json.loads(raw or b"null")


def poll(fn, want, timeout=20):
    """Calls fn until it returns want or the (generous) deadline passes; returns the last."""
    deadline = time.monotonic() + scale(timeout)
    while True:
        got = fn()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def counts(port, topic):
    status, got = api(port, "presence_stats", {"topic": topic})
    assert status == 200, got
    return (got["connections"], got["users"])


def events(c, topic):
    return [(m["op"], m["user"]) for m in c.seen if m.get("op") in ("join", "leave") and
            m.get("topic") == topic]


async def collect(c, quiet=0.5):
    """Everything c receives until quiet seconds pass without a message."""
    while True:
        try:
            c.seen.append(await c.recv(quiet))
        except asyncio.TimeoutError:
            return


class RedisPresenceTest(RedisTestCase):
    def nodes_with(self, count, **extra):
        return self.start_nodes(count, self.start_redis(), **opts(**extra))

    def test_union_counts_and_join_leave_once(self):
        a, b, c = self.nodes_with(3)

        async def go():
            watch = await connect(a.port, "watcher")
            watch.seen = []
            await watch.sub("chat:r")
            cs = [await connect(b.port, "alice", info={"n": 1}),
                  await connect(c.port, "alice", info={"n": 2}),
                  await connect(c.port, "bob")]
            for x in cs:
                await x.sub("chat:r")
            self.assertEqual(poll(lambda: counts(a.port, "chat:r"), (4, 3)), (4, 3))
            status, got = api(a.port, "presence", {"topic": "chat:r"})
            self.assertEqual(status, 200)
            self.assertEqual((got["connections"], got["users"]), (4, 3))
            self.assertEqual(sorted(e["user"] for e in got["clients"]),
                             ["alice", "alice", "bob", "watcher"])
            self.assertEqual(len({e["conn"] for e in got["clients"]}), 4)
            self.assertEqual(sorted(e["info"]["n"] for e in got["clients"] if "info" in e),
                             [1, 2])
            self.assertEqual(counts(b.port, "chat:r"), (4, 3))
            await cs[2].close()
            self.assertEqual(poll(lambda: counts(c.port, "chat:r"), (3, 2)), (3, 2))
            await collect(watch)
            # Every join and leave of the other nodes once, and its own join (held while its
            # subscription waited for the node's first sync with Redis).
            self.assertEqual(sorted(events(watch, "chat:r")),
                             [("join", "alice"), ("join", "alice"), ("join", "bob"),
                              ("join", "watcher"), ("leave", "bob")])
            m = metrics(b.port)
            self.assertGreater(metric_sum(m, "ringcast_redis_presence_writes_total"), 0)
            self.assertGreater(metric_sum(m, "ringcast_redis_events_sent_total"), 0)
            self.assertGreater(metric_sum(metrics(a.port),
                                          "ringcast_redis_events_received_total"), 0)
            for x in [watch] + cs[:2]:
                await x.close()
        run(go(), 60)

    def test_killed_node_entries_expire_and_stopped_node_leaves_at_once(self):
        a, b, c = self.nodes_with(3, presence_ttl_ms=1500, node_heartbeat_ms=100)

        async def go():
            status, info = api(a.port, "info")
            self.assertEqual(status, 200)
            ids = sorted(n["node"] for n in info["nodes"])
            self.assertEqual(len(ids), 3, info)
            self.assertIn(info["node_id"], ids)
            self.assertTrue(all(n["shards"] == 2 for n in info["nodes"]))
            on_b = await connect(b.port, "bert")
            await on_b.sub("chat:k")
            on_c = await connect(c.port, "cleo")
            await on_c.sub("chat:k")
            self.assertEqual(poll(lambda: counts(a.port, "chat:k"), (2, 2)), (2, 2))
            b.kill()
            self.assertEqual(poll(lambda: counts(a.port, "chat:k"), (1, 1)), (1, 1))
            self.assertEqual(poll(lambda: len(api(a.port, "info")[1]["nodes"]), 2), 2)
            c.stop_and_check()
            # Graceful: gone at once (well before the TTL would have taken it).
            self.assertEqual(counts(a.port, "chat:k"), (0, 0))
            self.assertEqual([n["node"] for n in api(a.port, "info")[1]["nodes"]],
                             [api(a.port, "info")[1]["node_id"]])
        run(go(), 60)

    def test_stopped_node_leaves_before_its_ttl(self):
        a, b = self.nodes_with(2)  # presence_ttl_ms 30 s: only the drain can remove it

        async def go():
            x = await connect(b.port, "xena")
            await x.sub("chat:g")
            self.assertEqual(poll(lambda: counts(a.port, "chat:g"), (1, 1)), (1, 1))
            b.stop_and_check()
            self.assertEqual(counts(a.port, "chat:g"), (0, 0))
            self.assertEqual(len(api(a.port, "info")[1]["nodes"]), 1)
        run(go(), 60)

    def test_user_delivery_and_api_across_nodes(self):
        a, b = self.nodes_with(2)

        async def go():
            here = await connect(a.port, "42")
            there = await connect(b.port, "42")
            await there.sub("chat:x")
            status, body = api(a.port, "publish", {"topic": "#42", "data": {"k": 1}})
            self.assertEqual(status, 200, body)
            for x in (here, there):
                m = await x.recv(10)
                while m.get("op") != "msg":
                    m = await x.recv(10)
                self.assertEqual((m["topic"], m["data"]), ("#42", {"k": 1}))
            self.assertEqual(api(a.port, "unsubscribe", {"user": "42", "topic": "chat:x"}),
                             (200, {}))
            m = await there.recv(10)
            while m.get("op") != "unsubscribed":
                m = await there.recv(10)
            self.assertEqual(m["topic"], "chat:x")
            self.assertEqual(poll(lambda: counts(a.port, "chat:x"), (0, 0)), (0, 0))
            self.assertEqual(api(a.port, "disconnect", {"user": "42", "code": 4321}),
                             (200, {}))
            for x in (there, here):
                with self.assertRaises(websockets.ConnectionClosed) as cm:
                    while True:
                        await x.recv(10)
                self.assertEqual(cm.exception.rcvd.code, 4321)
            self.assertEqual(metric_sum(metrics(b.port),
                                        "ringcast_redis_control_received_total"), 1 + 1)
        run(go(), 60)

    def test_history_on_a_node_that_never_had_the_topic(self):
        """/api/history is the stream's, on any node: node b, which never had the topic,
        answers what node a's publishes stored (since and limit applied, the history bound
        kept), with the same epoch as node a; unknown topics answer empty."""
        a, b = self.nodes_with(2, history_messages_max=4)

        async def go():
            x = await connect(a.port, "ann")
            await x.sub("h.t")
            for i in range(1, 8):
                self.assertEqual(api(a.port, "publish", {"topic": "h.t", "data": i})[0], 200)
            m = await x.recv(10)
            while m.get("seq") != 7:
                m = await x.recv(10)
            status, h = api(b.port, "history", {"topic": "h.t"})
            self.assertEqual(status, 200, h)
            self.assertRegex(h["epoch"], "^[0-9a-f]{16}$")
            self.assertEqual((h["seq"], h["epoch"]),
                             (7, api(a.port, "history", {"topic": "h.t"})[1]["epoch"]))
            self.assertEqual([(m["seq"], m["data"]) for m in h["messages"]],
                             [(4, 4), (5, 5), (6, 6), (7, 7)])
            status, h = api(b.port, "history", {"topic": "h.t", "since": 3, "limit": 2})
            self.assertEqual([m["seq"] for m in h["messages"]], [4, 5])
            self.assertEqual(h["messages"][0],
                             {"op": "msg", "topic": "h.t", "seq": 4, "data": 4})
            status, h = api(b.port, "history", {"topic": "h.none"})
            self.assertEqual((status, h["seq"], h["messages"]), (200, 0, []))
            await x.close()
        run(go(), 60)

    def test_topics_are_summed_over_nodes(self):
        """/api/topics on any node counts every node's subscribers (each shard's topics are
        written to Redis every third of presence_ttl_ms); a node stopped gracefully takes
        its own out at once; personal topics are never listed."""
        a, b = self.nodes_with(2, presence_ttl_ms=1500, node_heartbeat_ms=500)

        def topics(node):
            status, got = api(node.port, "topics")
            assert status == 200, got
            return got

        async def go():
            xs = [await connect(a.port, u) for u in ("u1", "u2")]
            ys = [await connect(b.port, u) for u in ("u3", "u4")]
            for c in xs + ys[:1]:
                await c.sub("t.x")
            await ys[1].sub("t.y")
            both = {"topics": [{"topic": "t.x", "subscribers": 3},
                               {"topic": "t.y", "subscribers": 1}]}
            self.assertEqual(poll(lambda: topics(a), both), both)
            self.assertEqual(poll(lambda: topics(b), both), both)
            b.stop_and_check()
            alone = {"topics": [{"topic": "t.x", "subscribers": 2}]}
            self.assertEqual(poll(lambda: topics(a), alone), alone)
            self.redis[0].kill()
            got = poll(lambda: topics(a).get("partial"), True)
            self.assertTrue(got)
            self.assertEqual(topics(a)["topics"], alone["topics"])
            for c in xs:
                await c.close()
        run(go(), 60)

    def test_redis_gone_answers_partial(self):
        a, b = self.nodes_with(2)

        async def go():
            x = await connect(a.port, "ann")
            await x.sub("chat:p")
            self.redis[0].kill()
            got = await ask(x, {"op": "presence", "topic": "chat:p"}, "presence")
            while not got.get("partial"):  # until the node noticed the loss
                await asyncio.sleep(0.05)
                got = await ask(x, {"op": "presence", "topic": "chat:p"}, "presence")
            self.assertEqual((got["connections"], got["users"], got["partial"]), (1, 1, True))
            self.assertEqual(got["clients"][0]["user"], "ann")
            status, info = api(a.port, "info")
            self.assertEqual((status, info.get("partial")), (200, True))
            self.assertNotIn("nodes", info)
            self.assertEqual(api(a.port, "disconnect", {"user": "zed"}),
                             (200, {"partial": True}))
            self.assertGreater(metric_sum(metrics(a.port),
                                          "ringcast_redis_presence_partial_total"), 0)
            await x.close()
        run(go(), 60)
        for n in (a, b):
            n.stop_and_check()

    def test_token_of_another_node_sees_the_same_union(self):
        """A token minted once works on every node (the same secret): presence follows the
        user whichever node it lands on."""
        a, b = self.nodes_with(2)

        async def go():
            one = await connect(a.port, "roam")
            await one.sub("chat:m")
            await one.close()
            two = await connect(b.port, "roam")
            await two.sub("chat:m")
            self.assertEqual(poll(lambda: counts(a.port, "chat:m"), (1, 1)), (1, 1))
            await two.close()
            self.assertEqual(poll(lambda: counts(b.port, "chat:m"), (0, 0)), (0, 0))
        run(go(), 60)


if __name__ == "__main__":
    unittest.main()
