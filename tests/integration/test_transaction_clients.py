"""Transaction pooling with real client libraries: more clients than upstream connections
(default_pool_size = 5, 30+ clients), each checking results computed from its own inputs.

Covered: psycopg2, psycopg 3 (sync, async, pipeline; prepare_threshold=0 so every query is a
named server-side prepared statement), asyncpg (default statement cache, prepare(),
transactions, cursors), aiopg, SQLAlchemy (psycopg2 and asyncpg dialects), pandas, Dask,
pyodbc with psqlODBC, node-postgres, psql, pgbench (-M simple, extended, prepared); session
state (TimeZone, DateStyle, search_path, application_name) kept per client on shared
servers; CancelRequest reaching the right server; a client that dies inside a transaction;
pool_mode per database and statement mode; max_prepared_statements small and 0; errors
inside transactions and at Parse; COPY; server-side cursors.

CB_TEST_POOL_MODE=session runs the same clients in session mode (with a pool large enough
for every client), to tell client-side problems from pooler ones; the default is transaction.
CB_NODE_DIR is where npm installs "pg" (default /var/tmp/cratebouncer-node, outside the
source tree, which may be read-only).
"""

import asyncio
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time

import psycopg
import pytest

from helpers import TIMEOUT, RawConn, clean_env, pgbench_processed, run_threads, wait_until

MODE = os.environ.get("CB_TEST_POOL_MODE", "transaction")
TX = MODE != "session"  # whether clients share servers between transactions
POOL = 5  # default_pool_size in transaction mode
SESSION_POOL = 64  # in session mode: a server for every client at once
HERE = os.path.dirname(os.path.abspath(__file__))
ODBC_DRIVER = "/usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so"
CLIENT_TIMEOUT = 40  # seconds for all clients of one test to finish


# ---------------------------------------------------------------------------------------------
# helpers


def start(cratebouncer, pool=POOL, **extra):
    """A cratebouncer in MODE with default_pool_size=pool (in session mode: SESSION_POOL)."""
    settings = {"pool_mode": MODE, "default_pool_size": pool if TX else SESSION_POOL,
                "max_client_conn": 500}
    settings.update(extra)
    return cratebouncer(settings=settings)


def check_shared(pids, clients, pool=POOL):
    """The clients' queries ran on upstream backends pids: in transaction mode at most pool
    of them served more clients than that."""
    assert pids, "no backend pid seen"
    if TX:
        assert clients > pool
        assert len(set(pids)) <= pool, f"{len(set(pids))} upstream backends for pool {pool}"


def fresh_table(pg, name, columns):
    """(Re)create table name owned by crate."""
    pg.sql(f"DROP TABLE IF EXISTS {name}")
    pg.sql(f"CREATE TABLE {name} ({columns})")
    pg.sql(f"ALTER TABLE {name} OWNER TO crate")


def run_async(coro, timeout=CLIENT_TIMEOUT):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def gather_all(coros):
    """asyncio.gather that reports how many failed and the first failure."""
    res = await asyncio.gather(*coros, return_exceptions=True)
    errors = [(i, r) for i, r in enumerate(res) if isinstance(r, BaseException)]
    if errors:
        i, e = errors[0]
        raise AssertionError(f"{len(errors)} of {len(res)} tasks failed; task {i}: {e!r}") from e
    return res


def sa_url(cb, driver):
    return f"postgresql+{driver}://crate@{cb.host}:{cb.port}/doc"


# ---------------------------------------------------------------------------------------------
# psycopg2


def test_psycopg2_threads_own_transactions(cratebouncer, pg):
    """32 psycopg2 connections (threads), each committing 5 transactions of its own values;
    every transaction reads back exactly what this client wrote so far."""
    psycopg2 = pytest.importorskip("psycopg2")
    fresh_table(pg, "tx_pg2", "client int, seq int, v int")
    cb = start(cratebouncer)
    n, rounds = 32, 5
    barrier = threading.Barrier(n, timeout=TIMEOUT * 2)

    def client(c):
        conn = psycopg2.connect(cb.conninfo())
        pids = []
        try:
            barrier.wait()  # all connected at once
            for r in range(rounds):
                with conn.cursor() as cur:
                    cur.execute("insert into tx_pg2 values (%s, %s, %s)", (c, r, c * 1000 + r))
                    cur.execute("select count(*), sum(v), pg_backend_pid() from tx_pg2 "
                                "where client = %s", (c,))
                    count, total, pid = cur.fetchone()
                    cur.execute("select %s * %s, %s || '-' || %s", (c, r, "c", c))
                    product, label = cur.fetchone()
                conn.commit()
                assert count == r + 1
                assert total == sum(c * 1000 + i for i in range(r + 1))
                assert (product, label) == (c * r, f"c-{c}")
                pids.append(pid)
        finally:
            conn.close()
        return pids

    pids = [p for ps in run_threads(client, n) for p in ps]
    check_shared(pids, n)
    rows = pg.sql("select client, count(*), sum(v) from tx_pg2 group by client order by client")
    assert rows == [(c, rounds, sum(c * 1000 + r for r in range(rounds))) for c in range(n)]


def test_psycopg2_uncommitted_rows_only_visible_inside(cratebouncer, pg):
    """Three psycopg2 clients hold open transactions with inserted rows (each sees its own,
    in the same transaction) while 20 other clients on the remaining servers see none of
    them; after COMMIT everybody sees all of them."""
    psycopg2 = pytest.importorskip("psycopg2")
    fresh_table(pg, "tx_vis", "k int, v int")
    cb = start(cratebouncer)
    writers, readers = 3, 20
    inserted = [threading.Event() for _ in range(writers)]
    readers_done = threading.Event()
    committed = threading.Event()
    remaining = [readers]
    writers_left = [writers]
    lock = threading.Lock()
    expected = {k: (k + 2, sum(range(k * 100, k * 100 + k + 2))) for k in range(writers)}

    def writer(k):
        conn = psycopg2.connect(cb.conninfo())
        try:
            cur = conn.cursor()
            cur.execute("select txid_current()")
            xid = cur.fetchone()[0]
            for i in range(k + 2):
                cur.execute("insert into tx_vis values (%s, %s)", (k, k * 100 + i))
            cur.execute("select count(*), sum(v) from tx_vis where k = %s", (k,))
            assert cur.fetchone() == expected[k]
            inserted[k].set()
            assert readers_done.wait(CLIENT_TIMEOUT - 5), "readers did not finish"
            cur.execute("select count(*), sum(v), txid_current() from tx_vis where k = %s", (k,))
            assert cur.fetchone() == (*expected[k], xid), "not the same transaction any more"
            conn.commit()
        finally:
            conn.close()

    def reader(i):
        conn = psycopg2.connect(cb.conninfo())
        conn.autocommit = True
        try:
            for e in inserted:
                assert e.wait(CLIENT_TIMEOUT - 5), "writers did not insert"
            cur = conn.cursor()
            try:
                for _ in range(3):
                    cur.execute("select k, count(*) from tx_vis group by k")
                    assert cur.fetchall() == [], "uncommitted rows visible to another client"
                    cur.execute("select %s + 1", (i,))
                    assert cur.fetchone() == (i + 1,)
            finally:  # the writers commit once every reader is through, failed or not
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        readers_done.set()
            assert committed.wait(CLIENT_TIMEOUT - 5)
            cur.execute("select k, count(*), sum(v) from tx_vis group by k order by k")
            return cur.fetchall()
        finally:
            conn.close()

    def role(i):
        if i < writers:
            try:
                writer(i)
            finally:  # readers waiting for the commit are released either way
                with lock:
                    writers_left[0] -= 1
                    if writers_left[0] == 0:
                        committed.set()
            return None
        return reader(i - writers)

    after = [r for r in run_threads(role, writers + readers) if r is not None]
    assert len(after) == readers
    want = [(k, *expected[k]) for k in range(writers)]
    assert all(r == want for r in after), after[:3]


