#!/usr/bin/env bash
# Installs what the build (or the tests) need on Debian 12, only when missing.
# Usage: scripts/deps.sh build|test
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs=(build-essential cmake pkg-config libevent-dev libcurl4-openssl-dev libwslay-dev
	libjansson-dev libsqlite3-dev libhiredis-dev libssl-dev libcmocka-dev)
test_pkgs=(clang libclang-rt-14-dev redis-server nodejs npm curl)

want=("${build_pkgs[@]}")
[ "${1:-build}" = test ] && want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
	# nodejs/npm may come from elsewhere than apt: a working command is enough.
	case $p in
	nodejs) command -v node >/dev/null && continue ;;
	npm) command -v npm >/dev/null && continue ;;
	esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

npm_ci() { # dir
	if [ ! -d "$1/node_modules" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
		echo "installing npm packages in $1"
		(cd "$1" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
	fi
}

# The simulator is needed by `make run` (demo mode) and by the tests.
npm_ci tests/sim
[ "${1:-build}" = test ] && [ -f tests/e2e/package.json ] && npm_ci tests/e2e
exit 0
