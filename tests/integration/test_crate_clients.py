"""The pgwire client matrix on a CrateDB upstream: psql, psycopg2, psycopg 3, asyncpg, aiopg,
SQLAlchemy, pandas, Dask, pyodbc with psqlODBC, node-postgres and pgbench through cratebouncer
in session, transaction and statement mode, against the CrateDB stand-in and (when
CB_CRATEDB_PG is set) a real CrateDB. More clients than servers (but in session mode, where
each client keeps its server); every answer carries the literal of the query that asked for
it; an error reaches the client with the upstream's message and the client goes on.

The SQL is what CrateDB accepts: no pg_backend_pid(), no temporary tables, no COPY.
"""

import asyncio
import json
import os
import random
import subprocess
import tempfile

import psycopg
import psycopg2
import pytest

from crate_targets import crate_bouncer, crate_standin, target  # noqa: F401 (fixtures)
from helpers import TIMEOUT, clean_env, run_threads

HERE = os.path.dirname(os.path.abspath(__file__))
ODBC_DRIVER = "/usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so"
PGBENCH = os.environ.get("PGBENCH", "/usr/lib/postgresql/15/bin/pgbench")
CLIENTS = 8
MODES = ["session", "transaction", "statement"]


def start(cratebouncer, target, mode):
    # session mode: a server per client (a client keeps it); otherwise fewer servers
    return crate_bouncer(cratebouncer, target, mode, CLIENTS if mode == "session" else 3,
                         query_wait_timeout=30)


def tag(i):
    return f"t{i}_{random.randrange(1 << 30)}"


def rows_sql(t, n):
    return f"SELECT '{t}' AS tag, generate_series AS x FROM generate_series(1, {n})"


def check_rows(rows, t, n):
    assert len(rows) == n and all(r[0] == t for r in rows), f"rows of another query for {t}"
    assert sorted(int(r[1]) for r in rows) == list(range(1, n + 1))


def dsn(cb):
    return f"host={cb.host} port={cb.port} dbname=doc user=crate connect_timeout={TIMEOUT}"


def url(cb, driver):
    return f"postgresql+{driver}://crate@{cb.host}:{cb.port}/doc"


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_psql(cratebouncer, target, mode):
    cb = start(cratebouncer, target, mode)

    def client(i):
        t = tag(i)
        out = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn(cb), "-c",
                              rows_sql(t, 2000)], env=clean_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        check_rows([line.split("|") for line in out.stdout.split()], t, 2000)
        bad = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", dsn(cb), "-c",
                              f"SELECT v FROM missing_{t}"], env=clean_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        assert bad.returncode != 0 and f"missing_{t}" in bad.stderr

    run_threads(client, CLIENTS)


@pytest.mark.parametrize("mode", MODES)
def test_psycopg2(cratebouncer, target, mode):
    cb = start(cratebouncer, target, mode)

    def client(i):
        conn = psycopg2.connect(dsn(cb))
        conn.autocommit = mode == "statement"
        try:
            cur = conn.cursor()
            for k in range(5):
                t = tag(i)
                cur.execute("SELECT %s, generate_series FROM generate_series(1, %s)", (t, 1500))
                check_rows(cur.fetchall(), t, 1500)
                if not conn.autocommit:
                    conn.commit()
            with pytest.raises(psycopg2.Error) as e:
                cur.execute(f"SELECT v FROM missing_{t}")
            assert f"missing_{t}" in str(e.value)
            if not conn.autocommit:
                conn.commit()  # CrateDB has no ROLLBACK; COMMIT ends its transaction
            cur.execute("SELECT %s", (t,))
            assert cur.fetchone() == (t,)
        finally:
            conn.close()

    run_threads(client, CLIENTS)


@pytest.mark.parametrize("prepare", [None, 0], ids=["unprepared", "prepared"])
@pytest.mark.parametrize("mode", MODES)
def test_psycopg3(cratebouncer, target, mode, prepare):
    cb = start(cratebouncer, target, mode)

    def client(i):
        with psycopg.connect(dsn(cb), autocommit=True, prepare_threshold=prepare) as c:
            for k in range(5):
                t = tag(i)
                rows = c.execute("SELECT %s::text, generate_series FROM generate_series(1, %s)",
                                 (t, 1200)).fetchall()
                check_rows(rows, t, 1200)
            with pytest.raises(psycopg.Error) as e:
                c.execute(f"SELECT v FROM missing_{t}")
            assert f"missing_{t}" in str(e.value)
            assert c.execute("SELECT %s::text", (t,)).fetchone() == (t,)

    run_threads(client, CLIENTS)


@pytest.mark.parametrize("mode", MODES)
def test_asyncpg(cratebouncer, target, mode):
    asyncpg = pytest.importorskip("asyncpg")
    cb = start(cratebouncer, target, mode)

    async def main():
        pool = await asyncpg.create_pool(host=cb.host, port=cb.port, user="crate",
                                         database="doc", min_size=CLIENTS, max_size=CLIENTS,
                                         timeout=TIMEOUT)

        async def one(i):
            t = tag(i)
            rows = await pool.fetch("SELECT $1::text, generate_series FROM generate_series(1, $2)",
                                    t, 1000)
            check_rows([tuple(r) for r in rows], t, 1000)
            try:
                await pool.fetch(f"SELECT v FROM missing_{t}")
                raise AssertionError("no error")
            except asyncpg.PostgresError as e:
                assert f"missing_{t}" in str(e)

        try:
            await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))), 40)
        finally:
            await pool.close()

    asyncio.run(main())


