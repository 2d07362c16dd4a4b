"""asyncpg (the release pinned in tests/requirements.txt) through cratebouncer with no password
and no TLS (ssl=False), as CrateDB's Python guide uses it: its snippet in docs/cratedb-cloud.md,
$n parameters, 5000 rows, the upstream's error and the connection going on, and tasks sharing
a pool of 2. asyncpg always uses the extended protocol and its default statement cache (100
named statements per connection): every query here is a named prepared statement, which in
transaction mode has to follow the client from server to server (through PgBouncer 1.18 asyncpg
fails with `prepared statement "__asyncpg_stmt_1__" does not exist`). On a CrateDB upstream
asyncpg sees crate_version, passed through by cratebouncer, and leaves out the reset query its
pool would otherwise run at every release."""

import asyncio

import asyncpg

from conftest import run_snippet
from helpers import TIMEOUT
from pgwire_checks import (CLIENTS, SUMMITS, check_error, check_rows, cluster_name, missing,
                           new_tag, rows_sql)


def connect(b, **kw):
    return asyncpg.connect(host=b.host, port=b.port, database="doc", user="admin", ssl=False,
                           timeout=TIMEOUT, **kw)


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 45))


def test_snippet(sidecar, pg_target):
    b = sidecar()
    out = run_snippet("asyncpg", b).splitlines()
    assert out[0] == cluster_name(pg_target)
    assert "Mont Blanc" in out[1], out
    assert out[2] == "6" or (pg_target.kind == "cratedb" and int(out[2]) > 1000), out


def test_parameters_rows_error(sidecar, pg_target):
    b = sidecar()

    async def main():
        conn = await connect(b)
        try:
            # CrateDB's session parameters reach asyncpg, which then knows it is on CrateDB
            assert hasattr(conn.get_settings(), "crate_version") == pg_target.crate
            assert conn._server_caps.sql_reset is not pg_target.crate
            row = await conn.fetchrow("SELECT $1::text, $2::int, $3::double precision, $4::text",
                                      "O'Brien", 42, 1.5, None)
            assert tuple(row) == ("O'Brien", 42, 1.5, None)
            for name, height in SUMMITS.items():
                assert await conn.fetchval("SELECT height FROM sys.summits WHERE mountain = $1",
                                           name) == height
            t = new_tag()
            check_rows(await conn.fetch(rows_sql(t)), t)
            for n in (3000, 3001):  # the second run uses the cached named statement
                check_rows(await conn.fetch("SELECT $1::text, generate_series FROM "
                                            "generate_series(1, $2::int)", t, n), t, n)
            assert conn._stmt_cache.get_max_size() == 100 and len(conn._stmt_cache) >= 4
            stmt = await conn.prepare("SELECT height FROM sys.summits WHERE mountain = $1")
            assert await stmt.fetchval("Monte Rosa") == 4634

            try:
                await conn.fetch(f"SELECT v FROM {missing(t)}")
                raise AssertionError("no error for a missing table")
            except asyncpg.exceptions.UndefinedTableError as e:
                check_error(pg_target, e, missing(t))
            # an error in a cached statement's execution, then the statement again
            q = "SELECT 10 / $1::int"
            assert await conn.fetchval(q, 5) == 2
            try:
                await conn.fetchval(q, 0)
                raise AssertionError("no error for a division by zero")
            except asyncpg.PostgresError:
                pass
            assert await conn.fetchval(q, 2) == 5
            assert await stmt.fetchval("Mont Blanc") == 4808
            assert await conn.fetchval("SELECT name FROM sys.cluster") == cluster_name(pg_target)
        finally:
            await conn.close()

    run(main())


def test_tasks_share_a_small_pool(sidecar):
    b = sidecar(pool=2)
    q = "SELECT $1::text, generate_series FROM generate_series(1, $2::int)"

    async def own_connection(i):
        conn = await connect(b)
        try:
            for _ in range(4):  # the same named statement each time
                t = new_tag(i)
                check_rows(await conn.fetch(q, t, 400), t, 400)
        finally:
            await conn.close()

    async def main():
        await asyncio.gather(*(own_connection(i) for i in range(CLIENTS)))
        if b.mode != "transaction":
            return
        # an asyncpg pool of 8 over cratebouncer's 2: only transaction mode shares them
        # (in session mode each of the 8 would keep its server; see "Sizing the pool")
        pool = await asyncpg.create_pool(host=b.host, port=b.port, database="doc",
                                         user="admin", ssl=False, timeout=TIMEOUT,
                                         min_size=CLIENTS, max_size=CLIENTS)
        try:
            async def one(i):
                t = new_tag(i)
                check_rows(await pool.fetch(q, t, 300), t, 300)
            await asyncio.gather(*(one(i) for i in range(5 * CLIENTS)))
        finally:
            await pool.close()

    run(main())
