#!/bin/bash
# Quick start. With no argument: start a throwaway TLS-only PostgreSQL (standing in for a
# CrateDB Cloud cluster) and, in front of it, the CrateDB-shaped HTTPS endpoint
# tests/support/crate_http.py; write cratebouncer.ini for both in ./demo (or $CB_DEMO_DIR), and run
# cratebouncer: pgwire and the admin console on 127.0.0.1:6432, HTTP on 127.0.0.1:4200, the
# admin HTTP port (/metrics, the dashboard) on 127.0.0.1:6433. Ctrl-C (or SIGTERM) stops
# cratebouncer and everything the demo started; so does any failure on the way.
# With an argument: run cratebouncer with that config (your real cluster).
# The ports come from the environment (defaults in brackets):
#   CB_DEMO_PORT [6432]  CB_DEMO_HTTP_PORT [4200]  CB_DEMO_ADMIN_PORT [6433]
#   CB_DEMO_PG_PORT [15432]  CB_DEMO_HTTP_UPSTREAM_PORT [14200]
# Builds nothing: run ./bootstrap && ./configure && make first.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${CB_BINARY:-$repo/src/cratebouncer}
py=/usr/bin/python3

if [ ! -x "$bin" ]; then
	echo "demo.sh: $bin not found; build it first: ./bootstrap && ./configure && make" >&2
	exit 1
fi

if [ $# -ge 1 ]; then
	exec "$bin" "$1"
fi

pg_port=${CB_DEMO_PG_PORT:-15432}
port=${CB_DEMO_PORT:-6432}
http_up_port=${CB_DEMO_HTTP_UPSTREAM_PORT:-14200}
http_port=${CB_DEMO_HTTP_PORT:-4200}
admin_port=${CB_DEMO_ADMIN_PORT:-6433}

# Every port is checked before anything starts: a taken one is named with its variable.
taken=0
for pv in "$port CB_DEMO_PORT" "$http_port CB_DEMO_HTTP_PORT" "$admin_port CB_DEMO_ADMIN_PORT" \
	"$pg_port CB_DEMO_PG_PORT" "$http_up_port CB_DEMO_HTTP_UPSTREAM_PORT"; do
	set -- $pv
	case "$1" in
	'' | *[!0-9]* | 0) echo "demo.sh: $2=$1 is not a port number" >&2; taken=1; continue ;;
	esac
	if ! "$py" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; then
		echo "demo.sh: port $1 on 127.0.0.1 is in use (or not allowed); choose another with $2=<port> tests/demo.sh" >&2
		taken=1
	fi
done
[ $taken -eq 0 ] || exit 1
set --

default_demo=$repo/demo
# As root, PostgreSQL runs as `postgres`, which must be able to reach the directory (a clone
# under /root is not reachable): use /tmp then.
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$repo" 2>/dev/null; then
	default_demo=/tmp/cratebouncer-demo
fi
demo=${CB_DEMO_DIR:-$default_demo}
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)

crate_pid="" cb_pid="" pg_started=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$cb_pid" ] && kill -0 "$cb_pid" 2>/dev/null; then
		kill -INT "$cb_pid" 2>/dev/null || true	# let queries finish, then stop
		for _ in $(seq 100); do kill -0 "$cb_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$cb_pid" 2>/dev/null || true
	fi
	if [ -n "$crate_pid" ]; then
		kill "$crate_pid" 2>/dev/null || true
		wait "$crate_pid" 2>/dev/null || true
	fi
	if [ -n "$pg_started" ]; then
		"$py" "$repo/tests/support/pgenv.py" stop "$demo/pg" >/dev/null 2>&1 || true
		echo "demo.sh: stopped cratebouncer and the demo upstreams" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "Starting the demo PostgreSQL (TLS only, like CrateDB Cloud) in $demo/pg ..."
pg_started=yes	# a half-started one is stopped too
if ! env_out=$("$py" "$repo/tests/support/pgenv.py" start "$demo/pg" --port "$pg_port"); then
	echo "demo.sh: could not start the demo PostgreSQL (see above)" >&2
	exit 1
