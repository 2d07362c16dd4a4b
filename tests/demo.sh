#!/bin/bash
# Quick start. With no argument: start a throwaway TLS-only PostgreSQL (standing in for a
# CrateDB Cloud cluster) on 127.0.0.1:15432 in ./demo (or $CB_DEMO_DIR), write
# demo/cratebouncer.ini for it, and run cratebouncer in the foreground on 127.0.0.1:6432;
# the demo PostgreSQL stops when cratebouncer exits (Ctrl-C).
# With an argument: run cratebouncer with that config (your real cluster).
# CB_DEMO_PG_PORT / CB_DEMO_PORT change the ports 15432 / 6432.
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

stop_pg() {
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
INI

cat <<MSG

Demo PostgreSQL: 127.0.0.1:$PGENV_PORT (requires TLS; its CA is $PGENV_CA)
Config:          $demo/cratebouncer.ini

Connect through cratebouncer, no password needed (it logs in upstream as crate over verified TLS):

    psql -h 127.0.0.1 -p $port -U crate doc

Running: $bin $demo/cratebouncer.ini   (Ctrl-C stops it and the demo PostgreSQL)

MSG
cd "$repo"
"$bin" "$demo/cratebouncer.ini"
