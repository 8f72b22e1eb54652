"""The server API (/api/...) on two shards: every call on the admin listener (no key) and on the
public port only with api_key as "Authorization: apikey <key>" (401 without it, or with a wrong
one); publish and broadcast reach subscribers without a token's rights; disconnect closes
all of a user's connections with the code given; unsubscribe takes a user off a topic and
tells it; presence, presence_stats and history come from the topic's owner; topics merges
every shard's subscriber counts; info counts connections; errors are {"error":{"code":HTTP status,"reason":...}}."""
import asyncio
import json
import os
import sys
import unittest

import jwt
import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ServerTestCase, scale  # noqa: E402
from pubsub_test import Client, http_request, run  # noqa: E402

SECRET = "api-test-secret-of-at-least-32-bytes!"
KEY = "the-api-key"


def token(sub, **claims):
    return jwt.encode(dict(sub=sub, **claims), SECRET, algorithm="HS256")


async def connect(port, sub):
    url = "ws://127.0.0.1:%d/ws?token=%s" % (port, token(sub))
    return Client(await websockets.connect(url, ping_interval=None, compression=None,
                                           open_timeout=scale(10)))


class ApiTest(ServerTestCase):
    admin_port = harness.free_port()
    server_opts = {"token_hmac_secret": SECRET, "api_key": KEY, "admin_port": admin_port,
                   "namespace.room": "presence=true"}

    def call(self, name, body=None, port=None, headers=None, method="POST"):
        """(status, parsed JSON) of one API call, on the admin listener by default."""
        raw = json.dumps(body).encode() if body is not None else b""
        status, out = http_request(port or self.admin_port, method, "/api/" + name, raw,
                                   headers or {})
        try:
            return status, json.loads(out)
        except ValueError:
            raise AssertionError("/api/%s answered %d with non-JSON %r" % (name, status, out))

    def assert_error(self, got, status):
        self.assertEqual(got[0], status, got)
        self.assertEqual(set(got[1]), {"error"})
        self.assertEqual(got[1]["error"]["code"], status)
        self.assertTrue(got[1]["error"]["reason"])

    def test_access_on_the_public_port_needs_the_key(self):
        body = {"topic": "t.open", "data": 1}
        self.assert_error(self.call("publish", body, port=self.port), 401)
        self.assert_error(self.call("publish", body, port=self.port,
                                    headers={"Authorization": "apikey wrong-key!!"}), 401)
        self.assert_error(self.call("publish", body, port=self.port,
                                    headers={"Authorization": "Bearer " + token("x")}), 401)
        got = self.call("publish", body, port=self.port,
                        headers={"Authorization": "apikey " + KEY})
        self.assertEqual(got, (200, {"seq": 1}))
        self.assertEqual(self.call("publish", body), (200, {"seq": 2}))
        self.assert_error(self.call("nosuch", {}), 404)
        self.assert_error(self.call("publish", method="GET"), 405)
        self.assert_error(self.call("presence", {"topic": "room:x", "extra": 1}), 400)
        self.assert_error(self.call("presence", {"topic": "bad topic"}), 400)
        self.assert_error(self.call("publish", {"topic": "t"}), 400)
        self.assert_error(self.call("disconnect", {"user": "u", "code": 1001}), 400)
        self.assert_error(self.call("history", {"topic": "t", "limit": 0}), 400)

    def test_publish_broadcast_and_history(self):
        async def go():
            c = await connect(self.port, "reader")
            for t in ("b.1", "b.2", "b.3"):
                await c.sub(t)
            got = self.call("broadcast", {"topics": ["b.1", "b.2", "b.3"], "data": {"n": 7}})
            self.assertEqual(got[0], 200, got)
            self.assertEqual(len(got[1]["results"]), 3)
            seen = sorted([(m["topic"], m["data"]["n"]) for m in
                           [await c.expect(op="msg") for _ in range(3)]])
            self.assertEqual(seen, [("b.1", 7), ("b.2", 7), ("b.3", 7)])
            for i in range(5):
                self.assertEqual(self.call("publish", {"topic": "b.1", "data": i})[0], 200)
            st, h = self.call("history", {"topic": "b.1", "since": 2, "limit": 3})
            self.assertEqual(st, 200, h)
            self.assertEqual((h["topic"], h["seq"]), ("b.1", 6))
            self.assertRegex(h["epoch"], "^[0-9a-f]{16}$")
            self.assertEqual([(m["seq"], m["data"]) for m in h["messages"]],
                             [(3, 1), (4, 2), (5, 3)])
            st, h = self.call("history", {"topic": "never.used"})
            self.assertEqual((st, h["seq"], h["messages"]), (200, 0, []))
            self.assert_error(self.call("broadcast", {"topics": [], "data": 1}), 400)
            await c.close()
        run(go(), 30)

    def test_presence_info_disconnect_unsubscribe(self):
        async def go():
            us = [await connect(self.port, "u1") for _ in range(3)]
            other = await connect(self.port, "u2")
            for c in us + [other]:
                await c.sub("room:lobby")
            st, p = self.call("presence", {"topic": "room:lobby"})
            self.assertEqual((st, p["connections"], p["users"]), (200, 4, 2))
            self.assertEqual(sorted(e["user"] for e in p["clients"]), ["u1", "u1", "u1", "u2"])
            st, p = self.call("presence_stats", {"topic": "room:lobby"})
            self.assertEqual((st, p["connections"], p["users"]), (200, 4, 2))
            self.assert_error(self.call("presence", {"topic": "plain"}), 400)
            extra = [await connect(self.port, "u3") for _ in range(2)]
            for c in extra:
                await c.sub("room:lobby")
                await c.sub("side.topic")
            st, t = self.call("topics", method="GET")
            self.assertEqual(st, 200, t)
            got = {e["topic"]: e["subscribers"] for e in t["topics"]}
            self.assertEqual(got, {"room:lobby": 6, "side.topic": 2})  # no personal topics
            self.assertEqual([e["topic"] for e in t["topics"]], sorted(got))
            for c in extra:
                await c.close()
            st, info = self.call("info", method="GET")
            self.assertEqual((st, info["shards"], len(info["per_shard"])), (200, 2, 2))
            self.assertGreaterEqual(info["connections"], 4)
            # unsubscribe: u2 is told and leaves the presence list.
            self.assertEqual(self.call("unsubscribe", {"user": "u2", "topic": "room:lobby"}),
                             (200, {}))
            await other.expect(op="unsubscribed", topic="room:lobby")
            # disconnect: every connection of u1, on both shards, with the code given.
            self.assertEqual(self.call("disconnect", {"user": "u1", "code": 4321}), (200, {}))
            for c in us:
                with self.assertRaises(websockets.ConnectionClosed) as cm:
                    await asyncio.wait_for(c.ws.recv(), scale(5))
                self.assertEqual(cm.exception.rcvd.code, 4321)
            for _ in range(100):
                st, p = self.call("presence_stats", {"topic": "room:lobby"})
                if p["connections"] == 0:
                    break
                await asyncio.sleep(0.05)
            self.assertEqual(p["connections"], 0)
            await other.close()
        run(go(), 30)


if __name__ == "__main__":
    harness.main()
