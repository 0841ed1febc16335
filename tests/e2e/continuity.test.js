// Conversations that survive: only the new turn goes upstream, chats never
// mix, edits fall back to a transcript, restarts (SQLite) and fleets (Redis)
// keep one upstream chat per conversation.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { startSim, startGateway, waitFor, freePort, findChat, spawnTracked } = require('./lib');

let sim;
let nonce = 0;
const tag = () => `c${process.pid}x${++nonce}q`;

test.before(async () => { sim = await startSim(['--port', '0']); });
test.after(async () => { if (sim) await sim.stop(); });

async function chatsWith(marker) {
  return findChat(sim, (c) => c.prompts.some((p) => p.includes(marker)));
}

async function turn(client, msgs, content) {
  msgs.push({ role: 'user', content });
  const r = await client.chat.completions.create({ model: 'gpt-5.4', messages: msgs });
  msgs.push(r.choices[0].message);
  return r.choices[0].message.content;
}

test('turns 2 and 3 send only the new turn into the same upstream chat', async () => {
  const gw = await startGateway(sim);
  try {
    const c = gw.client();
    const m = tag();
    const msgs = [{ role: 'system', content: 'You are terse.' }];
    await turn(c, msgs, `my name is Ann ${m}`);
    await turn(c, msgs, 'what is my name?');
    assert.equal(await turn(c, msgs, 'what is my name? again'), 'Your name is Ann.');
    const chats = await chatsWith(m);
    assert.equal(chats.length, 1);
    assert.equal(chats[0].prompts.length, 3);
    assert.ok(chats[0].prompts[0].includes('You are terse.'), 'turn 1 carries the system prompt');
    assert.equal(chats[0].prompts[1], 'what is my name?');
    assert.equal(chats[0].prompts[2], 'what is my name? again');
  } finally {
    await gw.stop();
  }
});

test('identical openings never share an upstream chat, across keys or within one key', async () => {
  const gw = await startGateway(sim, { key: 'sk-one', env: { API_MASTER_KEY: 'sk-one,sk-two' } });
  try {
    const one = gw.client({ apiKey: 'sk-one' });
    const two = gw.client({ apiKey: 'sk-two' });
    const m = tag();
    const opening = `my name is Kim ${m}`;
    const a = []; const b = []; const c = [];
    await turn(one, a, opening);
    await turn(two, b, opening);
    await turn(one, c, opening);
    await turn(one, a, `second turn A ${m}`);
    await turn(two, b, `second turn B ${m}`);
    await turn(one, c, `second turn C ${m}`);
    const ids = {};
    for (const x of ['A', 'B', 'C']) {
      const found = await chatsWith(`second turn ${x} ${m}`);
      assert.equal(found.length, 1, x);
      ids[x] = found[0].id;
    }
    assert.equal(new Set(Object.values(ids)).size, 3, JSON.stringify(ids));
    for (const x of ['A', 'B', 'C']) {
      const chat = await sim.chat(ids[x]);
      assert.match(chat.replies.at(-1), new RegExp(`second turn ${x}`));
    }
  } finally {
    await gw.stop();
  }
});

test('an edited history falls back to a transcript and the model answers from it', async () => {
  const gw = await startGateway(sim);
  try {
    const c = gw.client();
    const m = tag();
    const msgs = [];
    await turn(c, msgs, `my name is Eve ${m}`);
    msgs[0].content = `my name is Eva ${m}`; // edited by the user
    assert.equal(await turn(c, msgs, 'what is my name?'), 'Your name is Eva.');
    const chats = await chatsWith(m);
    assert.equal(chats.length, 2, 'the edit opened a second upstream chat');
    const edited = chats.find((x) => x.prompts[0].includes('Eva'));
    assert.equal(edited.prompts.length, 1);
    assert.match(edited.prompts[0], /User: my name is Eva[\s\S]*Assistant: Nice to meet you, Eve\.[\s\S]*User: what is my name\?/);
  } finally {
    await gw.stop();
  }
});

