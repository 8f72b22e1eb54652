"""GET / serves the live dashboard page, and the stats feed it watches publishes gateway totals
to topic ringcast.stats every stats_interval_ms (none with 0), over the gateway's own /ws."""
import asyncio
import json
import urllib.request

import websockets

import harness
from harness import ServerTestCase, scale


async def first_stats(port, wait):
    async with websockets.connect("ws://127.0.0.1:%d/ws" % port) as ws:
        await ws.send(json.dumps({"op": "sub", "topic": "ringcast.stats"}))
        assert json.loads(await ws.recv())["op"] == "ack"
        try:
            return json.loads(await asyncio.wait_for(ws.recv(), wait))
        except asyncio.TimeoutError:
            return None


class DashboardTest(ServerTestCase):
    server_opts = {"stats_interval_ms": 200}

    def test_page_is_served(self):
        """GET / is an HTML page that subscribes to ringcast.stats over /ws."""
        with urllib.request.urlopen("http://127.0.0.1:%d/" % self.port, timeout=5) as r:
            self.assertEqual(r.status, 200)
            self.assertTrue(r.headers["Content-Type"].startswith("text/html"))
            page = r.read().decode()
        self.assertIn("ringcast.stats", page)
        self.assertIn("/ws", page)

    def test_stats_are_published(self):
        """A subscriber gets a msg with the totals, counting itself among the WebSockets."""
        m = asyncio.run(first_stats(self.port, scale(3)))
        self.assertIsNotNone(m, "no stats within 3 s")
        self.assertEqual((m["op"], m["topic"]), ("msg", "ringcast.stats"))
        s = m["data"]
        for key in ("connections_open", "websockets_open", "subscriptions", "publishes",
                    "deliveries", "shards"):
            self.assertIn(key, s)
        self.assertEqual(s["shards"], 2)
        self.assertGreaterEqual(s["websockets_open"], 1)
        self.assertGreaterEqual(s["subscriptions"], 1)


class DashboardOffTest(ServerTestCase):
    server_opts = {"stats_interval_ms": 0}

    def test_no_feed_when_off(self):
        """stats_interval_ms=0: nothing is published."""
        self.assertIsNone(asyncio.run(first_stats(self.port, 1.5)))


if __name__ == "__main__":
    harness.main()