# ---------------------------------------------------------------------------------------------
# psycopg 3


def test_psycopg3_prepared_statements_threads(cratebouncer):
    """32 psycopg 3 connections with prepare_threshold=0 (every query a named prepared
    statement; psycopg names them _pg3_0, _pg3_1, ... in every connection, for different
    texts), 10 rounds each of a query text all share, one of its own and one shared by
    half of them; odd clients in autocommit, even ones inside transactions."""
    cb = start(cratebouncer)
    n, rounds = 32, 10

    def client(c):
        pids = []
        with psycopg.connect(cb.conninfo(), autocommit=bool(c % 2), prepare_threshold=0) as conn:
            # a different first statement per parity, so that _pg3_0 differs among clients
            if c % 2:
                assert conn.execute("select %s::int - 1", (c,)).fetchone() == (c - 1,)
            for r in range(rounds):
                row = conn.execute("select %s::int * %s::int, pg_backend_pid()",
                                   (c, r)).fetchone()
                assert row[0] == c * r
                pids.append(row[1])
                own = conn.execute(f"select %s::text || '-{c}', %s::int + {c}",
                                   (f"r{r}", r)).fetchone()
                assert own == (f"r{r}-{c}", r + c)
                half = conn.execute(f"select %s::int %% {2 + c % 3}", (c * r + 1,)).fetchone()
                assert half == ((c * r + 1) % (2 + c % 3),)
                if not c % 2:
                    conn.commit()
        return pids

    pids = [p for ps in run_threads(client, n) for p in ps]
    check_shared(pids, n)


def test_psycopg3_statement_cache_eviction(cratebouncer):
    """prepared_max=4 with 10 distinct queries: psycopg 3 keeps DEALLOCATEing its oldest
    statements and preparing new ones under reused names; results stay right."""
    cb = start(cratebouncer)
    n = 12

    def client(c):
        with psycopg.connect(cb.conninfo(), autocommit=True, prepare_threshold=0) as conn:
            conn.prepared_max = 4
            for r in range(3):
                for q in range(10):
                    row = conn.execute(f"select %s::int * {q + 1}, {q}", (c + r,)).fetchone()
                    assert row == ((c + r) * (q + 1), q)
        return True

    assert all(run_threads(client, n))


def test_psycopg3_async_prepared(cratebouncer):
    """40 psycopg AsyncConnections (prepare_threshold=0) concurrently, 8 rounds each of a
    shared and an own query text, plus a transaction inserting and reading back rows."""
    cb = start(cratebouncer)
    n, rounds = 40, 8

    async def client(c):
        pids = []
        conn = await psycopg.AsyncConnection.connect(cb.conninfo(), autocommit=True,
                                                     prepare_threshold=0)
        try:
            for r in range(rounds):
                cur = await conn.execute("select %s::int + %s::int, pg_backend_pid()", (c, r))
                s, pid = await cur.fetchone()
                assert s == c + r
                pids.append(pid)
                cur = await conn.execute(f"select repeat(%s, {c % 4 + 1})", (str(r),))
                assert await cur.fetchone() == (str(r) * (c % 4 + 1),)
            async with conn.transaction():
                cur = await conn.execute("select g * %s::int from generate_series(1, %s::int) g",
                                         (c, c % 5 + 1))
                assert [v for (v,) in await cur.fetchall()] == [
                    g * c for g in range(1, c % 5 + 2)]
        finally:
            await conn.close()
        return pids

    async def main():
        return await gather_all([client(c) for c in range(n)])

    pids = [p for ps in run_async(main()) for p in ps]
    check_shared(pids, n)


def test_psycopg3_pipeline(cratebouncer, pg):
    """12 connections at once, each running 60 executes in pipeline mode (prepared
    statements) and a pipelined transaction of 20 inserts; results come back in order."""
    fresh_table(pg, "tx_pipe", "client int, v int")
    cb = start(cratebouncer)
    n, per = 12, 60

    def client(c):
        with psycopg.connect(cb.conninfo(), autocommit=True, prepare_threshold=0) as conn:
            with conn.pipeline():
                curs = [conn.execute("select %s::int * 2 + %s::int, %s::text",
                                     (i, c, f"p{c}.{i}")) for i in range(per)]
            got = [cur.fetchone() for cur in curs]
            assert got == [(i * 2 + c, f"p{c}.{i}") for i in range(per)]
            with conn.pipeline(), conn.transaction():
                for i in range(20):
                    conn.execute("insert into tx_pipe values (%s, %s)", (c, i * c))
                cur = conn.execute("select count(*), sum(v) from tx_pipe where client = %s",
                                   (c,))
            assert cur.fetchone() == (20, sum(i * c for i in range(20)))
            return conn.execute("select pg_backend_pid()").fetchone()[0]

    pids = run_threads(client, n)
    check_shared(pids, n)
    assert pg.sql("select count(*) from tx_pipe") == [(n * 20,)]


# ---------------------------------------------------------------------------------------------
# asyncpg


def _asyncpg_connect_kw(cb):
    return dict(host=cb.host, port=cb.port, user="crate", database="doc", ssl=False,
                timeout=TIMEOUT)


def test_asyncpg_pool_default_statement_cache(cratebouncer):
    """asyncpg.create_pool(min_size=32, max_size=40) with its default statement cache
    (named statements reused per connection): 400 concurrent fetch/fetchval calls."""
    asyncpg = pytest.importorskip("asyncpg")
    cb = start(cratebouncer)
    tasks = 400

    async def main():
        pool = await asyncpg.create_pool(min_size=32, max_size=40, **_asyncpg_connect_kw(cb))
        try:
            async def task(i):
                v = await pool.fetchval("select $1::int * $2::int", i, 3)
                assert v == i * 3
                rows = await pool.fetch("select g, g * $1::int as m, pg_backend_pid() as pid "
                                        "from generate_series(1, $2::int) g", i, i % 7 + 1)
                assert [(r["g"], r["m"]) for r in rows] == [(g, g * i)
                                                             for g in range(1, i % 7 + 2)]
                s = await pool.fetchval("select $1::text || $2::text", f"a{i}", "z")
                assert s == f"a{i}z"
                return rows[0]["pid"]
            pids = await gather_all([task(i) for i in range(tasks)])
            size = pool.get_size()
        finally:
            await pool.close()
        return pids, size

    pids, size = run_async(main())
    assert size >= 32
    check_shared(pids, size)


