"""Pub/sub (issue 4) on /ws and POST /publish with real clients: fan-out of every message to
every subscriber (both shards) in seq order, exactly once, byte-exact; per-topic sequences;
unsub; resume with "since" and gaps; dedup by id; who may publish; the subscription limit;
malformed input and its documented answers; slow consumers under both policies; clients that
vanish mid-broadcast.

Bulk receivers are FastSub: a raw asyncio protocol that checks a subscriber's whole byte
stream against the one expected stream (the broadcast frame is byte-identical for every
subscriber), so 10M deliveries are verified at memcmp speed; anything else it meets (a ping,
an extra or missing message) is parsed and reported frame by frame. Control-flow clients use
python3-websockets. RINGCAST_ASAN=1 divides the bulk counts by 10.
"""

import asyncio
import bisect
import http.client
import json
import os
import signal
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (ASAN, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                     accept_key, encode_frame, new_key, scale)

import websockets  # noqa: E402

DIV = 10 if ASAN else 1
FANOUT_SUBS = 1000 // DIV
FANOUT_MSGS = 10000 // DIV
HTTP_BATCH = 100
CONNECT_PARALLEL = 100


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def run(coro, timeout):
    """Runs coro in a fresh event loop with a whole-case timeout (stretched under ASan)."""
    return asyncio.run(asyncio.wait_for(coro, scale(timeout)))


def payloads(n, tag, pad=0):
    """n distinct compact JSON data values (varied shapes; what the server must pass through)."""
    out = []
    for i in range(n):
        k = i % 4
        if k == 0:
            out.append(compact({"n": i, "tag": tag, "pad": "x" * ((i * 7) % 40 + pad)}))
        elif k == 1:
            out.append(compact([i, "s-%d" % i, None, True, {"q": -i}]) if not pad
                       else compact([i, "y" * pad]))
        elif k == 2:
            out.append(compact("str %d %s" % (i, "z" * pad)))
        else:
            out.append(str(i * 1000003))
    return out


# ---------------------------------------------------------------------------------------------
# Expected bytes and the fast stream-checking subscriber.

def server_frame(payload, opcode=OP_TEXT):
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x80 | opcode, 127]) + struct.pack("!Q", n)
    return head + payload


def msg_envelope(topic, seq, data):
    return ('{"op":"msg","topic":"%s","seq":%d,"data":%s}' % (topic, seq, data)).encode()


class Expected:
    """The exact bytes a subscriber of topic receives for seq first..first+len(datas)-1."""

    def __init__(self, topic, datas, first=1):
        self.topic, self.datas, self.first = topic, datas, first
        parts, offsets = [], [0]
        for i, d in enumerate(datas):
            f = server_frame(msg_envelope(topic, first + i, d))
            parts.append(f)
            offsets.append(offsets[-1] + len(f))
        self.blob = b"".join(parts)
        self.offsets = offsets

    def seq_at(self, pos):
        """The seq of the frame holding byte pos."""
        return self.first + bisect.bisect_right(self.offsets, pos) - 1


def parse_frame(buf):
    """(fin, opcode, payload, size) of the server frame at buf[0:], or None if incomplete."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n, i = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, i = struct.unpack("!H", bytes(buf[2:4]))[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, i = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
    if b1 & 0x80:
        raise AssertionError("server sent a masked frame")
    if len(buf) < i + n:
        return None
    return bool(b0 & 0x80), b0 & 0x0F, bytes(buf[i:i + n]), i + n


class FastSub(asyncio.Protocol):
    """A raw subscriber: upgrades on /ws, subscribes (optionally with since), waits for the sub
    ack, then checks every received byte against expected.blob. Set target (a message count)
    to say when the stream is complete; ping() afterwards proves nothing else was queued."""

    def __init__(self, expected, since=None):
        self.loop = asyncio.get_running_loop()
        self.E = expected
        self.since = since
        self.state = "handshake"
        self.buf = bytearray()
        self.pos = 0
        self.target = None
        self.key = new_key()
        self.ready = self.loop.create_future()
        self.done = self.loop.create_future()
        self.pong = None
        self.error = None
        self.close_frame = None
        self.transport = None
        self.events = []  # envelopes other than msg seen before the stream (acks, gaps)

    # -- plumbing
    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n" % self.key).encode())

    def connection_lost(self, exc):
        if self.state not in ("tail", "failed"):
            where = self.E.seq_at(self.pos) if self.state == "stream" else self.state
            self.fail("connection lost (%s) at %s; close frame %r" % (exc, where,
                                                                      self.close_frame))

    def send_json(self, obj):
        self.transport.write(encode_frame(OP_TEXT, compact(obj).encode()))

    def fail(self, msg):
        if self.error is None:
            self.error = msg
        self.state = "failed"
        for fut in (self.ready, self.done, self.pong):
            if fut is not None and not fut.done():
                fut.set_exception(AssertionError(msg))
                fut.exception()  # retrieved: the caller reads self.error instead

    def set_target(self, count):
        self.target = self.E.offsets[count]
        if self.state in ("stream", "tail") and self.pos > self.target:
            self.fail("more than %d messages: got up to seq %d" % (
                count, self.E.seq_at(self.pos - 1)))
        elif self.state == "stream" and self.pos == self.target:
            self._complete(b"")

    def ping(self):
        self.pong = self.loop.create_future()
        if self.state == "failed":
            self.pong.set_exception(AssertionError(self.error))
            self.pong.exception()
        else:
            self.transport.write(encode_frame(OP_PING, b"tail"))
        return self.pong

    def close(self):
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.transport.write(encode_frame(OP_CLOSE, struct.pack("!H", 1000)))
            except Exception:
                pass
            self.transport.close()

    # -- input
    def data_received(self, data):
        try:
            if self.state == "stream" and not self.buf:
                self._stream(data)
                return
            self.buf += data
            if self.state == "handshake":
                self._handshake()
            if self.state == "open":
                self._await_ack()
            if self.state == "stream" and self.buf:
                data = bytes(self.buf)
                self.buf.clear()
                self._stream(data)
            elif self.state == "tail":
                self._tail()
        except AssertionError as e:
            self.fail(str(e))

    def _handshake(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        check(head.startswith("HTTP/1.1 101"), "upgrade refused: %r" % head[:200])
        check(accept_key(self.key) in head, "bad Sec-WebSocket-Accept: %r" % head)
        self.state = "open"
        sub = {"op": "sub", "topic": self.E.topic}
        if self.since is not None:
            sub["since"] = self.since
        self.send_json(sub)

    def _control(self, opcode, payload):
        if opcode == OP_PING:
            self.transport.write(encode_frame(OP_PONG, payload))
            return True
        if opcode == OP_PONG:
            if self.pong is not None and not self.pong.done():
                self.pong.set_result(True)
            return True
        if opcode == OP_CLOSE:
            self.close_frame = payload
            raise AssertionError("server closed: %r" % payload[:80])
        return False

    def _await_ack(self):
        while True:
            f = parse_frame(self.buf)
            if f is None:
                return
            fin, opcode, payload, size = f
            del self.buf[:size]
            if self._control(opcode, payload):
                continue
            m = json.loads(payload)
            if m.get("op") == "ack" and m.get("of") == "sub":
                self.events.append(m)
                self.state = "stream"
                self.ready.set_result(m)
                return
            if m.get("op") == "gap" or (m.get("op") == "msg" and self.since is not None):
                # a resume: what comes before the ack is checked by the caller's expectation
                self.events.append(m)
                continue
            raise AssertionError("expected the sub ack, got %r" % payload[:200])

    def _complete(self, rest):
        self.state = "tail"
        if not self.done.done():
            self.done.set_result(True)
        self.buf += rest
        self._tail()

    def _stream(self, data):
        E = self.E.blob
        while data:
            if self.target is not None and self.pos >= self.target:
                self._complete(data)
                return
            end = len(E) if self.target is None else self.target
            n = min(len(data), end - self.pos)
            chunk = data if n == len(data) else data[:n]
            if n and chunk == E[self.pos:self.pos + n]:
                self.pos += n
                data = data[n:]
                continue
            data = self._mismatch(data, n)
            if data is None:
                return
        if self.target is not None and self.pos >= self.target:
            self._complete(b"")

    def _mismatch(self, data, n):
        """Consumes the longest frame-aligned matching prefix, then one foreign frame. Returns
        the rest of data, or None when it waits for more bytes."""
        E, offs = self.E.blob, self.E.offsets
        j = bisect.bisect_right(offs, self.pos) - 1
        lo, hi = j, bisect.bisect_right(offs, self.pos + n) - 1
        while lo < hi:  # largest k with data[:offs[k]-pos] == E[pos:offs[k]]
            mid = (lo + hi + 1) // 2
            if data[:offs[mid] - self.pos] == E[self.pos:offs[mid]]:
                lo = mid
            else:
                hi = mid - 1
        if lo == j and offs[j] != self.pos:
            raise AssertionError("stream diverges inside the frame of seq %d: got %r" % (
                self.E.first + j, bytes(data[:120])))
        data = data[offs[lo] - self.pos:]
        self.pos = offs[lo]
        if self.target is not None and self.pos >= self.target:
            self._complete(data)
            return None
        f = parse_frame(data)
        if f is None:
            self.buf += data
            return None
        fin, opcode, payload, size = f
        if not self._control(opcode, payload):
            raise AssertionError("expected seq %d (%r...), got %r" % (
                self.E.seq_at(self.pos), E[self.pos:self.pos + 60], payload[:200]))
        return data[size:]

    def _tail(self):
        while True:
            f = parse_frame(self.buf)
            if f is None:
                return
            fin, opcode, payload, size = f
            del self.buf[:size]
            if not self._control(opcode, payload):
                raise AssertionError("extra frame after the last expected message: %r"
                                     % payload[:200])


async def open_fastsubs(port, expected, count, since=None):
    """count FastSubs, all subscribed (sub acked) before this returns."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_PARALLEL)
    subs = []

    async def one():
        async with gate:
            _, p = await loop.create_connection(lambda: FastSub(expected, since),
                                                "127.0.0.1", port)
            subs.append(p)
            await asyncio.wait_for(p.ready, scale(20))
    await asyncio.gather(*(one() for _ in range(count)))
    return subs


