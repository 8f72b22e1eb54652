"""Issue 9, CPU fairness: a connection's receives beyond receives_per_turn_max in one loop turn
wait, in order and holding their buffers, for the next turns, so a flooding client cannot keep
its shard from everyone else. Nothing of the flood may be lost or reordered: every message is
echoed in order, and a close (and the end of the stream) sent behind the flood is handled only
after the flood's messages."""
import re
import socket
import urllib.request

import harness
from harness import OP_CLOSE, OP_TEXT, ServerTestCase, scale

FLOOD = 3000


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=scale(5)) as r:
        text = r.read().decode()
    return sum(int(v) for v in re.findall(r'^%s\{shard="\d+"\} (\d+)$' % name, text, re.M))


def payload(i):
    return ("flood %05d " % i).encode() + b"x" * 188


def flood_bytes():
    return b"".join(harness.encode_frame(OP_TEXT, payload(i)) for i in range(FLOOD))


class FairInputTest(ServerTestCase):
    # One receive of at most 1 KiB per connection per turn: a 600 KB flood spans hundreds of
    # turns, so its receives are put off turn after turn.
    shards = 1
    server_opts = {"receives_per_turn_max": 1, "recv_buffer_bytes": 1024}

    def flooder(self):
        c = harness.RawClient(self.port, timeout=scale(20))
        c.handshake("/echo")
        return c

    def assert_echoes_in_order(self, c):
        for i in range(FLOOD):
            f = c.recv_frame()
            self.assertEqual((f.opcode, f.payload), (OP_TEXT, payload(i)), "message %d" % i)

    def test_flood_is_deferred_not_lost_and_others_are_served(self):
        before = metric(self.port, "ringcast_receives_deferred_total")
        c = self.flooder()
        c.send(flood_bytes())
        with harness.RawClient(self.port) as victim:
            victim.handshake("/echo")
            victim.send_frame(OP_TEXT, b"still served")
            f = victim.recv_frame()
            self.assertEqual((f.opcode, f.payload), (OP_TEXT, b"still served"))
        self.assert_echoes_in_order(c)
        c.close()
        self.assertGreater(metric(self.port, "ringcast_receives_deferred_total"), before)

    def test_close_and_end_behind_a_flood_come_after_it(self):
        c = self.flooder()
        c.send(flood_bytes() + harness.encode_frame(OP_CLOSE, harness.close_payload(1000)))
        c.sock.shutdown(socket.SHUT_WR)
        self.assert_echoes_in_order(c)
        f = c.recv_frame()
        self.assertEqual((f.opcode, f.close_code), (OP_CLOSE, 1000))
        c.close()


if __name__ == "__main__":
    harness.main(budget_s=60)
