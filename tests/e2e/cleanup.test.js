// Upstream hygiene (UPSTREAM_CLEANUP_INTERVAL): upstream chats whose
// conversation mapping expired are deleted; chats with a live mapping,
// chats the user made in the web app and everything while the setting is
// off are never touched. Short STORE_TTL and API_REQUEST_TIMEOUT make a
// mapping expire in seconds (a chat is deleted once idle for both).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startSim, startGateway, waitFor, findChat } = require('./lib');

let sim;
let nonce = 0;
const tag = () => `u${process.pid}x${++nonce}q`;

const FAST = { STORE_TTL: '2', API_REQUEST_TIMEOUT: '2' };
const ON = { ...FAST, UPSTREAM_CLEANUP_INTERVAL: '1' };

test.before(async () => { sim = await startSim(['--port', '0']); });
test.after(async () => { if (sim) await sim.stop(); });

async function turn(client, msgs, content) {
  msgs.push({ role: 'user', content });
  const r = await client.chat.completions.create({ model: 'gpt-5.4', messages: msgs });
  msgs.push(r.choices[0].message);
  return r.choices[0].message.content;
}

// The one upstream chat whose prompts carry marker.
async function chatOf(marker) {
  const found = await findChat(sim, (c) => c.prompts.some((p) => p.includes(marker)));
  assert.equal(found.length, 1, `one upstream chat for ${marker}`);
  return found[0].id;
}

// A chat made by hand in the web app (same account as the gateway's).
async function handMade(name) {
  const cl = sim.client();
  await cl.token();
  return (await cl.project(name)).projectId;
}

const deleted = async (id) => (await sim.chat(id)).deleted;
const passes = (gw) => (gw.logs().match(/upstream clean-up pass:/g) || []).length;

// Exit code 0 also means no leak report under ASan (detect_leaks=1).
async function stopClean(gw) {
  const e = await gw.stop();
  assert.deepEqual(e, { code: 0, signal: null }, `gateway exit\n${gw.logs().slice(-3000)}`);
}

test('off (the default): chats stay, nothing is listed, even when a gateway with it on deletes its own', async () => {
  await sim.reset();
  const off = await startGateway(sim, { env: FAST });
  let on;
  try {
    const m1 = tag(); const m2 = tag();
    await turn(off.client(), [], `hello ${m1}`);
    await turn(off.client(), [], `hello ${m2}`);
    const offChats = [await chatOf(m1), await chatOf(m2)];
    // The clock: a second gateway, cleanup on, same account and settings.
    // Once its own expired chat is gone, the first gateway's chats are as
    // old and would be gone too if it were on.
    on = await startGateway(sim, { env: ON });
    const m3 = tag();
    await turn(on.client(), [], `hello ${m3}`);
    const onChat = await chatOf(m3);
    await waitFor(() => deleted(onChat), { timeoutMs: 20000, intervalMs: 100, what: 'the on-gateway to delete its chat' });
    for (const id of offChats) assert.equal(await deleted(id), false, `chat ${id} of the off-gateway`);
    assert.doesNotMatch(off.logs(), /clean-up/, 'the off-gateway ran no pass');
    // ... and the on-gateway's record says they are not its own.
    assert.match(on.logs(), /upstream clean-up pass: .* [1-9]\d* deleted/);
    await stopClean(off);
    await stopClean(on);
    on = null;
    const st = await sim.stats();
    assert.equal(st.counters.chats_deleted, 1, 'only the on-gateway deleted, and only its own chat');
  } finally {
    await off.stop();
    if (on) await on.stop();
  }
});

