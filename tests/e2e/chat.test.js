// The core path with the official OpenAI client: models, replies streamed
// and not, usage, reasoning, errors, and continuity between turns.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { startSim, startGateway, collectStream, findChat, readSSE, waitFor } = require('./lib');

let sim, gw, client;
let nonce = 0;
const tag = () => `n${process.pid}x${++nonce}q`; // q ends it: x1q is not in x10q

test.before(async () => {
  sim = await startSim(['--port', '0']);
  gw = await startGateway(sim);
  client = gw.client();
});

test.after(async () => {
  if (gw) await gw.stop();
  if (sim) await sim.stop();
});

async function simChatFor(marker) {
  const chats = await findChat(sim, (c) => c.prompts.some((p) => p.includes(marker)));
  assert.equal(chats.length, 1, `exactly one upstream chat for ${marker}`);
  return sim.chat(chats[0].id);
}

test('GET /v1/models lists the enabled upstream adapters by vendor name', async () => {
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id).sort();
  const r = await fetch(`${sim.base}/chat/adapters`, { headers: { Origin: 'https://cto.new' } });
  assert.equal(r.status, 401, 'the simulator needs a JWT: the gateway fetched it with one');
  assert.ok(ids.includes('gpt-5.4') && ids.includes('claude-sonnet-4-5'), JSON.stringify(ids));
  for (const m of list.data) assert.equal(m.object, 'model');
  const one = await client.models.retrieve('gpt-5.4');
  assert.equal(one.id, 'gpt-5.4');
  assert.equal(one.owned_by, 'openai');
  await assert.rejects(client.models.retrieve('no-such-model'), (e) => e.status === 404);
});

test('non-streaming reply equals the upstream reply, with usage', async () => {
  const m = tag();
  const r = await client.chat.completions.create({
    model: 'gpt-5.4', messages: [{ role: 'user', content: `hello ${m}` }],
  });
  const up = await simChatFor(m);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, up.replies[0]);
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.equal(up.models[0], 'gpt_5_4', 'the preferred model was set before the chat');
});

for (const mode of ['delta', 'snapshot']) {
  test(`streamed text equals the upstream reply exactly (${mode} pieces)`, async () => {
    const m = tag();
    if (mode === 'snapshot') await sim.faults([{ kind: 'snapshot' }]);
    const stream = await client.chat.completions.create({
      model: 'gpt-5.4', stream: true, messages: [{ role: 'user', content: `[pieces=200] ${m}` }],
    });
    const { content, chunks } = await collectStream(stream);
    const up = await simChatFor(m);
    assert.equal(up.details[0].snapshot, mode === 'snapshot');
    assert.equal(content, up.replies[0]);
    assert.equal(up.details[0].pieces.length, 200);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
    const ids = new Set(chunks.map((c) => c.id));
    const created = new Set(chunks.map((c) => c.created));
    assert.equal(ids.size, 1, 'one id for every chunk');
    assert.equal(created.size, 1, 'one created for every chunk');
  });
}

