# shellcheck shell=bash
# Common parts of the cratebouncer-vs-PgBouncer benchmarks (bench/pgbench-*.sh), sourced by them.
#
# The sourcing script sets BENCH_NAME (the prefix of its messages) and may preset any knob below
# to its own default before sourcing (the environment still wins if the script writes its
# default as ${VAR:-...}); POOL_MODE is the pool_mode both poolers get. Sourcing only defines
# knobs and functions; bench_init then checks the tools, raises the open-file limit, makes the
# work directory and installs the cleanup trap. The usual sequence is:
#
#   bench_init; start_upstream; write_configs; start_poolers
#   pooler_rounds ROUNDS "ratio target" [pgbench options...]
#   idle_rss_both; report_logs; bench_finish
#
# See bench/README.md.

: "${BENCH_NAME:=bench}"
DURATION=${DURATION:-10}            # seconds per pgbench run
ROUNDS=${ROUNDS:-3}                 # rounds of (cratebouncer, pgbouncer)
IDLE_CLIENTS=${IDLE_CLIENTS:-5000}  # idle logged-in clients for the RSS measurement
IDLE_WAIT=${IDLE_WAIT:-$((120 + IDLE_CLIENTS / 500))}  # seconds allowed for their logins
CLIENTS=${CLIENTS:-20}              # pgbench -c
THREADS=${THREADS:-2}               # pgbench -j
SCALE=${SCALE:-10}                  # pgbench -i -s
POOL_SIZE=${POOL_SIZE:-20}          # default_pool_size of both poolers
POOL_MODE=${POOL_MODE:-session}     # pool_mode of both poolers
MAX_CLIENT_CONN=${MAX_CLIENT_CONN:-20000}
# The upstream both poolers use: postgresql (the suite's TLS-only PostgreSQL 15), standin (the
# CrateDB stand-in tests/support/crate_pgwire.py in front of it), or cratedb (a real CrateDB given by
# CRATEDB_HOST, CRATEDB_PORT, CRATEDB_USER, CRATEDB_PASSWORD, CRATEDB_CA; its pgbench_accounts
# and pgbench_branches tables are made at scale SCALE). See bench/README.md.
UPSTREAM=${UPSTREAM:-postgresql}
PIPELINE_DEPTH=${PIPELINE_DEPTH:-8}  # cratebouncer's pipeline_depth (its default; 0: off, as PgBouncer)
KEEP=${KEEP:-0}                     # 1: keep the work directory (configs, logs) after the run

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGBENCH=$PG_BIN/pgbench
PSQL=${PSQL:-/usr/bin/psql}
CRATEBOUNCER=${CRATEBOUNCER:-$ROOT/src/cratebouncer}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
warn() { echo "$BENCH_NAME: $*" >&2; }
note() { echo "# $*"; }

WORK=""
CB_BIN=""       # the copy of $CRATEBOUNCER that runs (a rebuild during the run cannot affect it)
CB_PID=""
PGB_PID=""
IDLE_PID=""
STANDIN_PID=""
RELAY_PID="" HOP_PID=""
FAILED=0        # set to 1 by anything that failed to run; bench_finish exits 1 then
NOFILE=""

bench_init() {
	local exe hard want
	for exe in "$PY" "$PGBENCH" "$PSQL" "$CRATEBOUNCER" "$PGBOUNCER"; do
		[[ -x $exe ]] || die "$exe not found or not executable (cratebouncer: cd $ROOT && make src/cratebouncer)"
	done
	[[ $(id -u) -eq 0 ]] || id postgres >/dev/null 2>&1 || die "needs the postgres OS user"
	[[ $POOL_MODE =~ ^(session|transaction|statement)$ ]] || die "POOL_MODE=$POOL_MODE: session, transaction or statement"

	# Open files: the poolers and the idle-client generator need IDLE_CLIENTS sockets each and
	# the configs ask for MAX_CLIENT_CONN. Take the soft limit as high as the hard limit allows.
	hard=$(ulimit -Hn)
	want=$((MAX_CLIENT_CONN + 1024))
	if [[ $hard != unlimited && $hard -lt $want ]]; then
		ulimit -Hn "$want" 2>/dev/null || true   # works only with CAP_SYS_RESOURCE
		hard=$(ulimit -Hn)
		[[ $hard == unlimited || $hard -ge $want ]] || want=$hard
	fi
	ulimit -Sn "$want"
	NOFILE=$(ulimit -Sn)
	((NOFILE >= IDLE_CLIENTS + 64)) || die "open file limit $NOFILE is too low for IDLE_CLIENTS=$IDLE_CLIENTS"

	WORK=$(mktemp -d /tmp/cb-bench.XXXXXX)
	chmod 755 "$WORK"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# The binary under test may be rebuilt while this runs: run a copy, the same one throughout.
	CB_BIN=$WORK/cratebouncer
	cp "$CRATEBOUNCER" "$CB_BIN"
}

