'use strict';
// Daily quota, task concurrency limit, busy chat.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startSim } = require('../harness.js');

test('daily quota: usageMultiplier is charged; past the limit 429 and billing says so', async (t) => {
  const sim = await startSim(['--daily-limit', '4']);
  t.after(() => sim.stop());
  const c = sim.client();
  await c.token();
  const id = (await c.project()).projectId;
  let b = (await c.rest('GET', '/billing')).body;
  assert.deepEqual(b, { tier: 'free', dailyUsage: 0, dailyLimit: 4, weeklyUsage: 0, weeklyLimit: 12, hasReachedLimit: false, limitReached: null, taskConcurrencyLimit: 2 });
  assert.equal((await c.send(id, 'one')).status, 202);
  await sim.replyDone(id, 0);
  await c.rest('PATCH', '/teams/preferred-model', { modelKey: 'claude_opus_4_5' });
  assert.equal((await c.send(id, 'two')).status, 202);
  await sim.replyDone(id, 1);
  b = (await c.rest('GET', '/billing')).body;
  assert.equal(b.dailyUsage, 4);
  assert.equal(b.hasReachedLimit, true);
  assert.equal(b.limitReached.type, 'daily');
  assert.ok(Date.parse(b.limitReached.retryAt) > Date.now());
  const r = await c.send(id, 'three');
  assert.equal(r.status, 429);
  assert.equal(r.body.error, 'Daily limit reached');
  assert.equal(r.body.limitReached.retryAt, b.limitReached.retryAt);
  await sim.config({ dailyLimit: 10 });
  assert.equal((await c.send(id, 'three')).status, 202);
  const st = await sim.stats();
  assert.equal(st.rejected.quota, 1);
  assert.deepEqual(st.chats[id].models, ['claude_sonnet_4_5', 'claude_opus_4_5', 'claude_opus_4_5']);
});

test('task limit: replies in progress per account; busy chat is 409', async (t) => {
  const sim = await startSim(['--task-limit', '1', '--piece-delay-ms', '30']);
  t.after(() => sim.stop());
  const c = sim.client();
  await c.token();
  const a = (await c.project()).projectId;
  const b = (await c.project()).projectId;
  assert.equal((await c.rest('GET', '/billing')).body.taskConcurrencyLimit, 1);
  assert.equal((await c.send(a, '[pieces=5]')).status, 202);
  let r = await c.send(b, 'hi');
  assert.deepEqual([r.status, r.body], [429, { error: 'Too many concurrent tasks', code: 'CONCURRENCY_LIMIT' }]);
  r = await c.send(a, 'again');
  assert.equal(r.status, 409);
  assert.equal((await sim.stats()).accounts[0].running, 1);
  await sim.replyDone(a);
  assert.equal((await c.send(b, 'hi')).status, 202);
  await sim.config({ taskLimit: 0, pieceDelayMs: 0 });
  await sim.replyDone(b);
  const st = await sim.stats();
  assert.equal(st.rejected.task_limit, 1);
  assert.equal(st.rejected.chat_busy, 1);
  assert.equal(st.accounts[0].running, 0);
});
