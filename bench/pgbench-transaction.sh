#!/usr/bin/env bash
# cratebouncer vs PgBouncer, transaction pooling, in one invocation:
#   - pgbench -S (read-only, persistent connections, 50 clients onto pools of 20) through each
#     pooler, alternately, for $ROUNDS rounds: tps, the poolers' CPU time per transaction,
#     medians and the ratio;
#   - pgbench -S -M prepared and -M extended through each. PgBouncer 1.18 does not track
#     prepared statements, so in transaction mode its -M prepared run is expected to fail
#     ('prepared statement "P_0" does not exist'); that is reported, not counted as a failure;
#   - RSS per idle logged-in client with $IDLE_CLIENTS idle clients held (bench/idle_clients.py).
# Both poolers get the same settings: the same TLS-only PostgreSQL 15 upstream from
# tests/support/pgenv.py (host=localhost, verify-full against its test CA, user crate with a password),
# pool_mode=transaction, default_pool_size=20, auth_type=trust on 127.0.0.1, max_client_conn 20000.
#
#   bash bench/pgbench-transaction.sh
#   DURATION=30 ROUNDS=5 IDLE_CLIENTS=10000 bash bench/pgbench-transaction.sh
#   POOL_MODE=session bash bench/pgbench-transaction.sh   # the same runs in session mode
#
# Figures are reported, never asserted: the exit status is non-zero only when something failed
# to run (a daemon did not start or died, pgbench failed other than PgBouncer's expected
# -M prepared failure, no idle client could log in). The common parts live in bench/lib.sh.
# See bench/README.md.
set -euo pipefail

BENCH_NAME=pgbench-transaction
CLIENTS=${CLIENTS:-50}              # pgbench -c
POOL_MODE=${POOL_MODE:-transaction}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init
if [[ $POOL_MODE == session ]] && ((CLIENTS > POOL_SIZE)); then
	warn "warning: in session mode CLIENTS ($CLIENTS) > POOL_SIZE ($POOL_SIZE) stalls pgbench -M prepared" \
		"until query_wait_timeout (120 s); see bench/README.md"
fi

# 1. Upstream: TLS-only PostgreSQL 15 with the pgbench tables.
start_upstream

# 2. The two poolers, configured alike.
write_configs
start_poolers

# 3. pgbench -S, simple query protocol: the poolers alternately.
echo
echo "pgbench -n -S -c $CLIENTS -j $THREADS -T $DURATION, persistent connections, scale $SCALE," \
	"pool_mode=$POOL_MODE, pool size $POOL_SIZE"
pooler_rounds S ">= 1.25"

# 4. The extended query protocol: named prepared statements, then unnamed ones.
declare -A MODE_TPS
one_mode() {  # one_mode MODE NAME: one pgbench -M MODE run through NAME and its result line
	local mode=$1 name=$2 line
	through "$name" "M$mode" -M "$mode"
	MODE_TPS[$mode-$name]=$TPS
	if ((RUN_OK)); then
		line="$TPS tps, $CPU_US CPU us/tx"
		[[ $name == pgbouncer && $mode == prepared && $POOL_MODE == transaction ]] &&
			line+="  (unexpected: PgBouncer 1.18 does not track prepared statements)"
	elif [[ $name == pgbouncer && $mode == prepared && $POOL_MODE != session ]]; then
		line="failed ($RUN_ERROR)"   # expected: not counted as a failure
	else
		pgbench_failed "$name" "$WORK/pgbench-$name-M$mode.log"
		line="failed ($RUN_ERROR)"
	fi
	printf '  %-13s %s\n' "$name:" "$line"
}
for mode in prepared extended; do
	echo
	echo "pgbench -n -S -M $mode -c $CLIENTS -j $THREADS -T $DURATION, pool_mode=$POOL_MODE, pool size $POOL_SIZE"
	if [[ $mode == prepared ]]; then
		one_mode "$mode" cratebouncer
		one_mode "$mode" pgbouncer
	else   # the other order this time
		one_mode "$mode" pgbouncer
		one_mode "$mode" cratebouncer
	fi
	echo "  ratio cratebouncer/pgbouncer = $(ratio "${MODE_TPS[$mode-cratebouncer]}" "${MODE_TPS[$mode-pgbouncer]}")"
	check_alive || die "a pooler died during the pgbench -M $mode runs"
done
check_query cratebouncer   # both still serve after the failed prepared run
check_query pgbouncer

# 5. RSS per idle logged-in client, on fresh daemons.
echo
idle_rss_both

# 6. Anything the poolers complained about.
echo
report_logs
bench_finish
