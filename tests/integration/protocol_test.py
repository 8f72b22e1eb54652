"""RFC 6455 framing on /echo with raw bytes: every protocol violation gets its exact close code
(the server's close frame is parsed) and the TCP connection is closed afterwards; the valid
edge cases around each rule (fragmentation, interleaved control frames, split UTF-8, valid close
codes, limits) keep working. Follows Autobahn sections 1-7 and 9.
"""

import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                     RawClient, close_payload, encode_frame, scale, skip_on_ref)

INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000,
                     4999]
INVALID_UTF8 = {
    "lone_continuation": b"ab\x80cd",
    "byte_ff": b"ab\xffcd",
    "overlong_slash": b"ab\xc0\xafcd",
    "overlong_3byte": b"ab\xe0\x80\xafcd",
    "surrogate_d800": b"ab\xed\xa0\x80cd",
    "above_10ffff": b"ab\xf4\x90\x80\x80cd",
    "truncated_at_end": b"ab\xe2\x82",
}


class FramingTest(harness.ServerTestCase):
    def client(self):
        return RawClient.upgraded(self.port)

    def violate(self, code, *frames, raw=None):
        """Sends frames, each (opcode, payload[, encode_frame kwargs]), in one segment (or raw
        bytes); asserts a close with code (a set: any of them) and that TCP closes after."""
        if raw is None:
            raw = b"".join(encode_frame(f[0], f[1], **(f[2] if len(f) > 2 else {}))
                           for f in frames)
        with self.client() as c:
            c.send(raw)
            c.expect_close(code)

    # -- framing (Autobahn 1-4)
    def test_unmasked_frame_1002(self):
        """A client frame without the mask bit is failed with 1002."""
        self.violate(1002, (OP_TEXT, b"unmasked", {"mask": False}))

    def test_rsv1_without_extension_1002(self):
        """RSV1 without a negotiated extension is 1002."""
        self.violate(1002, (OP_TEXT, b"rsv", {"rsv": 4}))

    def test_rsv2_1002(self):
        """RSV2 is 1002."""
        self.violate(1002, (OP_BINARY, b"rsv", {"rsv": 2}))

    def test_rsv3_on_ping_1002(self):
        """RSV3 on a control frame is 1002."""
        self.violate(1002, (OP_PING, b"rsv", {"rsv": 1}))

    def test_rsv_after_valid_message_1002(self):
        """A valid echo, then a frame with RSV bits, is 1002 after the echo."""
        with self.client() as c:
            c.send_frame(OP_TEXT, b"fine")
            c.send_frame(OP_TEXT, b"bad", rsv=7)
            self.assertEqual(c.recv_message(), (OP_TEXT, b"fine"))
            c.expect_close(1002)

    def test_64bit_length_with_top_bit_1002(self):
        """A 64-bit payload length with the top bit set is refused (1002; 1009 tolerated)."""
        raw = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + os.urandom(4)
        self.violate({1002, 1009}, raw=raw)

    # -- control frames (Autobahn 2, 5)
    def test_ping_126_bytes_1002(self):
        """A ping with a 126-byte payload is 1002."""
        self.violate(1002, (OP_PING, b"p" * 126))

    def test_pong_126_bytes_1002(self):
        """A pong with a 126-byte payload is 1002."""
        self.violate(1002, (OP_PONG, b"p" * 126))

    def test_close_126_bytes_1002(self):
        """A close with a 126-byte payload is 1002."""
        self.violate(1002, (OP_CLOSE, close_payload(1000, b"r" * 124)))

    def test_fragmented_ping_1002(self):
        """A ping without FIN is 1002."""
        self.violate(1002, (OP_PING, b"frag", {"fin": False}), (OP_CONT, b"ment"))

    def test_fragmented_close_1002(self):
        """A close without FIN is 1002."""
        self.violate(1002, (OP_CLOSE, close_payload(1000), {"fin": False}))

    def test_ping_pong_same_payload(self):
        """Pings of 0, 1 and 125 bytes (binary) get pongs with exactly the same payload."""
        with self.client() as c:
            for data in (b"", b"\x00", os.urandom(125)):
                c.send_frame(OP_PING, data)
                f = c.recv_frame()
                self.assertEqual(f.opcode, OP_PONG, f)
                self.assertTrue(f.fin)
                self.assertEqual(f.payload, data)

    def test_unsolicited_pong_ignored(self):
        """An unsolicited pong gets no answer and the connection keeps echoing."""
        with self.client() as c:
            c.send_frame(OP_PONG, b"unsolicited")
            c.send_frame(OP_TEXT, b"next")
            f = c.recv_frame()
            self.assertEqual((f.opcode, f.payload), (OP_TEXT, b"next"))

    # -- fragmentation (Autobahn 5)
    def test_fragmented_text_echoed(self):
        """A text message in 3 fragments is echoed as one text message."""
        with self.client() as c:
            c.send_frame(OP_TEXT, b"Hello, ", fin=False)
            c.send_frame(OP_CONT, b"fragmented ", fin=False)
            c.send_frame(OP_CONT, b"world")
            self.assertEqual(c.recv_message(), (OP_TEXT, b"Hello, fragmented world"))

    def test_fragmented_binary_1000_fragments(self):
        """A binary message in 1,000 fragments is echoed whole."""
        chunks = [os.urandom(10) for _ in range(1000)]
        with self.client() as c:
            c.send(b"".join(encode_frame(OP_BINARY if i == 0 else OP_CONT, ch, fin=i == 999)
                            for i, ch in enumerate(chunks)))
            self.assertEqual(c.recv_message(), (OP_BINARY, b"".join(chunks)))

    def test_empty_fragments(self):
        """Empty fragments (start and middle) are valid."""
        with self.client() as c:
            c.send_frame(OP_TEXT, b"", fin=False)
            c.send_frame(OP_CONT, b"", fin=False)
            c.send_frame(OP_CONT, b"x")
            self.assertEqual(c.recv_message(), (OP_TEXT, b"x"))

    def test_ping_interleaved_in_fragmented_message(self):
        """Pings between fragments are answered with their payloads; the message is intact."""
        with self.client() as c:
            c.send_frame(OP_TEXT, b"one ", fin=False)
            c.send_frame(OP_PING, b"ping-1")
            c.send_frame(OP_CONT, b"two ", fin=False)
            c.send_frame(OP_PING, b"ping-2")
            c.send_frame(OP_CONT, b"three")
            controls = []
            self.assertEqual(c.recv_message(pings=controls), (OP_TEXT, b"one two three"))
            # Pings read together are answered once (RFC 6455 §5.5.3: the latest one).
            self.assertIn([(f.opcode, f.payload) for f in controls],
                          ([(OP_PONG, b"ping-1"), (OP_PONG, b"ping-2")],
                           [(OP_PONG, b"ping-2")]))

    def test_pong_waits_not_for_message_end(self):
        """A ping inside an unfinished message is answered before the message completes."""
        with self.client() as c:
            c.send_frame(OP_BINARY, b"start", fin=False)
            c.send_frame(OP_PING, b"now")
            f = c.recv_frame()
            self.assertEqual((f.opcode, f.payload), (OP_PONG, b"now"))
            c.send_frame(OP_CONT, b"end")
            self.assertEqual(c.recv_message(), (OP_BINARY, b"startend"))

    def test_continuation_without_start_1002(self):
        """A continuation frame with no message started is 1002."""
        self.violate(1002, (OP_CONT, b"orphan"))

    def test_continuation_after_finished_message_1002(self):
        """A continuation after a complete message is 1002 (after the echo)."""
        with self.client() as c:
            c.send_frame(OP_TEXT, b"done")
            c.send_frame(OP_CONT, b"late")
            self.assertEqual(c.recv_message(), (OP_TEXT, b"done"))
            c.expect_close(1002)

    def test_text_inside_fragmented_message_1002(self):
        """A new text frame while a message is unfinished is 1002."""
        self.violate(1002, (OP_TEXT, b"first", {"fin": False}), (OP_TEXT, b"second"))

    def test_binary_inside_fragmented_text_1002(self):
        """A new binary frame while a text message is unfinished is 1002."""
        self.violate(1002, (OP_TEXT, b"first", {"fin": False}), (OP_BINARY, b"second"))

    def test_frame_sent_byte_by_byte(self):
        """A frame (16-bit length) arriving one byte per segment is reassembled."""
        payload = os.urandom(300)
        data = encode_frame(OP_BINARY, payload)
        with self.client() as c:
            for i in range(len(data)):
                c.send(data[i:i + 1])
                if i % 8 == 0:
                    time.sleep(0.002)
            self.assertEqual(c.recv_message(), (OP_BINARY, payload))

    def test_pipelined_frames_one_segment(self):
        """50 messages in one segment come back as 50 messages, in order."""
        msgs = [b"m%03d" % i * (i + 1) for i in range(50)]
        with self.client() as c:
            c.send(b"".join(encode_frame(OP_BINARY, m) for m in msgs))
            for m in msgs:
                self.assertEqual(c.recv_message(), (OP_BINARY, m))

    def test_slow_reader_gets_all_echoes_or_1013(self):
        """A client that pipelines 10 MiB before reading anything gets every echo (the server
        applied backpressure) or whole echoes then a close 1013 (slow-consumer policy): never a
        frame cut short or a TCP close without a close frame."""
        msgs = [bytes([i]) * (256 << 10) for i in range(40)]
        with self.client() as c:
            def send_all():
                try:
                    for m in msgs:
                        c.send(encode_frame(OP_BINARY, m))
                except OSError:
                    pass  # the server may close after 1013
            sender = threading.Thread(target=send_all, daemon=True)
            sender.start()
            time.sleep(1.0)
            for i, m in enumerate(msgs):
                try:
                    f = c.recv_frame(timeout=scale(10))
                except harness.ConnectionClosed:
                    self.fail("TCP closed after %d echoes, without a close frame (partial "
                              "frame bytes: %d)" % (i, len(c.buf)))
                if f.opcode == OP_CLOSE:
                    self.assertEqual(f.close_code, 1013, "close after %d echoes: %r" % (i, f))
                    print("(closed 1013 after %d echoes) " % i, end="", flush=True)
                    break
                self.assertEqual((f.opcode, f.fin, f.payload == m), (OP_BINARY, True, True),
                                 "echo %d: %r" % (i, f))
            sender.join(scale(10))

    def test_binary_not_utf8_checked(self):
        """Invalid UTF-8 in a binary message is just bytes: echoed."""
        with self.client() as c:
            c.send_frame(OP_BINARY, b"\xff\xfe\xc0\xaf")
            self.assertEqual(c.recv_message(), (OP_BINARY, b"\xff\xfe\xc0\xaf"))

    # -- UTF-8 (Autobahn 6)
    def test_valid_utf8_split_across_fragments(self):
        """Code points split across fragment boundaries are valid: echoed."""
        text = "a€b😀c".encode()
        pieces = [text[:2], text[2:4], text[4:7], text[7:9], text[9:]]
        with self.client() as c:
            for i, p in enumerate(pieces):
                c.send_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(pieces) - 1)
            self.assertEqual(c.recv_message(), (OP_TEXT, text))

    def test_invalid_utf8_split_across_fragments_1007(self):
        """A surrogate split across two fragments is 1007."""
        self.violate(1007, (OP_TEXT, b"ab\xed", {"fin": False}), (OP_CONT, b"\xa0\x80cd"))

    @skip_on_ref("ws validates UTF-8 only once the message is complete")
    def test_invalid_utf8_fails_fast_mid_message_1007(self):
        """An invalid byte in the first fragment is 1007 before the message ends."""
        self.violate(1007, (OP_TEXT, b"valid \xce\xba\xe1\xbd\xb9 then \xff", {"fin": False}))

    @skip_on_ref("ws validates UTF-8 only once the message is complete")
    def test_invalid_utf8_fails_fast_mid_frame_1007(self):
        """An invalid byte in the first chop of a frame is 1007 before the frame ends (strict,
        Autobahn 6.4.3-4)."""
        with self.client() as c:
            body = b"ok \xf4\x90\x80\x80" + b"x" * 993
            data = encode_frame(OP_TEXT, body)
            c.send(data[:20])
            c.expect_close(1007)

    def test_close_reason_invalid_utf8_1007(self):
        """A close reason that is not UTF-8 is 1007."""
        self.violate(1007, (OP_CLOSE, close_payload(1000, b"bad \xff reason")))

    # -- close (Autobahn 7)
    def test_close_1_byte_payload_1002(self):
        """A close frame with a 1-byte payload is 1002."""
        self.violate(1002, (OP_CLOSE, b"\x03"))

    def test_close_empty_payload(self):
        """A close without a code is answered by a close (empty or 1000), then TCP closes."""
        with self.client() as c:
            c.send_close()
            c.expect_close({None, 1000})

    def test_close_with_125_byte_payload(self):
        """A close with code and a 123-byte reason is echoed with the code."""
        with self.client() as c:
            c.send_close(3001, "r" * 123)
            c.expect_close(3001)

    def test_no_data_after_close(self):
        """Frames after a client close are ignored: the next frame back is the close."""
        with self.client() as c:
            c.send(encode_frame(OP_CLOSE, close_payload(1000)) + encode_frame(OP_TEXT, b"late"))
            f = c.recv_frame()
            self.assertEqual((f.opcode, f.close_code), (OP_CLOSE, 1000), f)
            c.expect_eof()

    def test_close_reply_then_tcp_close(self):
        """After the server's close reply it closes TCP (client never closes first)."""
        with self.client() as c:
            c.send_close(1000, "bye")
            f = c.recv_frame()
            self.assertEqual((f.opcode, f.close_code), (OP_CLOSE, 1000))
            c.expect_eof()


