#!/usr/bin/env bash
# `make run`: starts the gateway. Without a CLERK_COOKIE (environment or
# .env) it starts the bundled cto.new simulator and points the gateway at it,
# so a newcomer gets a real chat completion at once - from a fake upstream.
set -euo pipefail
cd "$(dirname "$0")/.."

has_cookie() {
	[ -n "${CLERK_COOKIE:-}" ] && return 0
	[ -f .env ] && grep -qE '^[[:space:]]*(export[[:space:]]+)?CLERK_COOKIE[[:space:]]*=[[:space:]]*[^[:space:]#]' .env
}

if has_cookie; then
	exec build/enginelabs-2api "$@"
fi

sim_out=$(mktemp)
node tests/sim/sim.js --port 0 >"$sim_out" &
sim_pid=$!
trap 'kill $sim_pid 2>/dev/null; rm -f "$sim_out"' EXIT
for _ in $(seq 1 100); do
	grep -q listening "$sim_out" && break
	kill -0 $sim_pid 2>/dev/null || { echo "the simulator did not start" >&2; exit 1; }
	sleep 0.1
done
port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$sim_out")
[ -n "$port" ] || { echo "the simulator did not report its port" >&2; exit 1; }

cat >&2 <<MSG

  ************************************************************************
  *  DEMO MODE: no CLERK_COOKIE is set, so the gateway talks to the      *
  *  bundled cto.new SIMULATOR on 127.0.0.1:$port, not to cto.new.       *
  *  Answers are canned. Put your cookie in .env (see README) for real.  *
  *                                                                      *
  *  Try:  curl http://127.0.0.1:${PORT:-8089}/v1/chat/completions \\
  *          -H 'Content-Type: application/json' \\
  *          -d '{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}'
  ************************************************************************

MSG
export CLERK_COOKIE=sim_client_default
export CLERK_BASE_URL=http://127.0.0.1:$port
export ENGINE_API_BASE_URL=http://127.0.0.1:$port
export ENGINE_WS_BASE_URL=ws://127.0.0.1:$port
export STORE_URL=${STORE_URL:-memory:}
build/enginelabs-2api "$@" &
gw=$!
trap 'kill $gw 2>/dev/null; kill $sim_pid 2>/dev/null; rm -f "$sim_out"' EXIT INT TERM
wait $gw
