#!/usr/bin/env bash
# bench/run.sh - the benchmark suite behind `make bench` (which builds the
# gateway first). Starts the simulator, the gateway and nginx on 127.0.0.1
# (free ports), drives them from a separate C load generator (bench/load.c),
# prints a table and rewrites docs/benchmarks.md. Everything it starts is
# stopped by pid, also on failure or Ctrl-C.
#
#   bench/run.sh            the full matrix (about 5 minutes on 2 cores)
#   BENCH_QUICK=1 bench/run.sh   a few small scenarios (a smoke check)
#   BENCH_PROFILE=0         skip the perf profile
#   BENCH_ONLY=REGEX        only the scenarios whose "target flow conc pieces
#                           slow stream" matches, e.g. 'gateway 2026 10000'
#   (QUICK and ONLY write build/bench/*-partial.*, not the doc or its inputs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$ROOT/build/bench
RUN=$(mktemp -d /tmp/el2a-bench.XXXXXX)
mkdir -p "$OUT"
# A partial run keeps its files apart, so the full run's (the doc's inputs) survive it.
PART=""
if [ "${BENCH_QUICK:-0}" = 1 ] || [ -n "${BENCH_ONLY:-}" ]; then PART=-partial; fi
RESULTS=$OUT/results$PART.jsonl
: >"$RESULTS"
T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
KEY=bench-key-1
GW_BIN=${GW_BIN:-$ROOT/build/enginelabs-2api}
. bench/lib.sh

trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites ----------------------------------------------------------

# 10,000 streams need about 2 fds each in the gateway (client + upstream
# WebSocket) and in nginx; children inherit this limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576

if ! command -v nginx >/dev/null; then
	log "installing nginx-light (the baseline)"
	# Keep the package from starting a system nginx on port 80.
	made_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
	fi
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
	[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
command -v nginx >/dev/null || die "nginx is not installed"
[ -x "$GW_BIN" ] || die "$GW_BIN missing (run make build)"

log "building the load generator"
build_load

# ---- processes ----------------------------------------------------------------

NG_PID="" NG_WORKER="" NG_UP_PORT="" NG_SSE_PORT=""

start_nginx() { # relays to the simulator (upstream protocol) and to the gateway (SSE)
	local d=$RUN/nginx i c
	mkdir -p "$d"
	NG_UP_PORT=$(free_port)
	NG_SSE_PORT=$(free_port)
	sed -e "s|@DIR@|$d|g; s|@LOG@|$OUT/nginx.log|; s|@NOFILE@|$NOFILE|g; s|@SIM_PORT@|$SIM_PORT|; s|@GW_PORT@|${GW_PORT:-$SIM_PORT}|" \
		-e "s|@UP_PORT@|$NG_UP_PORT|; s|@SSE_PORT@|$NG_SSE_PORT|" bench/nginx.conf.in >"$d/nginx.conf"
	nginx -e stderr -p "$d" -c "$d/nginx.conf" >>"$OUT/nginx.log" 2>&1 &
	NG_PID=$!
	PIDS+=("$NG_PID")
	NG_WORKER=""
	for i in $(seq 100); do
		c=$(cat "/proc/$NG_PID/task/$NG_PID/children" 2>/dev/null || true)
		NG_WORKER=${c%% *}
		[ -n "$NG_WORKER" ] && break
		alive "$NG_PID" || break
		sleep 0.1
	done
	[ -n "$NG_WORKER" ] || die "nginx did not start (see $OUT/nginx.log)"
	wait_http "http://127.0.0.1:$NG_UP_PORT/__sim/stats?chats=0" "nginx"
}

stop_all() {
	local p
	for p in "$NG_PID" ${GW_PIDS//,/ } "$SIM_PID"; do
		[ -n "$p" ] || continue
		stop_pid "$p"
		forget_pid "$p"
	done
	SIM_PID="" GW_PID="" GW_PIDS="" GW_PORT="" NG_PID="" NG_WORKER=""
}

# ---- one scenario -----------------------------------------------------------------

# scenario TARGET FLOW CONC N WARMUP PIECES SLOW STREAM [extra load options]
#   TARGET: gateway | nginx-upstream (nginx relays the upstream protocol;
#   the load generator speaks it) | nginx-sse (nginx in front of the gateway)
scenario() {
	local target=$1 flow=$2 conc=$3 n=$4 warm=$5 pieces=$6 slow=$7 stream=$8
	shift 8
	if [ -n "${BENCH_ONLY:-}" ] && ! [[ "$target $flow $conc $pieces $slow $stream" =~ $BENCH_ONLY ]]; then
		return 0
	fi
	load_limits "$pieces" "$slow" "$conc"
	start_sim "$flow"
	local args=(--sim-port "$SIM_PORT" -c "$conc" -n "$n" --warmup "$warm" --pieces "$pieces" --slow "$slow"
		--stream "$stream" --flow "$flow" --ramp-ms "$RAMP" --req-timeout "$RTO" --deadline "$DL" --label "$target")
	case $target in
	gateway)
		start_gw "$flow"
		args+=(--port "$GW_PORT" --key "$KEY" --pid "gateway:$GW_PIDS")
		;;
	nginx-upstream)
		start_nginx
		args+=(--mode up --port "$NG_UP_PORT" --pid "nginx:$NG_WORKER")
		;;
	nginx-sse)
		start_gw "$flow"
		start_nginx
		args+=(--port "$NG_SSE_PORT" --key "$KEY" --pid "nginx:$NG_WORKER" --pid "gateway:$GW_PIDS")
		;;
	esac
	log "$target flow $flow: $conc streams, $n requests, $pieces pieces, ${slow} ms/piece, stream=$stream $*"
	local line rc=0
	line=$("$LOAD" "${args[@]}" "$@" 2>>"$OUT/load.log") || rc=$?
	if [ -z "$line" ]; then
		stop_all
		die "the load generator failed (exit $rc, see $OUT/load.log)"
	fi
	echo "$line" >>"$RESULTS"
	node bench/report.js --line "$line" >&2 || true
	stop_all
}

