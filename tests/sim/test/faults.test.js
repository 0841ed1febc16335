'use strict';
// Every fault kind of POST /__sim/faults, observed from the client side and in the stats.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startSim, waitFor } = require('../harness.js');

let sim;
let c;
test.before(async () => { sim = await startSim(); });
test.after(async () => { await sim.stop(); });
test.beforeEach(async () => {
  await sim.reset();
  c = sim.client();
  await c.token();
});

// Open a stream on a new chat and send a prompt.
async function chatWith(prompt) {
  const id = (await c.project()).projectId;
  const s = await c.stream(id);
  await s.waitFor((f) => f.json && f.json.type === 'state');
  const r = await c.send(id, prompt);
  assert.equal(r.status, 202);
  return { id, s };
}

// A ping answered means every frame sent before it has arrived.
async function barrier(s) {
  const n = s.frames.filter((f) => f.raw === 'pong').length;
  s.ws.send('ping');
  await waitFor(() => s.frames.filter((f) => f.raw === 'pong').length > n, { what: 'pong' });
}

const chatPieces = (s) => s.inners().filter((o) => o.type === 'chat').map((o) => o.chat.content);

test('REST faults: project_500, offers_500, adapters_500, preferred_500', async () => {
  await sim.faults([{ kind: 'project_500' }, { kind: 'offers_500' }, { kind: 'adapters_500' }, { kind: 'preferred_500' }]);
  assert.equal((await c.rest('POST', '/projects/create-hosted', { projectName: 'x' })).status, 500);
  assert.equal((await c.rest('POST', '/engine-agent/offers', { chatHistoryId: 'x', surface: 'ENGINE_AGENT' })).status, 500);
  assert.equal((await c.rest('GET', '/chat/adapters')).status, 500);
  assert.equal((await c.rest('PATCH', '/teams/preferred-model', { modelKey: 'gpt_5' })).status, 500);
  // each fired once
  assert.equal((await c.rest('POST', '/projects/create-hosted', { projectName: 'x' })).status, 201);
  assert.equal((await c.rest('POST', '/engine-agent/offers', { chatHistoryId: 'x', surface: 'ENGINE_AGENT' })).status, 200);
  assert.equal((await c.rest('GET', '/chat/adapters')).status, 200);
  assert.equal((await c.rest('PATCH', '/teams/preferred-model', { modelKey: 'gpt_5' })).status, 200);
  const st = await sim.stats();
  assert.deepEqual(st.faultsFired, { project_500: 1, offers_500: 1, adapters_500: 1, preferred_500: 1 });
  assert.equal(st.accounts[0].preferredModel, 'gpt_5', 'the failed PATCH changed nothing, the good one did');
});

test('chat faults: chat_429 (quota body), chat_500 (not JSON), chat_413', async () => {
  const id = (await c.project()).projectId;
  await sim.faults([{ kind: 'chat_429', seconds: 600 }, { kind: 'chat_500' }, { kind: 'chat_413' }, { kind: 'chat_429', code: 'concurrency' }]);
  let r = await c.send(id, 'hi');
  assert.equal(r.status, 429);
  assert.equal(r.body.error, 'Daily limit reached');
  assert.equal(r.body.limitReached.type, 'daily');
  const at = Date.parse(r.body.limitReached.retryAt);
  assert.ok(Math.abs(at - (Date.now() + 600000)) < 5000);
  r = await c.send(id, 'hi');
  assert.deepEqual([r.status, r.text, r.body], [500, 'Internal Server Error', undefined]);
  r = await c.send(id, 'hi');
  assert.deepEqual([r.status, r.body], [413, { error: 'Message too large' }]);
  r = await c.send(id, 'hi');
  assert.deepEqual([r.status, r.body], [429, { error: 'Too many concurrent tasks', code: 'CONCURRENCY_LIMIT' }]);
  assert.equal((await c.send(id, 'hi')).status, 202);
  const ch = await sim.chat(id);
  assert.deepEqual(ch.prompts, ['hi'], 'refused prompts are not recorded');
  assert.equal((await sim.stats()).accounts[0].dailyUsage, 1);
});

test('ws_reject: default 500 and a chosen status', async () => {
  const id = (await c.project()).projectId;
  await sim.faults([{ kind: 'ws_reject' }, { kind: 'ws_reject', status: 503 }]);
  await assert.rejects(c.stream(id), (e) => e.status === 500);
  await assert.rejects(c.stream(id), (e) => e.status === 503);
  const s = await c.stream(id);
  s.close();
  const st = await sim.stats();
  assert.equal(st.counters.ws_upgrade, 3);
  assert.equal(st.counters.ws_connect, 1);
});

test('ws_drop: the TCP connection dies after N pieces', async () => {
  await sim.faults([{ kind: 'ws_drop', after: 2 }]);
  const { id, s } = await chatWith('[pieces=6]');
  await waitFor(() => s.closed, { what: 'close' });
  assert.equal(s.closed.code, 1006, 'abrupt close, no close frame');
  assert.deepEqual(chatPieces(s), ['w1 ', 'w2 ']);
  assert.equal(s.endIndex(), -1);
  const d = await sim.replyDone(id);
  assert.equal(d.outcome, 'dropped');
  assert.equal(d.text, 'w1 w2 w3 w4 w5 w6');
  await waitFor(async () => (await sim.stats()).wsOpen === 0, { what: 'socket gone' });
  assert.equal((await sim.stats()).accounts[0].running, 0);
});

