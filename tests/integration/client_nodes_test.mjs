// The JS client library across nodes (issue 13 with the Redis engine of issue 10): two gateways
// share one redis-server; a library client reaches them through a failover TCP proxy (the
// first node while it answers, else the second), as a balancer would send it. The client's
// node is killed (SIGKILL) in the middle of a publish stream; the library reconnects, lands on
// the other node and resumes the topic from the Redis stream by seq and epoch: every message
// arrives once, in order, with no gap and no reset.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import WebSocket from 'ws';
import { Client } from '../../clients/js/ringcast.js';
import {
  ASAN, Server, backendPublish, banner, freePort, scale, sleep, until,
} from './harness.mjs';

banner(import.meta.url, 90000);



function ping(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => c.write('PING\r\n'));
    c.on('data', (d) => { c.destroy(); resolve(d.toString().startsWith('+PONG')); });
    c.on('error', () => resolve(false));
  });
}

/** redis-server on a free port without persistence, stopped when the file ends. */
async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no'], { detached: true, stdio: 'ignore' });
  after(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } });
  const deadline = Date.now() + scale(10000);
  while (!(await ping(port))) {
    if (Date.now() > deadline) throw new Error('redis-server did not answer');
    await sleep(20);
  }
  return port;
}

/** A TCP proxy that sends each new connection to the first target that accepts it. */
class FailoverProxy {
  async start(targets) {
    this.targets = targets;
    this.port = await freePort();
    this.sockets = new Set();
    this.srv = net.createServer((c) => this.route(c, 0));
    await new Promise((r) => this.srv.listen(this.port, '127.0.0.1', r));
    return this;
  }

  route(c, i) {
    if (i >= this.targets.length) {
      c.destroy();
      return;
    }
    c.pause();
    const up = net.connect(this.targets[i], '127.0.0.1');
    let connected = false;
    up.once('error', () => { if (!connected) this.route(c, i + 1); });
    up.once('connect', () => {
      connected = true;
      this.sockets.add(c).add(up);
      const gone = () => { c.destroy(); up.destroy(); this.sockets.delete(c); this.sockets.delete(up); };
      c.on('error', gone).on('close', gone);
      up.on('error', gone).on('close', gone);
      c.pipe(up).pipe(c);
      c.resume();
    });
  }

  close() {
    return new Promise((r) => { this.srv.close(r); for (const s of this.sockets) s.destroy(); });
  }
}


describe('client library across nodes on Redis', () => {
  it('resumes on another node after its node is killed, without loss or duplicate', async () => {
    const redisPort = await startRedis();
    const opts = { engine: 'redis', redis_addresses: `127.0.0.1:${redisPort}`,
      redis_prefix: `client-nodes-${process.pid}:` };
    const a = await new Server({ shards: 2, opts }).start();
    const b = await new Server({ shards: 2, opts }).start();
    const proxy = await new FailoverProxy().start([a.port, b.port]);
    const topic = `nodes.${process.pid}`;
    const client = new Client(`ws://127.0.0.1:${proxy.port}/ws`, {
      WebSocket, transport: 'websocket', backoffBaseMs: 50, backoffCapMs: 400,
      connectTimeoutMs: 3000,
    });
    const rec = { seqs: [], data: [], gaps: [], resets: [] };
    client.subscribe(topic, (m) => { rec.seqs.push(m.seq); rec.data.push(m.data); });
    client.on('gap', (g) => rec.gaps.push(g));
    client.on('reset', (r) => rec.resets.push(r));
    await client.connect();
    await until(() => client.position(topic).epoch !== null, 'the sub ack');

    const N = ASAN ? 150 : 400;
    for (let i = 1; i <= N; i++) {
      await backendPublish(b.port, topic, i, `m${i}`);
      if (i === Math.floor(N / 3)) {
        await until(() => rec.seqs.length >= 1, 'the first messages through node a');
        a.kill(); // the client's node dies; the proxy now sends new connections to b
      }
    }
    await until(() => rec.seqs.length >= N, `${N} messages`);
    await sleep(200);
    assert.deepEqual(rec.seqs, Array.from({ length: N }, (_, i) => i + 1));
    assert.deepEqual(rec.data, rec.seqs);
    assert.deepEqual(rec.gaps, []);
    assert.deepEqual(rec.resets, []);
    client.close();
    await proxy.close();
    await b.stop();
  });
});
