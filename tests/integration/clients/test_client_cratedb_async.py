"""cratedb-async (asyncio, httpx) through cratebouncer's HTTP side, as its README shows it:
`CrateClient("http://127.0.0.1:4200").query(stmt)`, parameters as `{"args": [...]}` merged
into the request, `bulk_insert`, and asyncio tasks sharing one client (httpx opens a
connection per concurrent request) over a sidecar pool of 2.

cratedb-async 0.0.11 declares Python >= 3.12; tests/venv.sh installs it on Debian's 3.11
(its code needs nothing newer). Its `_parse_response` looks for a failed statement's message
with `hasattr(obj, "error")` on a dict, which is never true: `response.error` stays None for
anything but a failed bulk item. The error test therefore reads the message from the HTTP
response too (an httpx event hook on the client passed in), so that it checks what
cratebouncer passes on, whatever the library does with it."""

import asyncio

import httpx

import http_checks as hc
from conftest import run_snippet
from cratedb_async.client import CrateClient

TABLE_OUT = """\
+------------+--------+
| mountain   | height |
+------------+--------+
| Mont Blanc | 4808   |
| Monte Rosa | 4634   |
+------------+--------+"""


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_guide_snippet(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    out = run_snippet("cratedb-async", b)
    assert out.splitlines() == [hc.cluster_name(b.target)] + TABLE_OUT.splitlines()


def test_parameters_and_bulk_insert(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    tag, name = hc.new_tag(), hc.table_name("ca_bulk")

    async def main():
        crate = CrateClient(b.http_url)
        try:
            r = await crate.query("SELECT mountain, height FROM sys.summits WHERE height > ? "
                                  "ORDER BY height DESC", {"args": [4600]})
            assert r.ok and r.columns == ["mountain", "height"]
            assert [tuple(x) for x in r.rows] == hc.TOP2
            r = await crate.query("SELECT ?, ?", {"args": ["a 'b' ?", None]})
            assert r.rows == [["a 'b' ?", None]]
            r = await crate.query(f"CREATE TABLE doc.{name} (id INTEGER, v TEXT)")
            assert r.ok, r
            try:
                r = await crate.bulk_insert(f"{name}", [[i, f"{tag}-{i}"] for i in range(1, 151)],
                                            columns=["id", "v"])
                assert r.ok, r
                if hc.refresh_sql(b.target, name):
                    await crate.query(hc.refresh_sql(b.target, name))
                r = await crate.query(f"SELECT id, v FROM doc.{name} WHERE v LIKE ? ORDER BY id",
                                      {"args": [tag + "-%"]})
                assert [tuple(x) for x in r.rows] == [(i, f"{tag}-{i}") for i in range(1, 151)]
            finally:
                await crate.query(f"DROP TABLE IF EXISTS doc.{name}")
        finally:
            await crate.client_async.aclose()

    run(main())


def test_thousands_of_rows(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)

    async def main():
        crate = CrateClient(b.http_url)
        tag = hc.new_tag()
        r = await crate.query(hc.rows_sql(tag))
        assert r.row_count == hc.ROWS
        hc.check_rows(r.rows, tag)
        tag = hc.new_tag()
        r = await crate.query(hc.ROWS_SQL_QMARK, {"args": [tag, hc.ROWS]})
        hc.check_rows(r.rows, tag)
        await crate.client_async.aclose()

    run(main())


def test_error_has_the_upstreams_message_then_works(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    table = hc.missing(hc.new_tag())
    seen = []

    async def record(response):
        await response.aread()
        seen.append((response.status_code, response.json()))

    async def main():
        crate = CrateClient(b.http_url, client=httpx.AsyncClient(event_hooks={"response":
                                                                              [record]}))
        r = await crate.query(f"SELECT * FROM {table}")
        status, body = seen[-1]
        assert status == 404 and body["error"]["code"] == 4041, body
        hc.check_error(body["error"]["message"], table)
        if r.error:  # a cratedb-async that reads the message
            hc.check_error(r.error, table)
        else:  # 0.0.11: see the module's docstring
            assert r.rows is None and r.columns is None
        # a bulk request against it: CrateDB fails the whole request, not item by item
        r = await crate.query(f"INSERT INTO {table} (x) VALUES (?)", {"bulk_args": [[1], [2]]})
        status, body = seen[-1]
        assert status == 404, body
        hc.check_error(body["error"]["message"], table)
        # the same client goes on
        r = await crate.query("SELECT name FROM sys.cluster")
        assert r.ok and r.rows == [[hc.cluster_name(b.target)]]
        tag = hc.new_tag()
        r = await crate.query(hc.rows_sql(tag, 10))
        hc.check_rows(r.rows, tag, 10)
        await crate.client_async.aclose()

    run(main())


def test_tasks_share_a_smaller_pool(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)

    async def client(crate, i):
        for _ in range(hc.ROUNDS):
            tag = hc.new_tag(i)
            r = await crate.query(hc.ROWS_SQL_QMARK, {"args": [tag, hc.CLIENT_ROWS]})
            hc.check_rows(r.rows, tag, hc.CLIENT_ROWS)
        return i

    async def main():
        shared = CrateClient(b.http_url)  # one httpx pool, a connection per request in flight
        got = await asyncio.gather(*(client(shared, i) for i in range(hc.CLIENTS)))
        assert got == list(range(hc.CLIENTS))
        await shared.client_async.aclose()
        own = [CrateClient(b.http_url) for _ in range(hc.CLIENTS)]
        got = await asyncio.gather(*(client(own[i], i) for i in range(hc.CLIENTS)))
        assert got == list(range(hc.CLIENTS))
        for c in own:
            await c.client_async.aclose()

    run(main())
