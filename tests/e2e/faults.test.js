// Every simulator fault not covered elsewhere, each with the outcome the
// client sees and a time bound; slow and stalled clients (backpressure,
// CLIENT_TIMEOUT); 100 live streams through a SIGTERM.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const { startSim, startGateway, findChat, readSSE, waitFor } = require('./lib');

let sim, gwA, gwB, gwC, gwW, gwP;
let nonce = 0;
const tag = () => `f${process.pid}x${++nonce}q`; // q ends it: x1q is not in x10q
const extra = []; // sims and gateways a test started, stopped in after()

test.before(async () => {
  sim = await startSim(['--port', '0']);
  [gwA, gwB, gwC, gwW, gwP] = await Promise.all([
    startGateway(sim),
    startGateway(sim, { env: { MAX_REPLY_BYTES: '1048576', IDLE_TIMEOUT: '1' } }),
    startGateway(sim, { env: { CLIENT_TIMEOUT: '2' } }),
    startGateway(sim), // meets upstream WebSocket failures (rejected, closed)
    // Measured for memory: a sanitizer build's quarantine would count freed
    // blocks as resident, so it is off for this one (no effect on a release build).
    startGateway(sim, { env: { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || 'detect_leaks=1:abort_on_error=1'}:quarantine_size_mb=0:thread_local_quarantine_size_kb=0` } }),
  ]);
  for (const g of [gwA, gwB, gwC, gwW, gwP]) await g.client().models.list(); // warm: session, JWT, model list
});

// Exit codes are checked by the last tests; this only cleans up after a failure.
test.after(async () => {
  for (const g of [gwA, gwB, gwC, gwW, gwP]) if (g) await g.stop('SIGKILL');
  for (const x of extra.reverse()) await x.stop();
  if (sim) await sim.stop();
});

// ---------------------------------------------------------------------------------------------
// helpers

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function clearFaults(s = sim) { await s.control('DELETE', '/__sim/faults'); }

// Stats without the chats: cheap to poll even after multi-megabyte replies.
function stats(s = sim) { return s.control('GET', '/__sim/stats?chats=0'); }

async function fired(kind, s = sim) { return ((await stats(s)).faultsFired || {})[kind] || 0; }

async function upstreamFor(marker, s = sim) {
  const chats = await waitFor(async () => {
    const found = await findChat(s, (c) => c.prompts.some((p) => p.includes(marker)));
    return found.length ? found : null;
  }, { what: `the upstream chat for ${marker}` });
  assert.equal(chats.length, 1, `one upstream chat for ${marker}`);
  return s.chat(chats[0].id);
}

// A non-streamed chat: {ok, status, content, error, ms}.
async function ask(gw, content, { model = 'gpt-5.4', timeoutMs = 15000 } = {}) {
  const t0 = Date.now();
  try {
    const r = await gw.client({ timeout: timeoutMs }).chat.completions.create({ model, messages: [{ role: 'user', content }] });
    return { ok: true, status: 200, content: r.choices[0].message.content, ms: Date.now() - t0 };
  } catch (e) {
    return { ok: false, status: e.status, error: e.error, message: e.message, ms: Date.now() - t0 };
  }
}

// A streamed chat over raw fetch: {status, data[], content, error, done, ms}.
async function askStream(gw, content, { model = 'gpt-5.4', timeoutMs = 15000 } = {}) {
  const t0 = Date.now();
  const res = await gw.fetch('/v1/chat/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: AbortSignal.timeout(timeoutMs),
    body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content }] }),
  });
  if (res.status !== 200) return { status: res.status, body: await res.text(), ms: Date.now() - t0 };
  const { events } = await readSSE(res);
  const data = events.filter((e) => e.data).map((e) => e.data);
  const objs = data.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d));
  const content2 = objs.map((o) => (o.choices && o.choices[0] && o.choices[0].delta.content) || '').join('');
  const err = objs.find((o) => o.error);
  const finish = objs.map((o) => o.choices && o.choices[0] && o.choices[0].finish_reason).filter(Boolean);
  return { status: 200, data, content: content2, error: err && err.error, finish, done: data.at(-1) === '[DONE]', ms: Date.now() - t0 };
}

function assertErr(r, status, what) {
  assert.equal(r.ok, false, `${what}: expected ${status}, got a reply`);
  assert.equal(r.status, status, `${what}: ${r.status} ${r.message}`);
  assert.ok(r.error && typeof r.error.message === 'string' && typeof r.error.type === 'string', `${what}: error shape`);
  if (status === 502) assert.equal(r.error.type, 'upstream_error', what);
}

// An error event then [DONE], nothing after.
function assertStreamErr(r, what) {
  assert.equal(r.status, 200, what);
  assert.ok(r.done, `${what}: ends with [DONE]`);
  const last = JSON.parse(r.data.at(-2));
  assert.ok(last.error && typeof last.error.message === 'string', `${what}: the event before [DONE] is an error: ${r.data.at(-2)}`);
  assert.equal(r.data.filter((d) => d.includes('"error"')).length, 1, `${what}: exactly one error event`);
}

// Faults the gateway may retry: once → a reply (retried) or 502; every time
// → 502 within bound; cleared → the next request works at once.
async function retriableFault(gw, fault, { model = 'gpt-5.4', boundMs = 5000, s = sim } = {}) {
  const kind = fault.kind;
  await clearFaults(s);
  const f0 = await fired(kind, s);
  await s.faults([fault]);
  const once = await ask(gw, `once ${kind} ${tag()}`, { model });
  assert.ok(await fired(kind, s) > f0, `${kind} fired`);
  if (!once.ok) assertErr(once, 502, `${kind} once`);
  assert.ok(once.ms < boundMs, `${kind} once took ${once.ms} ms`);
  const m = tag();
  const after = await ask(gw, m, { model });
  assert.ok(after.ok, `${kind}: the next request works: ${after.status} ${after.message}`);
  assert.equal(after.content, `You said: ${m}`);

  await s.faults([{ ...fault, times: -1 }]);
  const always = await ask(gw, `always ${kind} ${tag()}`, { model: model === 'gpt-5.4' ? 'gpt-5' : 'gpt-5.4' });
  assertErr(always, 502, `${kind} every time`);
  assert.ok(always.ms < boundMs, `${kind} every time took ${always.ms} ms`);
  await clearFaults(s);
  const m2 = tag();
  const rec = await ask(gw, m2, { model });
  assert.ok(rec.ok, `${kind}: recovered at once: ${rec.status} ${rec.message}`);
  assert.equal(rec.content, `You said: ${m2}`);
  return { once, always };
}

// ---------------------------------------------------------------------------------------------
// Clerk and REST faults

test('token_500: 502 quickly while the token endpoint fails, then it recovers', async () => {
  const s2 = await startSim(['--port', '0']);
  extra.push(s2);
  const g2 = await startGateway(s2);
  extra.push(g2);
  await s2.faults([{ kind: 'token_500', times: -1 }]);
  const r = await ask(g2, `token ${tag()}`);
  assertErr(r, 502, 'token_500');
  assert.ok(r.ms < 5000, `${r.ms} ms`);
  assert.ok((await stats(s2)).counters['POST /tokens'] <= 5, 'a bounded number of mint attempts');
  await clearFaults(s2);
  await recovers(g2, 'token_500');
});

// After a failed refresh the gateway remembers the failure for FAIL_CACHE_S
// (2 s, src/core/pool.c) and answers 502 without asking; then it asks again.
async function recovers(g, what) {
  const t0 = Date.now();
  const ok = await waitFor(async () => {
    const m = tag();
    const r = await ask(g, m);
    return r.ok && r.content === `You said: ${m}` ? r : null;
  }, { timeoutMs: 3500, intervalMs: 200, what: `${what}: a reply once the fault is gone` });
  assert.ok(ok.ok);
  return Date.now() - t0;
}

test('rotate: the gateway takes the rotated cookie and keeps working across JWT refreshes', async () => {
  const s2 = await startSim(['--port', '0', '--jwt-ttl', '16']);
  extra.push(s2);
  const cookie0 = (await stats(s2)).accounts[0].cookie;
  // The first Clerk call (the session lookup) rotates, before any JWT or WebSocket.
  await s2.faults([{ kind: 'rotate' }]);
  const g2 = await startGateway(s2);
  extra.push(g2);
  const t0 = Date.now();
  const first = await ask(g2, `rotation ${tag()}`);
  assert.ok(first.ok, first.message);
  const st1 = await stats(s2);
  assert.equal(st1.accounts[0].rotations, 1);
  assert.notEqual(st1.accounts[0].cookie, cookie0, 'the simulator rotated the cookie');
  const mints = st1.counters['POST /tokens'];
  // A 16 s JWT is always due for refresh (the gateway refreshes 30 s ahead):
  // each request mints again, which only the new cookie can do.
  for (let i = 0; i < 3; i++) {
    const m = tag();
    const r = await ask(g2, m);
    assert.ok(r.ok, `after rotation ${i}: ${r.status} ${r.message}`);
    assert.equal(r.content, `You said: ${m}`);
  }
  await waitFor(async () => (await stats(s2)).counters['POST /tokens'] > mints, { timeoutMs: 5000, what: 'a mint with the rotated cookie' });
  const st2 = await stats(s2);
  assert.equal(st2.rejected.clerk_auth || 0, 0, 'the old, signed-out cookie was never used again');
  assert.equal(st2.rejected.ws_auth || 0, 0);
  assert.ok(st2.counters['POST /tokens'] - mints < 20, `${st2.counters['POST /tokens'] - mints} mints for 3 requests`);
  assert.ok(Date.now() - t0 < 5000);
});

test('rotate while a request is in flight: that request still gets its reply', async () => {
    const s2 = await startSim(['--port', '0', '--jwt-ttl', '16']);
    const g2 = await startGateway(s2);
    try {
      const first = await ask(g2, `before ${tag()}`);
      assert.ok(first.ok, first.message);
      await s2.faults([{ kind: 'rotate' }]);
      const r = await ask(g2, `during ${tag()}`, { timeoutMs: 5000 });
      assert.ok(r.ok, `${r.status} ${r.message} after ${r.ms} ms`);
      const st = await stats(s2);
      assert.ok(st.counters['POST /tokens'] < 10, `${st.counters['POST /tokens']} mints`);
    } finally {
      await g2.stop('SIGKILL');
      await s2.stop();
    }
  });

test('chat_413: the upstream refusing the prompt as too large gives 413', async () => {
  await sim.faults([{ kind: 'chat_413' }]);
  const r = await ask(gwA, `big ${tag()}`);
  assertErr(r, 413, 'chat_413');
  assert.ok(r.ms < 3000);
  const s = await askStream(gwA, `[pieces=3] ${tag()}`);
  assert.equal(s.content, 'w1 w2 w3', 'the next request is fine');
  await sim.faults([{ kind: 'chat_413' }]);
  const s2 = await askStream(gwA, `big streamed ${tag()}`);
  assert.equal(s2.status, 413, 'before the first SSE byte the error is an HTTP status');
});

test('project_500: 502 (or a retried reply), and the next request works', async () => {
  await retriableFault(gwA, { kind: 'project_500' });
});

test('preferred_500: 502 (or a retried reply) on a model switch, and the next request works', async () => {
  // Each request switches model, so each sets the preferred model.
  await ask(gwA, `model a ${tag()}`, { model: 'gpt-5.4' });
  await retriableFault(gwA, { kind: 'preferred_500' }, { model: 'claude-sonnet-4-5' });
});

test('adapters_500: 502 while the model list cannot be fetched, then it recovers', async () => {
  const s2 = await startSim(['--port', '0']);
  extra.push(s2);
  const g2 = await startGateway(s2);
  extra.push(g2);
  await s2.faults([{ kind: 'adapters_500', times: -1 }]);
  const r = await ask(g2, `adapters ${tag()}`);
  assertErr(r, 502, 'adapters_500 chat');
  assert.ok(r.ms < 5000, `${r.ms} ms`);
  const list = await g2.fetch('/v1/models', { signal: AbortSignal.timeout(5000) });
  assert.equal(list.status, 502);
  assert.equal((await list.json()).error.type, 'upstream_error');
  await clearFaults(s2);
  await recovers(g2, 'adapters_500');
  const list2 = await g2.fetch('/v1/models', { signal: AbortSignal.timeout(5000) });
  assert.equal(list2.status, 200);
});

test('offers_500: not fatal, the chat still works', async () => {
  const f0 = await fired('offers_500');
  await sim.faults([{ kind: 'offers_500', times: 2 }]);
  const m = tag();
  const r = await ask(gwA, m);
  assert.ok(r.ok, `${r.status} ${r.message}`);
  assert.equal(r.content, `You said: ${m}`);
  const s = await askStream(gwA, `[pieces=4] ${tag()}`);
  assert.equal(s.content, 'w1 w2 w3 w4');
  assert.equal(await fired('offers_500'), f0 + 2, 'both requests met the fault');
  await clearFaults();
});

// ---------------------------------------------------------------------------------------------
// WebSocket faults

test('ws_reject 500: 502 (or a retried reply), and the next request works', async () => {
  await retriableFault(gwW, { kind: 'ws_reject', status: 500 });
});

test('ws_reject 401: one JWT refresh, then a reply or 502 within a bound; no refresh storm', async () => {
    const s2 = await startSim(['--port', '0']);
    const g2 = await startGateway(s2);
    try {
      await g2.client().models.list();
      await s2.faults([{ kind: 'ws_reject', status: 401 }]);
      const r = await ask(g2, `ws 401 ${tag()}`, { timeoutMs: 5000 });
      const mints = (await stats(s2)).counters['POST /tokens'];
      assert.ok(mints <= 3, `${mints} JWT mints for one refused upgrade; ${r.ok ? 'reply' : `${r.status} ${r.message}`} after ${r.ms} ms`);
      if (!r.ok) assertErr(r, 502, 'ws_reject 401');
      assert.ok(r.ms < 5000, `${r.ms} ms`);
      const m = tag();
      const ok = await ask(g2, m, { timeoutMs: 5000 });
      assert.ok(ok.ok, `after: ${ok.status} ${ok.message}`);
      // It must also drain and exit cleanly afterwards.
      const exit = await Promise.race([g2.stop(), new Promise((res) => setTimeout(() => res('hung'), 5000))]);
      assert.deepEqual(exit, { code: 0, signal: null });
    } finally {
      await g2.stop('SIGKILL'); // only if it is still running (a failed assertion above)
      await s2.stop();
    }
  });

test('ws_close mid-reply: streamed → one error event and [DONE]; not streamed → 502', async () => {
  await sim.faults([{ kind: 'ws_close', after: 3 }]);
  const m = tag();
  const s = await askStream(gwW, `[pieces=20] ${m}`);
  assertStreamErr(s, 'ws_close streamed');
  const up = await upstreamFor(m);
  assert.equal(up.details[0].outcome, 'closed');
  assert.equal(s.content, up.details[0].pieces.slice(0, 3).join(''), 'the pieces before the close were relayed');
  assert.ok(s.ms < 3000, `${s.ms} ms`);
  assert.deepEqual(s.finish, [], 'no finish_reason after an error');
  await sim.faults([{ kind: 'ws_close', after: 3 }]);
  const r = await ask(gwW, `[pieces=20] ${tag()}`);
  assertErr(r, 502, 'ws_close');
  assert.ok(r.ms < 3000, `${r.ms} ms`);
});

for (const variant of ['outer', 'inner', 'unknown']) {
  test(`a malformed frame (${variant}) is skipped: the reply is exact`, async () => {
    await sim.faults([{ kind: 'malformed', after: 2, variant }]);
    const m = tag();
    const s = await askStream(gwA, `[pieces=12] ${m}`);
    const up = await upstreamFor(m);
    assert.equal(up.details[0].fault, null);
    assert.equal(s.content, up.replies[0]);
    assert.ok(s.done && !s.error, 'no error event');
    assert.deepEqual(s.finish, ['stop']);
    await sim.faults([{ kind: 'malformed', after: 5, variant }]);
    const m2 = tag();
    const r = await ask(gwA, `[pieces=12] ${m2}`);
    assert.ok(r.ok, r.message);
    assert.equal(r.content, (await upstreamFor(m2)).replies[0]);
    assert.equal(await fired('malformed') >= 2, true);
  });
}

test('a 2,000,000-byte reply is relayed exactly, streamed and not', async () => {
  const m = tag();
  const r = await ask(gwA, `[bytes=2000000] ${m}`);
  assert.ok(r.ok, r.message);
  const up = await upstreamFor(m);
  assert.equal(up.replies[0].length, 2000000);
  assert.equal(r.content.length, 2000000);
  assert.ok(r.content === up.replies[0], 'non-streamed text equals the upstream reply');
  const m2 = tag();
  const s = await askStream(gwA, `[bytes=2000000] ${m2}`);
  const up2 = await upstreamFor(m2);
  assert.equal(s.content.length, 2000000);
  assert.ok(s.content === up2.replies[0], 'streamed text equals the upstream reply');
  assert.ok(r.ms < 10000 && s.ms < 10000, `${r.ms} / ${s.ms} ms`);
});

test('the huge fault ({kind:"huge"}) is relayed exactly too', async () => {
  await sim.faults([{ kind: 'huge', bytes: 1500000 }]);
  const m = tag();
  const s = await askStream(gwA, m);
  const up = await upstreamFor(m);
  assert.equal(up.replies[0].length, 1500000);
  assert.ok(s.content === up.replies[0]);
});

test('a reply over MAX_REPLY_BYTES=1048576 ends in an error, streamed and not, and the upstream socket closes', async () => {
  const m = tag();
  const r = await ask(gwB, `[bytes=2000000] ${m}`);
  assert.equal(r.ok, false, 'not a 2 MB reply past a 1 MB limit');
  assert.ok(r.status >= 500 && r.status < 600, `status ${r.status}`);
  assert.ok(r.error && typeof r.error.message === 'string');
  assert.ok(r.ms < 5000);
  const m2 = tag();
  const s = await askStream(gwB, `[bytes=2000000] ${m2}`);
  assertStreamErr(s, 'reply over the limit');
  assert.ok(s.content.length <= 1048576, `${s.content.length} bytes relayed`);
  assert.ok((await upstreamFor(m2)).replies[0].startsWith(s.content), 'what was relayed is a prefix of the reply');
  for (const x of [m, m2]) {
    const up = await upstreamFor(x);
    await waitFor(async () => (await sim.chat(up.id)).wsOpen === 0, { timeoutMs: 3000, what: 'the upstream socket to close' });
  }
});

test('slow pieces (300 ms each) arrive one by one and exactly', async () => {
  await sim.faults([{ kind: 'slow', ms: 300 }]);
  const m = tag();
  const t0 = Date.now();
  const stream = await gwA.client().chat.completions.create({ model: 'gpt-5.4', stream: true,
    messages: [{ role: 'user', content: `[pieces=6] ${m}` }] });
  const times = [];
  let content = '';
  for await (const c of stream) {
    const d = c.choices[0] && c.choices[0].delta;
    if (d && d.content) { content += d.content; times.push(Date.now() - t0); }
  }
  const up = await upstreamFor(m);
  assert.equal(up.details[0].delayMs, 300);
  assert.equal(content, up.replies[0]);
  assert.ok(times.at(-1) - times[0] >= 1200, `pieces spread over ${times.at(-1) - times[0]} ms: streamed, not buffered`);
  assert.ok(Date.now() - t0 < 5000);
  await sim.faults([{ kind: 'slow', ms: 300 }]);
  const r = await ask(gwA, `[pieces=4] ${tag()}`);
  assert.ok(r.ok);
  assert.equal(r.content, 'w1 w2 w3 w4');
  assert.ok(r.ms >= 1000 && r.ms < 4000, `${r.ms} ms`);
});

test('with the smallest MAX_REPLY_BYTES (1024), a streamed reply of many pieces per read arrives exactly', async () => {
  // The SSE events of one loop turn are gathered before they go out; that
  // store must hold a whole turn's worth even when replies are capped small.
  const g = await startGateway(sim, { env: { MAX_REPLY_BYTES: '1024' } });
  extra.push(g);
  for (const prompt of ['[pieces=150]', '[pieces=200] [batch]']) {
    const m = tag();
    const stream = await g.client().chat.completions.create({ model: 'gpt-5.4', stream: true,
      messages: [{ role: 'user', content: `${prompt} ${m}` }] });
    let content = '';
    for await (const c of stream) {
      const d = c.choices[0] && c.choices[0].delta;
      if (d && d.content) content += d.content;
    }
    const up = await upstreamFor(m);
    assert.equal(content.length, up.replies[0].length, prompt);
    assert.equal(content, up.replies[0], prompt);
  }
});

test('no_final_state with IDLE_TIMEOUT=1: 504 / error event within a bound', async () => {
  await sim.faults([{ kind: 'no_final_state' }]);
  const r = await ask(gwB, `[pieces=3] ${tag()}`);
  assertErr(r, 504, 'no_final_state');
  assert.ok(r.ms >= 900 && r.ms < 3500, `${r.ms} ms`);
  await sim.faults([{ kind: 'no_final_state' }]);
  const m = tag();
  const s = await askStream(gwB, `[pieces=3] ${m}`);
  assertStreamErr(s, 'no_final_state streamed');
  assert.equal(s.content, (await upstreamFor(m)).replies[0], 'the pieces were relayed before the error');
  assert.ok(s.ms < 3500, `${s.ms} ms`);
  const up = await upstreamFor(m);
  await waitFor(async () => (await sim.chat(up.id)).wsOpen === 0, { timeoutMs: 3000, what: 'the upstream socket to close' });
});

test('snapshot mode with [batch] and [tool] pieces: text exact, streamed and not', async () => {
  for (const [label, dirs, snap] of [['batch', '[batch] [pieces=30]', false], ['tool', '[tool] [pieces=9]', false],
    ['snapshot+batch+tool', '[batch] [tool] [pieces=30]', true], ['snapshot+think', '[think] [batch] [pieces=7]', true]]) {
    for (const stream of [true, false]) {
      if (snap) await sim.faults([{ kind: 'snapshot' }]);
      const m = tag();
      const r = stream ? await askStream(gwA, `${dirs} ${m}`) : await ask(gwA, `${dirs} ${m}`);
      const up = await upstreamFor(m);
      assert.equal(up.details[0].snapshot, snap, label);
      assert.equal(r.content, up.replies[0], `${label} ${stream ? 'streamed' : 'json'}`);
      if (stream) assert.ok(r.done && !r.error, `${label}: clean end`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Slow clients

// Sends one streamed chat on a raw socket and returns the socket, paused.
function rawStream(gw, content) {
  const body = JSON.stringify({ model: 'gpt-5.4', stream: true, messages: [{ role: 'user', content }] });
  const sock = net.connect({ host: '127.0.0.1', port: gw.port });
  sock.pause();
  sock.on('connect', () => sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${gw.key}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`));
  return sock;
}

function dechunk(buf) {
  const he = buf.indexOf('\r\n\r\n');
  const head = buf.subarray(0, he).toString('latin1');
  let p = he + 4;
  const parts = [];
  if (!/transfer-encoding: chunked/i.test(head)) return { head, body: buf.subarray(p).toString('utf8') };
  for (let g = 0; g < 1e7; g++) {
    const le = buf.indexOf('\r\n', p);
    if (le < 0) break;
    const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
    if (!size) break;
    parts.push(buf.subarray(le + 2, le + 2 + size));
    p = le + 2 + size + 2;
  }
  return { head, body: Buffer.concat(parts).toString('utf8') };
}

test('a client that stops reading a 5 MB stream for 10 s: the gateway holds little (backpressure), then it arrives exactly', async (t) => {
  const base = rssKb(gwP.pid);
  const m = tag();
  const sock = rawStream(gwP, `[bytes=5000000] ${m}`);
  const up0 = await upstreamFor(m);
  // The simulator sends the whole reply at once; the gateway must not queue it.
  await sim.replyDone(up0.id, 0, 10000);
  let peak = base;
  const t0 = Date.now();
  while (Date.now() - t0 < 10000) {
    peak = Math.max(peak, rssKb(gwP.pid));
    await new Promise((r) => setTimeout(r, 100));
  }
  const growthMb = (peak - base) / 1024;
  t.diagnostic(`RSS ${base} kB, +${growthMb.toFixed(1)} MB while not reading`);
  const chunks = [];
  const done = new Promise((resolve, reject) => {
    sock.on('data', (d) => chunks.push(d));
    sock.on('end', resolve);
    sock.on('error', reject);
  });
  sock.resume();
  await Promise.race([done, new Promise((_, rej) => setTimeout(() => rej(new Error('no end within 20 s')), 20000))]);
  sock.destroy();
  const { head, body } = dechunk(Buffer.concat(chunks));
  assert.match(head, /^HTTP\/1\.1 200/);
  const data = body.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
  assert.equal(data.at(-1), '[DONE]');
  const text = data.slice(0, -1).map((d) => JSON.parse(d)).map((o) => (o.choices[0] && o.choices[0].delta.content) || '').join('');
  const up = await sim.chat(up0.id);
  assert.equal(text.length, 5000000);
  assert.ok(text === up.replies[0], 'the text is exact after the stall');
  // About 12 MB of SSE for 5 MB of text; the kernel holds a few MB, the rest
  // would sit in the gateway without backpressure.
  assert.ok(growthMb < 6, `gateway RSS grew by ${growthMb.toFixed(1)} MB while the client did not read (from ${base} kB)`);
});

test('a client that never reads (CLIENT_TIMEOUT=2) is dropped and its upstream socket closes', async () => {
  const m = tag();
  const t0 = Date.now();
  const sock = rawStream(gwC, `[bytes=12000000] ${m}`);
  try {
    const up = await upstreamFor(m);
    await waitFor(async () => (await sim.chat(up.id)).wsOpen === 0, { timeoutMs: 10000, what: 'the upstream socket to close' });
    const ms = Date.now() - t0;
    assert.ok(ms < 8000, `upstream closed after ${ms} ms`);
    const h = await (await fetch(`${gwC.base}/healthz`)).json();
    await waitFor(async () => (await (await fetch(`${gwC.base}/healthz`)).json()).streams === 0, { timeoutMs: 3000, what: 'no live stream' });
    assert.ok(h.streams <= 1);
    assert.match(gwC.logs(), new RegExp('client|timeout|gone|closed', 'i'));
  } finally {
    sock.destroy();
  }
});

// ---------------------------------------------------------------------------------------------
// Shutdown under load

test('100 live streams through SIGTERM (SHUTDOWN_TIMEOUT=2): each ends complete or with an error event + [DONE]; exit 0', async (t) => {
  const tStart = Date.now();
  const g = await startGateway(sim, { env: { SHUTDOWN_TIMEOUT: '2', ACCOUNT_CONCURRENCY: '1000' } });
  extra.push(g);
  await g.client().models.list();
  const n = 100;
  const st0 = await stats();
  const before = st0.wsOpen;
  const started0 = st0.counters.replies_started || 0;
  const jobs = Array.from({ length: n }, (_, i) => {
    const m = tag();
    const short = i % 2 === 0;
    const content = short ? `[pieces=15] [slow=100] ${m}` : `[pieces=100] [slow=100] ${m}`;
    return askStream(g, content, { timeoutMs: 15000 }).then((r) => ({ short, r }), (e) => ({ short, e }));
  });
  // Every reply has started (a slow start, as under a sanitizer, may have
  // let some short ones finish already).
  await waitFor(async () => (await stats()).counters.replies_started >= started0 + n, { timeoutMs: 10000, what: `${n} upstream replies started` });
  const live = (await stats()).wsOpen - before;
  t.diagnostic(`${live} streams live at SIGTERM, ${Date.now() - tStart} ms after the start`);
  assert.ok(live >= n / 2, `${live} live streams`);
  const t0 = Date.now();
  g.proc.kill('SIGTERM');
  const results = await Promise.all(jobs);
  const ms = Date.now() - t0;
  const exit = await g.exited;
  let full = 0;
  let cut = 0;
  for (const { short, r, e } of results) {
    assert.ok(!e, `a client failed or hung: ${e && e.message}`);
    assert.equal(r.status, 200);
    assert.ok(r.done, 'every stream ends with [DONE]');
    if (r.error) {
      assertStreamErr(r, 'cut stream');
      assert.match(r.error.message, /shutting down/);
      cut++;
    } else {
      assert.deepEqual(r.finish, ['stop']);
      assert.equal(r.content, Array.from({ length: short ? 15 : 100 }, (_, k) => `w${k + 1}`).join(' '));
      full++;
    }
    if (short) assert.ok(!r.error, 'a 1.5 s stream finishes within the 2 s drain');
  }
  assert.equal(full + cut, n);
  assert.ok(cut >= n / 2 - 5, `${cut} long streams were cut`);
  assert.ok(ms < 6000, `all ended ${ms} ms after SIGTERM`);
  assert.deepEqual(exit, { code: 0, signal: null });
  t.diagnostic(`all ended ${ms} ms after SIGTERM (${full} complete, ${cut} cut)`);
  await waitFor(async () => (await stats()).wsOpen <= before, { timeoutMs: 3000, what: 'the upstream sockets to close' });
});

// ---------------------------------------------------------------------------------------------
// Exit: each gateway above drains and exits 0 (a sanitizer report or an
// assertion would make it exit otherwise).

async function stopWithin(g, ms) {
  return Promise.race([g.stop(), new Promise((res) => setTimeout(() => res('still running'), ms))]);
}

const failure = (g) => (g.logs().match(/fatal.*|ERROR: \w+Sanitizer.*|runtime error.*/) || [''])[0];

test('after every fault above the gateways drain and exit 0', async () => {
  for (const [name, g] of [['A', gwA], ['B (MAX_REPLY_BYTES, IDLE_TIMEOUT)', gwB], ['P (backpressure)', gwP]]) {
    const exit = await stopWithin(g, 5000);
    assert.deepEqual(exit, { code: 0, signal: null }, `gateway ${name}: ${failure(g)}`);
  }
});

test('the gateway that dropped a non-reading client drains and exits 0 (no leak)', async () => {
    const exit = await stopWithin(gwC, 5000);
    assert.deepEqual(exit, { code: 0, signal: null }, failure(gwC));
  });

test('a gateway that met failed upstream WebSockets (rejected, closed) drains and exits 0', async () => {
    const exit = await stopWithin(gwW, 5000);
    assert.deepEqual(exit, { code: 0, signal: null }, failure(gwW));
  });
