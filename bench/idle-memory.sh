#!/usr/bin/env bash
# RSS per idle logged-in client, cratebouncer vs PgBouncer, in one invocation: fresh daemons
# with the same settings (TLS-only PostgreSQL 15 upstream from tests/support/pgenv.py, pool_mode
# transaction, auth_type=trust on 127.0.0.1), then $IDLE_CLIENTS plaintext pgwire logins held
# by bench/idle_clients.py against each in turn. It prints each VmRSS before, with the clients
# and after they left, and the ratio.
#
#   bash bench/idle-memory.sh                       # 10,000 idle clients
#   IDLE_CLIENTS=100000 bash bench/idle-memory.sh   # 100,000 (needs root for the fd limit)
#
# Past 25,000 clients idle_clients.py connects from several loopback addresses (127.0.0.1,
# .2, ...): one address has about 28,000 ephemeral ports towards one destination. The
# open-file limit is raised to MAX_CLIENT_CONN + 1024 (as root; otherwise to the hard limit).
# Figures are reported, never asserted. See bench/README.md.
set -euo pipefail

BENCH_NAME=idle-memory
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
MAX_CLIENT_CONN=${MAX_CLIENT_CONN:-$((IDLE_CLIENTS + 1000))}
POOL_MODE=transaction
SCALE=${SCALE:-1}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init
start_upstream
write_configs
start_poolers
echo
idle_rss_both
echo "ratio cratebouncer/pgbouncer = $(ratio "${PER_CLIENT[cratebouncer]}" "${PER_CLIENT[pgbouncer]}")" \
	"(lower is better)"
echo
report_logs
bench_finish
