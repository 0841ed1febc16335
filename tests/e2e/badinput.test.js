// Hostile and broken input: bad JSON, wrong types, huge bodies and headers,
// slow clients, HTTP smuggling, garbage on the wire. Each gets a 4xx in the
// API's error shape (or a closed connection), and the gateway keeps serving.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const { startSim, startGateway, findChat } = require('./lib');

let sim, gw;
let nonce = 0;
const tag = () => `b${process.pid}x${++nonce}q`; // q ends it: x1q is not in x10q
const CLIENT_TIMEOUT_S = 2;

test.before(async () => {
  sim = await startSim(['--port', '0']);
  gw = await startGateway(sim, { env: { CLIENT_TIMEOUT: String(CLIENT_TIMEOUT_S) } });
  // Warm up so later counters count only what a test caused.
  const r = await gw.client().chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'warm up' }] });
  assert.ok(r.choices[0].message.content);
});

// The exit code is checked by the last test; this only cleans up after a failure.
test.after(async () => {
  if (gw) await gw.stop('SIGKILL');
  if (sim) await sim.stop();
});

// ---------------------------------------------------------------------------------------------
// helpers

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function assertAlive(what) {
  assert.equal(gw.proc.exitCode, null, `gateway exited after ${what}:\n${gw.logs().slice(-3000)}`);
  assert.equal(gw.proc.signalCode, null, `gateway killed after ${what}`);
  const r = await fetch(`${gw.base}/healthz`, { signal: AbortSignal.timeout(3000) });
  assert.equal(r.status, 200, `healthz after ${what}`);
}

async function chatCount() {
  return (await sim.stats()).counters['POST /engine-agent/chat'] || 0;
}

function assertErrorShape(body, status, what) {
  let j;
  try { j = typeof body === 'string' ? JSON.parse(body) : body; } catch {
    assert.fail(`${what}: ${status} body is not JSON: ${String(body).slice(0, 200)}`);
  }
  assert.ok(j && typeof j.error === 'object' && j.error, `${what}: no error object: ${JSON.stringify(j).slice(0, 300)}`);
  for (const k of ['message', 'type', 'param', 'code']) assert.ok(k in j.error, `${what}: error.${k} missing`);
  assert.equal(typeof j.error.message, 'string');
  assert.ok(j.error.message.length > 0);
  assert.equal(typeof j.error.type, 'string');
  return j.error;
}

// POSTs raw bytes as a chat body; returns {status, error}.
async function postChat(body, headers = {}) {
  const r = await gw.fetch('/v1/chat/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body,
    signal: AbortSignal.timeout(10000),
  });
  const text = await r.text();
  return { status: r.status, text, headers: r.headers };
}

async function expect400(body, what, param) {
  const r = await postChat(body);
  assert.equal(r.status, 400, `${what}: got ${r.status} ${r.text.slice(0, 300)}`);
  const e = assertErrorShape(r.text, r.status, what);
  assert.equal(e.type, 'invalid_request_error', what);
  if (param !== undefined) assert.equal(e.param, param, `${what}: param`);
  return e;
}

// One raw TCP exchange: writes parts (gapMs apart), collects everything the
// gateway sends until it closes, until(buf) holds, or timeoutMs passes.
function rawExchange(parts, { timeoutMs = 5000, gapMs = 0, until, port } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const chunks = [];
    let closed = false;
    let error = null;
    let settled = false;
    let closedAt = null;
    const sock = net.connect({ host: '127.0.0.1', port: port || gw.port });
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ buf: Buffer.concat(chunks), closed, error, ms: (closedAt || Date.now()) - t0 });
    };
    const timer = setTimeout(finish, timeoutMs);
    sock.on('data', (d) => {
      chunks.push(d);
      if (until && until(Buffer.concat(chunks))) finish();
    });
    sock.on('error', (e) => { error = e.code || e.message; });
    sock.on('close', () => { closed = true; closedAt = Date.now(); finish(); });
    sock.on('connect', async () => {
      for (const p of parts) {
        if (settled || sock.destroyed) return;
        sock.write(p);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
  });
}

