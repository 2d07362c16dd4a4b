#!/usr/bin/env bash
# cratebouncer vs PgBouncer, session pooling, in one invocation:
#   - pgbench -S (read-only, persistent connections) through each pooler, alternately, for
#     $ROUNDS rounds, plus once directly against the TLS upstream for orientation;
#   - RSS per idle logged-in client with $IDLE_CLIENTS idle clients held (bench/idle_clients.py).
# Both poolers get the same settings: the same TLS-only PostgreSQL 15 upstream from
# tests/support/pgenv.py (host=localhost, verify-full against its test CA, user crate with a password),
# pool_mode=session, default_pool_size=20, auth_type=trust on 127.0.0.1, max_client_conn 20000.
#
#   bash bench/pgbench-session.sh
#   DURATION=30 ROUNDS=5 IDLE_CLIENTS=10000 bash bench/pgbench-session.sh
#
# Figures are reported, never asserted: the exit status is non-zero only when something failed
# to run (a daemon did not start or died, pgbench failed, no idle client could log in).
# The common parts live in bench/lib.sh. See bench/README.md.
set -euo pipefail

BENCH_NAME=pgbench-session
CLIENTS=${CLIENTS:-20}              # pgbench -c
POOL_MODE=session
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init

# 1. Upstream: TLS-only PostgreSQL 15 with the pgbench tables.
start_upstream

# 2. The two poolers, configured alike.
write_configs
start_poolers

# 3. pgbench -S: direct once, then the poolers alternately.
echo
echo "pgbench -n -S -c $CLIENTS -j $THREADS -T $DURATION, persistent connections, scale $SCALE," \
	"pool_mode=$POOL_MODE, pool size $POOL_SIZE"
PGPASSWORD=secret PGSSLMODE=verify-full PGSSLROOTCERT=$CA \
	run_pgbench "direct TLS" "$WORK/pgbench-direct.log" -h localhost -p "$PG_PORT" -U crate doc
((RUN_OK)) || pgbench_failed "direct TLS" "$WORK/pgbench-direct.log"
printf '%-28s %12s tps\n' "direct over TLS (no pooler)" "$TPS"
echo
pooler_rounds S ">= 1.0"

# 4. RSS per idle logged-in client, on fresh daemons.
echo
idle_rss_both

# 5. Anything the poolers complained about.
echo
report_logs
bench_finish
