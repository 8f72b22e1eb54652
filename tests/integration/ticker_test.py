"""examples/ticker.c: a non-shard thread publishes with rc_publish(); subscribers on both
shards receive every tick in order with consecutive seqs; SIGTERM drains and exits 0."""
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import scale  # noqa: E402

import websockets  # noqa: E402

BUILD = os.environ.get("RINGCAST_BUILD") or os.path.join(harness.REPO, "build")
TICKER = os.path.join(BUILD, "examples", "ticker")
COUNT = 300


class TickerTest(unittest.TestCase):
    def test_foreign_thread_publishes_reach_every_subscriber(self):
        port = harness.free_port()
        log = tempfile.TemporaryFile()
        # Far more ticks than read: subscribers join mid-stream and read COUNT of them.
        proc = subprocess.Popen([TICKER, str(port), "100000", "2"], stdout=log, stderr=log,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + scale(10)
            while time.monotonic() < deadline:
                log.seek(0)
                if b"ready on" in log.read():
                    break
                time.sleep(0.02)

            async def go():
                url = "ws://127.0.0.1:%d/ws" % port
                # Unbounded queues: the ticker never pauses, and a full client queue would
                # stall websockets' close handshake behind unread messages.
                subs = [await websockets.connect(url, max_queue=None) for _ in range(20)]
                for s in subs:
                    await s.send(json.dumps({"op": "sub", "topic": "ticks"}))
                    self.assertEqual(json.loads(await s.recv())["op"], "ack")
                for s in subs:
                    msgs = [json.loads(await asyncio.wait_for(s.recv(), scale(10)))
                            for _ in range(COUNT)]
                    seqs = [m["seq"] for m in msgs]
                    self.assertEqual(seqs, list(range(seqs[0], seqs[0] + COUNT)))
                    ticks = [m["data"]["tick"] for m in msgs]
                    self.assertEqual(ticks, list(range(ticks[0], ticks[0] + COUNT)))
                    self.assertEqual(ticks[0], seqs[0])
                for s in subs:
                    await s.close()
            asyncio.run(asyncio.wait_for(go(), scale(30)))
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(scale(15)), 0)
            log.seek(0)
            out = log.read().decode(errors="replace")
            for marker in harness.SANITIZER_MARKERS:
                self.assertNotIn(marker, out)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    r = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if r.wasSuccessful() else 1)