def test_asyncpg_prepare_and_cursor(cratebouncer):
    """20 connections each prepare() statements once and execute them 40 times; a
    server-side cursor inside a transaction walks 500 rows in chunks."""
    asyncpg = pytest.importorskip("asyncpg")
    cb = start(cratebouncer)
    n, times = 20, 40

    async def client(c):
        conn = await asyncpg.connect(**_asyncpg_connect_kw(cb))
        try:
            stmt = await conn.prepare("select $1::int * 10 + $2::int, pg_backend_pid()")
            other = await conn.prepare("select $1::text || '@' || $2::int")
            pids = []
            for i in range(times):
                v, pid = await stmt.fetchrow(i, c)
                assert v == i * 10 + c
                pids.append(pid)
                assert await other.fetchval(f"c{c}", i) == f"c{c}@{i}"
            assert [p.name for p in stmt.get_parameters()] == ["int4", "int4"]
            async with conn.transaction():
                total, count = 0, 0
                async for rec in conn.cursor("select g from generate_series(1, $1::int) g",
                                             500, prefetch=50):
                    total += rec["g"]
                    count += 1
                assert (count, total) == (500, 500 * 501 // 2)
                cur = await conn.cursor("select g * $1::int from generate_series(1, 30) g", c)
                first = await cur.fetch(10)
                assert [r[0] for r in first] == [g * c for g in range(1, 11)]
        finally:
            await conn.close()
        return pids

    async def main():
        return await gather_all([client(c) for c in range(n)])

    pids = [p for ps in run_async(main()) for p in ps]
    check_shared(pids, n)


def test_asyncpg_transactions(cratebouncer, pg):
    """30 connections concurrently: a committed transaction (its rows visible to itself
    before COMMIT) and a rolled-back one (its rows gone), with a savepoint inside."""
    asyncpg = pytest.importorskip("asyncpg")
    fresh_table(pg, "tx_apg", "client int, kind text, v int")
    cb = start(cratebouncer)
    n = 30

    class Rollback(Exception):
        pass

    async def client(c):
        conn = await asyncpg.connect(**_asyncpg_connect_kw(cb))
        try:
            async with conn.transaction():
                await conn.executemany("insert into tx_apg values ($1, 'kept', $2)",
                                       [(c, c * 10 + j) for j in range(3)])
                try:
                    async with conn.transaction():  # a savepoint
                        await conn.execute("insert into tx_apg values ($1, 'savepoint', 1)", c)
                        raise Rollback
                except Rollback:
                    pass
                mine = await conn.fetchrow("select count(*), sum(v) from tx_apg "
                                           "where client = $1", c)
                assert tuple(mine) == (3, sum(c * 10 + j for j in range(3)))
            try:
                async with conn.transaction():
                    await conn.execute("insert into tx_apg values ($1, 'rolled', 99)", c)
                    assert await conn.fetchval("select count(*) from tx_apg where client = $1 "
                                               "and kind = 'rolled'", c) == 1
                    raise Rollback
            except Rollback:
                pass
            return await conn.fetchval("select count(*) from tx_apg where client = $1", c)
        finally:
            await conn.close()

    async def main():
        return await gather_all([client(c) for c in range(n)])

    assert run_async(main()) == [3] * n
    assert pg.sql("select kind, count(*), sum(v) from tx_apg group by kind") == [
        ("kept", 3 * n, sum(c * 10 + j for c in range(n) for j in range(3)))]


# ---------------------------------------------------------------------------------------------
# aiopg


def test_aiopg_pool(cratebouncer, pg):
    """aiopg.create_pool(minsize=32, maxsize=32): 200 concurrent queries with parameters and
    32 transactions (cur.begin()) inserting rows."""
    aiopg = pytest.importorskip("aiopg")
    fresh_table(pg, "tx_aiopg", "client int, v int")
    cb = start(cratebouncer)
    size = 32

    async def main():
        async with aiopg.create_pool(cb.conninfo(), minsize=size, maxsize=size,
                                     timeout=CLIENT_TIMEOUT) as pool:
            assert pool.size == size

            async def query(i):
                async with pool.acquire() as conn:
                    async with conn.cursor() as cur:
                        await cur.execute("select %s * 3, %s || 'x', pg_backend_pid()",
                                          (i, f"q{i}"))
                        a, b, pid = await cur.fetchone()
                        assert (a, b) == (i * 3, f"q{i}x")
                        return pid

            async def transaction(c):
                async with pool.acquire() as conn:
                    async with conn.cursor() as cur:
                        async with cur.begin():
                            for j in range(4):
                                await cur.execute("insert into tx_aiopg values (%s, %s)",
                                                  (c, c + j))
                            await cur.execute("select count(*), sum(v) from tx_aiopg "
                                              "where client = %s", (c,))
                            assert await cur.fetchone() == (4, 4 * c + 6)

            pids = await gather_all([query(i) for i in range(200)])
            await gather_all([transaction(c) for c in range(size)])
            return pids

    pids = run_async(main())
    check_shared(pids, size)
    assert pg.sql("select count(*), sum(v) from tx_aiopg") == [
        (4 * size, sum(4 * c + 6 for c in range(size)))]


# ---------------------------------------------------------------------------------------------
# SQLAlchemy, pandas, Dask


def test_sqlalchemy_psycopg2(cratebouncer, pg):
    """SQLAlchemy (psycopg2 dialect), a pool of 32: 32 threads run queries with bound
    parameters and insert their rows through a Table; a select reads every row back."""
    sa = pytest.importorskip("sqlalchemy")
    pg.sql("DROP TABLE IF EXISTS tx_sa")
    cb = start(cratebouncer)
    n = 32
    engine = sa.create_engine(sa_url(cb, "psycopg2"), pool_size=n, max_overflow=0,
                              pool_timeout=CLIENT_TIMEOUT)
    meta = sa.MetaData()
    table = sa.Table("tx_sa", meta, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("client", sa.Integer), sa.Column("name", sa.String(40)),
                     sa.Column("value", sa.Float))
    try:
        meta.create_all(engine)
        barrier = threading.Barrier(n, timeout=TIMEOUT * 2)

        def client(c):
            with engine.connect() as conn:
                barrier.wait()  # n pooled connections checked out at once
                row = conn.execute(sa.text("select :a * :b, :s || '!', pg_backend_pid()"),
                                   {"a": c, "b": 11, "s": f"s{c}"}).one()
                assert tuple(row[:2]) == (c * 11, f"s{c}!")
                with conn.begin():
                    conn.execute(table.insert(), [
                        {"id": c * 100 + j, "client": c, "name": f"n{c}-{j}", "value": c + j / 4}
                        for j in range(5)])
                    mine = conn.execute(sa.select(sa.func.count(), sa.func.sum(table.c.value))
                                        .where(table.c.client == c)).one()
                assert tuple(mine) == (5, sum(c + j / 4 for j in range(5)))
                return row[2]

        pids = run_threads(client, n)
        check_shared(pids, n)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.id)).all()
        assert [tuple(r) for r in rows] == [(c * 100 + j, c, f"n{c}-{j}", c + j / 4)
                                            for c in range(n) for j in range(5)]
    finally:
        engine.dispose()


