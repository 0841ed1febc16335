# bench/lib.sh - sourced by bench/run.sh and bench/cpu.sh: process helpers,
# the load generator, and the simulator and gateway on loopback.
#
# The caller sets ROOT (the checkout), RUN (a scratch directory, removed by
# cleanup), OUT (where logs go), GW_BIN and KEY, and installs
# `trap cleanup EXIT`. Every process started is recorded in PIDS.

PIDS=()
T0=${T0:-$(date +%s)}
SIM_PID="" SIM_PORT="" GW_PID="" GW_PIDS="" GW_PORT=""

log() { printf '[bench %4ds] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

alive() { # pid: running and not a zombie
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

stop_pid() { # pid [seconds, default 5]: TERM, then KILL after that long; reaps it
	local p=$1 i
	if alive "$p"; then
		kill -TERM "$p" 2>/dev/null || true
		for i in $(seq $((${2:-5} * 10))); do alive "$p" || break; sleep 0.1; done
		alive "$p" && kill -KILL "$p" 2>/dev/null
	fi
	wait "$p" 2>/dev/null || true
}

forget_pid() { # pid: drop from PIDS once stopped
	local keep=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]+"${keep[@]}"}")
}

cleanup() {
	local i
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
	PIDS=()
	rm -rf "$RUN"
}

free_port() {
	node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_http() { # url what [seconds, default 10]
	local i
	for i in $(seq $((${3:-10} * 10))); do
		curl -s -o /dev/null --max-time 1 "$1" && return 0
		sleep 0.1
	done
	die "$2 did not answer at $1"
}

# build/bench/load, rebuilt when bench/load.c is newer.
build_load() {
	LOAD=$ROOT/build/bench/load
	mkdir -p "$ROOT/build/bench"
	if [ ! -x "$LOAD" ] || [ "$ROOT/bench/load.c" -nt "$LOAD" ]; then
		cc -O2 -g -std=gnu17 -Wall -Wextra -o "$LOAD" "$ROOT/bench/load.c" $(pkg-config --cflags --libs libevent)
	fi
}

# The load generator's per-request timeout and whole-run deadline for a
# scenario, scaled with how long its pieces take to arrive: RTO, DL, RAMP.
load_limits() { # pieces slow_ms conc
	local secs=$(($1 * $2 / 1000))
	RTO=$((secs * 3 + 15)) RAMP=0
	[ "$3" -ge 1000 ] && { RAMP=2000; RTO=$((secs * 3 + 60)); }
	DL=$((RTO * 2 + 60))
}

start_sim() { # flow; SIM_ARGS="--opt value ..." adds simulator options
	local out=$RUN/sim.out i
	: >"$out"
	node "$ROOT/tests/sim/sim.js" --port 0 --jwt-ttl 3600 --flow "$1" ${SIM_ARGS:-} >"$out" 2>>"$OUT/sim.log" &
	SIM_PID=$!
	PIDS+=("$SIM_PID")
	for i in $(seq 100); do
		SIM_PORT=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$out")
		[ -n "$SIM_PORT" ] && return 0
		alive "$SIM_PID" || break
		sleep 0.1
	done
	die "the simulator did not start"
}

# flow; GW_ENV="NAME=value ..." adds settings, GW_WRAP="cmd args" runs the
# gateway under cmd (valgrind), which gets 30 s instead of 10 to answer.
# GW_PROCS=N (default 1) starts N gateway processes on one port
# (SO_REUSEPORT), as instances behind a load balancer would run, each in its
# own directory. GW_PID is the first; GW_PIDS lists all, comma-separated.
start_gw() {
	GW_PORT=$(free_port)
	local i pid pids=() secs from
	secs=$([ -n "${GW_WRAP:-}" ] && echo 30 || echo 10)
	# The log is appended to across scenarios, and free ports come back:
	# only what these processes write counts.
	from=$(($(stat -c %s "$OUT/gateway.log" 2>/dev/null || echo 0) + 1))
	for ((i = 0; i < ${GW_PROCS:-1}; i++)); do
		mkdir -p "$RUN/gw$i"
		(cd "$RUN/gw$i" && exec env -i PATH="$PATH" HOST=127.0.0.1 PORT="$GW_PORT" API_MASTER_KEY="$KEY" \
			CLERK_COOKIE=sim_client_default CLERK_BASE_URL="http://127.0.0.1:$SIM_PORT" \
			ENGINE_API_BASE_URL="http://127.0.0.1:$SIM_PORT" ENGINE_WS_BASE_URL="ws://127.0.0.1:$SIM_PORT" \
			STORE_URL=memory: ENGINE_FLOW="$1" ACCOUNT_CONCURRENCY=10000 SHUTDOWN_TIMEOUT=1 \
			${GW_ENV:-} ${GW_WRAP:-} "$GW_BIN" >>"$OUT/gateway.log" 2>&1) &
		pid=$!
		PIDS+=("$pid")
		pids+=("$pid")
		wait_listen "$pid" $((i + 1)) "$secs" "$from"
	done
	GW_PID=${pids[0]}
	GW_PIDS=$(IFS=,; echo "${pids[*]}")
	wait_http "http://127.0.0.1:$GW_PORT/healthz" "the gateway" "$secs"
}

wait_listen() { # pid n seconds from: until n gateways said, in the log from byte `from` on, that they listen on GW_PORT
	local i n
	for i in $(seq $(($3 * 10))); do
		n=$(tail -c +"$4" "$OUT/gateway.log" 2>/dev/null | grep -c "listening on http://127.0.0.1:$GW_PORT " || true)
		[ "${n:-0}" -ge "$2" ] && return 0
		alive "$1" || break
		sleep 0.1
	done
	die "the gateway (pid $1) did not listen on port $GW_PORT (see $OUT/gateway.log)"
}