// Splits a byte stream into HTTP/1.x responses (Content-Length, chunked or
// close-delimited bodies). Returns {responses, rest}.
function parseResponses(buf) {
  const responses = [];
  let off = 0;
  for (let guard = 0; guard < 1000 && off < buf.length; guard++) {
    const he = buf.indexOf('\r\n\r\n', off);
    if (he < 0) break;
    const head = buf.subarray(off, he).toString('latin1').split('\r\n');
    const m = /^HTTP\/(1\.[01]) (\d{3})/.exec(head[0]);
    if (!m) break;
    const headers = {};
    for (const l of head.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let p = he + 4;
    let body;
    if (/chunked/i.test(headers['transfer-encoding'] || '')) {
      const parts = [];
      let complete = false;
      for (let g = 0; g < 1e6; g++) {
        const le = buf.indexOf('\r\n', p);
        if (le < 0) break;
        const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
        if (Number.isNaN(size)) break;
        if (size === 0) { p = le + 4; complete = true; break; }
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      body = Buffer.concat(parts);
      responses.push({ version: m[1], status: Number(m[2]), headers, body: body.toString('utf8'), complete });
      if (!complete) return { responses, rest: Buffer.alloc(0) };
      off = p;
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = buf.subarray(p, p + n);
      responses.push({ version: m[1], status: Number(m[2]), headers, body: body.toString('utf8'), complete: body.length === n });
      off = p + n;
    } else {
      body = buf.subarray(p);
      responses.push({ version: m[1], status: Number(m[2]), headers, body: body.toString('utf8'), complete: true });
      off = buf.length;
    }
  }
  return { responses, rest: buf.subarray(off) };
}

const AUTH = () => `Authorization: Bearer ${gw.key}\r\n`;

function chatRequest(content, { extra = '', version = '1.1', stream = false } = {}) {
  const body = JSON.stringify({ model: 'gpt-5.4', stream, messages: [{ role: 'user', content }] });
  return `POST /v1/chat/completions HTTP/${version}\r\nHost: 127.0.0.1\r\n${AUTH()}` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

// Errors the HTTP layer itself produced (not the JSON handler), checked for
// the error shape in one place at the end.
const protocolErrors = [];

// ---------------------------------------------------------------------------------------------
// JSON bodies

test('invalid JSON bodies get 400 invalid_request_error', async () => {
  const before = await chatCount();
  const bodies = ['{', '{"model": "gpt-5.4", "messages": [', 'nul', '', ' ', '{"a":1}x', '{"a":1}{"b":2}',
    "{'model':'gpt-5.4'}", '{"messages":[{"role":"user","content":"x"}],}', '\ufeff{}', '[1,2]', '"string"', '42', 'null'];
  for (const b of bodies) await expect400(b, `body ${JSON.stringify(b)}`);
  assert.equal(await chatCount(), before, 'nothing reached the upstream');
  await assertAlive('invalid JSON');
});

test('wrong types for every field get 400 naming the field', async () => {
  const u = [{ role: 'user', content: 'x' }];
  const cases = [
    [{ model: 'gpt-5.4', messages: 'hello' }, 'messages'],
    [{ model: 'gpt-5.4', messages: { role: 'user', content: 'x' } }, 'messages'],
    [{ model: 'gpt-5.4', messages: [5] }, 'messages[0]'],
    [{ model: 'gpt-5.4', messages: [null] }, 'messages[0]'],
    [{ model: 'gpt-5.4', messages: [{ role: 5, content: 'x' }] }, 'messages[0].role'],
    [{ model: 'gpt-5.4', messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    [{ model: 'gpt-5.4', messages: [{ content: 'x' }] }, 'messages[0].role'],
    [{ model: 'gpt-5.4', messages: [{ role: 'user', content: { text: 'x' } }] }, undefined],
    [{ model: 'gpt-5.4', messages: [{ role: 'user', content: 5 }] }, undefined],
    [{ model: 'gpt-5.4', messages: [{ role: 'user', content: [5] }] }, undefined],
    [{ model: 'gpt-5.4', messages: [{ role: 'user', content: [{ type: 'text', text: 5 }] }] }, undefined],
    [{ model: 'gpt-5.4', stream: 'yes', messages: u }, 'stream'],
    [{ model: 'gpt-5.4', stream: 1, messages: u }, 'stream'],
    [{ model: 5, messages: u }, 'model'],
    [{ model: ['gpt-5.4'], messages: u }, 'model'],
    [{ model: 'gpt-5.4', stream: true, stream_options: 'x', messages: u }, 'stream_options'],
    [{ model: 'gpt-5.4', stream: true, stream_options: { include_usage: 'yes' }, messages: u }, 'stream_options.include_usage'],
    [{ model: 'gpt-5.4', n: 'two', messages: u }, 'n'],
    [{ model: 'gpt-5.4', n: 0, messages: u }, 'n'],
  ];
  const before = await chatCount();
  for (const [body, param] of cases) {
    const e = await expect400(JSON.stringify(body), JSON.stringify(body), param);
    if (param === undefined) assert.match(e.param || '', /^messages\[0\]/, `${JSON.stringify(body)}: param ${e.param}`);
  }
  assert.equal(await chatCount(), before, 'nothing reached the upstream');
  await assertAlive('wrong types');
});

test('100k-deep nesting gets 400, not a stack overflow', async () => {
  const deep = '['.repeat(100000);
  await expect400(deep, 'bare [[[...');
  await expect400(`{"model":"gpt-5.4","messages":${deep}`, 'deep messages');
  await expect400(`{"model":"gpt-5.4","messages":[{"role":"user","content":"x"}],"metadata":${'{"a":'.repeat(100000)}1${'}'.repeat(100000)}}`,
    'deep closed object in an ignored field');
  await expect400(`${'['.repeat(100000)}${']'.repeat(100000)}`, 'deep closed array');
  await assertAlive('deep nesting');
});

test('invalid UTF-8, lone surrogates and NUL get 400', async () => {
  const wrap = (bytes) => Buffer.concat([
    Buffer.from('{"model":"gpt-5.4","messages":[{"role":"user","content":"a'), Buffer.from(bytes), Buffer.from('b"}]}')]);
  const before = await chatCount();
  for (const bytes of [[0xff], [0xfe, 0xff], [0xc0, 0xaf], [0xe4, 0xbd], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80]]) {
    await expect400(wrap(bytes), `content bytes ${bytes.map((b) => b.toString(16)).join(' ')}`);
  }
  const badModel = Buffer.concat([Buffer.from('{"model":"gpt'), Buffer.from([0xff]), Buffer.from('","messages":[{"role":"user","content":"x"}]}')]);
  await expect400(badModel, 'invalid UTF-8 in the model');
  await expect400('{"model":"gpt-5.4","messages":[{"role":"user","content":"a\\ud800b"}]}', 'lone surrogate escape');
  await expect400('{"model":"gpt-5.4","messages":[{"role":"user","content":"a\\u0000b"}]}', 'NUL in content', 'messages[0].content');
  await expect400('{"model":"gpt-5.4","messages":[{"role":"user","content":[{"type":"text","text":"a\\u0000b"}]}]}', 'NUL in a text part');
  await expect400('{"model":"gpt\\u0000-5.4","messages":[{"role":"user","content":"x"}]}', 'NUL in the model', 'model');
  await expect400('{"model":"gpt-5.4","mes\\u0000sages":[{"role":"user","content":"x"}]}', 'NUL in a key');
  await expect400(Buffer.concat([Buffer.from('{"model":"gpt-5.4","messages":[{"role":"user","content":"a'), Buffer.from([0]), Buffer.from('"}]}')]),
    'a raw NUL byte in a string');
  assert.equal(await chatCount(), before, 'nothing reached the upstream');
  await assertAlive('bad text');
});

test('huge numbers for n and max_tokens get 400', async () => {
  const u = '"messages":[{"role":"user","content":"x"}]';
  await expect400(`{"model":"gpt-5.4","n":1e999,${u}}`, 'n 1e999');
  await expect400(`{"model":"gpt-5.4","n":99999999999999999999,${u}}`, 'n 99999999999999999999');
  await expect400(`{"model":"gpt-5.4","n":-99999999999999999999,${u}}`, 'n -99999999999999999999');
  await expect400(`{"model":"gpt-5.4","max_tokens":1e999,${u}}`, 'max_tokens 1e999');
  await expect400(`{"model":"gpt-5.4","max_tokens":99999999999999999999,${u}}`, 'max_tokens 99999999999999999999');
  await expect400(`{"model":"gpt-5.4","n":2,${u}}`, 'n 2', 'n');
  await assertAlive('huge numbers');
});

test('empty, missing and assistant-last messages, duplicate keys get 400', async () => {
  const before = await chatCount();
  await expect400('{"model":"gpt-5.4","messages":[]}', 'empty messages', 'messages');
  await expect400('{"model":"gpt-5.4"}', 'missing messages', 'messages');
  await expect400('{}', 'empty object', 'messages');
  await expect400(JSON.stringify({ model: 'gpt-5.4', messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }),
    'last message from the assistant', 'messages');
  await expect400(JSON.stringify({ model: 'gpt-5.4', messages: [{ role: 'system', content: 'be terse' }] }),
    'only a system message', 'messages');
  await expect400('{"model":"no-such","model":"gpt-5.4","messages":[{"role":"user","content":"x"}]}', 'duplicate model key');
  await expect400('{"model":"gpt-5.4","messages":[{"role":"user","role":"assistant","content":"x"}]}', 'duplicate role key');
  await expect400('{"model":"gpt-5.4","messages":[{"role":"user","content":"x"}],"messages":[]}', 'duplicate messages key');
  assert.equal(await chatCount(), before, 'nothing reached the upstream');
  await assertAlive('bad messages');
});

// ---------------------------------------------------------------------------------------------
// Sizes

// Streams total bytes of body after head (after waitMs) as fast as the socket
// takes them, while sampling the gateway's RSS; stops soon after the first
// response byte.
function pushHugeBody(head, total, { chunked, waitMs = 0 }) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const sock = net.connect({ host: '127.0.0.1', port: gw.port });
    const resp = [];
    let sent = 0;
    let peakKb = rssKb(gw.pid);
    let firstByteMs = null;
    let error = null;
    let done = false;
    const sampler = setInterval(() => { peakKb = Math.max(peakKb, rssKb(gw.pid)); }, 20);
    const finish = () => {
      if (done) return;
      done = true;
      clearInterval(sampler);
      clearTimeout(timer);
      peakKb = Math.max(peakKb, rssKb(gw.pid));
      sock.destroy();
      resolve({ buf: Buffer.concat(resp), sent, peakKb, firstByteMs, error, ms: Date.now() - t0 });
    };
    const timer = setTimeout(finish, 20000);
    const piece = Buffer.alloc(64 * 1024, 'a');
    const chunkHead = Buffer.from(`${piece.length.toString(16)}\r\n`);
    const pump = () => {
      while (!done && sent < total) {
        const ok = chunked ? sock.write(Buffer.concat([chunkHead, piece, Buffer.from('\r\n')])) : sock.write(piece);
        sent += piece.length;
        if (!ok) { sock.once('drain', pump); return; }
      }
      if (!done && chunked) sock.write('0\r\n\r\n');
    };
    sock.on('connect', () => { sock.write(head); if (waitMs) setTimeout(pump, waitMs); else pump(); });
    sock.on('data', (d) => {
      if (firstByteMs === null) firstByteMs = Date.now() - t0;
      resp.push(d);
      setTimeout(finish, 200); // the rest of the response, then stop
    });
    sock.on('error', (e) => { error = e.code || e.message; });
    sock.on('close', finish);
  });
}

function hugeHead(total, chunked) {
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH()}Content-Type: application/json\r\n` +
    (chunked ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${total}\r\n`) + '\r\n';
}

