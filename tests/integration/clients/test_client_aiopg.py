"""aiopg (1.4.0, on the psycopg2 of tests/requirements.txt; tests/venv.sh installs it without
its declared psycopg2-binary) through cratebouncer with no password and no TLS, as CrateDB's
Python guide uses it: its snippet in docs/cratedb-cloud.md, %s and %(name)s parameters, 5000
rows, the upstream's error and the connection going on, and tasks sharing a pool of 2. aiopg is
always in autocommit mode; like psycopg2 it would send SET DATESTYLE at connect on CrateDB,
which cratebouncer's welcome makes unneeded (and with the default enable_hstore=True it looks
the hstore type up: both settings are tried here)."""

import asyncio

import aiopg
import psycopg2
import pytest

from conftest import run_snippet
from helpers import TIMEOUT
from pgwire_checks import (CLIENTS, SUMMITS, check_error, check_rows, cluster_name, missing,
                           new_tag, rows_sql)


def dsn(b):
    return f"host={b.host} port={b.port} dbname=doc user=admin sslmode=disable"


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 45))


def test_snippet(sidecar, pg_target):
    b = sidecar()
    out = run_snippet("aiopg", b).splitlines()
    assert out[0] == cluster_name(pg_target)
    assert "Mont Blanc" in out[1], out


@pytest.mark.parametrize("hstore", [False, True], ids=["no-hstore", "hstore"])
def test_parameters_rows_error(sidecar, pg_target, hstore):
    b = sidecar()

    async def main():
        async with aiopg.create_pool(dsn(b), minsize=1, maxsize=2, timeout=TIMEOUT,
                                     enable_hstore=hstore) as pool:
            async with pool.acquire() as conn:
                async with conn.cursor() as cur:
                    await cur.execute("SELECT %s, %s, %s, %s", ("O'Brien", 42, 1.5, None))
                    assert await cur.fetchone() == ("O'Brien", 42, 1.5, None)
                    for name, height in SUMMITS.items():
                        await cur.execute("SELECT height FROM sys.summits WHERE mountain = "
                                          "%(m)s", {"m": name})
                        assert await cur.fetchall() == [(height,)]
                    t = new_tag()
                    await cur.execute(rows_sql(t))
                    check_rows(await cur.fetchall(), t)
                    await cur.execute("SELECT %s, generate_series FROM generate_series(1, %s)",
                                      (t, 3000))
                    check_rows(await cur.fetchall(), t, 3000)
                    with pytest.raises(psycopg2.Error) as e:
                        await cur.execute(f"SELECT v FROM {missing(t)}")
                    check_error(pg_target, e.value, missing(t))
                    await cur.execute("SELECT name FROM sys.cluster")
                    assert await cur.fetchone() == (cluster_name(pg_target),)
            # the pool's connection after the error, again
            async with pool.acquire() as conn:
                async with conn.cursor() as cur:
                    await cur.execute("SELECT %s", (t,))
                    assert await cur.fetchone() == (t,)

    run(main())


def test_tasks_share_a_small_pool(sidecar):
    b = sidecar(pool=2)
    q = "SELECT %s, generate_series FROM generate_series(1, %s)"

    async def own_connection(i):
        async with aiopg.connect(dsn(b), timeout=TIMEOUT, enable_hstore=False) as conn:
            async with conn.cursor() as cur:
                for _ in range(3):
                    t = new_tag(i)
                    await cur.execute(q, (t, 400))
                    check_rows(await cur.fetchall(), t, 400)

    async def main():
        await asyncio.gather(*(own_connection(i) for i in range(CLIENTS)))
        if b.mode != "transaction":
            return
        # an aiopg pool of 8 over cratebouncer's 2: only transaction mode shares them (in
        # session mode each of its connections keeps a server from its connect on)
        async with aiopg.create_pool(dsn(b), minsize=CLIENTS, maxsize=CLIENTS, timeout=TIMEOUT,
                                     enable_hstore=False) as pool:
            async def one(i):
                t = new_tag(i)
                async with pool.acquire() as conn:
                    async with conn.cursor() as cur:
                        await cur.execute(q, (t, 300))
                        check_rows(await cur.fetchall(), t, 300)
            await asyncio.gather(*(one(i) for i in range(5 * CLIENTS)))

    run(main())
