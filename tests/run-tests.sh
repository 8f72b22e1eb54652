#!/usr/bin/env bash
# Runs ringcast's test suite: criterion unit tests, fuzz corpus replays, then integration
# tests with real clients (Python websockets, Node ws) against the real gateway.
# Usage: tests/run-tests.sh --build DIR [--only unit|integration] [--asan] [-k PATTERN]
set -u
cd "$(dirname "$0")/.."
BUILD=build ONLY= ASAN=0 PATTERN=
while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD=$2; shift ;;
	--only) ONLY=$2; shift ;;
	--asan) ASAN=1 ;;
	-k) PATTERN=$2; shift ;;
	*) echo "run-tests: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
export RINGCAST_BIN="$PWD/$BUILD/bin/ringcast"
export RINGCAST_BENCH="$PWD/$BUILD/bin/ringcast-bench"
export RINGCAST_BUILD="$PWD/$BUILD"
if [ "$ASAN" = 1 ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=23
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	export RINGCAST_ASAN=1
fi
PY=/usr/bin/python3
passed=0 failed=0 failures=()

record() { # name rc
	if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}

if [ -z "$ONLY" ] || [ "$ONLY" = unit ]; then
	for t in "$BUILD"/tests/*_test; do
		[ -x "$t" ] || continue
		[ -n "$PATTERN" ] && [[ "$t" != *$PATTERN* ]] && continue
		echo "== unit $(basename "$t")"
		out=$("$t" --jobs 2 2>&1); rc=$?
		echo "$out" | tail -n 30 | grep -vE '^\[----\]   ' | tail -n 8
		# Criterion's synthesis line: count its cases into the totals.
		syn=$(echo "$out" | grep -E 'Synthesis: Tested' | tail -1)
		if [ -n "$syn" ]; then
			p=$(echo "$syn" | sed -E 's/.*Passing: ([0-9]+).*/\1/')
			f=$(echo "$syn" | sed -E 's/.*Failing: ([0-9]+).*/\1/')
			c=$(echo "$syn" | sed -E 's/.*Crashing: ([0-9]+).*/\1/')
			passed=$((passed + p)); failed=$((failed + f + c))
			[ $((f + c)) -gt 0 ] && failures+=("$(basename "$t")")
			[ "$rc" -ne 0 ] && [ $((f + c)) -eq 0 ] && record "$(basename "$t") (exit $rc)" 1
		else
			record "$(basename "$t")" "$rc"
		fi
	done
	for r in "$BUILD"/fuzz-regress/*; do
		[ -x "$r" ] || continue
		tname=$(basename "$r")
		echo "== fuzz replay $tname"
		"$r" "tests/fuzz/corpus/$tname" 2>&1 | tail -n 3
		record "fuzz replay $tname" "${PIPESTATUS[0]}"
	done
fi

if [ -z "$ONLY" ] || [ "$ONLY" = integration ]; then
	for t in tests/integration/*_test.py tests/integration/*_test.mjs; do
		[ -f "$t" ] || continue
		[ -n "$PATTERN" ] && [[ "$t" != *$PATTERN* ]] && continue
		echo "== integration $(basename "$t")"
		log=$(mktemp)
		case "$t" in
		*.py) timeout 600 "$PY" "$t" >"$log" 2>&1; rc=$? ;;
		*.mjs) timeout 600 node "$t" >"$log" 2>&1; rc=$? ;;
		esac
		tail -n 40 "$log"
		# A failure early in a long file scrolls out of the tail: name it too.
		if [ "$rc" -ne 0 ]; then
			[ "$rc" -eq 124 ] && echo "(killed after 600 s)"
			grep -nE '^ *not ok|^(FAIL|ERROR):|Error:|WATCHDOG' "$log" | head -n 20
		fi
		rm -f "$log"
		record "$(basename "$t")" "$rc"
	done
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
	echo "failed: ${failures[*]}"
fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
