// Reference stand-in for ringcast's /echo contract, built on Node `ws`. It exists only to
// validate the integration tests themselves: RINGCAST_REF=1 makes the harnesses start this
// instead of ringcast. It takes ringcast's command line and implements as much of the contract
// as `ws` allows; what it cannot do (fail-fast UTF-8 mid-fragment, a frame limit separate from
// the message limit, SO_REUSEPORT shards) is skipped by the tests under RINGCAST_REF=1.
//
// Usage: node echo-server.mjs --port P --address A --shards N [--key=value ...]
import http from 'node:http';
import { WebSocketServer } from 'ws';

const config = {
  port: 8080,
  address: '127.0.0.1',
  shards: 1,
  handshake_timeout_ms: 10000,
  ping_interval_ms: 30000,
  idle_timeout_ms: 120000,
  close_timeout_ms: 5000,
  drain_timeout_ms: 10000,
  header_bytes_max: 8192,
  echo_frame_bytes_max: 16777216,
  echo_message_bytes_max: 16777216,
  origins: '',
  subprotocols: '',
};

function parseArgs(argv) {
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z_]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`bad argument ${argv[i]}`);
    const key = m[1];
    const value = m[2] !== undefined ? m[2] : argv[++i];
    if (!(key in config)) continue; // other ringcast keys are irrelevant here
    config[key] = typeof config[key] === 'number' ? Number(value) : value;
  }
}
parseArgs(process.argv.slice(2));

const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
const origins = list(config.origins);
const subprotocols = list(config.subprotocols);

function respond(socket, status, extra = {}) {
  const body = `${status} ${http.STATUS_CODES[status]}\n`;
  const headers = {
    'Content-Type': 'text/plain',
    'Content-Length': Buffer.byteLength(body),
    Connection: 'close',
    ...extra,
  };
  const head = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${head}\r\n${body}`);
}

function tokens(value) {
  return (value || '').toLowerCase().split(',').map((x) => x.trim());
}

// Returns the HTTP status that rejects this upgrade request, or 0 to accept it.
function validateUpgrade(req) {
  const path = req.url.split('?')[0];
  if (path !== '/echo') return [404];
  if (req.method !== 'GET') return [405];
  if (req.httpVersion !== '1.1') return [400];
  if (!req.headers.host) return [400];
  if (!tokens(req.headers.upgrade).includes('websocket')) return [426];
  if (!tokens(req.headers.connection).includes('upgrade')) return [400];
  if (req.headers['sec-websocket-version'] !== '13') {
    return [426, { 'Sec-WebSocket-Version': '13' }];
  }
  const key = req.headers['sec-websocket-key'] || '';
  if (!/^[A-Za-z0-9+/]{22}==$/.test(key) || Buffer.from(key, 'base64').length !== 16) return [400];
  const origin = req.headers.origin;
  if (origins.length && origin !== undefined && !origins.includes(origin)) return [403];
  return [0];
}

const server = http.createServer({
  maxHeaderSize: config.header_bytes_max,
  requireHostHeader: false,
});
const wss = new WebSocketServer({
  noServer: true,
  maxPayload: config.echo_message_bytes_max,
  closeTimeout: config.close_timeout_ms,
  perMessageDeflate: false,
  handleProtocols(offered) {
    for (const p of subprotocols) if (offered.has(p)) return p;
    return false;
  },
});

const handshaking = new Set();
let draining = false;

server.on('connection', (socket) => {
  socket.setNoDelay(true);
  handshaking.add(socket);
  socket.hsTimer = setTimeout(() => socket.destroy(), config.handshake_timeout_ms);
  socket.on('close', () => {
    clearTimeout(socket.hsTimer);
    handshaking.delete(socket);
  });
});

server.on('clientError', (err, socket) => {
  if (!socket.writable) return socket.destroy();
  respond(socket, err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400);
});

server.on('request', (req, res) => {
  const path = req.url.split('?')[0];
  let status = 404;
  if (req.httpVersion === '1.1' && !req.headers.host) status = 400;
  else if (path === '/health') status = 200;
  else if (path === '/echo') status = 426;
  const body = status === 200 ? 'ok\n' : `${status} ${http.STATUS_CODES[status]}\n`;
  const headers = {
    'Content-Type': 'text/plain',
    'Content-Length': body.length,
    Connection: 'close',
  };
  if (status === 426) headers.Upgrade = 'websocket';
  res.writeHead(status, headers);
  res.end(body);
});

server.on('upgrade', (req, socket, head) => {
  const [status, extra] = validateUpgrade(req);
  if (draining) return socket.destroy();
  if (status) return respond(socket, status, extra);
  clearTimeout(socket.hsTimer);
  handshaking.delete(socket);
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

wss.on('connection', (ws) => {
  let last = Date.now();
  const touch = () => { last = Date.now(); };
  ws.on('message', (data, isBinary) => {
    touch();
    ws.send(data, { binary: isBinary });
  });
  ws.on('ping', touch);
  ws.on('pong', touch);
  ws.on('error', () => {});
  const timers = [];
  if (config.ping_interval_ms > 0) {
    timers.push(setInterval(() => ws.ping(Buffer.from('ref')), config.ping_interval_ms));
  }
  if (config.idle_timeout_ms > 0) {
    const step = Math.max(10, Math.min(1000, config.idle_timeout_ms / 10));
    timers.push(setInterval(() => {
      if (Date.now() - last > config.idle_timeout_ms) ws.terminate();
    }, step));
  }
  ws.on('close', () => timers.forEach(clearInterval));
});

function drain() {
  if (draining) return;
  draining = true;
  server.close();
  for (const socket of handshaking) socket.destroy();
  for (const ws of wss.clients) ws.close(1001, 'going away');
  const deadline = setTimeout(() => {
    for (const ws of wss.clients) ws.terminate();
    process.exit(0);
  }, config.drain_timeout_ms);
  const poll = setInterval(() => {
    if (wss.clients.size === 0) {
      clearInterval(poll);
      clearTimeout(deadline);
      process.exit(0);
    }
  }, 10);
}
process.on('SIGTERM', drain);
process.on('SIGINT', drain);

server.listen(config.port, config.address, () => {
  process.stderr.write(
    `ringcast: ready on ${config.address}:${config.port} (${config.shards} shards)\n`);
});
