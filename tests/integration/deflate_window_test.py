"""permessage-deflate with a small server window (server_max_window_bits 8..15; RFC 7692
§7.1.2.1, Autobahn section 13).

ringcast accepts every server window and answers the offered value. libdeflate cannot be told a
window, so a message is compressed only if it is at most 2^bits bytes long (no back-reference
can then reach further); a longer one goes out plain and counts in
ringcast_deflate_window_skips_total. Checked here:

- Raw clients on /echo, every window 8..15: the answer, RSV1 exactly on the messages that fit,
  each compressed reply inflated by a strict inflater limited to that window, the metric.
- Raw subscribers on /ws with windows 8, 9, 10, 12, 15 and none: one deflated variant per
  broadcast (identical bytes to every subscriber it fits, compressed once), the plain frame to
  the others, every payload exact.
- python3-websockets with ClientPerMessageDeflateFactory(server_max_window_bits=8..15): echo
  and pub/sub, every message intact, the metric and ringcast_deflate_in_bytes_total exact.

zlib only reports "invalid distance too far back" for a distance beyond what it has in its
window *and* in the output of the current inflate() call, so one-shot inflaters (websockets
inflates up to 32 KiB in one call) would not notice a back-reference past a small window.
strict_inflate() makes one inflate() call per output byte, which leaves only the window, and
the far_repeats() data repeats blocks further apart than every small window.
"""

import asyncio
import json
import os
import random
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import OP_BINARY, OP_TEXT, RawClient, encode_frame, scale  # noqa: E402
import deflate_test as dt  # noqa: E402  (helpers only: a module attribute runs no tests)

import websockets  # noqa: E402
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory  # noqa: E402

LIMIT = 65536
THRESHOLD = dt.THRESHOLD
WINDOWS = range(8, 16)


def strict_inflate(payload, bits):
    """payload inflated as a receiver keeping only a 2^bits window must (raises zlib.error
    on a distance too far back): one output byte per inflate() call."""
    d = zlib.decompressobj(-bits)
    data, pos, out, buf = payload + dt.TAIL, 0, bytearray(), b""
    # ringcast's messages end in a BFINAL block: zlib stops there (d.eof), as receivers do.
    while not d.eof:
        if not buf and pos < len(data):  # small input slices: the tail is copied every call
            buf, pos = data[pos:pos + 64], pos + 64
        chunk = d.decompress(buf, 1)
        out += chunk
        if not chunk and d.unconsumed_tail == buf and pos >= len(data):
            break
        buf = d.unconsumed_tail
    return bytes(out)


