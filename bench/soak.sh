#!/usr/bin/env bash
# Soak test of cratebouncer (issue 14, items 4 and 5), in one invocation, all on 127.0.0.1:
#   - a TLS-only PostgreSQL 15 (tests/support/pgenv.py), the CrateDB HTTP stand-in in front of it
#     (tests/support/crate_http.py, HTTPS) and cratebouncer with a pgwire pool (pool_mode=transaction,
#     verify-full TLS to PostgreSQL), the [http] side (verify-full TLS to the stand-in) and the
#     [admin] HTTP port;
#   - for SOAK_SECONDS a modest mixed load with connection churn (bench/soak.py): pgwire clients
#     that connect, run a few reads and writes (simple and extended protocol) and leave, others
#     that stay connected (named prepared statements, pipeline mode), HTTP clients posting /_sql
#     with and without keep-alive (gzip bodies, bulk writes, two Default-Schemas, one client
#     pinned by SET). Every query carries its own literal and every answer is checked against
#     the query that asked for it (the isolation check);
#   - every SOAK_SAMPLE seconds, with the load paused at a quiet point, the daemon's VmRSS, its
#     open fds and its pools (admin console SHOW LISTS/POOLS/HTTP/HTTP_POOLS, GET /metrics);
#     at the end a table, samples.tsv and soak.png (python3-matplotlib) in SOAK_OUT.
#
#   bash bench/soak.sh                                  # one hour
#   SOAK_SECONDS=300 SOAK_SAMPLE=30 bash bench/soak.sh  # five minutes
#
# Unlike the benchmarks, this one asserts: the exit status is 1 when any answer did not match
# its query, on any unexplained error, when VmRSS or the fds grew beyond the tolerances between
# the first sample after SOAK_WARMUP and the last, when the daemon died or logged a FATAL/PANIC
# line or crashed, or when something failed to run. See bench/README.md.
set -euo pipefail

BENCH_NAME=soak
# the binary under test: CRATEBOUNCER, else CB_BINARY (as make check / the tests set it)
CRATEBOUNCER=${CRATEBOUNCER:-${CB_BINARY:-}}
[[ -n $CRATEBOUNCER ]] || unset CRATEBOUNCER
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOAK_SECONDS=${SOAK_SECONDS:-3600}   # length of the load
SOAK_SAMPLE=${SOAK_SAMPLE:-60}       # seconds between samples
# warm-up: growth is measured from the first sample at or after it (default: a fifth of the
# run, at most 300 s)
SOAK_WARMUP=${SOAK_WARMUP:-$(((SOAK_SECONDS / 5) < 300 ? SOAK_SECONDS / 5 : 300))}
SOAK_POOL_SIZE=${SOAK_POOL_SIZE:-4}          # default_pool_size of the pgwire pool
SOAK_HTTP_POOL_SIZE=${SOAK_HTTP_POOL_SIZE:-4} # [http] pool_size
SOAK_SERVER_LIFETIME=${SOAK_SERVER_LIFETIME:-120}  # server_lifetime: server connections churn too
SOAK_CHURN=${SOAK_CHURN:-4}                  # pgwire clients that connect, run 1-5 operations, leave
SOAK_PERSISTENT=${SOAK_PERSISTENT:-4}        # pgwire clients connected for the whole run
SOAK_HTTP_KEEPALIVE=${SOAK_HTTP_KEEPALIVE:-3} # HTTP keep-alive clients (reconnect every 20-80 requests)
SOAK_HTTP_CLOSE=${SOAK_HTTP_CLOSE:-2}        # HTTP clients with Connection: close
SOAK_HTTP_PINNED=${SOAK_HTTP_PINNED:-1}      # HTTP clients that SET (pinned upstream connection)
SOAK_OP_PAUSE=${SOAK_OP_PAUSE:-0.1}          # seconds each client waits between operations (about)
SOAK_RSS_PCT=${SOAK_RSS_PCT:-20}             # RSS tolerance: max(SOAK_RSS_PCT % of the baseline,
SOAK_RSS_MB=${SOAK_RSS_MB:-8}                #                    SOAK_RSS_MB MB)
SOAK_FD_SLACK=${SOAK_FD_SLACK:-16}           # open fds tolerance
SOAK_OTHER_FD_SLACK=${SOAK_OTHER_FD_SLACK:-4} # fds not explained by the daemon's own counts
SOAK_OUT=${SOAK_OUT:-}                       # where samples.tsv, soak.png, summary.json go

