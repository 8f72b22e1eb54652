"""2,000 concurrent Python websockets connections to a 2-shard server, all open at once, each
echoing; and proof that the load is spread over both shards (SO_REUSEPORT).

The spread is observed from outside: each thread's CPU time (/proc/<pid>/task/*/schedstat) over
the load. If one shard took every connection, the other shard's thread would stay idle.
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import scale, skip_on_ref  # noqa: E402

import websockets  # noqa: E402

CONNECTIONS = 2000
CONNECT_PARALLEL = 200


class ConcurrencyTest(harness.ServerTestCase):
    shards = 2

    async def open_all(self, count):
        gate = asyncio.Semaphore(CONNECT_PARALLEL)

        async def one():
            async with gate:
                return await websockets.connect(self.url(), ping_interval=None,
                                                compression=None, open_timeout=scale(20),
                                                close_timeout=scale(10), max_queue=4)
        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        clients = [r for r in results if not isinstance(r, BaseException)]
        if errors:
            await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
            self.fail("%d of %d connections failed; first: %r" % (len(errors), count, errors[0]))
        return clients

    async def echo_all(self, clients, rounds, size=64):
        async def one(i, ws):
            for r in range(rounds):
                msg = ("%06d/%d:" % (i, r)).ljust(size, "x")
                await ws.send(msg)
                got = await ws.recv()
                if got != msg:
                    raise AssertionError("client %d round %d got %r" % (i, r, got[:40]))
                data = os.urandom(size)
                await ws.send(data)
                if await ws.recv() != data:
                    raise AssertionError("client %d round %d binary differs" % (i, r))
        await asyncio.gather(*(one(i, ws) for i, ws in enumerate(clients)))

    async def close_all(self, clients):
        await asyncio.gather(*(ws.close(1000) for ws in clients))
        codes = {}
        for ws in clients:
            codes[ws.close_code] = codes.get(ws.close_code, 0) + 1
        self.assertEqual(codes, {1000: len(clients)}, "close codes seen")

    def test_2000_concurrent_connections_echo(self):
        """2,000 connections open at once; each echoes text and binary, twice, then closes 1000."""
        async def go():
            clients = await self.open_all(CONNECTIONS)
            try:
                self.assertEqual(len(clients), CONNECTIONS)
                await self.echo_all(clients, rounds=1)
                await asyncio.sleep(0.5)  # all held open and idle
                await self.echo_all(clients, rounds=1, size=3000)
            finally:
                await self.close_all(clients)
        asyncio.run(asyncio.wait_for(go(), scale(45)))

    @skip_on_ref("the stand-in is one Node thread, it has no shards")
    def test_load_spread_over_shards(self):
        """Under 1,000 echoing connections, at least 2 server threads each do >= 20% of the
        work (each shard got a share of the connections)."""
        pid = self.server.proc.pid
        before = harness.thread_runtimes(pid)
        if not before:
            self.skipTest("no /proc/<pid>/task/*/schedstat on this kernel")

        async def go():
            clients = await self.open_all(CONNECTIONS // 2)
            try:
                await self.echo_all(clients, rounds=5, size=1000)
            finally:
                await self.close_all(clients)
        asyncio.run(asyncio.wait_for(go(), scale(45)))
        after = harness.thread_runtimes(pid)
        delta = sorted(((after[t] - before.get(t, 0), t) for t in after), reverse=True)
        total = sum(d for d, _ in delta) or 1
        shares = ["tid %d: %.0f%%" % (t, 100.0 * d / total) for d, t in delta]
        print("(CPU by thread: %s) " % ", ".join(shares[:4]), end="", flush=True)
        self.assertGreaterEqual(len(delta), 2, "server has a single thread: %s" % shares)
        self.assertGreaterEqual(delta[1][0] / total, 0.20,
                                "work not spread over 2 shards: %s" % ", ".join(shares))


if __name__ == "__main__":
    harness.main()
