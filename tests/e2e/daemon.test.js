// The process: flags, configuration errors, signals, reload, logs, CORS,
// keep-alive comments and deadlines.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { startSim, startGateway, collectStream, readSSE, waitFor, GW_BIN } = require('./lib');

let sim;
test.before(async () => { sim = await startSim(['--port', '0']); });
test.after(async () => { if (sim) await sim.stop(); });

function run(args, env = {}) {
  return spawnSync(GW_BIN, args, { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8', cwd: fs.mkdtempSync('/tmp/el2a-cfg-') });
}

test('--version, --help and --check-config', () => {
  const v = run(['--version']);
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^enginelabs-2api \d+\.\d+\.\d+/);
  const h = run(['--help']);
  assert.equal(h.status, 0);
  for (const k of ['API_MASTER_KEY', 'CLERK_COOKIE', 'ENGINE_FLOW', 'STORE_URL', '--shutdown-timeout']) assert.ok(h.stdout.includes(k), k);
  const ok = run(['--check-config'], { API_MASTER_KEY: 'sk-abc-secret', CLERK_COOKIE: 'cookie-secret-value' });
  assert.equal(ok.status, 0);
  assert.match(ok.stdout, /API_MASTER_KEY=<set, 13 bytes>/);
  assert.ok(!ok.stdout.includes('sk-abc-secret') && !ok.stdout.includes('cookie-secret-value'));
  const bad = run(['--check-config', '--port=70000']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /PORT .*70000.*out of range/);
  const unknown = run(['--frobnicate']);
  assert.equal(unknown.status, 2);
});

test('refuses to listen beyond loopback without a key', () => {
  const r = run([], { HOST: '0.0.0.0', PORT: '18089' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /API_MASTER_KEY/);
});

test('SIGTERM lets a live stream finish, then exits 0', async () => {
  const gw = await startGateway(sim, { env: { SHUTDOWN_TIMEOUT: '20' } });
  const stream = await gw.client().chat.completions.create({ model: 'gpt-5.4', stream: true,
    messages: [{ role: 'user', content: '[pieces=10] [slow=100] drain me' }] });
  const reading = collectStream(stream);
  await waitFor(async () => (await sim.stats()).wsOpen > 0, { what: 'the stream to start' });
  gw.proc.kill('SIGTERM');
  const got = await reading;
  assert.equal(got.content, Array.from({ length: 10 }, (_, i) => `w${i + 1}`).join(' '));
  const exit = await gw.exited;
  assert.equal(exit.code, 0);
});

// One request on an open connection; resolves with the raw response text
// once the gateway closes the connection or a full response is in.
function requestOn(sock, text) {
  return new Promise((resolve) => {
    let buf = '';
    const done = () => { sock.removeAllListeners('data'); resolve(buf); };
    if (sock.destroyed) return done();
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const he = buf.indexOf('\r\n\r\n');
      const m = /content-length: (\d+)/i.exec(buf);
      if (he >= 0 && m && buf.length >= he + 4 + Number(m[1])) done();
    });
    sock.once('close', done);
    sock.write(text);
  });
}

