"""/echo with an independent client: Python websockets (Debian python3-websockets).

Echo of text and binary messages at every length-encoding boundary, 1 MiB and 16 MiB, fragmented
sends, ping/pong, ordering, and the close handshake with codes.
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import scale  # noqa: E402

import websockets  # noqa: E402

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]


def text_of(nbytes):
    """A str whose UTF-8 encoding is exactly nbytes long, with 1-, 2-, 3- and 4-byte chars."""
    unit = "aé€😀"  # 1 + 2 + 3 + 4 = 10 bytes
    s = unit * (nbytes // 10)
    s += "z" * (nbytes - len(s.encode()))
    assert len(s.encode()) == nbytes
    return s


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, scale(timeout)))


class EchoTest(harness.ServerTestCase):
    def connect(self, path="/echo", **kw):
        opts = dict(max_size=None, compression=None, ping_interval=None,
                    open_timeout=scale(10), close_timeout=scale(5))
        opts.update(kw)
        return websockets.connect(self.url(path), **opts)

    async def roundtrip(self, message):
        async with self.connect() as ws:
            await ws.send(message)
            got = await ws.recv()
            self.assertIs(type(got), type(message), "message type not preserved")
            self.assertEqual(len(got), len(message))
            self.assertTrue(got == message, "echoed payload differs")
            await ws.close()
            self.assertEqual(ws.close_code, 1000)

    def test_binary_16mib(self):
        """One 16 MiB binary message (the default echo_message_bytes_max) comes back intact."""
        run(self.roundtrip(os.urandom(16 << 20)), timeout=40)

    def test_fragmented_text_send(self):
        """A text message sent as fragments (websockets iterable send) is echoed whole."""
        parts = ["frag-one ", "", "€uro ", "😀" * 1000, " end"]

        async def go():
            async with self.connect() as ws:
                await ws.send(parts)
                self.assertEqual(await ws.recv(), "".join(parts))
        run(go())

    def test_fragmented_binary_send_async(self):
        """A binary message sent as 200 fragments from an async iterator is echoed whole."""
        chunks = [os.urandom(i * 37 % 5000) for i in range(200)]

        async def gen():
            for c in chunks:
                yield c
                await asyncio.sleep(0)

        async def go():
            async with self.connect() as ws:
                await ws.send(gen())
                self.assertEqual(await ws.recv(), b"".join(chunks))
        run(go())

    def test_ping_pong_payloads(self):
        """Pings with empty, short and 125-byte payloads get pongs with the same payload."""
        async def go():
            async with self.connect() as ws:
                for data in (b"", b"hello", os.urandom(125)):
                    waiter = await ws.ping(data)
                    await asyncio.wait_for(waiter, scale(5))
                await ws.send("still echoing")
                self.assertEqual(await ws.recv(), "still echoing")
        run(go())

    def test_ping_while_messages_in_flight(self):
        """Pings interleaved with a burst of messages are answered and messages stay in order."""
        async def go():
            async with self.connect() as ws:
                waiters = []
                for i in range(100):
                    await ws.send("m%d" % i)
                    if i % 10 == 0:
                        waiters.append(await ws.ping(b"p%d" % i))
                for i in range(100):
                    self.assertEqual(await ws.recv(), "m%d" % i)
                await asyncio.wait_for(asyncio.gather(*waiters), scale(5))
        run(go())

    def test_many_messages_in_order(self):
        """500 pipelined messages of mixed type and size (at most 1 MiB in flight, under the
        send queue limit) come back in order."""
        msgs = [os.urandom(i * 131 % 70000) if i % 2 else text_of(i * 97 % 3000)
                for i in range(500)]
        window = 1 << 20

        async def go():
            async with self.connect() as ws:
                inflight = [0]

                async def sender():
                    for m in msgs:
                        while inflight[0] > window:
                            await asyncio.sleep(0.001)
                        inflight[0] += len(m)
                        await ws.send(m)
                task = asyncio.ensure_future(sender())
                for i, m in enumerate(msgs):
                    got = await ws.recv()
                    inflight[0] -= len(m)
                    self.assertTrue(type(got) is type(m) and got == m, "message %d differs" % i)
                await task
        run(go())

    def test_concurrent_clients_interleaved(self):
        """50 clients on 2 shards echo concurrently without crosstalk."""
        async def client(i):
            async with self.connect() as ws:
                for j in range(20):
                    msg = "client %d message %d" % (i, j)
                    await ws.send(msg)
                    self.assertEqual(await ws.recv(), msg)

        async def go():
            await asyncio.gather(*(client(i) for i in range(50)))
        run(go())

    def _close_with(self, code, reason):
        async def go():
            async with self.connect() as ws:
                await ws.send("before close")
                self.assertEqual(await ws.recv(), "before close")
                await ws.close(code, reason)
                self.assertEqual(ws.close_code, code, "server did not echo close code")
        run(go())

    def test_close_1000(self):
        """Client close 1000 is echoed with 1000."""
        self._close_with(1000, "bye")

    def test_close_1001(self):
        """Client close 1001 is echoed with 1001."""
        self._close_with(1001, "")

    def test_close_3000(self):
        """Client close 3000 (registered range) is echoed with 3000."""
        self._close_with(3000, "registered")

    def test_close_4999(self):
        """Client close 4999 (private range, top) is echoed with 4999."""
        self._close_with(4999, "private ünïcode")


def _add_size_cases():
    for n in SIZES:
        def t(self, n=n):
            run(self.roundtrip(text_of(n)))
        t.__doc__ = "A %d-byte text message is echoed as text, byte for byte." % n
        setattr(EchoTest, "test_text_%07d" % n, t)

        def b(self, n=n):
            run(self.roundtrip(os.urandom(n)))
        b.__doc__ = "A %d-byte binary message is echoed as binary, byte for byte." % n
        setattr(EchoTest, "test_binary_%07d" % n, b)


_add_size_cases()

if __name__ == "__main__":
    harness.main()
