'use strict';
// Process behaviour: the listening line, loopback only, quiet stderr, signals, control API errors, fan-out load.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { startSim, waitFor } = require('../harness.js');

const SIM = path.join(__dirname, '..', 'sim.js');

function run(args) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [SIM, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => resolve({ code, out, err }));
  });
}

test('refuses non-loopback hosts and unknown options', async () => {
  let r = await run(['--host', '0.0.0.0']);
  assert.equal(r.code, 2);
  assert.equal(r.out, '');
  assert.match(r.err, /loopback/);
  r = await run(['--bogus', '1']);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown option --bogus/);
  r = await run(['--flow', '2024']);
  assert.equal(r.code, 2);
});

test('one listening line on stdout, quiet stderr, clean exit on SIGTERM and SIGINT', async () => {
  const sim = await startSim(['--port', '0']);
  assert.ok(sim.port > 0);
  const c = sim.client();
  await c.token();
  const id = (await c.project()).projectId;
  const s = await c.stream(id);
  await c.send(id, 'hello');
  await s.waitEnd();
  await fetch(`${sim.base}/nope`, { headers: { Origin: 'https://cto.new' } });
  assert.equal(sim.stdout(), `{"event":"listening","port":${sim.port}}\n`);
  assert.equal(sim.stderr(), '');
  const ex = await sim.stop();
  assert.deepEqual(ex, { code: 0, signal: null });
  await waitFor(() => s.closed, { what: 'stream closed by shutdown' });

  const sim2 = await startSim(['--verbose']);
  sim2.proc.kill('SIGINT');
  assert.deepEqual(await sim2.exited, { code: 0, signal: null });
  assert.match(sim2.stderr(), /listening/);
});

test('a fixed --port is honoured', async () => {
  const probe = await startSim();
  const port = probe.port;
  await probe.stop();
  const sim = await startSim(['--port', String(port)]);
  assert.equal(sim.port, port);
  await sim.stop();
});

test('control API: config validation, stats without chats, unknown paths', async (t) => {
  const sim = await startSim();
  t.after(() => sim.stop());
  const post = (p, b) => fetch(sim.base + p, { method: 'POST', body: JSON.stringify(b) });
  assert.equal((await post('/__sim/config', { mode: 'weird' })).status, 400);
  assert.equal((await post('/__sim/config', { taskLimit: -1 })).status, 400);
  assert.equal((await post('/__sim/config', { nope: 1 })).status, 400);
  assert.equal((await post('/__sim/faults', { faults: [{ kind: 'ws_drop', times: 0 }] })).status, 400);
  const cfg = await sim.config({ mode: 'snapshot', pieceDelayMs: 5 });
  assert.equal(cfg.config.mode, 'snapshot');
  assert.equal(cfg.config.pieceDelayMs, 5);
  await sim.reset();
  assert.equal((await sim.stats()).settings.mode, 'delta');
  const st = await fetch(`${sim.base}/__sim/stats?chats=0`).then((r) => r.json());
  assert.equal(st.chats, undefined);
  assert.ok(st.counters);
  assert.equal((await fetch(`${sim.base}/__sim/nope`)).status, 404);
  assert.equal((await fetch(`${sim.base}/__sim/chats/none`)).status, 404);
  const r = await fetch(`${sim.base}/engine-agent/unknown`, { headers: { Origin: 'https://cto.new' } });
  assert.equal(r.status, 404);
  assert.equal((await sim.stats()).counters.unknown, 1);
});

test('fan-out: 1000 sockets on 50 chats all get their replies', async (t) => {
  const sim = await startSim();
  t.after(() => sim.stop());
  const c = sim.client();
  await c.token();
  const ids = [];
  for (let i = 0; i < 50; i++) ids.push((await c.project(`p${i}`)).projectId);
  const streams = await Promise.all(ids.flatMap((id) => Array.from({ length: 20 }, () => c.stream(id))));
  assert.equal((await sim.stats()).wsOpen, 1000);
  const res = await Promise.all(ids.map((id, i) => c.send(id, `chat ${i} [pieces=20]`)));
  assert.ok(res.every((r) => r.status === 202));
  const got = await Promise.all(streams.map((s) => s.waitEnd(15000)));
  const want = Array.from({ length: 20 }, (_, i) => `w${i + 1}`).join(' ');
  assert.ok(got.every((g) => g.text === want));
  for (const s of streams) s.close();
  await waitFor(async () => (await sim.stats()).wsOpen === 0, { timeoutMs: 10000, what: 'all closed' });
  const st = await sim.stats();
  assert.equal(st.counters.ws_connect, 1000);
  assert.equal(st.counters.replies_complete, 50);
});

test('--mode snapshot from the command line; reset keeps the command-line settings', async (t) => {
  const sim = await startSim(['--mode', 'snapshot', '--task-limit', '3', '--daily-limit', '7', '--jwt-ttl', '30']);
  t.after(() => sim.stop());
  const c = sim.client();
  const jwt = await c.token();
  const p = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));
  assert.equal(p.exp - p.iat, 30);
  const b = (await c.rest('GET', '/billing')).body;
  assert.deepEqual([b.dailyLimit, b.weeklyLimit, b.taskConcurrencyLimit], [7, 21, 3]);
  const id = (await c.project()).projectId;
  const s = await c.stream(id);
  await c.send(id, '[pieces=3]');
  await s.waitEnd();
  assert.deepEqual(s.inners().filter((o) => o.type === 'chat').map((o) => o.chat.content), ['w1 ', 'w1 w2 ', 'w1 w2 w3']);
  s.close();
  await sim.config({ mode: 'delta' });
  await sim.reset();
  assert.equal((await sim.stats()).settings.mode, 'snapshot');
});
