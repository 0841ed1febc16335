// End-to-end harness: the cto.new simulator and the gateway as real
// processes on free loopback ports, stopped by pid. Each test file builds
// its own stack so files stay independent.
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const OpenAI = require('openai');
const { startSim, waitFor } = require('../sim/harness.js');

const ROOT = path.resolve(__dirname, '../..');
// GW_BIN lets `make test` run the same suite against the sanitizer build.
const GW_BIN = path.resolve(ROOT, process.env.GW_BIN || 'build/enginelabs-2api');
const LOG_DIR = process.env.GW_LOG_DIR
  ? (fs.mkdirSync(path.resolve(ROOT, process.env.GW_LOG_DIR), { recursive: true }), path.resolve(ROOT, process.env.GW_LOG_DIR))
  : fs.mkdtempSync(path.join(os.tmpdir(), 'el2a-logs-'));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

let gwCount = 0;

// Every process a test file starts is stopped when the file ends, even when
// a test failed half-way: a leftover child would keep the file from exiting.
const children = new Set();
function track(proc) {
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  return proc;
}
// Registered after the test file's own top-level hooks, so it runs last
// and only meets what they did not stop.
setImmediate(() => require('node:test').after(() => {
  for (const p of children) p.kill('SIGKILL');
}));

// Starts any helper process (redis-server, ...) under the same clean-up.
function spawnTracked(cmd, args, opts) {
  return track(spawn(cmd, args, opts));
}

class Gateway {
  constructor(proc, port, dir, logFile, key) {
    this.proc = proc;
    this.pid = proc.pid;
    this.port = port;
    this.dir = dir;
    this.logFile = logFile;
    this.key = key;
    this.base = `http://127.0.0.1:${port}`;
    this.baseURL = `${this.base}/v1`;
    this.exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  }

  logs() { return fs.readFileSync(this.logFile, 'utf8'); }

  client(opts = {}) {
    return new OpenAI({ apiKey: this.key || 'no-key', baseURL: this.baseURL, maxRetries: 0, timeout: 30000, ...opts });
  }

  // Raw HTTP to the gateway (for what the SDK cannot send).
  fetch(p, init = {}) {
    const headers = { ...(this.key ? { Authorization: `Bearer ${this.key}` } : {}), ...(init.headers || {}) };
    return fetch(this.base + p, { ...init, headers });
  }

  async stop(signal = 'SIGTERM') {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    return this.exited;
  }
}

// Starts the gateway pointed at sim. env adds or overrides settings. The
// working directory is a fresh temporary folder: no .env, its own SQLite.
async function startGateway(sim, { env = {}, key = 'sk-test-key-1', port, dir, prefix = [] } = {}) {
  port = port || await freePort();
  dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'el2a-gw-'));
  const logFile = path.join(LOG_DIR, `gateway-${process.pid}-${++gwCount}.log`);
  const out = fs.openSync(logFile, 'a');
  const fullEnv = {
    PATH: process.env.PATH,
    ASAN_OPTIONS: process.env.ASAN_OPTIONS || 'detect_leaks=1:abort_on_error=1',
    UBSAN_OPTIONS: process.env.UBSAN_OPTIONS || 'print_stacktrace=1:halt_on_error=1',
    HOST: '127.0.0.1',
    PORT: String(port),
    API_MASTER_KEY: key || '',
    CLERK_COOKIE: 'sim_client_default',
    CLERK_BASE_URL: sim.base,
    ENGINE_API_BASE_URL: sim.base,
    ENGINE_WS_BASE_URL: sim.wsBase,
    STORE_URL: 'memory:',
    LOG_LEVEL: 'debug',
    WORKERS: '2',
    ACCOUNT_CONCURRENCY: '100000', // the simulator's task limit is off unless a test sets it
    ...env,
  };
  // prefix runs the gateway under another command (e.g. prlimit).
  const argv = [...prefix, GW_BIN];
  const proc = track(spawn(argv[0], argv.slice(1), { cwd: dir, env: fullEnv, stdio: ['ignore', out, out] }));
  fs.closeSync(out);
  const gw = new Gateway(proc, port, dir, logFile, key);
  let exited = null;
  gw.exited.then((e) => { exited = e; });
  await waitFor(async () => {
    if (exited) throw new Error(`gateway exited early (${JSON.stringify(exited)}):\n${gw.logs()}`);
    try {
      const r = await fetch(`${gw.base}/healthz`);
      return r.status === 200;
    } catch { return false; }
  }, { timeoutMs: 15000, what: 'the gateway to answer /healthz' });
  return gw;
}

// Reads an SSE response body into its events ({data} or {comment}).
async function readSSE(res) {
  const text = await res.text();
  const events = [];
  for (const block of text.split('\n\n')) {
    if (!block) continue;
    for (const line of block.split('\n')) {
      if (line.startsWith('data: ')) events.push({ data: line.slice(6) });
      else if (line.startsWith(':')) events.push({ comment: line });
    }
  }
  return { text, events };
}

// Collects a streamed completion from the OpenAI SDK.
async function collectStream(stream) {
  let content = '';
  let reasoning = '';
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    const d = chunk.choices[0] && chunk.choices[0].delta;
    if (d && d.content) content += d.content;
    if (d && d.reasoning_content) reasoning += d.reasoning_content;
  }
  return { content, reasoning, chunks };
}

// The simulator's chat whose prompts include text (the newest such chat).
async function findChat(sim, predicate) {
  const st = await sim.stats();
  const ids = Object.keys(st.chats).filter((id) => predicate(st.chats[id]));
  return ids.map((id) => ({ id, ...st.chats[id] }));
}

async function startSimTracked(...args) {
  const sim = await startSim(...args);
  track(sim.proc);
  return sim;
}

module.exports = { spawnTracked, startSim: startSimTracked, startGateway, waitFor, freePort, readSSE, collectStream, findChat, ROOT, GW_BIN };
