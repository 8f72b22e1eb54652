// Access tokens minted by an independent JWT library, Node's `jsonwebtoken`, with keys made by
// node:crypto: HS256/384/512, RS256 and ES256 (JWKS by kid, and a PEM key without kid) open
// /ws and may publish where their `pubs` allow; forged, expired, not-yet-valid, wrong-kid,
// alg none, HS/RS confusion and oversized tokens get 401; a refresh minted here is accepted.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import jwt from 'jsonwebtoken';
import WebSocket from 'ws';
import { banner, inbox, scale, serverPerSuite, skipOnRef } from './harness.mjs';

banner(import.meta.url, 60000);

const SECRET = 'node-auth-secret-of-at-least-32-bytes';
const dir = mkdtempSync(path.join(tmpdir(), 'ringcast-node-keys-'));
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pemEc = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = (pair, kid) => ({ ...pair.publicKey.export({ format: 'jwk' }), kid });
writeFileSync(path.join(dir, 'jwks.json'),
  JSON.stringify({ keys: [jwk(rsa, 'rsa-1'), jwk(ec, 'ec-1')] }));
writeFileSync(path.join(dir, 'public.pem'), pemEc.publicKey.export({ type: 'spki', format: 'pem' }));

const sign = (claims, key, options) => jwt.sign({ sub: 'node-user', ...claims }, key,
  { ...('exp' in claims ? {} : { expiresIn: 600 }), ...options });

/** The HTTP status of a /ws handshake with token (101 when it opens). */
function status(server, token) {
  return new Promise((resolve) => {
    const ws = new WebSocket(server.url(`/ws?token=${token}`), { handshakeTimeout: scale(10000) });
    ws.once('open', () => { ws.close(); resolve(101); });
    ws.once('unexpected-response', (_, res) => { resolve(res.statusCode); ws.terminate(); });
    ws.once('error', () => resolve(0));
  });
}

async function open(server, token) {
  const ws = new WebSocket(server.url(`/ws?token=${token}`), { perMessageDeflate: false });
  const box = inbox(ws);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return { ws, box };
}

async function ask({ ws, box }, msg) {
  ws.send(JSON.stringify(msg));
  return JSON.parse((await box.next()).data.toString());
}

describe('JWTs from jsonwebtoken', skipOnRef('no JWT support'), () => {
  const server = serverPerSuite({
    opts: { token_hmac_secret: SECRET, token_jwks_file: path.join(dir, 'jwks.json'),
      token_public_key_file: path.join(dir, 'public.pem') },
  });

  it('opens with every algorithm', async () => {
    const tokens = [
      ...['HS256', 'HS384', 'HS512'].map((algorithm) => sign({}, SECRET, { algorithm })),
      sign({}, rsa.privateKey, { algorithm: 'RS256', keyid: 'rsa-1' }),
      sign({}, ec.privateKey, { algorithm: 'ES256', keyid: 'ec-1' }),
      sign({}, pemEc.privateKey, { algorithm: 'ES256' }),
    ];
    for (const t of tokens) assert.equal(await status(server, t), 101, jwt.decode(t, { complete: true }).header.alg);
  });

  it('refuses forged, expired, early, unknown-kid, none, confused and oversized tokens', async () => {
    const now = Math.floor(Date.now() / 1000);
    const bad = {
      forged: sign({}, stranger.privateKey, { algorithm: 'RS256', keyid: 'rsa-1' }),
      otherSecret: sign({}, 'another-secret-another-secret-another', { algorithm: 'HS256' }),
      expired: sign({ exp: now - 30 }, SECRET),
      early: sign({}, SECRET, { notBefore: 600 }),
      unknownKid: sign({}, rsa.privateKey, { algorithm: 'RS256', keyid: 'nope' }),
      none: sign({}, null, { algorithm: 'none' }),
      // HS256 keyed with the EC public key's PEM text, as if it were the secret.
      confused: jwt.sign({ sub: 'x' }, Buffer.from(pemEc.publicKey.export({ type: 'spki', format: 'pem' })),
        { algorithm: 'HS256', allowInsecureKeySizes: true }),
      oversized: sign({ pad: 'x'.repeat(5000) }, SECRET, { algorithm: 'HS256' }),
    };
    for (const [what, t] of Object.entries(bad)) assert.equal(await status(server, t), 401, what);
  });

  it('rights, channel token and refresh', async () => {
    const c = await open(server, sign({ subs: ['feed.*'], pubs: ['feed.>'] }, SECRET,
      { algorithm: 'HS256', expiresIn: 60 }));
    assert.equal((await ask(c, { op: 'sub', topic: 'feed.a' })).op, 'ack');
    assert.equal((await ask(c, { op: 'sub', topic: 'private.a' })).code, 15);
    const chan = sign({ channel: 'private.a' }, ec.privateKey, { algorithm: 'ES256', keyid: 'ec-1' });
    assert.equal((await ask(c, { op: 'sub', topic: 'private.a', token: chan })).op, 'ack');
    const msg = await ask(c, { op: 'pub', topic: 'feed.a', data: { n: 1 } });
    assert.deepEqual([msg.op, msg.data], ['msg', { n: 1 }]);
    assert.equal(JSON.parse((await c.box.next()).data.toString()).of, 'pub');
    assert.equal((await ask(c, { op: 'pub', topic: 'private.a', data: 1 })).code, 15);
    const fresh = sign({ pubs: ['feed.>'] }, rsa.privateKey, { algorithm: 'RS256', keyid: 'rsa-1', expiresIn: 3600 });
    assert.deepEqual(await ask(c, { op: 'refresh', token: fresh }), { op: 'ack', of: 'refresh' });
    const other = sign({ sub: 'someone-else' }, SECRET, { algorithm: 'HS256' });
    assert.equal((await ask(c, { op: 'refresh', token: other })).code, 18);
    c.ws.close();
  });
});