const TOTAL = 100 * 1024 * 1024;

for (const chunked of [false, true]) {
  test(`a 100 MB body (${chunked ? 'chunked' : 'Content-Length'}) gets 413 quickly with bounded memory`, async () => {
    const base = rssKb(gw.pid);
    const before = await chatCount();
    // The Content-Length case waits 100 ms before the body, so the 413 is
    // there before any of it; the chunked one gets it after 8 MB.
    const r = await pushHugeBody(hugeHead(TOTAL, chunked), TOTAL, { chunked, waitMs: chunked ? 0 : 100 });
    const { responses } = parseResponses(r.buf);
    assert.ok(responses.length >= 1, `no response (${r.buf.length} bytes, sent ${r.sent}, ${r.error})`);
    assert.equal(responses[0].status, 413);
    if (responses.length) protocolErrors.push([`100 MB body (${chunked ? 'chunked' : 'Content-Length'})`, responses[0]]);
    assert.ok(r.ms < 5000, `ended after ${r.ms} ms`);
    assert.ok(r.sent < TOTAL, 'the gateway did not read the whole 100 MB');
    const growthMb = (r.peakKb - base) / 1024;
    assert.ok(growthMb < 40, `RSS grew by ${growthMb.toFixed(1)} MB (from ${base} kB)`);
    assert.equal(await chatCount(), before);
    await assertAlive('a 100 MB body');
  });
}

