"""psycopg 3 (the release pinned in tests/requirements.txt) through cratebouncer with no password
and no TLS, in both of its implementations: psycopg-binary (the C one, in this process) and the
pure-Python one over the system's libpq (PSYCOPG_IMPL=python, in a subprocess: this file runs
itself as a script there). Its snippet in docs/cratedb-cloud.md; server-side %s and %(name)s
parameters; 5000 rows; the upstream's error and the connection going on; the named statements
psycopg prepares after prepare_threshold (5) executions of a query, prepare_threshold=0 and
None; pipeline mode, with an error inside a pipeline; and 8 threads on a pool of 2, each
running its prepared query often enough that in transaction mode the statement has to follow
the client from server to server (where PgBouncer 1.18 fails with DuplicatePreparedStatement).
Autocommit throughout: CrateDB has no transactions."""

import json
import os
import subprocess
import sys

import psycopg

from pgwire_checks import (CLIENTS, SUMMITS, check_error, check_rows, in_threads, missing,
                           new_tag, rows_sql)

IMPLS = ["binary", "python"]


class Upstream:
    """What the checks need to know of the target (also in the subprocess)."""

    def __init__(self, crate, cluster):
        self.crate, self.cluster = crate, cluster


def connect(port, **kw):
    return psycopg.connect(host="127.0.0.1", port=port, dbname="doc", user="admin",
                           sslmode="disable", autocommit=True, connect_timeout=10, **kw)


def prepared_names(conn):
    # psycopg's own record of what it has prepared on this connection (PrepareManager)
    return list(conn._prepared._names.values())


# -- the checks, each run under one implementation ---------------------------------------------


def check_parameters_rows_error(port, up):
    with connect(port) as conn:
        row = conn.execute("SELECT %s::text, %s::int, %s::double precision, %s::text",
                           ("O'Brien", 42, 1.5, None)).fetchone()
        assert row == ("O'Brien", 42, 1.5, None), row
        for name, height in SUMMITS.items():
            got = conn.execute("SELECT height FROM sys.summits WHERE mountain = %(m)s",
                               {"m": name}).fetchall()
            assert got == [(height,)], got
        t = new_tag()
        check_rows(conn.execute(rows_sql(t)).fetchall(), t)
        with conn.cursor() as cur:
            cur.execute("SELECT %s::text, generate_series FROM generate_series(1, %s::int)",
                        (t, 3000))
            check_rows(list(cur), t, 3000)
        try:
            conn.execute(f"SELECT v FROM {missing(t)}")
            raise AssertionError("no error for a missing table")
        except psycopg.errors.UndefinedTable as e:
            check_error(up, e, missing(t))
        assert conn.execute("SELECT name FROM sys.cluster").fetchone() == (up.cluster,)


