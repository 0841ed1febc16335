#!/usr/bin/env bash
# bench/cpu.sh - gateway CPU per streamed request, for before/after checks
# during performance work (not part of make bench). Starts the simulator and
# one gateway (WORKERS=1) on loopback, runs bench/load.c bounded and prints
# µs of gateway CPU (utime+stime from /proc/PID/stat) per request.
#
#   bench/cpu.sh [PIECES] [REQUESTS] [CONC]     defaults 32 2000 10
#   GW_BIN=path   the gateway to measure (default build/enginelabs-2api)
#   PERF=file     also record a perf profile of the gateway into file
#   STRACE=file   also count the gateway's system calls (strace -c) into file
#   SLOW=ms       the simulator waits this long before each piece (default 0)
#   CALLGRIND=file  run the gateway under valgrind's callgrind and print its
#                 user-space instructions per request (start-up included):
#                 slow, but the same from run to run, unlike CPU time here
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PIECES=${1:-32} N=${2:-2000} CONC=${3:-10}
GW_BIN=${GW_BIN:-$ROOT/build/enginelabs-2api}
RUN=$(mktemp -d /tmp/el2a-cpu.XXXXXX)
PIDS=()
cleanup() {
	local i
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[$i]}" 2>/dev/null || true
		wait "${PIDS[$i]}" 2>/dev/null || true
	done
	rm -rf "$RUN"
}
trap cleanup EXIT
mkdir -p build/bench
LOAD=build/bench/load
if [ ! -x "$LOAD" ] || [ bench/load.c -nt "$LOAD" ]; then
	cc -O2 -g -std=gnu17 -Wall -Wextra -o "$LOAD" bench/load.c $(pkg-config --cflags --libs libevent)
fi
node tests/sim/sim.js --port 0 --jwt-ttl 3600 --flow 2026 >"$RUN/sim.out" 2>"$RUN/sim.err" &
PIDS+=($!)
SIM_PORT=""
for _ in $(seq 100); do
	SIM_PORT=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$RUN/sim.out")
	[ -n "$SIM_PORT" ] && break
	sleep 0.1
done
[ -n "$SIM_PORT" ] || { echo "simulator did not start" >&2; exit 1; }
GW_PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
mkdir -p "$RUN/gw"
(cd "$RUN/gw" && exec env -i PATH="$PATH" HOST=127.0.0.1 PORT="$GW_PORT" API_MASTER_KEY=k \
	CLERK_COOKIE=sim_client_default CLERK_BASE_URL="http://127.0.0.1:$SIM_PORT" \
	ENGINE_API_BASE_URL="http://127.0.0.1:$SIM_PORT" ENGINE_WS_BASE_URL="ws://127.0.0.1:$SIM_PORT" \
	STORE_URL=memory: ENGINE_FLOW=2026 ACCOUNT_CONCURRENCY=10000 SHUTDOWN_TIMEOUT=1 WORKERS=1 \
	${GW_ENV:-} ${CALLGRIND:+valgrind --tool=callgrind --callgrind-out-file="$CALLGRIND"} \
	"$GW_BIN" >"$RUN/gw.log" 2>&1) &
GW_PID=$!
PIDS+=($GW_PID)
for _ in $(seq 300); do
	curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$GW_PORT/healthz" && break
	sleep 0.1
done
if [ -n "${PERF:-}" ]; then
	perf record -q -e cpu-clock -F 1999 ${PERF_OPTS:--g} -p "$GW_PID" -o "$PERF" >/dev/null 2>&1 &
	PERF_PID=$!
	sleep 0.3
fi
threads() { for t in /proc/$GW_PID/task/*; do echo "$(cat $t/comm) $(sed 's/.*) //' $t/stat | cut -d' ' -f12,13)"; done; }
if [ -n "${STRACE:-}" ]; then
	strace ${STRACE_OPTS:--c} -f -o "$STRACE" -p "$GW_PID" 2>/dev/null &
	STRACE_PID=$!
	sleep 0.5
fi
threads >"$RUN/t0"
line=$("$LOAD" --sim-port "$SIM_PORT" --port "$GW_PORT" --key k -c "$CONC" -n "$N" --warmup "${WARMUP:-100}" \
	--pieces "$PIECES" --slow "${SLOW:-0}" --stream 1 --flow 2026 --req-timeout 30 --deadline 300 --label cpu \
	--pid "gateway:$GW_PID")
threads >"$RUN/t1"
paste -d' ' "$RUN/t0" "$RUN/t1" | awk '{ d=($5+$6)-($2+$3); if (d>0) printf "  thread %s: %d ticks\n", $1, d }' >&2
if [ -n "${STRACE:-}" ]; then
	kill -INT "$STRACE_PID"; wait "$STRACE_PID" || true
fi
if [ -n "${PERF:-}" ]; then
	kill -INT "$PERF_PID"; wait "$PERF_PID" || true
fi
echo "$line" | node -e '
let r=JSON.parse(require("fs").readFileSync(0,"utf8"));const g=r.procs.gateway;
const n=r.ok+r.bad+r.err;
console.log(`pieces=${r.pieces} n=${r.n} ok=${r.ok} bad=${r.bad} err=${r.err} gw_cpu_us/req=${(g.cpu_us/n).toFixed(0)} sched_us/req=${(g.sched_us/n).toFixed(0)} sim_us/req=${(r.sim_cpu_us/n).toFixed(0)} rps=${r.rps}`);
if (r.errors.length) console.log(r.errors.join("\n"));'
grep -v '^\s*$' "$RUN/gw.log" | grep -iv ' info ' | grep -v '^==' | tail -5 >&2 || true
if [ -n "${CALLGRIND:-}" ]; then
	kill -TERM "$GW_PID"
	wait "$GW_PID" 2>/dev/null || true
	callgrind_annotate "$CALLGRIND" 2>/dev/null | grep -m1 'PROGRAM TOTALS' |
		awk -v n=$((N + ${WARMUP:-100})) '{ gsub(",", "", $1); printf "user instructions/request: %d (callgrind, %d requests)\n", $1 / n, n }'
fi
