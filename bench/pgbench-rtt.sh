#!/usr/bin/env bash
# cratebouncer vs PgBouncer vs a direct TLS connection, at network distances, in one
# invocation. A CrateDB Cloud cluster is 1-30 ms away from the app host, and that is where a
# sidecar pays for itself: for each round trip time in RTT_MS, bench/delay_relay.c sits
# between the upstream (TLS-only PostgreSQL 15) and all three, delaying each direction by half
# of it (0: no relay), and pgbench runs
#   - -S with persistent connections ($CLIENTS clients; the poolers' pools of $POOL_SIZE);
#   - -S -C, a new connection per transaction (the legacy app that connects per request):
#     the poolers keep their TLS connections, the direct client pays TCP, TLS and the login
#     over the distance every time;
#   - bench/latency_probe.c: one connection direct and one through each pooler, the -S query
#     on each in turn, round after round: p50/p90/p99 of each, and what each pooler adds to
#     the direct connection (p50 minus the direct p50, and the median of the per-round
#     differences: the sidecar's hop on loopback).
# Ratios: cratebouncer/pgbouncer and cratebouncer/direct for each.
#
#   bash bench/pgbench-rtt.sh                        # RTT 0, 2 and 20 ms, about 6 minutes
#   RTT_MS="20" PIPELINE_DEPTH=0 bash bench/pgbench-rtt.sh  # as on CrateDB (no pipelining)
#
# Both poolers get the settings of bench/pgbench-transaction.sh (pool_mode $POOL_MODE,
# verify-full TLS, auth_type=trust on 127.0.0.1). Figures are reported, never asserted; the
# exit status is non-zero only when something failed to run. See bench/README.md.
set -euo pipefail

BENCH_NAME=pgbench-rtt
CLIENTS=${CLIENTS:-50}              # pgbench -c of the -S and -C runs
POOL_MODE=${POOL_MODE:-transaction}
RTT_MS=${RTT_MS:-0 2 20}            # round trip times to the upstream, ms
PROBE_SAMPLES=${PROBE_SAMPLES:-}     # rounds of bench/latency_probe.c (default: by RTT)
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init
start_upstream
PG_UP_PORT=$UP_PORT

declare -A TPS_OF LAT_ADDED
run_target() {  # run_target NAME TAG [pgbench options...]: sets TPS (and TPS_OF[NAME-TAG])
	local name=$1 tag=$2
	shift 2
	if [[ $name == direct ]]; then
		PGSSLMODE=verify-full PGSSLROOTCERT=$CA PGPASSWORD=$UP_PASSWORD \
			run_pgbench direct "$WORK/pgbench-direct-$tag.log" "$@" \
			-h localhost -p "$UP_PORT" -U "$UP_USER" doc
		((RUN_OK)) || pgbench_failed direct "$WORK/pgbench-direct-$tag.log"
	else
		through "$name" "$tag" "$@"
		((RUN_OK)) || pgbench_failed "$name" "$WORK/pgbench-$name-$tag.log"
	fi
	TPS_OF[$name-$tag]=$TPS
}

