"""Dask through sqlalchemy-cratedb (HTTP) and cratebouncer's HTTP side, as CrateDB's
documentation shows it: `dd.read_sql_table(table, "crate://127.0.0.1:4200", index_col=...)`,
`dd.read_sql_query(select, uri, ...)`, and `ddf.to_sql(..., uri=..., method=insert_bulk,
parallel=True)`. Dask makes an engine from the URI in each task and runs the partitions on
its thread pool, so several partitions share the sidecar's pool of 2 at once.

Tables are made first with plain SQL, to_sql appends to them: the stand-in's PostgreSQL
does not take the dialect's own DDL (STRING, LONG)."""

import dask
import dask.dataframe as dd
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy_cratedb.support import insert_bulk

import http_checks as hc
from conftest import run_snippet
from helpers import run_threads


def uri_for(b):
    return b.http_url.replace("http://", "crate://") + "/?schema=doc"


def execute(b, sql):
    e = sa.create_engine(uri_for(b))
    with e.connect() as conn:
        conn.execute(sa.text(sql))
    e.dispose()


def rows_query(tag, n):
    """The tagged rows as a Selectable, as read_sql_query wants it (it adds its own WHERE on
    index_col per partition, naming the column: so x stays generate_series, unlabelled).
    The bounds are literals: the stand-in's PostgreSQL finds generate_series(smallint,
    smallint) ambiguous."""
    return (sa.select(sa.literal(tag).label("tag"), sa.column("generate_series"))
            .select_from(sa.text(f"generate_series(1, {int(n)})")))


def test_guide_snippet(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    out = run_snippet("dask-http", b)
    assert out.splitlines() == [f"{m} {h}" for m, h in hc.TOP2]


def test_parameters(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    q = (sa.select(sa.column("mountain"), sa.column("height"))
         .select_from(sa.table("summits", schema="sys"))
         .where(sa.column("height") > sa.bindparam("h", 4600)))
    df = dd.read_sql_query(q, uri_for(b), index_col="height", npartitions=2).compute()
    got = sorted(((m, h) for h, m in df["mountain"].items()), key=lambda r: -r[1])
    assert got == hc.TOP2
    tag = hc.new_tag()
    df = dd.read_sql_query(rows_query(tag, 20), uri_for(b), index_col="generate_series",
                           npartitions=3).compute()
    hc.check_rows(zip(df["tag"], df.index), tag, 20)


def test_thousands_of_rows_to_sql_and_read_sql_table(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    tag, name = hc.new_tag(), hc.table_name("dk_rows")
    execute(b, f"CREATE TABLE doc.{name} (tag TEXT, x INTEGER)")
    try:
        pdf = pd.DataFrame({"tag": [tag] * hc.ROWS, "x": range(1, hc.ROWS + 1)})
        ddf = dd.from_pandas(pdf, npartitions=4)
        # four partitions written at once, each in chunks of 500 (a bulk request each)
        ddf.to_sql(name, uri=uri_for(b), schema="doc", if_exists="append", index=False,
                   chunksize=500, parallel=True, method=insert_bulk)
        if hc.refresh_sql(b.target, f"doc.{name}"):
            execute(b, hc.refresh_sql(b.target, f"doc.{name}"))
        # eight partitions read at once on Dask's threads: eight range queries
        back = dd.read_sql_table(name, uri_for(b), index_col="x", schema="doc",
                                 npartitions=8)
        assert back.npartitions == 8
        df = back.compute()
        hc.check_rows(zip(df["tag"], df.index), tag)
        tag = hc.new_tag()
        df = dd.read_sql_query(rows_query(tag, hc.ROWS), uri_for(b),
                               index_col="generate_series", npartitions=5).compute()
        hc.check_rows(zip(df["tag"], df.index), tag)
    finally:
        execute(b, f"DROP TABLE IF EXISTS doc.{name}")


def test_error_has_the_upstreams_message_then_works(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    table = hc.missing(hc.new_tag())
    q = sa.select(sa.column("x")).select_from(sa.table(table))
    # read_sql_query reads the first rows (head_rows) to learn the columns at once; pandas 3
    # wraps the driver's error in its DatabaseError
    with pytest.raises(pd.errors.DatabaseError) as ei:
        dd.read_sql_query(q, uri_for(b), index_col="x", npartitions=2)
    hc.check_error(ei.value, table)
    # read_sql_table reflects the table first: SQLAlchemy's own error, from the
    # information_schema query the upstream answered
    with pytest.raises(sa.exc.NoSuchTableError):
        dd.read_sql_table(table, uri_for(b), index_col="x", npartitions=2)
    tag = hc.new_tag()
    df = dd.read_sql_query(rows_query(tag, 10), uri_for(b), index_col="generate_series",
                           npartitions=2).compute()
    hc.check_rows(zip(df["tag"], df.index), tag, 10)


def test_threads_each_computing_their_own_query(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)

    def client(i):
        # one query each: already four requests (head rows, min/max, and two partitions run
        # at once, each on an engine of its own: a crate-python connect, GET /, per task)
        tag = hc.new_tag(i)
        df = dd.read_sql_query(rows_query(tag, hc.CLIENT_ROWS), uri_for(b),
                               index_col="generate_series", npartitions=2).compute()
        hc.check_rows(zip(df["tag"], df.index), tag, hc.CLIENT_ROWS)
        return i

    with dask.config.set(scheduler="threads"):
        assert run_threads(client, hc.CLIENTS, timeout=90) == list(range(hc.CLIENTS))
