// A small stand-in for traefik/whoami, the upstream of the end-to-end suite and the demo.
//
// It is used when the real whoami cannot be installed (the Go module proxy reachable from these
// machines refuses github.com/traefik/whoami). Same command line (`--port N`) and the same kind
// of plain-text answer, so the checks work against either:
//
//   Hostname: <host name>
//   IP: 127.0.0.1
//   RemoteAddr: 127.0.0.1:54321
//   GET /path?query HTTP/1.1
//   Host: fa.localhost:8080
//   <every request header as received, one per line, in the received spelling and order>
//
// GET /echo with a websocket upgrade echoes every message back (text stays text, binary stays
// binary). GET /health answers 200 "ok" for readiness checks.
//
// Usage: node tests/e2e/whoami.mjs --port 8081 [--host 127.0.0.1]
import http from 'node:http';
import os from 'node:os';
import { WebSocketServer } from 'ws';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq ? eq.slice(name.length + 3) : fallback;
}

const port = Number(arg('port', process.env.WHOAMI_PORT || 80));
const host = arg('host', '127.0.0.1');

function describe(req) {
  const lines = [
    `Hostname: ${os.hostname()}`,
    `IP: ${req.socket.localAddress}`,
    `RemoteAddr: ${req.socket.remoteAddress}:${req.socket.remotePort}`,
    `${req.method} ${req.url} HTTP/${req.httpVersion}`,
  ];
  // rawHeaders keeps names as the client spelled them (X_Forwarded_User stays itself), which is
  // what an upstream that reads raw headers would see.
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  }
  return `${lines.join('\n')}\n`;
}

const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  // Drain any body so keep-alive connections stay usable.
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(describe(req));
  });
});

const wss = new WebSocketServer({ noServer: true });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.on('upgrade', (req, socket, head) => {
  const path = new URL(req.url, 'http://upstream').pathname;
  if (path !== '/echo') {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

server.listen(port, host, () => {
  console.log(`whoami stand-in listening on http://${host}:${server.address().port}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
