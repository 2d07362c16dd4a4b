"""pandas through sqlalchemy-cratedb (HTTP) and cratebouncer's HTTP side, as CrateDB's
documentation shows it: `pd.read_sql()` on a `crate://127.0.0.1:4200` engine, and
`DataFrame.to_sql(..., method=insert_bulk)` (sqlalchemy_cratedb.support), which sends each
chunk as one `/_sql` request with `bulk_args`.

On the stand-in the tables are made first with plain SQL and to_sql appends: the DDL that
to_sql has the dialect generate says STRING and LONG, which the stand-in's PostgreSQL does
not know. The real CrateDB also runs to_sql(if_exists="replace"), the documentation's form."""

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy_cratedb.support import insert_bulk

import http_checks as hc
from conftest import run_snippet
from helpers import run_threads


def engine_for(b, **kw):
    return sa.create_engine(b.http_url.replace("http://", "crate://") + "/?schema=doc", **kw)


def refresh(engine, target, table):
    if hc.refresh_sql(target, table):
        with engine.connect() as conn:
            conn.execute(sa.text(hc.refresh_sql(target, table)))


def drop(engine, table):
    with engine.connect() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


def test_guide_snippet(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b)
    drop(e, "doc.summits_copy")
    try:
        out = run_snippet("pandas-http", b)
        lines = out.split()
        assert lines[:2] == ["mountain", "height"], out
        assert "Mont Blanc" in out and "4808" in out and "Monte Rosa" in out, out
        refresh(e, b.target, "doc.summits_copy")
        got = pd.read_sql(sa.text("SELECT mountain, height FROM doc.summits_copy "
                                  "ORDER BY height DESC"), e)
        assert list(got.itertuples(index=False, name=None)) == hc.TOP2
    finally:
        drop(e, "doc.summits_copy")
        e.dispose()


def test_read_sql_with_parameters(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b)
    df = pd.read_sql(sa.text("SELECT mountain, height FROM sys.summits WHERE height > :h "
                             "ORDER BY height DESC"), e, params={"h": 4600})
    assert list(df.columns) == ["mountain", "height"]
    assert list(df.itertuples(index=False, name=None)) == hc.TOP2
    df = pd.read_sql_query(sa.text("SELECT :t AS tag, generate_series AS x "
                                   "FROM generate_series(1, :n)"), e,
                           params={"t": "p", "n": 7}, index_col="x")
    assert list(df.index) == list(range(1, 8)) and set(df["tag"]) == {"p"}
    e.dispose()


def test_thousands_of_rows_both_ways(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b)
    tag, name = hc.new_tag(), hc.table_name("pd_rows")
    df = pd.read_sql(sa.text(hc.rows_sql(tag)), e)
    hc.check_rows(df.itertuples(index=False, name=None), tag)
    with e.connect() as conn:
        conn.execute(sa.text(f"CREATE TABLE doc.{name} (tag TEXT, x INTEGER)"))
    try:
        # 5000 rows in chunks of 1000: five bulk requests
        df.to_sql(name, e, schema="doc", if_exists="append", index=False, chunksize=1000,
                  method=insert_bulk)
        refresh(e, b.target, f"doc.{name}")
        back = pd.read_sql(sa.text(f"SELECT tag, x FROM doc.{name}"), e)
        hc.check_rows(back.itertuples(index=False, name=None), tag)
    finally:
        drop(e, f"doc.{name}")
        e.dispose()


def test_to_sql_replace_with_the_dialects_ddl(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    if b.target.kind == "standin":
        pytest.skip("the stand-in is PostgreSQL underneath: the DDL sqlalchemy-cratedb "
                    "generates for to_sql (STRING, LONG) is CrateDB's only")
    e = engine_for(b)
    tag, name = hc.new_tag(), hc.table_name("pd_replace")
    df = pd.DataFrame({"tag": [tag] * hc.ROWS, "x": range(1, hc.ROWS + 1)})
    try:
        for _ in range(2):  # create, then drop and create again
            df.to_sql(name, e, if_exists="replace", index=False, chunksize=2500,
                      method=insert_bulk)
        refresh(e, b.target, name)
        hc.check_rows(pd.read_sql(sa.text(f"SELECT tag, x FROM {name}"), e)
                      .itertuples(index=False, name=None), tag)
    finally:
        drop(e, name)
        e.dispose()


def test_error_has_the_upstreams_message_then_works(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b, pool_size=1, max_overflow=0)  # one DB-API connection, before and after
    table = hc.missing(hc.new_tag())
    # pandas 3 wraps the driver's error in its DatabaseError ("Execution failed on sql ...")
    for sql, params in ((f"SELECT * FROM {table}", None),
                        (f"SELECT x FROM {table} WHERE x > :x", {"x": 1})):
        with pytest.raises(pd.errors.DatabaseError) as ei:
            pd.read_sql(sa.text(sql), e, params=params)
        assert isinstance(ei.value.__cause__, sa.exc.ProgrammingError)
        hc.check_error(ei.value, table)
    assert pd.read_sql(sa.text("SELECT name FROM sys.cluster"), e)["name"].tolist() == \
        [hc.cluster_name(b.target)]
    e.dispose()


def test_threads_share_one_engine(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b, pool_size=hc.CLIENTS, max_overflow=0)

    def client(i):
        for _ in range(hc.ROUNDS):
            tag = hc.new_tag(i)
            df = pd.read_sql(sa.text("SELECT :t AS tag, generate_series AS x "
                                     "FROM generate_series(1, :n)"), e,
                             params={"t": tag, "n": hc.CLIENT_ROWS})
            hc.check_rows(df.itertuples(index=False, name=None), tag, hc.CLIENT_ROWS)
        return i

    assert run_threads(client, hc.CLIENTS) == list(range(hc.CLIENTS))
    e.dispose()
