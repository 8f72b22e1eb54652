// ringcast.js: the client of ringcast's pub/sub protocol, for browsers and Node (>= 18).
//
// One dependency-free ES module. It owns one logical connection to a gateway: WebSocket
// (`/ws`) normally, Server-Sent Events (`GET /sse`, publishing with `POST /publish`) after
// repeated failed upgrades, going back to WebSocket later. It reconnects with exponential
// backoff and full jitter, honours the server's Retry-After (503) and its "come back later"
// close codes (1012, 1013), resumes every topic from its last seq and epoch, drops
// duplicates, reports gaps and resets, checks liveness with app-level pings, renews tokens
// before they expire and queues publishes made while disconnected (bounded, in order).
// The protocol it speaks is described in the gateway's README ("Pub/sub protocol", "SSE").

/** Connection states, reported by the 'state' event. */
export const State = Object.freeze({
  IDLE: 'idle', // created, connect() not called yet
  CONNECTING: 'connecting', // first attempt in progress
  OPEN: 'open', // a transport is up and subscriptions are being (re)made
  RECONNECTING: 'reconnecting', // waiting for the next attempt or attempting
  CLOSED: 'closed', // close() was called; nothing more happens
});

const DEFAULTS = Object.freeze({
  token: null, // string, or (async) function returning one; called before every attempt
  transport: 'auto', // 'auto' (WebSocket, SSE after failed upgrades), 'websocket' or 'sse'
  WebSocket: null, // a WebSocket class; default: the global one, else the `ws` package
  fetch: null, // a fetch function for SSE and POST /publish; default: the global one
  backoffBaseMs: 500, // first reconnect delay ceiling
  backoffFactor: 2, // growth of the ceiling per failed attempt
  backoffCapMs: 30000, // largest ceiling
  jitter: true, // full jitter: the delay is uniform in [0, ceiling)
  retryLaterMs: 5000, // least wait after close 1012/1013 (the server asked to come back later)
  pingIntervalMs: 25000, // silence after which the client sends {"op":"ping"}
  pongTimeoutMs: 10000, // silence after that ping after which the connection counts as dead
  connectTimeoutMs: 10000, // an attempt that has not opened by then fails
  tokenRefreshMarginMs: 30000, // renew ({"op":"refresh"}) this long before the token's exp
  offlineQueueMax: 1000, // publishes held while disconnected; more are refused ('overflow')
  publishTimeoutMs: 30000, // a publish sent without an ack by then is rejected
  sseAfterFailures: 3, // failed WebSocket upgrades in a row before trying SSE ('auto')
  wsRetryMs: 60000, // while on SSE, try WebSocket again this often
  iteratorBufferMax: 10000, // messages an async iterator holds for a slow reader
});

/** An error reported by the client: code is a short string, detail what the server said. */
export class RingcastError extends Error {
  constructor(code, message, detail) {
    super(message);
    this.name = 'RingcastError';
    this.code = code;
    this.detail = detail;
  }
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first retry): the ceiling
 * min(cap, base * factor^attempt), and with jitter a uniform draw below it ("full jitter").
 */
export function backoffDelay(attempt, opts = DEFAULTS, random = Math.random) {
  const base = opts.backoffBaseMs ?? DEFAULTS.backoffBaseMs;
  const factor = opts.backoffFactor ?? DEFAULTS.backoffFactor;
  const cap = opts.backoffCapMs ?? DEFAULTS.backoffCapMs;
  const ceiling = Math.min(cap, base * Math.pow(factor, Math.min(attempt, 64)));
  return (opts.jitter ?? true) ? Math.floor(random() * ceiling) : ceiling;
}

function b64urlDecode(s) {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4);
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/**
 * When a token expires, in ms since the epoch, or null if it does not say: ringcast tokens
 * (claims.signature) and JWTs (header.claims.signature) both carry "exp" in seconds.
 */
