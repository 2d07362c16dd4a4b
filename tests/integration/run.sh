#!/bin/sh
# The integration suite, as `make check` runs it (CB_BINARY and CB_SRCDIR come from
# TESTS_ENVIRONMENT). Extra arguments go to pytest, e.g. tests/integration/run.sh -k pooling -x
if [ -z "${CB_SRCDIR:-}" ]; then
	CB_SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
fi
export CB_SRCDIR
# The source tree may be read-only (make distcheck): no caches written into it, and test
# artifacts (the dashboard screenshot) go to the directory make check runs in.
export PYTHONDONTWRITEBYTECODE=1
export CB_ARTIFACT_DIR="${CB_ARTIFACT_DIR:-$PWD/test-artifacts}"
cd "$CB_SRCDIR" && exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration "$@"