test('a client that sends a 100 MB body at once (Content-Length or chunked) still reads the 413', async () => {
    // Without a lingering close the 413 is lost to a reset about half the
    // time on loopback: five tries each.
    for (const chunked of [false, true]) {
      for (let i = 0; i < 5; i++) {
        const r = await pushHugeBody(hugeHead(TOTAL, chunked), TOTAL, { chunked, waitMs: 0 });
        const { responses } = parseResponses(r.buf);
        assert.ok(responses.length >= 1, `${chunked ? 'chunked' : 'Content-Length'} try ${i + 1}: no response: ${r.buf.length} bytes, sent ${r.sent}, error ${r.error}`);
        assert.equal(responses[0].status, 413);
      }
    }
    await assertAlive('a 100 MB body sent at once');
  });

test('Expect: 100-continue with a huge Content-Length gets 413 before any body is sent', async () => {
  const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH()}Content-Type: application/json\r\n` +
    'Content-Length: 104857600\r\nExpect: 100-continue\r\n\r\n';
  const r = await rawExchange([head], { timeoutMs: 3000, until: (b) => /\r\n\r\n/.test(b.toString('latin1')) && parseResponses(b).responses.length > 0 });
  const { responses } = parseResponses(r.buf);
  assert.ok(responses.length >= 1, `no response within 3 s: ${JSON.stringify(r.buf.toString('latin1').slice(0, 200))}`);
  assert.equal(responses[0].status, 413, 'no 100 Continue: the body is refused up front');
  protocolErrors.push(['Expect: 100-continue with 100 MB', responses[0]]);
  // A small body with Expect still works (100 Continue, then the reply).
  const m = tag();
  const body = JSON.stringify({ model: 'gpt-5.4', messages: [{ role: 'user', content: m }] });
  const ok = await rawExchange([
    `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH()}Content-Type: application/json\r\n` +
    `Content-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`, body], { timeoutMs: 5000, gapMs: 100 });
  const text = ok.buf.toString('utf8');
  assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200/, text.slice(0, 200));
  assert.ok(text.includes(`You said: ${m}`));
  await assertAlive('Expect: 100-continue');
});

test('headers over MAX_HEADER_BYTES get a 4xx and the connection closes', async () => {
  for (const [name, head] of [
    ['one 20 kB header', `GET /v1/models HTTP/1.1\r\nHost: x\r\n${AUTH()}X-Big: ${'a'.repeat(20000)}\r\n\r\n`],
    ['2000 small headers', `GET /v1/models HTTP/1.1\r\nHost: x\r\n${AUTH()}${Array.from({ length: 2000 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`],
    ['a 20 kB URL', `GET /v1/models?${'q'.repeat(20000)} HTTP/1.1\r\nHost: x\r\n${AUTH()}\r\n`],
  ]) {
    const r = await rawExchange([head], { timeoutMs: 5000 });
    assert.ok(r.closed, `${name}: the connection closed (after ${r.ms} ms)`);
    const { responses } = parseResponses(r.buf);
    assert.equal(responses.length, 1, `${name}: one response: ${JSON.stringify(r.buf.toString('latin1').slice(0, 200))}`);
    assert.ok([400, 413, 414, 431].includes(responses[0].status), `${name}: status ${responses[0].status}`);
    protocolErrors.push([name, responses[0]]);
  }
  await assertAlive('huge headers');
});

// ---------------------------------------------------------------------------------------------
// Slow and odd clients

let slowClients = null;
const SLOW_BOUND_MS = CLIENT_TIMEOUT_S * 1000 + 3000;

test(`during a slowloris (a header byte per 200 ms, CLIENT_TIMEOUT=${CLIENT_TIMEOUT_S}) others are served`, async () => {
  const head = `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH()}X-Slow: `;
  const slowBytes = [...Buffer.from(head)].map((b) => Buffer.from([b]))
    .concat(Array.from({ length: 200 }, () => Buffer.from('z'))); // about 45 s worth at most
  slowClients = Array.from({ length: 5 }, () => rawExchange(slowBytes, { gapMs: 200, timeoutMs: SLOW_BOUND_MS + 2000 }));
  const served = [];
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    const r = await gw.fetch('/v1/models', { signal: AbortSignal.timeout(2000) });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    served.push(Date.now() - t0);
    await new Promise((res) => setTimeout(res, 300)); // spread the checks over the slow clients' life
  }
  const c = await gw.client().chat.completions.create({ model: 'gpt-5.4', messages: [{ role: 'user', content: tag() }] });
  assert.ok(c.choices[0].message.content);
  assert.ok(Math.max(...served) < 1000, `others waited ${served.join(', ')} ms`);
  await assertAlive('slowloris');
});

test(`a slowloris connection is closed within CLIENT_TIMEOUT + 3 s, with a 408`, async () => {
    assert.ok(slowClients, 'started by the test above');
    const results = await Promise.all(slowClients);
    for (const r of results) {
      assert.ok(r.closed, `the slow connection is still open after ${r.ms} ms`);
      assert.ok(r.ms <= SLOW_BOUND_MS, `closed after ${r.ms} ms (bound ${SLOW_BOUND_MS})`);
      const { responses } = parseResponses(r.buf);
      assert.equal(responses.length, 1, JSON.stringify(r.buf.toString('latin1').slice(0, 200)));
      assert.equal(responses[0].status, 408);
    }
    protocolErrors.push(['slowloris', parseResponses(results[0].buf).responses[0]]);
  });

test('a client that sends nothing is closed after CLIENT_TIMEOUT', async () => {
  const r = await rawExchange([], { timeoutMs: CLIENT_TIMEOUT_S * 1000 + 4000 });
  assert.ok(r.closed, 'closed');
  assert.ok(r.ms <= CLIENT_TIMEOUT_S * 1000 + 2000, `after ${r.ms} ms`);
  const half = await rawExchange([`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH()}Content-Length: 100\r\n\r\n{"mod`],
    { timeoutMs: CLIENT_TIMEOUT_S * 1000 + 4000 });
  assert.ok(half.closed, 'a half-sent body is closed too');
  assert.ok(half.ms <= CLIENT_TIMEOUT_S * 1000 + 2000, `after ${half.ms} ms`);
  await assertAlive('idle clients');
});