@pytest.mark.parametrize("mode", MODES)
def test_aiopg(cratebouncer, target, mode):
    aiopg = pytest.importorskip("aiopg")
    cb = start(cratebouncer, target, mode)

    async def main():
        async with aiopg.create_pool(dsn(cb), minsize=1, maxsize=CLIENTS, timeout=TIMEOUT) as pool:
            async def one(i):
                t = tag(i)
                async with pool.acquire() as conn:
                    async with conn.cursor() as cur:
                        await cur.execute("SELECT %s, generate_series FROM generate_series(1, %s)",
                                          (t, 800))
                        check_rows(await cur.fetchall(), t, 800)
            await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(30))), 40)

    asyncio.run(main())


@pytest.fixture
def pg_dialect_on_crate(monkeypatch):
    """SQLAlchemy's PostgreSQL dialect cannot parse CrateDB's version() ("CrateDB 6.x ...";
    it fails so connecting to CrateDB directly, too: sqlalchemy-cratedb is CrateDB's own
    dialect): the server version is taken from CrateDB's server_version, 14.0."""
    sa = pytest.importorskip("sqlalchemy")
    from sqlalchemy.dialects.postgresql.base import PGDialect
    monkeypatch.setattr(PGDialect, "_get_server_version_info", lambda self, conn: (14, 0))
    return sa


def _engine(cb):
    sa = pytest.importorskip("sqlalchemy")
    return sa, sa.create_engine(url(cb, "psycopg2"), pool_size=CLIENTS, max_overflow=0,
                                isolation_level="AUTOCOMMIT")


@pytest.mark.parametrize("mode", MODES)
def test_sqlalchemy(cratebouncer, target, mode, pg_dialect_on_crate):
    cb = start(cratebouncer, target, mode)
    sa, engine = _engine(cb)

    def client(i):
        with engine.connect() as c:
            for k in range(3):
                t = tag(i)
                rows = c.execute(sa.text("SELECT :t AS tag, generate_series FROM "
                                         "generate_series(1, :n)"), {"t": t, "n": 700}).fetchall()
                check_rows(rows, t, 700)

    try:
        run_threads(client, CLIENTS)
    finally:
        engine.dispose()


@pytest.mark.parametrize("mode", MODES)
def test_pandas_and_dask(cratebouncer, target, mode, pg_dialect_on_crate):
    pd = pytest.importorskip("pandas")
    cb = start(cratebouncer, target, mode)
    sa, engine = _engine(cb)
    try:
        t = tag(0)
        df = pd.read_sql(rows_sql(t, 3000), engine)
        check_rows(list(df.itertuples(index=False)), t, 3000)
        dd = pytest.importorskip("dask.dataframe")
        target.id_table("cb_dask", 3000, t)
        # read_sql_query, not read_sql_table: the table's reflection reads pg_catalog in ways
        # CrateDB does not answer (directly neither)
        q = sa.select(sa.column("id"), sa.column("v")).select_from(sa.table("cb_dask"))
        ddf = dd.read_sql_query(q, url(cb, "psycopg2"), index_col="id", npartitions=3,
                                engine_kwargs={"isolation_level": "AUTOCOMMIT"})
        got = ddf.compute().rename(columns={"v": "tag"})
        assert len(got) == 3000 and set(got["tag"]) == {t}
    finally:
        engine.dispose()


@pytest.mark.parametrize("mode", MODES)
def test_pyodbc_psqlodbc(cratebouncer, target, mode):
    pyodbc = pytest.importorskip("pyodbc")
    if not os.path.exists(ODBC_DRIVER):
        pytest.fail(f"{ODBC_DRIVER} missing (Debian package odbc-postgresql)")
    cb = start(cratebouncer, target, mode)
    connstr = (f"Driver={ODBC_DRIVER};Servername={cb.host};Port={cb.port};Database=doc;"
               "Uid=crate;Pwd=;sslmode=disable")

    def client(i):
        conn = pyodbc.connect(connstr, timeout=TIMEOUT, autocommit=True)
        try:
            cur = conn.cursor()
            for k in range(3):
                t = tag(i)
                cur.execute("SELECT cast(? AS text), generate_series FROM generate_series(1, 500)", t)
                check_rows([tuple(r) for r in cur.fetchall()], t, 500)
        finally:
            conn.close()

    run_threads(client, CLIENTS)


@pytest.mark.parametrize("mode", MODES)
def test_node_postgres(cratebouncer, target, mode, node_pg):
    script = os.path.join(HERE, "node_crate_pool.js")
    node_path, why = node_pg
    if node_path is None:
        pytest.fail(why)
    cb = start(cratebouncer, target, mode)
    res = subprocess.run(["node", script, str(cb.port), "60", str(CLIENTS)],
                         env={**os.environ, "NODE_PATH": node_path},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=50)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["checked"] == 60 * 2 and out["errors"] == 60


@pytest.mark.parametrize("protocol", ["simple", "extended", "prepared"])
@pytest.mark.parametrize("mode", MODES)
def test_pgbench(cratebouncer, target, mode, protocol):
    if not os.path.exists(PGBENCH):
        pytest.fail(f"{PGBENCH} missing (Debian package postgresql-contrib)")
    cb = start(cratebouncer, target, mode)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write("\\set v random(1, 1000000)\nSELECT :v + 1 AS w, :client_id AS c;\n")
        script = f.name
    try:
        res = subprocess.run([PGBENCH, "-n", "-f", script, "-M", protocol, "-c", str(CLIENTS),
                              "-j", "2", "-t", "200", "-h", cb.host, "-p", str(cb.port),
                              "-U", "crate", "doc"], env=clean_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=50)
    finally:
        os.unlink(script)
    assert res.returncode == 0, res.stdout
    assert f"number of transactions actually processed: {CLIENTS * 200}/{CLIENTS * 200}" in res.stdout