def _add_generated_cases():
    for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        def t(self, op=op):
            self.violate(1002, (op, b"reserved"))
        t.__doc__ = "Reserved opcode 0x%X is 1002." % op
        setattr(FramingTest, "test_reserved_opcode_%x_1002" % op, t)

    for code in INVALID_CLOSE_CODES:
        def t(self, code=code):
            self.violate(1002, (OP_CLOSE, close_payload(code, b"x")))
        t.__doc__ = "Close code %d is invalid on the wire: 1002." % code
        setattr(FramingTest, "test_close_code_%05d_invalid_1002" % code, t)

    for code in VALID_CLOSE_CODES:
        def t(self, code=code):
            with self.client() as c:
                c.send_close(code, "reason")
                c.expect_close(code)
        t.__doc__ = "Close code %d is echoed with the same code, then TCP closes." % code
        setattr(FramingTest, "test_close_code_%05d_echoed" % code, t)

    for name, data in INVALID_UTF8.items():
        def t(self, data=data):
            self.violate(1007, (OP_TEXT, data))
        t.__doc__ = "Invalid UTF-8 (%s) in a text message is 1007." % name
        setattr(FramingTest, "test_invalid_utf8_%s_1007" % name, t)


_add_generated_cases()


class MessageLimitTest(harness.ServerTestCase):
    """echo_message_bytes_max=1000 (echo_frame_bytes_max lowered with it: ringcast refuses a frame
    limit above the message limit)."""
    server_opts = {"echo_message_bytes_max": 1000, "echo_frame_bytes_max": 1000}

    def test_message_at_limit_echoed(self):
        """A 1,000-byte message (the limit) is echoed."""
        with RawClient.upgraded(self.port) as c:
            c.send_frame(OP_BINARY, b"b" * 1000)
            self.assertEqual(c.recv_message(), (OP_BINARY, b"b" * 1000))

    def test_fragmented_message_at_limit_echoed(self):
        """500 + 500 bytes in fragments (the limit) is echoed."""
        with RawClient.upgraded(self.port) as c:
            c.send_frame(OP_TEXT, b"t" * 500, fin=False)
            c.send_frame(OP_CONT, b"u" * 500)
            self.assertEqual(c.recv_message(), (OP_TEXT, b"t" * 500 + b"u" * 500))

    def test_message_over_limit_1009(self):
        """A 1,001-byte binary message is 1009."""
        with RawClient.upgraded(self.port) as c:
            c.send_frame(OP_BINARY, b"b" * 1001)
            c.expect_close(1009)

    def test_text_over_limit_1009(self):
        """A 1,001-byte text message is 1009."""
        with RawClient.upgraded(self.port) as c:
            c.send_frame(OP_TEXT, b"t" * 1001)
            c.expect_close(1009)

    def test_fragmented_message_over_limit_1009(self):
        """600 + 600 bytes in fragments is 1009, without waiting for the final fragment."""
        with RawClient.upgraded(self.port) as c:
            c.send_frame(OP_BINARY, b"b" * 600, fin=False)
            c.send_frame(OP_CONT, b"c" * 600, fin=False)
            c.expect_close(1009)


