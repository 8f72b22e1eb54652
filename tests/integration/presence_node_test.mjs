// Presence, join/leave and per-user delivery with Node clients (`ws`) and tokens minted by
// `jsonwebtoken`, on two shards: the presence list carries each token's info claim, a new
// subscriber is announced with join and a closed one with leave, and a publish to a user's
// personal topic #<sub> reaches each of its connections.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import jwt from 'jsonwebtoken';
import WebSocket from 'ws';
import { banner, inbox, serverPerSuite, skipOnRef } from './harness.mjs';

banner(import.meta.url, 60000);

const SECRET = 'node-presence-secret-of-32-bytes-or-more';
const token = (sub, claims = {}) => jwt.sign({ sub, ...claims }, SECRET, { expiresIn: 600 });

async function open(server, sub, claims) {
  const ws = new WebSocket(server.url(`/ws?token=${token(sub, claims)}`),
    { perMessageDeflate: false });
  const box = inbox(ws);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return { ws, box };
}

/** The next message whose op is one of ops (others, such as joins, are skipped). */
async function next({ box }, ...ops) {
  for (;;) {
    const m = JSON.parse((await box.next()).data.toString());
    if (ops.includes(m.op)) return m;
  }
}

async function sub(c, topic) {
  c.ws.send(JSON.stringify({ op: 'sub', topic }));
  return next(c, 'ack', 'error');
}

describe('presence with ws and jsonwebtoken', skipOnRef('no presence'), () => {
  const server = serverPerSuite({
    opts: { token_hmac_secret: SECRET, 'namespace.chat': 'presence=true,join_leave=true' },
  });

  it('lists subscribers with their info and announces join and leave', async () => {
    const a = await open(server, 'ann', { info: { name: 'Ann' } });
    assert.equal((await sub(a, 'chat:node')).op, 'ack');
    assert.equal((await next(a, 'join')).user, 'ann');
    const b = await open(server, 'bob', { info: { name: 'Bob' } });
    assert.equal((await sub(b, 'chat:node')).op, 'ack');
    const join = await next(a, 'join');
    assert.deepEqual([join.user, join.info], ['bob', { name: 'Bob' }]);
    a.ws.send(JSON.stringify({ op: 'presence', topic: 'chat:node' }));
    const p = await next(a, 'presence');
    assert.deepEqual([p.connections, p.users], [2, 2]);
    assert.deepEqual(p.clients.map((e) => e.info.name).sort(), ['Ann', 'Bob']);
    b.ws.close();
    const leave = await next(a, 'leave');
    assert.deepEqual([leave.user, leave.conn], ['bob', join.conn]);
    a.ws.close();
  });

  it('delivers a publish to #user on every connection of the user', async () => {
    const cs = [];
    for (let i = 0; i < 4; i++) cs.push(await open(server, 'carol'));
    const res = await fetch(server.url('/publish').replace('ws:', 'http:'), {
      method: 'POST', body: JSON.stringify({ topic: '#carol', data: { hi: 1 } }),
      headers: { Authorization: `Bearer ${token('backend', { pubs: ['>'] })}` },
    });
    assert.equal(res.status, 200);
    for (const c of cs) {
      const m = await next(c, 'msg');
      assert.deepEqual([m.topic, m.data], ['#carol', { hi: 1 }]);
      c.ws.close();
    }
  });
});
