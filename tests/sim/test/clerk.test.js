'use strict';
// Clerk: JWT lifetime, cookie rotation, signed-out and token faults, version pinning, accounts.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startSim, waitFor, CLERK_QUERY, ORIGIN } = require('../harness.js');

const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));

test('JWT expires after --jwt-ttl seconds; a fresh one works again', async (t) => {
  const sim = await startSim(['--jwt-ttl', '1']);
  t.after(() => sim.stop());
  const c = sim.client();
  const jwt = await c.token();
  const p = claims(jwt);
  assert.equal(p.exp - p.iat, 1);
  assert.equal((await c.rest('GET', '/billing')).status, 200);
  const r = await waitFor(async () => {
    const x = await c.rest('GET', '/billing');
    return x.status === 401 ? x : null;
  }, { timeoutMs: 4000, what: 'token expiry' });
  assert.deepEqual(r.body, { error: 'Unauthorized', message: 'Invalid or expired token' });
  assert.ok(Date.now() / 1000 >= p.exp);
  await c.token();
  assert.equal((await c.rest('GET', '/billing')).status, 200);
  await sim.config({ jwtTtl: 120 });
  assert.equal((({ exp, iat }) => exp - iat)(claims(await c.token())), 120);
  assert.ok((await sim.stats()).rejected.auth >= 1);
});

test('--jwt-shape clerk: a Clerk-size token (kid, more claims, 256-byte signature) that works; a tampered one does not', async (t) => {
  const sim = await startSim(['--jwt-shape', 'clerk']);
  t.after(() => sim.stop());
  const c = sim.client();
  const jwt = await c.token();
  const [h, , sig] = jwt.split('.');
  assert.ok(jwt.length >= 700, `length ${jwt.length}`);
  assert.equal(Buffer.from(sig, 'base64url').length, 256);
  assert.equal(JSON.parse(Buffer.from(h, 'base64url')).alg, 'RS256');
  const p = claims(jwt);
  assert.equal(p.sub, 'user_sim1');
  assert.equal(p.sid, 'sess_sim1');
  assert.equal(p.iss, 'https://clerk.cto.new');
  assert.equal((await c.rest('GET', '/billing')).status, 200);
  const bad = `${jwt.slice(0, -2)}${jwt.endsWith('AA') ? 'BA' : 'AA'}`;
  assert.equal((await c.rest('GET', '/billing', undefined, { jwt: bad })).status, 401);
  // The signature covers the claims: a token stretched to live longer is refused.
  const other = Buffer.from(JSON.stringify({ ...p, exp: p.exp + 3600 })).toString('base64url');
  const forged = `${h}.${other}.${sig}`;
  assert.equal((await c.rest('GET', '/billing', undefined, { jwt: forged })).status, 401);
  // Switched back at run time: short tokens again, and the long one stays valid until it expires.
  await sim.config({ jwtShape: 'sim' });
  const short = await c.token();
  assert.ok(short.length < 400, `length ${short.length}`);
  assert.equal((await c.rest('GET', '/billing', undefined, { jwt })).status, 200);
  assert.equal((await c.rest('GET', '/billing', undefined, { jwt: short })).status, 200);
});

test('rotation: Set-Cookie carries a new __client; the old one is signed out', async (t) => {
  const sim = await startSim();
  t.after(() => sim.stop());
  const c = sim.client();
  await c.session();
  await sim.faults([{ kind: 'rotate' }]);
  const r = await c.clerk('POST', '/v1/client/sessions/sess_sim1/tokens', '');
  assert.equal(r.status, 200);
  assert.match(r.setCookie, /^__client=sim_client_[0-9a-f]+; Path=\/; HttpOnly; Secure; SameSite=Lax$/);
  assert.notEqual(c.cookie, 'sim_client_default');
  const old = sim.client('sim_client_default');
  const o = await old.clerk('GET', '/v1/client');
  assert.equal(o.status, 401);
  assert.equal(o.body.errors[0].code, 'signed_out');
  assert.equal((await c.clerk('GET', '/v1/client')).status, 200);
  const again = await c.clerk('GET', '/v1/client');
  assert.equal(again.setCookie, null, 'only one rotation was armed');
  // the old cookie no longer opens a stream either
  c.jwt = r.body.jwt;
  const id = (await c.project()).projectId;
  old.userId = 'user_sim1'; old.orgId = 'org_sim1'; old.workspaceId = 'ws_sim1';
  await assert.rejects(old.stream(id), (e) => e.status === 401);
  (await c.stream(id)).close();
  const st = await sim.stats();
  assert.equal(st.accounts[0].cookie, c.cookie);
  assert.equal(st.accounts[0].rotations, 1);
  assert.equal(st.faultsFired.rotate, 1);
  // reset restores the initial cookie
  await sim.reset();
  assert.equal((await old.clerk('GET', '/v1/client')).status, 200);
  assert.equal((await c.clerk('GET', '/v1/client')).status, 401);
});

