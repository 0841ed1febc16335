'use strict';
// The 2026 flow end to end, the deterministic model, directives, and the basic HTTP errors.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startSim, CLERK_QUERY, ORIGIN } = require('../harness.js');

let sim;
test.before(async () => { sim = await startSim(); });
test.after(async () => { await sim.stop(); });
test.beforeEach(async () => { await sim.reset(); });

async function ready() {
  const c = sim.client();
  await c.token();
  return c;
}

test('full 2026 flow: client, token, adapters, model, project, stream, offers, chat, frames', async () => {
  const c = sim.client();
  const client = await c.session();
  assert.equal(client.response.last_active_session_id, 'sess_sim1');
  assert.deepEqual(client.response.sessions[0].user, { id: 'user_sim1' });
  assert.equal(client.response.sessions[0].last_active_organization_id, 'org_sim1');
  assert.equal(client.client, null);

  const jwt = await c.token();
  const [h, p] = jwt.split('.').map((x, i) => (i < 2 ? JSON.parse(Buffer.from(x, 'base64url')) : x));
  assert.deepEqual(h, { alg: 'RS256', typ: 'JWT' });
  assert.equal(p.sub, 'user_sim1');
  assert.equal(p.sid, 'sess_sim1');
  assert.equal(p.org_id, 'org_sim1');
  assert.equal(p.exp - p.iat, 60);

  const touch = await c.clerk('POST', '/v1/client/sessions/sess_sim1/touch', '');
  assert.equal(touch.status, 200);

  const ad = await c.rest('GET', '/chat/adapters');
  assert.equal(ad.status, 200);
  const g = ad.body.chatAdapters.find((a) => a.key === 'gpt_5_4');
  assert.deepEqual(g, { key: 'gpt_5_4', model: 'gpt-5.4', engineAgentKey: 'GPT5_4', provider: 'openai', minimumTier: 'free', enabled: true, usageMultiplier: 1, supportsImages: true });
  const opus = ad.body.chatAdapters.find((a) => a.key === 'claude_opus_4_5');
  assert.equal(opus.usageMultiplier, 3);
  assert.equal(opus.minimumTier, 'pro');
  assert.ok(ad.body.chatAdapters.some((a) => a.enabled === false));
  assert.ok(ad.body.chatAdapters.some((a) => a.engineAgentKey === 'ClaudeSonnet4_5'));

  const pm = await c.rest('PATCH', '/teams/preferred-model', { modelKey: 'gpt_5_4' });
  assert.equal(pm.status, 200);
  assert.deepEqual(pm.body, { modelKey: 'gpt_5_4' });

  const proj = await c.project('hello');
  assert.match(proj.projectId, /^[0-9a-f-]{36}$/);
  assert.equal(proj.workspaceId, 'ws_sim1');
  assert.ok(proj.projectShortCode);
  const id = proj.projectId;

  const s = await c.stream(id);
  await s.waitFor((f) => f.json && f.json.type === 'state');
  assert.deepEqual(s.frames[0].json, { type: 'history', messages: [] });
  assert.deepEqual(s.frames[1].json, { type: 'state', state: { inProgress: false, cancelled: false, taskId: null } });

  const off = await c.rest('POST', '/engine-agent/offers', { chatHistoryId: id, surface: 'ENGINE_AGENT' });
  assert.deepEqual([off.status, off.body], [200, { offers: [] }]);

  const r = await c.send(id, 'System: be brief\nUser: hello there');
  assert.equal(r.status, 202);
  assert.equal(r.text, '');
  const got = await s.waitEnd();
  assert.equal(got.text, 'You said: hello there');
  assert.deepEqual(got.pieces, ['You ', 'said: ', 'hello ', 'there']);
  await s.waitFor((f) => f.json && f.json.type === 'label');

  const t = s.types();
  assert.deepEqual(t, ['history', 'state', 'state', 'update', 'update', 'update', 'update', 'update', 'state', 'label']);
  assert.equal(s.frames[2].json.state.inProgress, true);
  assert.match(s.frames[2].json.state.taskId, /^task_/);
  assert.deepEqual(s.frames[3].inners, [{ role: 'user', content: 'System: be brief\nUser: hello there' }]);
  assert.ok(s.frames[3].json.buffer.endsWith('\n'));
  const ids = new Set(s.inners().filter((o) => o.type === 'chat').map((o) => o.id));
  assert.equal(ids.size, 1);
  assert.match([...ids][0], /^msg_/);
  assert.equal(s.frames[8].json.state.inProgress, false);
  assert.equal(s.frames[9].json.label, 'hello there');

  // ping/pong
  s.ws.send('ping');
  await s.waitFor((f) => f.raw === 'pong');

  // The simulator recorded both sides.
  const d = await sim.replyDone(id);
  assert.equal(d.outcome, 'complete');
  const ch = await sim.chat(id);
  assert.deepEqual(ch.prompts, ['System: be brief\nUser: hello there']);
  assert.deepEqual(ch.models, ['gpt_5_4']);
  assert.deepEqual(ch.replies, ['You said: hello there']);
  assert.deepEqual(ch.details[0].pieces, got.pieces);

  // Second reply: no second label; history on a fresh connection holds both sides.
  await c.rest('PATCH', '/teams/preferred-model', { modelKey: 'claude_sonnet_4_5' });
  const before = s.frames.length;
  assert.equal((await c.send(id, 'again')).status, 202);
  await sim.replyDone(id, 1);
  await s.waitFor((f, i) => i > before && f.json && f.json.type === 'state' && !f.json.state.inProgress);
  assert.equal(s.types().filter((x) => x === 'label').length, 1);
  assert.deepEqual((await sim.chat(id)).models, ['gpt_5_4', 'claude_sonnet_4_5']);
  const s2 = await c.stream(id);
  const hist = await s2.waitFor((f) => f.json && f.json.type === 'history');
  assert.deepEqual(hist.json.messages.map((m) => [m.role, m.content]), [
    ['user', 'System: be brief\nUser: hello there'], ['assistant', 'You said: hello there'], ['user', 'again'], ['assistant', 'You said: again'],
  ]);
  s.close();
  s2.close();

  const st = await sim.stats();
  assert.equal(st.counters['GET /v1/client'], 1);
  assert.equal(st.counters['POST /tokens'], 1);
  assert.equal(st.counters['POST /touch'], 1);
  assert.equal(st.counters['GET /chat/adapters'], 1);
  assert.equal(st.counters['PATCH /teams/preferred-model'], 2);
  assert.equal(st.counters['POST /projects/create-hosted'], 1);
  assert.equal(st.counters['POST /engine-agent/offers'], 1);
  assert.equal(st.counters['POST /engine-agent/chat'], 2);
  assert.equal(st.counters.ws_connect, 2);
  assert.equal(st.counters.ws_ping, 1);
  assert.equal(st.accounts[0].dailyUsage, 2);
  assert.equal(st.accounts[0].preferredModel, 'claude_sonnet_4_5');
  assert.ok(st.cpu.user > 0);
});