fi
eval "$env_out"

echo "Starting the demo CrateDB HTTP endpoint (HTTPS, Basic auth crate/secret) on 127.0.0.1:$http_up_port ..."
rm -f "$demo/crate_http.ready"
"$py" "$repo/tests/support/crate_http.py" --listen 127.0.0.1 --port "$http_up_port" \
	--cert "$PGENV_DIR/ssl/server.crt" --key "$PGENV_DIR/ssl/server.key" \
	--pg "host=127.0.0.1 port=$PGENV_PORT dbname=doc user=crate password=secret sslmode=verify-full sslrootcert=$PGENV_CA" \
	--user crate --password secret --ready-file "$demo/crate_http.ready" --quiet >/dev/null &
crate_pid=$!
for _ in $(seq 100); do
	[ -s "$demo/crate_http.ready" ] && break
	kill -0 "$crate_pid" 2>/dev/null || { echo "demo.sh: the demo HTTP endpoint did not start (see above)" >&2; exit 1; }
	sleep 0.1
done
[ -s "$demo/crate_http.ready" ] || { echo "demo.sh: the demo HTTP endpoint did not start within 10 s" >&2; exit 1; }

cat >"$demo/cratebouncer.ini" <<INI
; Written by tests/demo.sh: cratebouncer in front of the demo PostgreSQL.
[databases]
doc = host=localhost port=$PGENV_PORT dbname=doc user=crate password=secret

[cratebouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $demo
auth_type = trust
server_tls_sslmode = verify-full
server_tls_ca_file = $PGENV_CA
pool_mode = transaction
default_pool_size = 4
; the admin console: psql -U admin cratebouncer (SHOW POOLS, SHOW STATS, SHOW HELP)
admin_users = admin

[http]
listen_addr = 127.0.0.1
listen_port = $http_port
upstream = https://localhost:$http_up_port
user = crate
password = secret
pool_size = 16
tls_ca_file = $PGENV_CA

[admin]
listen_addr = 127.0.0.1
listen_port = $admin_port
INI
chmod 600 "$demo/cratebouncer.ini"   # it holds passwords
# a short load for the dashboard: 8 clients on a pool of 4, 30 s
printf 'select pg_sleep(0.002), 1;\n' >"$demo/load.sql"

cd "$repo"
"$bin" "$demo/cratebouncer.ini" &
cb_pid=$!
for _ in $(seq 100); do
	"$py" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$admin_port" 2>/dev/null && break
	kill -0 "$cb_pid" 2>/dev/null || { echo "demo.sh: cratebouncer did not start (its log: $bin $demo/cratebouncer.ini)" >&2; cb_pid=""; exit 1; }
	sleep 0.1
done

cat <<MSG

cratebouncer is running (pid $cb_pid) in front of the demo upstreams:
  demo PostgreSQL  127.0.0.1:$PGENV_PORT (TLS only; its CA is $PGENV_CA)
  demo CrateDB HTTP https://localhost:$http_up_port (Basic auth crate/secret)
  config           $demo/cratebouncer.ini

1. Connect through it, no password, no TLS (it logs in upstream over verified TLS):

    psql -h 127.0.0.1 -p $port -U crate doc
    curl -s -H 'Content-Type: application/json' -d '{"stmt": "select 1 + 1"}' http://127.0.0.1:$http_port/_sql

2. Its statistics:

    psql -h 127.0.0.1 -p $port -U admin cratebouncer -c 'SHOW POOLS'
    curl -s http://127.0.0.1:$admin_port/metrics
    dashboard: http://127.0.0.1:$admin_port/

3. A short load to watch on the dashboard (8 clients sharing 4 upstream connections, 30 s):

    pgbench -n -c 8 -j 2 -T 30 -P 5 -f $demo/load.sql -h 127.0.0.1 -p $port -U crate doc

Ctrl-C stops cratebouncer and the demo upstreams.

MSG
wait "$cb_pid" || true
cb_pid=""
echo "demo.sh: cratebouncer exited" >&2