# ---- the matrix ---------------------------------------------------------------------
# Each axis is covered against a base point (2026 flow, 32 pieces, streaming,
# 50 streams); docs/benchmarks.md lists the rows. Request counts keep each
# run's gateway CPU well above the 10 ms tick while the whole suite stays
# within a few minutes.

: >"$OUT/gateway.log"
: >"$OUT/nginx.log"
: >"$OUT/sim.log"
: >"$OUT/load.log"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
	scenario gateway 2026 1 100 10 32 0 1
	scenario gateway 2026 50 1000 50 32 0 1
	scenario nginx-upstream 2026 50 1000 50 32 0 1
else
	# Each gateway row is followed by its nginx twin (the same upstream
	# traffic), so both see the same background load.
	# concurrency 1, 50, 500 at 0 ms/piece
	scenario gateway 2026 1 300 20 32 0 1
	scenario nginx-upstream 2026 1 300 20 32 0 1
	scenario gateway 2026 1 300 20 32 0 1 --fresh 1
	scenario gateway 2026 1 300 20 32 0 0
	scenario gateway 2026 50 3000 100 32 0 1
	scenario nginx-upstream 2026 50 3000 100 32 0 1
	scenario gateway 2026 50 3000 100 32 0 0
	GW_ENV="WORKERS=1" scenario gateway 2026 50 3000 100 32 0 1 --note "WORKERS=1"
	scenario nginx-sse 2026 50 3000 100 32 0 1
	# JWTs as long as Clerk's (about 750 characters, the simulator's are about
	# 200): the Authorization header goes out with every REST call.
	SIM_ARGS="--jwt-shape clerk" scenario gateway 2026 50 3000 100 32 0 1 --note "Clerk-size JWT"
	SIM_ARGS="--jwt-shape clerk" scenario nginx-upstream 2026 50 3000 100 32 0 1 --note "Clerk-size JWT"
	scenario gateway 2026 500 3000 100 32 0 1
	scenario nginx-upstream 2026 500 3000 100 32 0 1
	# 50, 500, 10,000 at 20 ms/piece (10,000 only overlap when paced)
	scenario gateway 2026 50 500 50 32 20 1
	scenario nginx-upstream 2026 50 500 50 32 20 1
	# --idle-after: memory once quiet (src/core/idle.c trims within 20 s)
	scenario gateway 2026 500 1500 50 32 20 1 --idle-after 25
	scenario nginx-upstream 2026 500 1500 50 32 20 1
	# nginx waits 60 s for an upstream connect (proxy_connect_timeout) and
	# 300 s for the 101; the saturated simulator needs more than the
	# gateway's default 10 s here, so it gets nginx's 60.
	GW_ENV="UPSTREAM_CONNECT_TIMEOUT=60" scenario gateway 2026 10000 10000 50 32 20 1 --note "UPSTREAM_CONNECT_TIMEOUT=60"
	scenario nginx-upstream 2026 10000 10000 50 32 20 1
	# All 10,000 open at once. At 20 ms a stream lasts 0.64 s, less than the
	# spread of set-up times at the saturated simulator (seconds), so the
	# first streams end before the last begin; at 500 ms each lasts 16 s.
	# 10,000 open streams need 20,000 descriptors and more (client, upstream
	# WebSocket, REST pool), over this box's per-process hard limit, so two
	# gateway processes (WORKERS=1 each, one per core) share the port, as
	# instances behind a load balancer would. CPU and memory are their sums.
	GW_PROCS=2 GW_ENV="WORKERS=1 UPSTREAM_CONNECT_TIMEOUT=60" \
		scenario gateway 2026 10000 10000 50 32 500 1 --idle-after 25 \
		--note "2 processes, WORKERS=1 each, UPSTREAM_CONNECT_TIMEOUT=60"
	# 1,000 pieces
	scenario gateway 2026 50 200 20 1000 0 1
	scenario nginx-upstream 2026 50 200 20 1000 0 1
	scenario gateway 2026 50 200 20 1000 0 0
	# the older upstream flow
	scenario gateway 2025 50 3000 100 32 0 1
	scenario nginx-upstream 2025 50 3000 100 32 0 1
	scenario gateway 2025 500 1500 50 32 20 1
	scenario nginx-upstream 2025 500 1500 50 32 20 1