test('memory: the name is remembered per chat only', async () => {
  const c = await ready();
  const a = (await c.project()).projectId;
  const b = (await c.project()).projectId;
  const s = await c.stream(a);
  await c.send(a, 'Hi! my name is Ann');
  assert.equal((await s.waitEnd()).text, 'Nice to meet you, Ann.');
  s.frames.length = 0;
  await c.send(a, 'User: what is my name?');
  assert.equal((await s.waitEnd()).text, 'Your name is Ann.');
  const sb = await c.stream(b);
  await c.send(b, 'what is my name?');
  assert.equal((await sb.waitEnd()).text, "I don't know your name.");
  // the whole newest prompt counts too, and the last name wins
  await c.send(b, 'User: my name is Bob\nAssistant: hi\nUser: my name is Carl\nUser: what is my name');
  await sim.replyDone(b, 1);
  assert.deepEqual((await sim.chat(b)).replies, ["I don't know your name.", 'Your name is Carl.']);
  s.close();
  sb.close();
});

test('directives: pieces, bytes, think, unicode, tool, batch, slow', async () => {
  const c = await ready();
  const id = (await c.project()).projectId;
  const s = await c.stream(id);
  const run = async (prompt) => {
    s.frames.length = 0;
    assert.equal((await c.send(id, prompt)).status, 202);
    return s.waitEnd();
  };

  let r = await run('count [pieces=5]');
  assert.deepEqual(r.pieces, ['w1 ', 'w2 ', 'w3 ', 'w4 ', 'w5']);
  assert.equal(r.text, 'w1 w2 w3 w4 w5');

  r = await run('[bytes=1050] big');
  assert.equal(Buffer.byteLength(r.text), 1050);
  assert.equal(r.pieces.length, 11);
  assert.ok(r.pieces.slice(0, 10).every((p) => p.length === 100));

  r = await run('ponder [think]');
  assert.equal(r.thinking, 'Thinking about it.');
  assert.equal(r.text, 'You said: ponder');
  const kinds = s.inners().map((o) => o.type || o.role);
  assert.ok(kinds.lastIndexOf('thinking') < kinds.indexOf('chat'));

  r = await run('[unicode]');
  assert.equal(r.text, 'héllo wörld 你好 🙂');
  assert.ok(r.pieces.length >= 5);

  r = await run('use a tool [tool]');
  assert.equal(r.text, 'You said: use a tool');
  const inn = s.inners();
  const ti = inn.findIndex((o) => o.type === 'tool_call');
  assert.ok(ti > inn.findIndex((o) => o.type === 'chat'), 'tool_call arrives between answer pieces');
  assert.ok(ti < inn.length - 1);

  r = await run('[batch] one two three four five six seven');
  assert.equal(r.text, 'You said: one two three four five six seven');
  assert.ok(s.frames.some((f) => f.inners && f.inners.length === 3));
  assert.ok(s.frames.every((f) => !f.inners || f.json.buffer.split('\n').length === f.inners.length + 1));

  const t0 = Date.now();
  r = await run('[slow=40] a b c');
  assert.ok(Date.now() - t0 >= 4 * 40 - 5, 'five pieces at 40 ms each');
  assert.equal(r.text, 'You said: a b c');

  const ch = await sim.chat(id);
  assert.equal(ch.replies.length, 7);
  assert.deepEqual(ch.thinking[2], 'Thinking about it.');
  assert.equal(ch.details[6].delayMs, 40);
  s.close();
});

