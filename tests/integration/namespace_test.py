"""Topic namespaces (namespace.NAME = OPTION=VALUE,...): each option on a real server.
history_size and history_age_ms bound a namespace's history (a resume sees the gap) while
other topics keep the gateway's; publish=nobody/subscribers/any decides who may publish over
WebSocket (POST /publish always may); anonymous lets clients without a token in, for that
namespace only; private needs a subs right the token states (or a channel token);
slow_consumer_policy=drop keeps a stalled reader of the namespace open where the gateway
closes others; presence and join_leave are parsed and shown; --print-config shows every
namespace; an invalid one stops the start (exit 2) with a line naming it."""
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ServerTestCase, scale  # noqa: E402
from pubsub_test import (Client, SmallWindowClient, closes_by_reason, compact, http_request,  # noqa
                         http_publish, kernel_send_bytes_max, metric_sum, metrics, run)

import websockets  # noqa: E402

spec = importlib.util.spec_from_file_location(
    "mint", os.path.join(harness.REPO, "tools", "mint-token.py"))
mint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mint)

SECRET = "namespace-test-secret-of-32-bytes-at-least"


def ns_opts(**namespaces):
    return {"namespace.%s" % k: v for k, v in namespaces.items()}


async def connect(port, token=None):
    url = "ws://127.0.0.1:%d/ws" % port + ("?token=" + token if token else "")
    return Client(await websockets.connect(url, ping_interval=None, compression=None,
                                           open_timeout=scale(10)))


async def ask(c, msg):
    await c.send(msg)
    return await c.recv()


async def resume(c, topic):
    """Subscribes from since 0: the messages history replays (and a gap, if any), then the
    ack. Returns (seqs replayed, gap or None)."""
    await c.send({"op": "sub", "topic": topic, "since": 0})
    seqs, gap = [], None
    while True:
        m = await c.recv()
        if m["op"] == "ack":
            return seqs, gap
        if m["op"] == "gap":
            gap = (m["from"], m["to"])
        elif m["op"] == "msg":
            seqs.append(m["seq"])


class HistoryTest(ServerTestCase):
    server_opts = ns_opts(short="history_size=2", aging="history_age_ms=1")

    def test_history_size_and_age(self):
        async def go():
            p = await connect(self.port)
            for topic in ("short:t", "other.t", "aging:t"):
                for i in range(5):
                    await p.pub(topic, str(i))
            c = await connect(self.port)
            self.assertEqual(await resume(c, "short:t"), ([4, 5], (1, 3)))
            self.assertEqual(await resume(c, "other.t"), ([1, 2, 3, 4, 5], None))
            # Aged out by the sweep (a second or so): the resume then sees all five gone.
            deadline = time.monotonic() + scale(10)
            while True:
                c2 = await connect(self.port)
                got = await resume(c2, "aging:t")
                await c2.close()
                if got == ([], (1, 5)) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            self.assertEqual(got, ([], (1, 5)))
            await p.close()
            await c.close()
        run(go(), 30)


class PublishTest(ServerTestCase):
    server_opts = dict(client_publish="none",
                       **ns_opts(ro="publish=nobody", room="publish=subscribers",
                                 open="publish=any"))

    def test_who_may_publish(self):
        async def go():
            c = await connect(self.port)
            self.assertEqual((await ask(c, {"op": "pub", "topic": "ro:t", "data": 1}))["code"],
                             15)
            self.assertEqual(http_publish(self.port, {"topic": "ro:t", "data": 1})[0], 200)
            self.assertEqual((await ask(c, {"op": "pub", "topic": "room:t", "data": 1}))["code"],
                             15)
            await c.sub("room:t")
            got = await ask(c, {"op": "pub", "topic": "room:t", "data": 2})
            self.assertEqual((got["op"], got["data"]), ("msg", 2))
            self.assertEqual((await c.recv())["of"], "pub")
            # client_publish=none holds outside namespaces, publish=any overrides it inside.
            self.assertEqual((await ask(c, {"op": "pub", "topic": "plain", "data": 1}))["code"],
                             15)
            self.assertEqual((await ask(c, {"op": "pub", "topic": "open:t", "data": 1}))["op"],
                             "ack")
            await c.close()
        run(go(), 20)


