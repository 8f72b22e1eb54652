// permessage-deflate (RFC 7692, issue 5) with an independent client, Node `ws` with
// perMessageDeflate { threshold: 0 } (every message compressed): echo round trips of
// compressible and incompressible text and binary from 0 B to 1 MiB, fragmented compressed
// sends (RSV1 on the first fragment only, one deflate stream across the fragments), the
// offers ws makes with window options (serverMaxWindowBits: 10 answered with 10: messages up
// to 1 KiB compressed, longer ones plain, on echo and pub/sub), a decompression bomb from a
// real client (1009), and pub/sub delivery to deflate and plain subscribers on both shards
// with the broadcast compressed once (ringcast_deflate_in_bytes_total grows by the envelope
// bytes, not × subscribers).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { ASAN, banner, inbox, scale, serverPerSuite } from './harness.mjs';

banner(import.meta.url, 55000);

const T = scale(20000);
const EXT = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
const DEFLATE = { threshold: 0 };
let topicNo = 0;
const uniqueTopic = (p) => `${p}.${process.pid}.${++topicNo}`;

/** n bytes of JSON-ish text that deflates well (deterministic). */
function compressible(n, seed = 1) {
  const words = ['ringcast', 'topic', 'price', 'quote', 'bid', 'ask', 'volume', 'book'];
  let s = '';
  let x = seed;
  while (s.length < n) {
    x = (x * 1103515245 + 12345) % 2147483648;
    s += `{"${words[x % 8]}":${x % 1000},"${words[(x >> 8) % 8]}":"${words[(x >> 16) % 8]}"},`;
  }
  return s.slice(0, n);
}

/** n bytes of valid UTF-8 that compress poorly (random BMP code points). */
function incompressibleText(n) {
  const buf = randomBytes(n);
  let s = '';
  let size = 0;
  for (let i = 0; size < n; i++) {
    const left = n - size;
    let cp = 0x21 + (buf[i % n] % 94);
    if (left >= 3 && (buf[i % n] & 1)) cp = 0x800 + ((buf[i % n] * 131 + i * 7919) % 0xd000);
    const ch = String.fromCharCode(cp);
    s += ch;
    size += Buffer.byteLength(ch);
  }
  return s;
}

async function metrics(server) {
  const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
  assert.equal(res.status, 200);
  const out = {};
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    const name = line.slice(0, i).split('{')[0];
    out[name] = (out[name] || 0) + Number(line.slice(i + 1));
  }
  return out;
}

function open(url, perMessageDeflate = DEFLATE) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate, handshakeTimeout: T, maxPayload: 0 });
    // The answer as sent (ws.extensions only names the extensions).
    ws.once('upgrade', (res) => { ws.answer = res.headers['sec-websocket-extensions'] || ''; });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}


function closeWs(ws) {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) { resolve(); return; }
    ws.once('close', () => resolve());
    ws.close(1000);
  });
}

function sameMessage(got, data, what) {
  if (typeof data === 'string') {
    assert.equal(got.isBinary, false, `${what}: binary reply`);
    const text = got.data.toString('utf8');
    if (text !== data) assert.equal(text.length, data.length, `${what}: text differs`);
    assert.ok(text === data, `${what}: text differs`);
  } else {
    assert.equal(got.isBinary, true, `${what}: text reply`);
    assert.ok(Buffer.compare(got.data, data) === 0, `${what}: ${got.data.length} bytes differ`);
  }
}