// Each smuggling attempt hides a complete second chat request (with its own
// tag) after or inside the first. The gateway must refuse the ambiguous
// message with 400 and must never run the hidden request.
function smuggled(m) {
  return chatRequest(`SMUGGLED ${m}`, { extra: 'Connection: keep-alive\r\n' });
}

async function smugglingCase(name, bytes, m) {
  const before = await chatCount();
  const r = await rawExchange([bytes], { timeoutMs: 4000 });
  const { responses } = parseResponses(r.buf);
  // Let anything the gateway might have started reach the simulator.
  await new Promise((res) => setTimeout(res, 300));
  const hidden = await findChat(sim, (c) => c.prompts.some((p) => p.includes(m)));
  assert.equal(hidden.length, 0, `${name}: the hidden request ran upstream`);
  assert.ok(responses.length >= 1, `${name}: no response: ${JSON.stringify(r.buf.toString('latin1').slice(0, 300))}`);
  assert.equal(responses[0].status, 400, `${name}: first response ${responses[0].status} ${responses[0].body.slice(0, 200)}`);
  assert.equal(responses.length, 1, `${name}: ${responses.length} responses`);
  assert.ok(r.closed, `${name}: the connection is closed after the 400`);
  assert.equal(await chatCount(), before, `${name}: no chat reached the upstream`);
  protocolErrors.push([name, responses[0]]);
}

