"""records (the release pinned in tests/requirements.txt, on SQLAlchemy 2) over SQLAlchemy's
PostgreSQL dialect with psycopg2 (postgresql+psycopg2://), through cratebouncer with no password
and no TLS: its snippet and the SQLAlchemy one in docs/cratedb-cloud.md, :name parameters, 5000
rows, the upstream's error and the Database going on, and 8 threads on a pool of 2. (records
with a crate:// URL is CrateDB's HTTP dialect: the HTTP clients' files test that.)

SQLAlchemy's PostgreSQL dialect reads `SELECT pg_catalog.version()` when it first connects and
cannot parse CrateDB's answer ("CrateDB 6.x ..."), directly or through a sidecar: the docs'
snippets, and these tests, set the server version to CrateDB's server_version, 14.0.
isolation_level="AUTOCOMMIT" keeps SQLAlchemy from sending BEGIN and the ROLLBACK that CrateDB
rejects when a connection goes back to its pool, and use_native_hstore=False keeps the psycopg2
dialect from its hstore lookup at connect, which ends with a ROLLBACK too.

records 0.6.0 on SQLAlchemy 2: Database.query() leaves its connection checked out of the
engine's pool until Python's cyclic garbage collector runs (so, in session mode, its server
connection too); `with db.get_connection() as conn: conn.query(...)` returns it at once, and
is what these tests and the snippet use."""

import pytest
import records
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect

from conftest import run_snippet
from pgwire_checks import (CLIENTS, SUMMITS, check_error, check_rows, cluster_name, in_threads,
                           missing, new_tag, rows_sql)


@pytest.fixture(autouse=True)
def crate_version(monkeypatch):
    """What the snippets do for CrateDB (harmless on PostgreSQL)."""
    monkeypatch.setattr(PGDialect, "_get_server_version_info", lambda self, conn: (14, 0))


def url(b):
    return f"postgresql+psycopg2://admin@{b.host}:{b.port}/doc?sslmode=disable"


def database(b, **kw):
    return records.Database(url(b), isolation_level="AUTOCOMMIT", use_native_hstore=False, **kw)


def test_snippet(sidecar, pg_target):
    b = sidecar()
    out = run_snippet("records-pgwire", b).splitlines()
    assert out[0] == cluster_name(pg_target)
    assert '"mountain": "Mont Blanc"' in out[1], out


def test_sqlalchemy_snippet(sidecar, pg_target):
    b = sidecar()
    out = run_snippet("sqlalchemy-pg", b).splitlines()
    assert out == [cluster_name(pg_target), "4808"]


def test_parameters_rows_error(sidecar, pg_target):
    b = sidecar()
    with database(b) as db, db.get_connection() as conn:
        for name, height in SUMMITS.items():
            assert conn.query("SELECT height FROM sys.summits WHERE mountain = :m",
                              m=name).scalar() == height
        row = conn.query("SELECT CAST(:s AS TEXT) AS s, CAST(:n AS INT) AS n", s="O'Brien",
                         n=42).one()
        assert (row.s, row["n"]) == ("O'Brien", 42)

        t = new_tag()
        rows = conn.query(rows_sql(t), fetchall=True)
        check_rows([(r.tag, r.x) for r in rows], t)
        rows = conn.query("SELECT CAST(:t AS TEXT) AS tag, generate_series AS x FROM "
                          "generate_series(1, :n)", t=t, n=3000).all()
        check_rows([(r.tag, r.x) for r in rows], t, 3000)

        with pytest.raises(sa.exc.ProgrammingError) as e:
            conn.query(f"SELECT v FROM {missing(t)}")
        check_error(pg_target, e.value, missing(t))
        assert conn.query("SELECT name FROM sys.cluster").scalar() == cluster_name(pg_target)
        assert db._engine.pool.checkedout() == 1


def test_threads_share_a_small_pool(sidecar, pool_mode):
    b = sidecar(pool=2)
    if pool_mode == "session":
        # each pooled SQLAlchemy connection would keep its server: no pool on the client
        db = database(b, poolclass=sa.pool.NullPool)
    else:
        db = database(b, pool_size=CLIENTS, max_overflow=0)

    def client(i):
        for _ in range(3):
            t = new_tag(i)
            with db.get_connection() as conn:
                rows = conn.query("SELECT CAST(:t AS TEXT) AS tag, generate_series AS x FROM "
                                  "generate_series(1, 500)", t=t).all()
            check_rows([(r.tag, r.x) for r in rows], t, 500)

    try:
        in_threads(client, CLIENTS)
    finally:
        db.close()


def test_dialect_without_the_workaround(pg_target, sidecar, monkeypatch):
    """Why the snippets set the version: on CrateDB the dialect fails at its first connect,
    straight to CrateDB as through the sidecar."""
    monkeypatch.undo()
    if pg_target.kind != "cratedb":
        pytest.skip("only a real CrateDB answers version() with \"CrateDB ...\"")
    b = sidecar()
    direct = (f"postgresql+psycopg2://{pg_target.user}:{pg_target.password}@{pg_target.host}:"
              f"{pg_target.port}/doc?sslmode=verify-full&sslrootcert={pg_target.ca}")
    for u in (direct, url(b)):
        engine = sa.create_engine(u, isolation_level="AUTOCOMMIT", use_native_hstore=False)
        try:
            with pytest.raises(AssertionError, match="Could not determine version from string "
                               "'CrateDB"):
                with engine.connect():
                    pass
        finally:
            engine.dispose()
