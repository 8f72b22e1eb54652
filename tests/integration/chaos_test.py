"""Seeded chaos against the running gateway: for a few seconds, thousands of connections send
random bytes, random and malformed HTTP, handshakes followed by random, truncated and
oversized frames (any opcode, RSV bits, masks, close codes, compressed flags), pub/sub ops,
and vanish abruptly (RST) or linger. The server must stay up, keep serving a well-behaved
client, and exit 0 on SIGTERM with no sanitizer report."""
import base64
import json
import os
import random
import socket
import struct
import time

import harness
from harness import OP_TEXT, ServerTestCase, scale


def frame(rnd, op, payload, fin=True, rsv=0, mask=True):
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    n = len(payload)
    if n < 126:
        h = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        h = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if mask:
        m = rnd.randbytes(4)
        payload = bytes(b ^ m[i % 4] for i, b in enumerate(payload))
        h += m
    return h + payload


def handshake(rnd, path):
    key = base64.b64encode(rnd.randbytes(16)).decode()
    ext = rnd.choice(["", "Sec-WebSocket-Extensions: permessage-deflate\r\n"])
    return ("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" %
            (path, key, ext)).encode()


OPS = ['{"op":"sub","topic":"c1"}', '{"op":"pub","topic":"c2","data":{"x":1}}',
       '{"op":"unsub","topic":"c1"}', '{"op":', '[]', '{"op":"sub","topic":"bad topic"}',
       '{"op":"sub","topic":"c1","since":3}', '{"op":"ping"}']


def random_frames(rnd):
    data = b""
    for _ in range(rnd.randrange(1, 30)):
        c = rnd.randrange(9)
        if c == 0:
            data += rnd.randbytes(rnd.randrange(1, 200))
        elif c == 1:
            data += frame(rnd, rnd.randrange(16), rnd.randbytes(rnd.randrange(300)),
                          fin=rnd.random() < 0.7, rsv=rnd.randrange(8))
        elif c == 2:
            data += frame(rnd, 1, rnd.choice(OPS).encode())
        elif c == 3:
            data += frame(rnd, 0, rnd.randbytes(rnd.randrange(100)), fin=rnd.random() < 0.5)
        elif c == 4:
            data += frame(rnd, 9, rnd.randbytes(rnd.randrange(130)))
        elif c == 5:
            data += frame(rnd, 8, struct.pack(">H", rnd.randrange(65536)) + rnd.randbytes(5))
        elif c == 6:
            data += frame(rnd, 1, rnd.randbytes(rnd.randrange(70000)), rsv=rnd.choice([0, 4]))
        else:
            data += frame(rnd, 2, rnd.randbytes(rnd.randrange(5000)))
    return data


def one_client(rnd, port, held):
    s = socket.create_connection(("127.0.0.1", port), timeout=1)
    kind = rnd.randrange(6)
    if kind == 0:
        s.sendall(rnd.randbytes(rnd.randrange(1, 3000)))
    elif kind == 1:
        s.sendall(rnd.choice([
            b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n" + rnd.randbytes(20),
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
            b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc"]))
    else:
        data = handshake(rnd, rnd.choice(["/echo", "/ws"])) + random_frames(rnd)
        cut = rnd.randrange(len(data) + 1) if rnd.random() < 0.3 else len(data)
        s.sendall(data[:cut])
    if rnd.random() < 0.5:
        try:
            s.recv(65536)
        except OSError:
            pass
    if rnd.random() < 0.3:
        held.append(s)
        return
    if rnd.random() < 0.5:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


class ChaosTest(ServerTestCase):
    server_opts = {"handshake_timeout_ms": 500, "close_timeout_ms": 300,
                   "echo_message_bytes_max": 65536, "echo_frame_bytes_max": 65536}

    def test_random_abuse_never_crashes(self):
        """Seeded random abuse for a few seconds; a good client is still echoed after it."""
        rnd = random.Random(20261123)
        held, n = [], 0
        deadline = time.monotonic() + (4 if harness.ASAN else 6)
        while time.monotonic() < deadline:
            n += 1
            try:
                one_client(rnd, self.port, held)
            except OSError:
                pass
            if len(held) > 200:
                for s in held:
                    s.close()
                held = []
            self.assertTrue(self.server.alive(), "server died after %d clients" % n)
        for s in held:
            s.close()
        with harness.RawClient(self.port) as c:
            c.handshake("/echo")
            c.send_frame(OP_TEXT, b"still here")
            self.assertEqual(c.recv_message(), (OP_TEXT, b"still here"))
        print("(%d abusive clients) " % n, end="", flush=True)


if __name__ == "__main__":
    harness.main()
