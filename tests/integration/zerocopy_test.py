"""Broadcast through the registered frame arena with send_zc_fixed forced on: every subscriber
on both shards gets every message, in order, byte-identical; arena frames built on one shard and
released on another travel home (the arena gauge falls back to what history holds); the
heap fallback works when the arena is too small; the server exits cleanly."""
import asyncio
import json
import re
import sys
import urllib.request

import websockets

import harness
from harness import ServerTestCase, scale

BIG = "x" * 20000  # above the forced threshold, one 32 KiB arena chunk per frame


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r"^(ringcast_\w+)\{shard=\"\d+\"[^}]*\} (\d+)$", text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
    return out


async def broadcast(port, subscribers, count, data, topic):
    url = "ws://127.0.0.1:%d/ws" % port
    subs = [await websockets.connect(url, max_size=None) for _ in range(subscribers)]
    for s in subs:
        await s.send(json.dumps({"op": "sub", "topic": topic}))
        assert json.loads(await s.recv())["op"] == "ack"
    pub = await websockets.connect(url, max_size=None)
    for i in range(count):
        await pub.send(json.dumps({"op": "pub", "topic": topic, "data": "%d:%s" % (i, data)}))
    for i in range(count):
        assert json.loads(await pub.recv())["seq"] == i + 1
    seen = []
    for s in subs:
        got = [await asyncio.wait_for(s.recv(), scale(10)) for _ in range(count)]
        seen.append(got)
        msgs = [json.loads(g) for g in got]
        assert [m["seq"] for m in msgs] == list(range(1, count + 1))
        assert all(m["data"] == "%d:%s" % (i, data) for i, m in enumerate(msgs))
    # One frame built once: every subscriber received the same bytes.
    assert all(s == seen[0] for s in seen)
    for s in subs + [pub]:
        await s.close()


class ZeroCopyTest(ServerTestCase):
    server_opts = {"send_zc_threshold_bytes": 1, "history_messages_max": 8}

    def test_every_subscriber_gets_every_message_zero_copy(self):
        """40 subscribers over 2 shards x 200 messages of 20 KB, sent with send_zc_fixed."""
        asyncio.run(broadcast(self.port, 40, 200, BIG, "zc-all"))
        m = metrics(self.port)
        self.assertGreater(m.get("ringcast_sends_zc_total", 0), 0, m)
        self.assertEqual(m.get("ringcast_arena_exhausted_total", 0), 0)

    def test_arena_frames_come_home(self):
        """Frames released on the other shard return to their owner: only history remains
        (each held message with its permessage-deflate variant: websockets negotiates it)."""
        asyncio.run(broadcast(self.port, 10, 50, BIG, "zc-home"))
        for _ in range(50):
            live = metrics(self.port).get("ringcast_arena_frames", 0)
            if live <= 16:
                break
            asyncio.run(asyncio.sleep(0.1))
        self.assertLessEqual(live, 16, "arena frames still held beyond history")


class ArenaFallbackTest(ServerTestCase):
    server_opts = {"send_zc_threshold_bytes": 1, "frame_arena_bytes": 65536,
                   "history_messages_max": 4}

    def test_small_arena_falls_back_to_heap(self):
        """A 64 KiB arena cannot hold the frames: heap frames still deliver everything."""
        asyncio.run(broadcast(self.port, 10, 40, BIG, "zc-heap"))
        self.assertGreater(metrics(self.port).get("ringcast_arena_exhausted_total", 0), 0)


if __name__ == "__main__":
    harness.main()