fi

# ---- profile ---------------------------------------------------------------------------
PROFILE=$OUT/profile$PART.txt
: >"$PROFILE"
if [ "${BENCH_PROFILE:-1}" = 1 ] && [ "${BENCH_QUICK:-0}" != 1 ] && [ -z "${BENCH_ONLY:-}" ] && command -v perf >/dev/null &&
	perf record -q -o "$RUN/probe.data" -- true >/dev/null 2>&1; then
	log "profiling the gateway (perf, 50 streams, 32 pieces, 0 ms)"
	start_sim 2026
	start_gw 2026
	perf record -q -F 1999 -g -p "$GW_PID" -o "$OUT/perf.data" >/dev/null 2>&1 &
	PERF_PID=$!
	PIDS+=("$PERF_PID")
	sleep 0.5
	"$LOAD" --port "$GW_PORT" --key "$KEY" -c 50 -n 3000 --warmup 0 --pieces 32 --label profile \
		--req-timeout 30 --deadline 120 >/dev/null 2>>"$OUT/load.log" || true
	kill -INT "$PERF_PID" 2>/dev/null || true
	for _ in $(seq 100); do alive "$PERF_PID" || break; sleep 0.1; done
	stop_pid "$PERF_PID"
	forget_pid "$PERF_PID"
	stop_all
	{
		echo "perf record -F 1999 -g -p <gateway> during 3,000 streamed requests (50 at once, 32 pieces, 0 ms)"
		echo "self time by library (perf report --no-children --sort dso):"
		perf report -i "$OUT/perf.data" --stdio --no-children --sort dso 2>/dev/null |
			grep -E '^ +[0-9.]+%' | head -12 | sed 's/ *$//' || true
		echo
		echo "top 15 symbols, self time (perf report --no-children --sort dso,symbol):"
		perf report -i "$OUT/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null |
			grep -E '^ +[0-9.]+%' | head -15 | sed 's/ *- *- *$//; s/ *$//' || true
	} >"$PROFILE"
fi

# ---- report ---------------------------------------------------------------------------------
T1=$(date +%s)
DOC=docs/benchmarks.md
MACHINE=$OUT/machine$PART.json
# A smoke run must not replace the real figures.
[ -z "$PART" ] || DOC=$OUT/benchmarks-partial.md
{
	printf '{"nproc":%s,' "$(nproc)"
	printf '"kernel":"%s",' "$(uname -r)"
	printf '"cpu":"%s",' "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/"//g')"
	printf '"nofile":"%s",' "$NOFILE"
	printf '"nginx":"%s",' "$(nginx -v 2>&1 | sed 's/.*: //; s/"//g')"
	printf '"node":"%s",' "$(node --version)"
	printf '"commit":"%s%s",' "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		"$(git diff --quiet HEAD -- src 2>/dev/null || echo ' with uncommitted changes in src/')"
	printf '"date":"%s",' "$(date -u +%Y-%m-%d)"
	printf '"matrix_s":%s,' "$((T1 - T0))"
	printf '"loadavg_start":"%s","loadavg_end":"%s",' "$LOAD0" "$(cut -d' ' -f1-3 /proc/loadavg)"
	printf '"partial":%s}\n' "$([ "$DOC" = docs/benchmarks.md ] && echo false || echo true)"
} >"$MACHINE"
node bench/report.js --results "$RESULTS" --machine "$MACHINE" --profile "$PROFILE" \
	--doc "$DOC"
log "done in $((T1 - T0)) s; $DOC rewritten; logs in $OUT"
