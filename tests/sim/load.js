#!/usr/bin/env node
// Manual load check (not part of npm test): node load.js [sockets=10000] [chats=1000]
// Starts the simulator, opens the sockets, sends one reply per chat, and reports timings and
// the simulator's CPU. Needs `ulimit -n` above the socket count, in this process and the sim's.
'use strict';
const { startSim, waitFor } = require('./harness.js');

(async () => {
  const N = Number(process.argv[2] || 10000);
  const CH = Number(process.argv[3] || 1000);
  const sim = await startSim();
  try {
    const c = sim.client();
    await c.token();
    let t = Date.now();
    const ids = [];
    for (let i = 0; i < CH; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, CH - i) }, () => c.project()));
      ids.push(...batch.map((p) => p.projectId));
    }
    console.log(`projects: ${CH} in ${Date.now() - t} ms`);
    t = Date.now();
    const streams = [];
    for (let i = 0; i < N; i += 500) {
      streams.push(...await Promise.all(Array.from({ length: Math.min(500, N - i) }, (_, j) => c.stream(ids[(i + j) % CH]))));
    }
    console.log(`sockets: ${N} open in ${Date.now() - t} ms, sim wsOpen=${(await sim.stats()).wsOpen}`);
    const cpu0 = (await fetch(`${sim.base}/__sim/stats?chats=0`).then((r) => r.json())).cpu;
    t = Date.now();
    const res = await Promise.all(ids.map((id) => c.send(id, 'load [pieces=50]')));
    console.log(`chat POSTs: ${CH} in ${Date.now() - t} ms (${res.filter((r) => r.status === 202).length} accepted)`);
    await Promise.all(streams.map((s) => s.waitEnd(60000)));
    const ms = Date.now() - t;
    const st = await fetch(`${sim.base}/__sim/stats?chats=0`).then((r) => r.json());
    const cpuMs = (st.cpu.user + st.cpu.system - cpu0.user - cpu0.system) / 1000;
    const frames = N * 53;
    console.log(`replies: all ${N} sockets complete in ${ms} ms; ${frames} frames; sim cpu ${cpuMs.toFixed(0)} ms; rss ${(st.rssBytes / 1048576).toFixed(0)} MiB`);
    for (const s of streams) s.close();
    await waitFor(async () => (await fetch(`${sim.base}/__sim/stats?chats=0`).then((r) => r.json())).wsOpen === 0, { timeoutMs: 30000, what: 'sockets closed' });
    console.log('all sockets closed');
  } finally {
    await sim.stop();
  }
})().catch((e) => { console.error(e); process.exit(1); });
