// The JS client library over Server-Sent Events: forced SSE (GET /sse, publishing with
// POST /publish) resumes a cut stream by `since` with no loss and no duplicate; with
// transport 'auto' behind a proxy that drops `Upgrade` (the gateway then answers 426), the
// library falls back to SSE after sseAfterFailures failed upgrades, keeps the stream whole,
// and goes back to WebSocket once upgrades pass again.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { Client } from '../../clients/js/ringcast.js';
import { Server, banner, freePort, scale } from './harness.mjs';

banner(import.meta.url, 90000);

const T = scale(30000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let topicNo = 0;
const uniqueTopic = (p) => `${p}.${process.pid}.${++topicNo}`;

async function until(cond, what, ms = T) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function backendPublish(port, topic, data) {
  const res = await fetch(`http://127.0.0.1:${port}/publish`, {
    method: 'POST', body: JSON.stringify({ topic, data }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

/** A TCP proxy that can cut its connections and drop the Upgrade header of requests. */
class Proxy {
  async start(target) {
    this.target = target;
    this.port = await freePort();
    this.sockets = new Set();
    this.dropUpgrade = false;
    this.srv = net.createServer((c) => this.accept(c));
    await new Promise((r) => this.srv.listen(this.port, '127.0.0.1', r));
    return this;
  }

  accept(c) {
    const up = net.connect(this.target, '127.0.0.1');
    this.sockets.add(c).add(up);
    const gone = () => { c.destroy(); up.destroy(); this.sockets.delete(c); this.sockets.delete(up); };
    c.on('error', gone).on('close', gone);
    up.on('error', gone).on('close', gone);
    up.pipe(c);
    let head = Buffer.alloc(0);
    const first = (d) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      c.off('data', first);
      let text = head.toString('latin1');
      // Like a proxy that does not speak WebSocket: the upgrade becomes a plain GET.
      if (this.dropUpgrade) text = text.replace(/^Upgrade:.*\r\n/im, '');
      up.write(Buffer.from(text, 'latin1'));
      c.pipe(up);
    };
    c.on('data', first);
  }

  cut() {
    for (const s of this.sockets) s.destroy();
  }

  async stop() {
    this.cut();
    await new Promise((r) => this.srv.close(r));
  }
}

function recorder(client, topic) {
  const rec = { seqs: [], data: [], gaps: [], resets: [], transports: [] };
  client.subscribe(topic, (m) => { rec.seqs.push(m.seq); rec.data.push(m.data); });
  client.on('gap', (g) => rec.gaps.push(g));
  client.on('reset', (r) => rec.resets.push(r));
  client.on('transport', (t) => { if (t.transport) rec.transports.push(t.transport); });
  return rec;
}

describe('client library over SSE', () => {
  it('forced SSE: publishes over POST, a cut stream resumes by since', async () => {
    const server = await new Server({ shards: 2 }).start();
    const proxy = await new Proxy().start(server.port);
    const topic = uniqueTopic('sse');
    const c = new Client(`http://127.0.0.1:${proxy.port}`, {
      transport: 'sse', backoffBaseMs: 50, backoffCapMs: 300,
    });
    const rec = recorder(c, topic);
    await c.connect();
    await until(() => c.position(topic).epoch !== null, 'the sub ack');
    assert.equal(c.transport, 'sse');
    const r1 = await c.publish(topic, 'from the client', { id: 'p1' });
    assert.deepEqual(r1, { seq: 1, epoch: null, duplicate: false });
    assert.equal((await c.publish(topic, 'again', { id: 'p1' })).duplicate, true);
    for (let i = 2; i <= 60; i++) {
      await backendPublish(server.port, topic, i);
      if (i % 20 === 0) proxy.cut();
    }
    await until(() => rec.seqs.length >= 60, '60 messages');
    await sleep(100);
    assert.deepEqual(rec.seqs, Array.from({ length: 60 }, (_, i) => i + 1));
    assert.deepEqual(rec.data.slice(1), Array.from({ length: 59 }, (_, i) => i + 2));
    assert.deepEqual(rec.gaps, []);
    assert.deepEqual(rec.resets, []);
    assert.ok(c.stats.opens >= 3, `opens ${c.stats.opens}`);
    c.close();
    await proxy.stop();
    await server.stop();
  });

  it('auto: falls back to SSE when upgrades are refused, and back to WebSocket later', async () => {
    const server = await new Server({ shards: 2 }).start();
    const proxy = await new Proxy().start(server.port);
    proxy.dropUpgrade = true;
    const topic = uniqueTopic('fallback');
    const c = new Client(`ws://127.0.0.1:${proxy.port}/ws`, {
      WebSocket, transport: 'auto', sseAfterFailures: 3, wsRetryMs: 300,
      backoffBaseMs: 20, backoffCapMs: 100,
    });
    const rec = recorder(c, topic);
    const attempts = [];
    c.on('attempt', (a) => attempts.push(a.transport));
    await c.connect();
    assert.equal(c.transport, 'sse');
    assert.deepEqual(attempts.slice(0, 4), ['websocket', 'websocket', 'websocket', 'sse']);
    await until(() => c.position(topic).epoch !== null, 'the sub ack');
    for (let i = 1; i <= 20; i++) await backendPublish(server.port, topic, i);
    await until(() => rec.seqs.length >= 20, '20 messages over SSE');
    proxy.dropUpgrade = false; // the next probe upgrades
    await until(() => c.transport === 'websocket', 'the switch back to WebSocket');
    for (let i = 21; i <= 40; i++) await backendPublish(server.port, topic, i);
    await until(() => rec.seqs.length >= 40, '40 messages');
    await sleep(100);
    assert.deepEqual(rec.seqs, Array.from({ length: 40 }, (_, i) => i + 1));
    assert.deepEqual(rec.data, rec.seqs);
    assert.deepEqual(rec.transports, ['sse', 'websocket']);
    c.close();
    await proxy.stop();
    await server.stop();
  });
});