async def caught_up(subs, count, timeout):
    """Waits until every sub (that has not failed) holds count messages."""
    deadline = asyncio.get_running_loop().time() + scale(timeout)
    while True:
        behind = [s for s in subs if s.error is None and s.pos < s.E.offsets[count]]
        if not behind or asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.002)


async def finish_fastsubs(subs, count, timeout):
    """Waits until every sub has exactly count messages and a ping round trip shows nothing
    else; returns a list of problems (empty when all is well)."""
    for s in subs:
        s.set_target(count)
    done, pending = await asyncio.wait([s.done for s in subs], timeout=scale(timeout))
    problems = []
    for i, s in enumerate(subs):
        if s.error:
            problems.append("sub %d: %s" % (i, s.error))
        elif not s.done.done():
            problems.append("sub %d: stalled at seq %d of %d" % (
                i, s.E.seq_at(s.pos) - 1 if s.pos else 0, count))
    if not problems:
        await asyncio.wait([s.ping() for s in subs], timeout=scale(10))
        for i, s in enumerate(subs):
            if s.error:
                problems.append("sub %d after the last message: %s" % (i, s.error))
            elif not s.pong.done():
                problems.append("sub %d: no pong" % i)
    return problems


# ---------------------------------------------------------------------------------------------
# websockets clients, HTTP and metrics.

class Client:
    """A python3-websockets client on /ws speaking JSON envelopes. The topic epoch of acks,
    gaps and resets is checked (16 hex digits), kept in last_epoch and, unless keep_epoch,
    taken out of the envelope so that cases compare what they are about."""

    keep_epoch = False

    def __init__(self, ws):
        self.ws = ws
        self.last_epoch = None

    @classmethod
    async def open(cls, port, path="/ws"):
        ws = await websockets.connect("ws://127.0.0.1:%d%s" % (port, path), ping_interval=None,
                                      compression=None, max_size=None, max_queue=None,
                                      open_timeout=scale(10), close_timeout=scale(5))
        return cls(ws)

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else compact(obj))

    async def recv(self, timeout=5):
        raw = await asyncio.wait_for(self.ws.recv(), scale(timeout))
        check(isinstance(raw, str), "server sent a binary frame: %r" % raw[:80])
        m = json.loads(raw)
        if m.get("op") in ("ack", "gap", "reset") and m.get("of") != "unsub":
            epoch = m.get("epoch") if self.keep_epoch else m.pop("epoch", None)
            check(isinstance(epoch, str) and len(epoch) == 16 and
                  all(ch in "0123456789abcdef" for ch in epoch), "epoch of %r" % raw)
            self.last_epoch = epoch
        return m

    async def expect(self, timeout=5, **fields):
        m = await self.recv(timeout)
        for k, v in fields.items():
            check(m.get(k) == v, "expected %s=%r in %r" % (k, v, m))
        return m

    async def expect_error(self, code):
        m = await self.recv()
        check(m.get("op") == "error" and m.get("code") == code,
              "expected error %d, got %r" % (code, m))
        check(set(m) == {"op", "code", "reason"}, "error envelope keys: %r" % m)
        check(isinstance(m["reason"], str) and m["reason"], "empty reason: %r" % m)
        return m

    async def sub(self, topic, since=None):
        obj = {"op": "sub", "topic": topic}
        if since is not None:
            obj["since"] = since
        await self.send(obj)
        if since is None:
            return await self.expect(op="ack", of="sub", topic=topic)
        return None

    async def unsub(self, topic):
        await self.send({"op": "unsub", "topic": topic})
        return await self.expect(op="ack", of="unsub", topic=topic)

    async def pub(self, topic, data, id=None, ack=True):
        msg = '{"op":"pub","topic":"%s","data":%s%s}' % (
            topic, data, ',"id":%s' % compact(id) if id is not None else "")
        await self.send(msg)
        if ack:
            return await self.expect(op="ack", of="pub", topic=topic)
        return None

    async def next_or_none(self, timeout=2):
        """The next envelope, or None if nothing arrives within timeout."""
        try:
            return await self.recv(timeout)
        except asyncio.TimeoutError:
            return None

    async def drain(self):
        """Every envelope received before the pong of a fresh ping. The pong is answered on
        the connection's own shard: it proves nothing about cross-shard deliveries still
        under way, so callers first wait for what they expect (msgs) and then drain."""
        await self.send({"op": "ping"})
        out = []
        while True:
            m = await self.recv()
            if m.get("op") == "pong":
                return out
            out.append(m)

    async def msgs(self, topic, count, timeout=10):
        """The next count envelopes, each asserted to be a msg of topic."""
        out = []
        for _ in range(count):
            m = await self.recv(timeout)
            check(m.get("op") == "msg" and m.get("topic") == topic,
                  "expected a msg of %s, got %r" % (topic, m))
            out.append(m)
        return out

    async def close(self):
        await self.ws.close()

    def abort(self):
        self.ws.transport.abort()


async def publish_ws(port, topic, datas, check_acks=True):
    """Publishes datas on one connection as fast as it can; returns the acked seqs."""
    c = await Client.open(port)
    seqs = []

    async def sender():
        for d in datas:
            await c.ws.send('{"op":"pub","topic":"%s","data":%s}' % (topic, d))

    async def receiver():
        while len(seqs) < len(datas):
            m = await c.recv(30)
            check(m.get("op") == "ack" and m.get("of") == "pub" and m.get("topic") == topic,
                  "publisher got %r" % m)
            seqs.append(m.get("seq"))
    await asyncio.gather(sender(), receiver())
    await c.close()
    return seqs


def http_request(port, method, path, body=b"", headers=None):
    r, data = harness.exchange(http.client.HTTPConnection("127.0.0.1", port, timeout=scale(10)),
                               method, path, body, headers)
    return r.status, data