PROBE_BIN=""
probe_latency() {  # probe_latency RTT: bench/latency_probe.c, direct and both poolers interleaved
	if [[ -z $PROBE_BIN ]]; then
		PROBE_BIN=$WORK/latency_probe
		# shellcheck disable=SC2046
		cc -O2 -Wall -Wextra -std=gnu11 -o "$PROBE_BIN" "$ROOT/bench/latency_probe.c" \
			$(pkg-config --cflags --libs libpq) || die "cannot build bench/latency_probe.c (cc, libpq-dev)"
	fi
	local out=$WORK/latency-$1.log samples=$PROBE_SAMPLES
	# about DURATION seconds: three queries a round, each one round trip plus ~150 us
	[[ -n $samples ]] || samples=$(awk -v r="$1" -v d="$DURATION" \
		'BEGIN {n = int(d * 1e6 / (3 * (r * 1000 + 150))); print (n < 100 ? 100 : n)}')
	# "hop": the direct connection through one more bench/delay_relay.c at 0 ms, a forwarder
	# that does nothing but copy: the cost of one more process on the path, which bounds
	# what any sidecar can add
	local main_relay=$RELAY_PID main_port=${RELAY_PORT:-} hop_port
	start_delay_relay 0 "$UP_PORT"
	hop_port=$RELAY_PORT HOP_PID=$RELAY_PID
	RELAY_PID=$main_relay RELAY_PORT=$main_port
	echo "latency per query, one connection each, interleaved ($samples rounds, bench/latency_probe.c):"
	timeout -k 10 $((DURATION * 3 + 120)) "$PROBE_BIN" "$samples" $((SCALE * 100000)) \
		"direct=host=localhost port=$UP_PORT user=$UP_USER password=$UP_PASSWORD dbname=doc sslmode=verify-full sslrootcert=$CA" \
		"cratebouncer=host=127.0.0.1 port=$CB_PORT user=crate dbname=doc sslmode=disable" \
		"pgbouncer=host=127.0.0.1 port=$PGB_PORT user=crate dbname=doc sslmode=disable" \
		"hop=host=localhost port=$hop_port user=$UP_USER password=$UP_PASSWORD dbname=doc sslmode=verify-full sslrootcert=$CA" \
		>"$out" 2>&1 || { cat "$out" >&2; FAILED=1; }
	stop_pid "$HOP_PID" delay_relay
	wait "$HOP_PID" 2>/dev/null || true
	HOP_PID=""
	[[ -s $out ]] || return 0
	sed 's/^/  /' "$out"
	LAT_ADDED[$1]=$(awk '$1 == "cratebouncer" || $1 == "pgbouncer" {printf "; %s adds %s us", $1, $6}
		$1 == "hop" {printf "; a bare forwarder adds %s us", $6}' "$out")
}

NAMES=(cratebouncer pgbouncer direct)
summary=()
for rtt in $RTT_MS; do
	upstream_at_rtt "$rtt" "$PG_UP_PORT"
	write_configs
	start_poolers
	echo
	echo "== RTT $rtt ms to the upstream ($WHERE); pool size $POOL_SIZE, pool_mode=$POOL_MODE," \
		"cratebouncer pipeline_depth=$PIPELINE_DEPTH"

	echo "pgbench -n -S -c $CLIENTS -j $THREADS -T $DURATION, persistent connections:"
	for name in "${NAMES[@]}"; do
		run_target "$name" "S-$rtt"
		printf '  %-13s %10s tps\n' "$name:" "$TPS"
	done
	echo "pgbench -n -S -C -c $CLIENTS -j $THREADS -T $DURATION, a new connection per transaction:"
	for name in "${NAMES[@]}"; do
		run_target "$name" "C-$rtt" -C
		printf '  %-13s %10s tps\n' "$name:" "$TPS"
	done
	probe_latency "$rtt"
	line=$(printf 'RTT %4s ms: -S %s/%s, -C %s/%s (cratebouncer/pgbouncer, cratebouncer/direct)' "$rtt" \
		"$(ratio "${TPS_OF[cratebouncer-S-$rtt]}" "${TPS_OF[pgbouncer-S-$rtt]}")" \
		"$(ratio "${TPS_OF[cratebouncer-S-$rtt]}" "${TPS_OF[direct-S-$rtt]}")" \
		"$(ratio "${TPS_OF[cratebouncer-C-$rtt]}" "${TPS_OF[pgbouncer-C-$rtt]}")" \
		"$(ratio "${TPS_OF[cratebouncer-C-$rtt]}" "${TPS_OF[direct-C-$rtt]}")")
	line+="${LAT_ADDED[$rtt]:-}"
	summary+=("$line")
	echo "$line"
	check_alive || die "a pooler died during the RTT $rtt ms runs"
	stop_poolers
	[[ -z $RELAY_PID ]] || stop_delay_relay
done

echo
echo "summary (tps ratios; latency added at p50, the median of the per-round differences):"
printf '  %s\n' "${summary[@]}"
report_logs
bench_finish
