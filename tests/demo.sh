#!/bin/bash
# Quick start. With no argument: start a throwaway TLS-only PostgreSQL (standing in for a
# CrateDB Cloud cluster) on 127.0.0.1:15432 in ./demo (or $CB_DEMO_DIR) and, in front of it,
# the CrateDB-shaped HTTPS endpoint tests/crate_http.py on 127.0.0.1:14200; write
# demo/cratebouncer.ini for both, and run cratebouncer in the foreground: pgwire on
# 127.0.0.1:6432, HTTP on 127.0.0.1:4200. The demo upstreams stop when cratebouncer exits.
# With an argument: run cratebouncer with that config (your real cluster).
# CB_DEMO_PG_PORT / CB_DEMO_PORT / CB_DEMO_HTTP_UPSTREAM_PORT / CB_DEMO_HTTP_PORT change
# the ports 15432 / 6432 / 14200 / 4200.
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

default_demo=$repo/demo
# As root, PostgreSQL runs as `postgres`, which must be able to reach the directory (a clone
# under /root is not reachable): use /tmp then.
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$repo" 2>/dev/null; then
	default_demo=/tmp/cratebouncer-demo
fi
demo=${CB_DEMO_DIR:-$default_demo}
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)
pg_port=${CB_DEMO_PG_PORT:-15432}
port=${CB_DEMO_PORT:-6432}
http_up_port=${CB_DEMO_HTTP_UPSTREAM_PORT:-14200}
http_port=${CB_DEMO_HTTP_PORT:-4200}
crate_pid=""

stop_pg() {
	[ -n "$crate_pid" ] && kill "$crate_pid" 2>/dev/null
	"$py" "$repo/tests/pgenv.py" stop "$demo/pg" || true
}

echo "Starting the demo PostgreSQL (TLS only, like CrateDB Cloud) in $demo/pg ..."
if ! env_out=$("$py" "$repo/tests/pgenv.py" start "$demo/pg" --port "$pg_port"); then
	echo "demo.sh: could not start the demo PostgreSQL (see above)" >&2
	exit 1
fi
trap stop_pg EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
eval "$env_out"

echo "Starting the demo CrateDB HTTP endpoint (HTTPS, Basic auth crate/secret) on 127.0.0.1:$http_up_port ..."
rm -f "$demo/crate_http.ready"
"$py" "$repo/tests/crate_http.py" --listen 127.0.0.1 --port "$http_up_port" \
	--cert "$PGENV_DIR/ssl/server.crt" --key "$PGENV_DIR/ssl/server.key" \
	--pg "host=127.0.0.1 port=$PGENV_PORT dbname=doc user=crate password=secret sslmode=verify-full sslrootcert=$PGENV_CA" \
	--user crate --password secret --ready-file "$demo/crate_http.ready" --quiet &
crate_pid=$!
for _ in $(seq 100); do
	[ -s "$demo/crate_http.ready" ] && break
	kill -0 "$crate_pid" 2>/dev/null || { echo "demo.sh: the demo HTTP endpoint did not start" >&2; exit 1; }
	sleep 0.1
done

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

[http]
listen_addr = 127.0.0.1
listen_port = $http_port
upstream = https://localhost:$http_up_port
user = crate
password = secret
pool_size = 16
tls_ca_file = $PGENV_CA
INI
chmod 600 "$demo/cratebouncer.ini"   # it holds passwords

cat <<MSG

Demo PostgreSQL: 127.0.0.1:$PGENV_PORT (requires TLS; its CA is $PGENV_CA)
Config:          $demo/cratebouncer.ini

Connect through cratebouncer, no password needed (it logs in upstream as crate over verified TLS):

    psql -h 127.0.0.1 -p $port -U crate doc
    curl -s -H 'Content-Type: application/json' -d '{"stmt": "select 1 + 1"}' http://127.0.0.1:$http_port/_sql

Running: $bin $demo/cratebouncer.ini   (Ctrl-C stops it and the demo PostgreSQL)

MSG
cd "$repo"
"$bin" "$demo/cratebouncer.ini"