test('ws_close: clean close 1011 after N pieces', async () => {
  await sim.faults([{ kind: 'ws_close', after: 1 }]);
  const { id, s } = await chatWith('[pieces=4]');
  await waitFor(() => s.closed, { what: 'close' });
  assert.equal(s.closed.code, 1011);
  assert.deepEqual(chatPieces(s), ['w1 ']);
  assert.equal((await sim.replyDone(id)).outcome, 'closed');
});

test('ws_stall: pieces stop, the socket stays open', async () => {
  await sim.faults([{ kind: 'ws_stall', after: 3 }]);
  const { id, s } = await chatWith('[pieces=8]');
  assert.equal((await sim.replyDone(id)).outcome, 'stalled');
  await barrier(s);
  assert.equal(s.closed, null);
  assert.deepEqual(chatPieces(s), ['w1 ', 'w2 ', 'w3 ']);
  assert.equal(s.endIndex(), -1);
  assert.equal((await sim.stats()).wsOpen, 1);
  s.close();
});

test('malformed: outer, inner and unknown-type frames, then the reply goes on', async () => {
  for (const [variant, check] of [
    ['outer', (raw) => raw === '{"type":"update","buffer":"{not json'],
    ['inner', (raw) => JSON.parse(raw).buffer === '{not json\n'],
    ['unknown', (raw) => JSON.parse(raw).type === 'surprise'],
  ]) {
    await sim.faults([{ kind: 'malformed', after: 1, variant }]);
    const { s } = await chatWith('[pieces=3]');
    const got = await s.waitEnd();
    assert.equal(got.text, 'w1 w2 w3');
    const i = s.frames.findIndex((f) => check(f.raw));
    assert.ok(i > 0, `${variant} frame present`);
    const before = s.frames.slice(0, i).flatMap((f) => f.inners || []).filter((o) => o.type === 'chat');
    assert.equal(before.length, 1, `${variant} frame after one piece`);
    s.close();
  }
  assert.equal((await sim.stats()).faultsFired.malformed, 3);
});

test('huge: one reply of the given size', async () => {
  await sim.faults([{ kind: 'huge', bytes: 300000 }]);
  const { id, s } = await chatWith('hello');
  const got = await s.waitEnd(10000);
  assert.equal(got.text.length, 300000);
  assert.equal((await sim.chat(id)).replies[0], got.text);
  s.frames.length = 0;
  await c.send(id, 'small now');
  assert.equal((await s.waitEnd()).text, 'You said: small now');
  s.close();
});

test('slow: delay per piece', async () => {
  await sim.faults([{ kind: 'slow', ms: 50 }]);
  const t0 = Date.now();
  const { id, s } = await chatWith('[pieces=4]');
  await s.waitEnd();
  assert.ok(Date.now() - t0 >= 190, `took ${Date.now() - t0} ms`);
  assert.equal((await sim.chat(id)).details[0].delayMs, 50);
  s.close();
});

test('snapshot: the next reply only', async () => {
  await sim.faults([{ kind: 'snapshot' }]);
  const { id, s } = await chatWith('[pieces=3]');
  await s.waitEnd();
  assert.deepEqual(chatPieces(s), ['w1 ', 'w1 w2 ', 'w1 w2 w3']);
  s.frames.length = 0;
  await c.send(id, '[pieces=3]');
  await s.waitEnd();
  assert.deepEqual(chatPieces(s), ['w1 ', 'w2 ', 'w3']);
  s.close();
});

test('no_final_state: never inProgress:false, no label', async () => {
  await sim.faults([{ kind: 'no_final_state' }]);
  const { id, s } = await chatWith('[pieces=2]');
  assert.equal((await sim.replyDone(id)).outcome, 'no_final_state');
  await barrier(s);
  assert.deepEqual(chatPieces(s), ['w1 ', 'w2']);
  assert.equal(s.endIndex(), -1);
  assert.ok(!s.types().includes('label'));
  // the task is over server-side: the chat takes a new prompt
  s.frames.length = 0;
  assert.equal((await c.send(id, 'next')).status, 202);
  assert.equal((await s.waitEnd()).text, 'You said: next');
  s.close();
});

test('billing_limit: billing reports the limit with retryAt', async () => {
  await sim.faults([{ kind: 'billing_limit', seconds: 120 }]);
  let r = await c.rest('GET', '/billing');
  assert.equal(r.body.hasReachedLimit, true);
  assert.equal(r.body.limitReached.type, 'daily');
  assert.ok(Math.abs(Date.parse(r.body.limitReached.retryAt) - (Date.now() + 120000)) < 5000);
  r = await c.rest('GET', '/billing');
  assert.equal(r.body.hasReachedLimit, false);
  assert.equal(r.body.limitReached, null);
});

test('fault queue: times -1 until reset, unknown kinds refused, chat filter', async () => {
  const a = (await c.project()).projectId;
  const b = (await c.project()).projectId;
  await sim.faults([{ kind: 'chat_500', times: -1, chatHistoryId: b }]);
  for (let i = 0; i < 3; i++) assert.equal((await c.send(b, 'x')).status, 500);
  assert.equal((await c.send(a, 'x')).status, 202);
  const r = await fetch(`${sim.base}/__sim/faults`, { method: 'POST', body: JSON.stringify({ faults: [{ kind: 'nope' }] }) });
  assert.equal(r.status, 400);
  assert.ok((await r.json()).kinds.includes('ws_drop'));
  await sim.reset();
  c = sim.client();
  await c.token();
  const d = (await c.project()).projectId;
  assert.equal((await c.send(d, 'x')).status, 202);
});
