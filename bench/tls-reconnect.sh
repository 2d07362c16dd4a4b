#!/usr/bin/env bash
# What a new upstream connection costs, with and without TLS session resumption
# (server_tls_session_reuse), cratebouncer vs PgBouncer, in one invocation. The upstream is the
# CrateDB stand-in (tests/support/crate_pgwire.py, an OpenSSL server that issues TLS 1.3 tickets as
# CrateDB's Java TLS does) in front of the TLS-only PostgreSQL 15; PostgreSQL itself turns
# tickets off, so UPSTREAM=postgresql shows no resumption. For each RTT in RTT_MS,
# bench/delay_relay.c sits between the poolers and the upstream.
#
# bench/reconnect_cycles.py runs $CYCLES cycles through each: RECONNECT from the admin
# console, then a client's login and first query, which opens, handshakes and logs in a new
# upstream connection; and as many with the server kept (no RECONNECT). Printed per pooler:
# the client's login + first query (p50, p90), and the on-CPU time of the pooler and of the
# upstream (the stand-in, which also logs in to PostgreSQL each time) per new upstream
# connection (the cycles with RECONNECT minus those without). cratebouncer runs twice: with
# server_tls_session_reuse = 1 (the default) and = 0 (set from the console). Last, $CYCLES
# cycles of psycopg2 as it comes (autocommit off), leaving inside its implicit BEGIN: on
# CrateDB cratebouncer resets and keeps that server, as PgBouncer does (servers: 1).
#
#   bash bench/tls-reconnect.sh                 # RTT 0 and 20 ms, about 3 minutes
#   RTT_MS=2 CYCLES=500 bash bench/tls-reconnect.sh
#
# Figures are reported, never asserted. See bench/README.md.
set -euo pipefail

BENCH_NAME=tls-reconnect
POOL_MODE=session
SCALE=${SCALE:-1}
UPSTREAM=${UPSTREAM:-standin}
RTT_MS=${RTT_MS:-0 20}
CYCLES=${CYCLES:-200}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init
start_upstream
DIRECT_UP_PORT=$UP_PORT

cycles() {  # cycles NAME [--keep]: one reconnect_cycles.py run; its JSON line
	local name=$1
	shift
	local pids=(--cpu "$(pooler_pid "$name")")
	[[ $UPSTREAM != standin ]] || pids+=(--cpu "$STANDIN_PID")
	"$PY" "$ROOT/bench/reconnect_cycles.py" --port "$(pooler_port "$name")" --cycles "$CYCLES" \
		"${pids[@]}" "$@"
}

field() {  # field JSON EXPR: a value of the JSON line, by a Python expression on d
	"$PY" -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

cb_set_reuse() {
	PGCONNECT_TIMEOUT=20 "$PSQL" -X -q "host=127.0.0.1 port=$CB_PORT user=crate dbname=pgbouncer sslmode=disable" \
		-c "SET server_tls_session_reuse = $1" >/dev/null || die "SET server_tls_session_reuse failed"
}

declare -A CPU_OF P50_OF LEFT_OF
summary=()
for rtt in $RTT_MS; do
	upstream_at_rtt "$rtt" "$DIRECT_UP_PORT"
	write_configs
	printf "admin_users = crate\nverbose = ${CB_VERBOSE:-0}\n" >>"$WORK/cb/cratebouncer.ini"
	printf 'admin_users = crate\n' >>"$WORK/pgb/pgbouncer.ini"
	start_cratebouncer   # not start_poolers: its check reads pgbench tables the stand-in hides
	start_pgbouncer
	echo
	echo "== RTT $rtt ms to the upstream ($WHERE), $CYCLES cycles each"
	printf '  %-24s %12s %12s %22s %22s\n' "" "p50 ms" "p90 ms" "pooler CPU us/conn" "upstream CPU us/conn"
	for run in cratebouncer-reuse cratebouncer-noreuse pgbouncer; do
		name=${run%%-*}
		if [[ $run == cratebouncer-reuse ]]; then cb_set_reuse 1; fi
		if [[ $run == cratebouncer-noreuse ]]; then cb_set_reuse 0; fi
		new=$(cycles "$name") || die "reconnect cycles through $run failed"
		kept=$(cycles "$name" --keep) || die "kept-server cycles through $run failed"
		pooler=$(awk -v a="$(field "$new" 'd["cpu_us"][0]')" -v b="$(field "$kept" 'd["cpu_us"][0]')" 'BEGIN {printf "%.0f", a - b}')
		up="-"
		if [[ $UPSTREAM == standin ]]; then
			up=$(awk -v a="$(field "$new" 'd["cpu_us"][1]')" -v b="$(field "$kept" 'd["cpu_us"][1]')" 'BEGIN {printf "%.0f", a - b}')
		fi
		P50_OF[$run-$rtt]=$(field "$new" 'round(d["p50_ms"], 3)')
		CPU_OF[$run-$rtt]=$pooler
		printf '  %-24s %12s %12s %22s %22s\n' "$run:" "${P50_OF[$run-$rtt]}" \
			"$(field "$new" 'round(d["p90_ms"], 3)')" "$pooler" "$up"
	done
	cb_set_reuse 1
	# psycopg2 as it comes leaves inside its implicit BEGIN: is the server kept?
	for name in cratebouncer pgbouncer; do
		left=$(cycles "$name" --keep --implicit-begin) || die "implicit-BEGIN cycles through $name failed"
		LEFT_OF[$name]=$(field "$left" 'round(d["p50_ms"], 3)')
		printf '  %-24s %12s %12s %22s\n' "$name, left in BEGIN:" "${LEFT_OF[$name]}" \
			"$(field "$left" 'round(d["p90_ms"], 3)')" "servers: $(field "$left" 'd["servers_seen"]')"
	done
	line=$(printf 'RTT %4s ms: pooler CPU per new upstream connection, resumed/full %s, cratebouncer/pgbouncer %s; first query p50 resumed/full %s, cratebouncer/pgbouncer %s' "$rtt" \
		"$(ratio "${CPU_OF[cratebouncer-reuse-$rtt]}" "${CPU_OF[cratebouncer-noreuse-$rtt]}")" \
		"$(ratio "${CPU_OF[cratebouncer-reuse-$rtt]}" "${CPU_OF[pgbouncer-$rtt]}")" \
		"$(ratio "${P50_OF[cratebouncer-reuse-$rtt]}" "${P50_OF[cratebouncer-noreuse-$rtt]}")" \
		"$(ratio "${P50_OF[cratebouncer-reuse-$rtt]}" "${P50_OF[pgbouncer-$rtt]}")")
	line+=$(printf '; a client left in BEGIN, next cycle p50 cratebouncer/pgbouncer %s' \
		"$(ratio "${LEFT_OF[cratebouncer]}" "${LEFT_OF[pgbouncer]}")")
	summary+=("$line")
	echo "$line"
	check_alive || die "a pooler died during the RTT $rtt ms runs"
	stop_poolers
	[[ -z $RELAY_PID ]] || stop_delay_relay
done

echo
echo "summary (lower is better):"
printf '  %s\n' "${summary[@]}"
report_logs
bench_finish
