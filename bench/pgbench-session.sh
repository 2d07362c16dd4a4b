#!/usr/bin/env bash
# cratebouncer vs PgBouncer, session pooling, in one invocation:
#   - pgbench -S (read-only, persistent connections) through each pooler, alternately, for
#     $ROUNDS rounds, plus once directly against the TLS upstream for orientation;
#   - RSS per idle logged-in client with $IDLE_CLIENTS idle clients held (bench/idle_clients.py).
# Both poolers get the same settings: the same TLS-only PostgreSQL 15 upstream from
# tests/pgenv.py (host=localhost, verify-full against its test CA, user crate with a password),
# pool_mode=session, default_pool_size=20, auth_type=trust on 127.0.0.1, max_client_conn 20000.
#
#   bash bench/pgbench-session.sh
#   DURATION=30 ROUNDS=5 IDLE_CLIENTS=10000 bash bench/pgbench-session.sh
#
# Figures are reported, never asserted: the exit status is non-zero only when something failed
# to run (a daemon did not start or died, pgbench failed, no idle client could log in).
# See bench/README.md.
set -euo pipefail

DURATION=${DURATION:-10}            # seconds per pgbench run
ROUNDS=${ROUNDS:-3}                 # rounds of (cratebouncer, pgbouncer)
IDLE_CLIENTS=${IDLE_CLIENTS:-5000}  # idle logged-in clients for the RSS measurement
CLIENTS=${CLIENTS:-20}              # pgbench -c
THREADS=${THREADS:-2}               # pgbench -j
SCALE=${SCALE:-10}                  # pgbench -i -s
POOL_SIZE=${POOL_SIZE:-20}          # default_pool_size of both poolers
MAX_CLIENT_CONN=${MAX_CLIENT_CONN:-20000}
KEEP=${KEEP:-0}                     # 1: keep the work directory (configs, logs) after the run

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGBENCH=$PG_BIN/pgbench
PSQL=${PSQL:-/usr/bin/psql}
CRATEBOUNCER=${CRATEBOUNCER:-$ROOT/src/cratebouncer}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}

die() { echo "pgbench-session: $*" >&2; exit 1; }
note() { echo "# $*"; }

for exe in "$PY" "$PGBENCH" "$PSQL" "$CRATEBOUNCER" "$PGBOUNCER"; do
	[[ -x $exe ]] || die "$exe not found or not executable (cratebouncer: cd $ROOT && make src/cratebouncer)"
done
[[ $(id -u) -eq 0 ]] || id postgres >/dev/null 2>&1 || die "needs the postgres OS user"

# Open files: the poolers and the idle-client generator need IDLE_CLIENTS sockets each and the
# configs ask for MAX_CLIENT_CONN. Take the soft limit as high as the hard limit allows.
HARD_NOFILE=$(ulimit -Hn)
WANT_NOFILE=$((MAX_CLIENT_CONN + 1024))
if [[ $HARD_NOFILE != unlimited && $HARD_NOFILE -lt $WANT_NOFILE ]]; then
	ulimit -Hn "$WANT_NOFILE" 2>/dev/null || true   # works only with CAP_SYS_RESOURCE
	HARD_NOFILE=$(ulimit -Hn)
	[[ $HARD_NOFILE == unlimited || $HARD_NOFILE -ge $WANT_NOFILE ]] || WANT_NOFILE=$HARD_NOFILE
fi
ulimit -Sn "$WANT_NOFILE"
NOFILE=$(ulimit -Sn)
((NOFILE >= IDLE_CLIENTS + 64)) || die "open file limit $NOFILE is too low for IDLE_CLIENTS=$IDLE_CLIENTS"

WORK=$(mktemp -d /tmp/cb-bench.XXXXXX)
chmod 755 "$WORK"
CB_PID=""
PGB_PID=""
IDLE_PID=""

