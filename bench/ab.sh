#!/usr/bin/env bash
# bench/ab.sh A B [ROUNDS] [PIECES] [N] [CONC] - alternates bench/cpu.sh between two
# gateway binaries (A B A B ...) so both see the same background load, and
# prints each run's gateway µs/request and the medians.
set -euo pipefail
A=$(realpath "$1") B=$(realpath "$2") R=${3:-3} P=${4:-32} N=${5:-2000} C=${6:-10}
cd "$(dirname "$0")/.."
ra=() rb=()
err=$(mktemp)
trap 'rm -f "$err"' EXIT
for i in $(seq "$R"); do
	for w in A B; do
		bin=$A; [ $w = B ] && bin=$B
		l=$(GW_BIN=$bin bench/cpu.sh "$P" "$N" "$C" 2>"$err" | grep '^pieces=') || {
			echo "$w: bench/cpu.sh failed:" >&2
			tail -5 "$err" >&2
			exit 1
		}
		v=$(sed 's/.*sched_us\/req=\([0-9]*\).*/\1/' <<<"$l")
		echo "$w $l"
		if [ $w = A ]; then ra+=("$v"); else rb+=("$v"); fi
	done
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median sched_us/req: A=$(med "${ra[@]}") B=$(med "${rb[@]}")"
