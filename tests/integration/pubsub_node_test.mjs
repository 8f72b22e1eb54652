// Pub/sub cross-check with an independent client, Node `ws`: 100 subscribers on a 2-shard
// server receive every one of 1,000 messages, in seq order, exactly once and byte-exact,
// published by a WebSocket client and through POST /publish (fetch, batches of 100); acks
// carry the assigned seqs; unsub stops delivery; POST /publish refusals. RINGCAST_ASAN=1
// divides the counts by 5.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { ASAN, banner, scale, serverPerSuite } from './harness.mjs';

banner(import.meta.url, 80000);

const DIV = ASAN ? 5 : 1;
const SUBS = 100 / DIV;
const MSGS = 1000 / DIV;
const T = scale(30000);
let topicNo = 0;
const uniqueTopic = (p) => `${p}.${process.pid}.${++topicNo}`;

/** Distinct compact JSON values of varied shapes (what the server must pass through). */
function payloads(n, tag) {
  return Array.from({ length: n }, (_, i) => {
    switch (i % 4) {
      case 0: return JSON.stringify({ i, tag, s: 'é€😀 "q" \\ /'.repeat(i % 3) });
      case 1: return JSON.stringify([i, null, true, { n: -i }]);
      case 2: return JSON.stringify(`str ${i}`);
      default: return String(i * 1000003);
    }
  });
}

const msgText = (topic, seq, data) => `{"op":"msg","topic":"${topic}","seq":${seq},"data":${data}}`;

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: T });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** A /ws client: every text message parsed and queued; next() awaits the next one. */
class Client {
  static async open(server) {
    const c = new Client();
    c.ws = await open(server.url('/ws'));
    c.queue = [];
    c.waiters = [];
    c.closed = null;
    c.ws.on('message', (data, isBinary) => {
      const m = { raw: data.toString('utf8'), isBinary };
      if (c.waiters.length) c.waiters.shift().resolve(m); else c.queue.push(m);
    });
    c.ws.on('close', (code) => {
      c.closed = new Error(`connection closed (${code}) while a message was awaited`);
      while (c.waiters.length) c.waiters.shift().reject(c.closed);
    });
    return c;
  }

  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }

  nextRaw(timeout = scale(5000)) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no message in time')), timeout);
      this.waiters.push({
        resolve: (m) => { clearTimeout(timer); resolve(m); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
    });
  }

  async next(timeout) {
    const m = await this.nextRaw(timeout);
    assert.equal(m.isBinary, false, 'the server sent a binary frame');
    return JSON.parse(m.raw);
  }

  async sub(topic) {
    this.send({ op: 'sub', topic });
    const { epoch, ...ack } = await this.next();
    assert.match(epoch, /^[0-9a-f]{16}$/);
    assert.deepEqual(ack, { op: 'ack', of: 'sub', topic });
  }

  /** Everything received before the pong of a fresh ping (its own shard's answer). */
  async drain() {
    this.send({ op: 'ping' });
    const out = [];
    for (;;) {
      const m = await this.next();
      if (m.op === 'pong') return out;
      out.push(m);
    }
  }

  close() {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) { resolve(); return; }
      this.ws.once('close', () => resolve());
      this.ws.close(1000);
    });
  }
}

/** A subscriber that keeps the raw text of every message and says when it has count. */
class Collector {
  static async open(server, topic) {
    const c = new Collector();
    c.client = await Client.open(server);
    await c.client.sub(topic);
    c.got = [];
    c.binary = 0;
    c.client.ws.removeAllListeners('message');
    c.client.ws.on('message', (data, isBinary) => {
      if (isBinary) c.binary++;
      c.got.push(data.toString('utf8'));
      if (c.want && c.got.length >= c.want.count) c.want.resolve();
    });
    return c;
  }

  until(count, timeout) {
    if (this.got.length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(
        `has ${this.got.length} of ${count} messages`)), timeout);
      this.want = { count, resolve: () => { clearTimeout(timer); resolve(); } };
    });
  }
}