def check_prepared(port, up):
    # the default: prepared (a named statement) from the 5th execution on
    with connect(port) as conn:
        assert conn.prepare_threshold == 5
        for k in range(8):
            t = new_tag(k)
            rows = conn.execute("SELECT %s::text, generate_series FROM generate_series(1, %s::int)",
                                (t, 200 + k)).fetchall()
            check_rows(rows, t, 200 + k)
            assert len(prepared_names(conn)) == (1 if k >= 5 else 0), (k, prepared_names(conn))
        # an error in a prepared statement's execution, then the statement again
        q = "SELECT 10 / %s::int"
        for k in range(6):
            assert conn.execute(q, (k + 1,)).fetchone() == (10 // (k + 1),)
        try:
            conn.execute(q, (0,))
            raise AssertionError("no error for a division by zero")
        except psycopg.Error:
            pass
        assert conn.execute(q, (5,)).fetchone() == (2,)
        assert conn.execute("SELECT name FROM sys.cluster").fetchone() == (up.cluster,)
    # prepare_threshold=0: every statement prepared at once; None: never
    with connect(port, prepare_threshold=0) as conn:
        for k in range(3):
            t = new_tag(k)
            check_rows(conn.execute("SELECT %s::text, generate_series FROM "
                                    "generate_series(1, 300)", (t,)).fetchall(), t, 300)
        assert len(prepared_names(conn)) == 1
        assert conn.execute("SELECT height FROM sys.summits WHERE mountain = %s",
                            ("Mont Blanc",), prepare=True).fetchone() == (4808,)
    with connect(port, prepare_threshold=None) as conn:
        for k in range(7):
            assert conn.execute("SELECT %s::int + 1", (k,)).fetchone() == (k + 1,)
        assert prepared_names(conn) == []


def check_pipeline(port, up):
    with connect(port) as conn:
        t = new_tag()
        with conn.pipeline():
            c1 = conn.execute("SELECT name FROM sys.cluster")
            c2 = conn.execute("SELECT height FROM sys.summits WHERE mountain = %s",
                              ("Monte Rosa",))
            c3 = conn.execute(rows_sql(t, 2000))
        assert c1.fetchone() == (up.cluster,)
        assert c2.fetchone() == (4634,)
        check_rows(c3.fetchall(), t, 2000)
        # one statement per sync, fetched as they come
        with conn.pipeline() as p:
            curs = [conn.execute("SELECT %s::int * 2", (k,)) for k in range(10)]
            p.sync()
            assert [c.fetchone()[0] for c in curs] == [k * 2 for k in range(10)]
        # an error aborts the rest of the pipeline up to its sync, and the connection goes on
        try:
            with conn.pipeline():
                conn.execute("SELECT 1")
                conn.execute(f"SELECT v FROM {missing(t)}")
                conn.execute("SELECT 2")
            raise AssertionError("no error in the pipeline")
        except psycopg.errors.UndefinedTable as e:
            check_error(up, e, missing(t))
        assert conn.execute("SELECT name FROM sys.cluster").fetchone() == (up.cluster,)


def check_threads(port, up):
    def client(i):
        with connect(port) as conn:
            for k in range(8):  # prepared from the 6th on
                t = new_tag(i)
                rows = conn.execute("SELECT %s::text, generate_series FROM generate_series(1, "
                                    "%s::int)", (t, 300)).fetchall()
                check_rows(rows, t, 300)
            assert len(prepared_names(conn)) == 1
            with conn.pipeline():
                cs = [conn.execute("SELECT %s::text, %s::int", (f"{i}-{k}", k))
                      for k in range(5)]
            assert [c.fetchone() for c in cs] == [(f"{i}-{k}", k) for k in range(5)]

    in_threads(client, CLIENTS)


CHECKS = {f.__name__: f for f in (check_parameters_rows_error, check_prepared, check_pipeline,
                                  check_threads)}


# -- the tests ----------------------------------------------------------------------------------


def run(check, impl, b, pg_target):
    from pgwire_checks import cluster_name
    up = Upstream(pg_target.crate, cluster_name(pg_target))
    if impl == "binary":
        assert psycopg.pq.__impl__ == "binary"
        return CHECKS[check](b.port, up)
    env = dict(os.environ, PSYCOPG_IMPL="python")
    r = subprocess.run([sys.executable, os.path.abspath(__file__), check, str(b.port),
                        json.dumps([up.crate, up.cluster])], env=env, capture_output=True,
                       text=True, timeout=50)
    assert r.returncode == 0, f"{check} under PSYCOPG_IMPL=python:\n{r.stdout}{r.stderr}"
    assert r.stdout.strip() == "python", r.stdout


def pytest_generate_tests(metafunc):
    if "impl" in metafunc.fixturenames:
        metafunc.parametrize("impl", IMPLS)


def test_snippet(sidecar, pg_target, impl):
    from conftest import run_snippet
    from pgwire_checks import cluster_name
    b = sidecar()
    env = {"PSYCOPG_IMPL": impl}
    out = run_snippet("psycopg", b, env=env).splitlines()
    assert out[0] == cluster_name(pg_target)
    assert "Mont Blanc" in out[1], out


def test_parameters_rows_error(sidecar, pg_target, impl):
    run("check_parameters_rows_error", impl, sidecar(), pg_target)


def test_prepared_statements(sidecar, pg_target, impl):
    run("check_prepared", impl, sidecar(), pg_target)


def test_pipeline(sidecar, pg_target, impl):
    run("check_pipeline", impl, sidecar(), pg_target)


def test_threads_share_a_small_pool(sidecar, pg_target, impl):
    run("check_threads", impl, sidecar(pool=2), pg_target)


if __name__ == "__main__":
    # the subprocess of run(): CHECK PORT '[crate, cluster]', under PSYCOPG_IMPL=python
    crate, cluster = json.loads(sys.argv[3])
    CHECKS[sys.argv[1]](int(sys.argv[2]), Upstream(crate, cluster))
    print(psycopg.pq.__impl__)
