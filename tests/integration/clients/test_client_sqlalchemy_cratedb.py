"""sqlalchemy-cratedb (CrateDB's SQLAlchemy dialect, on crate-python, so HTTP) with
SQLAlchemy 2 through cratebouncer's HTTP side: `crate://127.0.0.1:4200` (plain HTTP: no
`sslmode`/`ssl` option, no credentials). Bound parameters, Core inserts (executemany, sent as
one multi-row INSERT), an engine shared by threads whose SQLAlchemy pool
is larger than the sidecar's (2).

Tables are made with plain `CREATE TABLE ... (INTEGER, TEXT)`: the dialect's own DDL says
STRING and LONG, which CrateDB takes and the stand-in's PostgreSQL does not."""

import pytest
import sqlalchemy as sa

import http_checks as hc
from conftest import run_snippet
from helpers import run_threads


def engine_for(b, **kw):
    return sa.create_engine(b.http_url.replace("http://", "crate://") + "/?schema=doc", **kw)


def test_guide_snippet(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    out = run_snippet("sqlalchemy-cratedb", b)
    want = [hc.cluster_name(b.target)] + [f"{m} {h}" for m, h in hc.TOP2]
    assert out.splitlines() == want


def test_url_is_plain_http(http_sidecar):
    """The dialect turns crate://host:port into crate-python's server "host:port", which it
    speaks plain HTTP to; sslmode=disable says the same."""
    b = http_sidecar(pool_size=hc.POOL)
    for url in (f"crate://127.0.0.1:{b.http_port}",
                f"crate://127.0.0.1:{b.http_port}/?sslmode=disable"):
        e = sa.create_engine(url)
        with e.connect() as conn:
            assert conn.connection.dbapi_connection.client.active_servers == \
                [f"http://127.0.0.1:{b.http_port}"]
            assert conn.execute(sa.text("SELECT name FROM sys.cluster")).scalar() == \
                hc.cluster_name(b.target)
        e.dispose()


def test_bound_parameters_and_core(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b)
    tag, name = hc.new_tag(), hc.table_name("sa_core")
    md = sa.MetaData()
    t = sa.Table(name, md, sa.Column("id", sa.Integer), sa.Column("v", sa.String),
                 schema="doc")
    with e.connect() as conn:
        r = conn.execute(sa.text("SELECT mountain, height FROM sys.summits "
                                 "WHERE height > :h ORDER BY height DESC"), {"h": 4600})
        assert [tuple(x) for x in r] == hc.TOP2
        r = conn.execute(sa.text("SELECT :a AS a, :b AS b"), {"a": "it's ?:b", "b": 7})
        assert tuple(r.one()) == ("it's ?:b", 7)
        conn.execute(sa.text(f"CREATE TABLE doc.{name} (id INTEGER, v TEXT)"))
        try:
            # executemany: SQLAlchemy 2's "insertmanyvalues" (the dialect enables it) sends
            # one multi-row INSERT ... VALUES (?, ?), (?, ?), ...
            conn.execute(t.insert(), [{"id": i, "v": f"{tag}-{i}"} for i in range(1, 201)])
            conn.execute(t.insert().values(id=201, v=f"{tag}-201"))
            if hc.refresh_sql(b.target, f"doc.{name}"):
                conn.execute(sa.text(hc.refresh_sql(b.target, f"doc.{name}")))
            q = sa.select(t.c.id, t.c.v).where(t.c.v.like(sa.bindparam("p"))).order_by(t.c.id)
            got = [tuple(x) for x in conn.execute(q, {"p": tag + "-%"})]
            assert got == [(i, f"{tag}-{i}") for i in range(1, 202)]
            q = sa.select(sa.func.count()).select_from(t).where(t.c.id.between(10, 19))
            assert conn.execute(q).scalar() == 10
        finally:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS doc.{name}"))
    e.dispose()


def test_thousands_of_rows(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b)
    with e.connect() as conn:
        tag = hc.new_tag()
        hc.check_rows(conn.execute(sa.text(hc.rows_sql(tag))).all(), tag)
        tag = hc.new_tag()
        r = conn.execute(sa.text("SELECT :t AS tag, generate_series AS x "
                                 "FROM generate_series(1, :n)"), {"t": tag, "n": hc.ROWS})
        assert r.keys() == ["tag", "x"]
        hc.check_rows(r.all(), tag)
    e.dispose()


def test_error_has_the_upstreams_message_then_works(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b, pool_size=1, max_overflow=0)  # the same DB-API connection after it
    table = hc.missing(hc.new_tag())
    with e.connect() as conn:
        with pytest.raises(sa.exc.ProgrammingError) as ei:
            conn.execute(sa.text(f"SELECT * FROM {table}"))
        hc.check_error(ei.value, table)
        assert conn.execute(sa.text("SELECT name FROM sys.cluster")).scalar() == \
            hc.cluster_name(b.target)
    with pytest.raises(sa.exc.ProgrammingError) as ei:
        with e.connect() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} (x) VALUES (:x)"), [{"x": 1}, {"x": 2}])
    hc.check_error(ei.value, table)
    with e.connect() as conn:
        tag = hc.new_tag()
        hc.check_rows(conn.execute(sa.text(hc.rows_sql(tag, 10))).all(), tag, 10)
    e.dispose()


def test_threads_share_one_engine(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    e = engine_for(b, pool_size=hc.CLIENTS, max_overflow=0)

    def client(i):
        for _ in range(hc.ROUNDS):
            tag = hc.new_tag(i)
            with e.connect() as conn:
                r = conn.execute(sa.text("SELECT :t AS tag, generate_series AS x "
                                         "FROM generate_series(1, :n)"),
                                 {"t": tag, "n": hc.CLIENT_ROWS})
                hc.check_rows(r.all(), tag, hc.CLIENT_ROWS)
        return i

    assert run_threads(client, hc.CLIENTS) == list(range(hc.CLIENTS))
    e.dispose()