test('smuggling: Content-Length with Transfer-Encoding: chunked gets 400, the hidden request never runs', async () => {
  const m = tag();
  const hidden = smuggled(m);
  // Read by Content-Length the body is the chunked framing plus the hidden
  // request; read as chunked, the hidden request follows the body.
  const chunkedBody = `${(2).toString(16)}\r\n{}\r\n0\r\n\r\n`;
  const body = chunkedBody + hidden;
  await smugglingCase('CL + TE', `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH()}Content-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nTransfer-Encoding: chunked\r\n\r\n${body}`, m);
  const m2 = tag();
  await smugglingCase('TE + CL (TE first, short CL)', `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH()}Content-Type: application/json\r\n` +
    `Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n${chunkedBody}${smuggled(m2)}`, m2);
  await assertAlive('CL + TE');
});

test('smuggling: two different Content-Lengths (long one first) get 400, the hidden request never runs', async () => {
  const first = '{"model":"gpt-5.4","messages":[{"role":"user","content":"x"}]}';
  const m = tag();
  const hidden = smuggled(m);
  await smugglingCase('two Content-Lengths (long first)', `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH()}Content-Type: application/json\r\n` +
    `Content-Length: ${first.length + Buffer.byteLength(hidden)}\r\nContent-Length: ${first.length}\r\n\r\n${first}${hidden}`, m);
  await assertAlive('two Content-Lengths');
});