def test_sqlalchemy_asyncpg(cratebouncer, pg):
    """SQLAlchemy's asyncpg dialect (create_async_engine, asyncpg's prepared statement
    cache), a pool of 32: 32 concurrent tasks query with parameters and round-trip rows."""
    sa = pytest.importorskip("sqlalchemy")
    pytest.importorskip("asyncpg")
    from sqlalchemy.ext.asyncio import create_async_engine

    pg.sql("DROP TABLE IF EXISTS tx_saa")
    cb = start(cratebouncer)
    n = 32
    meta = sa.MetaData()
    table = sa.Table("tx_saa", meta, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("client", sa.Integer), sa.Column("label", sa.String(40)))

    async def main():
        engine = create_async_engine(sa_url(cb, "asyncpg"), pool_size=n, max_overflow=0,
                                     pool_timeout=CLIENT_TIMEOUT)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(meta.create_all)
            ready = asyncio.Event()
            arrived = [0]

            async def client(c):
                async with engine.connect() as conn:
                    arrived[0] += 1
                    if arrived[0] == n:
                        ready.set()
                    await ready.wait()  # n pooled connections checked out at once
                    pids = []
                    for r in range(5):
                        res = await conn.execute(
                            sa.text("select cast(:a as integer) * :r, pg_backend_pid()"),
                            {"a": c, "r": r})
                        v, pid = res.one()
                        assert v == c * r
                        pids.append(pid)
                    await conn.commit()  # the queries above autobegan a transaction
                    async with conn.begin():
                        await conn.execute(table.insert(), [
                            {"id": c * 10 + j, "client": c, "label": f"l{c}.{j}"}
                            for j in range(3)])
                        res = await conn.execute(sa.select(sa.func.count())
                                                 .where(table.c.client == c))
                        assert res.scalar() == 3
                    return pids

            pids = await gather_all([client(c) for c in range(n)])
            async with engine.connect() as conn:
                rows = (await conn.execute(sa.select(table).order_by(table.c.id))).all()
            return pids, rows
        finally:
            await engine.dispose()

    pids, rows = run_async(main())
    check_shared([p for ps in pids for p in ps], n)
    assert [tuple(r) for r in rows] == [(c * 10 + j, c, f"l{c}.{j}")
                                        for c in range(n) for j in range(3)]


@pytest.mark.filterwarnings("ignore:Deprecated API features detected")  # pandas 1.5, SA 1.4
def test_pandas_to_sql_read_sql(cratebouncer, pg):
    """DataFrame.to_sql writes 1000 rows in chunks through SQLAlchemy (psycopg2); read_sql
    gives them back unchanged; 32 threads read_sql filtered slices concurrently."""
    pd = pytest.importorskip("pandas")
    sa = pytest.importorskip("sqlalchemy")
    pg.sql("DROP TABLE IF EXISTS tx_pandas")
    cb = start(cratebouncer)
    n = 32
    engine = sa.create_engine(sa_url(cb, "psycopg2"), pool_size=n, max_overflow=0,
                              pool_timeout=CLIENT_TIMEOUT)
    try:
        df = pd.DataFrame({"id": range(1000), "name": [f"n{i}" for i in range(1000)],
                           "x": [i * 0.5 for i in range(1000)]})
        written = df.to_sql("tx_pandas", engine, index=False, if_exists="replace",
                            chunksize=100, method="multi")
        assert written in (None, 1000)
        back = pd.read_sql("select id, name, x from tx_pandas order by id", engine)
        pd.testing.assert_frame_equal(back, df, check_dtype=False)

        def client(c):
            m = c % 7 + 2
            got = pd.read_sql(sa.text("select id, x from tx_pandas where id % :m = :r "
                                      "order by id"), engine, params={"m": m, "r": c % m})
            want = df[df.id % m == c % m][["id", "x"]].reset_index(drop=True)
            pd.testing.assert_frame_equal(got, want, check_dtype=False)
            return len(got)

        assert sum(run_threads(client, n)) == sum(
            len(df[df.id % (c % 7 + 2) == c % (c % 7 + 2)]) for c in range(n))
    finally:
        engine.dispose()


def test_dask_read_sql_table(cratebouncer, pg):
    """dask.dataframe.read_sql_table splits a 3000-row table on its index into 16 partitions
    read by 16 threads at once (each its own SQLAlchemy engine and connection)."""
    dd = pytest.importorskip("dask.dataframe")
    pytest.importorskip("sqlalchemy")
    fresh_table(pg, "tx_dask", "id int primary key, v double precision, name text")
    pg.sql("insert into tx_dask select g, g * 1.5, 'n' || g from generate_series(1, 3000) g")
    cb = start(cratebouncer)
    ddf = dd.read_sql_table("tx_dask", f"postgresql://crate@{cb.host}:{cb.port}/doc",
                            index_col="id", npartitions=16)
    assert ddf.npartitions == 16
    df = ddf.compute(scheduler="threads", num_workers=16)
    assert len(df) == 3000
    assert list(df.index) == list(range(1, 3001))
    assert df.v.sum() == sum(g * 1.5 for g in range(1, 3001))
    assert df.name.loc[1234] == "n1234"
    total = ddf.v.sum().compute(scheduler="threads", num_workers=16)
    assert total == sum(g * 1.5 for g in range(1, 3001))


# ---------------------------------------------------------------------------------------------
# pyodbc with psqlODBC


def test_pyodbc_psqlodbc(cratebouncer, pg):
    """pyodbc with psqlODBC (PostgreSQL Unicode): 32 threads, each its own connection
    (not autocommit), 4 transactions with parameters; each sees its own rows."""
    pyodbc = pytest.importorskip("pyodbc")
    if not os.path.exists(ODBC_DRIVER):
        pytest.fail(f"{ODBC_DRIVER} missing (Debian package odbc-postgresql)")
    fresh_table(pg, "tx_odbc", "client int, seq int, v int")
    cb = start(cratebouncer)
    n, rounds = 32, 4
    connstr = (f"Driver={ODBC_DRIVER};Servername={cb.host};Port={cb.port};Database=doc;"
               "Uid=crate;Pwd=;sslmode=disable")

    def client(c):
        conn = pyodbc.connect(connstr, timeout=TIMEOUT)
        pids = []
        try:
            cur = conn.cursor()
            for r in range(rounds):
                cur.execute("insert into tx_odbc values (?, ?, ?)", c, r, c * 7 + r)
                cur.execute("select count(*), sum(v), pg_backend_pid() from tx_odbc "
                            "where client = ?", c)
                count, total, pid = cur.fetchone()
                assert (count, total) == (r + 1, sum(c * 7 + i for i in range(r + 1)))
                cur.execute("select cast(? as integer) * 7, cast(? as text) || '.'", c, f"o{r}")
                assert tuple(cur.fetchone()) == (c * 7, f"o{r}.")
                conn.commit()
                pids.append(pid)
        finally:
            conn.close()
        return pids

    pids = [p for ps in run_threads(client, n) for p in ps]
    check_shared(pids, n)
    assert pg.sql("select count(*), sum(v) from tx_odbc") == [
        (n * rounds, sum(c * 7 + r for c in range(n) for r in range(rounds)))]


# ---------------------------------------------------------------------------------------------
# node-postgres