test('a regenerated turn does not write into the chat that moved on', async () => {
  const gw = await startGateway(sim);
  try {
    const c = gw.client();
    const m = tag();
    const msgs = [];
    await turn(c, msgs, `my name is Reg ${m}`);
    const again = msgs.slice();
    await turn(c, msgs, `next ${m}`);
    await turn(c, again, `next ${m}`); // regenerate: the same history once more
    const chats = await chatsWith(m);
    assert.equal(chats.length, 2);
    const first = chats.find((x) => x.prompts.length === 2);
    assert.ok(first, 'the original chat got exactly its two turns');
  } finally {
    await gw.stop();
  }
});

test('a transcript over the prompt budget is trimmed, oldest first, and the log says so', async () => {
  const gw = await startGateway(sim, { env: { PROMPT_BUDGET: '1024' } });
  try {
    const c = gw.client();
    const m = tag();
    const msgs = [{ role: 'system', content: 'SYSTEM-KEPT' }];
    for (let i = 0; i < 12; i++) {
      msgs.push({ role: 'user', content: `old question ${i} ${'x'.repeat(150)}` });
      msgs.push({ role: 'assistant', content: `old answer ${i} ${'y'.repeat(150)}` });
    }
    msgs.push({ role: 'user', content: `newest question ${m}` });
    await c.chat.completions.create({ model: 'gpt-5.4', messages: msgs });
    const [chat] = await chatsWith(m);
    const p = chat.prompts[0];
    assert.ok(Buffer.byteLength(p) <= 1024, `prompt is ${Buffer.byteLength(p)} bytes`);
    assert.ok(p.includes('SYSTEM-KEPT') && p.includes(`newest question ${m}`));
    assert.ok(!p.includes('old question 0 '), 'the oldest turn was dropped');
    assert.match(gw.logs(), /prompt trimmed/);
  } finally {
    await gw.stop();
  }
});

test('kill -9 between turns (SQLite): the restarted gateway continues the same chat', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'el2a-sqlite-'));
  const port = await freePort();
  const env = { STORE_URL: 'sqlite://data/test.db' };
  let gw = await startGateway(sim, { dir, port, env });
  const m = tag();
  const msgs = [];
  await turn(gw.client(), msgs, `my name is Sol ${m}`);
  await gw.stop('SIGKILL');
  gw = await startGateway(sim, { dir, port, env });
  try {
    assert.equal(await turn(gw.client(), msgs, 'what is my name?'), 'Your name is Sol.');
    const chats = await chatsWith(m);
    assert.equal(chats.length, 1);
    assert.deepEqual(chats[0].prompts.slice(1), ['what is my name?']);
  } finally {
    await gw.stop();
  }
});

test('a rotated cookie survives a restart (SQLite)', async () => {
  const sim2 = await startSim(['--port', '0']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'el2a-rot-'));
  const env = { STORE_URL: 'sqlite://data/test.db' };
  let gw = await startGateway(sim2, { dir, env });
  try {
    await sim2.faults([{ kind: 'rotate' }]);
    await gw.client().models.list();
    const st = await sim2.stats();
    assert.equal(st.accounts[0].rotations, 1);
    assert.notEqual(st.accounts[0].cookie, 'sim_client_default');
    assert.match(gw.logs(), /rotated/);
    assert.ok(!gw.logs().includes(st.accounts[0].cookie), 'the new cookie is not logged');
    await gw.stop('SIGKILL');
    gw = await startGateway(sim2, { dir, env });
    const r = await gw.client().chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'after restart' }] });
    assert.equal(r.choices[0].message.content, 'You said: after restart');
    const st2 = await sim2.stats();
    assert.equal(st2.rejected.clerk_auth || 0, 0, 'the old cookie was never sent again');
  } finally {
    await gw.stop();
    await sim2.stop();
  }
});

