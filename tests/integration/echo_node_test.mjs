// /echo with an independent client: Node `ws` (npm). The echo matrix of text and binary messages
// at every length-encoding boundary and 1 MiB, fragmented sends (ws.send(data, { fin: false })),
// ping/pong, the close handshake with codes, and the HTTP refusal of an unknown path.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { banner, inbox, scale, serverPerSuite, skipOnRef } from './harness.mjs';

banner(import.meta.url, 55000);

const SIZES = [0, 125, 126, 65535, 65536, 1 << 20];
const T = scale(15000);

/** A string whose UTF-8 encoding is exactly n bytes, mixing 1-4 byte characters. */
function textOf(n) {
  const unit = 'aé€😀'; // 10 bytes
  let s = unit.repeat(Math.floor(n / 10));
  s += 'z'.repeat(n - Buffer.byteLength(s));
  assert.equal(Buffer.byteLength(s), n);
  return s;
}

function open(url, opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: T, ...opts });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => {
      const err = new Error(`unexpected HTTP ${res.statusCode}`);
      reject(Object.assign(err, { status: res.statusCode }));
      req.destroy();
    });
  });
}


function closed(ws) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no close in time')), T);
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    });
  });
}

describe('echo over Node ws', () => {
  // A case that kills the server fails (afterEach); the next case gets a fresh server, and the
  // dead servers are reported again at the end so the file fails.
  const server = serverPerSuite({ shards: 2 });

  async function roundtrip(payload, binary) {
    const ws = await open(server.url());
    const box = inbox(ws);
    ws.send(payload, { binary });
    const { data, isBinary } = await box.next();
    assert.equal(isBinary, binary, 'message type not preserved');
    const expected = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    assert.equal(data.length, expected.length);
    assert.ok(data.equals(expected), 'echoed payload differs');
    const done = closed(ws);
    ws.close(1000);
    assert.equal((await done).code, 1000);
  }

  for (const n of SIZES) {
    it(`text ${n} bytes echoed as text`, { timeout: T }, () => roundtrip(textOf(n), false));
    it(`binary ${n} bytes echoed as binary`, { timeout: T }, () => roundtrip(randomBytes(n), true));
  }

  it('fragmented text (fin:false x2, then fin) echoed as one message', { timeout: T }, async () => {
    const ws = await open(server.url());
    const box = inbox(ws);
    ws.send('Hello, ', { fin: false });
    ws.send('fragmented €uro ', { fin: false });
    ws.send('world 😀', { fin: true });
    const m = await box.next();
    assert.equal(m.isBinary, false);
    assert.equal(m.data.toString(), 'Hello, fragmented €uro world 😀');
    ws.close(1000);
    await closed(ws);
  });

  it('fragmented binary in 100 fragments echoed whole', { timeout: T }, async () => {
    const ws = await open(server.url());
    const box = inbox(ws);
    const parts = Array.from({ length: 100 }, (_, i) => randomBytes((i * 211) % 3000));
    parts.forEach((p, i) => ws.send(p, { binary: true, fin: i === parts.length - 1 }));
    const m = await box.next();
    assert.equal(m.isBinary, true);
    assert.ok(m.data.equals(Buffer.concat(parts)));
    ws.close(1000);
    await closed(ws);
  });

  it('pings between fragments are answered; message intact', { timeout: T }, async () => {
    const ws = await open(server.url());
    const box = inbox(ws);
    const pongs = [];
    ws.on('pong', (d) => pongs.push(d.toString()));
    ws.send('one ', { fin: false });
    ws.ping('p1');
    ws.send('two ', { fin: false });
    ws.ping('p2');
    ws.send('three', { fin: true });
    const m = await box.next();
    assert.equal(m.data.toString(), 'one two three');
    // Pings read together are answered once (RFC 6455 5.5.3: the latest one).
    assert.ok(['p1,p2', 'p2'].includes(pongs.join(',')), `pongs ${pongs}`);
    ws.close(1000);
    await closed(ws);
  });

  it('ping payloads of 0, 5 and 125 bytes come back in pongs', { timeout: T }, async () => {
    const ws = await open(server.url());
    for (const payload of [Buffer.alloc(0), Buffer.from('hello'), randomBytes(125)]) {
      const pong = new Promise((resolve) => ws.once('pong', resolve));
      ws.ping(payload);
      assert.ok((await pong).equals(payload), 'pong payload differs');
    }
    ws.close(1000);
    await closed(ws);
  });

  it('300 pipelined messages of mixed type come back in order', { timeout: T }, async () => {
    const ws = await open(server.url());
    const box = inbox(ws);
    const msgs = Array.from({ length: 300 },
      (_, i) => (i % 2 ? randomBytes((i * 97) % 70000) : textOf((i * 31) % 2000)));
    msgs.forEach((m) => ws.send(m, { binary: Buffer.isBuffer(m) }));
    for (const [i, m] of msgs.entries()) {
      const got = await box.next();
      assert.equal(got.isBinary, Buffer.isBuffer(m), `message ${i} type`);
      assert.ok(got.data.equals(Buffer.isBuffer(m) ? m : Buffer.from(m)), `message ${i} differs`);
    }
    ws.close(1000);
    await closed(ws);
  });

  it('20 concurrent clients echo without crosstalk', { timeout: T }, async () => {
    await Promise.all(Array.from({ length: 20 }, async (_, c) => {
      const ws = await open(server.url());
      const box = inbox(ws);
      for (let j = 0; j < 20; j++) {
        ws.send(`client ${c} msg ${j}`);
        assert.equal((await box.next()).data.toString(), `client ${c} msg ${j}`);
      }
      ws.close(1000);
      await closed(ws);
    }));
  });

  it('permessage-deflate is negotiated without context takeover; echo round-trips',
    { timeout: T, ...skipOnRef('the stand-in server does not offer permessage-deflate') }, async () => {
    const ws = await open(server.url(), { perMessageDeflate: { threshold: 0 } });
    assert.match(ws.extensions, /^permessage-deflate/, 'deflate must be negotiated');
    const box = inbox(ws);
    for (const msg of ['x'.repeat(5000), 'short', JSON.stringify({ a: 'y'.repeat(3000) })]) {
      ws.send(msg);
      assert.equal((await box.next()).data.toString(), msg);
    }
    ws.close(1000);
    await closed(ws);
  });

  for (const code of [1000, 1001, 3000, 4999]) {
    it(`close ${code} is echoed with ${code}`, { timeout: T }, async () => {
      const ws = await open(server.url());
      const box = inbox(ws);
      ws.send('before close');
      assert.equal((await box.next()).data.toString(), 'before close');
      const done = closed(ws);
      ws.close(code, `bye ${code}`);
      assert.equal((await done).code, code);
    });
  }

  it('close without a code gets a close back (1005 reported)', { timeout: T }, async () => {
    const ws = await open(server.url());
    const done = closed(ws);
    ws.close();
    const { code } = await done;
    assert.ok(code === 1005 || code === 1000, `close code ${code}`);
  });

  it('an upgrade to an unknown path is refused with 404', { timeout: T }, async () => {
    await assert.rejects(open(server.url('/nope')), (e) => e.status === 404);
  });
});