test('question: last non-empty line, label stripped, truncated to 200 chars', async () => {
  const c = await ready();
  const id = (await c.project()).projectId;
  await c.send(id, `User: first\n\nuser:   ${'x'.repeat(300)}  \n\n`);
  await sim.replyDone(id);
  assert.equal((await sim.chat(id)).replies[0], `You said: ${'x'.repeat(200)}`);
});

test('snapshot mode via config: each piece is the whole text so far', async () => {
  const c = await ready();
  const id = (await c.project()).projectId;
  const s = await c.stream(id);
  await sim.config({ mode: 'snapshot' });
  await c.send(id, 'a b');
  await s.waitEnd();
  const contents = s.inners().filter((o) => o.type === 'chat').map((o) => o.chat.content);
  assert.deepEqual(contents, ['You ', 'You said: ', 'You said: a ', 'You said: a b']);
  const ch = await sim.chat(id);
  assert.equal(ch.details[0].snapshot, true);
  assert.deepEqual(ch.details[0].pieces, ['You ', 'said: ', 'a ', 'b']);
  s.close();
});

test('reply is lost when no stream is open, and goes to every open stream', async () => {
  const c = await ready();
  const id = (await c.project()).projectId;
  await c.send(id, 'nobody listens');
  assert.equal((await sim.replyDone(id)).outcome, 'lost');
  const s1 = await c.stream(id);
  const s2 = await c.stream(id);
  assert.deepEqual((await sim.stats()).wsOpenByChat, { [id]: 2 });
  await c.send(id, 'both');
  assert.equal((await s1.waitEnd()).text, 'You said: both');
  assert.equal((await s2.waitEnd()).text, 'You said: both');
  s1.close();
  s2.close();
});