test('smuggling: two different Content-Lengths (short one first) get 400, the hidden request never runs', async () => {
    const first = '{"model":"gpt-5.4","messages":[{"role":"user","content":"x"}]}';
    const m = tag();
    const hidden = smuggled(m);
    await smugglingCase('two Content-Lengths (short first)', `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH()}Content-Type: application/json\r\n` +
      `Content-Length: ${first.length}\r\nContent-Length: ${first.length + Buffer.byteLength(hidden)}\r\n\r\n${first}${hidden}`, m);
  });

test('smuggling: an obs-folded Transfer-Encoding gets 400, the hidden request never runs', async () => {
  const m = tag();
  const chunkedBody = '2\r\n{}\r\n0\r\n\r\n';
  const body = chunkedBody + smuggled(m);
  await smugglingCase('obs-fold', `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH()}Content-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nTransfer-Encoding:\r\n chunked\r\n\r\n${body}`, m);
  await assertAlive('obs-fold');
});

test('smuggling: a header block with bare LF line ends gets 400, the hidden request never runs', async () => {
  const m = tag();
  const chunkedBody = '2\r\n{}\r\n0\r\n\r\n';
  const body = chunkedBody + smuggled(m);
  // A CRLF-only parser sees one header "X-Pad: a\nTransfer-Encoding: chunked"
  // and frames by Content-Length; a bare-LF parser sees chunked.
  await smugglingCase('bare LF', `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH()}Content-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nX-Pad: a\nTransfer-Encoding: chunked\r\n\r\n${body}`, m);
  await assertAlive('bare LF');
});

test('a garbage request line gets 400 and a close', async () => {
  for (const [name, bytes] of [
    ['words', 'GARBAGE\r\n\r\n'],
    ['no version', 'GET /healthz\r\n\r\n'],
    ['bad version', 'GET /healthz HTTP/9.9\r\n\r\n'],
    ['binary', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a])],
    ['NUL in the line', Buffer.from('GET /heal\0thz HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1')],
  ]) {
    const r = await rawExchange([bytes], { timeoutMs: 3000 });
    const { responses } = parseResponses(r.buf);
    assert.ok(r.closed, `${name}: closed (${r.ms} ms)`);
    if (responses.length) {
      const want = name === 'bad version' ? [505] : [400];
      assert.ok(want.includes(responses[0].status), `${name}: status ${responses[0].status}`);
      protocolErrors.push([`request line: ${name}`, responses[0]]);
    } else {
      assert.equal(r.buf.length, 0, `${name}: only a full response or nothing: ${JSON.stringify(r.buf.toString('latin1'))}`);
    }
  }
  // The plain 'GARBAGE' line is answered (not just dropped).
  const g = parseResponses((await rawExchange(['GARBAGE\r\n\r\n'], { timeoutMs: 3000 })).buf).responses;
  assert.equal(g.length, 1, 'GARBAGE is answered with a 400');
  assert.equal(g[0].status, 400);
  await assertAlive('garbage request lines');
});

test('HTTP/1.0: plain, chat and streamed chat replies end with the connection', async () => {
  const h = await rawExchange(['GET /healthz HTTP/1.0\r\n\r\n'], { timeoutMs: 3000 });
  assert.ok(h.closed, 'HTTP/1.0 without keep-alive closes');
  const hr = parseResponses(h.buf).responses;
  assert.equal(hr.length, 1);
  assert.equal(hr[0].status, 200);
  const m = tag();
  const c = await rawExchange([chatRequest(m, { version: '1.0' })], { timeoutMs: 5000 });
  const cr = parseResponses(c.buf).responses;
  assert.equal(cr.length, 1);
  assert.equal(cr[0].status, 200);
  assert.equal(JSON.parse(cr[0].body).choices[0].message.content, `You said: ${m}`);
  const m2 = tag();
  const s = await rawExchange([chatRequest(`[pieces=5] ${m2}`, { version: '1.0', stream: true })], { timeoutMs: 5000 });
  assert.ok(s.closed, 'the streamed reply ends with the connection');
  const sr = parseResponses(s.buf).responses;
  assert.equal(sr.length, 1);
  assert.equal(sr[0].status, 200);
  assert.ok(!/chunked/i.test(sr[0].headers['transfer-encoding'] || ''), 'no chunked encoding to an HTTP/1.0 client');
  const data = sr[0].body.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
  assert.equal(data.at(-1), '[DONE]');
  const text = data.slice(0, -1).map((d) => JSON.parse(d)).map((j) => (j.choices[0] && j.choices[0].delta.content) || '').join('');
  assert.equal(text, 'w1 w2 w3 w4 w5');
  await assertAlive('HTTP/1.0');
});

