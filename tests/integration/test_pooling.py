"""Session pooling: upstream connections are reused and reset between clients, clients queue
when the pool is full, and the client-side limits answer with their SQLSTATEs."""

import signal
import threading
import time

import pytest

from helpers import TIMEOUT, PgError, RawConn, login_error, wait_until


def test_backend_reused_by_next_client(cratebouncer, upstream, pg):
    """With pool_size=1, consecutive clients are served by the same upstream backend."""
    cb = cratebouncer(databases={"doc": upstream(pool_size=1)})
    pids = []
    for _ in range(3):
        with cb.connect() as conn:
            pids.append(conn.execute("select pg_backend_pid()").fetchone()[0])
    assert len(set(pids)) == 1, pids
    assert pg.sql("select usename from pg_stat_activity where pid = %s", (pids[0],)) == [("crate",)]


def test_session_state_reset_between_clients(cratebouncer, upstream):
    """Settings, temp tables and prepared statements of one client are gone for the next client
    on the same backend (server_reset_query, DISCARD ALL by default)."""
    cb = cratebouncer(databases={"doc": upstream(pool_size=1)})
    with cb.connect() as conn:
        pid1 = conn.execute("select pg_backend_pid()").fetchone()[0]
        conn.execute("set application_name = 'leaky'")
        conn.execute("create temp table leak_tmp (x int)")
        conn.execute("prepare leak_stmt as select 1")
        assert conn.execute("show application_name").fetchone() == ("leaky",)
    with cb.connect() as conn:
        pid2, app, tmp, prepared = conn.execute(
            "select pg_backend_pid(), current_setting('application_name'), "
            "to_regclass('pg_temp.leak_tmp'), "
            "(select count(*) from pg_prepared_statements where name = 'leak_stmt')").fetchone()
    assert pid2 == pid1, "the test needs the same backend"
    assert app != "leaky"
    assert tmp is None
    assert prepared == 0


def test_clients_queue_for_a_full_pool(cratebouncer, upstream, pg):
    """pool_size=2 and 6 concurrent clients each sleeping 0.5 s: all succeed, they wait their
    turn (>= 1.5 s in total), and the upstream never sees more than 2 connections."""
    since = pg.sql("select now()")[0][0]
    cb = cratebouncer(databases={"doc": upstream(pool_size=2)})
    count_sql = ("select count(*) from pg_stat_activity where usename = 'crate' "
                 "and backend_start >= %s")
    peak, done = [0], threading.Event()

    def monitor():
        with pg.connect() as admin:
            while not done.is_set():
                n = admin.execute(count_sql, (since,)).fetchone()[0]
                peak[0] = max(peak[0], n)
                time.sleep(0.02)

    results, errors = [], []
    barrier = threading.Barrier(6, timeout=TIMEOUT)

    def client():
        try:
            barrier.wait()
            with cb.connect() as conn:
                results.append(conn.execute("select pg_backend_pid(), pg_sleep(0.5)")
                               .fetchone()[0])
        except Exception as e:  # reported below
            errors.append(repr(e))

    mon = threading.Thread(target=monitor)
    mon.start()
    threads = [threading.Thread(target=client) for _ in range(6)]
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 2)
        elapsed = time.monotonic() - started
    finally:
        done.set()
        mon.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "clients still running"
    assert errors == []
    assert len(results) == 6
    assert len(set(results)) <= 2, results
    assert elapsed >= 1.4, f"6 x 0.5 s over 2 connections took only {elapsed:.2f} s"
    assert 1 <= peak[0] <= 2, f"upstream saw {peak[0]} connections"


def test_max_client_conn(cratebouncer):
    """Beyond max_client_conn, a new client is refused with 53300; once a client leaves, a new
    one gets in again."""
    cb = cratebouncer(settings={"max_client_conn": 2})
    first = cb.connect()
    second = cb.connect()
    assert first.execute("select 1").fetchone() == (1,)
    assert second.execute("select 1").fetchone() == (1,)
    err = login_error(cb.host, cb.port)
    assert err.sqlstate == "53300"
    assert "no more connections allowed (max_client_conn)" in err.message
    first.close()
    deadline = time.monotonic() + TIMEOUT
    while True:  # the daemon notices the close asynchronously
        try:
            with cb.connect() as conn:
                assert conn.execute("select 2").fetchone() == (2,)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_query_wait_timeout(cratebouncer, upstream):
    """A client waiting longer than query_wait_timeout for a server gets 08P01
    'query_wait_timeout'; the client holding the server is unaffected."""
    cb = cratebouncer(settings={"query_wait_timeout": 1},
                      databases={"doc": upstream(pool_size=1)})
    holder = cb.connect()
    assert holder.execute("select 1").fetchone() == (1,)
    started = time.monotonic()
    waiter = RawConn(cb.host, cb.port)
    try:
        with pytest.raises(PgError) as exc:
            waiter.login("crate", "doc")
            waiter.query("select 1")
    finally:
        waiter.close()
    elapsed = time.monotonic() - started
    assert exc.value.sqlstate == "08P01"
    assert exc.value.message.startswith("query_wait_timeout")
    assert 0.9 <= elapsed < 8, f"gave up after {elapsed:.2f} s"
    assert holder.execute("select 2").fetchone() == (2,)


def test_min_pool_size_opens_connections_from_the_start(cratebouncer, upstream, pg):
    """An entry with its own user= and min_pool_size=3 has its 3 upstream connections open
    before any client came (a warm pool: the first clients do not wait for logins); one
    whose user comes from the client (no user=, here the same upstream user) has none until
    a client logs in. A reload that points the entry at another database moves the warm
    connections there; one that takes the entry out leaves none (the old pools are no
    longer kept at min_pool_size: their idle connections close by server_idle_timeout)."""
    since = pg.sql("select now()")[0][0]
    count_sql = ("select count(*) from pg_stat_activity where usename = 'crate' "
                 "and backend_start >= %s and datname = %s")

    def upstream_connections(want, datname="doc"):
        """The count once it is want (AssertionError after TIMEOUT s)."""
        wait_until(lambda: pg.sql(count_sql, (since, datname))[0][0] == want, TIMEOUT,
                   f"{want} connections to {datname}", interval=0.1)
        return want

    cb = cratebouncer(settings={"server_idle_timeout": 1, "auth_type": "trust"},
                      databases={"doc": upstream(min_pool_size=3),
                                 "nouser": upstream(min_pool_size=2, user=None, password=None)})
    assert upstream_connections(3) == 3
    time.sleep(1.5)  # past server_idle_timeout: min_pool_size keeps them, none for "nouser"
    assert pg.sql(count_sql, (since, "doc"))[0][0] == 3
    with cb.connect() as conn:  # the first client is served by one of them
        pid = conn.execute("select pg_backend_pid()").fetchone()[0]
    assert pg.sql("select backend_start >= %s from pg_stat_activity where pid = %s",
                  (since, pid)) == [(True,)]
    assert pg.sql(count_sql, (since, "doc"))[0][0] == 3
    cb.databases["doc"] = upstream(min_pool_size=3, dbname="postgres")
    cb.write_config()
    cb.proc.send_signal(signal.SIGHUP)
    assert upstream_connections(3, "postgres") == 3
    assert upstream_connections(0, "doc") == 0
    del cb.databases["doc"]
    cb.write_config()
    cb.proc.send_signal(signal.SIGHUP)
    assert upstream_connections(0, "postgres") == 0