# (the node_pg fixture is in conftest.py: test_crate_clients.py uses it too)


def test_node_postgres_pool(cratebouncer, pg, node_pg):
    """node-postgres: a Pool with max 30 (all 30 logged in at once) runs 300 parameterized
    queries, 300 executions of a named prepared statement ("add-one", the same name in every
    connection) and 30 transactions."""
    path, why = node_pg
    if why:
        pytest.fail(why)
    fresh_table(pg, "tx_node", "client int, v int")
    cb = start(cratebouncer)
    queries, clients = 300, 30
    res = subprocess.run(["node", os.path.join(HERE, "node_pg_pool.js"), str(cb.port),
                          str(queries), str(clients)],
                         env={**clean_env(), "NODE_PATH": path}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=CLIENT_TIMEOUT)
    assert res.returncode == 0, f"node failed ({res.returncode}):\n{res.stderr}"
    out = json.loads(res.stdout)
    assert out["opened"] == clients
    assert sorted(map(tuple, out["plain"])) == [(i, i * 7, f"v{i}!") for i in range(queries)]
    assert sorted(map(tuple, out["named"])) == [(i, i + 1) for i in range(queries)]
    assert sorted(map(tuple, out["tx"])) == [(i, 2, 20 * i + 1) for i in range(clients)]
    check_shared(out["pids"], clients)
    assert pg.sql("select count(*), sum(v) from tx_node") == [
        (2 * clients, sum(20 * i + 1 for i in range(clients)))]


# ---------------------------------------------------------------------------------------------
# psql and pgbench


def test_concurrent_psql(cratebouncer, pg):
    """30 psql processes at once, each with its own variables: SET application_name, a
    transaction inserting and reading back its rows, then computed selects."""
    fresh_table(pg, "tx_psql", "client int, v int")
    cb = start(cratebouncer)
    n = 30
    script = ("SET application_name = :'app';\n"
              "BEGIN;\n"
              "INSERT INTO tx_psql VALUES (:c, :c * 2), (:c, :c * 2 + 1);\n"
              "SELECT count(*) || ',' || sum(v) FROM tx_psql WHERE client = :c;\n"
              "COMMIT;\n"
              "SELECT :c * :c;\n"
              "SHOW application_name;\n"
              "SELECT pg_backend_pid();\n")
    procs = []
    for c in range(n):
        procs.append(subprocess.Popen(
            ["psql", "-X", "-w", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"c={c}",
             "-v", f"app=psql-{c}", "-d", cb.conninfo(), "-f", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=clean_env()))
    pids = []
    for c, p in enumerate(procs):
        out, err = p.communicate(script, timeout=CLIENT_TIMEOUT)
        assert p.returncode == 0, f"psql {c} failed ({p.returncode}): {err}"
        lines = out.split()
        assert lines[:3] == [f"2,{4 * c + 1}", str(c * c), f"psql-{c}"], (c, out, err)
        pids.append(int(lines[3]))
    check_shared(pids, n)
    assert pg.sql("select count(*), sum(v) from tx_psql") == [
        (2 * n, sum(4 * c + 1 for c in range(n)))]


@pytest.mark.parametrize("protocol", ["simple", "extended", "prepared"])
def test_pgbench_tpcb(cratebouncer, pg, pgbench_tables, protocol):
    """pgbench's TPC-B-like transactions (BEGIN; 3 UPDATEs, SELECT, INSERT; END) with 24
    clients on a pool of 5, -M simple / extended / prepared: no failed transaction, and
    pgbench_history grew by exactly the transactions it processed."""
    cb = start(cratebouncer)
    before = pg.sql("select count(*) from pgbench_history")[0][0]
    cmd = [pgbench_tables, "-n", "-c", "24", "-j", "2", "-T", "3", "-M", protocol,
           "-h", cb.host, "-p", str(cb.port), "-U", "crate", "doc"]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=clean_env(), timeout=CLIENT_TIMEOUT)
    assert res.returncode == 0, f"pgbench failed ({res.returncode}):\n{res.stdout}"
    processed = pgbench_processed(res.stdout)
    assert processed > 0
    m = re.search(r"number of failed transactions: (\d+)", res.stdout)
    assert m and int(m.group(1)) == 0, res.stdout
    assert f"query mode: {protocol}" in res.stdout
    after = pg.sql("select count(*) from pgbench_history")[0][0]
    assert after - before == processed


# ---------------------------------------------------------------------------------------------
# session state per client


def test_timezone_and_datestyle_per_client(cratebouncer):
    """Three clients on one server: A sets TimeZone Asia/Tokyo and DateStyle German, B
    America/Sao_Paulo and SQL, MDY, C keeps the defaults; interleaved queries and
    transactions each see their own SHOW TimeZone, now() offset and date format."""
    cb = start(cratebouncer, pool=1)
    a, b, c = (cb.connect() for _ in range(3))
    default_tz = c.execute("show timezone").fetchone()[0]
    default_offset = c.execute("select extract(timezone from now())::int").fetchone()[0]
    a.execute("set timezone = 'Asia/Tokyo'")
    b.execute("set timezone to 'America/Sao_Paulo'")
    a.execute("set datestyle = 'German, DMY'")
    b.execute("set datestyle = 'SQL, MDY'")
    want = {
        "a": ("Asia/Tokyo", 9 * 3600, "05.03.2024", "German, DMY"),
        "b": ("America/Sao_Paulo", -3 * 3600, "03/05/2024", "SQL, MDY"),
        "c": (default_tz, default_offset, "2024-03-05", "ISO, MDY"),
    }
    query = ("select current_setting('TimeZone'), extract(timezone from now())::int, "
             "'2024-03-05'::date::text, current_setting('DateStyle'), pg_backend_pid()")
    pids = []
    for r in range(5):
        for name, conn in (("a", a), ("b", b), ("c", c)) if r % 2 else (("c", c), ("b", b),
                                                                       ("a", a)):
            if r >= 3:
                with conn.transaction():
                    row = conn.execute(query).fetchone()
                    assert conn.execute("show timezone").fetchone()[0] == want[name][0]
            else:
                row = conn.execute(query).fetchone()
            assert row[:4] == want[name], (r, name, row)
            pids.append(row[4])
    if TX:
        assert len(set(pids)) == 1, "the test needs all three on one server"
    # A SET inside a rolled-back transaction is undone for that client only.
    with pytest.raises(psycopg.errors.DivisionByZero):
        with a.transaction():
            a.execute("set timezone = 'UTC'")
            a.execute("select 1 / 0")
    assert a.execute("show timezone").fetchone()[0] == "Asia/Tokyo"
    assert b.execute("show timezone").fetchone()[0] == "America/Sao_Paulo"
    # SET LOCAL lasts for its transaction only.
    with b.transaction():
        b.execute("set local timezone = 'Europe/Lisbon'")
        assert b.execute("show timezone").fetchone()[0] == "Europe/Lisbon"
    assert c.execute("show timezone").fetchone()[0] == default_tz
    assert b.execute("show timezone").fetchone()[0] == "America/Sao_Paulo"
    # set_config() rather than SET; RESET back to the login value.
    assert a.execute("select set_config('TimeZone', 'Asia/Kolkata', false)").fetchone() == (
        "Asia/Kolkata",)
    b.execute("reset timezone")
    for _ in range(2):
        assert c.execute("show timezone").fetchone()[0] == default_tz
        assert a.execute("select current_setting('TimeZone'), "
                         "extract(timezone from now())::int").fetchone() == (
            "Asia/Kolkata", 5 * 3600 + 1800)
        assert b.execute("show timezone").fetchone()[0] == default_tz
        assert b.execute("show datestyle").fetchone()[0] == "SQL, MDY"