test('SSE wire format: headers, role chunk, usage chunk, [DONE]', async () => {
  const m = tag();
  const res = await gw.fetch('/v1/chat/completions', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-5.4', stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: `[pieces=5] ${m}` }] }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  assert.equal(res.headers.get('x-accel-buffering'), 'no');
  const { events } = await readSSE(res);
  const data = events.filter((e) => e.data).map((e) => e.data);
  assert.equal(data.at(-1), '[DONE]');
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  const usage = chunks.at(-1);
  assert.deepEqual(usage.choices, []);
  assert.ok(usage.usage.completion_tokens > 0);
  const finish = chunks.at(-2);
  assert.equal(finish.choices[0].finish_reason, 'stop');
  const text = chunks.slice(1, -2).map((c) => c.choices[0].delta.content).join('');
  const up = await simChatFor(m);
  assert.equal(text, up.replies[0]);
});

test('reasoning pieces arrive as reasoning_content, streamed and not', async () => {
  const m1 = tag();
  const s = await client.chat.completions.create({
    model: 'gpt-5.4', stream: true, messages: [{ role: 'user', content: `[think] ${m1}` }],
  });
  const got = await collectStream(s);
  const up1 = await simChatFor(m1);
  assert.ok(up1.thinking[0].length > 0);
  assert.equal(got.reasoning, up1.thinking[0]);
  assert.equal(got.content, up1.replies[0]);

  const m2 = tag();
  const r = await client.chat.completions.create({
    model: 'gpt-5.4', messages: [{ role: 'user', content: `[think] ${m2}` }],
  });
  const up2 = await simChatFor(m2);
  assert.equal(r.choices[0].message.reasoning_content, up2.thinking[0]);
  assert.equal(r.choices[0].message.content, up2.replies[0]);
});

test('multi-byte text survives the round trip', async () => {
  const m = tag();
  const r = await client.chat.completions.create({
    model: 'gpt-5.4', messages: [{ role: 'user', content: `[unicode] héllo 你好 🙂 ${m}` }],
  });
  const up = await simChatFor(m);
  assert.ok(up.prompts[0].includes('你好 🙂'), 'the prompt reached the upstream intact');
  assert.equal(r.choices[0].message.content, up.replies[0]);
});

test('two interleaved conversations each keep their own context', async () => {
  const a = [{ role: 'user', content: `my name is Alice ${tag()}` }];
  const b = [{ role: 'user', content: `my name is Bob ${tag()}` }];
  const ra = await client.chat.completions.create({ model: 'gpt-5.4', messages: a });
  const rb = await client.chat.completions.create({ model: 'gpt-5.4', messages: b });
  a.push(ra.choices[0].message, { role: 'user', content: 'what is my name?' });
  b.push(rb.choices[0].message, { role: 'user', content: 'what is my name?' });
  // Sent at once, b first, so the two are in flight together.
  const [rb2, ra2] = await Promise.all([
    client.chat.completions.create({ model: 'gpt-5.4', messages: b }),
    client.chat.completions.create({ model: 'gpt-5.4', messages: a }),
  ]);
  assert.equal(ra2.choices[0].message.content, 'Your name is Alice.');
  assert.equal(rb2.choices[0].message.content, 'Your name is Bob.');
});

test('a wrong key gets 401 in OpenAI shape', async () => {
  const bad = gw.client({ apiKey: 'sk-wrong' });
  await assert.rejects(bad.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 401 && e.error && e.error.type === 'authentication_error');
  const r = await fetch(`${gw.base}/v1/models`);
  assert.equal(r.status, 401);
  const body = await r.json();
  assert.equal(body.error.type, 'authentication_error');
  const viaHeader = await fetch(`${gw.base}/v1/models`, { headers: { 'x-api-key': gw.key } });
  assert.equal(viaHeader.status, 200);
});

test('bad JSON and bad fields get 400 naming the problem', async () => {
  const r = await gw.fetch('/v1/chat/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"model": "gpt-5.4", "messages": [',
  });
  assert.equal(r.status, 400);
  const e = (await r.json()).error;
  assert.equal(e.type, 'invalid_request_error');
  assert.match(e.message, /JSON/);
  await assert.rejects(client.chat.completions.create({ model: 'gpt-5.4', messages: [] }),
    (err) => err.status === 400 && /messages/.test(err.error.param || err.message));
  await assert.rejects(client.chat.completions.create({ model: 'gpt-5.4', n: 2, messages: [{ role: 'user', content: 'x' }] }),
    (err) => err.status === 400 && err.error.param === 'n');
  await assert.rejects(client.chat.completions.create({ model: 'gpt-5.4',
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA==' } }] }] }),
  (err) => err.status === 400 && /image/i.test(err.message));
});

test('an unknown model gets 404 model_not_found saying how to list models', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'gpt-0', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 404 && e.error.code === 'model_not_found' && /\/v1\/models/.test(e.message));
});

test('unknown routes get an OpenAI-shaped 404', async () => {
  const r = await gw.fetch('/v1/nothing-here');
  assert.equal(r.status, 404);
  const body = await r.json();
  assert.equal(typeof body.error.message, 'string');
  const h = await fetch(`${gw.base}/healthz`);
  assert.equal(h.status, 200);
});