stop_pid() {  # stop_pid PID NAME: SIGTERM, then SIGKILL after 10 s
	local pid=$1 name=$2 i
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	warn "$name (pid $pid) still running 10 s after SIGTERM; sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pid "$IDLE_PID" idle_clients
	stop_pid "$CB_PID" cratebouncer
	stop_pid "$PGB_PID" pgbouncer
	stop_pid "$STANDIN_PID" crate_pgwire
	stop_pid "$RELAY_PID" delay_relay
	stop_pid "$HOP_PID" delay_relay
	wait 2>/dev/null || true
	[[ -z $WORK ]] || "$PY" "$ROOT/tests/support/pgenv.py" stop "$WORK/pg" >/dev/null 2>&1 || true
	finish_work "$rc"
}

# The last step of a cleanup trap: the work directory removed (kept after a failure or with
# KEEP=1, for its logs), then exit RC.
finish_work() {
	local rc=$1
	if [[ -z $WORK ]]; then
		:
	elif [[ $KEEP == 1 || $rc -ne 0 ]]; then
		echo "# work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}

# In a cleanup trap: set -e ended the script on an unexpected failure (die, INT and TERM say
# why themselves). unexpected_exit RC COMMAND
unexpected_exit() {
	[[ $1 == 0 || $1 == 1 || $1 == 130 || $1 == 143 ]] || warn "exit status $1 after: $2"
}

free_port() {  # a TCP port free on 127.0.0.1 and 127.0.0.2 (pgenv listens on both)
	"$PY" - <<'EOF'
import socket
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        t = socket.socket()
        t.bind(("127.0.0.2", port))
        t.close()
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
EOF
}

log_tail() {  # log_tail FILE...: last lines of each, indented
	local f
	for f in "$@"; do
		[[ -s $f ]] || continue
		echo "--- $f (last 20 lines) ---" >&2
		tail -n 20 "$f" | sed 's/^/    /' >&2
	done
}

wait_file() {  # wait_file FILE PID SECONDS: until FILE is not empty (0), PID exits or time is up (1)
	local file=$1 pid=$2 i
	for ((i = 0; i < $3 * 10; i++)); do
		[[ -s $file ]] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	[[ -s $file ]]
}

wait_listen() {  # wait_listen PORT PID NAME LOG...: until PORT accepts TCP, or fail
	local port=$1 pid=$2 name=$3 i
	shift 3
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || { log_tail "$@"; die "$name exited during start-up"; }
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	log_tail "$@"
	die "$name does not listen on 127.0.0.1:$port after 10 s"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

cpu_ticks() {  # cpu_ticks PID: user + system CPU ticks the process has used
	awk '{print $14 + $15}' "/proc/$1/stat"
}

# Each pooler's port, pid and logs, by name.
pooler_port() { if [[ $1 == cratebouncer ]]; then echo "$CB_PORT"; else echo "$PGB_PORT"; fi; }
pooler_pid() { if [[ $1 == cratebouncer ]]; then echo "$CB_PID"; else echo "$PGB_PID"; fi; }
pooler_logs() {
	if [[ $1 == cratebouncer ]]; then
		echo "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"
	else
		echo "$WORK/pgb/pgbouncer.log" "$WORK/pgb/stderr.log"
	fi
}

# ---------------------------------------------------------------------------------------------
# Upstream: TLS-only PostgreSQL 15 with the pgbench tables. Sets PG_PORT, CA, PGENV_*.

start_upstream() {
	local attempt out t0
	for attempt in 1 2 3 4 5; do
		PG_PORT=$(free_port)
		if out=$("$PY" "$ROOT/tests/support/pgenv.py" start "$WORK/pg" --port "$PG_PORT" 2>&1); then
			break
		fi
		[[ $out == *"pgenv: "*"in use"* && $attempt -lt 5 ]] || die "pgenv start failed: $out"
	done
	eval "$out"   # PGENV_PORT, PGENV_CA, PGENV_SOCKET_DIR, PGENV_DIR
	CA=$PGENV_CA
	PG_PORT=$PGENV_PORT
	note "upstream: PostgreSQL 15 on localhost:$PG_PORT (TLS only), work directory $WORK"

	t0=$SECONDS
	"$PGBENCH" -i -s "$SCALE" -q -h "$PGENV_SOCKET_DIR" -p "$PG_PORT" -U postgres doc \
		>"$WORK/pgbench-init.log" 2>&1 || { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }
	"$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PGENV_SOCKET_DIR" -p "$PG_PORT" -U postgres -d doc -c \
		"GRANT SELECT, INSERT, UPDATE ON pgbench_accounts, pgbench_branches, pgbench_tellers,
		 pgbench_history TO crate" || die "GRANT failed"
	note "pgbench tables at scale $SCALE initialized in $((SECONDS - t0)) s"
	UP_HOST=localhost UP_PORT=$PG_PORT UP_USER=crate UP_PASSWORD=secret
	case $UPSTREAM in
	postgresql) ;;
	standin) start_standin ;;
	cratedb) use_cratedb ;;
	*) die "UPSTREAM=$UPSTREAM: not one of postgresql, standin, cratedb" ;;
	esac
}

