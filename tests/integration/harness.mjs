// Shared harness for ringcast's Node integration tests (node:test + ws).
//
// Owns: starting a server (ringcast, or the Node reference server when RINGCAST_REF=1) in its own
// process group on a free port, waiting for its readiness line, stopping it with a signal,
// collecting its output, checking its exit status and sanitizer reports. Every started process
// group is killed when this process exits, whatever happens to the test.
//
// Environment: RINGCAST_BIN (default <repo>/build/bin/ringcast), RINGCAST_REF=1 (reference
// server), RINGCAST_ASAN=1 (longer timeouts; sanitizer reports fail the test).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, beforeEach } from 'node:test';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const REF = process.env.RINGCAST_REF === '1';
export const ASAN = process.env.RINGCAST_ASAN === '1';
export const BIN = process.env.RINGCAST_BIN || path.join(REPO, 'build', 'bin', 'ringcast');
const REF_SERVER = path.join(HERE, 'ref', 'echo-server.mjs');
const SANITIZER_MARKERS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:'];

/** A timeout in milliseconds, stretched for sanitizer builds. */
export const scale = (ms) => ms * (ASAN ? 4 : 1);

/** node:test options that skip a case the reference server is known not to reproduce. */
export const skipOnRef = (reason) => (REF ? { skip: `reference server differs: ${reason}` } : {});

const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(130));
}

/** A TCP port nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tail(text, lines = 40) {
  return text.split('\n').slice(-lines).join('\n');
}

export class Server {
  constructor({ shards = 2, opts = {}, port = null } = {}) {
    this.shards = shards;
    this.fixedPort = port; // a restart on the same port (client reconnect tests)
    this.opts = opts;
    this.output = '';
    this.exit = null; // { code, signal } once exited
  }

  argv() {
    const args = ['--port', String(this.port), '--address', '127.0.0.1',
      '--shards', String(this.shards)];
    // The dashboard's stats feed publishes on its own clock: off unless a test asks for it.
    const opts = REF ? this.opts : { stats_interval_ms: 0, ...this.opts };
    for (const [k, v] of Object.entries(opts)) args.push(`--${k}=${v}`);
    return REF ? [process.execPath, REF_SERVER, ...args] : [BIN, ...args];
  }

  async start() {
    if (!REF && !existsSync(BIN)) {
      throw new Error(`ringcast binary not found: ${BIN} (set RINGCAST_BIN or build it)`);
    }
    this.port = this.fixedPort || await freePort();
    const [cmd, ...args] = this.argv();
    this.child = spawn(cmd, args, { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this.child);
    const collect = (d) => { this.output += d.toString(); };
    this.child.stdout.on('data', collect);
    this.child.stderr.on('data', collect);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    const ready = `ready on 127.0.0.1:${this.port}`;
    const deadline = Date.now() + scale(10000);
    while (!this.output.includes(ready)) {
      if (this.exit) {
        const how = JSON.stringify(this.exit);
        throw new Error(`server exited before ready (${how}):\n${tail(this.output)}`);
      }
      if (Date.now() > deadline) {
        this.kill();
        throw new Error(`server not ready in time:\n${tail(this.output)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return this;
  }

  alive() {
    return this.exit === null;
  }

  kill() {
    try { process.kill(-this.child.pid, 'SIGKILL'); } catch { /* already gone */ }
    live.delete(this.child);
  }

  sanitizerReport() {
    for (const m of SANITIZER_MARKERS) {
      const i = this.output.indexOf(m);
      if (i >= 0) return this.output.slice(Math.max(0, i - 200), i + 6000);
    }
    return null;
  }

  /** Signals the server, waits for it, asserts exit status 0 and no sanitizer report. */
  async stop(signal = 'SIGTERM', timeoutMs = scale(15000)) {
    if (this.alive()) this.child.kill(signal);
    let timer;
    const timeout = new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs, null); });
    const exit = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    this.kill(); // the process group, even if the leader is gone
    const out = tail(this.output);
    if (exit === null) throw new Error(`server did not exit after ${signal}:\n${out}`);
    const report = this.sanitizerReport();
    if (report) throw new Error(`sanitizer report in server output:\n${report}`);
    if (exit.code !== 0) {
      throw new Error(`server exit ${JSON.stringify(exit)}, expected code 0:\n${out}`);
    }
  }

  url(p = '/echo') {
    return `ws://127.0.0.1:${this.port}${p}`;
  }
}

