"""Issue 9, delivery honesty: what a client is told must be true.

- Topic epochs: acks of sub and pub and every gap carry the topic's epoch; a resume whose
  since belongs to another epoch (a restart, a forgotten topic) or lies beyond the current
  seq gets {"op":"reset"}, never a plain ack; the same epoch and a valid since replay as before.
- Dedup ids are scoped per publisher: a client that publishes the backend's id first does not
  make the backend's real publish a duplicate; each publisher's own repeat still is one.
- ringcast.* topics are the gateway's: clients may subscribe, never publish (WS and POST).
- A token's exp closes its connection (1008 "token expired", counted as token_expired).
"""

import asyncio
import importlib.util
import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Server, ServerTestCase, scale  # noqa: E402
import pubsub_test  # noqa: E402
from pubsub_test import check, closes_by_reason, http_publish, metric_sum, metrics, run  # noqa

import websockets  # noqa: E402


class Client(pubsub_test.Client):
    keep_epoch = True

EPOCH = re.compile(r"^[0-9a-f]{16}$")
SECRET = "honesty-secret-of-at-least-32-bytes"
_spec = importlib.util.spec_from_file_location(
    "mint", os.path.join(harness.REPO, "tools", "mint-token.py"))
mint = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mint)


def epoch_of(m):
    check(EPOCH.match(m.get("epoch", "")), "no epoch in %r" % m)
    return m["epoch"]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


async def pub_own(c, topic, data):
    """c publishes to a topic it follows: (ack, msg), in whichever order they came."""
    await c.send('{"op":"pub","topic":"%s","data":%s}' % (topic, data))
    got = {}
    for _ in range(2):
        m = await c.recv()
        got[m["op"]] = m
    check(set(got) == {"ack", "msg"}, "expected an ack and a msg, got %r" % got)
    return got["ack"], got["msg"]


async def resume(port, topic, since, epoch=None):
    """A fresh connection subscribing with since (and epoch): (client, first answer)."""
    c = await Client.open(port)
    obj = {"op": "sub", "topic": topic, "since": since}
    if epoch is not None:
        obj["epoch"] = epoch
    await c.send(obj)
    return c, await c.recv()


class EpochTest(ServerTestCase):
    server_opts = {"history_messages_max": 100}

    def test_acks_and_gaps_carry_the_topic_epoch(self):
        async def go():
            s = await Client.open(self.port)
            e = epoch_of(await s.sub("ep.acks"))
            p = await Client.open(self.port)
            ack = await p.pub("ep.acks", "1")
            self.assertEqual((ack["seq"], epoch_of(ack)), (1, e))
            self.assertEqual((await s.msgs("ep.acks", 1))[0], {
                "op": "msg", "topic": "ep.acks", "seq": 1, "data": 1})
            # Same epoch and a valid since: the replay as before, then the ack.
            r, first = await resume(self.port, "ep.acks", 0, e)
            self.assertEqual(first["seq"], 1)
            self.assertEqual(await r.recv(), {"op": "ack", "of": "sub", "topic": "ep.acks",
                                              "seq": 1, "epoch": e})
            for c in (s, p, r):
                await c.close()
        run(go(), 30)

    def test_since_beyond_the_seq_or_of_another_epoch_is_a_reset(self):
        async def go():
            p = await Client.open(self.port)
            for i in range(3):
                e = epoch_of(await p.pub("ep.ahead", str(i)))
            cases = [(57, e), (57, None), (1, "0000000000000000"), (1, "not-an-epoch")]
            for i, (since, ep) in enumerate(cases):
                c, m = await resume(self.port, "ep.ahead", since, ep)
                self.assertEqual(m, {"op": "reset", "topic": "ep.ahead", "epoch": e,
                                     "seq": 3 + i}, (since, ep))
                # Subscribed from the current seq on: the next publish arrives, nothing older.
                await p.pub("ep.ahead", "9")
                self.assertEqual((await c.msgs("ep.ahead", 1))[0]["seq"], 4 + i)
                await c.close()
            await p.close()
            self.assertGreaterEqual(metric_sum(metrics(self.port), "ringcast_resets_total"), 4)
        run(go(), 30)

    def test_an_unknown_topic_is_a_reset_unless_nothing_was_seen(self):
        async def go():
            c, m = await resume(self.port, "ep.unknown", 5)
            self.assertEqual((m["op"], m["seq"]), ("reset", 0))
            epoch_of(m)
            c2, m2 = await resume(self.port, "ep.unknown2", 0)
            self.assertEqual((m2["op"], m2["of"], m2.get("seq")), ("ack", "sub", None))
            await c.close()
            await c2.close()
        run(go(), 30)


