// Upstream trouble and load: token refusals, a dropped stream, a client
// that leaves, the older flow, and many streams at once.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startSim, startGateway, collectStream, findChat, waitFor } = require('./lib');

let sim, gw, client;
let nonce = 0;
const tag = () => `u${process.pid}x${++nonce}q`; // q ends it: x1q is not in x10q

test.before(async () => {
  sim = await startSim(['--port', '0']);
  gw = await startGateway(sim);
  client = gw.client();
  // Warm up: session, JWT and model list, so counters below count only the test.
  await client.models.list();
});

test.after(async () => {
  if (gw) await gw.stop();
  if (sim) await sim.stop();
});

async function counters() {
  return (await sim.stats()).counters;
}

test('a token refused once (401) is recovered by finding the session again', async () => {
  const sim2 = await startSim(['--port', '0']);
  await sim2.faults([{ kind: 'token_401' }]);
  const gw2 = await startGateway(sim2);
  try {
    const m = tag();
    const r = await gw2.client().chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: m }] });
    assert.match(r.choices[0].message.content, new RegExp(m));
    const c = (await sim2.stats()).counters;
    assert.equal(c['POST /tokens'], 2, 'the refused mint and the one after it');
    assert.equal(c['GET /v1/client'], 2, 'the session was looked up again after the 401');
  } finally {
    await gw2.stop();
    await sim2.stop();
  }
});

test('a signed-out account gives 503 with Retry-After, not a hang', async () => {
  const sim2 = await startSim(['--port', '0', '--jwt-ttl', '60']);
  const gw2 = await startGateway(sim2);
  try {
    await sim2.faults([{ kind: 'token_401', times: -1 }, { kind: 'client_401', times: -1 }]);
    const c = gw2.client();
    await assert.rejects(c.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e.status === 503 && /signed out/i.test(e.message) && Number(e.headers.get('retry-after')) > 0);
    assert.match(gw2.logs(), /signed out/);
  } finally {
    await gw2.stop();
    await sim2.stop();
  }
});

test('the stream dropped mid-reply gives the client an error, not a hang or an empty success', async () => {
  await sim.faults([{ kind: 'ws_drop', after: 3 }]);
  const m = tag();
  const stream = await client.chat.completions.create({
    model: 'gpt-5.4', stream: true, messages: [{ role: 'user', content: `[pieces=20] ${m}` }],
  });
  await assert.rejects(collectStream(stream), (e) => /stream ended|upstream/i.test(e.message));
  await sim.faults([{ kind: 'ws_drop', after: 3 }]);
  await assert.rejects(client.chat.completions.create({
    model: 'gpt-5.4', messages: [{ role: 'user', content: `[pieces=20] ${tag()}` }],
  }), (e) => e.status === 502);
});

test('upstream 429 (quota) becomes 429 with Retry-After and rests the account until its reset', async () => {
  const sim2 = await startSim(['--port', '0']);
  const gw2 = await startGateway(sim2);
  try {
    const c = gw2.client();
    await sim2.faults([{ kind: 'chat_429', seconds: 120 }]);
    await assert.rejects(c.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: tag() }] }),
      (e) => e.status === 429 && Number(e.headers.get('retry-after')) > 60);
    const posts = (await sim2.stats()).counters['POST /engine-agent/chat'];
    // The account is resting: the next request is refused without bothering the upstream.
    await assert.rejects(c.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: tag() }] }),
      (e) => e.status === 429 && /usage limit/.test(e.message) && Number(e.headers.get('retry-after')) > 60);
    assert.equal((await sim2.stats()).counters['POST /engine-agent/chat'], posts);
  } finally {
    await gw2.stop();
    await sim2.stop();
  }
});

test('an upstream 500 before the first byte is retried; three in a row become 502', async () => {
  const before = (await counters())['POST /engine-agent/chat'] || 0;
  await sim.faults([{ kind: 'chat_500' }]);
  const m = tag();
  const r = await client.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: m }] });
  assert.match(r.choices[0].message.content, new RegExp(m));
  assert.equal((await counters())['POST /engine-agent/chat'] - before, 2, 'one failure, one retry');
  await sim.faults([{ kind: 'chat_500', times: 3 }]);
  const t0 = Date.now();
  await assert.rejects(client.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: tag() }] }),
    (e) => e.status === 502 && e.error.type === 'upstream_error');
  assert.ok(Date.now() - t0 < 5000, 'retries are bounded in time');
});