def http_publish(port, body):
    """POST /publish; returns (status, parsed JSON body)."""
    if not isinstance(body, (bytes, str)):
        body = compact(body)
    if isinstance(body, str):
        body = body.encode()
    status, raw = http_request(port, "POST", "/publish", body,
                               {"Content-Type": "application/json"})
    try:
        return status, json.loads(raw)
    except ValueError:
        raise AssertionError("POST /publish answered %d with non-JSON %r" % (status, raw[:200]))


def batch_body(topic, datas, ids=None):
    items = []
    for i, d in enumerate(datas):
        s = '{"topic":"%s","data":%s' % (topic, d)
        if ids is not None:
            s += ',"id":%s' % compact(ids[i])
        items.append(s + "}")
    return "[" + ",".join(items) + "]"


def metrics(port):
    """{(name, frozenset(labels)): value} from GET /metrics."""
    status, _, body = harness.http_get(port, "/metrics")
    check(status == 200, "GET /metrics answered %d" % status)
    out = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name, _, labels = name_labels.partition("{")
        pairs = frozenset(tuple(kv.split("=", 1)) for kv in labels.rstrip("}").split(",")
                          if kv) if labels else frozenset()
        out[(name, pairs)] = float(value)
    return out


def metric_by_shard(m, name, **labels):
    """{shard: value} of a per-shard family, or {} if the family is absent."""
    want = {(k, '"%s"' % v) for k, v in labels.items()}
    out = {}
    for (n, pairs), v in m.items():
        if n == name and want <= pairs:
            shard = dict(pairs).get("shard", '"?"').strip('"')
            out[shard] = out.get(shard, 0) + v
    return out


def metric_sum(m, name, **labels):
    """The sum over shards, or None if the family is absent."""
    by = metric_by_shard(m, name, **labels)
    return sum(by.values()) if by else None


def closes_by_reason(m):
    """{reason: count} of ringcast_connections_closed_total, summed over shards, non-zero."""
    out = {}
    for (name, labels), v in m.items():
        if name == "ringcast_connections_closed_total" and v:
            r = dict(labels).get("reason", "?").strip('"')
            out[r] = out.get(r, 0) + int(v)
    return out


def unique(prefix):
    unique.n += 1
    return "%s-%d-%d" % (prefix, os.getpid(), unique.n)


unique.n = 0


class PubSubCase(harness.ServerTestCase):
    shards = 2

    async def client(self):
        return await Client.open(self.port)


# ---------------------------------------------------------------------------------------------

class FanoutTest(PubSubCase):
    """1,000 subscribers over both shards, 10,000 messages, by client and by POST /publish."""

    def fanout(self, via):
        topic = unique("fan." + via)
        datas = payloads(FANOUT_MSGS, via)
        expected = Expected(topic, datas)

        async def go():
            subs = await open_fastsubs(self.port, expected, FANOUT_SUBS)
            try:
                m = metrics(self.port)
                spread = metric_by_shard(m, "ringcast_websockets_open")
                self.assertEqual(len(spread), 2, "websockets_open per shard: %r" % spread)
                self.assertGreaterEqual(sum(spread.values()), FANOUT_SUBS, spread)
                for shard, n in spread.items():
                    self.assertGreater(n, FANOUT_SUBS // 10,
                                       "shard %s holds too few subscribers: %r" % (shard, spread))
                before = metric_sum(m, "ringcast_deliveries_total")
                t0 = time.monotonic()
                if via == "ws":
                    seqs = await publish_ws(self.port, topic, datas)
                else:
                    seqs = []
                    for i in range(0, len(datas), HTTP_BATCH):
                        status, body = await asyncio.to_thread(
                            http_publish, self.port, batch_body(topic, datas[i:i + HTTP_BATCH]))
                        self.assertEqual(status, 200, body)
                        seqs += [r.get("seq") for r in body["results"]]
                self.assertEqual(seqs, list(range(1, FANOUT_MSGS + 1)), "assigned seqs")
                problems = await finish_fastsubs(subs, FANOUT_MSGS, 60)
                elapsed = time.monotonic() - t0
                self.assertEqual(problems[:5], [], "%d subscribers failed" % len(problems))
                print("\n    %d subscribers x %d messages via %s verified in %.1fs"
                      % (FANOUT_SUBS, FANOUT_MSGS, via, elapsed), end=" ", flush=True)
                after = metric_sum(metrics(self.port), "ringcast_deliveries_total")
                if before is not None and after is not None:
                    self.assertEqual(after - before, FANOUT_SUBS * FANOUT_MSGS,
                                     "ringcast_deliveries_total grew by")
            finally:
                for s in subs:
                    s.close()
                await asyncio.sleep(0.2)
        run(go(), 85)

    def test_client_publish_reaches_every_subscriber_in_order_exactly_once(self):
        """1,000 subscribers (both shards) get all 10,000 client publishes, in seq order, once,
        byte-exact; the publisher's acks carry seqs 1..10,000."""
        self.fanout("ws")

    def test_http_publish_batches_reach_every_subscriber(self):
        """The same through POST /publish in batches of 100: results carry seqs 1..10,000."""
        self.fanout("http")

    def test_metrics_count_pubsub(self):
        """/metrics exposes per-shard pub/sub counters (deliveries, publishes, slow drops,
        duplicates) and they count: 3 subscribers x 5 publishes = 15 deliveries."""
        topic = unique("metrics")

        async def go():
            m0 = metrics(self.port)
            names = ["ringcast_deliveries_total", "ringcast_publishes_total",
                     "ringcast_slow_drops_total"]
            missing = [n for n in names if not metric_by_shard(m0, n)]
            self.assertEqual(missing, [], "pub/sub metric families missing from /metrics")
            subs = [await self.client() for _ in range(3)]
            for s in subs:
                await s.sub(topic)
            p = await self.client()
            for i in range(5):
                await p.pub(topic, str(i))
            for s in subs:
                await s.msgs(topic, 5)
            m1 = metrics(self.port)
            self.assertEqual(metric_sum(m1, "ringcast_deliveries_total")
                             - metric_sum(m0, "ringcast_deliveries_total"), 15)
            self.assertEqual(metric_sum(m1, "ringcast_publishes_total")
                             - metric_sum(m0, "ringcast_publishes_total"), 5)
            for c in subs + [p]:
                await c.close()
        run(go(), 20)


