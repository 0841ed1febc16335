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
#   SIM_ARGS=...  more simulator options, e.g. "--jwt-shape clerk"
#   CALLGRIND=file  run the gateway under valgrind's callgrind and print its
#                 user-space instructions per request (start-up included):
#                 slow, but the same from run to run, unlike CPU time here
set -euo pipefail
# Files and binaries named relative to where the script was started from.
abs() { [ -z "$1" ] || realpath -m "$1"; }
GW_BIN=$(abs "${GW_BIN:-}") PERF=$(abs "${PERF:-}") STRACE=$(abs "${STRACE:-}") CALLGRIND=$(abs "${CALLGRIND:-}")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PIECES=${1:-32} N=${2:-2000} CONC=${3:-10}
GW_BIN=${GW_BIN:-$ROOT/build/enginelabs-2api}
RUN=$(mktemp -d /tmp/el2a-cpu.XXXXXX)
OUT=$ROOT/build/bench/cpu # logs outlive the run, for its error messages
mkdir -p "$OUT"
: >"$OUT/gateway.log"
: >"$OUT/sim.log"
KEY=k
. bench/lib.sh
trap cleanup EXIT
build_load
start_sim 2026
GW_ENV="WORKERS=1 ${GW_ENV:-}" GW_WRAP=${CALLGRIND:+"valgrind --tool=callgrind --callgrind-out-file=$CALLGRIND"} start_gw 2026
if [ -n "$PERF" ]; then
	perf record -q -e cpu-clock -F 1999 ${PERF_OPTS:--g} -p "$GW_PID" -o "$PERF" >/dev/null 2>&1 &
	PERF_PID=$!
	sleep 0.3
fi
threads() { for t in /proc/$GW_PID/task/*; do echo "$(cat $t/comm) $(sed 's/.*) //' $t/stat | cut -d' ' -f12,13)"; done; }
if [ -n "$STRACE" ]; then
	strace ${STRACE_OPTS:--c} -f -o "$STRACE" -p "$GW_PID" 2>/dev/null &
	STRACE_PID=$!
	sleep 0.5
fi
threads >"$RUN/t0"
load_limits "$PIECES" "${SLOW:-0}" "$CONC"
line=$("$LOAD" --sim-port "$SIM_PORT" --port "$GW_PORT" --key "$KEY" -c "$CONC" -n "$N" --warmup "${WARMUP:-100}" \
	--pieces "$PIECES" --slow "${SLOW:-0}" --stream 1 --flow 2026 --ramp-ms "$RAMP" --req-timeout "$RTO" \
	--deadline "$DL" --label cpu --pid "gateway:$GW_PID")
threads >"$RUN/t1"
paste -d' ' "$RUN/t0" "$RUN/t1" | awk '{ d=($5+$6)-($2+$3); if (d>0) printf "  thread %s: %d ticks\n", $1, d }' >&2
if [ -n "$STRACE" ]; then
	kill -INT "$STRACE_PID"; wait "$STRACE_PID" || true
fi
if [ -n "$PERF" ]; then
	kill -INT "$PERF_PID"; wait "$PERF_PID" || true
fi
echo "$line" | node -e '
let r=JSON.parse(require("fs").readFileSync(0,"utf8"));const g=r.procs.gateway;
const n=r.ok+r.bad+r.err;
console.log(`pieces=${r.pieces} n=${r.n} ok=${r.ok} bad=${r.bad} err=${r.err} gw_cpu_us/req=${(g.cpu_us/n).toFixed(0)} sched_us/req=${(g.sched_us/n).toFixed(0)} sim_us/req=${(r.sim_cpu_us/n).toFixed(0)} rps=${r.rps}`);
if (r.errors.length) console.log(r.errors.join("\n"));'
grep -v '^\s*$' "$OUT/gateway.log" | grep -iv ' info ' | grep -v '^==' | tail -5 >&2 || true
if [ -n "$CALLGRIND" ]; then
	stop_pid "$GW_PID" 30 # callgrind writes its counts on the way out
	callgrind_annotate "$CALLGRIND" >"$RUN/cg.txt" 2>/dev/null || true
	awk -v n=$((N + ${WARMUP:-100})) -v cg="$CALLGRIND" '/PROGRAM TOTALS/ { gsub(",", "", $1);
		printf "user instructions/request: %d (callgrind, %d requests)\n", $1 / n, n; found = 1; exit }
		END { if (!found) { print "callgrind wrote no counts to " cg > "/dev/stderr"; exit 1 } }' "$RUN/cg.txt"
fi
