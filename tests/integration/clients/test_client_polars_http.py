"""Polars through sqlalchemy-cratedb (HTTP) and cratebouncer's HTTP side, as CrateDB's
examples show it: `pl.read_database(query, connection=engine)` with a `crate://127.0.0.1:4200`
engine; bound parameters through `execute_options`; batches; `write_database` (its
SQLAlchemy engine, pandas' to_sql underneath, appending to a table made first: the
stand-in's PostgreSQL does not take the dialect's STRING/LONG DDL); threads sharing one
engine over a sidecar pool of 2."""

import polars as pl
import pytest
import sqlalchemy as sa

import http_checks as hc
from conftest import run_snippet
from helpers import run_threads


def engine_for(b, **kw):
    return sa.create_engine(b.http_url.replace("http://", "crate://") + "/?schema=doc", **kw)


def test_guide_snippet(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    out = run_snippet("polars-http", b)
    assert out.splitlines() == [f"{m} {h}" for m, h in hc.TOP2]


def test_parameters(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b)
    df = pl.read_database("SELECT name FROM sys.cluster", e)
    assert df["name"].to_list() == [hc.cluster_name(b.target)]
    df = pl.read_database(sa.text("SELECT :t AS tag, generate_series AS x "
                                  "FROM generate_series(1, :n)"), e,
                          execute_options={"parameters": {"t": "it's :n", "n": 5}})
    assert df.rows() == [("it's :n", x) for x in range(1, 6)]
    q = (sa.select(sa.column("mountain"), sa.column("height"))
         .select_from(sa.table("summits", schema="sys"))
         .where(sa.column("height") > sa.bindparam("h")).order_by(sa.column("height").desc()))
    df = pl.read_database(q, e, execute_options={"parameters": {"h": 4600}})
    assert df.rows() == hc.TOP2
    e.dispose()


def test_thousands_of_rows_and_batches(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b)
    tag, name = hc.new_tag(), hc.table_name("pl_rows")
    df = pl.read_database(hc.rows_sql(tag), e)
    assert df.columns == ["tag", "x"] and df.schema["x"].is_integer()
    hc.check_rows(df.rows(), tag)
    batches = list(pl.read_database(hc.rows_sql(tag), e, iter_batches=True, batch_size=1000))
    assert [len(x) for x in batches] == [1000] * (hc.ROWS // 1000)
    hc.check_rows(pl.concat(batches).rows(), tag)
    with e.connect() as conn:
        conn.execute(sa.text(f"CREATE TABLE doc.{name} (tag TEXT, x INTEGER)"))
    try:
        df.write_database(f"doc.{name}", e, if_table_exists="append")  # rowcount: -1
        if hc.refresh_sql(b.target, f"doc.{name}"):
            with e.connect() as conn:
                conn.execute(sa.text(hc.refresh_sql(b.target, f"doc.{name}")))
        hc.check_rows(pl.read_database(f"SELECT tag, x FROM doc.{name}", e).rows(), tag)
    finally:
        with e.connect() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS doc.{name}"))
        e.dispose()


def test_error_has_the_upstreams_message_then_works(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b, pool_size=1, max_overflow=0)
    table = hc.missing(hc.new_tag())
    with pytest.raises(sa.exc.ProgrammingError) as ei:
        pl.read_database(f"SELECT * FROM {table}", e)
    hc.check_error(ei.value, table)
    assert pl.read_database("SELECT name FROM sys.cluster", e)["name"].to_list() == \
        [hc.cluster_name(b.target)]
    e.dispose()


def test_threads_share_one_engine(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b, pool_size=hc.CLIENTS, max_overflow=0)

    def client(i):
        for _ in range(hc.ROUNDS):
            tag = hc.new_tag(i)
            df = pl.read_database(sa.text("SELECT :t AS tag, generate_series AS x "
                                          "FROM generate_series(1, :n)"), e,
                                  execute_options={"parameters": {"t": tag,
                                                                  "n": hc.CLIENT_ROWS}})
            hc.check_rows(df.rows(), tag, hc.CLIENT_ROWS)
        return i

    assert run_threads(client, hc.CLIENTS) == list(range(hc.CLIENTS))
    e.dispose()
