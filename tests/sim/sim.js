#!/usr/bin/env node
// Simulator of the cto.new / EngineLabs upstream (Clerk + REST + WebSocket) for gateway tests.
// Protocol: docs/upstream-protocol.md. Usage and control API: tests/sim/README.md.
// One HTTP server on 127.0.0.1 serves Clerk, REST, the WebSocket stream and the /__sim control API.
'use strict';

const http = require('http');
const crypto = require('crypto');
const { WebSocketServer } = require('ws');

const ORIGIN = 'https://cto.new';
const CHAT_BODY_LIMIT = 32768; // raw bytes; above this the chat POST gets 413
const HARD_BODY_LIMIT = 8 * 1024 * 1024; // beyond this any body is cut off with 413

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE = `usage: node sim.js [--host 127.0.0.1] [--port 0] [--flow 2026|2025] [--cookies c1,c2]
  [--jwt-ttl 60] [--jwt-shape sim|clerk] [--task-limit 0] [--mode delta|snapshot] [--piece-delay-ms 0]
  [--daily-limit 1000000] [--clerk-api-version V] [--clerk-js-version V] [--verbose]`;

function die(msg) {
  process.stderr.write(`sim: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    host: '127.0.0.1', port: 0, flow: '2026', cookies: ['sim_client_default'], jwtTtl: 60, jwtShape: 'sim',
    taskLimit: 0, mode: 'delta', pieceDelayMs: 0, dailyLimit: 1000000,
    clerkApiVersion: null, clerkJsVersion: null, verbose: false,
  };
  const ints = { port: 'port', 'jwt-ttl': 'jwtTtl', 'task-limit': 'taskLimit', 'piece-delay-ms': 'pieceDelayMs', 'daily-limit': 'dailyLimit' };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    if (!a.startsWith('--')) die(`unexpected argument ${a}`);
    a = a.slice(2);
    const eq = a.indexOf('=');
    if (eq >= 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    if (a === 'verbose') { o.verbose = true; continue; }
    if (a === 'help') { process.stdout.write(USAGE + '\n'); process.exit(0); }
    if (v === undefined) { v = argv[++i]; if (v === undefined) die(`--${a} needs a value`); }
    if (ints[a]) {
      if (!/^\d+$/.test(v)) die(`--${a} must be a non-negative integer`);
      o[ints[a]] = Number(v);
    } else if (a === 'host') o.host = v;
    else if (a === 'flow') { if (v !== '2026' && v !== '2025') die('--flow must be 2026 or 2025'); o.flow = v; }
    else if (a === 'mode') { if (v !== 'delta' && v !== 'snapshot') die('--mode must be delta or snapshot'); o.mode = v; }
    else if (a === 'jwt-shape') { if (v !== 'sim' && v !== 'clerk') die('--jwt-shape must be sim or clerk'); o.jwtShape = v; }
    else if (a === 'cookies') {
      o.cookies = v.split(',').map((s) => s.trim()).filter(Boolean);
      if (!o.cookies.length) die('--cookies needs at least one value');
      if (new Set(o.cookies).size !== o.cookies.length) die('--cookies values must be distinct');
      for (const c of o.cookies) if (!/^[\x21-\x7e]+$/.test(c) || /[;,]/.test(c)) die(`bad cookie value ${c}`);
    } else if (a === 'clerk-api-version') o.clerkApiVersion = v;
    else if (a === 'clerk-js-version') o.clerkJsVersion = v;
    else die(`unknown option --${a}`);
  }
  if (!['127.0.0.1', 'localhost', '::1'].includes(o.host)) die(`refusing to listen on ${o.host}: loopback (127.0.0.1) only`);
  if (o.host === 'localhost') o.host = '127.0.0.1';
  if (o.port > 65535) die('--port out of range');
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const log = opts.verbose ? (...a) => process.stderr.write(`sim: ${a.join(' ')}\n`) : () => {};

// ---------------------------------------------------------------------------------------------
// Static data

const ADAPTERS = [
  { key: 'gpt_5_4', model: 'gpt-5.4', engineAgentKey: 'GPT5_4', provider: 'openai', minimumTier: 'free', enabled: true, usageMultiplier: 1, supportsImages: true },
  { key: 'claude_sonnet_4_5', model: 'claude-sonnet-4-5', engineAgentKey: 'ClaudeSonnet4_5', provider: 'anthropic', minimumTier: 'free', enabled: true, usageMultiplier: 1, supportsImages: true },
  { key: 'gpt_5', model: 'gpt-5', engineAgentKey: 'GPT5', provider: 'openai', minimumTier: 'free', enabled: true, usageMultiplier: 1, supportsImages: true },
  { key: 'claude_opus_4_5', model: 'claude-opus-4-5', engineAgentKey: 'ClaudeOpus4_5', provider: 'anthropic', minimumTier: 'pro', enabled: true, usageMultiplier: 3, supportsImages: true },
  { key: 'gemini_2_5_pro', model: 'gemini-2.5-pro', engineAgentKey: 'Gemini2_5Pro', provider: 'google', minimumTier: 'free', enabled: false, usageMultiplier: 1, supportsImages: false },
];
const ADAPTER_BY_KEY = new Map(ADAPTERS.map((a) => [a.key, a]));
const ADAPTER_BY_AGENT = new Map(ADAPTERS.map((a) => [a.engineAgentKey, a]));
const DEFAULT_MODEL = 'claude_sonnet_4_5';

const FAULT_KINDS = new Set([
  'token_401', 'token_500', 'client_401', 'rotate', 'chat_429', 'chat_500', 'chat_413', 'project_500',
  'offers_500', 'adapters_500', 'preferred_500', 'ws_reject', 'ws_drop', 'ws_close', 'ws_stall',
  'malformed', 'huge', 'slow', 'snapshot', 'no_final_state', 'billing_limit', 'presign_500',
  'histories_500', 'histories_stall',
]);
const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);
const IMAGE_MAX = 10 * 1024 * 1024;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------------------------------------
// State

const JWT_SECRET = crypto.randomBytes(32);
const initialSettings = {
  flow: opts.flow, mode: opts.mode, pieceDelayMs: opts.pieceDelayMs, taskLimit: opts.taskLimit,
  jwtTtl: opts.jwtTtl, jwtShape: opts.jwtShape, dailyLimit: opts.dailyLimit,
  clerkApiVersion: opts.clerkApiVersion, clerkJsVersion: opts.clerkJsVersion,
};
let settings;
let accounts; // [{index, cookie, ...}]
let byCookie; // Map cookie value -> account
let byUser; // Map user id -> account
let chats; // Map chatHistoryId -> chat
let faults; // pending faults
let counters;
let rejected;
let faultsFired;
let replySeq;
let uploads; // key -> {mediaType, contentLength, account, data: Buffer|null}
const sockets = new Map(); // chatHistoryId -> Set<WebSocket>
let wsOpen = 0;

function reset() {
  settings = { ...initialSettings };
  accounts = opts.cookies.map((cookie, i) => {
    const n = i + 1;
    return {
      index: n, cookie, sessionId: `sess_sim${n}`, userId: `user_sim${n}`, orgId: `org_sim${n}`,
      workspaceId: `ws_sim${n}`, clientId: `client_sim${n}`, preferredModel: DEFAULT_MODEL,
      dailyUsage: 0, running: 0, rotations: 0,
    };
  });
  byCookie = new Map(accounts.map((a) => [a.cookie, a]));
  byUser = new Map(accounts.map((a) => [a.userId, a]));
  if (chats) for (const c of chats.values()) if (c.running) c.running.cancel();
  chats = new Map();
  faults = [];
  counters = Object.create(null);
  rejected = Object.create(null);
  faultsFired = Object.create(null);
  replySeq = 0;
  uploads = new Map();
  for (const set of sockets.values()) for (const ws of set) ws.close(1001, 'simulator reset');
}
reset();

const count = (k) => { counters[k] = (counters[k] || 0) + 1; };
const reject = (k) => { rejected[k] = (rejected[k] || 0) + 1; };
const hex = (n) => crypto.randomBytes(n).toString('hex');

// Take one armed fault of this kind that applies to ctx ({account, chat}); null if none.
// kind may be an array: the first queued fault of any of those kinds is taken.
function takeFault(kind, ctx = {}) {
  for (let i = 0; i < faults.length; i++) {
    const f = faults[i];
    if (Array.isArray(kind) ? !kind.includes(f.kind) : f.kind !== kind) continue;
    if (f.account != null && Number(f.account) !== ctx.account) continue;
    if (f.chatHistoryId != null && f.chatHistoryId !== ctx.chat) continue;
    if (f.times > 0) { f.times--; if (f.times === 0) faults.splice(i, 1); }
    faultsFired[f.kind] = (faultsFired[f.kind] || 0) + 1;
    log('fault fired', f.kind);
    return f;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

function send(res, status, body, headers = {}) {
  let data = '';
  let type = 'application/json; charset=utf-8';
  if (body === undefined || body === null) data = '';
  else if (typeof body === 'string') { data = body; type = 'text/plain; charset=utf-8'; } else data = JSON.stringify(body);
  const h = { 'Content-Length': Buffer.byteLength(data), ...headers };
  if (data) h['Content-Type'] = type;
  res.writeHead(status, h);
  res.end(data);
}

function readBody(req, limit) {
  return new Promise((resolve) => {
    const chunks = [];
    let size = 0;
    let over = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) { over = true; return; }
      chunks.push(c);
    });
    req.on('end', () => resolve({ buf: over ? null : Buffer.concat(chunks), size, over }));
    req.on('error', () => resolve({ buf: null, size, over: true, error: true }));
  });
}

function parseJson(buf) {
  try { return JSON.parse(buf.toString('utf8')); } catch { return undefined; }
}

function getCookie(header, name) {
  if (!header) return null;
  for (const part of String(header).split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

function accountFromCookie(req) {
  const v = getCookie(req.headers.cookie, '__client');
  return v ? byCookie.get(v) || null : null;
}

// ---------------------------------------------------------------------------------------------
// JWT (HS256 signature under an RS256 header: the simulator only validates its own tokens).
// --jwt-shape clerk makes it as long as Clerk's session tokens (about 750 characters, where the
// default is about 200): a kid, Clerk's other claims, and a 256-byte signature as RS256 with a
// 2048-bit key has, here eight HMACs (over "i.header.payload", i = 0..7) end to end. Header
// bytes cost per byte in some clients.

const b64u = (buf) => Buffer.from(buf).toString('base64url');

function jwtSignature(signed, long) {
  if (!long) return crypto.createHmac('sha256', JWT_SECRET).update(signed).digest();
  const parts = [];
  for (let i = 0; i < 8; i++) parts.push(crypto.createHmac('sha256', JWT_SECRET).update(`${i}.${signed}`).digest());
  return Buffer.concat(parts);
}

function signJwt(acct) {
  const iat = Math.floor(Date.now() / 1000);
  const clerk = settings.jwtShape === 'clerk';
  const payload = { sub: acct.userId, sid: acct.sessionId, org_id: acct.orgId, iat, exp: iat + settings.jwtTtl };
  if (clerk) Object.assign(payload, { azp: ORIGIN, fva: [0, -1], iss: `https://clerk.cto.new`, nbf: iat - 10, sts: 'active', v: 2, org_role: 'org:admin', org_slug: `team-${acct.index}` });
  const h = b64u(JSON.stringify(clerk ? { alg: 'RS256', kid: 'ins_2sim0000000000000000000000', typ: 'JWT' } : { alg: 'RS256', typ: 'JWT' }));
  const p = b64u(JSON.stringify(payload));
  return `${h}.${p}.${b64u(jwtSignature(`${h}.${p}`, clerk))}`;
}

function accountFromBearer(req) {
  const m = /^Bearer\s+(\S+)$/.exec(req.headers.authorization || '');
  if (!m) return null;
  const parts = m[1].split('.');
  if (parts.length !== 3) return null;
  let got;
  try { got = Buffer.from(parts[2], 'base64url'); } catch { return null; }
  const want = jwtSignature(`${parts[0]}.${parts[1]}`, got.length === 256);
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return null;
  let p;
  try { p = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')); } catch { return null; }
  if (!p || typeof p.exp !== 'number' || Date.now() / 1000 >= p.exp) return null;
  const acct = byUser.get(p.sub);
  if (!acct || acct.sessionId !== p.sid) return null;
  return acct;
}

// ---------------------------------------------------------------------------------------------
// The deterministic model

const DIRECTIVE_RE = /\[(pieces|bytes|slow)=(\d+)\]|\[(think|unicode|tool|batch|snapshot)\]/gi;
const UNICODE_TEXT = 'héllo wörld 你好 🙂';
const FILLER = 'The quick brown fox jumps over the lazy dog. ';

function parseDirectives(text) {
  const d = {};
  const clean = text.replace(DIRECTIVE_RE, (_, k, n, flag) => {
    if (k) d[k.toLowerCase()] = Number(n);
    else d[flag.toLowerCase()] = true;
    return '';
  });
  return { d, clean };
}

function questionOf(clean) {
  const lines = clean.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  if (!lines.length) return '';
  return lines[lines.length - 1].replace(/^user:\s*/i, '').trim();
}

function truncate(s, n) {
  const cps = Array.from(s);
  return cps.length > n ? cps.slice(0, n).join('') : s;
}

function asciiText(n) {
  const reps = Math.ceil(n / FILLER.length) + 1;
  return FILLER.repeat(reps).slice(0, n);
}

function chunk(s, size) {
  const out = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

function wordPieces(s) {
  return s.match(/\S+\s*|\s+/g) || [];
}

// Compute the reply to the newest prompt of a chat. Returns {text, pieces, thinking, d}.
function modelReply(chat, promptText, hugeBytes) {
  const { d, clean } = parseDirectives(promptText);
  const q = questionOf(clean);
  let text;
  let pieces;
  if (hugeBytes != null || d.bytes != null) {
    text = asciiText(hugeBytes != null ? hugeBytes : d.bytes);
    pieces = chunk(text, 100);
  } else if (d.pieces != null) {
    const words = [];
    for (let i = 1; i <= d.pieces; i++) words.push(`w${i}`);
    text = words.join(' ');
    pieces = words.map((w, i) => (i < words.length - 1 ? `${w} ` : w));
  } else if (d.unicode) {
    text = UNICODE_TEXT;
    const cps = Array.from(text);
    pieces = [];
    for (let i = 0; i < cps.length; i += 2) pieces.push(cps.slice(i, i + 2).join(''));
  } else {
    const lower = q.toLowerCase();
    if (lower.includes('what is my name')) {
      let name = null;
      for (const p of chat.prompts) {
        const all = parseDirectives(p).clean;
        const re = /(?<![\p{L}\p{N}_])my name is ([\p{L}\p{N}_]+)/giu;
        let m;
        while ((m = re.exec(all))) name = m[1];
      }
      text = name ? `Your name is ${name}.` : "I don't know your name.";
    } else {
      const m = /(?<![\p{L}\p{N}_])my name is ([\p{L}\p{N}_]+)/iu.exec(q);
      if (m) text = `Nice to meet you, ${m[1]}.`;
      else text = q ? `You said: ${truncate(q, 200)}` : 'You said nothing.';
    }
    pieces = wordPieces(text);
  }
  const thinking = d.think ? wordPieces('Thinking about it.') : [];
  return { text, pieces, thinking, d, question: q };
}

// ---------------------------------------------------------------------------------------------
// Replies over the WebSocket

function broadcast(chatId, s) {
  const set = sockets.get(chatId);
  if (!set) return 0;
  let n = 0;
  for (const ws of set) if (ws.readyState === 1) { ws.send(s); n++; }
  return n;
}

const stateFrame = (inProgress, taskId) => JSON.stringify({ type: 'state', state: { inProgress, cancelled: false, taskId } });
const updateFrame = (inners) => JSON.stringify({ type: 'update', buffer: inners.map((o) => JSON.stringify(o) + '\n').join('') });

function labelOf(q) {
  const words = q.split(/\s+/).filter(Boolean).slice(0, 6).join(' ');
  return words ? truncate(words, 60) : 'New chat';
}

function startReply(chat, acct, promptText) {
  const ctx = { account: acct.index, chat: chat.id };
  const huge = takeFault('huge', ctx);
  const r = modelReply(chat, promptText, huge ? Number(huge.bytes || 1000000) : null);
  const slow = takeFault('slow', ctx);
  const snapFault = takeFault('snapshot', ctx);
  const malformed = takeFault('malformed', ctx);
  const noFinal = takeFault('no_final_state', ctx);
  const tf = takeFault(['ws_drop', 'ws_close', 'ws_stall'], ctx);
  const term = tf ? { kind: tf.kind, after: Number(tf.after != null ? tf.after : 1) } : null;
  const snapshot = settings.mode === 'snapshot' || !!snapFault || !!r.d.snapshot;
  const delay = Math.max(settings.pieceDelayMs, r.d.slow || 0, slow ? Number(slow.ms || 200) : 0);
  const taskId = `task_${hex(8)}`;
  const msgId = `msg_${hex(10)}`;
  const thinkId = `msg_${hex(10)}`;
  const firstReply = chat.replies.length === 0;

  // Inner objects after the echo, in order.
  const inners = [];
  for (const t of r.thinking) inners.push({ id: thinkId, type: 'thinking', thinking: { content: t } });
  const toolAt = r.d.tool ? Math.floor(r.pieces.length / 2) : -1;
  let sofar = '';
  r.pieces.forEach((p, i) => {
    if (i === toolAt) inners.push({ id: `tool_${hex(6)}`, type: 'tool_call', tool_call: { name: 'read_file', arguments: { path: 'README.md' }, status: 'completed' } });
    sofar += p;
    inners.push({ id: msgId, type: 'chat', chat: { content: snapshot ? sofar : p } });
  });
  if (r.d.tool && r.pieces.length === 0) inners.push({ id: `tool_${hex(6)}`, type: 'tool_call', tool_call: { name: 'read_file', arguments: { path: 'README.md' }, status: 'completed' } });

  const frames = [{ s: stateFrame(true, taskId) }, { s: updateFrame([{ role: 'user', content: promptText }]) }];
  const firstPieceFrame = frames.length;
  const per = r.d.batch ? 3 : 1;
  const pieceFrames = [];
  for (let i = 0; i < inners.length; i += per) pieceFrames.push({ s: updateFrame(inners.slice(i, i + per)), piece: true });
  if (malformed) {
    const at = Math.min(Number(malformed.after != null ? malformed.after : 1), pieceFrames.length);
    const variant = malformed.variant || 'outer';
    const s = variant === 'inner' ? JSON.stringify({ type: 'update', buffer: '{not json\n' })
      : variant === 'unknown' ? JSON.stringify({ type: 'surprise', data: { note: 'unknown frame type' } })
        : '{"type":"update","buffer":"{not json';
    pieceFrames.splice(at, 0, { s, piece: false });
  }
  frames.push(...pieceFrames);
  if (!noFinal) {
    frames.push({ s: stateFrame(false, taskId) });
    if (firstReply) {
      chat.label = labelOf(r.question);
      frames.push({ s: JSON.stringify({ type: 'label', label: chat.label }) });
    }
  }

  const detail = {
    seq: ++replySeq, taskId, messageId: msgId, model: chat.models[chat.models.length - 1], text: r.text,
    pieces: r.pieces, thinking: r.thinking.join(''), thinkingPieces: r.thinking, snapshot, batch: !!r.d.batch,
    tool: !!r.d.tool, delayMs: delay, fault: term ? term.kind : null, outcome: 'running', framesSent: 0, framesDelivered: 0,
  };
  chat.replies.push(r.text);
  chat.thinking.push(detail.thinking);
  chat.details.push(detail);
  acct.running++;
  count('replies_started');

  let i = 0;
  let piecesSent = 0;
  let timer = null;
  let done = false;
  let delayedIndex = -1;
  const finish = (outcome) => {
    if (done) return;
    done = true;
    if (timer) { clearTimeout(timer); timer = null; }
    detail.outcome = outcome;
    acct.running = Math.max(0, acct.running - 1);
    if (chat.running === handle) chat.running = null;
    count(`replies_${outcome}`);
  };
  const handle = { cancel: () => finish('cancelled'), taskId };
  chat.running = handle;

  const step = () => {
    timer = null;
    if (done) return;
    let burst = 0;
    while (i < frames.length) {
      if (term && i >= firstPieceFrame && piecesSent >= term.after) {
        const set = sockets.get(chat.id);
        if (term.kind === 'ws_drop') { if (set) for (const ws of set) ws.terminate(); finish('dropped'); return; }
        if (term.kind === 'ws_close') { if (set) for (const ws of set) ws.close(1011, 'Internal error'); finish('closed'); return; }
        finish('stalled');
        return;
      }
      const f = frames[i];
      if (f.piece && delay > 0 && delayedIndex !== i) {
        delayedIndex = i;
        timer = setTimeout(step, delay);
        return;
      }
      const n = broadcast(chat.id, f.s);
      detail.framesSent++;
      if (n) detail.framesDelivered++;
      i++;
      if (f.piece) piecesSent++;
      if (++burst >= 256) { timer = setTimeout(step, 0); return; }
    }
    if (term) { finish(term.kind === 'ws_drop' ? 'dropped' : term.kind === 'ws_close' ? 'closed' : 'stalled'); return; }
    finish(noFinal ? 'no_final_state' : detail.framesDelivered ? 'complete' : 'lost');
  };
  setImmediate(step);
}

// ---------------------------------------------------------------------------------------------
// Clerk

const signedOut = { errors: [{ code: 'signed_out', message: 'Signed out', long_message: 'You are signed out' }] };

function sessionObj(a) {
  return { id: a.sessionId, object: 'session', status: 'active', user: { id: a.userId }, last_active_organization_id: a.orgId };
}

async function clerk(req, res, u, route) {
  count(route.name);
  const q = u.searchParams;
  const api = q.get('__clerk_api_version');
  const js = q.get('_clerk_js_version');
  if (!api || !js) {
    reject('clerk_query');
    return send(res, 400, { errors: [{ code: 'missing_query_parameter', message: '__clerk_api_version and _clerk_js_version are required' }] });
  }
  if ((settings.clerkApiVersion && api !== settings.clerkApiVersion) || (settings.clerkJsVersion && js !== settings.clerkJsVersion)) {
    reject('clerk_version');
    return send(res, 400, { errors: [{ code: 'unsupported_api_version', message: `Clerk API version ${api} / clerk-js ${js} is not supported` }] });
  }
  const body = req.method === 'POST' ? await readBody(req, 65536) : null;
  const acct = accountFromCookie(req);
  if (!acct) { reject('clerk_auth'); return send(res, 401, signedOut); }
  const ctx = { account: acct.index };
  if (takeFault('client_401', ctx)) return send(res, 401, signedOut);

  let status = 200;
  let out;
  if (route.name === 'GET /v1/client') {
    out = { response: { id: acct.clientId, object: 'client', sessions: [sessionObj(acct)], last_active_session_id: acct.sessionId }, client: null };
  } else {
    const sid = route.params[0];
    if (sid !== acct.sessionId) { reject('clerk_session'); return send(res, 404, { errors: [{ code: 'resource_not_found', message: 'Session not found' }] }); }
    if (route.name === 'POST /tokens') {
      const tf = takeFault(['token_401', 'token_500'], ctx);
      if (tf && tf.kind === 'token_401') return send(res, 401, { errors: [{ code: tf.code || 'authentication_invalid', message: 'Unauthenticated' }] });
      if (tf) return send(res, 500, { errors: [{ code: 'internal_clerk_error', message: 'Oops, an unexpected error occurred' }] });
      const form = new URLSearchParams(body && body.buf ? body.buf.toString('utf8') : '');
      const org = form.get('organization_id');
      if (org && org !== acct.orgId) { reject('clerk_org'); return send(res, 403, { errors: [{ code: 'not_a_member_in_organization', message: 'Not a member of this organization' }] }); }
      out = { object: 'token', jwt: signJwt(acct) };
    } else {
      out = { response: sessionObj(acct), client: null };
    }
  }
  const headers = {};
  if (takeFault('rotate', ctx)) {
    const nv = `sim_client_${hex(12)}`;
    byCookie.delete(acct.cookie);
    acct.cookie = nv;
    acct.rotations++;
    byCookie.set(nv, acct);
    headers['Set-Cookie'] = `__client=${nv}; Path=/; HttpOnly; Secure; SameSite=Lax`;
    count('rotations');
  }
  return send(res, status, out, headers);
}

// ---------------------------------------------------------------------------------------------
// EngineLabs REST

const unauthorized = { error: 'Unauthorized', message: 'Invalid or expired token' };

function billingOf(acct, extra) {
  const L = settings.dailyLimit;
  const reached = acct.dailyUsage >= L;
  const midnight = new Date();
  midnight.setUTCHours(24, 0, 0, 0);
  let out = {
    tier: 'free', dailyUsage: acct.dailyUsage, dailyLimit: L, weeklyUsage: acct.dailyUsage, weeklyLimit: 3 * L,
    hasReachedLimit: reached, limitReached: reached ? { type: 'daily', retryAt: midnight.toISOString() } : null,
    taskConcurrencyLimit: settings.taskLimit || 2,
  };
  if (extra) out = { ...out, ...extra };
  return out;
}

function chatSummary(c) {
  return { id: c.id, label: c.label, projectId: c.projectId, workspaceId: c.workspaceId, createdAt: c.createdAt, updatedAt: c.updatedAt, inProgress: !!c.running };
}

function newChat(id, acct, flow, extra = {}) {
  const now = new Date().toISOString();
  const c = {
    id, account: acct.index, flow, workspaceId: flow === '2026' ? acct.workspaceId : null, createdAt: now, updatedAt: now,
    label: null, deleted: false, prompts: [], models: [], images: [], replies: [], thinking: [], details: [], running: null,
    ...extra,
  };
  chats.set(id, c);
  count('chats_created');
  return c;
}

async function rest(req, res, u, route) {
  count(route.name);
  const acct = accountFromBearer(req);
  if (!acct) { reject('auth'); await readBody(req, HARD_BODY_LIMIT); return send(res, 401, unauthorized); }
  const ctx = { account: acct.index };
  const body = req.method === 'GET' || req.method === 'DELETE' ? null : await readBody(req, HARD_BODY_LIMIT);
  const json = () => (body && body.buf ? parseJson(body.buf) : undefined);
  const bad = (msg) => { reject('bad_request'); return send(res, 400, { error: 'Bad Request', message: msg }); };
  const notFound = () => { reject('not_found'); return send(res, 404, { error: 'Not Found', message: 'Chat history not found' }); };
  const ise = () => send(res, 500, { error: 'Internal Server Error' });

  switch (route.name) {
    case 'GET /chat/adapters':
      if (takeFault('adapters_500', ctx)) return ise();
      return send(res, 200, { chatAdapters: ADAPTERS });
    case 'GET /billing': {
      const f = takeFault('billing_limit', ctx);
      if (f) {
        const retryAt = new Date(Date.now() + 1000 * Number(f.seconds != null ? f.seconds : 3600)).toISOString();
        return send(res, 200, billingOf(acct, { hasReachedLimit: true, limitReached: { type: 'daily', retryAt } }));
      }
      return send(res, 200, billingOf(acct));
    }
    case 'PATCH /teams/preferred-model': {
      if (takeFault('preferred_500', ctx)) return ise();
      const b = json();
      if (!b || typeof b.modelKey !== 'string') return bad('modelKey is required');
      const a = ADAPTER_BY_KEY.get(b.modelKey);
      if (!a || !a.enabled) return bad(`Unknown or disabled model: ${b.modelKey}`);
      acct.preferredModel = a.key;
      return send(res, 200, { modelKey: a.key });
    }
    case 'POST /projects/create-hosted': {
      if (takeFault('project_500', ctx)) return ise();
      const b = json();
      if (!b || typeof b.projectName !== 'string' || !b.projectName) return bad('projectName is required');
      const id = crypto.randomUUID();
      const shortCode = `sim-${hex(3)}`;
      newChat(id, acct, '2026', { projectId: id, projectName: b.projectName, projectShortCode: shortCode });
      return send(res, 201, { projectId: id, projectShortCode: shortCode, workspaceId: acct.workspaceId, workspaceName: `Sim Workspace ${acct.index}` });
    }
    case 'POST /engine-agent/offers': {
      if (takeFault('offers_500', ctx)) return ise();
      const b = json();
      if (!b || typeof b.chatHistoryId !== 'string') return bad('chatHistoryId is required');
      return send(res, 200, { offers: [] });
    }
    case 'GET /chat-histories': {
      if (takeFault('histories_500', ctx)) return ise();
      if (takeFault('histories_stall', ctx)) return; // never answered: the caller's timeout or cancel ends it
      const ws = u.searchParams.get('workspaceId');
      const size = Math.min(100, Math.max(1, Number(u.searchParams.get('pageSize')) || 20));
      if (settings.flow === '2026' && ws !== acct.workspaceId) return send(res, 403, { error: 'Forbidden', message: 'Not a member of this workspace' });
      const list = [...chats.values()].filter((c) => c.account === acct.index && !c.deleted).reverse();
      return send(res, 200, { chatHistories: list.slice(0, size).map(chatSummary), hasMore: list.length > size });
    }
    case 'DELETE /chat-histories': {
      const c = chats.get(route.params[0]);
      if (!c || c.deleted || c.account !== acct.index) return notFound();
      c.deleted = true;
      if (c.running) c.running.cancel();
      const set = sockets.get(c.id);
      if (set) for (const ws of set) ws.close(1000, 'chat deleted');
      count('chats_deleted');
      return send(res, 200, { success: true });
    }
    case 'POST /images/presign': {
      if (takeFault('presign_500', ctx)) return ise();
      const b = json();
      if (!b || !Array.isArray(b.images) || !b.images.length || b.images.length > 10) return bad('images must be a non-empty array (10 at most)');
      for (const im of b.images) {
        if (!im || !IMAGE_TYPES.has(im.mediaType)) return bad(`unsupported mediaType ${im && im.mediaType}`);
        if (!Number.isInteger(im.contentLength) || im.contentLength <= 0 || im.contentLength > IMAGE_MAX) return bad('contentLength must be 1..10485760');
      }
      const host = `http://${req.headers.host}`;
      const out = b.images.map((im) => {
        const key = `${hex(12)}.${im.mediaType.split('/')[1]}`;
        uploads.set(key, { mediaType: im.mediaType, contentLength: im.contentLength, account: acct.index, data: null });
        return { key, uploadUrl: `${host}/__uploads/${key}?X-Sim-Signature=${hex(8)}`, publicUrl: `${host}/__images/${key}`, mediaType: im.mediaType };
      });
      return send(res, 200, { uploads: out });
    }
    case 'POST /engine-agent/chat':
      return chatPost(req, res, acct, body, bad, notFound);
    default:
      return send(res, 404, { error: 'Not Found' });
  }
}

function chatPost(req, res, acct, body, bad, notFound) {
  const ctx = { account: acct.index };
  if (body.over || body.size > CHAT_BODY_LIMIT) { reject('too_large'); return send(res, 413, { error: 'Message too large' }); }
  const b = parseJson(body.buf);
  const cid = b && typeof b.chatHistoryId === 'string' ? b.chatHistoryId : null;
  ctx.chat = cid;
  const cf = takeFault(['chat_413', 'chat_500', 'chat_429'], ctx);
  if (cf && cf.kind === 'chat_413') return send(res, 413, { error: 'Message too large' });
  if (cf && cf.kind === 'chat_500') return send(res, 500, 'Internal Server Error');
  const f429 = cf && cf.kind === 'chat_429' ? cf : null;
  if (f429) {
    if (f429.code === 'concurrency') return send(res, 429, { error: 'Too many concurrent tasks', code: 'CONCURRENCY_LIMIT' });
    const retryAt = new Date(Date.now() + 1000 * Number(f429.seconds != null ? f429.seconds : 3600)).toISOString();
    return send(res, 429, { error: 'Daily limit reached', limitReached: { type: 'daily', retryAt } });
  }
  if (b === undefined || b === null || typeof b !== 'object') return bad('Body must be a JSON object');
  if (!cid) return bad('chatHistoryId is required');
  if (typeof b.prompt !== 'string' || b.prompt === '') return bad('prompt is required');

  const flow = settings.flow;
  let chat = chats.get(cid);
  if (flow === '2025' && !chat) {
    if (!UUID_RE.test(cid)) return bad('chatHistoryId must be a UUID');
  } else if (!chat || chat.deleted || chat.account !== acct.index) return notFound();

  let text;
  if (b.encoded === true) {
    if (!B64_RE.test(b.prompt)) return bad('prompt is not valid base64');
    try { text = utf8.decode(Buffer.from(b.prompt, 'base64')); } catch { return bad('prompt is not valid UTF-8 once decoded'); }
  } else {
    // Upstream loses some characters in a plain prompt; the simulator makes that visible.
    text = b.prompt;
    if (flow === '2026') { count('plain_prompts'); text = text.replace(/[^\x20-\x7e\n\r\t]/gu, '?'); }
  }

  let adapter;
  if (flow === '2025') {
    adapter = ADAPTER_BY_AGENT.get(b.adapterName);
    if (!adapter || !adapter.enabled) return bad(`Unknown adapterName: ${b.adapterName}`);
  } else adapter = ADAPTER_BY_KEY.get(acct.preferredModel);

  if (chat && chat.running) { reject('chat_busy'); return send(res, 409, { error: 'A task is already running on this chat', code: 'TASK_IN_PROGRESS' }); }
  if (acct.dailyUsage >= settings.dailyLimit) {
    reject('quota');
    return send(res, 429, { error: 'Daily limit reached', limitReached: billingOf(acct).limitReached });
  }
  if (settings.taskLimit > 0 && acct.running >= settings.taskLimit) {
    reject('task_limit');
    return send(res, 429, { error: 'Too many concurrent tasks', code: 'CONCURRENCY_LIMIT' });
  }
  if (!chat) chat = newChat(cid, acct, '2025');
  chat.prompts.push(text);
  chat.models.push(adapter.key);
  chat.images.push(Array.isArray(b.imageUrls) ? b.imageUrls.map((url) => {
    const m = /\/__images\/([^/?#]+)$/.exec(String(url));
    const item = m && uploads.get(m[1]);
    return { url, uploaded: !!(item && item.data), bytes: item && item.data ? item.data.length : 0 };
  }) : []);
  chat.updatedAt = new Date().toISOString();
  acct.dailyUsage += adapter.usageMultiplier;
  count('chats_accepted');
  send(res, 202);
  startReply(chat, acct, text);
}

// ---------------------------------------------------------------------------------------------
// Control API (/__sim)

function statsOf(withChats) {
  const wsOpenByChat = {};
  for (const [id, set] of sockets) if (set.size) wsOpenByChat[id] = set.size;
  const out = {
    settings, counters, rejected, faultsFired, pendingFaults: faults, wsOpen, wsOpenByChat,
    accounts: accounts.map((a) => ({
      index: a.index, cookie: a.cookie, sessionId: a.sessionId, userId: a.userId, orgId: a.orgId, workspaceId: a.workspaceId,
      preferredModel: a.preferredModel, dailyUsage: a.dailyUsage, running: a.running, rotations: a.rotations,
    })),
    cpu: process.cpuUsage(), rssBytes: process.memoryUsage.rss(),
  };
  if (withChats) {
    out.chats = {};
    for (const [id, c] of chats) out.chats[id] = chatView(c);
  }
  return out;
}

function chatView(c) {
  const { running, ...rest } = c;
  return { ...rest, inProgress: !!running, wsOpen: (sockets.get(c.id) || { size: 0 }).size };
}

async function control(req, res, u) {
  const p = u.pathname;
  const body = req.method === 'POST' ? await readBody(req, 1 << 20) : null;
  const b = body && body.buf && body.buf.length ? parseJson(body.buf) : {};
  if (b === undefined) return send(res, 400, { error: 'invalid JSON' });
  if (p === '/__sim/stats' && req.method === 'GET') return send(res, 200, statsOf(u.searchParams.get('chats') !== '0'));
  if (p.startsWith('/__sim/chats/') && req.method === 'GET') {
    const c = chats.get(decodeURIComponent(p.slice('/__sim/chats/'.length)));
    return c ? send(res, 200, chatView(c)) : send(res, 404, { error: 'no such chat' });
  }
  if (p === '/__sim/faults') {
    if (req.method === 'GET') return send(res, 200, { faults });
    if (req.method === 'DELETE') { faults = []; return send(res, 200, { faults }); }
    if (req.method === 'POST') {
      const list = Array.isArray(b.faults) ? b.faults : null;
      if (!list) return send(res, 400, { error: 'expected {"faults":[...]}' });
      for (const f of list) {
        if (!f || !FAULT_KINDS.has(f.kind)) return send(res, 400, { error: `unknown fault kind ${f && f.kind}`, kinds: [...FAULT_KINDS] });
        if (f.times != null && (!Number.isInteger(f.times) || f.times === 0 || f.times < -1)) return send(res, 400, { error: 'times must be a positive integer or -1' });
      }
      for (const f of list) faults.push({ times: 1, ...f });
      return send(res, 200, { queued: list.length, faults });
    }
  }
  if (p === '/__sim/config') {
    if (req.method === 'GET') return send(res, 200, { config: settings });
    if (req.method === 'POST') {
      const allowed = { mode: ['delta', 'snapshot'], flow: ['2026', '2025'], jwtShape: ['sim', 'clerk'] };
      const next = { ...settings };
      for (const [k, v] of Object.entries(b)) {
        if (allowed[k]) { if (!allowed[k].includes(v)) return send(res, 400, { error: `bad ${k}` }); next[k] = v; }
        else if (['pieceDelayMs', 'taskLimit', 'jwtTtl', 'dailyLimit'].includes(k)) {
          if (!Number.isInteger(v) || v < 0) return send(res, 400, { error: `bad ${k}` });
          next[k] = v;
        } else if (k === 'clerkApiVersion' || k === 'clerkJsVersion') next[k] = v == null ? null : String(v);
        else return send(res, 400, { error: `unknown setting ${k}` });
      }
      settings = next;
      return send(res, 200, { config: settings });
    }
  }
  if (p === '/__sim/reset' && req.method === 'POST') { reset(); return send(res, 200, { ok: true }); }
  return send(res, 404, { error: 'unknown control endpoint' });
}

// Stand-in for the object store behind /images/presign: PUT to the upload URL, GET the public URL.
async function storage(req, res, u) {
  const up = u.pathname.startsWith('/__uploads/');
  const key = decodeURIComponent(u.pathname.slice(up ? 11 : 10));
  const item = uploads.get(key);
  if (up) {
    count('PUT upload');
    const body = await readBody(req, IMAGE_MAX);
    if (req.method !== 'PUT' || !item || !u.searchParams.get('X-Sim-Signature')) return send(res, 403, 'AccessDenied');
    const type = String(req.headers['content-type'] || '').split(';')[0].trim();
    if (body.over || body.size !== item.contentLength || type !== item.mediaType) { reject('upload_mismatch'); return send(res, 403, 'SignatureDoesNotMatch'); }
    item.data = body.buf;
    return send(res, 200);
  }
  count('GET image');
  req.resume();
  if (req.method !== 'GET' || !item || !item.data) return send(res, 404, 'NoSuchKey');
  res.writeHead(200, { 'Content-Type': item.mediaType, 'Content-Length': item.data.length });
  return res.end(item.data);
}

// ---------------------------------------------------------------------------------------------
// Routing

const ROUTES = [
  ['GET', /^\/v1\/client$/, 'GET /v1/client', clerk],
  ['POST', /^\/v1\/client\/sessions\/([^/]+)\/tokens$/, 'POST /tokens', clerk],
  ['POST', /^\/v1\/client\/sessions\/([^/]+)\/touch$/, 'POST /touch', clerk],
  ['GET', /^\/chat\/adapters$/, 'GET /chat/adapters', rest],
  ['GET', /^\/billing$/, 'GET /billing', rest],
  ['PATCH', /^\/teams\/preferred-model$/, 'PATCH /teams/preferred-model', rest],
  ['POST', /^\/projects\/create-hosted$/, 'POST /projects/create-hosted', rest],
  ['POST', /^\/engine-agent\/offers$/, 'POST /engine-agent/offers', rest],
  ['POST', /^\/engine-agent\/chat$/, 'POST /engine-agent/chat', rest],
  ['POST', /^\/images\/presign$/, 'POST /images/presign', rest],
  ['GET', /^\/engine-agent\/chat-histories$/, 'GET /chat-histories', rest],
  ['DELETE', /^\/engine-agent\/chat-histories\/([^/]+)$/, 'DELETE /chat-histories', rest],
];

const WS_PATH = /^\/engine-agent\/chat-histories\/([^/]+)\/buffer\/stream$/;

function parseUrl(raw) {
  try { return new URL(raw, 'http://sim'); } catch { return null; }
}

async function onRequest(req, res) {
  const u = parseUrl(req.url);
  if (!u) return send(res, 400, { error: 'bad url' });
  if (u.pathname.startsWith('/__sim/')) return control(req, res, u);
  if (u.pathname.startsWith('/__uploads/') || u.pathname.startsWith('/__images/')) return storage(req, res, u);
  if (req.headers.origin !== ORIGIN) {
    reject('origin');
    req.resume();
    return send(res, 403, { error: 'Forbidden', message: 'Origin not allowed' });
  }
  for (const [method, re, name, fn] of ROUTES) {
    const m = re.exec(u.pathname);
    if (!m) continue;
    if (req.method !== method) continue;
    return fn(req, res, u, { name, params: m.slice(1).map(decodeURIComponent) });
  }
  count('unknown');
  reject('not_found');
  log('unknown path', req.method, u.pathname);
  req.resume();
  return send(res, 404, { error: 'Not Found', message: `Cannot ${req.method} ${u.pathname}` });
}

// ---------------------------------------------------------------------------------------------
// WebSocket

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false, maxPayload: 1 << 16 });

function rejectUpgrade(socket, status, body) {
  const data = JSON.stringify(body);
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] || 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(data)}\r\nConnection: close\r\n\r\n${data}`);
  socket.destroy();
}

function onUpgrade(req, socket, head) {
  socket.on('error', () => {});
  count('ws_upgrade');
  const u = parseUrl(req.url);
  const m = u && WS_PATH.exec(u.pathname);
  if (!m) { reject('not_found'); return rejectUpgrade(socket, 404, { error: 'Not Found' }); }
  if (req.headers.origin !== ORIGIN) { reject('origin'); return rejectUpgrade(socket, 403, { error: 'Forbidden', message: 'Origin not allowed' }); }
  const chatId = decodeURIComponent(m[1]);
  const acct = accountFromCookie(req);
  const f = takeFault('ws_reject', { account: acct ? acct.index : null, chat: chatId });
  if (f) return rejectUpgrade(socket, Number(f.status || 500), { error: 'Simulated rejection' });
  const token = u.searchParams.get('token');
  const flow = settings.flow;
  let ok = !!acct;
  if (ok && flow === '2026') ok = token === `${acct.userId}:${acct.orgId}` && u.searchParams.get('workspaceId') === acct.workspaceId;
  else if (ok) ok = token === acct.userId;
  if (!ok) { reject('ws_auth'); return rejectUpgrade(socket, 401, unauthorized); }
  let chat = chats.get(chatId);
  if (!chat && flow === '2025' && UUID_RE.test(chatId)) chat = newChat(chatId, acct, '2025');
  if (!chat || chat.deleted || chat.account !== acct.index) { reject('not_found'); return rejectUpgrade(socket, 404, { error: 'Not Found', message: 'Chat history not found' }); }
  wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, chat));
}

function onConnection(ws, chat) {
  count('ws_connect');
  wsOpen++;
  let set = sockets.get(chat.id);
  if (!set) { set = new Set(); sockets.set(chat.id, set); }
  set.add(ws);
  const messages = [];
  chat.prompts.forEach((p, i) => {
    messages.push({ role: 'user', content: p });
    const d = chat.details[i];
    if (d && d.outcome !== 'running') messages.push({ id: d.messageId, role: 'assistant', content: d.text });
  });
  ws.send(JSON.stringify({ type: 'history', messages }));
  ws.send(stateFrame(!!chat.running, chat.running ? chat.running.taskId : null));
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.length === 4 && data.toString() === 'ping') { count('ws_ping'); ws.send('pong'); } else count('ws_other_message');
  });
  ws.on('error', () => {});
  ws.on('close', () => {
    wsOpen--;
    set.delete(ws);
    if (!set.size && sockets.get(chat.id) === set) sockets.delete(chat.id);
    count('ws_closed');
  });
}

// ---------------------------------------------------------------------------------------------
// Start

const server = http.createServer((req, res) => {
  onRequest(req, res).catch((e) => {
    process.stderr.write(`sim: internal error ${e && e.stack}\n`);
    if (!res.headersSent) send(res, 500, { error: 'simulator internal error' });
  });
});
server.on('upgrade', onUpgrade);
server.on('clientError', (err, socket) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'); });
server.listen({ host: opts.host, port: opts.port, backlog: 4096 }, () => {
  process.stdout.write(JSON.stringify({ event: 'listening', port: server.address().port }) + '\n');
  log('listening on', opts.host, server.address().port, 'flow', settings.flow);
});
server.on('error', (e) => { process.stderr.write(`sim: ${e.message}\n`); process.exit(1); });

function shutdown() {
  for (const set of sockets.values()) for (const ws of set) ws.terminate();
  server.close();
  server.closeAllConnections && server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