# The CrateDB stand-in in front of the PostgreSQL: the poolers' upstream from now on.
start_standin() {
	local port
	port=$(free_port)
	"$PY" "$ROOT/tests/support/crate_pgwire.py" --listen 127.0.0.1 --port "$port" \
		--cert "$PGENV_DIR/ssl/server.crt" --key "$PGENV_DIR/ssl/server.key" \
		--pg-host 127.0.0.1 --pg-port "$PG_PORT" --pg-ca "$CA" \
		--ready-file "$WORK/standin.port" >"$WORK/standin.log" 2>&1 &
	STANDIN_PID=$!
	wait_file "$WORK/standin.port" "$STANDIN_PID" 10 ||
		{ cat "$WORK/standin.log" >&2; die "crate_pgwire.py did not start"; }
	UP_PORT=$port
	note "upstream: the CrateDB stand-in (tests/support/crate_pgwire.py) on localhost:$UP_PORT in front of it"
}

# A real CrateDB: pgbench -S reads pgbench_accounts there (and counts pgbench_branches for
# the scale).
use_cratedb() {
	[[ -n ${CRATEDB_PORT:-} && -n ${CRATEDB_CA:-} ]] || die "UPSTREAM=cratedb needs CRATEDB_HOST, CRATEDB_PORT, CRATEDB_USER, CRATEDB_PASSWORD, CRATEDB_CA"
	UP_HOST=${CRATEDB_HOST:-localhost} UP_PORT=$CRATEDB_PORT UP_USER=${CRATEDB_USER:-crate}
	UP_PASSWORD=${CRATEDB_PASSWORD:-} CA=$CRATEDB_CA
	local conn="host=$UP_HOST port=$UP_PORT user=$UP_USER dbname=doc sslmode=verify-full sslrootcert=$CA"
	PGPASSWORD=$UP_PASSWORD "$PSQL" -X -q -v ON_ERROR_STOP=1 "$conn" \
		-c "DROP TABLE IF EXISTS pgbench_accounts" \
		-c "CREATE TABLE pgbench_accounts (aid INT PRIMARY KEY, bid INT, abalance INT, filler TEXT)" \
		-c "INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT g, 1, 0, '' FROM generate_series(1, $((SCALE * 100000))) AS t(g)" \
		-c "DROP TABLE IF EXISTS pgbench_branches" \
		-c "CREATE TABLE pgbench_branches (bid INT PRIMARY KEY, bbalance INT, filler TEXT)" \
		-c "INSERT INTO pgbench_branches (bid, bbalance, filler) SELECT g, 0, '' FROM generate_series(1, $SCALE) AS t(g)" \
		-c "REFRESH TABLE pgbench_accounts" -c "REFRESH TABLE pgbench_branches" >/dev/null ||
		die "cannot make the pgbench tables on CrateDB"
	note "upstream: CrateDB on $UP_HOST:$UP_PORT (pgbench_accounts at scale $SCALE)"
}

