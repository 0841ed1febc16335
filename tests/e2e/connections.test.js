// MAX_CONNECTIONS: past the limit a connection gets a 503 in the API's error
// shape (with Retry-After) and is closed; the gateway serves again as soon
// as connections go away. /healthz reports the open connections.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const net = require('net');
const { startSim, startGateway, waitFor } = require('./lib');

const MAX = 6;
let sim;
let gw;

before(async () => {
  sim = await startSim();
  gw = await startGateway(sim, { env: { MAX_CONNECTIONS: String(MAX) } });
});

after(async () => {
  if (gw) await gw.stop();
  if (sim) await sim.stop();
});

// One keep-alive GET /healthz on a new socket; resolves with the socket and
// the first response (status, headers, body), or the close if none came.
function healthOnNewSocket() {
  return new Promise((resolve, reject) => {
    const sock = net.connect(gw.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let closed = false;
    const timer = setTimeout(() => reject(new Error(`no answer in 5 s: ${JSON.stringify(buf.toString())}`)), 5000);
    const tryParse = () => {
      const s = buf.toString('latin1');
      const he = s.indexOf('\r\n\r\n');
      if (he < 0) return;
      const head = s.slice(0, he);
      const m = /content-length: (\d+)/i.exec(head);
      if (!m || s.length < he + 4 + Number(m[1])) return;
      clearTimeout(timer);
      resolve({ sock, status: Number(head.split(' ')[1]), head, body: s.slice(he + 4, he + 4 + Number(m[1])),
        closed: () => closed });
    };
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); tryParse(); });
    sock.on('close', () => { closed = true; });
    sock.on('error', () => {});
    sock.on('connect', () => sock.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
  });
}

test(`past MAX_CONNECTIONS=${MAX} a connection gets a 503 error object and is closed; freed slots serve again`, async () => {
  // A kept-alive connection of the start-up check may still count: MAX - 2 .. MAX.
  const held = [];
  let refused = null;
  for (let i = 0; i < MAX + 2 && !refused; i++) {
    const r = await healthOnNewSocket();
    if (r.status === 200) {
      held.push(r.sock);
      assert.ok(JSON.parse(r.body).connections <= MAX, r.body);
    } else {
      refused = r;
    }
  }
  assert.ok(refused, `no refusal after ${held.length} connections`);
  assert.ok(held.length >= MAX - 2 && held.length <= MAX, `refused after ${held.length} open connections`);
  assert.equal(refused.status, 503);
  assert.match(refused.head, /\r\nretry-after: 1\r\n/i);
  assert.match(refused.head, /\r\ncontent-type: application\/json/i);
  const e = JSON.parse(refused.body).error;
  assert.equal(e.code, 'overloaded');
  assert.match(e.message, /MAX_CONNECTIONS/);
  await waitFor(() => refused.closed(), { timeoutMs: 5000, what: 'the refused connection to close' });
  refused.sock.destroy();

  for (const s of held) s.destroy();
  await waitFor(async () => {
    const r = await healthOnNewSocket();
    r.sock.destroy();
    return r.status === 200 && JSON.parse(r.body).connections <= 2;
  }, { timeoutMs: 5000, what: 'the slots to be free again' });
  const c = await gw.client().chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'after the limit' }] });
  assert.ok(c.choices[0].message.content.includes('after the limit'));
});
