// Test harness for the upstream simulator: start it as a child process, drive its control API,
// and talk to it like the gateway would (Clerk, REST, WebSocket). Used by tests/sim/test and
// usable by gateway tests: const { startSim } = require('<repo>/tests/sim/harness.js').
'use strict';

const { spawn } = require('child_process');
const path = require('path');
const WebSocket = require('ws');

const SIM = path.join(__dirname, 'sim.js');
const ORIGIN = 'https://cto.new';
const CLERK_QUERY = '__clerk_api_version=2025-11-10&_clerk_js_version=6.7.3';

// Poll fn() until it returns a truthy value; throw after timeoutMs. Returns that value.
async function waitFor(fn, { timeoutMs = 5000, intervalMs = 10, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// Start the simulator; resolves once it printed its listening line.
function startSim(args = [], { timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [SIM, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let started = false;
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`sim did not start: ${err}`)); }, timeoutMs);
    proc.stderr.on('data', (d) => { err += d; });
    proc.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (!started && nl >= 0) {
        started = true;
        clearTimeout(timer);
        const line = JSON.parse(out.slice(0, nl));
        resolve(new Sim(proc, line.port, () => err, () => out));
      }
    });
    proc.on('exit', (code) => {
      if (!started) { clearTimeout(timer); reject(new Error(`sim exited with ${code}: ${err}`)); }
    });
  });
}

class Sim {
  constructor(proc, port, stderr, stdout) {
    this.proc = proc;
    this.port = port;
    this.base = `http://127.0.0.1:${port}`;
    this.wsBase = `ws://127.0.0.1:${port}`;
    this.stderr = stderr;
    this.stdout = stdout;
    this.exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    return this.exited;
  }