def test_search_path_and_application_name_per_client(cratebouncer, pg):
    """Four clients on a pool of 2, concurrently: each SETs its own search_path (a schema
    with its own spt table) and application_name, and for 20 rounds (some in transactions)
    reads its own table and settings."""
    names = ["a", "b", "c", "d"]
    for x in names:
        pg.sql(f"DROP SCHEMA IF EXISTS tx_sp_{x} CASCADE")
        pg.sql(f"CREATE SCHEMA tx_sp_{x} AUTHORIZATION crate")
        pg.sql(f"CREATE TABLE tx_sp_{x}.spt (v text)")
        pg.sql(f"INSERT INTO tx_sp_{x}.spt VALUES ('{x}')")
        pg.sql(f"ALTER TABLE tx_sp_{x}.spt OWNER TO crate")
    cb = start(cratebouncer, pool=2)
    conns = [cb.connect() for _ in names]
    for x, conn in zip(names, conns):
        conn.execute(f"set search_path = tx_sp_{x}, public")
        conn.execute(f"set application_name = 'app-{x}'")

    def client(i):
        x, conn = names[i], conns[i]
        pids = []
        for r in range(20):
            q = ("select v, current_setting('search_path'), current_setting('application_name'),"
                 " pg_backend_pid() from spt")
            if r % 3 == 0:
                with conn.transaction():
                    row = conn.execute(q).fetchone()
            else:
                row = conn.execute(q).fetchone()
            assert row[:3] == (x, f"tx_sp_{x}, public", f"app-{x}"), (r, row)
            pids.append(row[3])
        return pids

    pids = [p for ps in run_threads(client, len(names)) for p in ps]
    check_shared(pids, len(names), pool=2)


def test_startup_parameters_per_client(cratebouncer):
    """Six clients on a pool of 2, each logging in with its own application_name and
    TimeZone (options=-c timezone=...), interleaving queries: each sees its own."""
    cb = start(cratebouncer, pool=2)
    zones = ["UTC", "Asia/Tokyo", "Europe/Lisbon", "America/Sao_Paulo", "Asia/Kolkata",
             "Pacific/Auckland"]
    conns = [cb.connect(application_name=f"start-{i}", options=f"'-c timezone={z}'")
             for i, z in enumerate(zones)]
    for r in range(4):
        for i, conn in enumerate(conns):
            row = conn.execute("select current_setting('application_name'), "
                               "current_setting('TimeZone')").fetchone()
            assert row == (f"start-{i}", zones[i]), (r, i, row)


# ---------------------------------------------------------------------------------------------
# cancel, and a client dying inside a transaction


def test_cancel_reaches_the_right_server(cratebouncer):
    """Two clients on a pool of 2 run pg_sleep(3) at once; cancelling one stops only its
    query, the other's completes; a third client works meanwhile after they finish."""
    cb = start(cratebouncer, pool=2)
    a, b = cb.connect(), cb.connect()
    outcome = {}

    def run(name, conn):
        try:
            outcome[name] = conn.execute("select pg_sleep(3), %s::text", (name,)).fetchone()[1]
        except psycopg.errors.QueryCanceled:
            outcome[name] = "canceled"

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in (("a", a), ("b", b))]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.8)
    a.cancel()
    threads[0].join(TIMEOUT)
    cancel_time = time.monotonic() - started
    threads[1].join(TIMEOUT)
    assert outcome == {"a": "canceled", "b": "b"}
    assert cancel_time < 2.5
    assert a.execute("select 'a again'").fetchone() == ("a again",)
    with cb.connect() as c:
        assert c.execute("select 6 * 7").fetchone() == (42,)


def _killed_client_check(pg, cb, marker):
    """Other clients see no row with v = marker, can write and commit, and the upstream
    has no session left idle in a transaction holding it."""
    wait_until(lambda: not pg.sql("select 1 from pg_stat_activity where usename = 'crate' "
                                  "and state like 'idle in transaction%%'"),
               timeout=TIMEOUT, what="no upstream session idle in transaction")

    def other(i):
        with psycopg.connect(cb.conninfo(), autocommit=True) as conn:
            assert conn.execute("select count(*) from tx_killed where v = %s",
                                (marker,)).fetchone() == (0,)
            with conn.transaction():
                conn.execute("insert into tx_killed values (%s)", (1000 + i,))
                assert conn.execute("select count(*) from tx_killed where v >= 1000 "
                                    "and v = %s", (1000 + i,)).fetchone() == (1,)
            return conn.execute("select now() = statement_timestamp()").fetchone()[0]

    # each client's own autocommit statement starts a transaction of its own
    assert run_threads(other, 6) == [True] * 6
    assert pg.sql("select v from tx_killed order by v") == [(1000 + i,) for i in range(6)]


def test_client_killed_inside_transaction(cratebouncer, pg):
    """A client closes its socket (no Terminate) inside BEGIN right after an INSERT, on a
    pool of 1: the row is never committed and the next clients get a clean server."""
    fresh_table(pg, "tx_killed", "v int")
    cb = start(cratebouncer, pool=1)
    raw = RawConn(cb.host, cb.port).login("crate", "doc")
    raw.query("BEGIN")
    raw.query("INSERT INTO tx_killed VALUES (42)")
    assert raw.query("SELECT count(*) FROM tx_killed") == [["1"]]
    raw.sock.close()
    _killed_client_check(pg, cb, 42)


def test_client_reset_while_query_runs_in_transaction(cratebouncer, pg):
    """A client inside BEGIN (after an INSERT) sends a 2 s query and resets its connection
    (RST) at once, on a pool of 1: the row is never committed and other clients get on."""
    fresh_table(pg, "tx_killed", "v int")
    cb = start(cratebouncer, pool=1)
    raw = RawConn(cb.host, cb.port).login("crate", "doc")
    raw.query("BEGIN")
    raw.query("INSERT INTO tx_killed VALUES (43)")
    payload = b"SELECT pg_sleep(2)\0"
    raw.send(b"Q" + struct.pack("!I", len(payload) + 4) + payload)
    time.sleep(0.2)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.sock.close()
    started = time.monotonic()
    _killed_client_check(pg, cb, 43)
    assert time.monotonic() - started < 15


# ---------------------------------------------------------------------------------------------
# pool_mode per database entry, statement mode, cancels under load