test('during the drain new connections are refused and a kept-alive one gets 503 shutting_down, then closes', { timeout: 60000 }, async () => {
  const net = require('node:net');
  const gw = await startGateway(sim, { env: { SHUTDOWN_TIMEOUT: '20' } });
  const kept = net.connect(gw.port, '127.0.0.1');
  kept.on('error', () => {});
  await new Promise((r) => kept.once('connect', r));
  const auth = `Authorization: Bearer ${gw.key}\r\n`;
  const first = await requestOn(kept, `GET /v1/models HTTP/1.1\r\nHost: x\r\n${auth}\r\n`);
  assert.match(first, /^HTTP\/1\.1 200 /);
  const stream = await gw.client().chat.completions.create({ model: 'gpt-5.4', stream: true,
    messages: [{ role: 'user', content: '[pieces=60] [slow=100] keep the drain open' }] });
  const reading = collectStream(stream);
  await waitFor(async () => (await sim.stats()).wsOpen > 0, { what: 'the stream to start' });
  gw.proc.kill('SIGTERM');
  const refused = () => new Promise((resolve) => {
    const s = net.connect(gw.port, '127.0.0.1');
    const timer = setTimeout(() => { s.destroy(); resolve(false); }, 1000);
    s.once('error', (e) => { clearTimeout(timer); resolve(e.code === 'ECONNREFUSED'); });
    s.once('connect', () => { clearTimeout(timer); s.destroy(); resolve(false); });
  });
  await waitFor(refused, { timeoutMs: 5000, what: 'new connections to be refused' });
  assert.equal(gw.proc.exitCode, null, 'refused while still draining, not because the process is gone');
  const second = await requestOn(kept, `GET /v1/models HTTP/1.1\r\nHost: x\r\n${auth}\r\n`);
  assert.match(second, /^HTTP\/1\.1 503 /);
  assert.match(second, /\r\nConnection: close\r\n/i);
  assert.equal(JSON.parse(second.slice(second.indexOf('\r\n\r\n') + 4)).error.code, 'shutting_down');
  await waitFor(() => kept.destroyed || kept.readyState === 'closed' || kept.readableEnded, { timeoutMs: 5000, what: 'the kept-alive connection to close' });
  const got = await reading;
  assert.equal(got.content, Array.from({ length: 60 }, (_, i) => `w${i + 1}`).join(' '));
  assert.equal((await gw.exited).code, 0);
});

test('a stream still open at the drain deadline ends with an error event and [DONE]; exit 0', async () => {
  const gw = await startGateway(sim, { env: { SHUTDOWN_TIMEOUT: '1' } });
  const res = await gw.fetch('/v1/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-5.4', stream: true, messages: [{ role: 'user', content: '[pieces=100] [slow=200] long' }] }) });
  await waitFor(async () => (await sim.stats()).wsOpen > 0, { what: 'the stream to start' });
  const t0 = Date.now();
  gw.proc.kill('SIGTERM');
  const { events } = await readSSE(res);
  const data = events.filter((e) => e.data).map((e) => e.data);
  assert.equal(data.at(-1), '[DONE]');
  const last = JSON.parse(data.at(-2));
  assert.match(last.error.message, /shutting down/);
  const exit = await gw.exited;
  assert.equal(exit.code, 0);
  assert.ok(Date.now() - t0 < 5000, 'bounded by SHUTDOWN_TIMEOUT');
  await waitFor(async () => (await sim.stats()).wsOpen === 0, { what: 'the upstream socket to close' });
});

test('SIGHUP reloads keys from .env without dropping a stream', async () => {
  const dir = fs.mkdtempSync('/tmp/el2a-hup-');
  fs.writeFileSync(path.join(dir, '.env'), 'API_MASTER_KEY=sk-old\n');
  const gw = await startGateway(sim, { dir, key: 'sk-old', env: { API_MASTER_KEY: undefined } });
  try {
    const stream = await gw.client().chat.completions.create({ model: 'gpt-5.4', stream: true,
      messages: [{ role: 'user', content: '[pieces=8] [slow=100] across a reload' }] });
    const reading = collectStream(stream);
    fs.writeFileSync(path.join(dir, '.env'), 'API_MASTER_KEY=sk-new\nLOG_LEVEL=info\n');
    gw.proc.kill('SIGHUP');
    await waitFor(async () => /settings reloaded/.test(gw.logs()), { what: 'the reload' });
    const got = await reading;
    assert.equal(got.content, 'w1 w2 w3 w4 w5 w6 w7 w8');
    const r1 = await fetch(`${gw.base}/v1/models`, { headers: { Authorization: 'Bearer sk-new' } });
    assert.equal(r1.status, 200);
    const r2 = await fetch(`${gw.base}/v1/models`, { headers: { Authorization: 'Bearer sk-old' } });
    assert.equal(r2.status, 401);
  } finally {
    await gw.stop();
  }
});