test('a client that leaves mid-stream closes the upstream stream within a second', async () => {
  const m = tag();
  const body = JSON.stringify({ model: 'gpt-5.4', stream: true,
    messages: [{ role: 'user', content: `[pieces=100] [slow=100] ${m}` }] });
  await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: gw.port, path: '/v1/chat/completions', method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${gw.key}` } }, (res) => {
      let n = 0;
      res.on('data', () => { if (++n === 3) { req.destroy(); resolve(); } });
      res.on('error', () => {});
    });
    req.on('error', (e) => { if (e.code !== 'ECONNRESET') reject(e); });
    req.end(body);
  });
  const t0 = Date.now();
  const chats = await waitFor(async () => {
    const found = await findChat(sim, (c) => c.prompts.some((p) => p.includes(m)));
    return found.length ? found : null;
  });
  await waitFor(async () => (await sim.chat(chats[0].id)).wsOpen === 0, { timeoutMs: 1000, what: 'the upstream WebSocket to close' });
  assert.ok(Date.now() - t0 <= 1000);
});

test('200 concurrent streams all get their exact reply', async () => {
  const n = 200;
  const tags = Array.from({ length: n }, () => tag());
  const results = await Promise.all(tags.map(async (m) => {
    const s = await client.chat.completions.create({ model: 'gpt-5.4', stream: true,
      messages: [{ role: 'user', content: `[pieces=30] ${m}` }] });
    return collectStream(s);
  }));
  const st = await sim.stats();
  const byTag = new Map();
  for (const [, c] of Object.entries(st.chats)) {
    const hit = tags.find((m) => c.prompts.some((p) => p.includes(m)));
    if (hit) byTag.set(hit, c);
  }
  assert.equal(byTag.size, n, 'one upstream chat per stream');
  let ok = 0;
  results.forEach((r, i) => { if (r.content === byTag.get(tags[i]).replies[0]) ok++; });
  assert.equal(ok, n);
});

test('the 2025 flow: no project, plain prompt with adapterName, user-id token', async () => {
  const sim25 = await startSim(['--port', '0', '--flow', '2025']);
  const gw25 = await startGateway(sim25, { env: { ENGINE_FLOW: '2025' } });
  try {
    const c = gw25.client();
    const a = [{ role: 'user', content: `my name is Zed ${tag()}` }];
    const r1 = await c.chat.completions.create({ model: 'claude-sonnet-4-5', messages: a });
    a.push(r1.choices[0].message, { role: 'user', content: 'what is my name?' });
    const s = await c.chat.completions.create({ model: 'claude-sonnet-4-5', stream: true, messages: a });
    const { content } = await collectStream(s);
    assert.equal(content, 'Your name is Zed.');
    const st = await sim25.stats();
    assert.equal(st.counters['POST /projects/create-hosted'] || 0, 0);
    const chats = Object.values(st.chats);
    assert.equal(chats.length, 1);
    assert.equal(chats[0].prompts.length, 2, 'turn 2 continued the same chat');
    assert.equal(chats[0].prompts[1], 'what is my name?');
  } finally {
    await gw25.stop();
    await sim25.stop();
  }
});

test('one Clerk session lookup, one JWT mint and one model fetch however many requests wait', async () => {
  const sim2 = await startSim(['--port', '0']);
  const gw2 = await startGateway(sim2);
  try {
    const c = gw2.client();
    const n = 50;
    const rs = await Promise.all(Array.from({ length: n }, (_, i) =>
      c.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: `first wave ${i}` }] })));
    assert.equal(rs.length, n);
    const cn = (await sim2.stats()).counters;
    assert.equal(cn['GET /v1/client'], 1);
    assert.equal(cn['POST /tokens'], 1);
    assert.equal(cn['GET /chat/adapters'], 1);
    assert.equal(cn['POST /projects/create-hosted'], n, 'one project per new conversation');
  } finally {
    await gw2.stop();
    await sim2.stop();
  }
});

test('concurrent requests for different models each run on the model they asked for', async () => {
  const models = ['gpt-5.4', 'claude-sonnet-4-5', 'gpt-5', 'claude-sonnet-4-5', 'gpt-5.4', 'gpt-5'];
  const keys = { 'gpt-5.4': 'gpt_5_4', 'claude-sonnet-4-5': 'claude_sonnet_4_5', 'gpt-5': 'gpt_5' };
  const before = (await sim.stats()).counters['PATCH /teams/preferred-model'] || 0;
  const tags = [];
  await Promise.all(Array.from({ length: 30 }, (_, i) => {
    const model = models[i % models.length];
    const m = tag();
    tags.push([m, model]);
    return client.chat.completions.create({ model, messages: [{ role: 'user', content: `model check ${m}` }] })
      .then((r) => assert.equal(r.model, model));
  }));
  const st = await sim.stats();
  for (const [m, model] of tags) {
    const chat = Object.values(st.chats).find((c) => c.prompts.some((p) => p.includes(m)));
    assert.equal(chat.models[0], keys[model], `${m} asked for ${model}`);
  }
  const patches = st.counters['PATCH /teams/preferred-model'] - before;
  assert.ok(patches >= 2 && patches <= 30, `model switches: ${patches}`);
});