def test_pool_mode_per_database(cratebouncer, upstream):
    """pool_mode=transaction on the [databases] entry (global pool_mode session) and
    pool_size=3: 24 psycopg 3 clients with prepared statements share 3 servers."""
    size = 3 if TX else SESSION_POOL
    cb = cratebouncer(settings={"max_client_conn": 500},
                      databases={"doc": upstream(pool_mode=MODE, pool_size=size)})
    n = 24
    barrier = threading.Barrier(n, timeout=TIMEOUT * 2)

    def client(c):
        with psycopg.connect(cb.conninfo(), autocommit=True, prepare_threshold=0) as conn:
            barrier.wait()
            pids = []
            for r in range(6):
                v, pid = conn.execute("select %s::int * 100 + %s::int, pg_backend_pid()",
                                      (c, r)).fetchone()
                assert v == c * 100 + r
                pids.append(pid)
            return pids

    check_shared([p for ps in run_threads(client, n) for p in ps], n, pool=3)


def test_statement_mode_autocommit_clients(cratebouncer):
    """pool_mode=statement: 30 asyncpg connections (default statement cache) and 30
    psycopg 3 autocommit connections (prepare_threshold=0) on a pool of 5."""
    asyncpg = pytest.importorskip("asyncpg")
    mode = "statement" if TX else "session"
    cb = cratebouncer(settings={"pool_mode": mode, "default_pool_size": POOL if TX else
                                SESSION_POOL, "max_client_conn": 500})
    n = 30

    async def apg(c):
        conn = await asyncpg.connect(**_asyncpg_connect_kw(cb))
        try:
            out = []
            for r in range(5):
                v, pid = await conn.fetchrow("select $1::int - $2::int, pg_backend_pid()", c, r)
                assert v == c - r
                out.append(pid)
            return out
        finally:
            await conn.close()

    async def pg3(c):
        conn = await psycopg.AsyncConnection.connect(cb.conninfo(), autocommit=True,
                                                     prepare_threshold=0)
        try:
            out = []
            for r in range(5):
                cur = await conn.execute("select %s::text || %s::text, pg_backend_pid()",
                                         (f"s{c}", r))
                v, pid = await cur.fetchone()
                assert v == f"s{c}{r}"
                out.append(pid)
            return out
        finally:
            await conn.close()

    async def main():
        return await gather_all([apg(c) for c in range(n)] + [pg3(c) for c in range(n)])

    check_shared([p for ps in run_async(main()) for p in ps], 2 * n)


def test_asyncpg_timeouts_cancel_their_own_queries(cratebouncer):
    """5 asyncpg connections fill the pool of 5 with pg_sleep(20) under timeout=1: asyncpg
    cancels each (CancelRequest), the servers come free at once and 25 other connections'
    queries complete long before the sleeps would have; the cancelled connections go on."""
    asyncpg = pytest.importorskip("asyncpg")
    cb = start(cratebouncer)
    sleepers, others = POOL, 25

    async def sleeper(c, conn):
        try:
            await conn.fetchval("select pg_sleep(20)", timeout=1)
        except asyncio.TimeoutError:
            pass
        else:
            raise AssertionError("pg_sleep(20) finished within its timeout")
        return await conn.fetchval("select $1::int * 2", c, timeout=TIMEOUT)

    async def other(c, conn):
        await asyncio.sleep(0.3)  # after the sleepers took the servers
        return await conn.fetchval("select $1::int + 1000", c, timeout=TIMEOUT)

    async def main():
        conns = await gather_all([asyncpg.connect(**_asyncpg_connect_kw(cb))
                                  for _ in range(sleepers + others)])
        try:
            started = time.monotonic()
            res = await gather_all([sleeper(c, conns[c]) for c in range(sleepers)] +
                                   [other(c, conns[sleepers + c]) for c in range(others)])
            return res, time.monotonic() - started
        finally:
            await gather_all([c.close() for c in conns])

    res, elapsed = run_async(main())
    assert res == [c * 2 for c in range(sleepers)] + [c + 1000 for c in range(others)]
    assert elapsed < 8, f"took {elapsed:.1f} s: the sleeps were not cancelled"


# ---------------------------------------------------------------------------------------------
# max_prepared_statements


def test_prepared_statements_evicted_per_server(cratebouncer):
    """max_prepared_statements=3: 20 asyncpg connections each prepare 8 statements and
    cycle through them 4 times on a pool of 5, so the servers keep evicting statements
    and preparing them again; every result is right."""
    asyncpg = pytest.importorskip("asyncpg")
    cb = start(cratebouncer, max_prepared_statements=3)
    n, kinds = 20, 8

    async def client(c):
        conn = await asyncpg.connect(**_asyncpg_connect_kw(cb))
        try:
            stmts = [await conn.prepare(f"select $1::int * {k + 2}, pg_backend_pid()")
                     for k in range(kinds)]
            pids = []
            for r in range(4):
                for k, st in enumerate(stmts):
                    v, pid = await st.fetchrow(c + r)
                    assert v == (c + r) * (k + 2)
                    pids.append(pid)
                # and through asyncpg's own statement cache
                assert await conn.fetchval(f"select $1::text || '{r}'", str(c)) == f"{c}{r}"
            return pids
        finally:
            await conn.close()

    async def main():
        return await gather_all([client(c) for c in range(n)])

    check_shared([p for ps in run_async(main()) for p in ps], n)


def test_unnamed_statements_without_tracking(cratebouncer, pg):
    """max_prepared_statements=0 (no tracking): clients that use only unnamed statements or
    the simple protocol, psycopg 3 with prepare_threshold=None and psycopg2, 30 connections
    each on a pool of 5."""
    psycopg2 = pytest.importorskip("psycopg2")
    cb = start(cratebouncer, max_prepared_statements=0)
    n = 30

    def pg3(c):
        with psycopg.connect(cb.conninfo(), autocommit=True, prepare_threshold=None) as conn:
            out = []
            for r in range(8):
                v, pid = conn.execute("select %s::int - %s::int, pg_backend_pid()",
                                      (c, r)).fetchone()
                assert v == c - r
                out.append(pid)
            return out

    def pg2(c):
        conn = psycopg2.connect(cb.conninfo())
        try:
            out = []
            with conn.cursor() as cur:
                for r in range(8):
                    cur.execute("select %s * %s, pg_backend_pid()", (c, r))
                    v, pid = cur.fetchone()
                    conn.commit()
                    assert v == c * r
                    out.append(pid)
            return out
        finally:
            conn.close()

    pids = run_threads(lambda i: pg3(i) if i < n else pg2(i - n), 2 * n)
    check_shared([p for ps in pids for p in ps], 2 * n)


@pytest.mark.parametrize("max_prepared", [200, 0])
def test_asyncpg_statement_cache_disabled(cratebouncer, max_prepared):
    """asyncpg with statement_cache_size=0 (PgBouncer's advice for transaction pooling):
    asyncpg then sends Parse(unnamed), Describe, Flush, reads the parameter types, and only
    then Bind, Execute, Sync, all one implicit transaction that must stay on one server.
    30 such connections next to 30 psycopg 3 ones (also unnamed statements) on a pool of 5."""
    asyncpg = pytest.importorskip("asyncpg")
    cb = start(cratebouncer, max_prepared_statements=max_prepared)
    n = 30

    async def apg(c):
        conn = await asyncpg.connect(statement_cache_size=0, **_asyncpg_connect_kw(cb))
        try:
            out = []
            for r in range(5):
                v, pid = await conn.fetchrow("select $1::int * $2::int, pg_backend_pid()", c, r)
                assert v == c * r
                out.append(pid)
            return out
        finally:
            await conn.close()

    async def pg3(c):
        conn = await psycopg.AsyncConnection.connect(cb.conninfo(), autocommit=True,
                                                     prepare_threshold=None)
        try:
            out = []
            for r in range(8):
                cur = await conn.execute("select %s::int - %s::int, pg_backend_pid()", (c, r))
                v, pid = await cur.fetchone()
                assert v == c - r
                out.append(pid)
            return out
        finally:
            await conn.close()

    async def main():
        return await gather_all([apg(c) for c in range(n)] + [pg3(c) for c in range(n)])

    check_shared([p for ps in run_async(main()) for p in ps], 2 * n)