async function fanout(server, publish) {
  const topic = uniqueTopic('node.fan');
  const datas = payloads(MSGS, topic);
  const expected = datas.map((d, i) => msgText(topic, i + 1, d));
  const subs = await Promise.all(Array.from({ length: SUBS }, () => Collector.open(server, topic)));
  const seqs = await publish(topic, datas);
  assert.deepEqual(seqs, Array.from({ length: MSGS }, (_, i) => i + 1), 'assigned seqs');
  await Promise.all(subs.map((s) => s.until(MSGS, T)));
  for (const [k, s] of subs.entries()) {
    assert.equal(s.binary, 0, `subscriber ${k} got binary frames`);
    assert.equal(s.got.length, MSGS, `subscriber ${k} message count`);
    for (let i = 0; i < MSGS; i++) {
      if (s.got[i] !== expected[i]) {
        assert.equal(s.got[i], expected[i], `subscriber ${k}, message ${i + 1}`);
      }
    }
  }
  // Nothing more is queued: a ping's pong is the next frame for everyone.
  await Promise.all(subs.map(async (s, k) => {
    const before = s.got.length;
    const pong = new Promise((resolve) => s.client.ws.once('pong', resolve));
    s.client.ws.ping('tail');
    await pong;
    assert.equal(s.got.length, before, `subscriber ${k} got extra messages`);
  }));
  await Promise.all(subs.map((s) => s.client.close()));
}

async function post(server, body, method = 'POST') {
  const res = await fetch(`http://127.0.0.1:${server.port}/publish`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: method === 'GET' ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* left null */ }
  return { status: res.status, json, text };
}

describe('pub/sub over Node ws', () => {
  const server = serverPerSuite({ shards: 2 });

  it(`${SUBS} subscribers get ${MSGS} client publishes in order, once, byte-exact`,
    { timeout: T }, () => fanout(server, async (topic, datas) => {
      const p = await Client.open(server);
      for (const d of datas) p.send(`{"op":"pub","topic":"${topic}","data":${d}}`);
      const seqs = [];
      for (let i = 0; i < datas.length; i++) {
        const m = await p.next();
        assert.equal(m.op, 'ack');
        assert.equal(m.of, 'pub');
        assert.equal(m.topic, topic);
        seqs.push(m.seq);
      }
      await p.close();
      return seqs;
    }));

  it(`${SUBS} subscribers get ${MSGS} POST /publish messages (fetch, batches of 100)`,
    { timeout: T }, () => fanout(server, async (topic, datas) => {
      const seqs = [];
      for (let i = 0; i < datas.length; i += 100) {
        const items = datas.slice(i, i + 100).map((d) => `{"topic":"${topic}","data":${d}}`);
        const body = `[${items.join(',')}]`;
        const r = await post(server, body);
        assert.equal(r.status, 200, r.text);
        seqs.push(...r.json.results.map((x) => x.seq));
      }
      return seqs;
    }));

  it('single POST answers {"seq":N}; a repeated id is a duplicate', { timeout: T }, async () => {
    const topic = uniqueTopic('node.single');
    const s = await Client.open(server);
    await s.sub(topic);
    assert.deepEqual((await post(server, { topic, data: { a: [1, 'é'] } })).json, { seq: 1 });
    assert.deepEqual((await post(server, { topic, data: 2, id: 'k' })).json, { seq: 2 });
    assert.deepEqual((await post(server, { topic, data: 2, id: 'k' })).json,
      { seq: 0, duplicate: true });
    assert.equal((await s.nextRaw()).raw, msgText(topic, 1, '{"a":[1,"é"]}'));
    assert.equal((await s.nextRaw()).raw, msgText(topic, 2, '2'));
    assert.deepEqual(await s.drain(), []);
    await s.close();
  });

  it('POST /publish refusals: 400 with an error envelope, GET is 405', { timeout: T }, async () => {
    for (const [body, code] of [['{', 1], ['7', 2], ['{"data":1}', 5], ['{"topic":"t"}', 6],
      ['[]', 11], ['{"topic":"bad topic","data":1}', 5]]) {
      const r = await post(server, body);
      assert.equal(r.status, 400, `${body} answered ${r.status} ${r.text}`);
      assert.equal(r.json?.op, 'error', r.text);
      assert.equal(r.json?.code, code, `${body}: ${r.text}`);
    }
    assert.equal((await post(server, null, 'GET')).status, 405);
  });

  it('unsub stops delivery; the other subscriber keeps receiving', { timeout: T }, async () => {
    const topic = uniqueTopic('node.unsub');
    const [a, b, p] = await Promise.all([Client.open(server), Client.open(server),
      Client.open(server)]);
    await a.sub(topic);
    await b.sub(topic);
    p.send({ op: 'pub', topic, data: 1 });
    assert.equal((await a.next()).seq, 1);
    a.send({ op: 'unsub', topic });
    assert.deepEqual(await a.next(), { op: 'ack', of: 'unsub', topic });
    p.send({ op: 'pub', topic, data: 2 });
    assert.equal((await b.next()).seq, 1);
    assert.equal((await b.next()).seq, 2);
    assert.deepEqual(await a.drain(), []);
    a.send({ op: 'unsub', topic });
    assert.equal((await a.next()).code, 12);
    await Promise.all([a.close(), b.close(), p.close()]);
  });
});
