// Runs last (files run in name order): no secret in any gateway log of the
// whole run. Its own gateway goes through the paths that handle secrets
// (keys right and wrong, a cookie rotation, JWT refreshes, a refused token,
// a reload), then every log file in the log directory is searched for the
// keys, every cookie value the simulator ever had, and anything shaped like a JWT.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startSim, startGateway, collectStream, waitFor, ROOT } = require('./lib');

const rand = () => crypto.randomBytes(9).toString('hex');
const KEYS = [`sk-zz-one-${rand()}`, `sk-zz-two-${rand()}`];
const WRONG_KEY = `sk-zz-wrong-${rand()}`;
const COOKIE0 = `zz_cookie_${rand()}`;
const JWT_RE = /eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/;

let sim, gw;
const cookies = new Set([COOKIE0]);

test.before(async () => {
  sim = await startSim(['--port', '0', '--jwt-ttl', '16', '--cookies', COOKIE0]);
});

test.after(async () => {
  if (gw) await gw.stop('SIGKILL');
  if (sim) await sim.stop();
});

async function noteCookies() {
  for (const a of (await sim.stats()).accounts) cookies.add(a.cookie);
}

test('a run through every secret-handling path', async () => {
  // The first Clerk call (the session lookup) rotates the cookie.
  await sim.faults([{ kind: 'rotate' }]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'el2a-zz-'));
  fs.writeFileSync(path.join(dir, '.env'), `API_MASTER_KEY=${KEYS.join(',')}\nCLERK_COOKIE=${COOKIE0}\n`);
  gw = await startGateway(sim, { dir, key: KEYS[0], env: { API_MASTER_KEY: undefined, CLERK_COOKIE: undefined, LOG_LEVEL: 'debug' } });
  const c = gw.client();
  const msgs = [{ role: 'user', content: 'my name is Zoe' }];
  const r1 = await c.chat.completions.create({ model: 'gpt-5.4', messages: msgs });
  assert.equal(r1.choices[0].message.content, 'Nice to meet you, Zoe.');
  await noteCookies();
  assert.equal(cookies.size, 2, 'the cookie was rotated');
  const mints0 = (await sim.stats()).counters['POST /tokens'];

  // A second turn, streamed, with the other key's header style.
  msgs.push(r1.choices[0].message, { role: 'user', content: 'what is my name?' });
  const s = await c.chat.completions.create({ model: 'gpt-5.4', stream: true, messages: msgs });
  assert.equal((await collectStream(s)).content, 'Your name is Zoe.');
  const viaHeader = await fetch(`${gw.base}/v1/models`, { headers: { 'x-api-key': KEYS[1] } });
  assert.equal(viaHeader.status, 200);

  // A 16 s JWT is refreshed on every use (30 s ahead): wait for the next mint.
  await waitFor(async () => (await sim.stats()).counters['POST /tokens'] > mints0, { timeoutMs: 5000, what: 'a second JWT mint' });

  // Wrong keys, in both headers.
  const bad = await fetch(`${gw.base}/v1/models`, { headers: { Authorization: `Bearer ${WRONG_KEY}` } });
  assert.equal(bad.status, 401);
  const bad2 = await fetch(`${gw.base}/v1/models`, { headers: { 'x-api-key': WRONG_KEY } });
  assert.equal(bad2.status, 401);
  const badBody = await bad.text();
  assert.ok(!badBody.includes(WRONG_KEY), 'the error does not echo the key');

  // A refused token (401): the gateway looks the session up again.
  await sim.faults([{ kind: 'token_401' }]);
  await waitFor(async () => {
    const r = await gw.client().chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'after a refused token' }] })
      .then(() => true, () => false);
    return r && ((await sim.stats()).faultsFired.token_401 || 0) >= 1;
  }, { timeoutMs: 5000, intervalMs: 200, what: 'a reply after a refused token' });

  // An upstream error path.
  await sim.faults([{ kind: 'chat_500', times: -1 }]);
  await assert.rejects(c.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'fail once' }] }),
    (e) => e.status === 502 && !JSON.stringify(e.error).includes(COOKIE0));
  await sim.control('DELETE', '/__sim/faults');

  // A reload (SIGHUP) re-reads the keys and the cookie from .env.
  gw.proc.kill('SIGHUP');
  await waitFor(async () => /settings reloaded/.test(gw.logs()), { what: 'the reload' });
  const r3 = await c.chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'after the reload' }] });
  assert.ok(r3.choices[0].message.content);
  await noteCookies();

  const exit = await gw.stop();
  assert.deepEqual(exit, { code: 0, signal: null });
  const st = await sim.stats();
  assert.ok(st.counters['POST /tokens'] >= 3, 'several JWTs were minted');
  assert.equal(st.accounts[0].rotations, 1);
});

function logFiles() {
  const dir = process.env.GW_LOG_DIR ? path.resolve(ROOT, process.env.GW_LOG_DIR) : null;
  const files = dir
    ? fs.readdirSync(dir, { recursive: true }).map((f) => path.join(dir, String(f))).filter((f) => fs.statSync(f).isFile())
    : [];
  if (gw && !files.includes(gw.logFile)) files.push(gw.logFile);
  return files;
}

test('no log file of the run holds a key, a cookie value or a JWT', async () => {
  await noteCookies();
  const files = logFiles();
  assert.ok(files.length >= 1);
  assert.ok(fs.readFileSync(gw.logFile, 'utf8').includes('rotated'), 'the rotation was logged (so the log is the right one)');
  // This file's own secrets, and the defaults every other test file uses.
  const needles = [...KEYS, WRONG_KEY, ...cookies, 'sk-test-key-1', 'sim_client_default'];
  const hits = [];
  for (const f of files) {
    const text = fs.readFileSync(f, 'latin1');
    for (const n of needles) if (text.includes(n)) hits.push(`${path.basename(f)}: ${n.slice(0, 12)}…`);
    const j = JWT_RE.exec(text);
    if (j) hits.push(`${path.basename(f)}: a JWT ${j[0].slice(0, 16)}…`);
    const rotated = /sim_client_[0-9a-f]{8,}/.exec(text);
    if (rotated) hits.push(`${path.basename(f)}: a rotated simulator cookie`);
  }
  assert.deepEqual(hits, [], `secrets found in ${files.length} log file(s)`);
});
