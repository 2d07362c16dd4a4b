"""crate-python (`crate`, CrateDB's DB-API driver over HTTP) through cratebouncer's HTTP side,
as its documentation shows it: `client.connect("http://127.0.0.1:4200")` with no credentials
and no TLS, `?` parameters, `bulk_parameters`. Against the stand-in and (CB_CRATEDB_HTTP) a
real CrateDB, through a sidecar whose pool (2) is smaller than the clients (8)."""

from crate import client
from crate.client.exceptions import ProgrammingError

import http_checks as hc
from conftest import run_snippet
from helpers import run_threads


def connect(b, **kw):
    return client.connect(b.http_url, timeout=30, **kw)


def test_guide_snippet(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    out = run_snippet("crate-python", b)
    want = [hc.cluster_name(b.target)] + [f"{m} {h}" for m, h in hc.TOP2]
    assert out.splitlines() == want


def test_parameters_and_bulk(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    tag, table = hc.new_tag(), hc.table_name("cp_bulk")
    conn = connect(b, schema="doc")
    cur = conn.cursor()
    try:
        cur.execute("SELECT ?, ?, ? + 1", ("O'Neil \"quoted\" ?", None, 41))
        assert cur.fetchone() == ["O'Neil \"quoted\" ?", None, 42]
        cur.execute("SELECT mountain, height FROM sys.summits WHERE height > ? "
                    "ORDER BY height DESC", (4600,))
        assert [tuple(r) for r in cur.fetchall()] == hc.TOP2
        cur.execute(f"CREATE TABLE {table} (id INTEGER, v TEXT)")
        # CrateDB's bulk operation: one request, one statement, many parameter rows
        cur.execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)",
                    bulk_parameters=[[i, f"{tag}-{i}"] for i in range(1, 101)])
        res = cur.executemany(f"INSERT INTO {table} (id, v) VALUES (?, ?)",
                              [(i, f"{tag}-{i}") for i in range(101, 111)])
        assert [r["rowcount"] for r in res] == [1] * 10
        if hc.refresh_sql(b.target, table):
            cur.execute(hc.refresh_sql(b.target, table))
        cur.execute(f"SELECT id, v FROM {table} WHERE v LIKE ? ORDER BY id", (tag + "-%",))
        assert [tuple(r) for r in cur.fetchall()] == [(i, f"{tag}-{i}") for i in range(1, 111)]
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def test_thousands_of_rows(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    conn = connect(b)
    cur = conn.cursor()
    tag = hc.new_tag()
    cur.execute(hc.rows_sql(tag))
    hc.check_rows(cur.fetchall(), tag)
    tag = hc.new_tag()
    cur.execute(hc.ROWS_SQL_QMARK, (tag, hc.ROWS))
    hc.check_rows(cur.fetchall(), tag)
    # fetchmany/fetchone over the same result
    cur.execute(hc.ROWS_SQL_QMARK, (tag, hc.ROWS))
    rows = cur.fetchmany(1000) + [cur.fetchone()] + cur.fetchall()
    hc.check_rows(rows, tag)
    # and written: one bulk request of 5000 rows, a body over crate-python's 8 KiB
    # threshold, so it goes gzip-compressed (Content-Encoding: gzip)
    tag, table = hc.new_tag(), hc.table_name("cp_rows")
    assert conn.client.compress == 8192
    cur.execute(f"CREATE TABLE {table} (tag TEXT, x INTEGER)")
    try:
        cur.execute(f"INSERT INTO {table} (tag, x) VALUES (?, ?)",
                    bulk_parameters=[[tag, x] for x in range(1, hc.ROWS + 1)])
        if hc.refresh_sql(b.target, table):
            cur.execute(hc.refresh_sql(b.target, table))
        # a statement of its own over 8 KiB, compressed too
        cur.execute(f"SELECT tag, x FROM {table} WHERE x IN ({', '.join(['?'] * hc.ROWS)})",
                    list(range(1, hc.ROWS + 1)))
        hc.check_rows(cur.fetchall(), tag)
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    conn.close()


def test_error_has_the_upstreams_message_then_works(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    conn = connect(b)
    cur = conn.cursor()
    table = hc.missing(hc.new_tag())
    try:
        cur.execute(f"SELECT * FROM {table}")
        raise AssertionError("no error for a missing table")
    except ProgrammingError as e:
        hc.check_error(e, table)
        assert "cratebouncer" not in str(e)
    cur.execute("SELECT name FROM sys.cluster")
    assert cur.fetchone()[0] == hc.cluster_name(b.target)
    # and an error in a bulk request, whose items fail one by one
    with_error = None
    try:
        cur.execute(f"INSERT INTO {table} (x) VALUES (?)", bulk_parameters=[[1], [2]])
    except ProgrammingError as e:
        with_error = e
    assert with_error is not None
    hc.check_error(with_error, table)
    tag = hc.new_tag()
    cur.execute(hc.ROWS_SQL_QMARK, (tag, 10))
    hc.check_rows(cur.fetchall(), tag, 10)
    conn.close()


def test_threads_share_a_smaller_pool(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    shared = connect(b)  # a Connection is thread-safe (urllib3's pool); cursors are not

    def own_connection(i):
        conn = connect(b)
        cur = conn.cursor()
        for _ in range(hc.ROUNDS):
            tag = hc.new_tag(i)
            cur.execute(hc.ROWS_SQL_QMARK, (tag, hc.CLIENT_ROWS))
            hc.check_rows(cur.fetchall(), tag, hc.CLIENT_ROWS)
        conn.close()
        return i

    def shared_connection(i):
        cur = shared.cursor()
        for _ in range(hc.ROUNDS):
            tag = hc.new_tag(i)
            cur.execute(hc.ROWS_SQL_QMARK, (tag, hc.CLIENT_ROWS))
            hc.check_rows(cur.fetchall(), tag, hc.CLIENT_ROWS)
        return i

    assert run_threads(own_connection, hc.CLIENTS) == list(range(hc.CLIENTS))
    assert run_threads(shared_connection, hc.CLIENTS) == list(range(hc.CLIENTS))
    shared.close()
