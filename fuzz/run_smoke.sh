#!/bin/bash
# Runs each libFuzzer harness for FUZZ_SECONDS (default 20) from its seed corpus and
# fails on any crash, leak, sanitizer report or invariant broken. Builds nothing: run it
# in the build directory of `CC=clang ./configure --enable-fuzzing && make` (or give that
# directory as FUZZ_BUILDDIR). New inputs go to a scratch corpus, never into
# fuzz/corpus/; a failing input is kept in FUZZ_ARTIFACTS (default ./fuzz-artifacts).
#   FUZZ_SECONDS=20 bash fuzz/run_smoke.sh [harness...]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${FUZZ_BUILDDIR:-.}
seconds=${FUZZ_SECONDS:-20}
# a fixed seed: the same mutations on every run, so that a smoke run in CI replays what passed
# here instead of finding something new at random (long runs: FUZZ_SEED=0 for a random one)
seed=${FUZZ_SEED:-1}
artifacts=${FUZZ_ARTIFACTS:-$PWD/fuzz-artifacts}
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(fuzz_startup fuzz_relay_client fuzz_relay_server
	fuzz_scram fuzz_http fuzz_config)

scratch=$(mktemp -d /tmp/cb-fuzz-smoke.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$artifacts"

failed=0
for h in "${harnesses[@]}"; do
	bin=$build/fuzz/$h
	if [ ! -x "$bin" ]; then
		echo "$h: $bin not built (configure with CC=clang --enable-fuzzing, then make)" >&2
		failed=1
		continue
	fi
	mkdir -p "$scratch/$h"
	dict=()
	[ -f "$here/dict/$h.dict" ] && dict=(-dict="$here/dict/$h.dict")
	log=$scratch/$h.log
	rc=0
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		"$bin" -seed="$seed" -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
		-artifact_prefix="$artifacts/$h-" "${dict[@]}" "$scratch/$h" "$here/corpus/$h" \
		>"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	units=$(find "$scratch/$h" "$here/corpus/$h" -type f | wc -l)
	if [ "$rc" -ne 0 ]; then
		echo "FAIL $h (exit $rc, ${execs:-?} executions)"
		tail -n 60 "$log"
		for a in "$artifacts/$h"-*; do
			[ -f "$a" ] || continue
			echo "-- reproducer $a ($(stat -c %s "$a") bytes):"
			head -c 512 "$a" | od -A d -c | head -n 20
		done
		failed=1
	else
		echo "ok   $h: ${execs:-?} executions in ${seconds}s, corpus $units inputs"
	fi
done
if [ "$failed" -ne 0 ]; then
	echo "fuzz smoke: FAILED"
	exit 1
fi
echo "fuzz smoke: all ${#harnesses[@]} harnesses ran ${seconds}s without a failure"