class ProtocolTest(PubSubCase):
    """The JSON protocol's normal paths."""

    def test_ping_pong_and_ignored_keys(self):
        """ping → pong; keys other than op/topic/since/data/id are ignored."""
        async def go():
            c = await self.client()
            await c.send({"op": "ping"})
            self.assertEqual(await c.recv(), {"op": "pong"})
            await c.send({"op": "ping", "whatever": [1, 2], "x": {"y": None}})
            self.assertEqual(await c.recv(), {"op": "pong"})
            await c.close()
        run(go(), 10)

    def test_envelopes_are_exact(self):
        """sub ack, pub ack (with seq and id) and msg have exactly the documented shape and the
        msg is byte-identical for two subscribers on different connections."""
        topic = unique("shape")

        async def go():
            a, b, p = await self.client(), await self.client(), await self.client()
            self.assertEqual(await a.sub(topic), {"op": "ack", "of": "sub", "topic": topic})
            await b.sub(topic)
            ack = await p.pub(topic, '{"k":[1,2]}', id="id-1")
            self.assertEqual(ack, {"op": "ack", "of": "pub", "topic": topic, "seq": 1,
                                   "id": "id-1"})
            ra = await asyncio.wait_for(a.ws.recv(), scale(5))
            rb = await asyncio.wait_for(b.ws.recv(), scale(5))
            self.assertEqual(ra, '{"op":"msg","topic":"%s","seq":1,"data":{"k":[1,2]}}' % topic)
            self.assertEqual(ra, rb)
            for c in (a, b, p):
                await c.close()
        run(go(), 10)

    def test_data_passes_through_verbatim(self):
        """data is passed through as written (minus whitespace): big numbers keep every digit,
        escapes and UTF-8 stay as they were."""
        topic = unique("verbatim")
        cases = [  # (as sent, as delivered)
            ('123456789012345678901234567890', '123456789012345678901234567890'),
            ('-0.000001e-300', '-0.000001e-300'),
            ('1.5E+300', '1.5E+300'),
            ('"\\u00e9\\n\\"\\\\\\/"', '"\\u00e9\\n\\"\\\\\\/"'),
            ('"é€😀"', '"é€😀"'),
            ('{ "a" : [ 1 , { "b" : null } ] ,\n\t"c" : "x y" }', '{"a":[1,{"b":null}],"c":"x y"}'),
            ('[]', '[]'), ('{}', '{}'), ('""', '""'), ('null', 'null'), ('false', 'false'),
        ]

        async def go():
            s, p = await self.client(), await self.client()
            await s.sub(topic)
            for sent, _ in cases:
                await p.pub(topic, sent)
            got = []
            for i in range(len(cases)):
                raw = await asyncio.wait_for(s.ws.recv(), scale(5))
                got.append(raw)
            want = ['{"op":"msg","topic":"%s","seq":%d,"data":%s}' % (topic, i + 1, d)
                    for i, (_, d) in enumerate(cases)]
            self.assertEqual(got, want)
            await s.close()
            await p.close()
        run(go(), 10)

    def test_two_topics_interleaved_keep_independent_seqs(self):
        """Alternating publishes to two topics: each topic numbers 1..N on its own; a client
        on both sees each topic in order; clients on one topic see only theirs."""
        t1, t2 = unique("inter.a"), unique("inter.b")
        n = 500 // DIV * 2

        async def go():
            both, only1, only2, p = [await self.client() for _ in range(4)]
            for t in (t1, t2):
                await both.sub(t)
            await only1.sub(t1)
            await only2.sub(t2)
            acks = {t1: [], t2: []}
            for i in range(n):
                t = t1 if i % 2 == 0 else t2
                await p.send('{"op":"pub","topic":"%s","data":%d}' % (t, i))
            for i in range(n):
                m = await p.expect(op="ack", of="pub")
                acks[m["topic"]].append(m["seq"])
            self.assertEqual(acks[t1], list(range(1, n // 2 + 1)))
            self.assertEqual(acks[t2], list(range(1, n // 2 + 1)))
            got = {t1: [], t2: []}
            for _ in range(n):
                m = await both.expect(op="msg")
                got[m["topic"]].append((m["seq"], m["data"]))
            self.assertEqual(got[t1], [(k + 1, 2 * k) for k in range(n // 2)])
            self.assertEqual(got[t2], [(k + 1, 2 * k + 1) for k in range(n // 2)])
            for c, t in ((only1, t1), (only2, t2)):
                ms = await c.msgs(t, n // 2)
                self.assertEqual([m["seq"] for m in ms], list(range(1, n // 2 + 1)))
                self.assertEqual(await c.drain(), [])
            self.assertEqual(await both.drain(), [])
            for c in (both, only1, only2, p):
                await c.close()
        run(go(), 30)

    def test_unsub_stops_delivery(self):
        """After the unsub ack nothing more arrives; the other subscriber keeps getting all;
        subscribing again resumes live delivery; unsub of an unknown topic is error 12."""
        topic = unique("unsub")

        async def go():
            a, b, p = await self.client(), await self.client(), await self.client()
            await a.sub(topic)
            await b.sub(topic)
            for i in range(5):
                await p.pub(topic, str(i))
            self.assertEqual([m["seq"] for m in await a.msgs(topic, 5)], [1, 2, 3, 4, 5])
            self.assertEqual(await a.unsub(topic), {"op": "ack", "of": "unsub", "topic": topic})
            for i in range(5, 10):
                await p.pub(topic, str(i))
            self.assertEqual([m["seq"] for m in await b.msgs(topic, 10)], list(range(1, 11)))
            await asyncio.sleep(0.2)
            self.assertEqual(await a.drain(), [], "messages after unsub")
            await a.send({"op": "unsub", "topic": topic})
            await a.expect_error(12)
            await a.send({"op": "unsub", "topic": unique("never")})
            await a.expect_error(12)
            await a.sub(topic)
            await p.pub(topic, "10")
            self.assertEqual((await a.msgs(topic, 1))[0]["seq"], 11)
            for c in (a, b, p):
                await c.close()
        run(go(), 20)

    def test_already_subscribed_is_error_13(self):
        """A second sub of the same topic is error 13 and changes nothing (one copy each)."""
        topic = unique("twice")

        async def go():
            a, p = await self.client(), await self.client()
            await a.sub(topic)
            await a.send({"op": "sub", "topic": topic})
            await a.expect_error(13)
            await p.pub(topic, "1")
            await a.msgs(topic, 1)
            self.assertEqual(await a.drain(), [])
            await a.close()
            await p.close()
        run(go(), 10)

    def test_publish_right_after_sub_ack_is_delivered(self):
        """The sub ack means subscribed: a publish sent once the ack arrived (from another
        connection, 200 fresh topics so owner and subscriber shards differ) is delivered."""
        rounds = 200 // DIV

        async def go():
            subs = [await self.client() for _ in range(4)]
            pubs = [await self.client() for _ in range(4)]
            missed = []
            for r in range(rounds):
                topic = unique("race")
                s, p = subs[r % 4], pubs[(r // 4) % 4]
                await s.sub(topic)
                await p.pub(topic, str(r))
                m = await s.next_or_none(2)
                if not m or m.get("op") != "msg" or m.get("seq") != 1:
                    missed.append((topic, m))
            self.assertEqual(missed[:3], [], "%d of %d rounds missed the first message"
                             % (len(missed), rounds))
            for c in subs + pubs:
                await c.close()
        run(go(), 30)


class ResumeTest(PubSubCase):
    """Resuming with since against the default history (1,024 messages)."""

    def test_resume_replays_exactly_what_was_missed(self):
        """since=10 after 20 publishes: msgs 11..20, then the ack with seq 20, then live 21;
        since=current: only the ack; since=0: everything held."""
        topic = unique("resume")

        async def go():
            p = await self.client()
            for i in range(20):
                await p.pub(topic, '{"i":%d}' % i)
            c = await self.client()
            await c.sub(topic, since=10)
            got = [await c.recv() for _ in range(11)]
            self.assertEqual([(m["op"], m.get("seq")) for m in got],
                             [("msg", s) for s in range(11, 21)] + [("ack", 20)])
            self.assertEqual([m["data"] for m in got[:10]], [{"i": i} for i in range(10, 20)])
            self.assertEqual(got[10], {"op": "ack", "of": "sub", "topic": topic, "seq": 20})
            await p.pub(topic, '{"i":20}')
            self.assertEqual((await c.msgs(topic, 1))[0]["seq"], 21)
            self.assertEqual(await c.drain(), [])
            d = await self.client()
            await d.sub(topic, since=21)
            self.assertEqual(await d.recv(), {"op": "ack", "of": "sub", "topic": topic,
                                              "seq": 21})
            e = await self.client()
            await e.sub(topic, since=0)
            got = [await e.recv() for _ in range(22)]
            self.assertEqual([m.get("seq") for m in got], list(range(1, 22)) + [21])
            self.assertEqual(got[-1]["op"], "ack")
            for x in (p, c, d, e):
                await x.close()
        run(go(), 15)

    def test_resume_on_a_topic_never_published(self):
        """since=0 on a fresh topic: just the ack (no seq, nothing replayed), then live."""
        topic = unique("fresh")

        async def go():
            c, p = await self.client(), await self.client()
            await c.sub(topic, since=0)
            ack = await c.recv()
            self.assertEqual((ack["op"], ack["of"], ack.get("seq", 0)), ("ack", "sub", 0))
            await p.pub(topic, "1")
            self.assertEqual((await c.msgs(topic, 1))[0]["seq"], 1)
            await c.close()
            await p.close()
        run(go(), 10)

    def test_since_ahead_of_the_topic_still_gets_new_messages(self):
        """A client resuming with since beyond the topic's seq (e.g. the server restarted) is
        told so with a reset and the current seq; messages published after its sub must still
        reach it (or a gap must say why not)."""
        topic = unique("ahead")

        async def go():
            c, p = await self.client(), await self.client()
            await p.pub(topic, "1")
            await c.sub(topic, since=50)
            self.assertEqual(await c.recv(), {"op": "reset", "topic": topic, "seq": 1})
            await p.pub(topic, "2")
            m = await c.next_or_none(2)
            self.assertEqual(m and (m["op"], m.get("seq")), ("msg", 2),
                             "a message published after the sub ack")
            self.assertEqual(await c.drain(), [])
            await c.close()
            await p.close()
        run(go(), 10)

    def test_resume_while_publishing_has_no_duplicates_or_gaps(self):
        """A subscriber that drops its connection 4 times (no close handshake) and resumes
        with since=last seen, while a publisher keeps publishing, sees exactly 1..N."""
        topic = unique("live")
        n = 2000 // DIV
        datas = payloads(n, "live")

        async def go():
            p = await self.client()
            seen = []  # (seq, data) across every connection
            c = await self.client()
            await c.sub(topic)
            publishing = asyncio.ensure_future(self._publish_paced(p, topic, datas))
            for cut in range(4):
                while len(seen) < (cut + 1) * n // 6:
                    m = await c.expect(op="msg", topic=topic)
                    seen.append((m["seq"], compact(m["data"])))
                c.abort()
                await asyncio.sleep(0.05)
                c = await self.client()
                last = seen[-1][0]
                await c.sub(topic, since=last)
                while True:
                    m = await c.recv()
                    if m["op"] == "ack":
                        self.assertEqual(m["of"], "sub")
                        break
                    self.assertEqual(m["op"], "msg", "before the ack: %r" % m)
                    seen.append((m["seq"], compact(m["data"])))
                self.assertGreaterEqual(m["seq"], last)
                self.assertEqual(seen[-1][0], m["seq"], "replay ends at the ack's seq")
            await publishing
            while len(seen) < n and seen[-1][0] < n:
                m = await c.expect(op="msg", topic=topic)
                seen.append((m["seq"], compact(m["data"])))
            self.assertEqual([s for s, _ in seen], list(range(1, n + 1)), "seqs end to end")
            self.assertEqual([d for _, d in seen], datas, "data end to end")
            self.assertEqual(await c.drain(), [])
            await c.close()
            await p.close()
        run(go(), 60)

    async def _publish_paced(self, p, topic, datas):
        for i, d in enumerate(datas):
            await p.ws.send('{"op":"pub","topic":"%s","data":%s}' % (topic, d))
            if i % 10 == 9:
                await asyncio.sleep(0.005)
        for i in range(len(datas)):
            m = await p.recv(20)
            check(m.get("seq") == i + 1, "publisher ack %d: %r" % (i, m))


class GapTest(PubSubCase):
    """history_messages_max=10: resumers further back get an explicit gap."""
    server_opts = {"history_messages_max": 10}

    def test_gap_then_what_history_holds(self):
        """After 30 publishes history holds 21..30: since=5 gets gap 6..20, msgs 21..30, ack
        30; since=19 gets gap 20..20; since=20 and since=25 get no gap; since=0 gap 1..20."""
        topic = unique("gap")

        async def go():
            p = await self.client()
            for i in range(30):
                await p.pub(topic, str(i))
            cases = {5: (6, 20), 19: (20, 20), 20: None, 25: None, 0: (1, 20), 30: None}
            for since, gap in cases.items():
                c = await self.client()
                await c.sub(topic, since=since)
                got = []
                while not got or got[-1]["op"] != "ack":
                    got.append(await c.recv())
                want = []
                if gap:
                    want.append({"op": "gap", "topic": topic, "from": gap[0], "to": gap[1]})
                first = max(since + 1, 21)
                want += [{"op": "msg", "topic": topic, "seq": s, "data": s - 1}
                         for s in range(first, 31)]
                want.append({"op": "ack", "of": "sub", "topic": topic, "seq": 30})
                self.assertEqual(got, want, "since=%d" % since)
                await c.close()
            await p.close()
        run(go(), 15)


class WindowsTest(PubSubCase):
    """Short history age and dedup window."""
    server_opts = {"history_age_max_ms": 800, "dedup_window_ms": 800}

    def test_history_expires_by_age(self):
        """Messages older than history_age_max_ms leave history: since=0 then gets gap 1..3
        and the ack with seq 3; a new publish gets seq 4 (the topic kept its numbering)."""
        topic = unique("age")

        async def go():
            p = await self.client()
            for i in range(3):
                await p.pub(topic, str(i))
            await asyncio.sleep(2.6)  # age limit + sweeps (every second)
            c = await self.client()
            await c.sub(topic, since=0)
            self.assertEqual(await c.recv(), {"op": "gap", "topic": topic, "from": 1, "to": 3})
            self.assertEqual(await c.recv(), {"op": "ack", "of": "sub", "topic": topic,
                                              "seq": 3})
            self.assertEqual((await p.pub(topic, "4"))["seq"], 4)
            self.assertEqual((await c.msgs(topic, 1))[0]["seq"], 4)
            await c.close()
            await p.close()
        run(go(), 15)

    def test_dedup_window_expires(self):
        """An id is a duplicate within dedup_window_ms and new again after it."""
        topic = unique("dedupwin")

        async def go():
            p = await self.client()
            self.assertEqual((await p.pub(topic, "1", id="k"))["seq"], 1)
            self.assertNotIn("seq", await p.pub(topic, "1", id="k"))
            await asyncio.sleep(1.5)
            self.assertEqual((await p.pub(topic, "1", id="k"))["seq"], 2)
            await p.close()
        run(go(), 10)


class DedupTest(PubSubCase):
    """Idempotency ids within the default 60 s window."""

    def test_client_publish_dedup(self):
        """A repeated id is acked without seq (with the id) and not delivered; ids are per
        topic and per publisher (another anonymous connection is another); a new id gets the
        next seq."""
        t1, t2 = unique("dedup.a"), unique("dedup.b")

        async def go():
            s, p = await self.client(), await self.client()
            await s.sub(t1)
            self.assertEqual(await p.pub(t1, '"a"', id="x-1"),
                             {"op": "ack", "of": "pub", "topic": t1, "seq": 1, "id": "x-1"})
            self.assertEqual(await p.pub(t1, '"again"', id="x-1"),
                             {"op": "ack", "of": "pub", "topic": t1, "id": "x-1"})
            q = await self.client()  # another connection, same id: another publisher's
            self.assertEqual((await q.pub(t1, '"q"', id="x-1"))["seq"], 2)
            self.assertNotIn("seq", await q.pub(t1, '"q"', id="x-1"))
            self.assertEqual((await p.pub(t1, '"b"', id="x-2"))["seq"], 3)
            self.assertEqual((await p.pub(t2, '"a"', id="x-1"))["seq"], 1)
            self.assertEqual((await p.pub(t1, '"c"'))["seq"], 4)  # no id: never a duplicate
            self.assertEqual((await p.pub(t1, '"c"'))["seq"], 5)
            got = await s.msgs(t1, 5)
            self.assertEqual([(m["seq"], m["data"]) for m in got],
                             [(1, "a"), (2, "q"), (3, "b"), (4, "c"), (5, "c")])
            self.assertEqual(await s.drain(), [])
            for c in (s, p, q):
                await c.close()
        run(go(), 10)

    def test_http_publish_dedup(self):
        """POST /publish: a repeated id answers seq 0 with duplicate true, also inside one
        batch; the subscriber gets each id once."""
        topic = unique("dedup.http")

        async def go():
            s = await self.client()
            await s.sub(topic)
            st, body = http_publish(self.port, {"topic": topic, "data": 1, "id": "h1"})
            self.assertEqual((st, body), (200, {"seq": 1}))
            st, body = http_publish(self.port, {"topic": topic, "data": 1, "id": "h1"})
            self.assertEqual((st, body), (200, {"seq": 0, "duplicate": True}))
            st, body = http_publish(self.port, batch_body(topic, ["2", "3", "4", "5"],
                                                          ["h2", "h3", "h2", "h1"]))
            self.assertEqual((st, body), (200, {"results": [
                {"seq": 2}, {"seq": 3}, {"seq": 0, "duplicate": True},
                {"seq": 0, "duplicate": True}]}))
            got = await s.msgs(topic, 3)
            self.assertEqual([(m["seq"], m["data"]) for m in got], [(1, 1), (2, 2), (3, 3)])
            self.assertEqual(await s.drain(), [])
            await s.close()
        run(go(), 10)


class HttpPublishTest(PubSubCase):
    """POST /publish answers and refusals."""

    def test_single_and_batch(self):
        """A single object answers {"seq":N}; a batch answers results in item order, across
        topics; the subscriber sees the data exactly."""
        t1, t2 = unique("http.a"), unique("http.b")

        async def go():
            s = await self.client()
            await s.sub(t1)
            await s.sub(t2)
            self.assertEqual(http_publish(self.port, {"topic": t1, "data": {"a": 1}}),
                             (200, {"seq": 1}))
            body = '[{"topic":"%s","data":2},{"topic":"%s","data":"x"},{"topic":"%s","data":[3]}]'
            self.assertEqual(http_publish(self.port, body % (t1, t2, t1)),
                             (200, {"results": [{"seq": 2}, {"seq": 1}, {"seq": 3}]}))
            got = [await s.expect(op="msg") for _ in range(4)]
            self.assertEqual(await s.drain(), [])
            self.assertEqual(sorted((m["topic"], m["seq"], compact(m["data"])) for m in got),
                             sorted([(t1, 1, '{"a":1}'), (t1, 2, "2"), (t2, 1, '"x"'),
                                     (t1, 3, "[3]")]))
            await s.close()
        run(go(), 10)

    def test_refusals(self):
        """Bad bodies answer 400 with an error envelope (code per cause), GET is 405, and
        nothing is published."""
        topic = unique("http.bad")
        cases = [
            (b"not json", 1), (b"", None), (b"42", 2), (b"[1]", 2), (b"[]", 11),
            (('{"data":1}'), 5), (('{"topic":"a b","data":1}'), 5),
            (('{"topic":"%s"}' % topic), 6), (('{"topic":"%s","data":1,"id":""}' % topic), 9),
            (('{"topic":"%s","data":1,"topic":"x"}' % topic), 10),
            (('{"topic":"%s","data":1} trailing' % topic), 1),
            (('[{"topic":"%s","data":1},{"topic":"%s"}]' % (topic, topic)), 6),
            ("[" + ",".join(['{"topic":"%s","data":1}' % topic] * 257) + "]", 11),
        ]

        async def go():
            s = await self.client()
            await s.sub(topic)
            for body, code in cases:
                st, env = http_publish(self.port, body)
                self.assertEqual(st, 400, "body %r answered %d %r" % (body[:60], st, env))
                self.assertEqual(env.get("op"), "error", env)
                if code is not None:
                    self.assertEqual(env.get("code"), code, "body %r: %r" % (body[:60], env))
            status, _ = http_request(self.port, "GET", "/publish")
            self.assertEqual(status, 405)
            self.assertEqual(await s.drain(), [], "something was published")
            await s.close()
        run(go(), 15)


class MalformedTest(PubSubCase):
    """Malformed client input: the documented answer, never a crash; the connection stays
    usable after every error envelope."""

    ERRORS = [
        ("hello", 1), ("{\"op\":\"ping\"", 1), ('{"op":"ping"} x', 1), ("", 1),
        ("[1,2]", 2), ('"sub"', 2), ("null", 2),
        ("{}", 3), ('{"op":5}', 3), ('{"topic":"t"}', 3),
        ('{"op":"nope"}', 4), ('{"op":"SUB","topic":"t"}', 4),
        ('{"op":"sub"}', 5), ('{"op":"sub","topic":""}', 5), ('{"op":"sub","topic":"a b"}', 5),
        ('{"op":"sub","topic":"caf\u00e9"}', 5), ('{"op":"sub","topic":"a\\"b"}', 5),
        ('{"op":"sub","topic":7}', 5), ('{"op":"sub","topic":"%s"}' % ("t" * 129), 5),
        ('{"op":"pub","topic":"t*","data":1}', 5), ('{"op":"unsub","topic":"#"}', 5),
        ('{"op":"pub","topic":"t"}', 6),
        ('{"op":"sub","topic":"t","since":-1}', 8), ('{"op":"sub","topic":"t","since":"3"}', 8),
        ('{"op":"sub","topic":"t","since":1.5}', 8),
        ('{"op":"sub","topic":"t","since":9007199254740992}', 8),
        ('{"op":"pub","topic":"t","data":1,"id":""}', 9),
        ('{"op":"pub","topic":"t","data":1,"id":5}', 9),
        ('{"op":"pub","topic":"t","data":1,"id":"%s"}' % ("i" * 65), 9),
        ('{"op":"sub","topic":"t","topic":"u"}', 10), ('{"op":"ping","op":"ping"}', 10),
        ('{"op":"unsub","topic":"t","data":1}', 10), ('{"op":"sub","topic":"t","id":"x"}', 10),
    ]

    def test_error_envelopes(self):
        """Each malformed message gets exactly one error with its documented code."""
        async def go():
            c = await self.client()
            for text, code in self.ERRORS:
                await c.send(text)
                try:
                    await c.expect_error(code)
                except AssertionError as e:
                    raise AssertionError("%r: %s" % (text[:60], e))
            self.assertEqual(await c.drain(), [])
            await c.close()
        run(go(), 20)

    def test_valid_edges(self):
        """The valid side of each limit: a 128-byte topic of every allowed character class,
        since 2^53-1, a 64-byte id."""
        top = ("Az09_.:/-" * 15)[:128]

        async def go():
            c, p = await self.client(), await self.client()
            await c.sub(top)
            await c.send({"op": "sub", "topic": unique("edge"), "since": 2 ** 53 - 1})
            self.assertEqual((await c.recv())["op"], "reset")
            ack = await p.pub(top, "1", id="i" * 64)
            self.assertEqual((ack["seq"], ack["id"]), (1, "i" * 64))
            self.assertEqual((await c.msgs(top, 1))[0]["data"], 1)
            await c.close()
            await p.close()
        run(go(), 10)

    def test_binary_frame_is_refused(self):
        """A binary frame gets error 1 (the protocol uses text frames)."""
        async def go():
            c = await self.client()
            await c.send(b'{"op":"ping"}')
            await c.expect_error(1)
            await c.send({"op": "ping"})
            self.assertEqual(await c.recv(), {"op": "pong"})
            await c.close()
        run(go(), 10)

    def test_frame_over_frame_bytes_max_is_1009(self):
        """A 2 MiB pub in one frame (over frame_bytes_max and message_bytes_max) closes 1009."""
        with harness.RawClient.upgraded(self.port, "/ws") as c:
            data = '{"op":"pub","topic":"big","data":"%s"}' % ("x" * (2 << 20))
            c.send(encode_frame(OP_TEXT, data.encode()))
            c.expect_close(1009)

    def test_fragmented_message_over_message_bytes_max_is_1009(self):
        """A pub fragmented into 32 KiB frames (each under frame_bytes_max) totalling more
        than message_bytes_max (1 MiB) closes 1009."""
        with harness.RawClient.upgraded(self.port, "/ws") as c:
            data = ('{"op":"pub","topic":"big","data":"%s"}' % ("y" * (1100 * 1024))).encode()
            step = 32 * 1024
            parts = [data[i:i + step] for i in range(0, len(data), step)]
            raw = b"".join(encode_frame(OP_TEXT if i == 0 else OP_CONT, part,
                                        fin=(i == len(parts) - 1))
                           for i, part in enumerate(parts))
            try:
                c.send(raw)
            except OSError:
                pass  # the server may close while we still send
            c.expect_close(1009)

    def test_fragmented_pub_under_the_limit_works(self):
        """The same fragmented shape at 200 KiB is a normal publish."""
        topic = unique("frag")
        with harness.RawClient.upgraded(self.port, "/ws") as c:
            c.send(encode_frame(OP_TEXT, compact({"op": "sub", "topic": topic}).encode()))
            self.assertEqual(json.loads(c.recv_message()[1])["op"], "ack")
            payload = "z" * (200 * 1024)
            data = ('{"op":"pub","topic":"%s","data":"%s"}' % (topic, payload)).encode()
            step = 32 * 1024
            parts = [data[i:i + step] for i in range(0, len(data), step)]
            c.send(b"".join(encode_frame(OP_TEXT if i == 0 else OP_CONT, part,
                                         fin=(i == len(parts) - 1))
                            for i, part in enumerate(parts)))
            got = [json.loads(c.recv_message(timeout=scale(5))[1]) for _ in range(2)]
            ops = sorted(m["op"] for m in got)
            self.assertEqual(ops, ["ack", "msg"])
            msg = [m for m in got if m["op"] == "msg"][0]
            self.assertEqual((msg["seq"], msg["data"]), (1, payload))

    def test_invalid_utf8_is_1007(self):
        """Invalid UTF-8 in a text frame closes 1007 (the WebSocket layer, before JSON)."""
        with harness.RawClient.upgraded(self.port, "/ws") as c:
            c.send(encode_frame(OP_TEXT, b'{"op":"sub","topic":"\xff"}'))
            c.expect_close(1007)

    def test_garbage_storm_does_not_hurt_others(self):
        """50 connections sending every malformed message at once, plus abrupt closes; a
        subscriber elsewhere keeps receiving and the server stays up."""
        topic = unique("storm")

        async def go():
            s, p = await self.client(), await self.client()
            await s.sub(topic)

            async def noisy(i):
                c = await self.client()
                for text, code in self.ERRORS:
                    await c.send(text)
                for _ in self.ERRORS:
                    m = await c.recv()
                    check(m.get("op") == "error", "noisy %d got %r" % (i, m))
                if i % 2:
                    c.abort()
                else:
                    await c.close()
            await asyncio.gather(*(noisy(i) for i in range(50)))
            for i in range(20):
                await p.pub(topic, str(i))
            self.assertEqual([m["seq"] for m in await s.msgs(topic, 20)], list(range(1, 21)))
            await s.close()
            await p.close()
        run(go(), 30)


class PublishNoneTest(PubSubCase):
    server_opts = {"client_publish": "none"}

    def test_client_publish_forbidden(self):
        """client_publish=none: a client pub is error 15 and nothing is delivered, even to a
        subscriber that publishes; POST /publish still works."""
        topic = unique("none")

        async def go():
            s, p = await self.client(), await self.client()
            await s.sub(topic)
            await p.pub(topic, "1", ack=False)
            await p.expect_error(15)
            await s.pub(topic, "2", ack=False)
            await s.expect_error(15)
            self.assertEqual(await s.drain(), [])
            self.assertEqual(http_publish(self.port, {"topic": topic, "data": 3}),
                             (200, {"seq": 1}))
            self.assertEqual([(m["seq"], m["data"]) for m in await s.msgs(topic, 1)], [(1, 3)])
            await s.close()
            await p.close()
        run(go(), 10)


class PublishSubscribedTest(PubSubCase):
    server_opts = {"client_publish": "subscribed"}

    def test_only_subscribers_publish(self):
        """client_publish=subscribed: a pub to a topic the connection does not follow is error
        15; after sub it is acked and delivered (also to the publisher); after unsub, 15."""
        topic = unique("subonly")

        async def go():
            s, p = await self.client(), await self.client()
            await s.sub(topic)
            await p.pub(topic, "1", ack=False)
            await p.expect_error(15)
            await p.sub(topic)
            self.assertEqual((await p.pub(topic, "2", ack=False)), None)
            got = [await p.recv(), await p.recv()]  # its ack and its own message, any order
            self.assertEqual(sorted((m["op"], m.get("seq")) for m in got),
                             [("ack", 1), ("msg", 1)])
            self.assertEqual([(m["seq"], m["data"]) for m in await s.msgs(topic, 1)], [(1, 2)])
            await p.unsub(topic)
            await p.pub(topic, "3", ack=False)
            await p.expect_error(15)
            self.assertEqual(await s.drain(), [])
            await s.close()
            await p.close()
        run(go(), 10)


class SubscriptionLimitTest(PubSubCase):
    server_opts = {"subscriptions_per_connection_max": 3}

    def test_limit(self):
        """The 4th sub is error 14; an unsub makes room; another connection has its own
        budget; the refused topic is not delivered."""
        async def go():
            a, b, p = await self.client(), await self.client(), await self.client()
            ts = [unique("lim") for _ in range(5)]
            for t in ts[:3]:
                await a.sub(t)
            await a.send({"op": "sub", "topic": ts[3]})
            await a.expect_error(14)
            await a.send({"op": "sub", "topic": ts[3], "since": 0})
            await a.expect_error(14)
            await p.pub(ts[3], "1")
            self.assertEqual(await a.drain(), [])
            await a.unsub(ts[0])
            await a.sub(ts[3])
            for t in ts[:3]:
                await b.sub(t)
            await p.pub(ts[3], "2")
            self.assertEqual((await a.msgs(ts[3], 1))[0]["seq"], 2)
            for c in (a, b, p):
                await c.close()
        run(go(), 10)


# ---------------------------------------------------------------------------------------------
# Slow consumers and vanishing clients.

class SmallWindowClient(harness.RawClient):
    """A raw client whose receive buffer is tiny before connect (a reader that falls behind)."""

    def __init__(self, port, rcvbuf=4096):
        self.timeout = scale(10)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(self.timeout)
        s.connect(("127.0.0.1", port))
        self.sock = s
        self.buf = bytearray()
        self.eof = False

    def subscribe(self, topic):
        self.handshake("/ws")
        self.send_frame(OP_TEXT, compact({"op": "sub", "topic": topic}).encode())
        op, raw = self.recv_message()
        m = json.loads(raw)
        check(m.get("op") == "ack", "slow reader's sub answered %r" % m)

    def read_all(self, timeout):
        """Every msg seq until a close frame, EOF or silence; returns (seqs, close frame)."""
        seqs, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                f = self.recv_frame(timeout=2)
            except (harness.ConnectionClosed, socket.timeout, OSError):
                return seqs, None
            if f.opcode == OP_CLOSE:
                return seqs, f
            if f.opcode == OP_TEXT:
                m = json.loads(f.payload)
                if m.get("op") == "msg":
                    seqs.append(m["seq"])
        return seqs, None


def kernel_send_bytes_max():
    """What the kernel may buffer for one stalled loopback reader: the sender's tcp_wmem
    ceiling (autotuning grows to it) plus a generous receive side."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2]) + (256 << 10)
    except (OSError, ValueError, IndexError):
        return 16 << 20


class SlowConsumerBase(harness.ServerTestCase):
    shards = 2
    msg_bytes = 2048
    queue_max = 65536  # the subclasses' send_queue_bytes_max

    @property
    def max_msgs(self):
        # Twice what the kernel and the send queue can hold: the policy must have applied.
        return 2 * (kernel_send_bytes_max() + self.queue_max) // self.msg_bytes

    round_msgs = 16  # 32 KiB a round: under send_queue_bytes_max for a reader that keeps up

    def flood(self, stop_when):
        """A publisher floods msg_bytes messages in rounds of round_msgs, each round once the
        50 FastSubs have the previous one (they keep up: only the stalled reader falls
        behind), until stop_when(metrics) holds (checked every 20 rounds). Every FastSub
        must get every message. Returns (count, slow reader, topic)."""
        topic = unique("slow")
        datas = payloads(self.max_msgs, "slow", pad=self.msg_bytes)
        expected = Expected(topic, datas)
        slow = SmallWindowClient(self.port)
        slow.subscribe(topic)

        async def go():
            subs = await open_fastsubs(self.port, expected, 50)
            p = await Client.open(self.port)
            count = 0
            try:
                rounds = 0
                while count < self.max_msgs:
                    chunk = datas[count:count + self.round_msgs]
                    for d in chunk:
                        await p.ws.send('{"op":"pub","topic":"%s","data":%s}' % (topic, d))
                    for i in range(len(chunk)):
                        m = await p.recv(30)
                        check(m.get("seq") == count + i + 1, "publisher ack: %r" % m)
                    count += len(chunk)
                    await caught_up(subs, count, 10)
                    rounds += 1
                    if rounds % 20 == 0 and stop_when(metrics(self.port)):
                        break
                print("\n    stop after %d messages" % count, end=" ", flush=True)
                problems = await finish_fastsubs(subs, count, 60)
                self.assertEqual(problems[:5], [], "%d of 50 fast subscribers failed"
                                 % len(problems))
            finally:
                for s in subs:
                    s.close()
                await p.close()
            return count
        count = run(go(), 120)
        return count, slow, topic


class SlowCloseTest(SlowConsumerBase):
    # The close frame waits behind what the kernel holds for the stalled reader, which reads
    # only after the flood: close_timeout_ms outlasts a flood on a loaded machine.
    server_opts = {"send_queue_bytes_max": 65536, "slow_consumer_policy": "close",
                   "close_timeout_ms": 120000}

    def test_stalled_reader_is_closed_1013(self):
        """A subscriber that never reads is closed with 1013 "slow consumer..." after an
        in-order prefix; 50 others get every message; the close is counted."""
        count, slow, _ = self.flood(lambda m: False)
        try:
            seqs, close = slow.read_all(scale(20))
            self.assertIsNotNone(close, "no close frame after %d of %d msgs" % (len(seqs), count))
            self.assertEqual(close.close_code, 1013, close.close_reason)
            self.assertTrue(close.close_reason.startswith(b"slow consumer"), close.close_reason)
            self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "prefix before the close")
            self.assertLess(len(seqs), count)
            slow.send_close(1013)
            slow.expect_eof()
            deadline = time.monotonic() + scale(3)
            while True:
                m = metrics(self.port)
                n = metric_sum(m, "ringcast_connections_closed_total", reason="slow_consumer")
                if n >= 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(n, 1, "the 1013 close is not counted as slow_consumer; closes by "
                             "reason: %r" % closes_by_reason(m))
        finally:
            slow.close()


class SlowAgeTest(SlowConsumerBase):
    server_opts = {"send_queue_age_max_ms": 500, "slow_consumer_policy": "close"}
    queue_max = 4 << 20  # the default send_queue_bytes_max

    @property
    def max_msgs(self):
        # What the kernel holds plus 1 MiB queued: under the byte limit, so age decides.
        return (kernel_send_bytes_max() + (1 << 20)) // self.msg_bytes

    def test_reader_stalled_past_the_age_limit_is_closed_1013(self):
        """A backlog whose oldest frame is older than send_queue_age_max_ms (queued bytes
        under the limit) applies the policy at the next publish: close 1013."""
        count, slow, topic = self.flood(lambda m: False)

        async def later():
            p = await Client.open(self.port)
            await asyncio.sleep(1.0)  # the backlog ages past 500 ms
            await p.pub(topic, "0")
            await p.close()
        try:
            run(later(), 10)
            seqs, close = slow.read_all(scale(20))
            self.assertIsNotNone(close, "no close frame after %d of %d msgs" % (len(seqs),
                                                                              count + 1))
            self.assertEqual(close.close_code, 1013, close.close_reason)
            self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "prefix before the close")
        finally:
            slow.close()


class SlowDropTest(SlowConsumerBase):
    server_opts = {"send_queue_bytes_max": 65536, "slow_consumer_policy": "drop"}

    def test_stalled_reader_sees_a_gap(self):
        """Policy drop: the stalled reader is not closed; when it reads again its seqs rise
        strictly with at least one gap; 50 others get every message; drops are counted."""
        drops = lambda m: (metric_sum(m, "ringcast_slow_drops_total") or 0) > 0
        count, slow, topic = self.flood(drops)
        try:
            seqs, close = slow.read_all(scale(10))
            gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
            print("\n    reader got %d of %d, first gaps %s" % (len(seqs), count, gaps[:3]),
                  end=" ", flush=True)
            self.assertIsNone(close, "policy drop closed the reader: %r" % close)
            self.assertTrue(seqs, "the reader got nothing")
            self.assertEqual(seqs, sorted(set(seqs)), "seqs not strictly increasing")
            self.assertLess(len(seqs), count, "nothing was dropped in %d messages" % count)
            self.assertEqual(seqs[:3], [1, 2, 3])
            p = SmallWindowClient(self.port, rcvbuf=1 << 20)  # live again: the next publish
            p.handshake("/ws")
            p.send_frame(OP_TEXT, compact({"op": "pub", "topic": topic, "data": 0}).encode())
            self.assertEqual(json.loads(p.recv_message()[1]).get("seq"), count + 1)
            p.close()
            more, close = slow.read_all(3)
            self.assertEqual(more, [count + 1])
            m = metrics(self.port)
            self.assertEqual(metric_sum(m, "ringcast_connections_closed_total",
                                        reason="slow_consumer"), 0)
            drops_n = metric_sum(m, "ringcast_slow_drops_total")
            self.assertIsNotNone(drops_n, "ringcast_slow_drops_total missing from /metrics")
            self.assertGreater(drops_n, 0)
        finally:
            slow.close()


class VanishTest(unittest.TestCase):
    """Clients vanishing mid-broadcast, on a server of its own so its exit is checked."""

    def test_200_clients_vanish_mid_broadcast(self):
        """200 subscribers close TCP abruptly (half RST, half FIN, no close handshake) while a
        publisher floods; 50 others get everything; /metrics shows the closes; SIGTERM exits
        0 with no sanitizer report."""
        srv = harness.Server(2).start()
        doomed_n, keep_n = 200 // (2 if ASAN else 1), 50
        n = 6000 // DIV
        topic = unique("vanish")
        datas = payloads(n, "vanish", pad=200)
        expected = Expected(topic, datas)

        async def go():
            loop = asyncio.get_running_loop()
            doomed = await open_fastsubs(srv.port, expected, doomed_n)
            keep = await open_fastsubs(srv.port, expected, keep_n)
            m0 = metrics(srv.port)
            closed0 = metric_sum(m0, "ringcast_connections_closed_total")
            for d in doomed:
                d.transport.pause_reading()  # stop reading: their queues build up
            p = await Client.open(srv.port)

            async def receiver():
                for i in range(n):
                    m = await p.recv(30)
                    check(m.get("seq") == i + 1, "publisher ack: %r" % m)
            acks = asyncio.ensure_future(receiver())
            for i, d in enumerate(datas):
                await p.ws.send('{"op":"pub","topic":"%s","data":%s}' % (topic, d))
                if i == n // 3:
                    for k, s in enumerate(doomed):
                        sock = s.transport.get_extra_info("socket")
                        if k % 2 == 0:
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                            struct.pack("ii", 1, 0))
                        s.state = "failed"  # expected to die: no more checks
                        s.transport.abort()
                if i % 50 == 49:
                    await asyncio.sleep(0)
            await acks
            problems = await finish_fastsubs(keep, n, 60)
            self.assertEqual(problems[:5], [], "%d of %d survivors failed"
                             % (len(problems), keep_n))
            deadline = loop.time() + scale(10)
            while True:
                m = metrics(srv.port)
                open_ = metric_sum(m, "ringcast_websockets_open")
                closed = metric_sum(m, "ringcast_connections_closed_total") - closed0
                if (open_ <= keep_n + 1 and closed >= doomed_n) or loop.time() > deadline:
                    break
                await asyncio.sleep(0.1)
            self.assertLessEqual(open_, keep_n + 1, "websockets_open after the vanishing")
            self.assertGreaterEqual(closed, doomed_n, "connections_closed_total grew by")
            by_reason = closes_by_reason(m)
            print("\n    closes by reason (all shards): %s" % by_reason, end=" ", flush=True)
            for s in keep:
                s.close()
            await p.close()
        try:
            run(go(), 120)
            rc = srv.stop(signal.SIGTERM)
            srv.check_exit(rc, 0)
        finally:
            srv.kill()


if __name__ == "__main__":
    harness.main(budget_s=90)