class FrameLimitTest(harness.ServerTestCase):
    """echo_frame_bytes_max=1000, echo_message_bytes_max=3000."""
    server_opts = {"echo_frame_bytes_max": 1000, "echo_message_bytes_max": 3000}

    def test_frames_at_limit_echoed(self):
        """3 fragments of 1,000 bytes (both limits reached) are echoed."""
        with RawClient.upgraded(self.port) as c:
            c.send_frame(OP_BINARY, b"a" * 1000, fin=False)
            c.send_frame(OP_CONT, b"b" * 1000, fin=False)
            c.send_frame(OP_CONT, b"c" * 1000)
            self.assertEqual(c.recv_message(), (OP_BINARY, b"a" * 1000 + b"b" * 1000 +
                                                b"c" * 1000))

    @skip_on_ref("ws has one maxPayload, no frame limit separate from the message limit")
    def test_frame_over_limit_1009(self):
        """A single 1,001-byte frame is 1009 (the message limit would admit it)."""
        with RawClient.upgraded(self.port) as c:
            c.send_frame(OP_BINARY, b"x" * 1001)
            c.expect_close(1009)

    @skip_on_ref("ws has one maxPayload, no frame limit separate from the message limit")
    def test_frame_over_limit_from_header_1009(self):
        """A frame header announcing 2,000 bytes is 1009 before any payload arrives."""
        with RawClient.upgraded(self.port) as c:
            c.send(encode_frame(OP_BINARY, b"", length=2000))
            c.expect_close(1009)

    def test_message_over_limit_in_small_frames_1009(self):
        """1000 + 1000 + 1000 + 1 bytes in fragments is 1009."""
        with RawClient.upgraded(self.port) as c:
            for i, n in enumerate((1000, 1000, 1000, 1)):
                c.send_frame(OP_BINARY if i == 0 else OP_CONT, b"z" * n, fin=False)
            c.expect_close(1009)


if __name__ == "__main__":
    harness.main()
