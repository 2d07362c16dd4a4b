"""Polars (the release pinned in tests/requirements.txt) over pgwire through cratebouncer with no
password and no TLS, the two ways docs/cratedb-cloud.md shows: read_database_uri, which reads
with connectorx (protocol="cursor", as CrateDB needs), and read_database on a psycopg 3
connection, with psycopg's %s parameters passed in execute_options and iter_batches. Its
snippet, 5000 rows each way, the upstream's error and the connection going on, and 8 threads
(each its own connection) on a pool of 2. (Polars over sqlalchemy-cratedb, HTTP, is
test_client_polars_http.py.)"""

import polars as pl
import psycopg
import pytest

from conftest import run_snippet
from helpers import TIMEOUT
from pgwire_checks import (CLIENTS, SUMMITS, bounded, check_error, check_rows, cluster_name,
                           connectorx_threads_pool, in_threads, missing, new_tag, rows_sql)


def uri(b):
    return f"postgresql://admin@{b.host}:{b.port}/doc?sslmode=disable"


def connect(b):
    return psycopg.connect(host=b.host, port=b.port, dbname="doc", user="admin",
                           sslmode="disable", autocommit=True, connect_timeout=TIMEOUT)


def read_uri(b, query, **kw):
    return bounded(pl.read_database_uri, query, uri(b), protocol="cursor", **kw)


def frame_rows(df):
    return list(df.select("tag", "x").iter_rows())


def test_snippet(sidecar, pg_target):
    b = sidecar()
    out = run_snippet("polars", b).splitlines()
    assert out[0] == cluster_name(pg_target)
    assert out[1] == "4808", out


def test_parameters_rows_error(sidecar, pg_target):
    b = sidecar()
    t = new_tag()
    # read_database_uri (connectorx)
    check_rows(frame_rows(read_uri(b, rows_sql(t))), t)
    with pytest.raises(RuntimeError) as e:
        read_uri(b, f"SELECT v FROM {missing(t)}")
    check_error(pg_target, e.value, missing(t))
    assert read_uri(b, "SELECT name FROM sys.cluster")["name"].to_list() == \
        [cluster_name(pg_target)]

    # read_database on a psycopg connection
    with connect(b) as conn:
        for name, height in SUMMITS.items():
            df = pl.read_database("SELECT height FROM sys.summits WHERE mountain = %s", conn,
                                  execute_options={"params": [name]})
            assert df["height"].to_list() == [height]
        check_rows(frame_rows(pl.read_database(rows_sql(t), conn)), t)
        batches = list(pl.read_database("SELECT %s::text AS tag, generate_series AS x FROM "
                                        "generate_series(1, %s::int)", conn, iter_batches=True,
                                        batch_size=1000,
                                        execute_options={"params": [t, 3000]}))
        assert len(batches) == 3
        check_rows(frame_rows(pl.concat(batches)), t, 3000)
        with pytest.raises(psycopg.errors.UndefinedTable) as e:
            pl.read_database(f"SELECT v FROM {missing(t)}", conn)
        check_error(pg_target, e.value, missing(t))
        assert pl.read_database("SELECT name FROM sys.cluster", conn)["name"].to_list() == \
            [cluster_name(pg_target)]


def test_threads_share_a_small_pool(sidecar, pool_mode):
    # half the reads are connectorx's: in session mode they need a server each (see
    # pgwire_checks.connectorx_threads_pool)
    b = sidecar(pool=connectorx_threads_pool(pool_mode))

    def client(i):
        for k in range(2):
            t = new_tag(i)
            if (i + k) % 2:
                with connect(b) as conn:
                    df = pl.read_database("SELECT %s::text AS tag, generate_series AS x FROM "
                                          "generate_series(1, 600)", conn,
                                          execute_options={"params": [t]})
            else:
                df = pl.read_database_uri(rows_sql(t, 600), uri(b), protocol="cursor")
            check_rows(frame_rows(df), t, 600)

    in_threads(client, CLIENTS)


def test_psycopg_threads_on_two(sidecar):
    """read_database alone (psycopg releases the GIL while it waits): 8 threads on 2 servers in
    session mode too."""
    b = sidecar(pool=2)

    def client(i):
        with connect(b) as conn:
            for _ in range(2):
                t = new_tag(i)
                df = pl.read_database("SELECT %s::text AS tag, generate_series AS x FROM "
                                      "generate_series(1, 600)", conn,
                                      execute_options={"params": [t]})
                check_rows(frame_rows(df), t, 600)

    in_threads(client, CLIENTS)
