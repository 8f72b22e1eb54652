"""permessage-deflate (RFC 7692, issue 5) with real and raw clients.

- Python websockets (its deflate extension on, and compression=None) echoing compressible and
  incompressible text and binary messages from 0 B to 1 MiB.
- The negotiation matrix with raw handshakes on /echo and /ws: the offers of Chromium,
  websockets and Node ws, several offers and headers with the first declined, duplicate,
  unknown and invalid parameters, server_max_window_bits 8..15 answered with the offered
  value, quoted values, case, whitespace; the exact response line; --deflate=false. (What a
  small server window does to messages: deflate_window_test.py.)
- Raw frames compressed here with zlib (raw DEFLATE, Z_SYNC_FLUSH, 00 00 ff ff stripped):
  single and fragmented messages, pipelined messages, the RFC 7692 §7.2.3 examples, RSV1 on a
  continuation or a control frame (1002), a decompression bomb (1009, no big allocation),
  corrupt data and back-references into a context the server never had (1007), invalid UTF-8
  once inflated (1007). Every compressed reply is inflated with a fresh zlib decompressor after
  appending 00 00 ff ff (server_no_context_takeover).
- The broadcast: deflate and plain subscribers over both shards receive every message
  byte-exact, and ringcast_deflate_in_bytes_total grows by the envelope bytes once per message,
  not once per subscriber (compress-once).
"""

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                     RawClient, encode_frame, scale)

import websockets  # noqa: E402
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory, PerMessageDeflate)

TAIL = b"\x00\x00\xff\xff"
CLOSE_PROTOCOL, CLOSE_INVALID_DATA, CLOSE_TOO_BIG = 1002, 1007, 1009
EXT = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
EXT15 = EXT + "; server_max_window_bits=15"


def ext_window(bits):
    return EXT + "; server_max_window_bits=%d" % bits
LIMIT = 65536  # echo_message_bytes_max and echo_frame_bytes_max of the raw-frame cases
THRESHOLD = 256  # deflate_threshold_bytes default

CHROMIUM_OFFER = "permessage-deflate; client_max_window_bits"
WEBSOCKETS_OFFER = "permessage-deflate; client_max_window_bits"  # websockets 10.4 default
NODE_WS_OFFER = "permessage-deflate; client_max_window_bits"  # ws 8 perMessageDeflate: true
FIREFOX_OFFER = "permessage-deflate"


def deflate(data, zdict=None, level=6, finish=False):
    """data as a permessage-deflate payload: raw DEFLATE, sync-flushed, tail stripped
    (RFC 7692 §7.2.1). finish=True ends with a BFINAL block instead (no tail to strip)."""
    if isinstance(data, str):
        data = data.encode()
    kw = {"zdict": zdict} if zdict else {}
    c = zlib.compressobj(level, zlib.DEFLATED, -15, **kw)
    out = c.compress(data) + c.flush(zlib.Z_FINISH if finish else zlib.Z_SYNC_FLUSH)
    if not finish:
        assert out.endswith(TAIL), out[-8:]
        out = out[:-4]
    return out


def inflate(payload):
    """A server's compressed payload inflated the way every zlib receiver does it: a fresh
    decompressor (no context takeover), 00 00 ff ff appended (RFC 7692 §7.2.2)."""
    d = zlib.decompressobj(-15)
    out = d.decompress(payload + TAIL)
    return out + d.flush()


def compressible(n, seed=1):
    """n bytes of JSON-ish text that deflates well."""
    rnd = random.Random(seed)
    words = ["ringcast", "topic", "price", "quote", "bid", "ask", "volume", "orderbook"]
    parts, size = [], 0
    while size < n:
        s = '{"%s":%d,"%s":"%s"},' % (rnd.choice(words), rnd.randrange(1000),
                                      rnd.choice(words), rnd.choice(words))
        parts.append(s)
        size += len(s)
    return "".join(parts)[:n]


def incompressible_text(n, seed=2):
    """n bytes of valid UTF-8 that deflate cannot shrink much (random code points)."""
    rnd = random.Random(seed)
    out, size = [], 0
    while size < n:
        left = n - size
        if left >= 3:
            ch = chr(rnd.choice((rnd.randrange(0x800, 0xd800), rnd.randrange(0x80, 0x800),
                                 rnd.randrange(0x21, 0x7f))))
        else:
            ch = chr(rnd.randrange(0x21, 0x7f))
        b = len(ch.encode())
        if b > left:
            continue
        out.append(ch)
        size += b
    s = "".join(out)
    assert len(s.encode()) == n
    return s


def incompressible_bytes(n, seed=3):
    return random.Random(seed).randbytes(n)