def far_repeats(n, block, seed=7):
    """n printable ASCII bytes (valid JSON string content): a random block repeated, so that
    compression needs back-references block bytes long."""
    rnd = random.Random(seed * 1000003 + n)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_"
    unit = "".join(rnd.choice(alphabet) for _ in range(max(1, block)))
    return (unit * (n // len(unit) + 1))[:n]


def fits(bits, n):
    return bits == 15 or n <= 1 << bits


def sent_compressed(bits, n):
    """Whether ringcast compresses an n-byte message (data that shrinks) for this window."""
    return bits is not None and n >= THRESHOLD and fits(bits, n)


def echo_sizes(bits):
    w = 1 << bits
    return sorted({THRESHOLD, w - 1, w, w + 1, min(3 * w + 5, 50000), 60000} - {THRESHOLD - 1})


def payload_for(n):
    """Compressible at every size, with distances of n/4 below 60000 and 20000 at 60000."""
    return far_repeats(n, 20000 if n >= 60000 else n // 4).encode()


def datas_for(topic, lengths):
    """JSON strings whose envelopes, published in order on a fresh topic (seq 1, 2, ...),
    are exactly lengths bytes long, with distances as in payload_for()."""
    out = []
    for i, n in enumerate(lengths):
        overhead = len(dt.envelope(topic, i + 1, '""'))
        out.append('"%s"' % far_repeats(n - overhead, 20000 if n >= 60000 else n // 4))
    return out


def delta(t0, t1, name):
    return t1.get(name, 0) - t0.get(name, 0)


def window_client(port, path, bits):
    """A raw client that negotiated server_max_window_bits=bits (asserts the exact answer)."""
    c = RawClient(port)
    try:
        offer = "permessage-deflate; server_max_window_bits=%d; client_max_window_bits" % bits
        resp = c.handshake(path, headers=[("Sec-WebSocket-Extensions", offer)])
        got = dt.ext_headers(resp)
        if got != [dt.ext_window(bits)]:
            raise AssertionError("offer %r answered %r" % (offer, got))
    except BaseException:
        c.close()
        raise
    return c


class CheckerTest(harness.ServerTestCase):
    def test_strict_inflate_catches_a_distance_past_the_window(self):
        """The check the cases below rely on: zlib's one-shot inflate lets a 700-byte distance
        through a 512-byte window, strict_inflate() does not."""
        data = random.Random(1).randbytes(700) * 4
        z = dt.deflate(data)
        self.assertEqual(zlib.decompressobj(-9).decompress(z + dt.TAIL), data)
        with self.assertRaisesRegex(zlib.error, "too far back"):
            strict_inflate(z, 9)
        self.assertEqual(strict_inflate(z, 10), data)


class RawWindowTest(harness.ServerTestCase):
    """Raw clients: RSV1 on the wire, strict inflation, the skip metric."""

    shards = 2
    server_opts = {"echo_message_bytes_max": LIMIT, "echo_frame_bytes_max": LIMIT}

    def test_echo_compresses_only_what_fits_the_window(self):
        t0, _ = dt.metrics(self.port)
        skips = 0
        for bits in WINDOWS:
            c = window_client(self.port, "/echo", bits)
            try:
                for n in echo_sizes(bits):
                    data = payload_for(n)
                    c.send(encode_frame(OP_BINARY, data))
                    op, rsv, payload, _ = dt.recv_message_rsv(c)
                    what = "window %d, %d bytes" % (bits, n)
                    self.assertEqual(op, OP_BINARY, what)
                    self.assertEqual(rsv == 4, sent_compressed(bits, n), what)
                    if rsv == 4:
                        self.assertLess(len(payload), n, what)
                        payload = strict_inflate(payload, bits)
                    self.assertTrue(payload == data, what)
                    skips += n >= THRESHOLD and not fits(bits, n)
            finally:
                c.close()
        t1, _ = dt.metrics(self.port)
        self.assertGreater(skips, 0)
        self.assertEqual(delta(t0, t1, "ringcast_deflate_window_skips_total"), skips)

    def test_broadcast_one_variant_for_every_window(self):
        """Subscribers with windows 8..15 and plain ones: the deflated variant goes to those it
        fits, byte-identical; the plain frame to the rest; compressed once per broadcast."""
        topic = "window.raw.%d" % os.getpid()
        windows = [None, 8, 9, 10, 12, 15] * 2
        lengths = [THRESHOLD, 300, 512, 513, 1024, 1025, 4096, 4097, 60000]
        datas = datas_for(topic, lengths)
        subs = []
        try:
            for bits in windows:
                c = window_client(self.port, "/ws", bits) if bits else \
                    RawClient.upgraded(self.port, "/ws")
                c.send(encode_frame(OP_TEXT, '{"op":"sub","topic":"%s"}' % topic))
                _, _, payload, _ = dt.recv_message_rsv(c)
                self.assertEqual(json.loads(payload)["of"], "sub")
                subs.append((bits, c))
            t0, _ = dt.metrics(self.port)
            seqs = publish(self.url("/ws"), topic, datas)
            self.assertEqual(seqs, list(range(1, len(datas) + 1)))
            skips = 0
            for i, d in enumerate(datas):
                want = dt.envelope(topic, seqs[i], d).encode()
                self.assertEqual(len(want), lengths[i])
                variants = set()
                for bits, c in subs:
                    op, rsv, payload, _ = dt.recv_message_rsv(c)
                    what = "window %s, envelope of %d bytes" % (bits, len(want))
                    self.assertEqual(op, OP_TEXT, what)
                    self.assertEqual(rsv == 4, sent_compressed(bits, len(want)), what)
                    if rsv == 4:
                        variants.add(payload)
                        payload = strict_inflate(payload, bits)
                    self.assertTrue(payload == want, what)
                    skips += bits is not None and not fits(bits, len(want))
                self.assertEqual(len(variants), 1, "deflated variants of message %d" % i)
            t1, _ = dt.metrics(self.port)
        finally:
            for _, c in subs:
                c.close()
        self.assertEqual(delta(t0, t1, "ringcast_deflate_window_skips_total"), skips)
        self.assertEqual(delta(t0, t1, "ringcast_deflate_in_bytes_total"), sum(lengths))


async def apublish(url, topic, datas):
    """Publishes datas (JSON texts) from a plain websockets client; returns the acked seqs."""
    async with websockets.connect(url, compression=None, max_size=None,
                                  ping_interval=None) as pub:
        for d in datas:
            await pub.send('{"op":"pub","topic":"%s","data":%s}' % (topic, d))
        seqs = []
        for _ in datas:
            ack = json.loads(await asyncio.wait_for(pub.recv(), scale(10)))
            if (ack.get("op"), ack.get("of")) != ("ack", "pub"):
                raise AssertionError("publish answered %r" % ack)
            seqs.append(ack["seq"])
        return seqs


def publish(url, topic, datas):
    return dt.run(apublish(url, topic, datas), 20)


def connect(url, bits):
    factory = ClientPerMessageDeflateFactory(server_max_window_bits=bits)
    return websockets.connect(url, extensions=[factory], compression=None, max_size=None,
                              ping_interval=None)


class WebsocketsWindowTest(harness.ServerTestCase):
    """python3-websockets asking for each server window: negotiation answered, every message
    intact, compressed exactly when it fits (by the metrics)."""

    shards = 2

    def test_echo_every_window(self):
        async def go():
            compressed = skipped = 0
            for bits in WINDOWS:
                async with connect(self.url(), bits) as ws:
                    self.assertEqual(len(ws.extensions), 1)
                    self.assertEqual(ws.extensions[0].remote_max_window_bits, bits)
                    for n in echo_sizes(bits):
                        text = payload_for(n).decode()
                        for data in (text, text.encode()):
                            await ws.send(data)
                            got = await ws.recv()
                            self.assertTrue(got == data, "window %d, %d bytes" % (bits, n))
                        if n >= THRESHOLD:
                            compressed += 2 * n if fits(bits, n) else 0
                            skipped += 0 if fits(bits, n) else 2
            return compressed, skipped
        t0, _ = dt.metrics(self.port)
        compressed, skipped = dt.run(go(), 30)
        t1, _ = dt.metrics(self.port)
        self.assertEqual(delta(t0, t1, "ringcast_deflate_window_skips_total"), skipped)
        self.assertEqual(delta(t0, t1, "ringcast_deflate_in_bytes_total"), compressed)

    def test_pubsub_every_window(self):
        topic = "window.websockets.%d" % os.getpid()
        lengths = [100, THRESHOLD, 400, 600, 1000, 3000, 9000, 20000, 40000, 60000]
        datas = datas_for(topic, lengths)
        windows = list(WINDOWS) + [None]

        async def go():
            subs = []
            for bits in windows:
                ws = await (connect(self.url("/ws"), bits) if bits else websockets.connect(
                    self.url("/ws"), compression=None, max_size=None, ping_interval=None))
                subs.append(ws)
                await ws.send(json.dumps({"op": "sub", "topic": topic}))
                ack = json.loads(await asyncio.wait_for(ws.recv(), scale(5)))
                self.assertEqual(ack.get("of"), "sub")
            t0, _ = dt.metrics(self.port)
            seqs = await apublish(self.url("/ws"), topic, datas)
            self.assertEqual(seqs, list(range(1, len(datas) + 1)))
            for bits, ws in zip(windows, subs):
                for i, d in enumerate(datas):
                    got = await asyncio.wait_for(ws.recv(), scale(10))
                    self.assertTrue(got == dt.envelope(topic, i + 1, d),
                                    "window %s, message %d" % (bits, i + 1))
                await ws.close()
            return t0

        t0 = dt.run(go(), 40)
        t1, _ = dt.metrics(self.port)
        sizes = [len(dt.envelope(topic, i + 1, d)) for i, d in enumerate(datas)]
        self.assertEqual(sizes, lengths)
        skips = sum(1 for bits in WINDOWS for n in sizes if n >= THRESHOLD and not fits(bits, n))
        self.assertEqual(delta(t0, t1, "ringcast_deflate_window_skips_total"), skips)
        self.assertEqual(delta(t0, t1, "ringcast_deflate_in_bytes_total"),
                         sum(n for n in sizes if n >= THRESHOLD))


if __name__ == "__main__":
    harness.main(budget_s=58)