describe('permessage-deflate over Node ws', () => {
  const server = serverPerSuite({ shards: 2 });

  it('negotiates the no-context-takeover answer on /echo and /ws', { timeout: T }, async () => {
    for (const path of ['/echo', '/ws']) {
      const ws = await open(server.url(path));
      assert.equal(ws.answer, EXT, path);
      assert.equal(ws.extensions, 'permessage-deflate');
      await closeWs(ws);
      const plain = await open(server.url(path), false);
      assert.equal(plain.answer, '', path);
      assert.equal(plain.extensions, '');
      await closeWs(plain);
    }
  });

  it('echoes compressible and incompressible text and binary, 0 B to 1 MiB',
    { timeout: T }, async () => {
      const m0 = await metrics(server);
      const ws = await open(server.url());
      const box = inbox(ws);
      const sizes = [0, 1, 255, 256, 257, 1000, 16384, 65535, 65536, 300000, 1 << 20];
      let count = 0;
      for (const n of sizes) {
        const cases = [['text', compressible(n, n + 1)], ['text-random', incompressibleText(n)],
          ['binary', Buffer.from(compressible(n, n + 2))], ['binary-random', randomBytes(n)]];
        for (const [kind, data] of cases) {
          ws.send(data);
          sameMessage(await box.next(), data, `${kind} ${n}`);
          count++;
        }
      }
      // Pipelined: many messages in flight at once.
      const datas = Array.from({ length: 300 }, (_, i) => compressible(20 + 41 * i, i));
      for (const d of datas) ws.send(d);
      for (const [i, d] of datas.entries()) sameMessage(await box.next(), d, `pipelined ${i}`);
      await closeWs(ws);
      const m1 = await metrics(server);
      const inflated = m1.ringcast_inflated_messages_total - m0.ringcast_inflated_messages_total;
      const din = m1.ringcast_deflate_in_bytes_total - m0.ringcast_deflate_in_bytes_total;
      const dout = m1.ringcast_deflate_out_bytes_total - m0.ringcast_deflate_out_bytes_total;
      // threshold 0: ws compresses every message it sends (an empty one included).
      assert.equal(inflated, count + datas.length, 'compressed messages the server inflated');
      assert.ok(din > 2 * (1 << 20), `server compressed only ${din} bytes`);
      assert.ok(dout < din * 0.8, `replies shrank only from ${din} to ${dout}`);
    });

  it('reassembles fragmented compressed messages', { timeout: T }, async () => {
    const ws = await open(server.url());
    const box = inbox(ws);
    const shapes = [[3000, 2000, 1], [1, 1, 1, 1], [70000, 0, 5, 200000], [10, 0], [0, 0, 0]];
    for (const [k, shape] of shapes.entries()) {
      for (const binary of [false, true]) {
        const parts = shape.map((n, i) => compressible(n, k * 10 + i));
        const last = parts.length - 1;
        parts.forEach((p, i) => {
          const data = binary ? Buffer.from(p) : p;
          ws.send(data, { fin: i === last, compress: true, binary });
        });
        const whole = parts.join('');
        sameMessage(await box.next(), binary ? Buffer.from(whole) : whole, `shape ${shape}`);
      }
    }
    // Incompressible fragments, and UTF-8 code points split between fragments.
    const rnd = [randomBytes(40000), randomBytes(3), randomBytes(100000)];
    rnd.forEach((b, i) => ws.send(b, { fin: i === rnd.length - 1, compress: true, binary: true }));
    sameMessage(await box.next(), Buffer.concat(rnd), 'incompressible fragments');
    const utf = Buffer.from('é€😀'.repeat(500));
    const cuts = [0, 1, 2, 5, 1001, 3500, utf.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      ws.send(utf.subarray(cuts[i], cuts[i + 1]),
        { fin: i + 2 === cuts.length, compress: true, binary: false });
    }
    sameMessage(await box.next(), utf.toString('utf8'), 'split code points');
    await closeWs(ws);
  });

  it('window options: client_max_window_bits and server_max_window_bits accepted',
    { timeout: T }, async () => {
      const cases = [
        [{ threshold: 0, clientMaxWindowBits: 9 }, EXT],
        [{ threshold: 0, serverMaxWindowBits: 15, clientNoContextTakeover: true,
          serverNoContextTakeover: true }, `${EXT}; server_max_window_bits=15`],
        [{ threshold: 0, serverMaxWindowBits: 10 }, `${EXT}; server_max_window_bits=10`],
      ];
      for (const [pmd, want] of cases) {
        const ws = await open(server.url(), pmd);
        assert.equal(ws.answer, want, JSON.stringify(pmd));
        assert.equal(ws.extensions, 'permessage-deflate');
        const box = inbox(ws);
        for (const data of [compressible(50000), randomBytes(5000), '', 'é'.repeat(700)]) {
          ws.send(data);
          sameMessage(await box.next(), data, JSON.stringify(pmd));
        }
        await closeWs(ws);
      }
    });

  // ws inflates in 16 KiB output chunks, so a back-reference past its 1 KiB window in a long
  // message (farRepeats: 20000 bytes apart) would fail the connection.
  it('serverMaxWindowBits: 10: up to 1 KiB compressed, longer messages plain and intact',
    { timeout: T }, async () => {
      const pmd = { threshold: 0, serverMaxWindowBits: 10 };
      const farRepeats = Buffer.concat(Array(3).fill(randomBytes(20000)));
      const fit = [compressible(300), compressible(1000), compressible(1024)];
      const long = [compressible(1025), compressible(50000), 'é'.repeat(700), farRepeats];
      const m0 = await metrics(server);
      const ws = await open(server.url(), pmd);
      const box = inbox(ws);
      for (const data of [...fit, ...long]) {
        ws.send(data);
        sameMessage(await box.next(), data, `${data.length} bytes`);
      }
      await closeWs(ws);
      const topic = uniqueTopic('node.window');
      const sub = await open(server.url('/ws'), pmd);
      const sbox = inbox(sub);
      sub.send(JSON.stringify({ op: 'sub', topic }));
      assert.equal(JSON.parse((await sbox.next()).data.toString()).of, 'sub');
      // Under frame_bytes_max (64 KiB): 16000-character blocks, 16000 apart.
      const farText = randomBytes(8000).toString('hex').repeat(3);
      const datas = [JSON.stringify(compressible(600)), JSON.stringify(farText)];
      const pub = await open(server.url('/ws'), false);
      for (const d of datas) pub.send(`{"op":"pub","topic":"${topic}","data":${d}}`);
      for (const [i, d] of datas.entries()) {
        const want = `{"op":"msg","topic":"${topic}","seq":${i + 1},"data":${d}}`;
        sameMessage(await sbox.next(), want, `broadcast ${i + 1}`);
      }
      await Promise.all([closeWs(sub), closeWs(pub)]);
      const m1 = await metrics(server);
      const din = m1.ringcast_deflate_in_bytes_total - m0.ringcast_deflate_in_bytes_total;
      const skips = m1.ringcast_deflate_window_skips_total
        - m0.ringcast_deflate_window_skips_total;
      const envelope0 = `{"op":"msg","topic":"${topic}","seq":1,"data":${datas[0]}}`;
      // Echo: the long ones; broadcast: the second (the first fits and is compressed).
      assert.equal(skips, long.length + 1);
      assert.ok(din >= 300 + 1000 + 1024 + Buffer.byteLength(envelope0), `deflate_in ${din}`);
    });

  it('a decompression bomb from ws is closed with 1009', { timeout: T }, async () => {
    for (const [path, size] of [['/echo', 20 << 20], ['/ws', 2 << 20]]) {
      const ws = await open(server.url(path));
      const box = inbox(ws);
      const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
      ws.send(Buffer.alloc(size), { binary: path === '/echo' });
      assert.equal(await closed, 1009, path);
      assert.equal(box.closed.code, 1009);
    }
  });

  it('pub/sub: deflate and plain subscribers get every message byte-exact, compressed once',
    { timeout: T }, async () => {
      const topic = uniqueTopic('node.deflate');
      const SUBS = ASAN ? 6 : 12;
      const MSGS = 60;
      const row = (k) => ({ k, px: 100 + k, s: 'buy' });
      const datas = Array.from({ length: MSGS }, (_, i) => JSON.stringify({
        i, topic, rows: Array.from({ length: 10 + (i % 7) }, (__, k) => row(k)),
      }));
      datas.push('"small"', '[1,2,3]'); // below the threshold: plain to everyone
      const expected = datas.map(
        (d, i) => `{"op":"msg","topic":"${topic}","seq":${i + 1},"data":${d}}`);
      const subs = [];
      for (let i = 0; i < 2 * SUBS; i++) {
        const deflate = i % 2 === 0;
        const ws = await open(server.url('/ws'), deflate ? DEFLATE : false);
        assert.equal(ws.answer, deflate ? EXT : '');
        const box = inbox(ws);
        ws.send(JSON.stringify({ op: 'sub', topic }));
        const { epoch, ...ack } = JSON.parse((await box.next()).data.toString());
        assert.match(epoch, /^[0-9a-f]{16}$/);
        assert.deepEqual(ack, { op: 'ack', of: 'sub', topic });
        subs.push({ ws, box, deflate });
      }
      const pub = await open(server.url('/ws'), false);
      const pbox = inbox(pub);
      const m0 = await metrics(server);
      for (const d of datas) pub.send(`{"op":"pub","topic":"${topic}","data":${d}}`);
      for (let i = 0; i < datas.length; i++) {
        const ack = JSON.parse((await pbox.next()).data.toString());
        assert.equal(ack.op, 'ack');
        assert.equal(ack.seq, i + 1);
      }
      for (const [k, s] of subs.entries()) {
        for (let i = 0; i < expected.length; i++) {
          const m = await s.box.next();
          assert.equal(m.isBinary, false);
          const text = m.data.toString('utf8');
          if (text !== expected[i]) {
            assert.equal(text, expected[i], `subscriber ${k} (deflate ${s.deflate}) msg ${i + 1}`);
          }
        }
      }
      const m1 = await metrics(server);
      const envBytes = expected.slice(0, MSGS).reduce((a, e) => a + Buffer.byteLength(e), 0);
      const din = m1.ringcast_deflate_in_bytes_total - m0.ringcast_deflate_in_bytes_total;
      const dout = m1.ringcast_deflate_out_bytes_total - m0.ringcast_deflate_out_bytes_total;
      console.log(`# ${MSGS} broadcasts to ${SUBS} deflate + ${SUBS} plain subscribers: `
        + `deflate_in ${din} B for ${envBytes} B of envelopes, deflate_out ${dout} B`);
      assert.equal(m1.ringcast_deliveries_total - m0.ringcast_deliveries_total,
        2 * SUBS * datas.length);
      assert.ok(din >= envBytes, 'not every broadcast was compressed');
      assert.ok(din < envBytes * 1.2, `compressed ${din / envBytes}x the envelopes`);
      assert.ok(dout < din / 2);
      await Promise.all([...subs.map((s) => closeWs(s.ws)), closeWs(pub)]);
    });
});