CRATE_PID=""
LOAD_PID=""
PGENV_STARTED=0

soak_cleanup() {
	local rc=$? cmd=$BASH_COMMAND
	trap - EXIT INT TERM
	unexpected_exit "$rc" "$cmd"
	stop_pid "$LOAD_PID" soak.py
	stop_pid "$CB_PID" cratebouncer
	stop_pid "$CRATE_PID" crate_http.py
	wait 2>/dev/null || true
	((!PGENV_STARTED)) || "$PY" "$ROOT/tests/support/pgenv.py" stop "$WORK/pg" >/dev/null 2>&1 || true
	finish_work "$rc"
}

soak_init() {
	local exe v
	for exe in "$PY" "$PSQL" "$CRATEBOUNCER" "$PG_BIN/pg_ctl"; do
		[[ -x $exe ]] || die "$exe not found or not executable (cratebouncer: cd $ROOT && make src/cratebouncer)"
	done
	"$PY" -c 'import psycopg' 2>/dev/null || die "needs python3-psycopg"
	[[ $(id -u) -eq 0 ]] || id postgres >/dev/null 2>&1 || die "needs the postgres OS user"
	for v in SOAK_SECONDS SOAK_SAMPLE SOAK_WARMUP SOAK_POOL_SIZE SOAK_HTTP_POOL_SIZE SOAK_SERVER_LIFETIME \
		SOAK_CHURN SOAK_PERSISTENT SOAK_HTTP_KEEPALIVE SOAK_HTTP_CLOSE SOAK_HTTP_PINNED SOAK_FD_SLACK \
		SOAK_OTHER_FD_SLACK SOAK_RSS_MB SOAK_RSS_PCT; do
		[[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: a non-negative integer"
	done
	[[ $SOAK_OP_PAUSE =~ ^[0-9]*\.?[0-9]+$ ]] || die "SOAK_OP_PAUSE=$SOAK_OP_PAUSE: seconds"
	((SOAK_SECONDS > 0 && SOAK_SAMPLE > 0)) || die "SOAK_SECONDS and SOAK_SAMPLE must be positive"
	((SOAK_WARMUP + SOAK_SAMPLE <= SOAK_SECONDS)) ||
		die "SOAK_WARMUP ($SOAK_WARMUP) + SOAK_SAMPLE ($SOAK_SAMPLE) > SOAK_SECONDS ($SOAK_SECONDS): no sample after the warm-up but the last"
	WORK=$(mktemp -d /tmp/cb-soak.XXXXXX)
	chmod 755 "$WORK"
	trap soak_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	if [[ -z $SOAK_OUT ]]; then
		SOAK_OUT=$(mktemp -d /tmp/cb-soak-results.XXXXXX)
	else
		mkdir -p "$SOAK_OUT"
	fi
	# The binary under test may be rebuilt while this runs: run a copy, the same one throughout.
	CB_BIN=$WORK/cratebouncer
	cp "$CRATEBOUNCER" "$CB_BIN"
}

start_pg() {
	local attempt out
	for attempt in 1 2 3 4 5; do
		PG_PORT=$(free_port)
		PGENV_STARTED=1
		if out=$("$PY" "$ROOT/tests/support/pgenv.py" start "$WORK/pg" --port "$PG_PORT" 2>&1); then
			break
		fi
		[[ $out == *"pgenv: "*"in use"* && $attempt -lt 5 ]] || die "pgenv start failed: $out"
	done
	eval "$out"   # PGENV_PORT, PGENV_CA, PGENV_SOCKET_DIR, PGENV_DIR
	CA=$PGENV_CA
	PG_PORT=$PGENV_PORT
	"$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PGENV_SOCKET_DIR" -p "$PG_PORT" -U postgres -d doc \
		-c "CREATE TABLE doc.soak (tag text PRIMARY KEY, who text NOT NULL, n int NOT NULL)" \
		-c "CREATE TABLE doc.soak_http (tag text PRIMARY KEY, who text NOT NULL, n int NOT NULL)" \
		-c "GRANT SELECT, INSERT, UPDATE, DELETE ON doc.soak, doc.soak_http TO crate" \
		-c "CREATE SCHEMA soak_s" -c "CREATE SCHEMA soak_p" \
		-c "GRANT USAGE ON SCHEMA soak_s, soak_p TO crate" >/dev/null || die "making the soak tables failed"
	note "PostgreSQL 15 on localhost:$PG_PORT (TLS only), work directory $WORK"
}

start_crate_http() {
	local attempt i rc
	for attempt in 1 2 3; do
		CRATE_PORT=$(free_port)
		rm -f "$WORK/crate_http.port"
		"$PY" "$ROOT/tests/support/crate_http.py" --listen 127.0.0.1 --port "$CRATE_PORT" \
			--cert "$PGENV_DIR/ssl/server.crt" --key "$PGENV_DIR/ssl/server.key" \
			--pg "host=127.0.0.1 port=$PG_PORT dbname=doc user=crate password=secret sslmode=verify-full sslrootcert=$CA connect_timeout=30" \
			--user crate --password secret --ready-file "$WORK/crate_http.port" \
			</dev/null >/dev/null 2>>"$WORK/crate_http.log" &
		CRATE_PID=$!
		wait_file "$WORK/crate_http.port" "$CRATE_PID" 30 && break
		wait "$CRATE_PID" 2>/dev/null && rc=0 || rc=$?
		CRATE_PID=""
		((rc == 2 && attempt < 3)) || { log_tail "$WORK/crate_http.log"; die "crate_http.py did not start"; }
	done
	note "CrateDB HTTP stand-in (tests/support/crate_http.py) on https://localhost:$CRATE_PORT (pid $CRATE_PID)"
}

start_bouncer() {
	local d=$WORK/cb
	CB_PORT=$(free_port)
	HTTP_PORT=$(free_port)
	ADMIN_PORT=$(free_port)
	[[ $CB_PORT != "$HTTP_PORT" && $CB_PORT != "$ADMIN_PORT" && $HTTP_PORT != "$ADMIN_PORT" ]] ||
		die "free_port gave the same port twice; run again"
	mkdir -p "$d"
	cat >"$d/cratebouncer.ini" <<EOF
[databases]
doc = host=localhost port=$PG_PORT dbname=doc user=crate password=secret

[cratebouncer]
listen_addr = 127.0.0.1
listen_port = $CB_PORT
unix_socket_dir =
auth_type = trust
pool_mode = transaction
default_pool_size = $SOAK_POOL_SIZE
max_client_conn = 1000
server_lifetime = $SOAK_SERVER_LIFETIME
server_tls_sslmode = verify-full
server_tls_ca_file = $CA
stats_users = soakstats
logfile = $d/cratebouncer.log
pidfile = $d/cratebouncer.pid

[admin]
listen_addr = 127.0.0.1
listen_port = $ADMIN_PORT

[http]
listen_addr = 127.0.0.1
listen_port = $HTTP_PORT
upstream = https://localhost:$CRATE_PORT
user = crate
password = secret
pool_size = $SOAK_HTTP_POOL_SIZE
tls_sslmode = verify-full
tls_ca_file = $CA
EOF
	chmod 600 "$d/cratebouncer.ini"   # it holds passwords (cratebouncer warns otherwise)
	"$CB_BIN" -q "$d/cratebouncer.ini" >>"$d/stderr.log" 2>&1 &
	CB_PID=$!
	wait_listen "$CB_PORT" "$CB_PID" cratebouncer "$d/cratebouncer.log" "$d/stderr.log"
	wait_listen "$HTTP_PORT" "$CB_PID" cratebouncer "$d/cratebouncer.log" "$d/stderr.log"
	wait_listen "$ADMIN_PORT" "$CB_PID" cratebouncer "$d/cratebouncer.log" "$d/stderr.log"
	note "$("$CB_BIN" -V 2>&1 | head -n 1) (pid $CB_PID): pgwire 127.0.0.1:$CB_PORT" \
		"(pool_mode=transaction, pool size $SOAK_POOL_SIZE, server_lifetime $SOAK_SERVER_LIFETIME s)," \
		"HTTP 127.0.0.1:$HTTP_PORT (pool size $SOAK_HTTP_POOL_SIZE), admin HTTP 127.0.0.1:$ADMIN_PORT"
}

log_lines() {  # the WARNING/ERROR/FATAL lines of the daemons' logs; FATAL/PANIC fail the run
	local f n bad=0
	for f in "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log" "$WORK/crate_http.log"; do
		[[ -s $f ]] || continue
		n=$(grep -c -E 'WARNING|ERROR|FATAL|PANIC|Traceback|AddressSanitizer|runtime error' "$f" || true)
		((n > 0)) || continue
		echo "$n warning/error lines in ${f#"$WORK"/}; by kind (numbers and tags masked):"
		grep -E 'WARNING|ERROR|FATAL|PANIC|Traceback|AddressSanitizer|runtime error' "$f" |
			sed -E 's/^[0-9-]+ [0-9:.]+ //; s/[0-9]+/N/g; s/(c|p|h[kxp])N_N_N/TAG/g' | sort | uniq -c |
			sort -rn | head -n 10 | sed 's/^/  /'
		if [[ $f == */cb/* ]] && grep -q -E 'FATAL|PANIC|AddressSanitizer|runtime error' "$f"; then
			bad=1
		fi
	done
	return $bad
}

soak_init
start_pg
start_crate_http
start_bouncer
note "load: $SOAK_CHURN churning + $SOAK_PERSISTENT persistent pgwire clients, $SOAK_HTTP_KEEPALIVE keep-alive +" \
	"$SOAK_HTTP_CLOSE Connection: close + $SOAK_HTTP_PINNED pinned HTTP clients, about $SOAK_OP_PAUSE s between" \
	"operations; $SOAK_SECONDS s, a sample every $SOAK_SAMPLE s, warm-up $SOAK_WARMUP s; results in $SOAK_OUT"
note "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

cpu0_cb=$(cpu_ticks "$CB_PID")
cpu0_up=$(cpu_ticks "$CRATE_PID")
t0=$SECONDS
rc=0
"$PY" "$ROOT/bench/soak.py" --pg-port "$CB_PORT" --http-port "$HTTP_PORT" --admin-port "$ADMIN_PORT" \
	--pid "$CB_PID" --seconds "$SOAK_SECONDS" --sample "$SOAK_SAMPLE" --warmup "$SOAK_WARMUP" \
	--churn "$SOAK_CHURN" --persistent "$SOAK_PERSISTENT" --http-keepalive "$SOAK_HTTP_KEEPALIVE" \
	--http-close "$SOAK_HTTP_CLOSE" --http-pinned "$SOAK_HTTP_PINNED" --op-pause "$SOAK_OP_PAUSE" \
	--rss-pct "$SOAK_RSS_PCT" --rss-mb "$SOAK_RSS_MB" --fd-slack "$SOAK_FD_SLACK" \
	--other-fd-slack "$SOAK_OTHER_FD_SLACK" --out "$SOAK_OUT" &
LOAD_PID=$!
wait "$LOAD_PID" || rc=$?
LOAD_PID=""
elapsed=$((SECONDS - t0))

echo
if kill -0 "$CB_PID" 2>/dev/null; then
	hz=$(getconf CLK_TCK)
	awk -v a="$cpu0_cb" -v b="$(cpu_ticks "$CB_PID")" -v c="$cpu0_up" -v d="$(cpu_ticks "$CRATE_PID" 2>/dev/null || echo "$cpu0_up")" \
		-v hz="$hz" -v t="$elapsed" 'BEGIN {
		printf "# CPU over %d s: cratebouncer %.1f s (%.1f %% of one core), crate_http.py %.1f s (%.1f %%)\n",
			t, (b - a) / hz, 100 * (b - a) / hz / (t ? t : 1), (d - c) / hz, 100 * (d - c) / hz / (t ? t : 1)}'
else
	log_tail "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"
	warn "cratebouncer died during the soak"
	rc=1
fi
kill -0 "$CRATE_PID" 2>/dev/null || { log_tail "$WORK/crate_http.log"; warn "crate_http.py died during the soak"; rc=1; }
note "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
log_lines || { warn "cratebouncer logged FATAL/PANIC or sanitizer lines"; rc=1; }
cp "$WORK/cb/cratebouncer.log" "$SOAK_OUT/cratebouncer.log" 2>/dev/null || true
note "results: $SOAK_OUT (samples.tsv, summary.json, cratebouncer.log, soak.png if python3-matplotlib is installed)"
((rc == 0)) || die "FAILED (exit status of soak.py and the checks above: $rc)"
echo "soak.sh: passed"
