#!/bin/sh
# The virtual environment of tests/integration/clients/: the clients of CrateDB's Python guide
# at the releases pinned in tests/requirements.txt, from PyPI, on Debian's /usr/bin/python3.
# Made once and again when requirements.txt or this script change; prints its path.
#   CB_VENV  where it goes (default ~/.cache/cratebouncer/venv; outside the source tree, which
#            make distcheck makes read-only)
set -e
here=$(cd "$(dirname "$0")" && pwd)
venv=${CB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cratebouncer/venv}
want=$(cat "$here/requirements.txt" "$here/venv.sh" | sha256sum | cut -c1-64)
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.cratebouncer-stamp" 2>/dev/null)" = "$want" ]; then
	echo "$venv"
	exit 0
fi
echo "venv.sh: installing the pinned clients into $venv" >&2
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv" >&2
pip() { "$venv/bin/python" -m pip --disable-pip-version-check --no-input -q "$@" >&2; }
# psycopg2 is built from source against Debian's libpq (libpq-dev, python3-dev).
pip install -r "$here/requirements.txt"
# aiopg 1.4.0 declares psycopg2-binary, whose files would replace those of the psycopg2 above;
# what else it needs (async-timeout) is in requirements.txt.
pip install --no-deps aiopg==1.4.0
# cratedb-async 0.0.11 declares Python >= 3.12 and Debian 12 has 3.11; its code uses nothing
# newer than 3.8, and its one dependency (httpx[http2] < 0.29) is in requirements.txt.
pip install --no-deps --ignore-requires-python cratedb-async==0.0.11
# Everything else must be consistent.
bad=$("$venv/bin/python" -m pip check 2>&1 | grep -v "^aiopg 1.4.0 requires psycopg2-binary" || true)
case "$bad" in *"No broken requirements"* | "") ;; *) echo "$bad" >&2; exit 1 ;; esac
echo "$want" >"$venv/.cratebouncer-stamp"
echo "$venv"
