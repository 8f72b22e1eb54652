"""messages_per_second_max: a client that sends faster than its token bucket allows is closed
with 1008 (counted as rate_limited); one that stays under the rate is never closed; the burst
allowance admits messages_burst_max at once."""
import re
import time
import urllib.request

import harness
from harness import OP_TEXT, ServerTestCase, scale


def closed_rate_limited(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    return sum(int(v) for v in re.findall(
        r'^ringcast_connections_closed_total\{shard="\d+",reason="rate_limited"\} (\d+)$',
        text, re.M))


class RateLimitTest(ServerTestCase):
    server_opts = {"messages_per_second_max": 50, "messages_burst_max": 20}

    def test_burst_is_admitted(self):
        """20 messages at once (the burst) are all echoed."""
        with harness.RawClient(self.port) as c:
            c.handshake("/echo")
            c.send(b"".join(harness.encode_frame(OP_TEXT, b"m%d" % i) for i in range(20)))
            for i in range(20):
                self.assertEqual(c.recv_message(), (OP_TEXT, b"m%d" % i))

    def test_flood_is_closed_1008(self):
        """500 messages at once exceed burst and rate: close 1008, counted as rate_limited."""
        before = closed_rate_limited(self.port)
        with harness.RawClient(self.port) as c:
            c.handshake("/echo")
            c.send(b"".join(harness.encode_frame(OP_TEXT, b"x") for _ in range(500)))
            while True:
                f = c.recv_frame(timeout=scale(5))
                if f.opcode == harness.OP_CLOSE:
                    self.assertEqual(f.close_code, 1008)
                    break
        for _ in range(50):
            if closed_rate_limited(self.port) > before:
                break
            time.sleep(0.05)
        self.assertEqual(closed_rate_limited(self.port), before + 1)

    def test_steady_client_under_the_rate_is_served(self):
        """40 messages/s for 2 s (under 50/s) are all echoed, no close."""
        with harness.RawClient(self.port) as c:
            c.handshake("/echo")
            for i in range(80):
                c.send_frame(OP_TEXT, b"s%d" % i)
                self.assertEqual(c.recv_message(), (OP_TEXT, b"s%d" % i))
                time.sleep(0.025)


if __name__ == "__main__":
    harness.main()
