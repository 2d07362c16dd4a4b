"""records ("SQL for humans", on SQLAlchemy) with a sqlalchemy-cratedb `crate://` URL through
cratebouncer's HTTP side: `records.Database("crate://127.0.0.1:4200")`, `:name` parameters,
bulk_query, one Database shared by threads (a query takes a connection from its engine's
pool, larger than the sidecar's pool of 2)."""

import pytest
import records
import sqlalchemy as sa

import http_checks as hc
from conftest import run_snippet
from helpers import run_threads


def database(b, **kw):
    return records.Database(b.http_url.replace("http://", "crate://") + "/?schema=doc", **kw)


def test_guide_snippet(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    out = run_snippet("records", b)
    want = [hc.cluster_name(b.target)] + [f"{m} {h}" for m, h in hc.TOP2]
    assert out.splitlines() == want


def test_parameters_and_bulk_query(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    db = database(b)
    tag, name = hc.new_tag(), hc.table_name("rec")
    rows = db.query("SELECT mountain, height FROM sys.summits WHERE height > :h "
                    "ORDER BY height DESC", h=4600)
    assert [tuple(r.values()) for r in rows] == hc.TOP2
    assert db.query("SELECT :s AS s, :n AS n", s="a ? b", n=3).first(as_dict=True) == \
        {"s": "a ? b", "n": 3}
    db.query(f"CREATE TABLE doc.{name} (id INTEGER, v TEXT)")
    try:
        db.bulk_query(f"INSERT INTO doc.{name} (id, v) VALUES (:id, :v)",
                      [{"id": i, "v": f"{tag}-{i}"} for i in range(1, 101)])
        if hc.refresh_sql(b.target, f"doc.{name}"):
            db.query(hc.refresh_sql(b.target, f"doc.{name}"))
        got = db.query(f"SELECT id, v FROM doc.{name} WHERE v LIKE :p ORDER BY id",
                       p=tag + "-%")
        assert [tuple(r.values()) for r in got] == [(i, f"{tag}-{i}") for i in range(1, 101)]
        assert db.query(f"SELECT count(*) AS n FROM doc.{name}").scalar() == 100
    finally:
        db.query(f"DROP TABLE IF EXISTS doc.{name}")
        db.close()


def test_thousands_of_rows(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    db = database(b)
    tag = hc.new_tag()
    hc.check_rows([(r.tag, r.x) for r in db.query(hc.rows_sql(tag))], tag)
    tag = hc.new_tag()
    rows = db.query("SELECT :t AS tag, generate_series AS x FROM generate_series(1, :n)",
                    t=tag, n=hc.ROWS)
    hc.check_rows([(r["tag"], r["x"]) for r in rows.all()], tag)
    # records' own export, through tablib
    assert rows.export("csv").splitlines()[:2] == ["tag,x", f"{tag},1"]
    db.close()


def test_error_has_the_upstreams_message_then_works(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    db = database(b)
    table = hc.missing(hc.new_tag())
    with pytest.raises(sa.exc.ProgrammingError) as ei:
        db.query(f"SELECT * FROM {table}")
    hc.check_error(ei.value, table)
    assert db.query("SELECT name FROM sys.cluster").first().name == hc.cluster_name(b.target)
    with db.get_connection() as conn:
        with pytest.raises(sa.exc.ProgrammingError) as ei:
            conn.query(f"SELECT x FROM {table} WHERE x = :x", x=1)
        hc.check_error(ei.value, table)
        tag = hc.new_tag()
        hc.check_rows([(r.tag, r.x) for r in conn.query(hc.rows_sql(tag, 10))], tag, 10)
    db.close()


def test_threads_share_one_database(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    db = database(b, pool_size=hc.CLIENTS, max_overflow=0)

    def client(i):
        # get_connection() gives the connection back at the end of the block; db.query()
        # keeps it as long as its RecordCollection lives (records 0.6 relies on
        # close_with_result, which SQLAlchemy 2 no longer has)
        for _ in range(hc.ROUNDS):
            tag = hc.new_tag(i)
            with db.get_connection() as conn:
                rows = conn.query("SELECT :t AS tag, generate_series AS x "
                                  "FROM generate_series(1, :n)", fetchall=True, t=tag,
                                  n=hc.CLIENT_ROWS)
                hc.check_rows([(r.tag, r.x) for r in rows], tag, hc.CLIENT_ROWS)
        return i

    assert run_threads(client, hc.CLIENTS) == list(range(hc.CLIENTS))
    db.close()