test('pipelined requests are answered in order', async () => {
  const a = tag(); const b = tag(); const c = tag();
  const bytes = `GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n` +
    chatRequest(`[slow=300] [pieces=3] ${a}`) +
    chatRequest(b) +
    `GET /v1/models HTTP/1.1\r\nHost: x\r\n${AUTH()}\r\n` +
    chatRequest(c, { extra: 'Connection: close\r\n' });
  const r = await rawExchange([bytes], { timeoutMs: 10000 });
  const { responses } = parseResponses(r.buf);
  assert.equal(responses.length, 5, `5 responses: ${r.buf.toString('utf8').slice(0, 500)}`);
  assert.deepEqual(responses.map((x) => x.status), [200, 200, 200, 200, 200]);
  assert.equal(JSON.parse(responses[0].body).status, 'ok');
  assert.equal(JSON.parse(responses[1].body).choices[0].message.content, 'w1 w2 w3');
  assert.equal(JSON.parse(responses[2].body).choices[0].message.content, `You said: ${b}`);
  assert.equal(JSON.parse(responses[3].body).object, 'list');
  assert.equal(JSON.parse(responses[4].body).choices[0].message.content, `You said: ${c}`);
  assert.ok(r.closed, 'Connection: close is honoured');
  await assertAlive('pipelining');
});

test('an unknown method gets 405 in the error shape', async () => {
  for (const method of ['BREW', 'PROPFIND', 'TRACE', 'CONNECT']) {
    const target = method === 'CONNECT' ? '127.0.0.1:443' : '/v1/models';
    const r = await rawExchange([`${method} ${target} HTTP/1.1\r\nHost: x\r\n${AUTH()}Connection: close\r\n\r\n`], { timeoutMs: 3000 });
    const { responses } = parseResponses(r.buf);
    assert.equal(responses.length, 1, `${method}: one response: ${JSON.stringify(r.buf.toString('latin1').slice(0, 200))}`);
    const st = responses[0].status;
    assert.equal(st, 405, `${method}: ${st}`);
    protocolErrors.push([`method ${method}`, responses[0]]);
  }
  await assertAlive('unknown methods');
});

test('a wrong method on a known route gets 405 in the error shape', async () => {
  for (const [method, p] of [['GET', '/v1/chat/completions'], ['DELETE', '/v1/chat/completions'], ['PUT', '/v1/chat/completions'],
    ['POST', '/v1/models'], ['DELETE', '/v1/models/gpt-5.4'], ['PATCH', '/v1/models'], ['HEAD', '/v1/chat/completions']]) {
    const r = await gw.fetch(p, { method, signal: AbortSignal.timeout(3000),
      ...(method === 'POST' || method === 'PUT' || method === 'PATCH' ? { body: '{}' } : {}) });
    assert.equal(r.status, 405, `${method} ${p}`);
    if (method !== 'HEAD') assertErrorShape(await r.text(), 405, `${method} ${p}`);
  }
  await assertAlive('wrong methods');
});

test('HTTP-level errors (408, 413, 431, 400 from the parser) come in the API error shape', () => {
    assert.ok(protocolErrors.length > 0, 'the tests above collected responses');
    const bad = [];
    for (const [name, resp] of protocolErrors) {
      try {
        assert.match(resp.headers['content-type'] || '', /application\/json/);
        assertErrorShape(resp.body, resp.status, name);
      } catch (e) {
        bad.push(`${name}: ${resp.status} ${resp.headers['content-type']} ${JSON.stringify(resp.body.slice(0, 80))}`);
      }
    }
    assert.deepEqual(bad, []);
  });

test('the gateway is alive and its log holds no sanitizer report', async () => {
  await assertAlive('everything');
  assert.ok(!/AddressSanitizer|runtime error:/.test(gw.logs()), 'no sanitizer report in the log');
});


test('after all of it the gateway drains and exits 0', async () => {
  // A sanitizer report or a failed assertion would make the exit non-zero.
  const exit = await Promise.race([gw.stop(), new Promise((res) => setTimeout(() => res('still running'), 5000))]);
  assert.deepEqual(exit, { code: 0, signal: null }, (gw.logs().match(/fatal.*|ERROR: AddressSanitizer.*|runtime error.*/) || [''])[0]);
});