test('HTTP errors: origin 403, Clerk query 400, bad JWT 401, 413, 404, 400, unknown model 400', async () => {
  const c = await ready();
  const id = (await c.project()).projectId;

  let r = await fetch(`${sim.base}/chat/adapters`, { headers: { Authorization: `Bearer ${c.jwt}` } });
  assert.equal(r.status, 403);
  r = await fetch(`${sim.base}/chat/adapters`, { headers: { Authorization: `Bearer ${c.jwt}`, Origin: 'https://evil.example' } });
  assert.equal(r.status, 403);
  r = await fetch(`${sim.base}/v1/client?_clerk_js_version=6.7.3`, { headers: c.headers() });
  assert.equal(r.status, 400);
  r = await fetch(`${sim.base}/v1/client?${CLERK_QUERY}`, { headers: { Origin: ORIGIN, Cookie: '__client=sim_client_nope' } });
  assert.equal(r.status, 401);
  assert.equal((await r.json()).errors[0].code, 'signed_out');

  const bad = await c.rest('GET', '/billing', undefined, { jwt: c.jwt.slice(0, -2) + 'xx' });
  assert.deepEqual([bad.status, bad.body], [401, { error: 'Unauthorized', message: 'Invalid or expired token' }]);
  assert.equal((await c.rest('GET', '/billing', undefined, { jwt: 'nope' })).status, 401);
  assert.equal((await c.rest('GET', '/billing', undefined, { jwt: '' })).status, 401);

  const big = c.chatBody(id, 'x'.repeat(25000));
  assert.ok(JSON.stringify(big).length > 32768);
  r = await c.rest('POST', '/engine-agent/chat', big);
  assert.deepEqual([r.status, r.body], [413, { error: 'Message too large' }]);
  const fits = c.chatBody(id, 'y'.repeat(24000));
  assert.ok(JSON.stringify(fits).length <= 32768);
  assert.equal((await c.rest('POST', '/engine-agent/chat', fits)).status, 202);
  await sim.replyDone(id);

  assert.equal((await c.send('00000000-0000-4000-8000-000000000000', 'hi')).status, 404);
  assert.equal((await c.rest('POST', '/engine-agent/chat', { prompt: '***', encoded: true, chatHistoryId: id })).status, 400);
  assert.equal((await c.rest('POST', '/engine-agent/chat', { encoded: true, chatHistoryId: id })).status, 400);
  assert.equal((await c.rest('POST', '/engine-agent/chat', '{not json')).status, 400);
  assert.equal((await c.rest('PATCH', '/teams/preferred-model', { modelKey: 'nope' })).status, 400);
  assert.equal((await c.rest('PATCH', '/teams/preferred-model', { modelKey: 'gemini_2_5_pro' })).status, 400);

  // a plain (not base64) prompt loses its non-ASCII characters, as upstream does
  assert.equal((await c.rest('POST', '/engine-agent/chat', { prompt: 'café', chatHistoryId: id })).status, 202);
  await sim.replyDone(id, 1);
  assert.equal((await sim.chat(id)).prompts[1], 'caf?');

  const st = await sim.stats();
  assert.equal(st.rejected.origin, 2);
  assert.equal(st.rejected.clerk_query, 1);
  assert.equal(st.rejected.clerk_auth, 1);
  assert.equal(st.rejected.auth, 3);
  assert.equal(st.rejected.too_large, 1);
  assert.equal(st.counters.plain_prompts, 1);
});

