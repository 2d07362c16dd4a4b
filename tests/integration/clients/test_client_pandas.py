"""pandas (the release pinned in tests/requirements.txt) over pgwire through cratebouncer with
no password and no TLS, the two ways docs/cratedb-cloud.md shows: pandas.read_sql with an
SQLAlchemy 2 engine on psycopg 3 (postgresql+psycopg://), and connectorx's read_sql into a
pandas DataFrame (protocol="cursor"). Its snippet, :name parameters, 5000 rows each way, the
upstream's error and the engine going on, and 8 threads on a pool of 2. (pandas over
sqlalchemy-cratedb, HTTP, is test_client_pandas_http.py.) For SQLAlchemy's PostgreSQL dialect on
CrateDB the version workaround of test_client_records_pgwire.py applies, and
use_native_hstore=False (psycopg 3's hstore lookup at connect calls to_regtype(), which CrateDB
does not have) and skip_autocommit_rollback=True (after an error CrateDB reports the session
in a failed transaction, even in autocommit; SQLAlchemy's rollback() then makes psycopg send a
ROLLBACK, which CrateDB rejects, hiding the first error)."""

import connectorx as cx
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect

from conftest import run_snippet

# connectorx 0.4.6 builds its DataFrames with an API that pandas 3 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:make_block is deprecated")
from pgwire_checks import (CLIENTS, SUMMITS, bounded, check_error, check_rows, cluster_name,
                           connectorx_threads_pool, in_threads, missing, new_tag, rows_sql)


@pytest.fixture(autouse=True)
def crate_version(monkeypatch):
    """What the snippet does for CrateDB (harmless on PostgreSQL)."""
    monkeypatch.setattr(PGDialect, "_get_server_version_info", lambda self, conn: (14, 0))


def engine(b, **kw):
    return sa.create_engine(f"postgresql+psycopg://admin@{b.host}:{b.port}/doc?sslmode=disable",
                            isolation_level="AUTOCOMMIT", use_native_hstore=False,
                            skip_autocommit_rollback=True, **kw)


def cx_url(b):
    return f"postgresql://admin@{b.host}:{b.port}/doc?sslmode=disable"


def frame_rows(df):
    return list(df[["tag", "x"]].itertuples(index=False, name=None))


def test_snippet(sidecar, pg_target):
    b = sidecar()
    out = run_snippet("pandas", b).splitlines()
    assert out[0] == cluster_name(pg_target)
    assert out[1] == "4808", out
    assert out[2] == cluster_name(pg_target)


def test_parameters_rows_error(sidecar, pg_target):
    b = sidecar()
    e = engine(b)
    try:
        for name, height in SUMMITS.items():
            df = pd.read_sql(sa.text("SELECT height FROM sys.summits WHERE mountain = :m"), e,
                             params={"m": name})
            assert df["height"].tolist() == [height]
        t = new_tag()
        check_rows(frame_rows(pd.read_sql(sa.text(rows_sql(t)), e)), t)
        df = pd.read_sql(sa.text("SELECT CAST(:t AS TEXT) AS tag, generate_series AS x FROM "
                                 "generate_series(1, :n)"), e, params={"t": t, "n": 3000})
        check_rows(frame_rows(df), t, 3000)
        with pytest.raises(pd.errors.DatabaseError) as err:  # pandas 3 wraps SQLAlchemy's
            pd.read_sql(sa.text(f"SELECT v FROM {missing(t)}"), e)
        check_error(pg_target, err.value, missing(t))
        assert pd.read_sql(sa.text("SELECT name FROM sys.cluster"), e)["name"].tolist() == \
            [cluster_name(pg_target)]

        # through connectorx
        df = bounded(cx.read_sql, cx_url(b), rows_sql(t), protocol="cursor")
        assert isinstance(df, pd.DataFrame)
        check_rows(frame_rows(df), t)
        with pytest.raises(RuntimeError) as err:
            bounded(cx.read_sql, cx_url(b), f"SELECT v FROM {missing(t)}", protocol="cursor")
        check_error(pg_target, err.value, missing(t))
    finally:
        e.dispose()


def test_threads_share_a_small_pool(sidecar, pool_mode):
    # half the reads are connectorx's: in session mode they need a server each (see
    # pgwire_checks.connectorx_threads_pool)
    b = sidecar(pool=connectorx_threads_pool(pool_mode))
    # in session mode each pooled SQLAlchemy connection would keep its server
    e = engine(b, poolclass=sa.pool.NullPool) if pool_mode == "session" else \
        engine(b, pool_size=CLIENTS, max_overflow=0)

    def client(i):
        for k in range(2):
            t = new_tag(i)
            if (i + k) % 2:
                df = pd.read_sql(sa.text("SELECT CAST(:t AS TEXT) AS tag, generate_series AS x "
                                         "FROM generate_series(1, 600)"), e, params={"t": t})
            else:
                df = cx.read_sql(cx_url(b), rows_sql(t, 600), protocol="cursor")
            check_rows(frame_rows(df), t, 600)

    try:
        in_threads(client, CLIENTS)
    finally:
        e.dispose()