  async control(method, p, body) {
    const r = await fetch(this.base + p, {
      method, headers: body ? { 'Content-Type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined,
    });
    const j = await r.json();
    if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(j)}`);
    return j;
  }

  stats() { return this.control('GET', '/__sim/stats'); }
  chat(id) { return this.control('GET', `/__sim/chats/${encodeURIComponent(id)}`); }
  faults(list) { return this.control('POST', '/__sim/faults', { faults: list }); }
  config(partial) { return this.control('POST', '/__sim/config', partial); }
  reset() { return this.control('POST', '/__sim/reset', {}); }

  // Wait until the given chat's reply number n (0-based) has an outcome other than "running".
  async replyDone(chatId, n = 0, timeoutMs = 5000) {
    return waitFor(async () => {
      const c = await this.chat(chatId);
      const d = c.details[n];
      return d && d.outcome !== 'running' ? d : null;
    }, { timeoutMs, what: `reply ${n} of ${chatId}` });
  }

  client(cookie = 'sim_client_default') { return new Client(this, cookie); }
}

// A client that behaves like the gateway for one account.
class Client {
  constructor(sim, cookie) {
    this.sim = sim;
    this.cookie = cookie;
    this.jwt = null;
  }

  headers(extra = {}) {
    return { Origin: ORIGIN, Cookie: `__session=sess_cookie_ignored; __client=${this.cookie}; __client_uat=1`, ...extra };
  }

  async clerk(method, p, body) {
    const sep = p.includes('?') ? '&' : '?';
    const r = await fetch(`${this.sim.base}${p}${sep}${CLERK_QUERY}`, {
      method,
      headers: this.headers(body !== undefined ? { 'Content-Type': 'application/x-www-form-urlencoded' } : {}),
      body,
    });
    const setCookie = r.headers.get('set-cookie');
    if (setCookie) {
      const m = /__client=([^;]+)/.exec(setCookie);
      if (m) this.cookie = m[1];
    }
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null, setCookie };
  }

  async session() {
    const r = await this.clerk('GET', '/v1/client');
    if (r.status !== 200) throw new Error(`GET /v1/client: ${r.status} ${JSON.stringify(r.body)}`);
    const s = r.body.response.sessions[0];
    this.sid = r.body.response.last_active_session_id;
    this.userId = s.user.id;
    this.orgId = s.last_active_organization_id;
    if (!this.workspaceId) this.workspaceId = this.userId.replace(/^user_/, 'ws_'); // the sim's deterministic ids
    return r.body;
  }

  async token() {
    if (!this.sid) await this.session();
    const r = await this.clerk('POST', `/v1/client/sessions/${this.sid}/tokens`, `organization_id=${this.orgId}`);
    if (r.status !== 200) throw new Error(`tokens: ${r.status} ${JSON.stringify(r.body)}`);
    this.jwt = r.body.jwt;
    return this.jwt;
  }

  // REST call; body objects are sent as JSON, strings as they are. Returns {status, body, text}.
  async rest(method, p, body, { jwt = this.jwt, headers = {} } = {}) {
    const h = this.headers({ Authorization: `Bearer ${jwt}`, ...headers });
    let data;
    if (body !== undefined) { h['Content-Type'] = 'application/json'; data = typeof body === 'string' ? body : JSON.stringify(body); }
    const r = await fetch(this.sim.base + p, { method, headers: h, body: data });
    const text = await r.text();
    let j = null;
    try { j = text ? JSON.parse(text) : null; } catch { j = undefined; }
    return { status: r.status, body: j, text, headers: r.headers };
  }

  async project(name = 'sim test') {
    const r = await this.rest('POST', '/projects/create-hosted', { projectName: name });
    if (r.status !== 201) throw new Error(`create-hosted: ${r.status} ${r.text}`);
    this.workspaceId = r.body.workspaceId;
    return r.body;
  }

  chatBody(chatHistoryId, text) {
    return { prompt: Buffer.from(text, 'utf8').toString('base64'), encoded: true, chatHistoryId };
  }

  send(chatHistoryId, text) { return this.rest('POST', '/engine-agent/chat', this.chatBody(chatHistoryId, text)); }

  // Open the stream for a chat. query overrides the 2026 token/workspaceId query.
  stream(chatHistoryId, { query, headers } = {}) {
    const q = query !== undefined ? query : `token=${encodeURIComponent(`${this.userId}:${this.orgId}`)}&workspaceId=${this.workspaceId}`;
    const url = `${this.sim.wsBase}/engine-agent/chat-histories/${encodeURIComponent(chatHistoryId)}/buffer/stream?${q}`;
    return Stream.open(url, headers || this.headers());
  }
}

// A WebSocket that records every frame, parsed.
class Stream {
  static open(url, headers) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers, perMessageDeflate: false });
      const s = new Stream(ws);
      ws.once('open', () => resolve(s));
      ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => { const e = new Error(`upgrade rejected: ${res.statusCode}`); e.status = res.statusCode; e.body = body; reject(e); });
      });
      ws.once('error', reject);
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.frames = []; // {raw, json, inners}
    this.closed = null; // {code, reason}
    this.errored = null;
    ws.on('message', (data, isBinary) => {
      const raw = isBinary ? data : data.toString('utf8');
      const f = { raw, json: undefined, inners: null };
      try { f.json = JSON.parse(raw); } catch { f.json = undefined; }
      if (f.json && f.json.type === 'update' && typeof f.json.buffer === 'string') {
        try { f.inners = f.json.buffer.split('\n').filter(Boolean).map((l) => JSON.parse(l)); } catch { f.inners = undefined; }
      }
      this.frames.push(f);
    });
    ws.on('close', (code, reason) => { this.closed = { code, reason: reason.toString() }; });
    ws.on('error', (e) => { this.errored = e; });
  }

  types() { return this.frames.map((f) => (f.json ? f.json.type : f.raw)); }

  waitFor(pred, timeoutMs = 5000, what = 'frame') {
    return waitFor(() => this.frames.find(pred), { timeoutMs, what });
  }

  // Wait for the end of a reply: inProgress:false after an inProgress:true.
  async waitEnd(timeoutMs = 5000) {
    await waitFor(() => this.endIndex() >= 0, { timeoutMs, what: 'end of reply' });
    return this.reply();
  }

  endIndex() {
    let started = false;
    for (let i = 0; i < this.frames.length; i++) {
      const j = this.frames[i].json;
      if (j && j.type === 'state') {
        if (j.state.inProgress) started = true;
        else if (started) return i;
      }
    }
    return -1;
  }

  // All inner objects received so far.
  inners() { return this.frames.flatMap((f) => f.inners || []); }

  // Concatenation of answer (delta) pieces, the thinking text, and the pieces themselves.
  reply() {
    const chat = this.inners().filter((o) => o.type === 'chat').map((o) => o.chat.content);
    const thinking = this.inners().filter((o) => o.type === 'thinking').map((o) => o.thinking.content);
    return { text: chat.join(''), pieces: chat, thinking: thinking.join('') };
  }

  close() { this.ws.close(); }
}

module.exports = { startSim, waitFor, Sim, Client, Stream, ORIGIN, CLERK_QUERY };
