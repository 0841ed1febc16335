// ws_peer.js - a small WebSocket/HTTP peer for tests/unit/test_ws.c.
//
// Usage: node tests/unit/ws_peer.js [--tls CERT KEY]
// Listens on 127.0.0.1 on an ephemeral port, prints the port as one line on
// stdout, and exits when stdin closes or on SIGTERM.
//
// Paths (query parameters in brackets):
//   /echo            echoes every text message
//   /after101        raw upgrade: the 101 and two text frames in one write
//   /big[n]          sends one text message of n bytes ('a'..'z' repeating)
//   /frag            sends "hel"+"lo "+"world" as 3 fragments, a ping between
//   /ping[n]         pings with "p1" (or n pattern bytes); answers the pong
//                    with text "pong:<data>"
//   /close[code]     closes with code and reason "bye"
//   /lastclose       sends the code of the last close frame a client sent
//                    to /close, /fragbig or /proto, as text
//   /fragbig[n,k]    one text message of n*k pattern bytes in k fragments
//   /mixed           a binary message in 2 fragments with a ping between,
//                    an empty text message, then text "after"
//   /proto[case]     raw frames that break RFC 6455 (see protoFrames)
//   /drop            sends half a frame, then drops the TCP connection
//   /burst[n]        sends n messages "m0".."m<n-1>"
//   /fragburst[n]    the same, each as "m" + "<i>" with a ping between
//   /auth            refuses the upgrade with 401
//   /e500            refuses the upgrade with 500
//   /silent          accepts the TCP connection and never answers
//   /binary          sends a binary message, then text "after-binary"
'use strict';
const path = require('path');
const fs = require('fs');
const http = require('http');
const https = require('https');
const crypto = require('crypto');
const WebSocket = require(path.join(__dirname, '../sim/node_modules/ws'));

const args = process.argv.slice(2);
let server;
if (args[0] === '--tls') {
  server = https.createServer({ cert: fs.readFileSync(args[1]), key: fs.readFileSync(args[2]) });
} else {
  server = http.createServer();
}
server.on('request', (req, res) => {
  res.writeHead(404);
  res.end();
});

const wss = new WebSocket.Server({ noServer: true, perMessageDeflate: false, maxPayload: 64 << 20 });
const held = new Set(); // sockets kept open on purpose (/silent)
let lastClose = null; // code of the last close frame a client sent us

function noteClose(ws) {
  lastClose = null;
  ws.on('close', (code) => { lastClose = code; });
}

function sendLastClose(ws, tries) {
  if (lastClose !== null || tries === 0) {
    ws.send(String(lastClose));
    return;
  }
  setTimeout(() => sendLastClose(ws, tries - 1), 10);
}

function textOf(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = 97 + (i % 26);
  return b.toString();
}

function frame(opcode, payload, fin = true) {
  const p = Buffer.from(payload);
  let hdr;
  if (p.length < 126) {
    hdr = Buffer.from([(fin ? 0x80 : 0) | opcode, p.length]);
  } else {
    hdr = Buffer.alloc(4);
    hdr[0] = (fin ? 0x80 : 0) | opcode;
    hdr[1] = 126;
    hdr.writeUInt16BE(p.length, 2);
  }
  return Buffer.concat([hdr, p]);
}

// Each breaks RFC 6455 in one way; the client must fail with 1002.
function protoFrames(c) {
  switch (c) {
    case 'cont': return frame(0, 'x');                                   // continues nothing
    case 'newmsg': return Buffer.concat([frame(1, 'a', false), frame(1, 'b')]);
    case 'rsv': return Buffer.from([0xc1, 1, 0x78]);                     // RSV1, no extension
    case 'opcode': return frame(3, 'x');                                 // reserved opcode
    case 'ctlfrag': return frame(9, 'p', false);                         // fragmented ping
    case 'ctlbig': return frame(9, 'p'.repeat(126));                     // ping over 125 bytes
    case 'masked': return Buffer.from([0x81, 0x81, 1, 2, 3, 4, 0x78 ^ 1]);
    case 'close1': return frame(8, Buffer.from([0x0f]));                 // 1-byte close payload (0x0f.. would read as a valid code)
    case 'badcode': return frame(8, Buffer.from([0x03, 0xed]));          // 1005 on the wire
    default: return frame(1, 'unknown case');
  }
}