class ForgetTest(ServerTestCase):
    """A topic forgotten after topic_forget_ms restarts its numbering under a new epoch."""
    server_opts = {"history_messages_max": 0, "topic_forget_ms": 100}

    def test_forgotten_topic_gets_a_new_epoch(self):
        async def go():
            p = await Client.open(self.port)
            ack = await p.pub("ep.forget", "1")
            e1 = epoch_of(ack)
            deadline = time.monotonic() + scale(20)
            while metric_sum(metrics(self.port), "ringcast_topics_owned") != 0:
                self.assertLess(time.monotonic(), deadline, "the topic was never forgotten")
                await asyncio.sleep(0.2)
            c, m = await resume(self.port, "ep.forget", 1, e1)
            self.assertEqual((m["op"], m["seq"]), ("reset", 0))
            self.assertNotEqual(epoch_of(m), e1)
            ack = await p.pub("ep.forget", "2")
            self.assertEqual((ack["seq"], ack["epoch"]), (1, m["epoch"]))
            await c.close()
            await p.close()
        run(go(), 40)


class RestartTest(unittest.TestCase):
    """kill -9 and a new process on the same port: a resume is told numbering restarted."""

    def test_resume_after_a_restart_gets_a_reset_with_a_new_epoch(self):
        srv = Server(2, history_messages_max=100).start()
        port = srv.port
        try:
            async def before():
                s, p = await Client.open(port), await Client.open(port)
                e = epoch_of(await s.sub("orders"))
                for i in range(57):
                    self.assertEqual(epoch_of(await p.pub("orders", str(i))), e)
                got = await s.msgs("orders", 57, timeout=20)
                self.assertEqual([m["seq"] for m in got], list(range(1, 58)))
                s.abort()
                p.abort()
                return e
            e1 = run(before(), 30)
        except AssertionError:
            srv.kill()
            raise
        srv.kill()  # SIGKILL: nothing is saved
        srv2 = Server(2, port=port, history_messages_max=100).start()
        try:
            async def after():
                c, m = await resume(port, "orders", 57, e1)
                self.assertEqual((m["op"], m["topic"], m["seq"]), ("reset", "orders", 0))
                self.assertNotEqual(epoch_of(m), e1)
                ack, msg = await pub_own(c, "orders", '"new"')
                self.assertEqual((ack["seq"], ack["epoch"], msg["seq"]), (1, m["epoch"], 1))
                # A client that kept no epoch: since beyond the seq is a reset all the same.
                c2, m2 = await resume(port, "orders", 57)
                self.assertEqual(m2, {"op": "reset", "topic": "orders", "epoch": m["epoch"],
                                      "seq": 1})
                await c.close()
                await c2.close()
            run(after(), 30)
        finally:
            srv2.stop_and_check()


class DedupScopeTest(ServerTestCase):
    def test_a_client_cannot_preempt_the_backends_id(self):
        async def go():
            s = await Client.open(self.port)
            await s.sub("dd.orders")
            fake = await Client.open(self.port)
            ack = await fake.pub("dd.orders", '"fake"', id="order-8")
            self.assertEqual(ack["seq"], 1)
            status, body = http_publish(self.port, {"topic": "dd.orders", "data": "real",
                                                    "id": "order-8"})
            self.assertEqual((status, body), (200, {"seq": 2}))
            got = await s.msgs("dd.orders", 2)
            self.assertEqual([m["data"] for m in got], ["fake", "real"])
            # Each publisher's own repeat is still a duplicate.
            status, body = http_publish(self.port, {"topic": "dd.orders", "data": "again",
                                                    "id": "order-8"})
            self.assertEqual((status, body), (200, {"seq": 0, "duplicate": True}))
            ack = await fake.pub("dd.orders", '"again"', id="order-8")
            self.assertNotIn("seq", ack)
            # Another anonymous connection is another publisher.
            other = await Client.open(self.port)
            ack = await other.pub("dd.orders", '"other"', id="order-8")
            self.assertEqual(ack["seq"], 3)
            self.assertEqual((await s.msgs("dd.orders", 1))[0]["data"], "other")
            self.assertEqual(await s.drain(), [])
            for c in (s, fake, other):
                await c.close()
        run(go(), 30)


