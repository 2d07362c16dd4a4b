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
#   - -S with one client, each transaction's latency logged (-l): p50 and p99 through each,
#     and what the pooler adds to the direct connection's (the sidecar's hop on loopback).
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
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init
start_upstream
PG_UP_PORT=$UP_PORT

declare -A TPS_OF LAT_OF
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

percentiles() {  # percentiles LOGFILE...: "p50 p99" of pgbench -l latencies, in ms
	cat "$@" | awk '{print $3}' | sort -n |
		awk '{v[NR] = $1} END {if (!NR) {print "- -"; exit}
			i = int(NR * 0.5); if (i < 1) i = 1; j = int(NR * 0.99); if (j < 1) j = 1
			printf "%.3f %.3f\n", v[i] / 1000, v[j] / 1000}'
}

latency_of() {  # latency_of NAME TAG: one client, each transaction logged; LAT_OF[NAME-TAG]="p50 p99"
	local name=$1 tag=$2
	rm -f "$WORK/lat-$name-$tag".*
	CLIENTS=1 THREADS=1 run_target "$name" "$tag" -l --log-prefix="$WORK/lat-$name-$tag"
	LAT_OF[$name-$tag]=$(percentiles "$WORK/lat-$name-$tag".*)
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
	echo "pgbench -n -S -c 1 -j 1 -T $DURATION -l, latency per transaction (ms):"
	for name in "${NAMES[@]}"; do
		latency_of "$name" "L-$rtt"
		read -r p50 p99 <<<"${LAT_OF[$name-L-$rtt]}"
		printf '  %-13s p50 %8s  p99 %8s\n' "$name:" "$p50" "$p99"
	done
	read -r d50 d99 <<<"${LAT_OF[direct-L-$rtt]}"
	added=""
	for name in cratebouncer pgbouncer; do
		read -r p50 p99 <<<"${LAT_OF[$name-L-$rtt]}"
		added+=$(awk -v a="$p50" -v b="$d50" -v c="$p99" -v d="$d99" -v n="$name" \
			'BEGIN {printf "  %s adds %+.0f us at p50, %+.0f us at p99", n, (a - b) * 1000, (c - d) * 1000}')
	done
	echo "$added   (vs direct)"
	line=$(printf 'RTT %4s ms: -S %s/%s, -C %s/%s (cratebouncer/pgbouncer, cratebouncer/direct)' "$rtt" \
		"$(ratio "${TPS_OF[cratebouncer-S-$rtt]}" "${TPS_OF[pgbouncer-S-$rtt]}")" \
		"$(ratio "${TPS_OF[cratebouncer-S-$rtt]}" "${TPS_OF[direct-S-$rtt]}")" \
		"$(ratio "${TPS_OF[cratebouncer-C-$rtt]}" "${TPS_OF[pgbouncer-C-$rtt]}")" \
		"$(ratio "${TPS_OF[cratebouncer-C-$rtt]}" "${TPS_OF[direct-C-$rtt]}")")
	summary+=("$line")
	echo "$line"
	check_alive || die "a pooler died during the RTT $rtt ms runs"
	stop_poolers
	[[ -z $RELAY_PID ]] || stop_delay_relay
done

echo
echo "summary (tps ratios):"
printf '  %s\n' "${summary[@]}"
report_logs
bench_finish