function rawUpgrade(req, socket) {
  const key = req.headers['sec-websocket-key'];
  const accept = crypto.createHash('sha1')
    .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  const head = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n' +
    'Connection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + '\r\n\r\n';
  socket.write(Buffer.concat([Buffer.from(head), frame(1, 'early'), frame(1, 'second')]));
  socket.on('data', () => {});
  socket.on('error', () => {});
}

function onConnection(ws, url) {
  const q = url.searchParams;
  ws.on('error', () => {});
  switch (url.pathname) {
    case '/echo':
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      break;
    case '/echoslow': // reads nothing for 300 ms, so the client's socket fills
      ws._socket.pause();
      setTimeout(() => ws._socket.resume(), 300);
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      break;
    case '/big':
      ws.send(textOf(Number(q.get('n') || 1048576)));
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      break;
    case '/frag':
      ws.send('hel', { fin: false });
      ws.ping('x');
      ws.send('lo ', { fin: false });
      ws.send('world', { fin: true });
      break;
    case '/ping':
      ws.on('pong', (data) => ws.send('pong:' + data.toString()));
      ws.ping(q.get('n') ? textOf(Number(q.get('n'))) : 'p1');
      break;
    case '/close':
      noteClose(ws);
      ws.close(Number(q.get('code') || 1000), 'bye');
      break;
    case '/lastclose':
      sendLastClose(ws, 100);
      break;
    case '/fragbig': {
      const n = Number(q.get('n') || 10000), k = Number(q.get('k') || 3);
      const all = textOf(n * k);
      noteClose(ws);
      for (let i = 0; i < k; i++)
        ws.send(all.slice(i * n, (i + 1) * n), { fin: i === k - 1 });
      break;
    }
    case '/mixed':
      ws.send(Buffer.from([1, 2]), { binary: true, fin: false });
      ws.ping('m');
      ws.send(Buffer.from([3]), { binary: true, fin: true });
      ws.send('');
      ws.send('after');
      break;
    case '/proto':
      noteClose(ws);
      ws._socket.write(protoFrames(q.get('case')));
      break;
    case '/drop':
      ws._socket.write(Buffer.from([0x81, 100]));
      ws._socket.write('x'.repeat(10), () => ws._socket.destroy());
      break;
    case '/burst': {
      const n = Number(q.get('n') || 10);
      for (let i = 0; i < n; i++) ws.send('m' + i);
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      break;
    }
    case '/fragburst': {
      const n = Number(q.get('n') || 10);
      for (let i = 0; i < n; i++) {
        ws.send('m', { fin: false });
        ws.ping(String(i));
        ws.send(String(i), { fin: true });
      }
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      break;
    }
    case '/binary':
      ws.send(Buffer.from([1, 2, 3]), { binary: true });
      ws.send('after-binary');
      break;
    default:
      ws.close(1008, 'unknown path');
  }
}

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  socket.on('error', () => {});
  if (url.pathname === '/auth') {
    socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  if (url.pathname === '/e500') {
    socket.end('HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  if (url.pathname === '/silent') {
    held.add(socket);
    socket.on('close', () => held.delete(socket));
    return;
  }
  if (url.pathname === '/after101') {
    rawUpgrade(req, socket);
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, url));
});

// Plain TCP connections that never send a request (handshake deadline
// test) are simply never answered.
server.keepAliveTimeout = 0;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(server.address().port + '\n');
});

function quit() {
  process.exit(0);
}
process.stdin.on('end', quit);
process.stdin.on('close', quit);
process.stdin.resume();
process.on('SIGTERM', quit);