class AccessTest(ServerTestCase):
    server_opts = dict(token_hmac_secret=SECRET,
                       **ns_opts(lobby="anonymous=true,publish=any", feed="anonymous=true",
                                 vip="private=true"))

    def test_anonymous_clients_stay_in_their_namespaces(self):
        async def go():
            a = await connect(self.port)  # no token: let in by the anonymous namespaces
            self.assertEqual((await ask(a, {"op": "sub", "topic": "lobby:x"}))["op"], "ack")
            self.assertEqual((await ask(a, {"op": "sub", "topic": "feed:x"}))["op"], "ack")
            self.assertEqual((await ask(a, {"op": "sub", "topic": "plain"}))["code"], 15)
            self.assertEqual((await ask(a, {"op": "sub", "topic": "vip:x"}))["code"], 15)
            got = await ask(a, {"op": "pub", "topic": "lobby:x", "data": 1})
            self.assertEqual(got["op"], "msg")
            self.assertEqual((await a.recv())["of"], "pub")
            self.assertEqual((await ask(a, {"op": "pub", "topic": "feed:x", "data": 1}))["code"],
                             15)
            await a.close()
        run(go(), 20)
        # A bad token is still refused, and POST /publish still needs one.
        status = harness.RawClient(self.port)
        try:
            self.assertEqual(status.handshake("/ws?token=bad.bad.bad", expect=None).status, 401)
        finally:
            status.close()
        status, _ = http_request(self.port, "POST", "/publish",
                                 b'{"topic":"lobby:x","data":1}')
        self.assertEqual(status, 401)

    def test_private_needs_a_stated_right(self):
        async def go():
            everything = await connect(self.port, mint.mint(SECRET, "u1"))
            self.assertEqual((await ask(everything, {"op": "sub", "topic": "plain"}))["op"],
                             "ack")
            self.assertEqual((await ask(everything, {"op": "sub", "topic": "vip:a"}))["code"],
                             15)
            chan = mint.mint(SECRET, "u1", channel="vip:a")
            got = await ask(everything, {"op": "sub", "topic": "vip:a", "token": chan})
            self.assertEqual(got["op"], "ack")
            stated = await connect(self.port, mint.mint(SECRET, "u2", subs=["vip:*"]))
            self.assertEqual((await ask(stated, {"op": "sub", "topic": "vip:b"}))["op"], "ack")
            await everything.close()
            await stated.close()
        run(go(), 20)


class SlowPolicyTest(ServerTestCase):
    # The 1013 close waits behind what the kernel holds for the stalled reader, which reads
    # only after the flood: close_timeout_ms must outlast a flood on a loaded machine.
    server_opts = dict(send_queue_bytes_max=4096, slow_consumer_policy="close",
                       close_timeout_ms=120000, **ns_opts(calm="slow_consumer_policy=drop"))

    def test_namespace_policy_replaces_the_gateways(self):
        calm, plain = SmallWindowClient(self.port), SmallWindowClient(self.port)
        calm.subscribe("calm:t")
        plain.subscribe("plain.t")
        count = 2 * (kernel_send_bytes_max() + 4096) // 2048
        data = compact("x" * 2000)

        async def flood():
            p = await connect(self.port)
            for i in range(count):
                for topic in ("calm:t", "plain.t"):
                    await p.send('{"op":"pub","topic":"%s","data":%s}' % (topic, data))
                await p.recv()
                await p.recv()
            await p.close()
        try:
            run(flood(), 120)
            _, close = plain.read_all(scale(20))
            self.assertIsNotNone(close, "the reader outside the namespace was not closed")
            self.assertEqual(close.close_code, 1013)
            plain.send_close(1013)
            seqs, close = calm.read_all(scale(5))
            self.assertIsNone(close, "policy drop closed the namespace's reader")
            self.assertLess(len(seqs), count)
            deadline = time.monotonic() + scale(5)
            while True:
                m = metrics(self.port)
                if closes_by_reason(m).get("slow_consumer") or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(closes_by_reason(m).get("slow_consumer"), 1)
            self.assertGreater(metric_sum(m, "ringcast_slow_drops_total"), 0)
        finally:
            calm.close()
            plain.close()


class ConfigTest(unittest.TestCase):
    def run_bin(self, *args):
        return subprocess.run([harness.BIN] + list(args), capture_output=True, text=True,
                              timeout=scale(10))

    def test_print_config_shows_namespaces(self):
        r = self.run_bin("--namespace.chat=history_size=100,publish=subscribers,presence=true,"
                         "join_leave=true", "--namespace.news=anonymous=true", "--print-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("namespace.chat = history_size=100,publish=subscribers,presence=true,"
                      "join_leave=true\n", r.stdout)
        self.assertIn("namespace.news = anonymous=true\n", r.stdout)

    def test_invalid_namespaces_stop_the_start(self):
        cases = [("--namespace.chat=publish=all", "namespace.chat: publish: 'all'"),
                 ("--namespace.chat=history_size=lots", "namespace.chat: history_size"),
                 ("--namespace.chat=colour=red", "unknown option 'colour'"),
                 ("--namespace.a b=publish=any", "namespace 'a b'"),
                 ("--namespace.chat=private=true", "private needs a token key"),
                 ("--namespace.chat=anonymous=true,private=true", "exclude each other")]
        for arg, needle in cases:
            r = self.run_bin(arg, "--port=0")
            self.assertEqual(r.returncode, 2, (arg, r.stderr))
            self.assertIn(needle, r.stderr, arg)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    harness.main()