test('client_401, token_401, token_500 faults, and times', async (t) => {
  const sim = await startSim();
  t.after(() => sim.stop());
  const c = sim.client();
  await sim.faults([{ kind: 'client_401' }]);
  let r = await c.clerk('GET', '/v1/client');
  assert.deepEqual([r.status, r.body.errors[0].code], [401, 'signed_out']);
  assert.equal((await c.clerk('GET', '/v1/client')).status, 200);
  await c.session();

  await sim.faults([{ kind: 'token_401', times: 2 }, { kind: 'token_500' }]);
  r = await c.clerk('POST', '/v1/client/sessions/sess_sim1/tokens', '');
  assert.deepEqual([r.status, r.body.errors[0].code], [401, 'authentication_invalid']);
  r = await c.clerk('POST', '/v1/client/sessions/sess_sim1/tokens', '');
  assert.equal(r.status, 401);
  r = await c.clerk('POST', '/v1/client/sessions/sess_sim1/tokens', '');
  assert.equal(r.status, 500);
  r = await c.clerk('POST', '/v1/client/sessions/sess_sim1/tokens', '');
  assert.equal(r.status, 200);
  assert.ok(r.body.jwt);

  await sim.faults([{ kind: 'token_500', times: -1 }]);
  for (let i = 0; i < 3; i++) assert.equal((await c.clerk('POST', '/v1/client/sessions/sess_sim1/tokens', '')).status, 500);
  assert.equal((await fetch(`${sim.base}/__sim/faults`).then((x) => x.json())).faults.length, 1);
  await sim.reset();
  assert.equal((await c.clerk('POST', '/v1/client/sessions/sess_sim1/tokens', '')).status, 200);
  const st = await sim.stats();
  assert.equal(st.counters['POST /tokens'], 1, 'reset cleared the counters');
  assert.deepEqual(st.pendingFaults, []);
});

test('faults can target one account; organization_id must match', async (t) => {
  const sim = await startSim(['--cookies', 'sim_client_one,sim_client_two']);
  t.after(() => sim.stop());
  const a = sim.client('sim_client_one');
  const b = sim.client('sim_client_two');
  await a.session();
  await b.session();
  assert.deepEqual([b.sid, b.userId, b.orgId], ['sess_sim2', 'user_sim2', 'org_sim2']);
  await sim.faults([{ kind: 'token_500', account: 2 }]);
  assert.equal((await a.clerk('POST', '/v1/client/sessions/sess_sim1/tokens', 'organization_id=org_sim1')).status, 200);
  assert.equal((await b.clerk('POST', '/v1/client/sessions/sess_sim2/tokens', 'organization_id=org_sim2')).status, 500);
  assert.equal((await b.clerk('POST', '/v1/client/sessions/sess_sim2/tokens', 'organization_id=org_sim1')).status, 403);
  const jwt = await b.token();
  assert.equal(claims(jwt).org_id, 'org_sim2');
});

test('pinned Clerk versions: other versions get 400 (what an upstream bump looks like)', async (t) => {
  const sim = await startSim(['--clerk-api-version', '2025-11-10', '--clerk-js-version', '6.7.3']);
  t.after(() => sim.stop());
  const c = sim.client();
  assert.equal((await c.clerk('GET', '/v1/client')).status, 200);
  await sim.config({ clerkApiVersion: '2026-05-01' });
  const r = await c.clerk('GET', '/v1/client');
  assert.deepEqual([r.status, r.body.errors[0].code], [400, 'unsupported_api_version']);
  const x = await fetch(`${sim.base}/v1/client?${CLERK_QUERY}`, { headers: { Cookie: '__client=sim_client_default' } });
  assert.equal(x.status, 403, 'no Origin');
  const y = await fetch(`${sim.base}/v1/client`, { headers: { Origin: ORIGIN, Cookie: '__client=sim_client_default' } });
  assert.equal(y.status, 400, 'no version query');
  const st = await sim.stats();
  assert.equal(st.rejected.clerk_version, 1);
  assert.equal(st.rejected.clerk_query, 1);
});