# ---------------------------------------------------------------------------------------------
# A network distance: bench/delay_relay.c between the poolers (or direct clients) and the
# upstream, delaying each direction by half the round trip.

RELAY_BIN=""
start_delay_relay() {  # start_delay_relay RTT_MS TARGET_PORT: sets RELAY_PORT, RELAY_PID
	local rtt=$1 target=$2
	if [[ -z $RELAY_BIN ]]; then
		RELAY_BIN=$WORK/delay_relay
		cc -O2 -Wall -Wextra -std=gnu11 -o "$RELAY_BIN" "$ROOT/bench/delay_relay.c" -levent ||
			die "cannot build bench/delay_relay.c (cc, libevent-dev)"
	fi
	rm -f "$WORK/relay.out"
	"$RELAY_BIN" 0 127.0.0.1 "$target" "$(awk -v r="$rtt" 'BEGIN {print r / 2}')" \
		>"$WORK/relay.out" 2>>"$WORK/relay.log" &
	RELAY_PID=$!
	wait_file "$WORK/relay.out" "$RELAY_PID" 5 || true
	RELAY_PORT=$(awk '/^port / {print $2}' "$WORK/relay.out")
	[[ -n $RELAY_PORT ]] || { cat "$WORK/relay.log" >&2; die "delay_relay did not start"; }
}

upstream_at_rtt() {  # upstream_at_rtt RTT_MS TARGET_PORT: a relay when RTT_MS > 0; sets UP_PORT, WHERE
	if awk -v r="$1" 'BEGIN {exit !(r > 0)}'; then
		start_delay_relay "$1" "$2"
		UP_PORT=$RELAY_PORT
		WHERE="through bench/delay_relay.c on 127.0.0.1:$RELAY_PORT ($(awk -v r="$1" 'BEGIN {print r / 2}') ms each way)"
	else
		UP_PORT=$2
		WHERE="no relay"
	fi
}

stop_delay_relay() {
	stop_pid "$RELAY_PID" delay_relay
	stop_pid "$HOP_PID" delay_relay
	wait "$RELAY_PID" 2>/dev/null || true
	RELAY_PID=""
}

stop_poolers() {
	stop_pid "$CB_PID" cratebouncer
	stop_pid "$PGB_PID" pgbouncer
	wait "$CB_PID" 2>/dev/null || true
	CB_PID=""
	PGB_PID=""
}

# ---------------------------------------------------------------------------------------------
# The two poolers, configured alike. Sets CB_PORT, PGB_PORT.

pooler_ini() {  # pooler_ini NAME PORT DIR EXTRA-LINE: the settings both poolers share
	cat <<EOF
[databases]
doc = host=$UP_HOST port=$UP_PORT dbname=doc user=$UP_USER password=$UP_PASSWORD

[$1]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir =
auth_type = trust
pool_mode = $POOL_MODE
default_pool_size = $POOL_SIZE
max_client_conn = $MAX_CLIENT_CONN
server_tls_sslmode = verify-full
server_tls_ca_file = $CA
logfile = $3/$1.log
pidfile = $3/$1.pid
$4
EOF
}

write_configs() {
	CB_PORT=$(free_port)
	PGB_PORT=$(free_port)
	while [[ $PGB_PORT == "$CB_PORT" ]]; do PGB_PORT=$(free_port); done

	mkdir -p "$WORK/cb" "$WORK/pgb"
	pooler_ini cratebouncer "$CB_PORT" "$WORK/cb" "pipeline_depth = $PIPELINE_DEPTH" \
		>"$WORK/cb/cratebouncer.ini"
	chmod 600 "$WORK/cb/cratebouncer.ini"   # it holds a password (cratebouncer warns otherwise)

	printf '"crate" ""\n' >"$WORK/pgb/users.txt"
	pooler_ini pgbouncer "$PGB_PORT" "$WORK/pgb" "auth_file = $WORK/pgb/users.txt" \
		>"$WORK/pgb/pgbouncer.ini"
	chown -R postgres:postgres "$WORK/pgb"
}

start_cratebouncer() {
	"$CB_BIN" -q "$WORK/cb/cratebouncer.ini" >>"$WORK/cb/stderr.log" 2>&1 &
	CB_PID=$!
	# shellcheck disable=SC2046  # pooler_logs gives two paths without spaces
	wait_listen "$CB_PORT" "$CB_PID" cratebouncer $(pooler_logs cratebouncer)
}

