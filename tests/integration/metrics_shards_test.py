"""GET /metrics at the largest shard count (`shards` allows 256): the answer is 200 and valid
Prometheus text with a value for every shard. The HTTP answer buffer is sized from the shard
count and the series, so the text never outgrows it (it once failed with 500 from ~90 shards).
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Server, http_get  # noqa: E402

SHARDS_LIMIT = 256
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(r"^(%s)(\{%s(?:,%s)*\})? (-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)$"
                    % (NAME, LABEL, LABEL))
COMMENT = re.compile(r"^# (HELP %s .*|TYPE %s (counter|gauge|histogram|summary|untyped))$"
                     % (NAME, NAME))


def parse(text):
    """{(name, labels text)} -> value; fails on any line that is not Prometheus text."""
    samples, typed = {}, set()
    for n, line in enumerate(text.split("\n"), 1):
        if line == "" and n == text.count("\n") + 1:
            break  # the text ends with a newline
        if line.startswith("#"):
            m = COMMENT.match(line)
            if not m:
                raise AssertionError("line %d is not a HELP/TYPE comment: %r" % (n, line))
            if line.startswith("# TYPE "):
                typed.add(line.split()[2])
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("line %d is not `name{labels} value`: %r" % (n, line))
        # A histogram's samples carry a suffix after the name its TYPE line gives.
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        if m.group(1) not in typed and base not in typed:
            raise AssertionError("line %d: %s has no TYPE line before it" % (n, m.group(1)))
        key = (m.group(1), m.group(2) or "")
        if key in samples:
            raise AssertionError("line %d repeats the series %r" % (n, key))
        samples[key] = m.group(3)
    return samples


@unittest.skipIf(harness.REF, "ringcast's metrics only")
class MetricsAtMaxShards(unittest.TestCase):
    def test_metrics_answer_at_256_shards(self):
        """256 unpinned shards with small rings: /metrics answers 200, every line parses,
        every shard label 0..255 appears, and each per-shard family has 256 values."""
        srv = Server(SHARDS_LIMIT, pin_shards="false", connections_max=4096,
                     recv_buffers=16, recv_buffer_bytes=1024, ring_entries=64,
                     mpsc_ring_entries=64, frame_arena_bytes=0, log_level="error").start()
        try:
            for _ in range(2):  # twice: the second answer comes from a warm shard
                status, headers, body = http_get(srv.port, "/metrics")
                self.assertEqual(status, 200, body[:200])
                self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
                samples = parse(body.decode("utf-8"))
            # Process-wide series (the memory budget's) carry no shard label.
            shards = {m.group(1) for m in (re.search(r'shard="([^"]*)"', labels)
                                           for (_, labels) in samples) if m}
            self.assertEqual(shards, {str(i) for i in range(SHARDS_LIMIT)})
            per_family = {}
            for name, labels in samples:
                per_family[name] = per_family.get(name, 0) + 1
            for name in ("ringcast_connections_open", "ringcast_alloc_failures_total"):
                self.assertEqual(per_family.get(name), SHARDS_LIMIT, name)
            reasons = per_family["ringcast_connections_closed_total"]
            self.assertEqual(reasons % SHARDS_LIMIT, 0)
        finally:
            srv.stop_and_check()


if __name__ == "__main__":
    harness.main(budget_s=90)
