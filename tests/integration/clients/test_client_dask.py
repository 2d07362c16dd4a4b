"""Dask (the release pinned in tests/requirements.txt) over pgwire through cratebouncer with no
password and no TLS: dask.dataframe.read_sql_query and read_sql_table with an SQLAlchemy URI on
psycopg 3 (postgresql+psycopg://), each partition read on a connection of its own. Its snippet in
docs/cratedb-cloud.md, values bound into the SQLAlchemy query, 5000 rows in partitions, the
upstream's error and the next read going on, and 8 partitions read by 8 threads at once, plus 8
threads each with its own tagged read, on a pool of 2. (Dask over sqlalchemy-cratedb, HTTP, is
test_client_dask_http.py.) For SQLAlchemy's PostgreSQL dialect on CrateDB the version
workaround of test_client_records_pgwire.py applies.

read_sql_table reflects the table through the PostgreSQL dialect's queries of pg_catalog; where
the upstream cannot answer them (a real CrateDB may not), the test says so, after trying the
same straight to the upstream."""

import gc

import dask
import dask.dataframe as dd
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect

from conftest import run_snippet
from pgwire_checks import CLIENTS, check_error, in_threads, missing, new_tag

TABLE = "cb_client_dask"
ROWS = 5000
# use_native_hstore=False: psycopg 3's hstore lookup at connect calls to_regtype(), which CrateDB
# does not have; skip_autocommit_rollback=True: after an error CrateDB reports a failed
# transaction even in autocommit, and the ROLLBACK that psycopg would send for SQLAlchemy's
# rollback() is a syntax error on CrateDB, which hides the first error
ENGINE_KW = {"isolation_level": "AUTOCOMMIT", "use_native_hstore": False,
             "skip_autocommit_rollback": True}
# pandas 3, which reads each partition, wraps SQLAlchemy's errors in its DatabaseError
DB_ERRORS = (sa.exc.DBAPIError, pd.errors.DatabaseError)


@pytest.fixture(autouse=True)
def crate_version(monkeypatch):
    """What the snippet does for CrateDB (harmless on PostgreSQL)."""
    monkeypatch.setattr(PGDialect, "_get_server_version_info", lambda self, conn: (14, 0))


def uri(b):
    return f"postgresql+psycopg://admin@{b.host}:{b.port}/doc?sslmode=disable"


@pytest.fixture
def table(pg_target):
    """doc.cb_client_dask (id int, v text): ids 1..5000, v the tag."""
    t = new_tag()
    pg_target.id_table(TABLE, ROWS, t)
    return t


def check_frame(df, tag, n=ROWS):
    """A computed frame indexed by id, with column v: ids 1..n once each, all v == tag."""
    assert sorted(df.index.tolist()) == list(range(1, n + 1)), "ids missing or twice"
    assert set(df["v"]) == {tag}, f"rows of another read reached {tag}"


def query(*cols):
    # schema-qualified: PostgreSQL's sessions do not start in schema doc as CrateDB's do
    return sa.select(*cols).select_from(sa.table(TABLE, schema="doc"))


def test_snippet(sidecar):
    b = sidecar()
    out = run_snippet("dask", b).splitlines()
    assert out[0].startswith("2 ") and "4808" in out[0], out
    assert "Mont Blanc" in out[1] and "Monte Rosa" in out[1], out


def test_query_parameters_rows_error(sidecar, pg_target, table):
    b = sidecar()
    ddf = dd.read_sql_query(query(sa.column("id"), sa.column("v")), uri(b), index_col="id",
                            npartitions=4, engine_kwargs=ENGINE_KW)
    assert ddf.npartitions == 4
    check_frame(ddf.compute(), table)
    # values bound into the query (SQLAlchemy sends them as the driver's parameters)
    q = query(sa.column("id"), sa.column("v")).where(
        sa.column("v") == sa.bindparam("tag", table)).where(sa.column("id") <= 3000)
    check_frame(dd.read_sql_query(q, uri(b), index_col="id", npartitions=3,
                                  engine_kwargs=ENGINE_KW).compute(), table, 3000)
    q = query(sa.column("id"), sa.column("v")).where(sa.column("v") == "another tag")
    assert len(dd.read_sql_query(q, uri(b), index_col="id", limits=(1, ROWS), npartitions=2,
                                 engine_kwargs=ENGINE_KW).compute()) == 0

    t = new_tag()
    bad = sa.select(sa.column("id"), sa.column("v")).select_from(sa.table(missing(t)))
    with pytest.raises(DB_ERRORS) as e:
        dd.read_sql_query(bad, uri(b), index_col="id", engine_kwargs=ENGINE_KW).compute()
    check_error(pg_target, e.value, missing(t))
    # dask does not dispose of the engine of a read that failed: its connection stays open
    # until the garbage collector finds the engine
    del e
    gc.collect()
    check_frame(dd.read_sql_query(query(sa.column("id"), sa.column("v")), uri(b),
                                  index_col="id", npartitions=2,
                                  engine_kwargs=ENGINE_KW).compute(), table)


def test_read_sql_table(sidecar, pg_target, table):
    b = sidecar()
    try:
        ddf = dd.read_sql_table(TABLE, uri(b), index_col="id", npartitions=4, schema="doc",
                                engine_kwargs=ENGINE_KW)
    except DB_ERRORS as through:
        if pg_target.kind != "cratedb":
            raise
        failed = str(through)
    else:
        check_frame(ddf.compute(), table)
        return
    direct = (f"postgresql+psycopg://{pg_target.user}:{pg_target.password}@"
              f"{pg_target.host}:{pg_target.port}/doc?sslmode=verify-full&"
              f"sslrootcert={pg_target.ca}")
    try:
        dd.read_sql_table(TABLE, direct, index_col="id", schema="doc", engine_kwargs=ENGINE_KW)
    except DB_ERRORS as e:
        reason = str(e).splitlines()[0]
    else:
        raise AssertionError(f"read_sql_table works directly but not through the sidecar: "
                             f"{failed}")
    gc.collect()  # the failed reads' engines (see above), before the sidecar stops
    pytest.xfail("read_sql_table's reflection (SQLAlchemy's PostgreSQL dialect reading "
                 f"pg_catalog) fails on CrateDB directly too: {reason}")


def test_threads_share_a_small_pool(sidecar, table):
    b = sidecar(pool=2)
    # one read in 8 partitions, read by 8 threads at once (each its own engine and connection)
    ddf = dd.read_sql_query(query(sa.column("id"), sa.column("v")), uri(b), index_col="id",
                            npartitions=CLIENTS, engine_kwargs=ENGINE_KW)
    with dask.config.set(scheduler="threads", num_workers=CLIENTS):
        check_frame(ddf.compute(), table)

    # 8 threads of the application, each reading the table under its own tag
    def client(i):
        t = new_tag(i)
        q = query(sa.column("id"), sa.literal(t, sa.Text).label("v"))
        df = dd.read_sql_query(q, uri(b), index_col="id", npartitions=2,
                               engine_kwargs=ENGINE_KW).compute(scheduler="sync")
        check_frame(df, t)

    in_threads(client, CLIENTS)
