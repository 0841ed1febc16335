// The gateway's own shortage of descriptors is not the account's fault.
// Under a tiny RLIMIT_NOFILE, streams that find no descriptor for their
// upstream sockets end with 503 local_resources and Retry-After (after the
// usual retries), never with a 502 that blames the upstream; the account's
// breaker stays closed, so the next request is served at once.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { startSim, startGateway, waitFor } = require('./lib');

const LIMIT = 30; // about 16 descriptors are the idle gateway's own
let sim;
let gw;

before(async () => {
  sim = await startSim();
  gw = await startGateway(sim, {
    env: { WORKERS: '1', MAX_CONNECTIONS: '1000' },
    prefix: ['prlimit', `--nofile=${LIMIT}:${LIMIT}`, '--'],
  });
});

after(async () => {
  if (gw) await gw.stop();
  if (sim) await sim.stop();
});

async function oneStream(c, i) {
  try {
    const s = await c.chat.completions.create({ model: 'gpt-5.4', stream: true,
      messages: [{ role: 'user', content: `[pieces=8] [slow=150] fd${i}` }] });
    let text = '';
    for await (const ch of s) text += (ch.choices[0] && ch.choices[0].delta.content) || '';
    return { ok: text === 'w1 w2 w3 w4 w5 w6 w7 w8', text };
  } catch (e) {
    return { status: e.status, code: e.code || (e.error && e.error.code), retryAfter: e.headers && e.headers.get && e.headers.get('retry-after'), message: e.message };
  }
}

test(`with RLIMIT_NOFILE=${LIMIT}, 14 concurrent streams: no 502, 503 local_resources for those without a socket; the account stays healthy`, async () => {
  const c = gw.client({ timeout: 30000 });
  const results = await Promise.all(Array.from({ length: 14 }, (_, i) => oneStream(c, i)));
  const summary = results.map((r) => (r.ok ? 'ok' : `${r.status} ${r.code}`)).join(', ');
  assert.ok(results.every((r) => r.ok || r.status === 503), `only full replies or 503s: ${summary}`);
  const local = results.filter((r) => r.status === 503);
  assert.ok(local.length >= 1, `the limit was reached: ${summary}`);
  for (const r of local) {
    assert.equal(r.code, 'local_resources', r.message);
    assert.equal(r.retryAfter, '1');
  }
  assert.doesNotMatch(gw.logs(), /failures in a row; resting it/, 'the breaker did not open');
  // Once the clients' idle connections go (undici keeps them 4 s), the
  // account serves: an open breaker would rest it far longer.
  let answer = null;
  await waitFor(async () => {
    const r = await oneStream(c, 'after');
    answer = r;
    return r.ok;
  }, { timeoutMs: 15000, intervalMs: 500, what: `a stream to succeed after the shortage (last: ${JSON.stringify(answer)})` });
  assert.doesNotMatch(gw.logs(), /failures in a row; resting it/);
});
