"""Presence and join/leave (namespaces with presence=true, join_leave=true) on two shards, with
tokens minted by PyJWT: the owner shard lists who is subscribed (user, connection, the token's
info claim) to subscribers asking {"op":"presence"}, counts them for {"op":"presence_stats"}
(and for the list op past presence_list_max), forgets closed connections, keeps at most
presence_entries_max entries (the rest counted); join and leave messages reach the topic's
subscribers on every shard, outside the topic's numbering: seqs and resumes are unchanged,
and stop (counted) past the namespace's join_leave_subscribers_max.
Per-user delivery: every connection with a user id is subscribed to "#<sub>" from the start,
which no other user may subscribe to; a publish there reaches all of the user's connections
on every shard."""
import asyncio
import os
import sys
import time
import unittest

import jwt
import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ServerTestCase, scale  # noqa: E402
from pubsub_test import Client, http_request, metric_sum, metrics, run  # noqa: E402

SECRET = "presence-test-secret-of-32-bytes-at-least"


def token(sub, **claims):
    return jwt.encode(dict(sub=sub, **claims), SECRET, algorithm="HS256")


async def connect(port, sub, **claims):
    url = "ws://127.0.0.1:%d/ws?token=%s" % (port, token(sub, **claims))
    return Client(await websockets.connect(url, ping_interval=None, compression=None,
                                           max_size=None, open_timeout=scale(10)))


async def ask(c, msg, op):
    """Sends msg and returns the next envelope of op (join/leave events may come first)."""
    await c.send(msg)
    while True:
        m = await c.recv()
        if m.get("op") in (op, "error"):
            return m


async def until(fn, want, timeout=10):
    """Polls coroutine fn until it returns want (presence follows closes asynchronously)."""
    deadline = time.monotonic() + scale(timeout)
    while True:
        got = await fn()
        if got == want or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


def opts(**extra):
    return dict({"token_hmac_secret": SECRET, "namespace.room": "presence=true",
                 "namespace.chat": "presence=true,join_leave=true",
                 "namespace.events": "join_leave=true"}, **extra)


class PresenceTest(ServerTestCase):
    server_opts = opts(presence_list_max=5)

    def test_list_and_counts_across_shards(self):
        async def go():
            users = ["alice", "alice", "bob", "carol", "dave"]
            cs = [await connect(self.port, u, info={"name": u.title(), "n": i})
                  for i, u in enumerate(users)]
            for c in cs:
                await c.sub("room:a")
            got = await ask(cs[2], {"op": "presence", "topic": "room:a"}, "presence")
            self.assertEqual((got["connections"], got["users"]), (5, 4))
            self.assertEqual(sorted((e["user"], e["info"]["n"]) for e in got["clients"]),
                             sorted((u, i) for i, u in enumerate(users)))
            self.assertEqual(len({e["conn"] for e in got["clients"]}), 5)
            for e in got["clients"]:
                self.assertRegex(e["conn"], "^[0-9a-f]{16}$")
            stats = await ask(cs[0], {"op": "presence_stats", "topic": "room:a"},
                              "presence_stats")
            self.assertEqual(stats, {"op": "presence_stats", "topic": "room:a",
                                     "connections": 5, "users": 4})
            # A closed connection and an unsubscribed one leave the list.
            await cs[1].close()
            await cs[3].unsub("room:a")

            async def count():
                m = await ask(cs[0], {"op": "presence_stats", "topic": "room:a"},
                              "presence_stats")
                return (m["connections"], m["users"])
            self.assertEqual(await until(count, (3, 3)), (3, 3))
            # Past presence_list_max (5) the list op answers the counts only.
            more = [await connect(self.port, "u%d" % i) for i in range(3)]
            for c in more:
                await c.sub("room:a")
            got = await ask(cs[0], {"op": "presence", "topic": "room:a"}, "presence")
            self.assertEqual((got["connections"], got.get("clients_omitted")), (6, True))
            self.assertNotIn("clients", got)
            m = metrics(self.port)
            self.assertEqual(metric_sum(m, "ringcast_presence_entries"), 6)
            self.assertGreater(metric_sum(m, "ringcast_memory_bytes", category="presence"),
                               0)
            for c in cs + more:
                await c.close()
        run(go(), 30)

    def test_only_subscribers_of_presence_topics_may_ask(self):
        async def go():
            c = await connect(self.port, "eve")
            got = await ask(c, {"op": "presence", "topic": "room:b"}, "presence")
            self.assertEqual(got["code"], 15)
            await c.sub("plain.topic")
            got = await ask(c, {"op": "presence", "topic": "plain.topic"}, "presence")
            self.assertEqual(got["code"], 15)
            got = await ask(c, {"op": "presence", "topic": "room:b", "data": 1}, "presence")
            self.assertEqual(got["code"], 10)
            await c.close()
        run(go(), 20)


class PresenceBoundTest(ServerTestCase):
    server_opts = opts(presence_entries_max=2)

    def test_entries_past_the_bound_are_counted_not_listed(self):
        async def go():
            cs = [await connect(self.port, "user%d" % i) for i in range(4)]
            for c in cs:
                await c.sub("room:full")
            got = await ask(cs[0], {"op": "presence", "topic": "room:full"}, "presence")
            self.assertEqual(got["connections"], 2)
            self.assertEqual(metric_sum(metrics(self.port), "ringcast_presence_refused_total"),
                             2)
            for c in cs:
                await c.close()
        run(go(), 20)