function startRedis(port) {
  const proc = spawnTracked('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' });
  const exited = new Promise((r) => proc.on('exit', r));
  return { proc, exited, stop: async () => { proc.kill('SIGKILL'); await exited; } };
}

async function redisUp(port) {
  return waitFor(() => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.write('PING\r\n'); });
    s.on('data', (d) => { s.destroy(); resolve(String(d).startsWith('+PONG')); });
    s.on('error', () => resolve(false));
  }), { timeoutMs: 10000, what: 'redis to answer PING' });
}

test('a fleet sharing Redis keeps one upstream chat; a Redis outage degrades, then recovers', async () => {
  const rport = await freePort();
  let redis = startRedis(rport);
  await redisUp(rport);
  const env = { STORE_URL: `redis://127.0.0.1:${rport}/0` };
  const g1 = await startGateway(sim, { env });
  const g2 = await startGateway(sim, { env });
  try {
    const m = tag();
    const msgs = [];
    await turn(g1.client(), msgs, `my name is Flo ${m}`);
    await turn(g2.client(), msgs, 'what is my name?');
    await turn(g1.client(), msgs, 'and once more, what is my name?');
    const chats = await chatsWith(m);
    assert.equal(chats.length, 1, 'one upstream chat across both gateways');
    assert.equal(chats[0].prompts.length, 3);
    assert.equal(msgs.at(-1).content, 'Your name is Flo.');

    await redis.stop();
    const m2 = tag();
    const during = [];
    const t0 = Date.now();
    // Degraded: no conversation memory, but an answer (or a clear error), never a hang.
    try {
      await turn(g2.client(), during, `my name is Out ${m2}`);
      await turn(g2.client(), during, 'what is my name?');
      assert.equal(during.at(-1).content, 'Your name is Out.', 'the transcript kept the context');
    } catch (e) {
      assert.ok(e.status >= 500 && e.status < 600, `a clear error: ${e.message}`);
    }
    assert.ok(Date.now() - t0 < 15000, 'bounded');
    assert.match(g2.logs(), /redis|store/i);

    redis = startRedis(rport);
    await redisUp(rport);
    const backCount = (g) => (g.logs().match(/redis back/g) || []).length;
    await waitFor(() => backCount(g1) >= 1 && backCount(g2) >= 1, { timeoutMs: 15000, what: 'both gateways to reconnect' });
    const m3 = tag();
    const after = [];
    await turn(g1.client(), after, `my name is Back ${m3}`);
    await turn(g2.client(), after, 'what is my name?');
    assert.equal(after.at(-1).content, 'Your name is Back.');
    const back = await chatsWith(m3);
    assert.equal(back.length, 1, 'continuity works again after the outage');
    assert.equal(back[0].prompts.length, 2);
  } finally {
    await g1.stop();
    await g2.stop();
    await redis.stop();
  }
});

test('an account resting at its quota stays resting across a restart (SQLite)', async () => {
  const sim2 = await startSim(['--port', '0']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'el2a-quota-'));
  const env = { STORE_URL: 'sqlite://data/test.db' };
  let gw = await startGateway(sim2, { dir, env });
  try {
    await sim2.faults([{ kind: 'chat_429', seconds: 300 }]);
    await assert.rejects(gw.client().chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'q1' }] }),
      (e) => e.status === 429);
    await gw.stop('SIGKILL');
    gw = await startGateway(sim2, { dir, env });
    const posts = (await sim2.stats()).counters['POST /engine-agent/chat'];
    await assert.rejects(gw.client().chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'q2' }] }),
      (e) => e.status === 429 && Number(e.headers.get('retry-after')) > 200);
    assert.equal((await sim2.stats()).counters['POST /engine-agent/chat'], posts, 'the upstream was not asked again');
  } finally {
    await gw.stop();
    await sim2.stop();
  }
});
