#!/usr/bin/env bash
# `make test`: builds (normal, ASan+UBSan, libFuzzer), then runs the unit
# tests of both builds, the simulator's tests, the end-to-end tests against
# both builds, and a short fuzzing run of every target. Ends with one line:
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_RUNS=${FUZZ_RUNS:-20000}
LOGS=build/test-logs
rm -rf "$LOGS"
mkdir -p "$LOGS"
passed=0
failed=0
failures=()

note() { printf '%s\n' "$*"; }
count() { # name passed failed
	passed=$((passed + $2))
	failed=$((failed + $3))
	[ "$3" -gt 0 ] && failures+=("$1")
	printf '  %-44s %4d passed, %d failed\n' "$1" "$2" "$3"
}

build() { # target
	if ! make --no-print-directory "$1" >"$LOGS/build-$1.log" 2>&1; then
		note "build '$1' FAILED:"
		tail -40 "$LOGS/build-$1.log"
		count "build $1" 0 1
		return 1
	fi
	return 0
}

unit() { # build dir, label
	local dir=$1 label=$2 p=0 f=0
	for t in "$dir"/unit/test_*; do
		[ -x "$t" ] || continue
		local name log out
		name=$(basename "$t")
		log="$LOGS/unit-$label-$name.log"
		ASAN_OPTIONS=detect_leaks=1 timeout 300 "$t" >"$log" 2>&1
		local rc=$?
		out=$(grep -E '^\[  (PASSED|FAILED)  \] [0-9]+ test' "$log")
		local tp tf
		tp=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' <<<"$out" | head -1)
		tf=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' <<<"$out" | head -1)
		tp=${tp:-0}
		tf=${tf:-0}
		if [ $rc -ne 0 ] && [ "$tf" -eq 0 ]; then tf=1; fi # crashed or sanitizer abort
		[ "$tf" -gt 0 ] && { note "  FAILED: $name ($label), log $log"; tail -25 "$log"; }
		p=$((p + tp))
		f=$((f + tf))
	done
	count "unit tests ($label)" $p $f
}

node_tests() { # label, log name, command...
	local label=$1 log="$LOGS/$2.log"
	shift 2
	timeout 1500 "$@" >"$log" 2>&1
	local rc=$? p f
	p=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$log" | tail -1)
	f=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$log" | tail -1)
	p=${p:-0}
	f=${f:-0}
	if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	if [ "$f" -gt 0 ]; then
		note "  FAILED: $label, log $log"
		grep -E '^not ok|^# Subtest' "$log" | grep -B1 '^not ok' | head -20
		grep -A12 -E '^not ok' "$log" | head -60
	fi
	count "$label" "$p" "$f"
}

fuzz() {
	local p=0 f=0
	for t in build/fuzz/fuzz/fuzz_*; do
		[ -x "$t" ] || continue
		local name=${t##*/fuzz_} work
		work=$(mktemp -d)
		[ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/"
		if timeout 600 "$t" -runs="$FUZZ_RUNS" -max_len=65536 -timeout=10 "$work" \
			>"$LOGS/fuzz-$name.log" 2>&1; then
			p=$((p + 1))
		else
			f=$((f + 1))
			note "  FAILED: fuzz_$name, log $LOGS/fuzz-$name.log"
			tail -30 "$LOGS/fuzz-$name.log"
		fi
		rm -rf "$work"
	done
	count "fuzz targets ($FUZZ_RUNS runs each)" $p $f
}

note "building (normal, sanitizers, fuzzers)"
build build && have_rel=1 || have_rel=0
build asan && have_asan=1 || have_asan=0
build fuzz && have_fuzz=1 || have_fuzz=0

note "running"
[ $have_rel = 1 ] && unit build/release release
[ $have_asan = 1 ] && unit build/asan asan+ubsan
node_tests "simulator tests" sim node --test tests/sim/test/
[ $have_rel = 1 ] && node_tests "end-to-end tests (release)" e2e-release \
	env GW_BIN=build/enginelabs-2api GW_LOG_DIR="$LOGS/e2e-release" node --test --test-concurrency=1 tests/e2e/
[ $have_asan = 1 ] && node_tests "end-to-end tests (asan+ubsan)" e2e-asan \
	env GW_BIN=build/asan/enginelabs-2api GW_LOG_DIR="$LOGS/e2e-asan" node --test --test-concurrency=1 tests/e2e/
[ $have_fuzz = 1 ] && fuzz

if [ ${#failures[@]} -gt 0 ]; then
	note "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