start_pgbouncer() {
	rm -f "$WORK/pgb/pgbouncer.pid"
	# runuser's PAM session resets the soft open-file limit: raise it again inside.
	# shellcheck disable=SC2016  # expanded by the inner bash
	runuser -u postgres -- /bin/bash -c 'ulimit -Sn "$1" && exec "$2" -q "$3"' _ \
		"$NOFILE" "$PGBOUNCER" "$WORK/pgb/pgbouncer.ini" >>"$WORK/pgb/stderr.log" 2>&1 &
	local runuser_pid=$!
	# shellcheck disable=SC2046
	wait_file "$WORK/pgb/pgbouncer.pid" "$runuser_pid" 10 ||
		{ log_tail $(pooler_logs pgbouncer); die "pgbouncer did not start"; }
	PGB_PID=$(<"$WORK/pgb/pgbouncer.pid")
	# shellcheck disable=SC2046
	wait_listen "$PGB_PORT" "$PGB_PID" pgbouncer $(pooler_logs pgbouncer)
}

check_query() {  # check_query NAME: one query through the pooler (also a warm-up), or fail
	local name=$1 got
	if ! got=$(PGCONNECT_TIMEOUT=20 timeout 60 "$PSQL" -X -A -t -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$(pooler_port "$name") user=crate dbname=doc sslmode=disable" \
		-c "SELECT count(*) FROM pgbench_branches" 2>&1) || [[ $got != "$SCALE" ]]; then
		echo "$got" >&2
		# shellcheck disable=SC2046
		log_tail $(pooler_logs "$name")
		die "a query through $name failed"
	fi
}

start_poolers() {  # start both, check each with a query, note versions and limits
	start_cratebouncer
	start_pgbouncer
	check_query cratebouncer
	check_query pgbouncer
	note "$("$CB_BIN" -V 2>&1 | head -n 1) on 127.0.0.1:$CB_PORT (pid $CB_PID), pool_mode=$POOL_MODE"
	note "$("$PGBOUNCER" --version 2>&1 | head -n 1) on 127.0.0.1:$PGB_PORT (pid $PGB_PID, as postgres), pool_mode=$POOL_MODE"
	note "open file limit: $NOFILE (hard $(ulimit -Hn)); pgbouncer runs with $(awk '/open files/ {print $4}' "/proc/$PGB_PID/limits")," \
		"cratebouncer with $(awk '/open files/ {print $4}' "/proc/$CB_PID/limits")"
}

restart_poolers() {  # fresh daemons (for memory measurements)
	stop_poolers
	sleep 0.5
	start_cratebouncer
	start_pgbouncer
}

check_alive() {  # 0 if both poolers still run; otherwise their logs and 1
	local ok=0 name
	for name in cratebouncer pgbouncer; do
		if ! kill -0 "$(pooler_pid "$name")" 2>/dev/null; then
			# shellcheck disable=SC2046
			log_tail $(pooler_logs "$name")
			warn "$name died"
			ok=1
		fi
	done
	return $ok
}

# ---------------------------------------------------------------------------------------------
# pgbench runs.

TPS=""
RUN_OK=1
RUN_ERROR=""
run_pgbench() {  # run_pgbench NAME OUTFILE [pgbench options and connection args...]
	# One pgbench -n -S -c CLIENTS -j THREADS -T DURATION run. Sets TPS ("-" if none),
	# RUN_OK (0 when pgbench failed or printed no tps) and RUN_ERROR (its first error line).
	# Reporting a failure is up to the caller (see pgbench_failed).
	local name=$1 out=$2 tps rc=0 limit=$((DURATION + 150))
	shift 2
	RUN_OK=1
	RUN_ERROR=""
	# timeout: a pooler that stops answering must not hang the benchmark (the limit is above
	# both poolers' query_wait_timeout of 120 s, so that their own error shows first)
	timeout -k 10 "$limit" \
		"$PGBENCH" -n -S -c "$CLIENTS" -j "$THREADS" -T "$DURATION" "$@" >"$out" 2>&1 || rc=$?
	# -C prints its tps "including reconnection times"
	tps=$(sed -n -E 's/^tps = ([0-9.]+) \((without initial connection time|including reconnection times)\)$/\1/p' "$out")
	((rc == 0)) && [[ -n $tps ]] || RUN_OK=0
	if ((rc == 124 || rc == 137)); then
		RUN_ERROR="pgbench did not finish within $limit s and was killed"
	elif ((!RUN_OK)); then
		# the first error line: a server or pooler error if there is one
		RUN_ERROR=$(grep -m 1 -E 'ERROR|FATAL' "$out" || grep -m 1 -E 'error|abort|fail' "$out" ||
			grep -m 1 . "$out" || echo "no output")
		RUN_ERROR=$(sed -E 's/^(pgbench: ?)+(error: )?//; s/  +/ /g' <<<"$RUN_ERROR")
	elif grep -q '^number of failed transactions: [1-9]' "$out"; then
		warn "pgbench through $name: $(grep '^number of failed' "$out")"
	fi
	if ((RUN_OK)); then
		tps=$(printf '%.1f' "$tps")
	else
		tps=-   # the tps of a failed run means nothing
	fi
	TPS=$tps
}

pgbench_failed() {  # pgbench_failed NAME OUTFILE: report the last run as a failure
	warn "pgbench through $1 failed:"
	sed 's/^/    /' "$2" | head -n 40 >&2
	FAILED=1
}

CPU_US=""
through() {  # through NAME TAG [pgbench options...]: one pgbench run through a pooler
	# Sets TPS, RUN_OK, RUN_ERROR and CPU_US (the pooler's CPU time per transaction);
	# the output is in $WORK/pgbench-NAME-TAG.log.
	local name=$1 tag=$2 port pid t0 t1 n out
	shift 2
	port=$(pooler_port "$name")
	pid=$(pooler_pid "$name")
	out=$WORK/pgbench-$name-$tag.log
	t0=$(cpu_ticks "$pid" 2>/dev/null || echo 0)
	PGSSLMODE=disable run_pgbench "$name" "$out" "$@" -h 127.0.0.1 -p "$port" -U crate doc
	t1=$(cpu_ticks "$pid" 2>/dev/null || echo "$t0")
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	# the pooler's own CPU time per transaction: steadier than tps on a shared machine
	CPU_US=$(awk -v a="$t0" -v b="$t1" -v n="${n:-0}" -v hz="$(getconf CLK_TCK)" \
		'BEGIN {if (n > 0) printf "%.1f", (b - a) * 1e6 / hz / n; else print "-"}')
}

median() {  # median of the numeric arguments ("-" skipped); "-" if none
	printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g |
		awk '{v[NR] = $1} END {if (!NR) print "-"; else if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

ratio() {  # ratio A B: A / B with 2 decimals, "n/a" if either is not a number
	if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v b="$2" 'BEGIN {exit !(b > 0)}'; then
		awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'
	else
		echo "n/a"
	fi
}

pooler_rounds() {  # pooler_rounds TAG TARGET [pgbench options...]
	# $ROUNDS rounds through both poolers, alternating which goes first (odd rounds
	# cratebouncer), then the medians and the ratio. A failed run counts as a failure.
	local tag=$1 target=$2 r cb pgb cbc pgbc cbm pgbm name
	shift 2
	local -a cb_tps=() pgb_tps=() cb_cpu=() pgb_cpu=()
	printf '%-7s %16s %16s %22s %22s\n' round cratebouncer pgbouncer "cratebouncer CPU us/tx" "pgbouncer CPU us/tx"
	for ((r = 1; r <= ROUNDS; r++)); do
		# Alternate which pooler goes first, so a drift over time favours neither.
		local order=(cratebouncer pgbouncer)
		((r % 2)) || order=(pgbouncer cratebouncer)
		for name in "${order[@]}"; do
			through "$name" "$tag-$r" "$@"
			((RUN_OK)) || pgbench_failed "$name" "$WORK/pgbench-$name-$tag-$r.log"
			if [[ $name == cratebouncer ]]; then cb=$TPS cbc=$CPU_US; else pgb=$TPS pgbc=$CPU_US; fi
		done
		cb_tps+=("$cb")
		pgb_tps+=("$pgb")
		cb_cpu+=("$cbc")
		pgb_cpu+=("$pgbc")
		printf '%-7s %16s %16s %22s %22s\n' "$r" "$cb" "$pgb" "$cbc" "$pgbc"
		check_alive || die "a pooler died during the pgbench runs"
	done
	cbm=$(median "${cb_tps[@]}")
	pgbm=$(median "${pgb_tps[@]}")
	printf '%-7s %16s %16s %22s %22s\n' median "$cbm" "$pgbm" "$(median "${cb_cpu[@]}")" "$(median "${pgb_cpu[@]}")"
	echo "ratio cratebouncer/pgbouncer = $(ratio "$cbm" "$pgbm")  (target $target)"
}

# ---------------------------------------------------------------------------------------------
# RSS per idle logged-in client.

declare -A PER_CLIENT
idle_rss() {  # idle_rss NAME: VmRSS before, with $IDLE_CLIENTS idle clients and after; sets PER_CLIENT[NAME]
	local name=$1 port pid before held after connected ready=$WORK/idle-$1.json i
	local -a logs
	port=$(pooler_port "$name")
	pid=$(pooler_pid "$name")
	read -r -a logs <<<"$(pooler_logs "$name")"
	check_query "$name"   # warm-up: one login, one server connection in the pool
	sleep 0.5
	before=$(rss_kb "$pid")
	"$PY" "$ROOT/bench/idle_clients.py" --port "$port" -n "$IDLE_CLIENTS" \
		--ready-file "$ready" >"$WORK/idle-$name.log" 2>&1 &
	IDLE_PID=$!
	if ! wait_file "$ready" "$IDLE_PID" "$IDLE_WAIT"; then
		cat "$WORK/idle-$name.log" >&2
		log_tail "${logs[@]}"
		die "idle_clients.py against $name did not finish logging in within $IDLE_WAIT s"
	fi
	sleep 1   # let the daemon settle
	kill -0 "$pid" 2>/dev/null || { log_tail "${logs[@]}"; die "$name died with $IDLE_CLIENTS idle clients"; }
	held=$(rss_kb "$pid")
	connected=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["connected"])' "$ready")
	stop_pid "$IDLE_PID" idle_clients
	wait "$IDLE_PID" 2>/dev/null || true
	IDLE_PID=""
	sleep 1
	kill -0 "$pid" 2>/dev/null || { log_tail "${logs[@]}"; die "$name died after the idle clients left"; }
	after=$(rss_kb "$pid")
	sed 's/^/  /' "$WORK/idle-$name.log" | sed "s/^  idle clients:/  $name:/"
	((connected > 0)) || { log_tail "${logs[@]}"; die "no idle client could log in to $name"; }
	PER_CLIENT[$name]=$(awk -v h="$held" -v b="$before" -v n="$connected" 'BEGIN {printf "%.2f", (h - b) / n}')
	printf '  %s: VmRSS %d kB before (after one warm-up login), %d kB with %d idle clients, %d kB after they left\n' \
		"$name" "$before" "$held" "$connected" "$after"
	check_query "$name"   # still serving?
}

idle_rss_both() {  # fresh daemons, then idle_rss for each and the summary line
	echo "idle logged-in clients: $IDLE_CLIENTS plaintext pgwire logins held by bench/idle_clients.py" \
		"(fresh daemons, pool_mode=$POOL_MODE)"
	# Fresh daemons, so that memory freed after the pgbench clients left does not absorb part
	# of the idle clients' cost.
	restart_poolers
	idle_rss cratebouncer
	idle_rss pgbouncer
	echo "rss per idle client: cratebouncer ${PER_CLIENT[cratebouncer]} kB, pgbouncer ${PER_CLIENT[pgbouncer]} kB  (target for cratebouncer <= 0.6 kB)"
}

# ---------------------------------------------------------------------------------------------
# The end.

report_logs() {  # the WARNING/ERROR/FATAL lines of the poolers' logs
	local f n
	for f in "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log" "$WORK/pgb/pgbouncer.log" "$WORK/pgb/stderr.log"; do
		[[ -s $f ]] || continue
		n=$(grep -c -E 'WARNING|ERROR|FATAL|PANIC|error|warning' "$f" || true)
		((n > 0)) || continue
		echo "$n warning/error lines in ${f#"$WORK"/}; first ones:"
		grep -E 'WARNING|ERROR|FATAL|PANIC|error|warning' "$f" | head -n 5 | sed 's/^/  /'
	done
}

bench_finish() {
	[[ $FAILED == 0 ]] || die "some pgbench runs failed (see above)"
}
