'use strict';
// The older (2025) flow: client-made UUID, plain prompt, adapterName, token = user id.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startSim } = require('../harness.js');

test('2025 flow: no project, plain prompt, adapterName selects the model', async (t) => {
  const sim = await startSim(['--flow', '2025']);
  t.after(() => sim.stop());
  const c = sim.client();
  await c.token();
  const id = crypto.randomUUID();
  const s = await c.stream(id, { query: `token=${c.userId}` });
  await s.waitFor((f) => f.json && f.json.type === 'state');
  assert.deepEqual(s.frames[0].json, { type: 'history', messages: [] });

  let r = await c.rest('POST', '/engine-agent/chat', { prompt: 'my name is Zoë [pieces=3]', adapterName: 'GPT5', chatHistoryId: id });
  assert.equal(r.status, 202);
  let got = await s.waitEnd();
  assert.equal(got.text, 'w1 w2 w3');
  s.frames.length = 0;
  r = await c.rest('POST', '/engine-agent/chat', { prompt: 'User: what is my name', adapterName: 'ClaudeSonnet4_5', chatHistoryId: id });
  assert.equal(r.status, 202);
  got = await s.waitEnd();
  assert.equal(got.text, 'Your name is Zoë.');
  const ch = await sim.chat(id);
  assert.equal(ch.flow, '2025');
  assert.deepEqual(ch.models, ['gpt_5', 'claude_sonnet_4_5']);
  assert.deepEqual(ch.prompts, ['my name is Zoë [pieces=3]', 'User: what is my name']);
  s.close();

  // a chat POST without an open stream also creates the chat; the reply is lost
  const id2 = crypto.randomUUID();
  assert.equal((await c.rest('POST', '/engine-agent/chat', { prompt: 'hi', adapterName: 'GPT5_4', chatHistoryId: id2 })).status, 202);
  assert.equal((await sim.replyDone(id2)).outcome, 'lost');

  assert.equal((await c.rest('POST', '/engine-agent/chat', { prompt: 'hi', adapterName: 'Nope', chatHistoryId: id })).status, 400);
  assert.equal((await c.rest('POST', '/engine-agent/chat', { prompt: 'hi', adapterName: 'Gemini2_5Pro', chatHistoryId: id })).status, 400);
  assert.equal((await c.rest('POST', '/engine-agent/chat', { prompt: 'hi', adapterName: 'GPT5', chatHistoryId: 'not-a-uuid' })).status, 400);
  await assert.rejects(c.stream(id, { query: `token=${c.userId}:${c.orgId}&workspaceId=ws_sim1` }), (e) => e.status === 401);
  await assert.rejects(c.stream('not-a-uuid', { query: `token=${c.userId}` }), (e) => e.status === 404);
  const st = await sim.stats();
  assert.equal(st.counters['POST /engine-agent/chat'], 6);
  assert.equal(st.counters.chats_accepted, 3);
  assert.equal(st.settings.flow, '2025');
});