test('JSON logs are one object per line, with request ids, and never hold a secret', async () => {
  const gw = await startGateway(sim, { env: { LOG_FORMAT: 'json' } });
  try {
    const r = await gw.client().chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'log me' }] });
    assert.ok(r.choices[0].message.content);
  } finally {
    await gw.stop();
  }
  const lines = gw.logs().trim().split('\n');
  const objs = lines.map((l) => JSON.parse(l));
  assert.ok(objs.some((o) => o.rid && /chat/.test(o.msg)));
  const all = gw.logs();
  assert.ok(!all.includes(gw.key), 'no client key in the log');
  assert.ok(!all.includes('sim_client_default'), 'no cookie in the log');
  assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(all), 'no JWT in the log');
});

test('CORS preflight and headers for browser clients', async () => {
  const gw = await startGateway(sim);
  try {
    const pre = await fetch(`${gw.base}/v1/chat/completions`, { method: 'OPTIONS',
      headers: { Origin: 'https://chat.example', 'Access-Control-Request-Method': 'POST' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    assert.match(pre.headers.get('access-control-allow-headers'), /Authorization/);
    const r = await gw.fetch('/v1/models', { headers: { Origin: 'https://chat.example' } });
    assert.equal(r.headers.get('access-control-allow-origin'), '*');
  } finally {
    await gw.stop();
  }
});

test('keep-alive comments flow while the upstream is silent', async () => {
  const gw = await startGateway(sim, { env: { KEEPALIVE_INTERVAL: '1' } });
  try {
    const res = await gw.fetch('/v1/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5.4', stream: true, messages: [{ role: 'user', content: '[pieces=2] [slow=2500] quiet' }] }) });
    const { events } = await readSSE(res);
    assert.ok(events.some((e) => e.comment === ': keep-alive'), 'a keep-alive comment was sent');
    assert.equal(events.filter((e) => e.data).at(-1).data, '[DONE]');
  } finally {
    await gw.stop();
  }
});

test('deadlines: no first piece, and silence mid-reply, end in 504 / an error event', async () => {
  const gw = await startGateway(sim, { env: { FIRST_PIECE_TIMEOUT: '1', IDLE_TIMEOUT: '1' } });
  try {
    const c = gw.client();
    await sim.faults([{ kind: 'ws_stall', after: 0 }]);
    const t0 = Date.now();
    await assert.rejects(c.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'stall at once' }] }),
      (e) => e.status === 504);
    assert.ok(Date.now() - t0 < 4000);
    await sim.faults([{ kind: 'ws_stall', after: 2 }]);
    const s = await c.chat.completions.create({ model: 'gpt-5.4', stream: true,
      messages: [{ role: 'user', content: '[pieces=10] stall later' }] });
    await assert.rejects(collectStream(s), /idle|stopped/i);
  } finally {
    await gw.stop();
  }
});

test('RATE_LIMIT_RPM: a key over its limit gets 429 with Retry-After; other keys go on', async () => {
  const gw = await startGateway(sim, { key: 'sk-a', env: { API_MASTER_KEY: 'sk-a,sk-b', RATE_LIMIT_RPM: '3' } });
  try {
    const a = gw.client({ apiKey: 'sk-a' });
    const b = gw.client({ apiKey: 'sk-b' });
    const ask = (c) => c.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'rl' }] });
    // The window is a calendar minute: start well inside one.
    await waitFor(() => new Date().getSeconds() < 50, { timeoutMs: 12000, intervalMs: 200, what: 'a fresh minute' });
    const results = await Promise.allSettled([ask(a), ask(a), ask(a), ask(a)]);
    const refused = results.filter((r) => r.status === 'rejected');
    assert.equal(refused.length, 1);
    const e = refused[0].reason;
    assert.equal(e.status, 429);
    assert.equal(e.error.code, 'rate_limit_exceeded');
    const ra = Number(e.headers.get('retry-after'));
    assert.ok(ra >= 1 && ra <= 60);
    const rb = await ask(b);
    assert.ok(rb.choices[0].message.content);
  } finally {
    await gw.stop();
  }
});