def metrics(port):
    """{name: sum over shards} and {name: {shard: value}} from GET /metrics."""
    status, _, body = harness.http_get(port, "/metrics")
    if status != 200:
        raise AssertionError("GET /metrics answered %d" % status)
    total, by_shard = {}, {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name, _, labels = name_labels.partition("{")
        total[name] = total.get(name, 0) + float(value)
        shard = None
        for kv in labels.rstrip("}").split(","):
            if kv.startswith("shard="):
                shard = kv.split("=", 1)[1].strip('"')
        if shard is not None:
            by_shard.setdefault(name, {})
            by_shard[name][shard] = by_shard[name].get(shard, 0) + float(value)
    return total, by_shard


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run(coro, timeout):
    return asyncio.run(asyncio.wait_for(coro, scale(timeout)))


def ext_headers(resp):
    return [v for k, v in resp.headers if k == "sec-websocket-extensions"]


# ---------------------------------------------------------------------------------------------
# Raw-client helpers shared by the cases below.

def deflate_client(port, path="/echo", offer=CHROMIUM_OFFER):
    """A raw client that negotiated permessage-deflate (asserts the exact answer)."""
    c = RawClient(port)
    try:
        resp = c.handshake(path, headers=[("Sec-WebSocket-Extensions", offer)])
        got = ext_headers(resp)
        if got != [EXT]:
            raise AssertionError("offer %r answered %r" % (offer, got))
    except BaseException:
        c.close()
        raise
    return c


def recv_message_rsv(c, timeout=None):
    """The next data message as (opcode, rsv of its first frame, payload, frame count);
    asserts RSV1 appears on no continuation and RSV2/RSV3 never."""
    opcode, rsv, parts, frames = None, None, [], 0
    while True:
        f = c.recv_frame(timeout)
        if f.opcode >= 0x8:
            raise AssertionError("unexpected control frame %r %r" % (f, f.payload[:60]))
        frames += 1
        if opcode is None:
            if f.opcode == OP_CONT:
                raise AssertionError("continuation without a start")
            opcode, rsv = f.opcode, f.rsv
        elif f.opcode != OP_CONT:
            raise AssertionError("new message mid-message: %r" % f)
        elif f.rsv:
            raise AssertionError("RSV bits on a continuation frame: %r" % f)
        if rsv & 0x3:
            raise AssertionError("RSV2/RSV3 set: %r" % f)
        parts.append(f.payload)
        if f.fin:
            return opcode, rsv, b"".join(parts), frames


def echo_raw(testcase, c, opcode, data, frames, expect_compressed=None):
    """Sends frames (a list of raw frame bytes) and checks the echo of data (bytes): its
    opcode, its content (inflated if RSV1) and whether it came compressed."""
    c.send(b"".join(frames))
    op, rsv, payload, _ = recv_message_rsv(c)
    testcase.assertEqual(op, opcode)
    got = inflate(payload) if rsv == 4 else payload
    testcase.assertEqual(len(got), len(data))
    testcase.assertEqual(got, data)
    if expect_compressed is not None:
        testcase.assertEqual(rsv == 4, expect_compressed,
                             "reply of %d bytes compressed=%s (%d on the wire)"
                             % (len(data), rsv == 4, len(payload)))
    if rsv == 4:
        testcase.assertLess(len(payload), len(data), "compressed reply is not smaller")
    return rsv == 4, len(payload)


def comp_frame(data, opcode=OP_TEXT, **kw):
    return encode_frame(opcode, deflate(data), rsv=4, **kw)


# ---------------------------------------------------------------------------------------------

class NegotiationTest(harness.ServerTestCase):
    """Raw handshakes: which offer is accepted and the exact answer, on /echo and /ws."""

    shards = 2
    server_opts = {"echo_message_bytes_max": LIMIT, "echo_frame_bytes_max": LIMIT}

    def negotiate(self, values, expect, path="/echo", probe=True):
        """Handshakes offering the header values (one Sec-WebSocket-Extensions header each);
        asserts the answer (None = no extension header) and that the connection behaves
        accordingly: a compressed message is echoed, or RSV1 closes with 1002."""
        c = RawClient(self.port)
        try:
            resp = c.handshake(path, headers=[("Sec-WebSocket-Extensions", v) for v in values])
            self.assertEqual(resp.status, 101)
            got = ext_headers(resp)
            self.assertEqual(got, [] if expect is None else [expect],
                             "offer %r on %s" % (values, path))
            if not probe:
                return
            # A message longer than a small server window is sent plain: probe within it.
            bits = int(expect.rsplit("=", 1)[1]) if expect and "window_bits=" in expect else 15
            text = compressible(min(600, 1 << bits))
            if expect is None:
                c.send(comp_frame(text))
                c.expect_close(CLOSE_PROTOCOL)
            elif path == "/echo":
                echo_raw(self, c, OP_TEXT, text.encode(), [comp_frame(text)], True)
            else:
                c.send(encode_frame(OP_TEXT, deflate('{"op":"ping"}'), rsv=4))
                op, rsv, payload, _ = recv_message_rsv(c)
                self.assertEqual(json.loads(payload), {"op": "pong"})
        finally:
            c.close()

    def test_browser_and_library_offers(self):
        """Chromium's, websockets' and Node ws' offer (client_max_window_bits without a value)
        and Firefox's bare offer are accepted on both endpoints with the exact answer."""
        for path in ("/echo", "/ws"):
            for offer in (CHROMIUM_OFFER, WEBSOCKETS_OFFER, NODE_WS_OFFER, FIREFOX_OFFER):
                with self.subTest(path=path, offer=offer):
                    self.negotiate([offer], EXT, path)

    def test_full_offers_echo_window_bits_only_when_offered(self):
        full = ("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                "server_max_window_bits=15; client_max_window_bits=15")
        cases = [
            (full, EXT15),
            ("permessage-deflate; server_max_window_bits=15", EXT15),
            ("permessage-deflate; client_max_window_bits=8", EXT),
            ("permessage-deflate; client_max_window_bits=15", EXT),
            ("permessage-deflate; server_no_context_takeover", EXT),
            ("permessage-deflate; client_no_context_takeover", EXT),
            ("permessage-deflate; client_max_window_bits; server_max_window_bits=15", EXT15),
        ]
        for path in ("/echo", "/ws"):
            for offer, expect in cases:
                with self.subTest(path=path, offer=offer):
                    self.negotiate([offer], expect, path)

    def test_declined_offers_never_fail_the_handshake(self):
        """Each of these is declined (no extension header, RSV1 then gets 1002)."""
        declined = [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; server_max_window_bits=0x0f",
            "permessage-deflate; server_max_window_bits=+15",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=10; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=15; server_max_window_bits=15",
            "permessage-deflate; foo",
            "permessage-deflate; foo=1",
            "permessage-deflate; x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=12",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=\"15",
            "x-webkit-deflate-frame",
            "deflate-frame",
            "permessage-deflate-x",
            "",
        ]
        for path in ("/echo", "/ws"):
            for offer in declined:
                with self.subTest(path=path, offer=offer):
                    self.negotiate([offer], None, path, probe=(path == "/echo"))

    def test_first_acceptable_offer_wins(self):
        """Several offers in one header and across headers: the declined ones are skipped and
        the answer reflects the accepted offer's own parameters."""
        cases = [
            (["permessage-deflate; server_max_window_bits=7, permessage-deflate"], EXT),
            (["permessage-deflate; server_max_window_bits=10, permessage-deflate"],
             ext_window(10)),
            (["permessage-deflate; server_max_window_bits=16, "
              "permessage-deflate; server_max_window_bits=15"], EXT15),
            (["permessage-deflate; foo=1, permessage-deflate; client_max_window_bits"], EXT),
            (["permessage-deflate; client_max_window_bits, "
              "permessage-deflate; server_max_window_bits=15"], EXT),
            (["permessage-deflate; server_max_window_bits=15, permessage-deflate"], EXT15),
            (["x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=15"], EXT15),
            (["foo; bar=1", "permessage-deflate; server_max_window_bits=15"], EXT15),
            (["permessage-deflate; server_max_window_bits=9", "permessage-deflate"],
             ext_window(9)),
            (["permessage-deflate; server_max_window_bits=16", "permessage-deflate"], EXT),
            (["permessage-deflate; server_no_context_takeover; server_no_context_takeover",
              "foo", "permessage-deflate; client_max_window_bits=10"], EXT),
            # Node ws' offer list when a smaller server window is asked first.
            (["permessage-deflate; server_max_window_bits=10; client_max_window_bits, "
              "permessage-deflate; client_max_window_bits"], ext_window(10)),
            (["permessage-deflate; server_max_window_bits=8, "
              "permessage-deflate; server_max_window_bits=12"], ext_window(8)),
            (["permessage-deflate; server_max_window_bits=7, "
              "permessage-deflate; server_max_window_bits=12"], ext_window(12)),
        ]
        for path in ("/echo", "/ws"):
            for values, expect in cases:
                with self.subTest(path=path, values=values):
                    self.negotiate(values, expect, path)

    def test_quoted_values_case_and_whitespace(self):
        cases = [
            ('permessage-deflate; server_max_window_bits="15"', EXT15),
            ('permessage-deflate; client_max_window_bits="10"', EXT),
            ('permessage-deflate; client_max_window_bits="8"; server_max_window_bits="15"',
             EXT15),
            ('foo; bar="a, b; c", permessage-deflate', EXT),
            ('foo; bar="a \\" , permessage-deflate; server_max_window_bits=10", '
             'permessage-deflate; server_max_window_bits=15', EXT15),
            ("PerMessage-Deflate; Server_Max_Window_Bits=15", EXT15),
            ("PERMESSAGE-DEFLATE; CLIENT_MAX_WINDOW_BITS", EXT),
            ("permessage-deflate;client_max_window_bits;server_max_window_bits=15", EXT15),
            ("  permessage-deflate  ;  client_max_window_bits  ;  server_max_window_bits = 15",
             EXT15),
            ("permessage-deflate\t;\tclient_max_window_bits", EXT),
            ("foo ,permessage-deflate , bar", EXT),
            (",permessage-deflate", EXT),
        ]
        for path in ("/echo", "/ws"):
            for offer, expect in cases:
                with self.subTest(path=path, offer=offer):
                    self.negotiate([offer], expect, path)

    def test_many_offers_and_headers(self):
        declined = "permessage-deflate; server_max_window_bits=7"
        self.negotiate([", ".join([declined] * 60 + ["permessage-deflate"])], EXT)
        # Eight headers: RC_HTTP_REPEAT_LIMIT (a ninth is refused with 400 by the HTTP layer).
        self.negotiate([declined] * 7 + ["permessage-deflate; server_max_window_bits=15"],
                       EXT15)
        self.negotiate([declined + ", " + declined] * 7 + [declined + ", permessage-deflate"],
                       EXT)
        self.negotiate([", ".join(["foo; a=1; b=\"x,y\""] * 40)], None)

    def test_malformed_offers_are_never_fatal(self):
        """Odd headers: the handshake succeeds, and the answer is nothing or the exact line
        (whichever the parser decides), and the connection behaves accordingly."""
        odd = ["permessage-deflate;", "permessage-deflate;;client_max_window_bits",
               "permessage-deflate; =15", "permessage-deflate; client_max_window_bits=\"",
               "\"permessage-deflate\"", "permessage-deflate; " + "x" * 3000,
               "," * 200, ";;;", "permessage-deflate; server_max_window_bits=15 15",
               "permessage-deflate; server_max_window_bits=1\\5",
               "permessage-deflate server_max_window_bits=15",
               "permessage-deflate; client_max_window_bits=\"\"",
               "permessage-deflate; server_max_window_bits==15",
               "permessage-deflate; client_max_window_bits=99999999999999999999"]
        for offer in odd:
            with self.subTest(offer=offer):
                c = RawClient(self.port)
                try:
                    resp = c.handshake("/echo",
                                       headers=[("Sec-WebSocket-Extensions", offer)])
                    got = ext_headers(resp)
                    self.assertIn(got, ([], [EXT], [EXT15]))
                    text = compressible(600)
                    if got:
                        echo_raw(self, c, OP_TEXT, text.encode(), [comp_frame(text)], True)
                    else:
                        c.send(comp_frame(text))
                        c.expect_close(CLOSE_PROTOCOL)
                finally:
                    c.close()

    def test_no_offer_no_extension(self):
        for path in ("/echo", "/ws"):
            with self.subTest(path=path):
                c = RawClient(self.port)
                try:
                    resp = c.handshake(path)
                    self.assertEqual(ext_headers(resp), [])
                    c.send(comp_frame(compressible(600)))
                    c.expect_close(CLOSE_PROTOCOL)
                finally:
                    c.close()

    def test_exact_response_line(self):
        """The header line as bytes on the wire (name, spacing, order of parameters)."""
        for offer, line in ((CHROMIUM_OFFER, EXT),
                            ("permessage-deflate; server_max_window_bits=15", EXT15)):
            with socket.create_connection(("127.0.0.1", self.port), timeout=scale(5)) as s:
                s.sendall(("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: %s\r\n\r\n"
                           % offer).encode())
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = s.recv(4096)
                    self.assertTrue(chunk, "closed before the 101")
                    buf += chunk
                head = buf.split(b"\r\n\r\n")[0].decode()
                lines = head.split("\r\n")
                self.assertEqual(lines[0], "HTTP/1.1 101 Switching Protocols")
                ext = [l for l in lines if l.lower().startswith("sec-websocket-extensions")]
                self.assertEqual(ext, ["Sec-WebSocket-Extensions: " + line], head)


class DisabledTest(harness.ServerTestCase):
    """--deflate=false: nothing negotiated, RSV1 is a protocol error."""

    server_opts = {"deflate": "false"}

    def test_nothing_negotiated_and_rsv1_is_1002(self):
        for path in ("/echo", "/ws"):
            for offer in (CHROMIUM_OFFER, FIREFOX_OFFER, EXT15):
                with self.subTest(path=path, offer=offer):
                    c = RawClient(self.port)
                    try:
                        resp = c.handshake(path, headers=[("Sec-WebSocket-Extensions", offer)])
                        self.assertEqual(ext_headers(resp), [])
                        c.send(comp_frame(compressible(600)))
                        c.expect_close(CLOSE_PROTOCOL)
                    finally:
                        c.close()

    def test_websockets_client_falls_back_to_plain(self):
        async def go():
            async with websockets.connect(self.url(), max_size=None) as ws:
                self.assertEqual(ws.extensions, [])
                for data in (compressible(5000), incompressible_bytes(5000)):
                    await ws.send(data)
                    self.assertEqual(await ws.recv(), data)
        run(go(), 20)
        total, _ = metrics(self.port)
        self.assertEqual(total.get("ringcast_deflate_in_bytes_total"), 0)
        self.assertEqual(total.get("ringcast_inflated_messages_total"), 0)


class RawFrameTest(harness.ServerTestCase):
    """Compressed frames built here with zlib, against /echo with a 64 KiB message limit."""

    shards = 2
    server_opts = {"echo_message_bytes_max": LIMIT, "echo_frame_bytes_max": LIMIT}

    def client(self):
        return deflate_client(self.port)

    def test_single_frame_messages_text_and_binary(self):
        """Compressed in, compressed out (≥ threshold and compressible), else plain out."""
        c = self.client()
        try:
            for n in (0, 1, 100, THRESHOLD - 1, THRESHOLD, 1000, 16384, 40000, LIMIT):
                for opcode in (OP_TEXT, OP_BINARY):
                    with self.subTest(n=n, opcode=opcode):
                        data = compressible(n).encode()
                        want = n >= THRESHOLD and n >= 8
                        echo_raw(self, c, opcode, data,
                                 [encode_frame(opcode, deflate(data), rsv=4)], want)
                with self.subTest(n=n, kind="incompressible"):
                    data = incompressible_bytes(n)
                    # Compressed by us (stored blocks grow it a little), plain back.
                    z = deflate(data)
                    if len(z) <= LIMIT:
                        echo_raw(self, c, OP_BINARY, data,
                                 [encode_frame(OP_BINARY, z, rsv=4)], False)
                    echo_raw(self, c, OP_BINARY, data, [encode_frame(OP_BINARY, data)], False)
            c.send_close(1000)
            c.expect_close(1000, reply=False)
        finally:
            c.close()

    def test_uncompressed_messages_on_a_deflate_connection(self):
        """RSV1 is per message: plain messages are fine and compressible ones come back
        compressed."""
        c = self.client()
        try:
            for n in (10, 300, 5000):
                data = compressible(n).encode()
                echo_raw(self, c, OP_TEXT, data, [encode_frame(OP_TEXT, data)], n >= THRESHOLD)
        finally:
            c.close()

    def test_every_reply_inflates_on_its_own(self):
        """server_no_context_takeover: each reply inflates with a fresh decompressor, and
        identical messages compress to identical payloads."""
        c = self.client()
        try:
            data = compressible(3000).encode()
            seen = set()
            for _ in range(5):
                c.send(comp_frame(data))
                op, rsv, payload, _ = recv_message_rsv(c)
                self.assertEqual(rsv, 4)
                self.assertEqual(inflate(payload), data)
                seen.add(payload)
            self.assertEqual(len(seen), 1, "replies differ between identical messages")
        finally:
            c.close()

    def test_reply_formats_that_zlib_and_chromium_read(self):
        """The reply ends with a BFINAL block and one 00 byte (src/pmd.h): zlib stops at the
        final block; an inflater that goes on reads 00 + 00 00 ff ff as an empty stored
        block, ending exactly at the message's end."""
        c = self.client()
        try:
            data = compressible(2000).encode()
            c.send(comp_frame(data))
            _, rsv, payload, _ = recv_message_rsv(c)
            self.assertEqual(rsv, 4)
            d = zlib.decompressobj(-15)
            out = d.decompress(payload + TAIL)
            self.assertEqual(out, data)
            self.assertTrue(d.eof, "reply has no final block")
            rest = d.unused_data
            self.assertEqual(rest, b"\x00" + TAIL, "after the final block: %r" % rest)
            d2 = zlib.decompressobj(-15)
            self.assertEqual(d2.decompress(rest), b"")
        finally:
            c.close()

    def test_fragmented_compressed_messages(self):
        """RSV1 on the first fragment only; the compressed bytes split anywhere, empty
        fragments included, a ping between fragments answered."""
        c = self.client()
        try:
            for n, cuts in ((3000, 3), (40000, 7), (600, 1), (LIMIT, 5)):
                for opcode in (OP_TEXT, OP_BINARY):
                    with self.subTest(n=n, cuts=cuts, opcode=opcode):
                        data = compressible(n, seed=n).encode()
                        z = deflate(data)
                        pos = sorted(random.Random(n).sample(range(1, len(z)), cuts))
                        pieces = [z[a:b] for a, b in zip([0] + pos, pos + [len(z)])]
                        pieces.insert(1, b"")  # an empty continuation
                        frames = [encode_frame(opcode, pieces[0], fin=False, rsv=4)]
                        for p in pieces[1:-1]:
                            frames.append(encode_frame(OP_CONT, p, fin=False))
                        frames.append(encode_frame(OP_CONT, pieces[-1]))
                        echo_raw(self, c, opcode, data, frames, True)
            # A ping between fragments gets its pong before the echo, plain.
            data = compressible(5000).encode()
            z = deflate(data)
            c.send(encode_frame(OP_TEXT, z[:10], fin=False, rsv=4)
                   + encode_frame(OP_PING, b"mid")
                   + encode_frame(OP_CONT, z[10:]))
            f = c.recv_frame()
            self.assertEqual((f.opcode, f.rsv, f.payload), (OP_PONG, 0, b"mid"))
            op, rsv, payload, _ = recv_message_rsv(c)
            self.assertEqual(inflate(payload) if rsv else payload, data)
        finally:
            c.close()

    def test_fragmented_utf8_split_inside_a_code_point(self):
        data = ("é€😀" * 200).encode()
        z = deflate(data)
        c = self.client()
        try:
            frames = [encode_frame(OP_TEXT, z[:1], fin=False, rsv=4)]
            frames += [encode_frame(OP_CONT, z[i:i + 1], fin=False) for i in range(1, len(z) - 1)]
            frames.append(encode_frame(OP_CONT, z[-1:]))
            echo_raw(self, c, OP_TEXT, data, frames, True)
        finally:
            c.close()

    def test_pipelined_compressed_messages(self):
        """Many compressed frames in one write: the server borrows the bytes after each
        payload for the tail and must restore them for the next frame."""
        c = self.client()
        try:
            datas = [compressible(50 + 97 * i, seed=i).encode() for i in range(60)]
            wire = b"".join(encode_frame(OP_TEXT if i % 2 else OP_BINARY, deflate(d), rsv=4)
                            for i, d in enumerate(datas))
            # mixed with plain messages and pings
            wire += encode_frame(OP_PING, b"p") + encode_frame(OP_TEXT, datas[5])
            c.send(wire)
            for i, d in enumerate(datas):
                op, rsv, payload, _ = recv_message_rsv(c)
                self.assertEqual(op, OP_TEXT if i % 2 else OP_BINARY, i)
                self.assertEqual(inflate(payload) if rsv else payload, d, "message %d" % i)
            f = c.recv_frame()
            self.assertEqual((f.opcode, f.payload), (OP_PONG, b"p"))
            op, rsv, payload, _ = recv_message_rsv(c)
            self.assertEqual(inflate(payload) if rsv else payload, datas[5])
        finally:
            c.close()

    def test_compressed_frame_at_receive_buffer_end(self):
        """A compressed frame ending 0..12 bytes before the end of a 16 KiB receive buffer,
        the next frame straddling into the next buffer: the tail the inflater borrows either
        fits in the buffer (and the next frame's bytes are restored) or the message is
        copied first. Best effort: loopback usually fills each provided buffer whole."""
        c = self.client()
        try:
            data = compressible(900, seed=5).encode()
            z = deflate(data)
            cf = encode_frame(OP_TEXT, z, rsv=4)
            nxt = encode_frame(OP_BINARY, deflate(data), rsv=4) * 3
            for k in range(0, 13):
                pad_total = 16384 - k - len(cf)
                pad = encode_frame(OP_BINARY, b"\x00" * (pad_total - 8))  # 8-byte header
                self.assertEqual(len(pad), pad_total)
                c.send(pad + cf + nxt)
                op, rsv, payload, _ = recv_message_rsv(c)
                payload = inflate(payload) if rsv else payload
                self.assertEqual((op, len(payload)), (OP_BINARY, pad_total - 8))
                for want_op in (OP_TEXT, OP_BINARY, OP_BINARY, OP_BINARY):
                    op, rsv, payload, _ = recv_message_rsv(c)
                    self.assertEqual(op, want_op, k)
                    self.assertEqual(inflate(payload) if rsv else payload, data, k)
        finally:
            c.close()

    def test_compressed_frame_in_the_handshake_segment(self):
        """Frames sent in the same write as the upgrade request."""
        data = compressible(2000).encode()
        c = RawClient(self.port)
        try:
            key = harness.new_key()
            req = ("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: %s\r\n\r\n"
                   % (key, CHROMIUM_OFFER)).encode()
            c.send(req + comp_frame(data) + comp_frame(b"x" * 10))
            resp = c.read_response()
            self.assertEqual((resp.status, ext_headers(resp)), (101, [EXT]))
            for want in (data, b"x" * 10):
                op, rsv, payload, _ = recv_message_rsv(c)
                self.assertEqual(inflate(payload) if rsv else payload, want)
        finally:
            c.close()

    def test_byte_by_byte_delivery(self):
        """A compressed frame trickled one byte per write (partial-frame path)."""
        c = self.client()
        try:
            data = compressible(700).encode()
            for b in comp_frame(data):
                c.send(bytes([b]))
                time.sleep(0.0005)
            op, rsv, payload, _ = recv_message_rsv(c)
            self.assertEqual(inflate(payload) if rsv else payload, data)
        finally:
            c.close()

    def test_rfc7692_examples(self):
        """RFC 7692 §7.2.3: "Hello" compressed, with BFINAL, as a stored block, split in two
        fragments, with the tail left in, and an empty message; all plain back (< 256)."""
        cases = [
            ("one block", [encode_frame(OP_TEXT, bytes.fromhex("f248cdc9c90700"), rsv=4)]),
            ("fragments", [encode_frame(OP_TEXT, bytes.fromhex("f248cd"), fin=False, rsv=4),
                           encode_frame(OP_CONT, bytes.fromhex("c9c90700"))]),
            ("bfinal", [encode_frame(OP_TEXT, bytes.fromhex("f348cdc9c90700"), rsv=4)]),
            ("bfinal+00", [encode_frame(OP_TEXT, bytes.fromhex("f348cdc9c9070000"), rsv=4)]),
            ("stored", [encode_frame(OP_TEXT, bytes.fromhex("0005 00fa ff48656c6c6f 00"),
                                     rsv=4)]),
            ("tail left in", [encode_frame(OP_TEXT, bytes.fromhex("f248cdc9c907000000ffff"),
                                           rsv=4)]),
            ("two blocks", [encode_frame(OP_TEXT, bytes.fromhex("f248050000 00ffff cac9c90700"),
                                         rsv=4)]),
        ]
        c = self.client()
        try:
            for name, frames in cases:
                with self.subTest(name):
                    echo_raw(self, c, OP_TEXT, b"Hello", frames, False)
            for name, z in (("empty 00", b"\x00"), ("empty nothing", b""),
                            ("empty sync", deflate(b""))):
                with self.subTest(name):
                    echo_raw(self, c, OP_TEXT, b"", [encode_frame(OP_TEXT, z, rsv=4)], False)
            data = compressible(1000).encode()
            with self.subTest("zlib Z_FINISH (no tail)"):
                echo_raw(self, c, OP_TEXT, data,
                         [encode_frame(OP_TEXT, deflate(data, finish=True), rsv=4)], True)
            for level in (0, 1, 9):
                with self.subTest(level=level):
                    echo_raw(self, c, OP_TEXT, data,
                             [encode_frame(OP_TEXT, deflate(data, level=level), rsv=4)], True)
        finally:
            c.close()

    def expect_close_after(self, frames, code):
        c = self.client()
        try:
            c.send(b"".join(frames))
            return c.expect_close(code)
        finally:
            c.close()

    def test_rsv1_on_continuation_is_1002(self):
        z = deflate(compressible(2000))
        self.expect_close_after([encode_frame(OP_TEXT, z[:20], fin=False, rsv=4),
                                 encode_frame(OP_CONT, z[20:], rsv=4)], CLOSE_PROTOCOL)
        # A plain first fragment with RSV1 on its continuation.
        self.expect_close_after([encode_frame(OP_TEXT, b"abc", fin=False),
                                 encode_frame(OP_CONT, b"def", rsv=4)], CLOSE_PROTOCOL)

    def test_rsv1_on_control_frames_is_1002(self):
        for opcode, payload in ((OP_PING, b""), (OP_PING, deflate(b"ping")), (OP_PONG, b"x"),
                                (OP_CLOSE, b"\x03\xe8")):
            with self.subTest(opcode=opcode, payload=payload):
                self.expect_close_after([encode_frame(opcode, payload, rsv=4)], CLOSE_PROTOCOL)
        # Between the fragments of a compressed message.
        z = deflate(compressible(2000))
        self.expect_close_after([encode_frame(OP_TEXT, z[:20], fin=False, rsv=4),
                                 encode_frame(OP_PING, b"", rsv=4)], CLOSE_PROTOCOL)

    def test_rsv2_rsv3_are_1002(self):
        for rsv in (1, 2, 3, 5, 6, 7):
            with self.subTest(rsv=rsv):
                self.expect_close_after([encode_frame(OP_TEXT, deflate(b"hi"), rsv=rsv)],
                                        CLOSE_PROTOCOL)

    def test_decompression_bomb_is_1009_without_a_big_allocation(self):
        pid = self.server.proc.pid
        hwm0 = vm_hwm_kb(pid)
        zeros = b"\x00" * (60 << 20)
        bomb = deflate(zeros, level=9)
        self.assertLess(len(bomb), LIMIT)
        del zeros
        self.expect_close_after([encode_frame(OP_BINARY, bomb, rsv=4)], CLOSE_TOO_BIG)
        # Fragmented: each frame small, the inflated message too big.
        pieces = [bomb[i:i + 8000] for i in range(0, len(bomb), 8000)]
        frames = [encode_frame(OP_BINARY, pieces[0], fin=False, rsv=4)]
        frames += [encode_frame(OP_CONT, p, fin=False) for p in pieces[1:-1]]
        frames.append(encode_frame(OP_CONT, pieces[-1]))
        self.expect_close_after(frames, CLOSE_TOO_BIG)
        # One byte over the limit once inflated; exactly the limit is fine.
        self.expect_close_after([comp_frame(b"a" * (LIMIT + 1))], CLOSE_TOO_BIG)
        c = self.client()
        try:
            echo_raw(self, c, OP_TEXT, b"a" * LIMIT, [comp_frame(b"a" * LIMIT)], True)
        finally:
            c.close()
        grew = vm_hwm_kb(pid) - hwm0
        self.assertLess(grew, 16 * 1024, "peak RSS grew by %d kB for a 60 MiB bomb" % grew)

    def test_corrupt_data_is_1007(self):
        good = deflate(compressible(3000))
        cases = {
            "reserved block type": b"\xff\xff\xff\xff",
            "reserved block type 2": b"\x07",
            "stored LEN/NLEN mismatch": b"\x00\x05\x00\x00\x00Hello",
            "garbage": incompressible_bytes(500, seed=9),
            "back-reference into an unknown dictionary":
                deflate(b"the quick brown fox jumps over the lazy dog " * 3,
                        zdict=b"the quick brown fox jumps over the lazy dog "),
            "flipped bits": bytes(b ^ 0x5a if i % 7 == 3 else b for i, b in enumerate(good)),
        }
        for name, z in cases.items():
            with self.subTest(name):
                f = self.expect_close_after([encode_frame(OP_TEXT, z, rsv=4)],
                                            {CLOSE_INVALID_DATA})
                self.assertTrue(f.close_reason, "close without a reason")
        # Corrupt, fragmented.
        z = cases["back-reference into an unknown dictionary"]
        self.expect_close_after([encode_frame(OP_BINARY, z[:3], fin=False, rsv=4),
                                 encode_frame(OP_CONT, z[3:])], CLOSE_INVALID_DATA)

    def test_context_takeover_from_the_client_is_1007(self):
        """client_no_context_takeover was agreed: a second message that refers back into the
        first (one zlib stream across messages) is corrupt for the server."""
        c = self.client()
        try:
            comp = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = compressible(2000).encode()
            m1 = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
            echo_raw(self, c, OP_TEXT, data, [encode_frame(OP_TEXT, m1[:-4], rsv=4)], True)
            m2 = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
            self.assertLess(len(m2), 100)  # all back-references into message 1
            c.send(encode_frame(OP_TEXT, m2[:-4], rsv=4))
            c.expect_close(CLOSE_INVALID_DATA)
        finally:
            c.close()

    def test_invalid_utf8_inside_compressed_text_is_1007(self):
        for name, raw in (("lone continuation", b"abc\x80def" * 50),
                          ("overlong", b"x" * 300 + b"\xc0\xaf"),
                          ("surrogate", "é".encode() * 200 + b"\xed\xa0\x80"),
                          ("truncated at end", "€".encode() * 200 + b"\xe2\x82")):
            with self.subTest(name):
                self.expect_close_after([encode_frame(OP_TEXT, deflate(raw), rsv=4)],
                                        CLOSE_INVALID_DATA)
                z = deflate(raw)
                self.expect_close_after([encode_frame(OP_TEXT, z[:5], fin=False, rsv=4),
                                         encode_frame(OP_CONT, z[5:])], CLOSE_INVALID_DATA)
        # The same bytes as binary are fine.
        c = self.client()
        try:
            raw = b"abc\x80def" * 50
            echo_raw(self, c, OP_BINARY, raw, [encode_frame(OP_BINARY, deflate(raw), rsv=4)])
        finally:
            c.close()

    def test_rsv1_without_negotiation_is_1002(self):
        c = RawClient.upgraded(self.port)
        try:
            c.send(comp_frame(compressible(500)))
            c.expect_close(CLOSE_PROTOCOL)
        finally:
            c.close()

    def test_server_control_frames_never_compressed(self):
        c = self.client()
        try:
            payload = b"p" * 125
            c.send(encode_frame(OP_PING, payload))
            f = c.recv_frame()
            self.assertEqual((f.opcode, f.rsv, f.payload), (OP_PONG, 0, payload))
            c.send_close(1000, "x" * 100)
            f = c.expect_close(1000, reply=False)
            self.assertEqual(f.rsv, 0)
        finally:
            c.close()

    def test_inflated_messages_metric(self):
        t0, _ = metrics(self.port)
        c = self.client()
        try:
            for n in (10, 500, 5000):
                echo_raw(self, c, OP_TEXT, compressible(n).encode(), [comp_frame(compressible(n))])
        finally:
            c.close()
        t1, _ = metrics(self.port)
        self.assertEqual(t1["ringcast_inflated_messages_total"]
                         - t0["ringcast_inflated_messages_total"], 3)
        din = t1["ringcast_deflate_in_bytes_total"] - t0["ringcast_deflate_in_bytes_total"]
        dout = t1["ringcast_deflate_out_bytes_total"] - t0["ringcast_deflate_out_bytes_total"]
        self.assertEqual(din, 5500)
        self.assertGreater(dout, 0)
        self.assertLess(dout, din)


class WebsocketsClientTest(harness.ServerTestCase):
    """python3-websockets with its deflate extension, and without."""

    shards = 2
    server_opts = {}

    def sizes(self):
        return (0, 1, 2, 100, 255, 256, 257, 1000, 4096, 16383, 16384, 16385, 65536, 300000,
                1 << 20)

    def test_echo_with_deflate(self):
        async def go():
            async with websockets.connect(self.url(), max_size=None, ping_interval=None) as ws:
                self.assertEqual(len(ws.extensions), 1)
                ext = ws.extensions[0]
                self.assertIsInstance(ext, PerMessageDeflate)
                self.assertTrue(ext.remote_no_context_takeover)
                self.assertTrue(ext.local_no_context_takeover)
                self.assertEqual(ext.remote_max_window_bits, 15)
                n_msgs = 0
                for n in self.sizes():
                    for kind, data in (("text", compressible(n, seed=n)),
                                       ("text-random", incompressible_text(n, seed=n)),
                                       ("binary", compressible(n, seed=n).encode()),
                                       ("binary-random", incompressible_bytes(n, seed=n))):
                        await ws.send(data)
                        got = await ws.recv()
                        self.assertEqual(type(got), type(data), (n, kind))
                        self.assertTrue(got == data, "%s %d bytes differ" % (kind, n))
                        n_msgs += 1
                # Pipelined, mixed sizes.
                datas = [compressible(37 * i, seed=i) for i in range(200)]
                for d in datas:
                    await ws.send(d)
                for d in datas:
                    self.assertEqual(await ws.recv(), d)
                return n_msgs + len(datas)
        t0, _ = metrics(self.port)
        n = run(go(), 40)
        t1, _ = metrics(self.port)
        din = t1["ringcast_deflate_in_bytes_total"] - t0["ringcast_deflate_in_bytes_total"]
        dout = t1["ringcast_deflate_out_bytes_total"] - t0["ringcast_deflate_out_bytes_total"]
        inflated = (t1["ringcast_inflated_messages_total"]
                    - t0["ringcast_inflated_messages_total"])
        self.assertGreater(din, 2 << 20, "the server compressed too little")
        self.assertLess(dout, din * 0.8, "replies barely shrank")
        self.assertGreater(inflated, n // 4, "the client compressed too little")

    def test_echo_with_window_options(self):
        """client_max_window_bits=9, a full offer and server_max_window_bits=10 are accepted
        (the long messages then go plain, deflate_window_test.py has the details)."""
        async def one(factory, expect_ext):
            async with websockets.connect(self.url(), max_size=None, ping_interval=None,
                                          extensions=[factory], compression=None) as ws:
                self.assertEqual(len(ws.extensions), 1 if expect_ext else 0)
                for data in (compressible(70000), incompressible_bytes(3000), "", "é" * 900):
                    await ws.send(data)
                    self.assertEqual(await ws.recv(), data)

        async def go():
            await one(ClientPerMessageDeflateFactory(client_max_window_bits=9), True)
            await one(ClientPerMessageDeflateFactory(
                server_no_context_takeover=True, client_no_context_takeover=True,
                server_max_window_bits=15, client_max_window_bits=15,
                compress_settings={"memLevel": 9}), True)
            await one(ClientPerMessageDeflateFactory(server_max_window_bits=10), True)
        run(go(), 20)

    def test_echo_without_compression(self):
        async def go():
            async with websockets.connect(self.url(), max_size=None, compression=None,
                                          ping_interval=None) as ws:
                self.assertEqual(ws.extensions, [])
                for n in self.sizes():
                    for data in (compressible(n), incompressible_bytes(n)):
                        await ws.send(data)
                        self.assertEqual(await ws.recv(), data)
        t0, _ = metrics(self.port)
        run(go(), 30)
        t1, _ = metrics(self.port)
        self.assertEqual(t1["ringcast_deflate_in_bytes_total"],
                         t0["ringcast_deflate_in_bytes_total"])

    def test_bomb_with_default_limits(self):
        """256 MiB of zeros in 256 KiB of DEFLATE against the default limits (/echo 16 MiB,
        /ws 1 MiB): 1009, and the peak RSS grows by no more than the limit."""
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunk = b"\x00" * (1 << 20)
        bomb = b"".join(c.compress(chunk) for _ in range(256)) + c.flush(zlib.Z_SYNC_FLUSH)
        bomb = bomb[:-4]
        pid = self.server.proc.pid
        for path, slack_mb in (("/echo", 16 + 24), ("/ws", 1 + 24)):
            with self.subTest(path=path):
                hwm0 = vm_hwm_kb(pid)
                cl = deflate_client(self.port, path)
                try:
                    cl.send(encode_frame(OP_TEXT, bomb[:60000], fin=False, rsv=4))
                    for i in range(60000, len(bomb), 60000):
                        cl.send(encode_frame(OP_CONT, bomb[i:i + 60000],
                                             fin=i + 60000 >= len(bomb)))
                    cl.expect_close(CLOSE_TOO_BIG)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # closed while we were still sending: the close frame was read below
                finally:
                    cl.close()
                grew = vm_hwm_kb(pid) - hwm0
                self.assertLess(grew, slack_mb * 1024,
                                "peak RSS grew by %d kB for a 256 MiB bomb on %s" % (grew, path))

    def test_many_deflate_clients_at_once(self):
        async def client(i):
            async with websockets.connect(self.url(), ping_interval=None) as ws:
                for j in range(20):
                    d = compressible(200 + 50 * j, seed=i * 100 + j)
                    await ws.send(d)
                    self.assertEqual(await ws.recv(), d)

        async def go():
            await asyncio.gather(*(client(i) for i in range(40)))
        run(go(), 30)


class LevelsTest(unittest.TestCase):
    """deflate_level 1 and 12 with deflate_threshold_bytes=0: every message of 8 bytes or
    more that shrinks comes back compressed and inflates exactly; out-of-range levels are
    refused at startup naming the key."""

    def test_levels_and_threshold_zero(self):
        for level in (1, 12):
            with self.subTest(level=level):
                # Echoes of compressed messages use deflate_echo_level: set both.
                srv = harness.Server(1, deflate_level=level, deflate_echo_level=level,
                                     deflate_threshold_bytes=0).start()
                try:
                    c = deflate_client(srv.port)
                    try:
                        for n in (0, 1, 7, 8, 9, 50, 255, 5000, 100000):
                            data = (b"a" * n) if n < 60 else compressible(n).encode()
                            z, wire = echo_raw(self, c, OP_BINARY, data,
                                               [comp_frame(data, OP_BINARY)])
                            # libdeflate stores inputs up to 55 - 4 x level bytes as they
                            # are, which never shrinks them: those go plain.
                            if n >= 60 or (level == 12 and n >= 20):
                                self.assertTrue(z, "%d bytes at level %d came plain" % (n, level))
                            if n < 8:
                                self.assertFalse(z, "%d bytes came compressed" % n)
                    finally:
                        c.close()
                finally:
                    srv.stop_and_check()

    def test_out_of_range_config_is_refused(self):
        for key, value in (("deflate_level", 0), ("deflate_level", 13), ("deflate", "maybe")):
            with self.subTest(key=key, value=value):
                p = subprocess.run([harness.BIN, "--port=0", "--address=127.0.0.1",
                                    "--%s=%s" % (key, value)], capture_output=True, text=True,
                                   timeout=scale(10))
                self.assertNotEqual(p.returncode, 0)
                self.assertIn(key, p.stdout + p.stderr)


def envelope(topic, seq, data):
    return '{"op":"msg","topic":"%s","seq":%d,"data":%s}' % (topic, seq, data)


class BroadcastTest(harness.ServerTestCase):
    """Pub/sub on /ws: compress once per broadcast, same bytes to every deflate subscriber."""

    shards = 2
    server_opts = {}
    SUBS = 20
    MSGS = 50

    async def open(self, deflate_on):
        kw = {} if deflate_on else {"compression": None}
        ws = await websockets.connect(self.url("/ws"), ping_interval=None, max_size=None, **kw)
        self.assertEqual(len(ws.extensions), 1 if deflate_on else 0)
        return ws

    async def sub(self, ws, topic):
        await ws.send(json.dumps({"op": "sub", "topic": topic}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), scale(5)))
        self.assertEqual((ack.get("op"), ack.get("of"), ack.get("topic")), ("ack", "sub", topic))

    async def publish(self, pub, topic, datas):
        for d in datas:
            await pub.send('{"op":"pub","topic":"%s","data":%s}' % (topic, d))
        seqs = []
        for _ in datas:
            ack = json.loads(await asyncio.wait_for(pub.recv(), scale(10)))
            self.assertEqual((ack.get("op"), ack.get("of")), ("ack", "pub"), ack)
            seqs.append(ack["seq"])
        return seqs

    async def expect_all(self, ws, topic, datas, first=1):
        for i, d in enumerate(datas):
            got = await asyncio.wait_for(ws.recv(), scale(10))
            self.assertIsInstance(got, str)
            self.assertEqual(got, envelope(topic, first + i, d), "message %d" % i)

    def datas(self, tag):
        out = []
        for i in range(self.MSGS):
            obj = {"i": i, "tag": tag, "items": [{"sym": "ABC%d" % (k % 7), "px": 100 + k,
                                                  "qty": k * 3, "side": "buy"}
                                                 for k in range(20 + i % 10)]}
            out.append(json.dumps(obj, separators=(",", ":")))
        return out

    def test_compress_once_per_broadcast(self):
        topic = "deflate.once.%d" % os.getpid()
        datas = self.datas("once")
        sizes = [len(envelope(topic, i + 1, d)) for i, d in enumerate(datas)]
        self.assertGreater(min(sizes), THRESHOLD)

        async def go():
            dsubs = [await self.open(True) for _ in range(self.SUBS)]
            psubs = [await self.open(False) for _ in range(self.SUBS)]
            for ws in dsubs + psubs:
                await self.sub(ws, topic)
            pub = await self.open(True)  # its pubs arrive compressed; acks are too short
            _, by = metrics(self.port)
            spread = by["ringcast_websockets_open"]
            self.assertEqual(len([v for v in spread.values() if v > 0]), 2,
                             "subscribers on one shard only: %r" % spread)
            t0, by0 = metrics(self.port)
            seqs = await self.publish(pub, topic, datas)
            self.assertEqual(seqs, list(range(1, self.MSGS + 1)))
            await asyncio.gather(*(self.expect_all(ws, topic, datas) for ws in dsubs + psubs))
            t1, by1 = metrics(self.port)
            for ws in dsubs + psubs + [pub]:
                await ws.close()
            return t0, t1, by0, by1

        t0, t1, by0, by1 = run(go(), 40)
        d = {k: t1[k] - t0[k] for k in t1 if k in t0}
        total = sum(sizes)
        din, dout = d["ringcast_deflate_in_bytes_total"], d["ringcast_deflate_out_bytes_total"]
        print("\n    %d msgs, %d deflate + %d plain subscribers: deflate_in %+d B "
              "(envelopes %d B, ratio %.3f), deflate_out %+d B" % (
                  self.MSGS, self.SUBS, self.SUBS, din, total, din / total, dout),
              end=" ", flush=True)
        self.assertEqual(d["ringcast_publishes_total"], self.MSGS)
        self.assertEqual(d["ringcast_inflated_messages_total"], self.MSGS)
        self.assertEqual(d["ringcast_deliveries_total"], 2 * self.SUBS * self.MSGS)
        self.assertGreaterEqual(din, total, "not every broadcast was compressed")
        self.assertLess(din, total * 1.2, "compressed more than once per broadcast "
                        "(x%.1f; per subscriber would be x%d)" % (din / total, self.SUBS))
        self.assertLess(dout, din / 2)
        # The owner shard compressed; the other shard only forwarded.
        owner = [s for s, v in by1["ringcast_publishes_total"].items()
                 if v > by0["ringcast_publishes_total"].get(s, 0)]
        self.assertEqual(len(owner), 1, "publishes on several shards: %r" % owner)
        per_shard = {s: v - by0["ringcast_deflate_in_bytes_total"].get(s, 0)
                     for s, v in by1["ringcast_deflate_in_bytes_total"].items()}
        self.assertGreaterEqual(per_shard[owner[0]], total, per_shard)

    def test_raw_deflate_subscribers_get_identical_compressed_bytes(self):
        """Raw deflate subscribers (any shard) receive the same RSV1 payload, which inflates
        to the exact envelope; raw plain subscribers the envelope itself; small broadcasts
        go plain to everyone."""
        topic = "deflate.raw.%d" % os.getpid()
        datas = self.datas("raw")[:10] + ['"small"', "[1,2,3]"]
        subs = []
        try:
            for i in range(8):
                c = deflate_client(self.port, "/ws") if i % 2 == 0 else \
                    RawClient.upgraded(self.port, "/ws")
                c.send(encode_frame(OP_TEXT, '{"op":"sub","topic":"%s"}' % topic))
                op, rsv, payload, _ = recv_message_rsv(c)
                self.assertEqual(json.loads(payload)["op"], "ack")
                subs.append((i % 2 == 0, c))

            async def go():
                pub = await self.open(True)
                seqs = await self.publish(pub, topic, datas)
                await pub.close()
                return seqs
            seqs = run(go(), 20)
            self.assertEqual(len(seqs), len(datas))
            for i, d in enumerate(datas):
                want = envelope(topic, seqs[i], d).encode()
                compressed = set()
                for is_deflate, c in subs:
                    op, rsv, payload, frames = recv_message_rsv(c)
                    self.assertEqual(op, OP_TEXT)
                    if is_deflate and len(want) >= THRESHOLD:
                        self.assertEqual(rsv, 4, "large broadcast not compressed")
                        compressed.add(payload)
                        self.assertEqual(inflate(payload), want)
                    else:
                        self.assertEqual(rsv, 0)
                        self.assertEqual(payload, want)
                self.assertLessEqual(len(compressed), 1)
        finally:
            for _, c in subs:
                c.close()

    def test_no_compression_without_deflate_subscribers(self):
        """A topic whose subscribers all declined deflate costs no compression; once the last
        deflate subscriber leaves, compression stops."""
        topic = "deflate.none.%d" % os.getpid()
        datas = self.datas("none")[:10]

        async def go():
            psubs = [await self.open(False) for _ in range(6)]
            dsubs = [await self.open(True) for _ in range(4)]
            for ws in psubs:
                await self.sub(ws, topic)
            pub = await self.open(False)
            t0, _ = metrics(self.port)
            await self.publish(pub, topic, datas)
            for ws in psubs:
                await self.expect_all(ws, topic, datas)
            t1, _ = metrics(self.port)
            self.assertEqual(t1["ringcast_deflate_in_bytes_total"],
                             t0["ringcast_deflate_in_bytes_total"], "plain-only topic compressed")
            for ws in dsubs:
                await self.sub(ws, topic)
            await self.publish(pub, topic, datas)
            for ws in psubs + dsubs:
                await self.expect_all(ws, topic, datas, first=11)
            t2, _ = metrics(self.port)
            self.assertGreater(t2["ringcast_deflate_in_bytes_total"],
                               t1["ringcast_deflate_in_bytes_total"])
            for ws in dsubs[:2]:  # two leave by unsub, two by closing
                await ws.send(json.dumps({"op": "unsub", "topic": topic}))
                ack = json.loads(await asyncio.wait_for(ws.recv(), scale(5)))
                self.assertEqual((ack.get("op"), ack.get("of")), ("ack", "unsub"), ack)
            for ws in dsubs[2:]:
                await ws.close()
            await asyncio.sleep(0.3)
            t3, _ = metrics(self.port)
            await self.publish(pub, topic, datas)
            for ws in psubs:
                await self.expect_all(ws, topic, datas, first=21)
            t4, _ = metrics(self.port)
            self.assertEqual(t4["ringcast_deflate_in_bytes_total"],
                             t3["ringcast_deflate_in_bytes_total"],
                             "still compressing after the deflate subscribers left")
            for ws in psubs + dsubs[:2] + [pub]:
                await ws.close()
        run(go(), 30)

    def test_large_broadcast_over_recv_buffer(self):
        """A 40 KiB envelope (over one receive buffer), compressed once."""
        topic = "deflate.large.%d" % os.getpid()
        data = json.dumps(compressible(40000))

        async def go():
            d = await self.open(True)
            p = await self.open(False)
            await self.sub(d, topic)
            await self.sub(p, topic)
            pub = await self.open(True)
            await self.publish(pub, topic, [data])
            await self.expect_all(d, topic, [data])
            await self.expect_all(p, topic, [data])
            for ws in (d, p, pub):
                await ws.close()
        run(go(), 20)


if __name__ == "__main__":
    harness.main(budget_s=58)