class JoinLeaveTest(ServerTestCase):
    server_opts = opts()

    def test_join_and_leave_reach_every_subscriber(self):
        async def go():
            a = await connect(self.port, "alice", info={"role": "host"})
            await a.sub("chat:r")
            self.assertEqual(await a.expect(op="join", topic="chat:r", user="alice"),
                             {"op": "join", "topic": "chat:r", "user": "alice",
                              "conn": (await self._conn_of(a, "chat:r")),
                              "info": {"role": "host"}})
            bs = [await connect(self.port, "bob") for _ in range(3)]
            conns = set()
            for b in bs:
                await b.sub("chat:r")
                m = await a.expect(op="join", user="bob")
                conns.add(m["conn"])
                self.assertNotIn("info", m)
            self.assertEqual(len(conns), 3)
            await bs[0].close()
            m = await a.expect(op="leave", user="bob")
            self.assertIn(m["conn"], conns)
            # (bs[1] heard the later joins: the ack follows them.)
            got = await ask(bs[1], {"op": "unsub", "topic": "chat:r"}, "ack")
            self.assertEqual(got["of"], "unsub")
            m = await a.expect(op="leave", user="bob")
            self.assertIn(m["conn"], conns)
            for b in bs[1:]:
                await b.close()
            await a.close()
        run(go(), 30)

    async def _conn_of(self, c, topic):
        got = await ask(c, {"op": "presence", "topic": topic}, "presence")
        return got["clients"][0]["conn"]

    def test_events_leave_the_numbering_alone(self):
        async def go():
            a = await connect(self.port, "alice")
            p = await connect(self.port, "pub", pubs=["events:*"])
            await a.sub("events:n")
            await a.expect(op="join", user="alice")
            await p.pub("events:n", "1")
            m1 = await a.expect(op="msg")
            b = await connect(self.port, "bob")
            await b.sub("events:n")
            await a.expect(op="join", user="bob")
            await p.pub("events:n", "2")
            m2 = await a.expect(op="msg")
            self.assertEqual((m1["seq"], m2["seq"]), (1, 2))
            await b.close()
            await a.expect(op="leave", user="bob")
            # A resume from 0 replays both messages, no event, no gap.
            c = await connect(self.port, "carol")
            await c.send({"op": "sub", "topic": "events:n", "since": 0})
            got = [await c.recv() for _ in range(3)]
            self.assertEqual([(m["op"], m.get("seq")) for m in got],
                             [("msg", 1), ("msg", 2), ("ack", 2)])
            self.assertEqual((await c.recv())["op"], "join")
            # events: has no presence list.
            got = await ask(a, {"op": "presence", "topic": "events:n"}, "presence")
            self.assertEqual(got["code"], 15)
            for x in (a, p, c):
                await x.close()
        run(go(), 30)


class JoinLeaveBoundTest(ServerTestCase):
    server_opts = opts(**{"namespace.big":
                          "presence=true,join_leave=true,join_leave_subscribers_max=2"})

    def test_events_stop_past_join_leave_subscribers_max(self):
        async def go():
            async def count():
                got = await ask(a, {"op": "presence_stats", "topic": "big:r"}, "presence_stats")
                return got["connections"]
            a, b, c = [await connect(self.port, u) for u in ("alice", "bob", "carol")]
            await a.sub("big:r")
            await a.expect(op="join", user="alice")
            await b.sub("big:r")
            await a.expect(op="join", user="bob")
            # A third subscriber is past the bound: no join, no leave, but listed.
            await c.sub("big:r")
            self.assertEqual(await until(count, 3), 3)
            await c.close()
            self.assertEqual(await until(count, 2), 2)
            # Back at the bound: bob's leave goes out, and is the next event alice hears.
            await b.close()
            m = await a.expect(op="leave", topic="big:r")
            self.assertEqual(m["user"], "bob")
            m = metrics(self.port)
            self.assertEqual(metric_sum(m, "ringcast_presence_events_skipped_total"), 2)
            self.assertEqual(metric_sum(m, "ringcast_presence_events_total"), 3)
            await a.close()
        run(go(), 30)


class PersonalTopicTest(ServerTestCase):
    server_opts = opts()

    def test_a_publish_to_a_user_reaches_all_its_connections(self):
        async def go():
            alice = [await connect(self.port, "alice") for _ in range(4)]
            bob = await connect(self.port, "bob")
            backend = {"Authorization": "Bearer " + token("backend", pubs=[">"])}
            status, body = http_request(self.port, "POST", "/publish",
                                        b'{"topic":"#alice","data":{"hi":1}}', backend)
            self.assertEqual(status, 200, body)
            for c in alice:
                m = await c.expect(op="msg", topic="#alice")
                self.assertEqual((m["seq"], m["data"]), (1, {"hi": 1}))
            self.assertIsNone(await bob.next_or_none(0.3))
            # Nobody else may follow #alice; alice is on it already.
            self.assertEqual((await ask(bob, {"op": "sub", "topic": "#alice"}, "ack"))["code"],
                             15)
            got = await ask(alice[0], {"op": "sub", "topic": "#alice"}, "ack")
            self.assertEqual(got["code"], 13)
            got = await ask(alice[0], {"op": "unsub", "topic": "#alice"}, "ack")
            self.assertEqual(got["of"], "unsub")
            await alice[0].sub("#alice")
            self.assertEqual(metric_sum(metrics(self.port),
                                        "ringcast_personal_topic_failures_total"), 0)
            for c in alice + [bob]:
                await c.close()
        run(go(), 30)


if __name__ == "__main__":
    harness.main()