test('another account cannot see a chat; stream auth is checked', async () => {
  const sim = await startSim(['--cookies', 'sim_client_aaa,sim_client_bbb']);
  test.after(() => sim.stop());
  const a = sim.client('sim_client_aaa');
  const b = sim.client('sim_client_bbb');
  await a.token();
  await b.token();
  assert.equal(b.userId, 'user_sim2');
  assert.equal(b.workspaceId, 'ws_sim2');
  const id = (await a.project()).projectId;
  assert.equal((await b.send(id, 'hi')).status, 404);
  await assert.rejects(b.stream(id), (e) => e.status === 404);
  await assert.rejects(a.stream(id, { query: 'token=user_sim1:org_sim2&workspaceId=ws_sim1' }), (e) => e.status === 401);
  await assert.rejects(a.stream(id, { query: 'token=user_sim1:org_sim1&workspaceId=ws_sim2' }), (e) => e.status === 401);
  await assert.rejects(a.stream(id, { query: 'token=user_sim1' }), (e) => e.status === 401);
  await assert.rejects(a.stream(id, { headers: { Origin: 'https://cto.new' } }), (e) => e.status === 401);
  await assert.rejects(a.stream(id, { headers: { Cookie: `__client=${a.cookie}` } }), (e) => e.status === 403);
  await assert.rejects(a.stream('00000000-0000-4000-8000-000000000000'), (e) => e.status === 404);
  // tokens for a session of another account
  const r = await a.clerk('POST', '/v1/client/sessions/sess_sim2/tokens', '');
  assert.equal(r.status, 404);
  const st = await sim.stats();
  assert.equal(st.rejected.ws_auth, 4);
  assert.equal(st.rejected.origin, 1);
  assert.equal(st.accounts.length, 2);
});

test('chat histories: list and delete', async () => {
  const c = await ready();
  const a = (await c.project('one')).projectId;
  const b = (await c.project('two')).projectId;
  let r = await c.rest('GET', '/engine-agent/chat-histories?workspaceId=ws_sim1&pageSize=10');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.chatHistories.map((h) => h.id), [b, a]);
  r = await c.rest('GET', '/engine-agent/chat-histories?workspaceId=ws_sim1&pageSize=1');
  assert.deepEqual([r.body.chatHistories.length, r.body.hasMore], [1, true]);
  assert.equal((await c.rest('DELETE', `/engine-agent/chat-histories/${a}`)).status, 200);
  assert.equal((await c.rest('DELETE', `/engine-agent/chat-histories/${a}`)).status, 404);
  r = await c.rest('GET', '/engine-agent/chat-histories?workspaceId=ws_sim1&pageSize=10');
  assert.deepEqual(r.body.chatHistories.map((h) => h.id), [b]);
  assert.equal((await c.send(a, 'hi')).status, 404);
  const st = await sim.stats();
  assert.equal(st.counters['DELETE /chat-histories'], 2);
  assert.equal(st.counters.chats_deleted, 1);
  assert.equal(st.chats[a].deleted, true);
});

test('images: presign, PUT the bytes, pass the public URL in imageUrls', async () => {
  const c = await ready();
  const id = (await c.project()).projectId;
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
  let r = await c.rest('POST', '/images/presign', { images: [{ mediaType: 'image/png', contentLength: png.length }] });
  assert.equal(r.status, 200);
  const up = r.body.uploads[0];
  assert.match(up.uploadUrl, /\/__uploads\//);
  // wrong length or type is refused like a bad signature
  let p = await fetch(up.uploadUrl, { method: 'PUT', headers: { 'Content-Type': 'image/jpeg' }, body: png });
  assert.equal(p.status, 403);
  p = await fetch(up.uploadUrl, { method: 'PUT', headers: { 'Content-Type': 'image/png' }, body: png });
  assert.equal(p.status, 200);
  const g = await fetch(up.publicUrl);
  assert.deepEqual(Buffer.from(await g.arrayBuffer()), png);
  r = await c.rest('POST', '/engine-agent/chat', { ...c.chatBody(id, 'what is this?'), imageUrls: [up.publicUrl, 'https://example.invalid/x.png'] });
  assert.equal(r.status, 202);
  await sim.replyDone(id);
  const ch = await sim.chat(id);
  assert.deepEqual(ch.images[0], [{ url: up.publicUrl, uploaded: true, bytes: png.length }, { url: 'https://example.invalid/x.png', uploaded: false, bytes: 0 }]);
  assert.equal((await c.rest('POST', '/images/presign', { images: [{ mediaType: 'text/plain', contentLength: 3 }] })).status, 400);
  await sim.faults([{ kind: 'presign_500' }]);
  assert.equal((await c.rest('POST', '/images/presign', { images: [{ mediaType: 'image/png', contentLength: 3 }] })).status, 500);
  const st = await sim.stats();
  assert.equal(st.counters['POST /images/presign'], 3);
  assert.equal(st.counters['PUT upload'], 2);
  assert.equal(st.rejected.upload_mismatch, 1);
});