stop_pid() {  # stop_pid PID NAME: SIGTERM, then SIGKILL after 10 s
	local pid=$1 name=$2 i
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "pgbench-session: $name (pid $pid) still running 10 s after SIGTERM; sending SIGKILL" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pid "$IDLE_PID" idle_clients
	stop_pid "$CB_PID" cratebouncer
	stop_pid "$PGB_PID" pgbouncer
	wait 2>/dev/null || true
	"$PY" "$ROOT/tests/pgenv.py" stop "$WORK/pg" >/dev/null 2>&1 || true
	if [[ $KEEP == 1 || $rc -eq 1 ]]; then   # kept after a failure, for its logs
		echo "# work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# ---------------------------------------------------------------------------------------------
# 1. Upstream: TLS-only PostgreSQL 15 with the pgbench tables.

for attempt in 1 2 3 4 5; do
	PG_PORT=$(free_port)
	if out=$("$PY" "$ROOT/tests/pgenv.py" start "$WORK/pg" --port "$PG_PORT" 2>&1); then
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

# ---------------------------------------------------------------------------------------------
# 2. The two poolers, configured alike.

CB_PORT=$(free_port)
PGB_PORT=$(free_port)
while [[ $PGB_PORT == "$CB_PORT" ]]; do PGB_PORT=$(free_port); done

mkdir -p "$WORK/cb" "$WORK/pgb"
cat >"$WORK/cb/cratebouncer.ini" <<EOF
[databases]
doc = host=localhost port=$PG_PORT dbname=doc user=crate password=secret

[cratebouncer]
listen_addr = 127.0.0.1
listen_port = $CB_PORT
unix_socket_dir =
auth_type = trust
pool_mode = session
default_pool_size = $POOL_SIZE
max_client_conn = $MAX_CLIENT_CONN
server_tls_sslmode = verify-full
server_tls_ca_file = $CA
logfile = $WORK/cb/cratebouncer.log
pidfile = $WORK/cb/cratebouncer.pid
EOF

printf '"crate" ""\n' >"$WORK/pgb/users.txt"
cat >"$WORK/pgb/pgbouncer.ini" <<EOF
[databases]
doc = host=localhost port=$PG_PORT dbname=doc user=crate password=secret

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/pgb/users.txt
pool_mode = session
default_pool_size = $POOL_SIZE
max_client_conn = $MAX_CLIENT_CONN
server_tls_sslmode = verify-full
server_tls_ca_file = $CA
logfile = $WORK/pgb/pgbouncer.log
pidfile = $WORK/pgb/pgbouncer.pid
EOF
chown -R postgres:postgres "$WORK/pgb"

start_cratebouncer() {
	"$CRATEBOUNCER" -q "$WORK/cb/cratebouncer.ini" >>"$WORK/cb/stderr.log" 2>&1 &
	CB_PID=$!
	wait_listen "$CB_PORT" "$CB_PID" cratebouncer "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"
}

start_pgbouncer() {
	rm -f "$WORK/pgb/pgbouncer.pid"
	# runuser's PAM session resets the soft open-file limit: raise it again inside.
	runuser -u postgres -- /bin/bash -c 'ulimit -Sn "$1" && exec "$2" -q "$3"' _ \
		"$NOFILE" "$PGBOUNCER" "$WORK/pgb/pgbouncer.ini" >>"$WORK/pgb/stderr.log" 2>&1 &
	local runuser_pid=$! i
	for ((i = 0; i < 100; i++)); do
		[[ -s $WORK/pgb/pgbouncer.pid ]] && break
		kill -0 "$runuser_pid" 2>/dev/null || break
		sleep 0.1
	done
	[[ -s $WORK/pgb/pgbouncer.pid ]] || { log_tail "$WORK/pgb/pgbouncer.log" "$WORK/pgb/stderr.log"; die "pgbouncer did not start"; }
	PGB_PID=$(<"$WORK/pgb/pgbouncer.pid")
	wait_listen "$PGB_PORT" "$PGB_PID" pgbouncer "$WORK/pgb/pgbouncer.log" "$WORK/pgb/stderr.log"
}

check_query() {  # check_query PORT NAME LOG...: one query through the pooler (also a warm-up)
	local port=$1 name=$2 got
	shift 2
	if ! got=$(PGCONNECT_TIMEOUT=20 "$PSQL" -X -A -t -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$port user=crate dbname=doc sslmode=disable" \
		-c "SELECT count(*) FROM pgbench_branches" 2>&1) || [[ $got != "$SCALE" ]]; then
		echo "$got" >&2
		log_tail "$@"
		die "a query through $name failed"
	fi
}

start_cratebouncer
start_pgbouncer
check_query "$CB_PORT" cratebouncer "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"
check_query "$PGB_PORT" pgbouncer "$WORK/pgb/pgbouncer.log" "$WORK/pgb/stderr.log"
note "$("$CRATEBOUNCER" -V 2>&1 | head -n 1) on 127.0.0.1:$CB_PORT (pid $CB_PID)"
note "$("$PGBOUNCER" --version 2>&1 | head -n 1) on 127.0.0.1:$PGB_PORT (pid $PGB_PID, as postgres)"
note "open file limit: $NOFILE (hard $(ulimit -Hn)); pgbouncer runs with $(awk '/open files/ {print $4}' "/proc/$PGB_PID/limits")," \
	"cratebouncer with $(awk '/open files/ {print $4}' "/proc/$CB_PID/limits")"

# ---------------------------------------------------------------------------------------------
# 3. pgbench -S: direct once, then the poolers alternately.

FAILED=0
TPS=""
run_pgbench() {  # run_pgbench NAME OUTFILE [pgbench connection args...]; sets TPS (or "-")
	local name=$1 out=$2 tps
	shift 2
	if ! "$PGBENCH" -n -S -c "$CLIENTS" -j "$THREADS" -T "$DURATION" "$@" >"$out" 2>&1; then
		echo "pgbench-session: pgbench through $name failed:" >&2
		sed 's/^/    /' "$out" >&2
		FAILED=1
	fi
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
	if [[ -z $tps ]]; then
		echo "pgbench-session: no tps in the output of pgbench through $name" >&2
		FAILED=1
		tps=-
	elif grep -q '^number of failed transactions: [1-9]' "$out"; then
		echo "pgbench-session: pgbench through $name: $(grep '^number of failed' "$out")" >&2
	fi
	[[ $tps == - ]] || tps=$(printf '%.1f' "$tps")
	TPS=$tps
}

cpu_ticks() {  # cpu_ticks PID: user + system CPU ticks the process has used
	awk '{print $14 + $15}' "/proc/$1/stat"
}

CPU_US=""
through() {  # through NAME ROUND: one pgbench run through a pooler; sets TPS and CPU_US
	local name=$1 round=$2 port pid t0 t1 n
	if [[ $name == cratebouncer ]]; then port=$CB_PORT pid=$CB_PID; else port=$PGB_PORT pid=$PGB_PID; fi
	t0=$(cpu_ticks "$pid")
	PGSSLMODE=disable run_pgbench "$name" "$WORK/pgbench-$name-$round.log" \
		-h 127.0.0.1 -p "$port" -U crate doc
	t1=$(cpu_ticks "$pid")
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pgbench-$name-$round.log")
	# the pooler's own CPU time per transaction: steadier than tps on a shared machine
	CPU_US=$(awk -v a="$t0" -v b="$t1" -v n="${n:-0}" -v hz="$(getconf CLK_TCK)" \
		'BEGIN {if (n > 0) printf "%.1f", (b - a) * 1e6 / hz / n; else print "-"}')
}

check_alive() {
	local ok=0
	kill -0 "$CB_PID" 2>/dev/null || { log_tail "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"; echo "pgbench-session: cratebouncer died" >&2; ok=1; }
	kill -0 "$PGB_PID" 2>/dev/null || { log_tail "$WORK/pgb/pgbouncer.log" "$WORK/pgb/stderr.log"; echo "pgbench-session: pgbouncer died" >&2; ok=1; }
	return $ok
}

echo
echo "pgbench -n -S -c $CLIENTS -j $THREADS -T $DURATION, persistent connections, scale $SCALE," \
	"pool_mode=session, pool size $POOL_SIZE"
PGPASSWORD=secret PGSSLMODE=verify-full PGSSLROOTCERT=$CA \
	run_pgbench "direct TLS" "$WORK/pgbench-direct.log" -h localhost -p "$PG_PORT" -U crate doc
printf '%-28s %12s tps\n' "direct over TLS (no pooler)" "$TPS"
echo
printf '%-7s %16s %16s %22s %22s\n' round cratebouncer pgbouncer "cratebouncer CPU us/tx" "pgbouncer CPU us/tx"
CB_TPS=()
PGB_TPS=()
CB_CPU=()
PGB_CPU=()
for ((r = 1; r <= ROUNDS; r++)); do
	# Alternate which pooler goes first, so a drift over time favours neither.
	if ((r % 2)); then
		through cratebouncer "$r"; cb=$TPS cbc=$CPU_US
		through pgbouncer "$r"; pgb=$TPS pgbc=$CPU_US
	else
		through pgbouncer "$r"; pgb=$TPS pgbc=$CPU_US
		through cratebouncer "$r"; cb=$TPS cbc=$CPU_US
	fi
	CB_TPS+=("$cb")
	PGB_TPS+=("$pgb")
	CB_CPU+=("$cbc")
	PGB_CPU+=("$pgbc")
	printf '%-7s %16s %16s %22s %22s\n' "$r" "$cb" "$pgb" "$cbc" "$pgbc"
	check_alive || die "a pooler died during the pgbench runs"
done

median() {  # median of the numeric arguments ("-" skipped); "-" if none
	printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g |
		awk '{v[NR] = $1} END {if (!NR) print "-"; else if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
CB_MEDIAN=$(median "${CB_TPS[@]}")
PGB_MEDIAN=$(median "${PGB_TPS[@]}")
printf '%-7s %16s %16s %22s %22s\n' median "$CB_MEDIAN" "$PGB_MEDIAN" "$(median "${CB_CPU[@]}")" \
	"$(median "${PGB_CPU[@]}")"
if [[ $CB_MEDIAN != - && $PGB_MEDIAN != - ]]; then
	echo "ratio cratebouncer/pgbouncer = $(awk -v a="$CB_MEDIAN" -v b="$PGB_MEDIAN" 'BEGIN {printf "%.2f", a / b}')  (target >= 1.0)"
else
	echo "ratio cratebouncer/pgbouncer = n/a"
fi

# ---------------------------------------------------------------------------------------------
# 4. RSS per idle logged-in client. Fresh daemons, so that memory freed after the pgbench
#    clients left does not absorb part of the idle clients' cost.

echo
echo "idle logged-in clients: $IDLE_CLIENTS plaintext pgwire logins held by bench/idle_clients.py (fresh daemons)"
stop_pid "$CB_PID" cratebouncer
stop_pid "$PGB_PID" pgbouncer
wait "$CB_PID" 2>/dev/null || true
CB_PID=""
PGB_PID=""
sleep 0.5
start_cratebouncer
start_pgbouncer

declare -A PER_CLIENT
idle_rss() {  # idle_rss NAME PORT PID LOG...
	local name=$1 port=$2 pid=$3 before held after connected ready=$WORK/idle-$1.json i
	shift 3
	check_query "$port" "$name" "$@"   # warm-up: one login, one server connection in the pool
	sleep 0.5
	before=$(rss_kb "$pid")
	"$PY" "$ROOT/bench/idle_clients.py" --port "$port" -n "$IDLE_CLIENTS" \
		--ready-file "$ready" >"$WORK/idle-$name.log" 2>&1 &
	IDLE_PID=$!
	for ((i = 0; i < 1200; i++)); do
		[[ -s $ready ]] && break
		kill -0 "$IDLE_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [[ ! -s $ready ]]; then
		cat "$WORK/idle-$name.log" >&2
		log_tail "$@"
		die "idle_clients.py against $name did not finish logging in within 120 s"
	fi
	sleep 1   # let the daemon settle
	kill -0 "$pid" 2>/dev/null || { log_tail "$@"; die "$name died with $IDLE_CLIENTS idle clients"; }
	held=$(rss_kb "$pid")
	connected=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["connected"])' "$ready")
	stop_pid "$IDLE_PID" idle_clients
	wait "$IDLE_PID" 2>/dev/null || true
	IDLE_PID=""
	sleep 1
	kill -0 "$pid" 2>/dev/null || { log_tail "$@"; die "$name died after the idle clients left"; }
	after=$(rss_kb "$pid")
	sed 's/^/  /' "$WORK/idle-$name.log" | sed "s/^  idle clients:/  $name:/"
	((connected > 0)) || { log_tail "$@"; die "no idle client could log in to $name"; }
	PER_CLIENT[$name]=$(awk -v h="$held" -v b="$before" -v n="$connected" 'BEGIN {printf "%.1f", (h - b) / n}')
	printf '  %s: VmRSS %d kB before (after one warm-up login), %d kB with %d idle clients, %d kB after they left\n' \
		"$name" "$before" "$held" "$connected" "$after"
	check_query "$port" "$name" "$@"   # still serving?
}
idle_rss cratebouncer "$CB_PORT" "$CB_PID" "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"
idle_rss pgbouncer "$PGB_PORT" "$PGB_PID" "$WORK/pgb/pgbouncer.log" "$WORK/pgb/stderr.log"
echo "rss per idle client: cratebouncer ${PER_CLIENT[cratebouncer]} kB, pgbouncer ${PER_CLIENT[pgbouncer]} kB  (target for cratebouncer <= 1.5 kB)"

# ---------------------------------------------------------------------------------------------
# 5. Anything the poolers complained about.

echo
for f in "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log" "$WORK/pgb/pgbouncer.log" "$WORK/pgb/stderr.log"; do
	[[ -s $f ]] || continue
	n=$(grep -c -E 'WARNING|ERROR|FATAL|PANIC|error|warning' "$f" || true)
	((n > 0)) || continue
	echo "$n warning/error lines in ${f#"$WORK"/}; first ones:"
	grep -E 'WARNING|ERROR|FATAL|PANIC|error|warning' "$f" | head -n 5 | sed 's/^/  /'
done
[[ $FAILED == 0 ]] || die "some pgbench runs failed (see above)"
