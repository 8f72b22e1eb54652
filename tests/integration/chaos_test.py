"""Seeded chaos against the running gateway: for a few seconds, thousands of connections send
random bytes, random and malformed HTTP, handshakes followed by random, truncated and
oversized frames (any opcode, RSV bits, masks, close codes, compressed flags), pub/sub ops,
and vanish abruptly (RST) or linger. The same on the TLS port (tls_port): random bytes,
truncated ClientHellos and random records, and the abuse above inside a real TLS session.
The server must stay up, keep serving a well-behaved client, and exit 0 on SIGTERM with no
sanitizer report."""
import atexit
import base64
import json
import os
import random
import shutil
import socket
import ssl
import struct
import tempfile
import time

import harness
import tls_certs
from harness import OP_TEXT, ServerTestCase, scale

CERTS_DIR = tempfile.mkdtemp(prefix="ringcast-chaos-tls-")
CERTS = tls_certs.make(CERTS_DIR)
atexit.register(shutil.rmtree, CERTS_DIR, True)


def hold_or_drop(rnd, s, held):
    """Keeps s open (held), or closes it: politely, or with a reset (SO_LINGER 0)."""
    if rnd.random() < 0.3:
        held.append(s)
        return
    if rnd.random() < 0.5:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


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
    hold_or_drop(rnd, s, held)


def tls_abuse(rnd, s, hello):
    """Sends one kind of abuse to the TLS port on s: noise, a cut or corrupted ClientHello,
    random records, or a real TLS session carrying what one_client sends in the clear.
    Returns the socket to keep (s, or s wrapped in TLS)."""
    kind = rnd.randrange(5)
    if kind == 0:
        s.sendall(rnd.randbytes(rnd.randrange(1, 3000)))
    elif kind == 1:
        cut = bytearray(hello[:rnd.randrange(1, len(hello) + 1)])
        for _ in range(rnd.randrange(3)):
            cut[rnd.randrange(len(cut))] = rnd.randrange(256)
        s.sendall(bytes(cut))
    elif kind == 2:
        for _ in range(rnd.randrange(1, 10)):
            body = rnd.randbytes(rnd.randrange(300))
            s.sendall(bytes([rnd.choice([20, 21, 22, 23, 24]), 3, rnd.randrange(5)]) +
                      struct.pack(">H", rnd.choice([len(body), 0x4800, 0xffff])) + body)
    else:
        s = ssl.create_default_context(cafile=CERTS["ca"]).wrap_socket(
            s, server_hostname="localhost")
        data = handshake(rnd, rnd.choice(["/echo", "/ws"])) + random_frames(rnd)
        s.sendall(data[:rnd.randrange(len(data) + 1)] if kind == 3 else data)
    return s


def tls_client(rnd, port, held, hello):
    """One abusive client of the TLS port; it is held open, reset or closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=1)
    try:
        s = tls_abuse(rnd, s, hello)
    except (OSError, ssl.SSLError):
        s.close()  # the plain socket when the TLS handshake failed
        return
    hold_or_drop(rnd, s, held)


def client_hello():
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context(cafile=CERTS["ca"]).wrap_bio(inc, out,
                                                                  server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class ChaosTest(ServerTestCase):
    server_opts = {"handshake_timeout_ms": 500, "close_timeout_ms": 300,
                   "echo_message_bytes_max": 65536, "echo_frame_bytes_max": 65536,
                   "tls_port": harness.free_port(), "tls_cert_file": CERTS["localhost"][0],
                   "tls_key_file": CERTS["localhost"][1]}

    def abuse(self, client):
        """Runs client(held) over and over for a few seconds (held: sockets it leaves open,
        closed 200 at a time); the server must stay up. Returns the number of clients."""
        held, n = [], 0
        deadline = time.monotonic() + (4 if harness.ASAN else 6)
        while time.monotonic() < deadline:
            n += 1
            try:
                client(held)
            except OSError:
                pass
            if len(held) > 200:
                for s in held:
                    s.close()
                held = []
            self.assertTrue(self.server.alive(), "server died after %d clients" % n)
        for s in held:
            s.close()
        return n

    def test_random_abuse_on_tls_port(self):
        """Seeded random abuse of the TLS port; a good wss client is still echoed after it."""
        rnd = random.Random(20261203)
        tport = int(self.server.opts["tls_port"])
        hello = client_hello()
        n = self.abuse(lambda held: tls_client(rnd, tport, held, hello))
        ctx = ssl.create_default_context(cafile=CERTS["ca"])
        raw = socket.create_connection(("127.0.0.1", tport), timeout=scale(5))
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(handshake(random.Random(1), "/echo"))
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            self.assertIn(b" 101 ", head)
            s.sendall(frame(random.Random(2), OP_TEXT, b"still here"))
            got = b""
            while len(got) < 12:
                got += s.recv(4096)
            self.assertEqual(got[:12], b"\x81\x0astill here")
        print("(%d abusive TLS clients) " % n, end="", flush=True)

    def test_random_abuse_never_crashes(self):
        """Seeded random abuse for a few seconds; a good client is still echoed after it."""
        rnd = random.Random(20261123)
        n = self.abuse(lambda held: one_client(rnd, self.port, held))
        with harness.RawClient(self.port) as c:
            c.handshake("/echo")
            c.send_frame(OP_TEXT, b"still here")
            self.assertEqual(c.recv_message(), (OP_TEXT, b"still here"))
        print("(%d abusive clients) " % n, end="", flush=True)


if __name__ == "__main__":
    harness.main()