export function tokenExpiry(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  const claims = parts.length === 3 ? parts[1] : parts[0];
  try {
    const exp = JSON.parse(b64urlDecode(claims)).exp;
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/** The ids of publishes: unique per client and per page load or process. */
function idFactory() {
  const rnd = Math.floor(Math.random() * 2 ** 32).toString(36);
  let n = 0;
  return () => `${rnd}-${Date.now().toString(36)}-${(++n).toString(36)}`;
}

/** A timer that never keeps a Node process alive on its own. */
function timer(fn, ms) {
  const t = setTimeout(fn, ms);
  if (typeof t === 'object' && t && typeof t.unref === 'function') t.unref();
  return t;
}

/** Base URLs: ws(s)://host/ws for WebSocket, http(s)://host for /sse and /publish. */
function endpoints(url) {
  const base = typeof location !== 'undefined' ? location.href : undefined;
  const u = new URL(url, base);
  const secure = u.protocol === 'wss:' || u.protocol === 'https:';
  const path = u.pathname === '/' || u.pathname === '' ? '/ws' : u.pathname;
  return {
    ws: `${secure ? 'wss' : 'ws'}://${u.host}${path}`,
    http: `${secure ? 'https' : 'http'}://${u.host}`,
  };
}

async function loadWebSocket(given) {
  if (given) return given;
  if (typeof globalThis.WebSocket === 'function') return globalThis.WebSocket;
  const name = 'ws'; // a variable: bundlers must not try to resolve it for browsers
  const mod = await import(name);
  return mod.default || mod.WebSocket;
}

/** A topic's subscription: messages as events (on) or by async iteration. */
export class Subscription {
  constructor(client, topic) {
    this.client = client;
    this.topic = topic;
    this.seq = null; // last seq seen (or announced live by an ack); null: none yet
    this.epoch = null; // the epoch seq belongs to
    this.acked = false; // the server answered the current connection's sub
    this.handlers = new Set();
    this.iterators = new Set();
  }

  /** Calls fn({topic, seq, data}) for every new message; returns a function that stops it. */
  on(fn) {
    this.handlers.add(fn);
    return () => this.handlers.delete(fn);
  }

  /** Stops the subscription (and every iterator over it). */
  unsubscribe() {
    this.client.unsubscribe(this.topic);
  }

  [Symbol.asyncIterator]() {
    const it = { buf: [], wait: null, done: false };
    const max = this.client.opts.iteratorBufferMax;
    it.push = (m) => {
      if (it.wait) {
        const w = it.wait;
        it.wait = null;
        w({ value: m, done: false });
        return;
      }
      if (it.buf.length >= max) {
        it.buf.shift();
        this.client._emit('overflow', { kind: 'iterator', topic: this.topic, dropped: 1 });
      }
      it.buf.push(m);
    };
    it.end = () => {
      it.done = true;
      if (it.wait) it.wait({ value: undefined, done: true });
      it.wait = null;
    };
    this.iterators.add(it);
    return {
      next: () => {
        if (it.buf.length) return Promise.resolve({ value: it.buf.shift(), done: false });
        if (it.done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => { it.wait = resolve; });
      },
      return: () => {
        this.iterators.delete(it);
        it.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  _deliver(m) {
    for (const fn of this.handlers) fn(m);
    for (const it of this.iterators) it.push(m);
  }

  _end() {
    for (const it of this.iterators) it.end();
    this.iterators.clear();
  }
}

/**
 * A ringcast client. `url` names the gateway: ws(s)://host:port/ws, or http(s)://host:port
 * (then /ws is used). Events (on/off): 'state', 'message', 'ack', 'gap', 'reset', 'error',
 * 'overflow', 'attempt', 'retry' (the next attempt's delay), 'transport'.
 */
export class Client {
  constructor(url, options = {}) {
    this.opts = { ...DEFAULTS, ...options };
    this.urls = endpoints(url);
    this.state = State.IDLE;
    this.transport = null; // 'websocket' or 'sse' once open
    this.subs = new Map(); // topic -> Subscription
    this.listeners = new Map(); // event -> Set of functions
    this.queue = []; // publishes waiting for a transport, in order
    this.inflight = new Map(); // id -> publish sent over WebSocket, waiting for its ack
    this.nextId = idFactory();
    this.attempt = 0; // failed attempts since the last open
    this.wsFailures = 0; // failed WebSocket upgrades in a row
    this.conn = null; // the current transport (see _openWs, _openSse)
    this.retryTimer = null;
    this.tokenValue = null;
    this.stats = { attempts: 0, opens: 0, duplicates: 0, gaps: 0, resets: 0 };
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    this.listeners.get(event)?.delete(fn);
    return this;
  }

  _emit(event, arg) {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of set) {
      try {
        fn(arg);
      } catch (e) {
        if (event !== 'error') this._emit('error', new RingcastError('listener', e.message, e));
      }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous, transport: this.transport });
  }

  /** Starts connecting (idempotent). Resolves once the first transport is open. */
  connect() {
    if (this.state === State.IDLE) {
      this._setState(State.CONNECTING);
      this._attemptNow();
    }
    if (this.state === State.OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = ({ state }) => {
        if (state === State.OPEN) { this.off('state', done); resolve(); }
        if (state === State.CLOSED) { this.off('state', done); reject(new RingcastError('closed', 'client closed')); }
      };
      this.on('state', done);
    });
  }

  /** Closes for good: the transport, timers, pending publishes (rejected). */
  close() {
    if (this.state === State.CLOSED) return;
    clearTimeout(this.retryTimer);
    this._drop(this.conn);
    this.conn = null;
    this._setState(State.CLOSED);
    const err = new RingcastError('closed', 'client closed');
    for (const p of this.inflight.values()) this._settle(p, err);
    for (const p of this.queue) this._settle(p, err);
    this.inflight.clear();
    this.queue = [];
    for (const s of this.subs.values()) s._end();
  }

  /** Subscribes to topic (once per topic); onMessage is optional. Returns the Subscription. */
  subscribe(topic, onMessage) {
    let sub = this.subs.get(topic);
    if (!sub) {
      sub = new Subscription(this, topic);
      this.subs.set(topic, sub);
      this._subChanged(sub, true);
    }
    if (onMessage) sub.on(onMessage);
    return sub;
  }

  /** Unsubscribes from topic and forgets its position. */
  unsubscribe(topic) {
    const sub = this.subs.get(topic);
    if (!sub) return;
    this.subs.delete(topic);
    sub._end();
    this._subChanged(sub, false);
  }

  /** The resume position of topic: { seq, epoch } (nulls when unknown). */
  position(topic) {
    const s = this.subs.get(topic);
    return { seq: s ? s.seq : null, epoch: s ? s.epoch : null };
  }

  /**
   * Publishes data (any JSON value) to topic. The id (default: generated) makes a retry
   * idempotent within the server's dedup window. Resolves with { seq, epoch, duplicate }.
   * While disconnected the publish waits in a bounded queue; past offlineQueueMax it is
   * rejected with code 'overflow' (and an 'overflow' event), never dropped silently.
   */
  publish(topic, data, { id } = {}) {
    if (this.state === State.CLOSED) {
      return Promise.reject(new RingcastError('closed', 'client closed'));
    }
    return new Promise((resolve, reject) => {
      const p = { topic, data, id: id ?? this.nextId(), resolve, reject, timer: null };
      if (this.conn && this.conn.open) {
        this._sendPublish(p);
        return;
      }
      if (this.queue.length >= this.opts.offlineQueueMax) {
        const err = new RingcastError('overflow', 'offline publish queue full', { topic, id: p.id });
        this._emit('overflow', { kind: 'publish', topic, id: p.id, queued: this.queue.length });
        reject(err);
        return;
      }
      this.queue.push(p);
    });
  }

  _settle(p, err, value) {
    clearTimeout(p.timer);
    if (err) p.reject(err); else p.resolve(value);
  }

  // ---- attempts and backoff ---------------------------------------------------------------
  _attemptNow() {
    if (this.state === State.CLOSED) return;
    this.stats.attempts++;
    const sse = this.opts.transport === 'sse' ||
      (this.opts.transport === 'auto' && this.wsFailures >= this.opts.sseAfterFailures);
    const kind = sse ? 'sse' : 'websocket';
    this._emit('attempt', { attempt: this.attempt, transport: kind, at: Date.now() });
    const conn = this._newConn(kind);
    this.conn = conn;
    const go = sse ? this._openSse(conn) : this._openWs(conn, false);
    go.catch((e) => this._failed(conn, { error: e }));
  }

  /** A transport record; its methods are filled in by _openWs or _openSse. */
  _newConn(kind) {
    const conn = { kind, open: false, dead: false, close: () => {} };
    conn.connectTimer = timer(() => this._failed(conn, {
      error: new RingcastError('timeout', 'connect timeout'),
    }), this.opts.connectTimeoutMs);
    return conn;
  }

  /** A transport failed or closed: schedule the next attempt (once per transport). */
  _failed(conn, why = {}) {
    if (!conn || conn.dead || this.state === State.CLOSED) return;
    conn.dead = true;
    const wasOpen = conn.open;
    this._drop(conn);
    if (conn !== this.conn) return; // a background WebSocket probe
    this.conn = null;
    this.transport = null;
    if (!wasOpen && conn.kind === 'websocket') this.wsFailures++;
    this._requeueInflight();
    if (wasOpen) this.attempt = 0;
    let delay = backoffDelay(this.attempt, this.opts);
    if (why.retryAfterMs != null) delay = why.retryAfterMs + delay;
    else if (why.code === 1012 || why.code === 1013) delay = this.opts.retryLaterMs + delay;
    this._emit('retry', { attempt: this.attempt, delayMs: delay, code: why.code ?? null });
    this.attempt++;
    this._setState(State.RECONNECTING);
    if (why.error) this._emit('error', why.error);
    clearTimeout(this.retryTimer);
    this.retryTimer = timer(() => this._attemptNow(), delay);
  }

  /** Publishes sent without an ack: with a token their id keeps its dedup scope on the new
   * connection (the token's subject), so they are sent again; without one they are rejected
   * ('ack_lost': the server may or may not have sequenced them). */
  _requeueInflight() {
    const retry = [];
    for (const p of this.inflight.values()) {
      if (p.via === 'sse') continue; // a POST /publish answers on its own request
      this.inflight.delete(p.id);
      if (this.opts.token) retry.push(p);
      else this._settle(p, new RingcastError('ack_lost', 'connection lost before the ack', { id: p.id }));
    }
    this.queue = retry.concat(this.queue);
  }

  _drop(conn) {
    if (!conn) return;
    clearTimeout(conn.connectTimer);
    clearInterval(conn.liveness);
    clearTimeout(conn.tokenTimer);
    clearTimeout(conn.probeTimer);
    try { conn.close(); } catch { /* already closed */ }
  }

  async _token() {
    const t = this.opts.token;
    this.tokenValue = typeof t === 'function' ? await t() : t;
    return this.tokenValue;
  }

  /** The transport is up: resubscribe everything, then send what waited, in order. */
  _opened(conn) {
    conn.open = true;
    clearTimeout(conn.connectTimer);
    if (conn.kind === 'websocket') this.wsFailures = 0;
    this.attempt = 0;
    this.stats.opens++;
    this.transport = conn.kind;
    for (const s of this.subs.values()) s.acked = false;
    conn.resubscribe();
    this._watchLiveness(conn);
    this._scheduleTokenRefresh(conn);
    this._setState(State.OPEN);
    this._emit('transport', { transport: conn.kind });
    const waiting = this.queue;
    this.queue = [];
    for (const p of waiting) this._sendPublish(p);
  }

  _watchLiveness(conn) {
    const { pingIntervalMs, pongTimeoutMs } = this.opts;
    if (!pingIntervalMs) return;
    conn.lastRx = Date.now();
    conn.pingSent = 0;
    conn.liveness = setInterval(() => {
      const now = Date.now();
      if (conn.pingSent && now - conn.pingSent >= pongTimeoutMs && conn.lastRx < conn.pingSent) {
        this._failed(conn, { error: new RingcastError('liveness', 'no answer to ping') });
      } else if (!conn.pingSent && now - conn.lastRx >= pingIntervalMs) {
        conn.pingSent = now;
        conn.ping();
      }
    }, Math.max(50, Math.min(pingIntervalMs, pongTimeoutMs) / 4));
    if (typeof conn.liveness === 'object' && conn.liveness.unref) conn.liveness.unref();
  }

  _scheduleTokenRefresh(conn) {
    const exp = tokenExpiry(this.tokenValue);
    if (!exp) return;
    const left = exp - Date.now() - this.opts.tokenRefreshMarginMs;
    clearTimeout(conn.tokenTimer);
    conn.tokenTimer = timer(() => this._refreshToken(conn), Math.max(0, left));
  }

  /**
   * Before exp: a WebSocket sends {"op":"refresh","token":...} with a new token and keeps
   * its subscriptions; an SSE stream (its token is in its URL), a fixed token or a refused
   * refresh reconnect with a fresh token instead (resume makes that seamless).
   */
  async _refreshToken(conn) {
    if (conn !== this.conn || conn.dead) return;
    if (conn.kind !== 'websocket' || typeof this.opts.token !== 'function') {
      this._reopen(conn, 'token refresh');
      return;
    }
    let token;
    try {
      token = await this._token();
    } catch (e) {
      this._emit('error', new RingcastError('token', 'token callback failed', e));
      this._reopen(conn, 'token refresh');
      return;
    }
    if (conn !== this.conn || conn.dead) return;
    conn.refreshing = true;
    conn.send({ op: 'refresh', token });
  }

  /** Replaces an open transport at once (a token renewal, a switch back to WebSocket). */
  _reopen(conn, why) {
    if (conn !== this.conn || this.state === State.CLOSED) return;
    conn.dead = true;
    this._drop(conn);
    this.conn = null;
    this._requeueInflight();
    this._setState(State.RECONNECTING);
    this._emit('transport', { transport: null, reason: why });
    this._attemptNow();
  }

  // ---- incoming protocol messages (both transports) ---------------------------------------
  _onFrame(conn, m) {
    conn.lastRx = Date.now();
    conn.pingSent = 0;
    if (!m || typeof m !== 'object') return;
    const refreshed = m.op === 'ack' && m.of === 'refresh';
    if (conn.refreshing && (refreshed || (m.op === 'error' && m.code === 18))) {
      conn.refreshing = false;
      if (refreshed) this._scheduleTokenRefresh(conn);
      else this._reopen(conn, 'token refresh refused'); // the old token would expire
      return;
    }
    switch (m.op) {
      case 'msg': this._onMsg(m); break;
      case 'ack': this._onAck(m); break;
      case 'gap': this._onGap(m); break;
      case 'reset': this._onReset(m); break;
      case 'error': this._emit('error', new RingcastError(`server_${m.code}`, m.reason, m)); break;
      case 'close': conn.closeCode = m.code; break; // an SSE stream's last event says why
      default: break; // pong, and ops of later versions
    }
  }

  _onMsg(m) {
    const sub = this.subs.get(m.topic);
    if (!sub) return;
    if (sub.seq !== null && m.seq <= sub.seq) {
      this.stats.duplicates++;
      return;
    }
    if (sub.seq !== null && sub.acked && m.seq > sub.seq + 1) {
      // Skipped by the server (slow_consumer_policy drop): the application must resync.
      this._gap(sub, sub.seq + 1, m.seq - 1, sub.epoch, 'skipped');
    }
    sub.seq = m.seq;
    const msg = { topic: m.topic, seq: m.seq, epoch: sub.epoch, data: m.data };
    this._emit('message', msg);
    sub._deliver(msg);
  }

  _onAck(m) {
    if (m.of === 'pub') {
      const p = this.inflight.get(m.id);
      if (!p) return;
      this.inflight.delete(m.id);
      this._settle(p, null, { seq: m.seq ?? null, epoch: m.epoch ?? null, duplicate: m.seq === undefined });
      return;
    }
    const sub = this.subs.get(m.topic);
    if (m.of !== 'sub' || !sub) return;
    if (sub.epoch !== null && m.epoch && m.epoch !== sub.epoch) {
      // Resumed without a position the server could check: its numbering restarted.
      this._reset(sub, m.epoch, m.seq ?? 0);
    }
    sub.epoch = m.epoch ?? sub.epoch;
    sub.seq = Math.max(sub.seq ?? 0, m.seq ?? 0);
    sub.acked = true;
    this._emit('ack', { topic: m.topic, seq: sub.seq, epoch: sub.epoch });
  }

  _onGap(m) {
    const sub = this.subs.get(m.topic);
    if (!sub) return;
    this._gap(sub, m.from, m.to, m.epoch ?? sub.epoch, 'history');
    sub.seq = Math.max(sub.seq ?? 0, m.to);
  }

  _onReset(m) {
    const sub = this.subs.get(m.topic);
    if (!sub) return;
    this._reset(sub, m.epoch, m.seq);
    sub.acked = true;
  }

  _gap(sub, from, to, epoch, cause) {
    this.stats.gaps++;
    this._emit('gap', { topic: sub.topic, from, to, epoch, cause });
  }

  _reset(sub, epoch, seq) {
    this.stats.resets++;
    const previous = { seq: sub.seq, epoch: sub.epoch };
    sub.epoch = epoch;
    sub.seq = seq;
    this._emit('reset', { topic: sub.topic, epoch, seq, previous });
  }

  _subChanged(sub, on) {
    const conn = this.conn;
    if (!conn || !conn.open) return;
    if (on) conn.subscribe(sub); else conn.unsubscribe(sub.topic);
  }

  _sendPublish(p) {
    const conn = this.conn;
    if (this.opts.publishTimeoutMs) {
      p.timer = timer(() => {
        if (!this.inflight.has(p.id)) return;
        this.inflight.delete(p.id);
        p.reject(new RingcastError('timeout', 'no ack for the publish in time', { id: p.id }));
      }, this.opts.publishTimeoutMs);
    }
    conn.publish(p);
  }

  /** The resume fields of a sub: since and epoch once a position is known. */
  _resume(sub) {
    if (sub.seq === null || !sub.epoch) return {};
    return { since: sub.seq, epoch: sub.epoch };
  }

  // ---- WebSocket transport ----------------------------------------------------------------
  async _openWs(conn, probe) {
    const WS = await loadWebSocket(this.opts.WebSocket);
    const token = await this._token();
    if (conn.dead) return;
    const url = token ? `${this.urls.ws}?token=${encodeURIComponent(token)}` : this.urls.ws;
    const ws = new WS(url);
    conn.ws = ws;
    conn.send = (o) => ws.send(JSON.stringify(o));
    conn.close = () => ws.close(1000);
    conn.ping = () => conn.send({ op: 'ping' });
    conn.subscribe = (sub) => conn.send({ op: 'sub', topic: sub.topic, ...this._resume(sub) });
    conn.unsubscribe = (topic) => conn.send({ op: 'unsub', topic });
    conn.resubscribe = () => { for (const s of this.subs.values()) conn.subscribe(s); };
    conn.publish = (p) => {
      p.via = 'websocket';
      this.inflight.set(p.id, p);
      conn.send({ op: 'pub', topic: p.topic, data: p.data, id: p.id });
    };
    let retryAfterMs = null;
    if (typeof ws.on === 'function') {
      // The `ws` package shows the refused upgrade's response: a 503 says when to retry.
      ws.on('unexpected-response', (req, res) => {
        const ra = Number(res.headers['retry-after']);
        if (res.statusCode === 503 && Number.isFinite(ra)) retryAfterMs = ra * 1000;
        conn.status = res.statusCode;
        res.resume();
        ws.terminate();
      });
    }
    ws.onopen = () => {
      if (conn.dead) return;
      if (probe) {
        this._switchTo(conn);
        return;
      }
      this._opened(conn);
    };
    ws.onmessage = (ev) => {
      if (conn.dead || typeof ev.data !== 'string') return;
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      this._onFrame(conn, m);
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => this._failed(conn, { code: ev.code, retryAfterMs });
  }

  /** While on SSE, a WebSocket probe opened: it becomes the transport, SSE goes. */
  _switchTo(conn) {
    const old = this.conn;
    if (old) {
      old.dead = true;
      this._drop(old);
    }
    this.conn = conn;
    this.wsFailures = 0;
    this._opened(conn);
  }

  // ---- Server-Sent Events transport -------------------------------------------------------
  /** The since list of /sse: topic~seq~epoch for every topic with a position. */
  _sseQuery(token) {
    const topics = [...this.subs.keys()];
    const since = [];
    for (const s of this.subs.values()) {
      if (s.seq !== null && s.epoch) since.push(`${s.topic}~${s.seq}~${s.epoch}`);
    }
    let q = `topics=${topics.join(',')}`;
    if (since.length) q += `&since=${since.join(',')}`;
    if (token) q += `&token=${encodeURIComponent(token)}`;
    return q;
  }

  async _openSse(conn) {
    const f = this.opts.fetch || globalThis.fetch;
    if (!f) throw new RingcastError('unsupported', 'no fetch for SSE');
    const ctrl = new AbortController();
    conn.close = () => ctrl.abort();
    const token = await this._token();
    if (conn.dead) return;
    conn.ping = () => {}; // the server's heartbeat comments are the traffic
    conn.resubscribe = () => {};
    // The topic set is part of the stream's URL: a change reopens it (resume covers it).
    conn.subscribe = () => this._reopen(conn, 'topics changed');
    conn.unsubscribe = () => this._reopen(conn, 'topics changed');
    conn.publish = (p) => this._postPublish(f, p);
    if (this.subs.size === 0) {
      conn.ping = () => { conn.lastRx = Date.now(); conn.pingSent = 0; }; // nothing to watch
      this._opened(conn); // nothing to stream: publishing over POST needs no stream
      return;
    }
    const res = await f(`${this.urls.http}/sse?${this._sseQuery(token)}`, {
      headers: { Accept: 'text/event-stream' }, signal: ctrl.signal, cache: 'no-store',
    });
    if (res.status !== 200) {
      const ra = Number(res.headers.get('retry-after'));
      const retryAfterMs = res.status === 503 && Number.isFinite(ra) ? ra * 1000 : null;
      this._failed(conn, { retryAfterMs, error: new RingcastError(`http_${res.status}`, 'SSE refused') });
      return;
    }
    this._opened(conn);
    this._probeLater(conn);
    this._readSse(conn, res.body).catch(() => {})
      .finally(() => this._failed(conn, { code: conn.closeCode }));
  }

  async _readSse(conn, body) {
    const reader = body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    let ev = { data: [], event: '' };
    for (;;) {
      const { value, done } = await reader.read();
      if (done || conn.dead) return;
      conn.lastRx = Date.now();
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
        if (line === '') {
          if (ev.data.length) {
            let m;
            try { m = JSON.parse(ev.data.join('\n')); } catch { m = null; }
            if (m && !conn.dead) this._onFrame(conn, m);
          }
          ev = { data: [], event: '' };
        } else if (line.startsWith('data:')) {
          ev.data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
      }
    }
  }

  async _postPublish(f, p) {
    const headers = { 'Content-Type': 'application/json' };
    if (this.tokenValue) headers.Authorization = `Bearer ${this.tokenValue}`;
    p.via = 'sse';
    this.inflight.set(p.id, p);
    try {
      const res = await f(`${this.urls.http}/publish`, {
        method: 'POST', headers, body: JSON.stringify({ topic: p.topic, data: p.data, id: p.id }),
      });
      const body = await res.json().catch(() => ({}));
      if (!this.inflight.has(p.id)) return;
      this.inflight.delete(p.id);
      if (res.status === 200) {
        this._settle(p, null, { seq: body.seq || null, epoch: null, duplicate: !!body.duplicate });
      } else {
        this._settle(p, new RingcastError(`http_${res.status}`, 'publish refused', body));
      }
    } catch (e) {
      // The request may or may not have reached the server: the same id is safe to resend
      // (POST /publish ids share the backend's dedup scope).
      if (!this.inflight.has(p.id)) return;
      this.inflight.delete(p.id);
      clearTimeout(p.timer);
      this.queue.push(p);
    }
  }

  /** While on SSE, try WebSocket every wsRetryMs; the first probe that opens takes over. */
  _probeLater(conn) {
    if (this.opts.transport !== 'auto' || !this.opts.wsRetryMs) return;
    conn.probeTimer = timer(() => {
      if (conn !== this.conn || conn.dead) return;
      const probe = this._newConn('websocket');
      this._openWs(probe, true).catch(() => this._failed(probe, {}));
      this._probeLater(conn);
    }, this.opts.wsRetryMs);
  }
}

/** Creates a client and starts connecting: `const rc = connect('wss://host/ws', opts)`. */
export function connect(url, options) {
  const c = new Client(url, options);
  c.connect().catch(() => {});
  return c;
}

export default { Client, connect, State, RingcastError, backoffDelay, tokenExpiry };