/** Prints which server the file runs against and arms a watchdog: a file that runs past
 * budgetMs (stretched for ASan, at most 580 s: tests/run-tests.sh kills a file at 600 s
 * without saying why) exits 3 instead of hanging the suite. */
export function banner(file, budgetMs = 55000) {
  const target = REF ? 'reference server (RINGCAST_REF=1)' : BIN;
  console.log(`# ${path.basename(file)}: server under test: ${target}${ASAN ? ' [ASan]' : ''}`);
  const watchdog = setTimeout(() => {
    console.error('WATCHDOG: test file exceeded its time budget');
    process.exit(3);
  }, Math.min(scale(budgetMs), 580000));
  watchdog.unref();
}

/**
 * One server per describe block (call inside it): started before the first case; a case that
 * kills it fails and the next case gets a fresh one; sanitizer reports fail the case; the
 * dead servers fail the file at the end. Returns a stand-in that forwards to the current
 * server, so cases write server.url() as usual.
 */
export function serverPerSuite(opts) {
  let current = null;
  const dead = [];
  before(async () => { current = await new Server(opts).start(); });
  beforeEach(async () => {
    if (!current.alive()) current = await new Server(opts).start();
  });
  afterEach(() => {
    assert.equal(current.sanitizerReport(), null);
    if (!current.alive()) {
      dead.push(current.exit);
      assert.fail(`server died (${JSON.stringify(current.exit)}):\n${current.output.slice(-3000)}`);
    }
  });
  after(async () => {
    await current.stop('SIGTERM');
    assert.deepEqual(dead, [], 'servers died during the run');
  });
  return new Proxy({}, {
    get(_, prop) {
      const v = current[prop];
      return typeof v === 'function' ? v.bind(current) : v;
    },
  });
}

/**
 * Collects a socket's messages ({ data, isBinary }) in order: next(timeout) resolves with the
 * next one and rejects if the connection closes first; `closed` is { code, reason } once closed.
 */
export function inbox(ws, timeoutMs = scale(30000)) {
  const q = [];
  const waiters = [];
  let closed = null;
  ws.on('message', (data, isBinary) => {
    const m = { data, isBinary };
    if (waiters.length) waiters.shift().resolve(m); else q.push(m);
  });
  ws.on('close', (code, reason) => {
    closed = { code, reason: reason.toString() };
    const err = new Error(`connection closed (${code} ${reason}) while a message was awaited`);
    while (waiters.length) waiters.shift().reject(err);
  });
  return {
    get closed() { return closed; },
    next(timeout = timeoutMs) {
      if (q.length) return Promise.resolve(q.shift());
      if (closed) return Promise.reject(new Error(`connection closed (${closed.code})`));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no message in time')), timeout);
        waiters.push({
          resolve: (m) => { clearTimeout(timer); resolve(m); },
          reject: (e) => { clearTimeout(timer); reject(e); },
        });
      });
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until cond() holds, polling every 10 ms; throws naming what after ms. */
export async function until(cond, what, ms = scale(30000)) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** POST /publish from a backend, retried with the same id until a node answers 200. */
export async function backendPublish(port, topic, data, id) {
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/publish`, {
        method: 'POST', body: JSON.stringify({ topic, data, id }),
      });
      if (res.status === 200) return res.json();
    } catch { /* the gateway is restarting or not reachable yet */ }
    await sleep(20);
  }
}
