// Node `ws` peer for ringcast's perf suite: the same surface as ringcast, so one bench command
// measures both. Endpoints:
//   ws://HOST:PORT/echo   echoes every message back with its type (text/binary)
//   ws://HOST:PORT/<any>  ringcast's pub/sub protocol: {"op":"sub","topic":T} subscribes,
//                         {"op":"pub","topic":T,"data":D} publishes; subscribers get
//                         {"op":"msg","topic":T,"seq":N,"data":D}, seq per topic from 1
//   POST /publish         body {"topic":T,"data":D} (or a pub envelope) -> {"ok":true,"seq":N}
//   GET /health           200 ok
// Usage: node perf/peers/node-ws-echo.mjs [--port P] [--host H] [--cert C --key K]; logs "node-ws: ready on H:P"
// on stderr once listening (P may be 0: the kernel's choice is printed).
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { WebSocketServer } from '../../tests/node_modules/ws/wrapper.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const host = opt('--host', '127.0.0.1');
const port = Number(opt('--port', '8080'));

const topics = new Map(); // topic -> { seq, subs: Set<ws> }

function topicOf(name) {
  let t = topics.get(name);
  if (!t) {
    t = { seq: 0, subs: new Set() };
    topics.set(name, t);
  }
  return t;
}

// Builds the envelope once and hands the same string to every subscriber.
function publish(name, data) {
  const t = topicOf(name);
  t.seq += 1;
  const frame = JSON.stringify({ op: 'msg', topic: name, seq: t.seq, data });
  for (const ws of t.subs) ws.send(frame);
  return t.seq;
}

// --cert C --key K: wss:// and https:// (Node's TLS) instead of ws:// and http://.
const cert = opt('--cert', '');
const tlsOpts = cert ? { cert: fs.readFileSync(cert), key: fs.readFileSync(opt('--key', '')) } : null;

const handler = (req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  if (req.method === 'POST' && req.url === '/publish') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let seq;
      try {
        const m = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        seq = publish(String(m.topic), m.data);
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end('{"ok":false}');
        return;
      }
      const body = JSON.stringify({ ok: true, seq });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
    return;
  }
  res.writeHead(404);
  res.end();
};
const server = tlsOpts ? https.createServer(tlsOpts, handler) : http.createServer(handler);

const echo = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const pubsub = new WebSocketServer({ noServer: true, perMessageDeflate: false });

echo.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

pubsub.on('connection', (ws) => {
  const mine = new Set();
  ws.on('message', (data) => {
    let m;
    try {
      m = JSON.parse(data.toString('utf8'));
    } catch {
      ws.close(1007, 'bad json');
      return;
    }
    if (m.op === 'sub') {
      topicOf(String(m.topic)).subs.add(ws);
      mine.add(String(m.topic));
    } else if (m.op === 'pub') {
      publish(String(m.topic), m.data);
    }
  });
  ws.on('close', () => {
    for (const name of mine) topicOf(name).subs.delete(ws);
  });
});

server.on('upgrade', (req, socket, head) => {
  const wss = req.url === '/echo' ? echo : pubsub;
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

server.listen({ host, port, backlog: 65535 }, () => {
  const a = server.address();
  process.stderr.write(`node-ws: ready on ${a.address}:${a.port}\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