# ---------------------------------------------------------------------------------------------
# errors, COPY, server-side cursors


def test_errors_inside_transactions_and_prepared(cratebouncer, pg):
    """30 clients: psycopg2 transactions failing half way (the server stays with the failed
    transaction until ROLLBACK, and nothing of it is committed), and psycopg 3 prepared
    statements that fail at Parse (undefined table) or at execution (division by zero)
    between good ones; every error has its own SQLSTATE and the connections go on."""
    psycopg2 = pytest.importorskip("psycopg2")
    import psycopg2.errors
    fresh_table(pg, "tx_err", "client int, v int")
    cb = start(cratebouncer)
    n = 15

    def pg2(c):
        conn = psycopg2.connect(cb.conninfo())
        try:
            cur = conn.cursor()
            for r in range(4):
                cur.execute("insert into tx_err values (%s, %s)", (c, -1))
                with pytest.raises(psycopg2.errors.DivisionByZero):
                    cur.execute("select %s / 0", (r,))
                with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
                    cur.execute("select 1")
                conn.rollback()
                cur.execute("insert into tx_err values (%s, %s)", (c, r))
                conn.commit()
            cur.execute("select count(*), sum(v) from tx_err where client = %s", (c,))
            return cur.fetchone()
        finally:
            conn.close()

    def pg3(c):
        with psycopg.connect(cb.conninfo(), autocommit=True, prepare_threshold=0) as conn:
            for r in range(4):
                with pytest.raises(psycopg.errors.UndefinedTable):
                    conn.execute(f"select v from tx_no_such_table_{c % 3} where v = %s", (r,))
                with pytest.raises(psycopg.errors.DivisionByZero):
                    conn.execute("select %s::int / %s::int", (c, 0))
                assert conn.execute("select %s::int / %s::int", (c * 6, 3)).fetchone() == (2 * c,)
                with pytest.raises(psycopg.errors.SyntaxError):
                    conn.execute("selec %s::int", (c,))
                assert conn.execute("select %s::int + 1", (c,)).fetchone() == (c + 1,)
            return True

    res = run_threads(lambda i: pg2(i) if i < n else pg3(i - n), 2 * n)
    assert res[:n] == [(4, 6)] * n
    assert res[n:] == [True] * n
    assert pg.sql("select count(*) from tx_err where v < 0") == [(0,)]


def test_copy_in_and_out(cratebouncer, pg):
    """20 psycopg 3 clients each COPY 200 rows in (inside a transaction) and COPY their
    rows out again, concurrently on a pool of 5; psycopg2's copy_expert too."""
    psycopg2 = pytest.importorskip("psycopg2")
    import io
    fresh_table(pg, "tx_copy", "client int, i int, t text")
    cb = start(cratebouncer)
    n, rows = 20, 200

    def pg3(c):
        with psycopg.connect(cb.conninfo(), autocommit=True) as conn:
            with conn.transaction():
                with conn.cursor().copy("copy tx_copy from stdin") as cp:
                    for i in range(rows):
                        cp.write_row((c, i, f"c{c}-{i}"))
                n_in = conn.execute("select count(*) from tx_copy where client = %s",
                                    (c,)).fetchone()[0]
            out = []
            with conn.cursor().copy(f"copy (select i, t from tx_copy where client = {c} "
                                    "order by i) to stdout") as cp:
                for row in cp.rows():
                    out.append(row)
            assert out == [(str(i), f"c{c}-{i}") for i in range(rows)]
            return n_in

    def pg2(c):
        conn = psycopg2.connect(cb.conninfo())
        try:
            cur = conn.cursor()
            data = "".join(f"{c}\t{i}\tp{c}-{i}\n" for i in range(rows))
            cur.copy_expert("copy tx_copy from stdin", io.StringIO(data))
            conn.commit()
            buf = io.StringIO()
            cur.copy_expert(f"copy (select client, i, t from tx_copy where client = {c} "
                            "order by i) to stdout", buf)
            conn.commit()
            assert buf.getvalue() == data
            return rows
        finally:
            conn.close()

    res = run_threads(lambda i: pg3(i) if i < n else pg2(i), n + 10)
    assert res == [rows] * (n + 10)
    assert pg.sql("select count(*), count(distinct client) from tx_copy") == [
        ((n + 10) * rows, n + 10)]


def test_psycopg2_named_cursors(cratebouncer):
    """psycopg2 named (server-side) cursors, DECLARE and FETCH inside a transaction, in 30
    threads at once with a small itersize: every client walks its own 1000 rows."""
    psycopg2 = pytest.importorskip("psycopg2")
    cb = start(cratebouncer)
    n = 30

    def client(c):
        conn = psycopg2.connect(cb.conninfo())
        try:
            with conn.cursor(name=f"walk_{c % 3}") as cur:
                cur.itersize = 64
                cur.execute("select g * %s from generate_series(1, 1000) g", (c,))
                total = count = 0
                for (v,) in cur:
                    total += v
                    count += 1
            conn.commit()
            return count, total
        finally:
            conn.close()

    assert run_threads(client, n) == [(1000, c * 500500) for c in range(n)]


def test_large_values_and_results(cratebouncer):
    """30 psycopg 3 clients (prepared statements) send parameters of 64 KiB to 1 MiB, get
    large values and 20000-row results back, concurrently on a pool of 5: every byte
    arrives (md5 computed upstream against the client's own)."""
    import hashlib
    cb = start(cratebouncer)
    n = 30

    def client(c):
        with psycopg.connect(cb.conninfo(), autocommit=True, prepare_threshold=0) as conn:
            for r in range(3):
                size = (64 << 10) << ((c + r) % 5)  # 64 KiB .. 1 MiB
                value = hashlib.sha256(f"{c}.{r}".encode()).hexdigest() * (size // 64)
                got = conn.execute("select md5(%s::text), length(%s::text)",
                                   (value, value)).fetchone()
                assert got == (hashlib.md5(value.encode()).hexdigest(), len(value))
                back = conn.execute("select repeat(%s::text, %s::int)",
                                    (f"<{c}>", size // 4)).fetchone()[0]
                assert back == f"<{c}>" * (size // 4)
            rows = conn.execute("select g, md5(g::text) from generate_series(1, %s::int) g",
                                (20000,)).fetchall()
            assert len(rows) == 20000
            assert rows[c] == (c + 1, hashlib.md5(str(c + 1).encode()).hexdigest())
            return sum(g for g, _ in rows)

    assert run_threads(client, n) == [20000 * 20001 // 2] * n