test('on: expired chats are deleted; live mappings and hand-made chats are kept', async () => {
  await sim.reset();
  // Made in the web app before and while the gateway runs; one even
  // carries a name like ours: names prove nothing.
  const byHand = [await handMade('my own project'), await handMade('enginelabs-2api req-by-hand')];
  const gw = await startGateway(sim, { env: ON });
  try {
    assert.match(gw.logs(), /upstream clean-up on: a pass every 1 s/);
    const c = gw.client();
    const mE1 = tag(); const mE2 = tag(); const mL = tag();
    await turn(c, [], `expire me ${mE1}`);
    const e2 = [];
    await turn(c, e2, `expire me too ${mE2}`);
    await turn(c, e2, 'second turn, same chat');
    const expired = [await chatOf(mE1), await chatOf(mE2)];
    byHand.push(await handMade('another by hand'));

    // Keep one conversation alive (a turn every ~300 ms keeps its head
    // record fresh) until both expired chats are gone.
    const live = [];
    await turn(c, live, `keep me ${mL}`);
    const liveChat = await chatOf(mL);
    let turns = 1;
    await waitFor(async () => {
      await turn(c, live, `still here ${turns++}`);
      return (await deleted(expired[0])) && (await deleted(expired[1]));
    }, { timeoutMs: 30000, intervalMs: 300, what: 'the expired chats to be deleted' });

    // Two more whole passes after that, with the live chat still used:
    // whatever a pass would wrongly delete is deleted by now.
    const seen = passes(gw);
    await waitFor(async () => {
      await turn(c, live, `still here ${turns++}`);
      return passes(gw) >= seen + 2;
    }, { timeoutMs: 15000, intervalMs: 300, what: 'two more passes' });

    assert.equal(await deleted(liveChat), false, 'the chat with a live mapping');
    const lc = await sim.chat(liveChat);
    assert.equal(lc.prompts.length, turns, 'every turn of the live conversation went into its one chat');
    for (const id of byHand) assert.equal(await deleted(id), false, `hand-made chat ${id}`);

    const st = await sim.stats();
    assert.equal(st.counters.chats_deleted, 2, 'exactly the two expired chats');
    // One worker sweeps (WORKERS=2): one list per pass, one account.
    assert.ok(st.counters['GET /chat-histories'] <= passes(gw) + 1,
      `${st.counters['GET /chat-histories']} lists for ${passes(gw)} passes`);
    assert.match(gw.logs(), /upstream clean-up pass: 1 account\(s\) \(0 skipped\), \d+ chat\(s\) listed/);
    assert.doesNotMatch(gw.logs(), /sim_client_default|eyJ[A-Za-z0-9_-]{10,}/, 'no cookie or JWT in the log');
    await stopClean(gw);
  } finally {
    await gw.stop();
  }
});

test('SIGHUP turns it on; chats opened while it was off are never deleted', async () => {
  await sim.reset();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'el2a-cleanup-'));
  const env = path.join(dir, '.env');
  fs.writeFileSync(env, 'UPSTREAM_CLEANUP_INTERVAL=0\n');
  const gw = await startGateway(sim, { env: FAST, dir });
  try {
    const mOff = tag(); const mOn = tag();
    await turn(gw.client(), [], `made while off ${mOff}`);
    const offChat = await chatOf(mOff);
    fs.writeFileSync(env, 'UPSTREAM_CLEANUP_INTERVAL=1\n');
    process.kill(gw.pid, 'SIGHUP');
    await waitFor(() => /SIGHUP: settings reloaded/.test(gw.logs()), { timeoutMs: 5000, what: 'the reload' });
    await turn(gw.client(), [], `made while on ${mOn}`);
    const onChat = await chatOf(mOn);
    // The setting is re-read within 10 s, then a pass a second.
    await waitFor(() => deleted(onChat), { timeoutMs: 30000, intervalMs: 100, what: 'the chat made while on to go' });
    const seen = passes(gw);
    await waitFor(() => passes(gw) >= seen + 2, { timeoutMs: 10000, intervalMs: 100, what: 'two more passes' });
    assert.equal(await deleted(offChat), false, 'the chat made while off has no ownership record');
    assert.equal((await sim.stats()).counters.chats_deleted, 1);
    await stopClean(gw);
  } finally {
    await gw.stop();
  }
});

test('a failing chat list deletes nothing; the next pass carries on', async () => {
  await sim.reset();
  await sim.faults([{ kind: 'histories_500', times: 3 }]);
  const gw = await startGateway(sim, { env: ON });
  try {
    const m = tag();
    await turn(gw.client(), [], `hello ${m}`);
    const id = await chatOf(m);
    await waitFor(() => deleted(id), { timeoutMs: 20000, intervalMs: 100, what: 'the chat to be deleted after the failures' });
    const st = await sim.stats();
    assert.equal(st.faultsFired.histories_500, 3);
    assert.equal(st.counters.chats_deleted, 1);
    assert.match(gw.logs(), /listing upstream chats failed: HTTP 500/);
    assert.match(gw.logs(), /upstream clean-up pass: .* 1 failed step\(s\)/);
    await stopClean(gw);
  } finally {
    await gw.stop();
  }
});

test('shutdown during a pass cancels the pending list call and exits cleanly', async () => {
  await sim.reset();
  await sim.faults([{ kind: 'histories_stall', times: -1 }]);
  const gw = await startGateway(sim, { env: ON });
  try {
    await turn(gw.client(), [], `hello ${tag()}`);
    // The pass is now waiting on a list call that never ends.
    await waitFor(async () => (await sim.stats()).faultsFired.histories_stall >= 1,
      { timeoutMs: 20000, intervalMs: 100, what: 'a pass to hang on the list' });
    const t0 = Date.now();
    await stopClean(gw);
    assert.ok(Date.now() - t0 < 5000, `exit took ${Date.now() - t0} ms`);
    assert.equal((await sim.stats()).counters.chats_deleted || 0, 0);
  } finally {
    await gw.stop();
    await sim.control('DELETE', '/__sim/faults');
  }
});
