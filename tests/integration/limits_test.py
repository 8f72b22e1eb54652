"""connections_max: connections over the limit get a complete 503 (Retry-After) instead of
hanging in the listen backlog, are counted as over_capacity, and do not hold a place: once a
served connection leaves, the next one is served."""
import re
import socket
import time
import urllib.request

import harness
from harness import OP_TEXT, ServerTestCase, scale


def metric(port, name, label):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    pat = r'^%s\{shard="\d+"%s\} (\d+)$' % (name, label)
    return sum(int(v) for v in re.findall(pat, text, re.M))


class ConnectionLimitTest(ServerTestCase):
    shards = 1
    # /metrics itself takes a connection: the limit counts it while it is served.
    server_opts = {"connections_max": 5}

    def test_over_the_limit_gets_503_then_room_frees(self):
        held = []
        try:
            for _ in range(5):
                c = harness.RawClient(self.port)
                c.handshake("/echo")
                held.append(c)
            refused = []
            for _ in range(3):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=scale(5))
                s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(4096)
                    self.assertTrue(chunk, "closed without an answer")
                    data += chunk
                self.assertTrue(data.startswith(b"HTTP/1.1 503 "), data[:60])
                self.assertIn(b"Retry-After: 1", data)
                refused.append(s)
            for c in held[:2]:
                c.close()
            time.sleep(0.3)
            # The refused ones are still open, yet two places are free again.
            for _ in range(2):
                c = harness.RawClient(self.port)
                c.handshake("/echo")
                c.send_frame(OP_TEXT, b"served")
                self.assertEqual(c.recv_message(), (OP_TEXT, b"served"))
                held.append(c)
            for s in refused:
                s.close()
            held[2].close()
            time.sleep(0.3)
            self.assertEqual(metric(self.port, "ringcast_connections_closed_total",
                                    ',reason="over_capacity"'), 3)
        finally:
            for c in held:
                c.close()


if __name__ == "__main__":
    harness.main()
