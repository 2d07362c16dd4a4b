#!/bin/sh
# The integration suite, as `make check` runs it (CB_BINARY and CB_SRCDIR come from
# TESTS_ENVIRONMENT). Extra arguments go to pytest, e.g. tests/integration/run.sh -k pooling -x
# Two runs: the suite on Debian's /usr/bin/python3 and its packages, then
# tests/integration/clients/ (the clients of CrateDB's Python guide at their current releases)
# on the virtual environment of tests/venv.sh. Paths among the arguments choose one of them.
if [ -z "${CB_SRCDIR:-}" ]; then
	CB_SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
fi
export CB_SRCDIR
# The source tree may be read-only (make distcheck): no caches written into it, and test
# artifacts (the dashboard screenshot) go to the directory make check runs in.
export PYTHONDONTWRITEBYTECODE=1
export CB_ARTIFACT_DIR="${CB_ARTIFACT_DIR:-$PWD/test-artifacts}"
cd "$CB_SRCDIR" || exit 1

main=yes clients=yes
for a in "$@"; do
	case "$a" in
	-*) ;;
	# the clients/ folder (test_crate_clients.py is a main-suite file)
	*/clients/* | */clients | clients/* | clients) [ -e "${a%%::*}" ] && main=no ;;
	*) [ -e "${a%%::*}" ] && clients=no ;;
	esac
done
[ $main = no ] && [ $clients = no ] && main=yes clients=yes

# pytest's exit status 5 is "no test collected" (a -k that matched only the other run).
rc=0
if [ $main = yes ]; then
	/usr/bin/python3 -m pytest -q -p no:cacheprovider --ignore=tests/integration/clients \
		$( [ $clients = yes ] && echo tests/integration ) "$@"
	r=$?
	[ $r -eq 5 ] || rc=$r
fi
if [ $clients = yes ]; then
	venv=$(sh tests/venv.sh) || { echo "run.sh: tests/venv.sh could not make the clients' environment" >&2; exit 1; }
	"$venv/bin/python" -m pytest -q -p no:cacheprovider \
		$( [ $main = yes ] && echo tests/integration/clients ) "$@"
	r=$?
	[ $r -eq 5 ] || [ $rc -ne 0 ] || rc=$r
fi
exit $rc
