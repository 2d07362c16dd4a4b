"""psycopg2 (the release pinned in tests/requirements.txt, built on Debian's libpq) through
cratebouncer with no password and no TLS, as CrateDB's Python guide uses it: its snippet in
docs/cratedb-cloud.md, %s and %(name)s parameters (psycopg2 interpolates them on the client),
5000 rows, the upstream's error and the connection going on, and 8 threads on a pool of 2.
Autocommit throughout: psycopg2 would otherwise send BEGIN, and conn.rollback() a ROLLBACK,
which CrateDB rejects. Straight to CrateDB psycopg2 sends SET DATESTYLE TO 'ISO' at connect
(CrateDB reports `datestyle` in lower case); through cratebouncer, whose welcome reports it as
`DateStyle` too, it does not (test_crate.py checks that)."""

import psycopg2
import pytest

from conftest import run_snippet
from helpers import TIMEOUT, run_threads
from pgwire_checks import (CLIENTS, SUMMITS, check_error, check_rows, cluster_name, missing,
                           new_tag, rows_sql)


def connect(b):
    conn = psycopg2.connect(host=b.host, port=b.port, dbname="doc", user="admin",
                            sslmode="disable", connect_timeout=TIMEOUT)
    conn.autocommit = True
    return conn


def test_snippet(sidecar, pg_target):
    b = sidecar()
    out = run_snippet("psycopg2", b).splitlines()
    assert out[0] == cluster_name(pg_target)
    assert "Mont Blanc" in out[1], out


def test_parameters_rows_error(sidecar, pg_target):
    b = sidecar()
    conn = connect(b)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT %s, %s, %s, %s", ("O'Brien", 42, 1.5, None))
            assert cur.fetchone() == ("O'Brien", 42, 1.5, None)
            for name, height in SUMMITS.items():
                cur.execute("SELECT height FROM sys.summits WHERE mountain = %(m)s", {"m": name})
                assert cur.fetchall() == [(height,)]

            t = new_tag()
            cur.execute(rows_sql(t))
            check_rows(cur.fetchall(), t)
            cur.execute("SELECT %s, generate_series FROM generate_series(1, %s)", (t, 3000))
            check_rows(cur.fetchall(), t, 3000)

            with pytest.raises(psycopg2.Error) as e:
                cur.execute(f"SELECT v FROM {missing(t)}")
            check_error(pg_target, e.value, missing(t))
            assert e.value.pgcode == "42P01"
            cur.execute("SELECT name FROM sys.cluster")
            assert cur.fetchone() == (cluster_name(pg_target),)
    finally:
        conn.close()


def test_threads_share_a_small_pool(sidecar):
    b = sidecar(pool=2)

    def client(i):
        conn = connect(b)
        try:
            with conn.cursor() as cur:
                for _ in range(3):
                    t = new_tag(i)
                    cur.execute("SELECT %s, generate_series FROM generate_series(1, %s)",
                                (t, 500))
                    check_rows(cur.fetchall(), t, 500)
        finally:
            conn.close()

    run_threads(client, CLIENTS)