class TokenTest(ServerTestCase):
    server_opts = {"token_hmac_secret": SECRET, "ping_interval_ms": 0}

    async def open(self, token):
        return Client(await websockets.connect(
            "ws://127.0.0.1:%d/ws?token=%s" % (self.port, token), ping_interval=None,
            compression=None, open_timeout=scale(10), close_timeout=scale(5)))

    def test_one_subject_is_one_publisher(self):
        async def go():
            tok = mint.mint(SECRET, sub="user-42", pubs=[">"])
            a, b = await self.open(tok), await self.open(tok)
            self.assertEqual((await a.pub("dd.user", "1", id="k"))["seq"], 1)
            self.assertNotIn("seq", await b.pub("dd.user", "1", id="k"))
            c = await self.open(mint.mint(SECRET, sub="user-43", pubs=[">"]))
            self.assertEqual((await c.pub("dd.user", "1", id="k"))["seq"], 2)
            for x in (a, b, c):
                await x.close()
        run(go(), 30)

    def test_expired_token_closes_the_connection(self):
        async def go():
            before = closes_by_reason(metrics(self.port)).get("token_expired", 0)
            short = await self.open(mint.mint(SECRET, ttl=2, pubs=[">"]))
            far = await self.open(mint.mint(SECRET, ttl=3600, pubs=[">"]))
            await short.sub("tk.t")
            await far.sub("tk.t")
            t0 = time.monotonic()
            with self.assertRaises(websockets.ConnectionClosed) as cm:
                while True:
                    await short.recv(timeout=10)
            took = time.monotonic() - t0
            self.assertGreater(took, 0.5)
            self.assertLess(took, scale(10))
            rcvd = cm.exception.rcvd
            self.assertEqual((rcvd.code, rcvd.reason), (1008, "token expired"))
            # The far token is unaffected and still served.
            ack, msg = await pub_own(far, "tk.t", "1")
            self.assertEqual((ack["seq"], msg["seq"]), (1, 1))
            await far.close()
            after = closes_by_reason(metrics(self.port)).get("token_expired", 0)
            self.assertEqual(after - before, 1)
        run(go(), 40)


class ReservedTest(ServerTestCase):
    server_opts = {"stats_interval_ms": 100}

    def test_clients_may_not_publish_to_ringcast_topics(self):
        async def go():
            watcher = await Client.open(self.port)
            await watcher.sub("ringcast.stats")
            # The gateway's own feed still publishes there.
            self.assertEqual((await watcher.msgs("ringcast.stats", 1, timeout=10))[0]["topic"],
                             "ringcast.stats")
            fake = await Client.open(self.port)
            rss0 = rss_kib(self.server.proc.pid)
            n = 2000
            for _ in range(n):
                await fake.send('{"op":"pub","topic":"ringcast.stats","data":{"fake":1}}')
            for _ in range(n):
                await fake.expect_error(15)
            status, body = http_publish(self.port, {"topic": "ringcast.stats", "data": 1})
            self.assertEqual((status, body["code"]), (403, 15))
            status, body = http_publish(self.port, [{"topic": "ok.t", "data": 1},
                                                    {"topic": "ringcast.x", "data": 2}])
            self.assertEqual((status, body["code"]), (403, 15))
            self.assertLess(rss_kib(self.server.proc.pid) - rss0, 16 * 1024)
            # The subscriber only ever sees the gateway's feed; other clients are served.
            for m in await watcher.msgs("ringcast.stats", 2, timeout=10):
                self.assertNotIn("fake", m["data"])
            self.assertEqual((await fake.pub("ok.t", "1"))["seq"], 1)
            self.assertGreaterEqual(
                metric_sum(metrics(self.port), "ringcast_publishes_forbidden_total"), n + 2)
            await watcher.close()
            await fake.close()
        run(go(), 40)


if __name__ == "__main__":
    harness.main(budget_s=240)
