"""turbodbc, CrateDB's guide's ODBC client, on the PostgreSQL ODBC driver psqlODBC (Debian's
odbc-postgresql, "PostgreSQL Unicode" in /etc/odbcinst.ini), through cratebouncer with no
password and no TLS.

turbodbc is not in tests/requirements.txt: no release builds on Debian 12 from PyPI. 5.3.0 down
to 4.10.1 include <simdutf.h>, and Debian 12 has no simdutf package. 4.9.0, the newest without
simdutf, compiles its ODBC core with Debian's libboost-dev, unixodbc-dev and pybind11, but its
build requires pyarrow >=7,<15 (which the pinned pyarrow 26 and numpy 2 of the other clients
exclude), and its Arrow support does not compile against pyarrow 26's C++20 headers (std::span,
std::bit_width) with turbodbc's --std=c++17. Its tests below are skipped with that reason
while turbodbc cannot be imported, and run where it can.

The same ODBC path, psqlODBC through cratebouncer, is tested with pyodbc, on Debian's
/usr/bin/python3 and its python3-pyodbc (bootstrap --deps installs both), in a subprocess: this
file runs itself as a script there. Its snippet in docs/cratedb-cloud.md, ? parameters, 5000
rows, the upstream's error and the connection going on, and 8 threads on a pool of 2."""

import json
import os
import subprocess
import sys

import pytest

from pgwire_checks import (CLIENTS, SUMMITS, check_error, check_rows, in_threads, missing,
                           new_tag, rows_sql)

try:
    import turbodbc
except ImportError:
    turbodbc = None

DEBIAN_PYTHON = "/usr/bin/python3"
DRIVER = "PostgreSQL Unicode"
DRIVER_FILE = "/usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so"
NO_TURBODBC = ("turbodbc is not installed: 5.3.0 to 4.10.1 need simdutf (<simdutf.h>), which "
               "Debian 12 does not package; 4.9.0 builds only with pyarrow >=7,<15, against "
               "the pinned pyarrow 26 its Arrow support does not compile (C++20 headers, "
               "turbodbc uses --std=c++17); the same ODBC path (psqlODBC) is tested with "
               "pyodbc in this file")


class Upstream:
    def __init__(self, crate, cluster):
        self.crate, self.cluster = crate, cluster


def connstr(port):
    return (f"Driver={{{DRIVER}}};Server=127.0.0.1;Port={port};Database=doc;Uid=admin;Pwd=;"
            "SSLmode=disable")


# -- the checks, for pyodbc (in the subprocess) and turbodbc ---------------------------------


def pyodbc_connect(port):
    import pyodbc
    return pyodbc.connect(connstr(port), autocommit=True, timeout=10)


def turbodbc_connect(port):
    return turbodbc.connect(connection_string=connstr(port),
                            turbodbc_options=turbodbc.make_options(autocommit=True))


def check_parameters_rows_error(connect, error, port, up):
    conn = connect(port)
    try:
        cur = conn.cursor()
        cur.execute("SELECT CAST(? AS TEXT), CAST(? AS INT), CAST(? AS DOUBLE PRECISION)",
                    ["O'Brien", 42, 1.5])
        assert tuple(cur.fetchone()) == ("O'Brien", 42, 1.5)
        for name, height in SUMMITS.items():
            cur.execute("SELECT height FROM sys.summits WHERE mountain = ?", [name])
            assert [tuple(r) for r in cur.fetchall()] == [(height,)]
        t = new_tag()
        cur.execute(rows_sql(t))
        check_rows(cur.fetchall(), t)
        cur.execute("SELECT CAST(? AS TEXT), generate_series FROM generate_series(1, "
                    "CAST(? AS INT))", [t, 3000])
        check_rows(cur.fetchall(), t, 3000)
        try:
            cur.execute(f"SELECT v FROM {missing(t)}")
            raise AssertionError("no error for a missing table")
        except error as e:
            check_error(up, e, missing(t))
        cur = conn.cursor()
        cur.execute("SELECT name FROM sys.cluster")
        assert [tuple(r) for r in cur.fetchall()] == [(up.cluster,)]
    finally:
        conn.close()


def check_threads(connect, error, port, up):
    def client(i):
        conn = connect(port)
        try:
            cur = conn.cursor()
            for _ in range(3):
                t = new_tag(i)
                cur.execute("SELECT CAST(? AS TEXT), generate_series FROM "
                            "generate_series(1, 500)", [t])
                check_rows(cur.fetchall(), t, 500)
        finally:
            conn.close()

    in_threads(client, CLIENTS)


CHECKS = {f.__name__: f for f in (check_parameters_rows_error, check_threads)}


# -- the tests ----------------------------------------------------------------------------------


needs_turbodbc = pytest.mark.skipif(turbodbc is None, reason=NO_TURBODBC)


def upstream(pg_target):
    from pgwire_checks import cluster_name
    return Upstream(pg_target.crate, cluster_name(pg_target))


def run_pyodbc(check, b, pg_target):
    if not os.path.exists(DRIVER_FILE):
        pytest.fail(f"{DRIVER_FILE} missing (Debian package odbc-postgresql)")
    up = upstream(pg_target)
    r = subprocess.run([DEBIAN_PYTHON, os.path.abspath(__file__), check, str(b.port),
                        json.dumps([up.crate, up.cluster])], capture_output=True, text=True,
                       timeout=50)
    if "No module named 'pyodbc'" in r.stderr:
        pytest.fail("pyodbc missing for /usr/bin/python3 (Debian package python3-pyodbc)")
    assert r.returncode == 0, f"{check} with pyodbc:\n{r.stdout}{r.stderr}"


def test_pyodbc_snippet(sidecar, pg_target):
    from conftest import run_snippet
    b = sidecar()
    out = run_snippet("pyodbc", b, python=DEBIAN_PYTHON).splitlines()
    assert out[0] == upstream(pg_target).cluster
    assert "Mont Blanc" in out[1], out


def test_pyodbc_parameters_rows_error(sidecar, pg_target):
    run_pyodbc("check_parameters_rows_error", sidecar(), pg_target)


def test_pyodbc_threads_share_a_small_pool(sidecar, pg_target):
    run_pyodbc("check_threads", sidecar(pool=2), pg_target)


@needs_turbodbc
def test_turbodbc_snippet(sidecar, pg_target):
    from conftest import run_snippet
    b = sidecar()
    out = run_snippet("turbodbc", b).splitlines()
    assert out[0] == upstream(pg_target).cluster
    assert "Mont Blanc" in out[1], out


@needs_turbodbc
def test_turbodbc_parameters_rows_error(sidecar, pg_target):
    check_parameters_rows_error(turbodbc_connect, turbodbc.Error, sidecar().port,
                                upstream(pg_target))


@needs_turbodbc
def test_turbodbc_threads_share_a_small_pool(sidecar, pg_target):
    check_threads(turbodbc_connect, turbodbc.Error, sidecar(pool=2).port, upstream(pg_target))


if __name__ == "__main__":
    # the subprocess of run_pyodbc(): CHECK PORT '[crate, cluster]', on Debian's pyodbc
    import pyodbc
    crate, cluster = json.loads(sys.argv[3])
    CHECKS[sys.argv[1]](pyodbc_connect, pyodbc.Error, int(sys.argv[2]), Upstream(crate, cluster))
