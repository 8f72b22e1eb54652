// wss:// with an independent client: Node `ws` over Node's TLS, trusting a test CA the suite
// makes with the openssl CLI (tls_certs.py). Echo at record boundaries and 1 MiB, pub/sub on
// /ws with POST /publish over https, and the certificate's names checked by Node (no
// rejectUnauthorized: false anywhere).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import WebSocket from 'ws';
import { banner, freePort, inbox, scale, serverPerSuite } from './harness.mjs';

banner(import.meta.url, 55000);

const T = scale(15000);
const dir = mkdtempSync(path.join(os.tmpdir(), 'ringcast-tls-node-'));
execFileSync('/usr/bin/python3', [path.join(import.meta.dirname, 'tls_certs.py'), dir]);
const ca = readFileSync(path.join(dir, 'ca.pem'));
const tlsPort = await freePort();

describe('wss over Node ws', () => {
  const server = serverPerSuite({
    shards: 2,
    opts: {
      tls_port: tlsPort,
      tls_cert_file: path.join(dir, 'localhost.pem'),
      tls_key_file: path.join(dir, 'localhost.key'),
    },
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function open(p) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`wss://localhost:${tlsPort}${p}`,
        { ca, perMessageDeflate: false, handshakeTimeout: T });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
  }

  function publish(body) {
    return new Promise((resolve, reject) => {
      const req = https.request({ host: 'localhost', port: tlsPort, path: '/publish',
        method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
  }

  it('echoes binary messages across record boundaries', { timeout: T }, async () => {
    assert.ok(server.url());
    const ws = await open('/echo');
    const box = inbox(ws);
    for (const n of [1, 16383, 16384, 16385, 100000, 1 << 20]) {
      const msg = randomBytes(n);
      ws.send(msg);
      const { data, isBinary } = await box.next();
      assert.equal(isBinary, true);
      assert.ok(data.equals(msg), `echo of ${n} bytes differs`);
    }
    ws.close(1000);
  });

  it('delivers a POST /publish over https to a wss subscriber', { timeout: T }, async () => {
    const ws = await open('/ws');
    const box = inbox(ws);
    ws.send(JSON.stringify({ op: 'sub', topic: 'node-tls' }));
    const ack = JSON.parse((await box.next()).data);
    assert.equal(ack.op, 'ack');
    const r = await publish({ topic: 'node-tls', data: 'hello' });
    assert.equal(r.status, 200, r.body.toString());
    const msg = JSON.parse((await box.next()).data);
    assert.deepEqual([msg.op, msg.topic, msg.data], ['msg', 'node-tls', 'hello']);
    ws.close(1000);
  });

  it('fails the handshake for a name the certificate does not list', { timeout: T }, async () => {
    await assert.rejects(new Promise((resolve, reject) => {
      const ws = new WebSocket(`wss://127.0.0.1:${tlsPort}/echo`, { ca, servername: 'wrong.test' });
      ws.once('open', () => { ws.close(); resolve(); });
      ws.once('error', reject);
    }), /wrong\.test|altnames|Hostname/i);
  });
});
