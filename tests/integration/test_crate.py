"""cratebouncer on a CrateDB upstream (CrateDB mode): each way in which CrateDB's pgwire
dialect breaks a PostgreSQL pooler, reproduced through cratebouncer and checked by what
every client receives.

Targets: "standin" is tests/support/crate_pgwire.py (CrateDB's dialect in front of the suite's
PostgreSQL, each behaviour from CrateDB's source), always run. "cratedb" is a real CrateDB
whose address CB_CRATEDB_PG gives, as a libpq conninfo with TLS, e.g.
    CB_CRATEDB_PG="host=localhost port=5432 user=crate password=... dbname=doc
                   sslmode=verify-full sslrootcert=/path/ca.pem"
and is skipped, with that reason shown, when the variable is not set.
"""

import asyncio
import os
import random
import socket
import struct
import threading
import time

import psycopg
import psycopg2
import pytest
from crate_targets import crate_bouncer, crate_standin, target  # noqa: F401 (fixtures)
from helpers import TIMEOUT, PgError, RawConn, console, run_threads, show, wait_until

# the mixed-load isolation test: seconds (the issue asks for 60; CI may shorten it)
ISOLATION_SECONDS = float(os.environ.get("CB_CRATE_ISOLATION_SECONDS", "60"))
# a query that does not end by itself within a test's time: it is cancelled
ENDLESS = "SELECT count(*) FROM generate_series(1, 2000000000)"



def bouncer(cratebouncer, target, mode="transaction", pool=2, **settings):
    return crate_bouncer(cratebouncer, target, mode, pool, **settings)


def lit(i):
    return f"c{i}_{random.randrange(1 << 30)}"


def rows_query(tag, n):
    # generate_series in both dialects; every row carries the query's own literal
    return f"SELECT '{tag}' AS tag, generate_series AS x FROM generate_series(1, {n})"


# ---------------------------------------------------------------------------------------------
# the mode is recognised


def test_crate_mode_recognised(cratebouncer, target):
    cb = bouncer(cratebouncer, target)
    with cb.connect() as c:
        assert c.info.parameter_status("crate_version"), "the welcome lacks crate_version"
        assert c.execute("SELECT 1").fetchone()[0] == 1
    wait_until(lambda: "the upstream is CrateDB" in cb.log_text(), what="CrateDB mode in the log")


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_psycopg2_connect_is_no_upstream_round_trip(cratebouncer, target, mode):
    """CrateDB reports its date style under the lower-case key "datestyle". The welcome also
    carries it as "DateStyle", the name libpq's users look up, so psycopg2 finds ISO and sends
    no SET DATESTYLE at connect: no server is needed until its first query."""
    cb = bouncer(cratebouncer, target, mode=mode, admin_users="cbadmin")
    adm = console(cb)
    with cb.connect() as first:  # the pool's first login learns the welcome
        first.execute("SELECT 1")
    adm.execute("RECONNECT doc")
    wait_until(lambda: show(adm, "SERVERS") == [], 5, "the pool emptied by RECONNECT")
    conn = psycopg2.connect(host=cb.host, port=cb.port, dbname="doc", user="crate",
                            connect_timeout=TIMEOUT)
    try:
        conn.autocommit = True
        assert conn.get_parameter_status("DateStyle") == "ISO"
        assert conn.get_parameter_status("datestyle") == "ISO"
        time.sleep(0.2)
        assert show(adm, "SERVERS") == [], "psycopg2's connect reached the upstream"
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        assert len(show(adm, "SERVERS")) == 1
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_client_leaving_in_a_transaction_keeps_the_server(cratebouncer, target, mode):
    """psycopg2 (autocommit off) sends BEGIN before its first query, and a client often
    closes without COMMIT. On CrateDB that transaction is only a name for cursors WITHOUT
    HOLD: the server is reset (COMMIT; CLOSE ALL; ...) and kept, not closed (a new TLS
    connection and login each time), and the next client finds no transaction and none of
    the cursors."""
    cb = bouncer(cratebouncer, target, mode=mode, pool=1, admin_users="cbadmin")
    adm = console(cb)
    conn = psycopg2.connect(host=cb.host, port=cb.port, dbname="doc", user="crate",
                            connect_timeout=TIMEOUT)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")  # after psycopg2's BEGIN
            cur.execute("DECLARE left_open CURSOR FOR SELECT 1")
            cur.execute("DECLARE held CURSOR WITH HOLD FOR SELECT 2")
        before = show(adm, "SERVERS")
        assert len(before) == 1, before
    finally:
        conn.close()  # no COMMIT
    servers = wait_until(lambda: (lambda s: s if s and s[0]["state"] == "idle" else None)(
        show(adm, "SERVERS")), 5, "the server back in the pool")
    assert [s["ptr"] for s in servers] == [before[0]["ptr"]], (before, servers)
    assert servers[0]["connect_time"] == before[0]["connect_time"]
    assert "client left in the middle" not in cb.log_text()
    with psycopg.connect(cb.conninfo(), autocommit=True) as c:
        for cursor in ("left_open", "held"):
            with pytest.raises(psycopg.Error):
                c.execute(f"FETCH 1 FROM {cursor}")
        # outside a transaction again: CrateDB refuses a cursor WITHOUT HOLD
        with pytest.raises(psycopg.Error) as e:
            c.execute("DECLARE again CURSOR FOR SELECT 1")
        assert "transaction blocks" in str(e.value), e.value
        assert c.execute("SELECT 3").fetchone()[0] == 3
    assert [s["ptr"] for s in show(adm, "SERVERS")] == [before[0]["ptr"]]


@pytest.mark.parametrize("kind", ["postgresql", "cratedb"])
def test_server_kind_overrides(cratebouncer, target, pg, upstream, kind):
    """server_kind=cratedb turns CrateDB mode on for an upstream that does not report
    crate_version (the suite's PostgreSQL, where SET name TO DEFAULT works too);
    server_kind=postgresql turns it off on CrateDB, where the PostgreSQL replay (RESET name)
    then fails: the override is taken, and the mode is why the replay works."""
    if kind == "postgresql":
        db = target.entry(server_kind="postgresql")
    else:
        db = upstream(server_kind="cratedb")
    cb = cratebouncer(settings={"pool_mode": "transaction", "default_pool_size": 1},
                      databases={"doc": db})
    with psycopg.connect(cb.conninfo(), autocommit=True) as a, \
            psycopg.connect(cb.conninfo(), autocommit=True) as b:
        a.execute("SET statement_timeout = '8s'")
        assert _show(a, "statement_timeout") == "8s"
        if kind == "cratedb":
            assert _show(b, "statement_timeout") in ("0", "0s")
        else:
            _show(b, "statement_timeout")
    log = cb.log_text()
    assert ("the upstream is CrateDB" in log) == (kind == "cratedb"), log
    assert ("failed on the upstream" in log) == (kind == "postgresql"), log


# ---------------------------------------------------------------------------------------------
# pipelining: no client ever gets another's rows


def test_no_rows_reach_another_client(cratebouncer, target):
    """Many clients on 2 servers, pipeline_depth at its default: each client's rows are
    its own (with pipelining on CrateDB they would interleave). pipeline_max_query_time is
    raised so that every query would qualify for pipelining on a PostgreSQL upstream."""
    cb = bouncer(cratebouncer, target, pool=2, pipeline_max_query_time=5)

    def client(i):
        with psycopg.connect(cb.conninfo(), autocommit=True) as c:
            for k in range(15):
                tag = lit(i)
                n = random.choice((1, 3, 50, 400))
                got = c.execute(rows_query(tag, n)).fetchall()
                assert [r[0] for r in got] == [tag] * n, f"client {i} got rows of another query"
                assert sorted(r[1] for r in got) == list(range(1, n + 1))

    run_threads(client, 24)


# ---------------------------------------------------------------------------------------------
# settings


def _show(conn, name):
    return conn.execute(f"SHOW {name}").fetchone()[0]


def test_settings_follow_clients_with_set_to_default(cratebouncer, target):
    """One server, clients with and without their own search_path and statement_timeout:
    each sees its own values (the replay is SET ... TO DEFAULT, never RESET name)."""
    cb = bouncer(cratebouncer, target, pool=1)
    with target.direct() as d:
        default_sp = _show(d, "search_path")
        default_st = _show(d, "statement_timeout")
    with target.direct() as d:
        d.execute("SET search_path TO other")
        d.execute("SET statement_timeout = '7s'")
        other_sp, other_st = _show(d, "search_path"), _show(d, "statement_timeout")
    a = psycopg.connect(cb.conninfo(), autocommit=True)
    b = psycopg.connect(cb.conninfo(), autocommit=True)
    try:
        a.execute("SET search_path TO other")
        a.execute("SET statement_timeout = '7s'")
        for _ in range(3):
            assert (_show(b, "search_path"), _show(b, "statement_timeout")) == (default_sp, default_st)
            assert (_show(a, "search_path"), _show(a, "statement_timeout")) == (other_sp, other_st)
        a.execute("SET search_path TO DEFAULT")
        assert _show(a, "search_path") == default_sp
    finally:
        a.close()
        b.close()
    assert "failed on the upstream" not in cb.log_text()


@pytest.mark.parametrize("query", [
    b"/* /* */ SELECT 1; SET search_path TO cb_lex; SELECT 2 -- */",
    b"SELECT E'\\\\''; SET search_path TO cb_lex; SELECT ''",
], ids=["comments do not nest", "escape string backslashes"])
def test_a_set_read_as_crate_reads_it(cratebouncer, target, query):
    """The Query's SET is a statement of its own only as CrateDB's lexer reads the text (its
    block comments do not nest; E'\\\\'' is closed by its last quote, where PostgreSQL reads
    a backslash and a doubled quote): the tracking must read it so too, or the next client
    of the server gets the search_path. The stand-in splits statements its own way and runs
    them on PostgreSQL: real CrateDB only."""
    if target.name != "cratedb":
        pytest.skip("CrateDB's lexer: only a real CrateDB has it")
    with target.direct() as d:
        default = _show(d, "search_path")
        d.execute("SET search_path TO cb_lex")
        want = _show(d, "search_path")
    cb = bouncer(cratebouncer, target, pool=1)
    a = psycopg.connect(cb.conninfo(), autocommit=True)
    b = psycopg.connect(cb.conninfo(), autocommit=True)
    try:
        with a.cursor() as cur:
            cur.execute(query)
        for _ in range(3):
            assert _show(b, "search_path") == default
            assert _show(a, "search_path") == want
    finally:
        a.close()
        b.close()


def test_a_changed_session_user_reaches_no_other_client(cratebouncer, target):
    """SET SESSION AUTHORIZATION changes the session's user on CrateDB, and nothing resets it
    but RESET SESSION AUTHORIZATION: the next client of the server would run as that user.
    The server is closed after its client instead. Real CrateDB only (the stand-in's
    PostgreSQL refuses the statement to a user that is no superuser)."""
    if target.name != "cratedb":
        pytest.skip("SET SESSION AUTHORIZATION: only a real CrateDB runs it for this user")
    with target.direct() as d:
        d.execute("DROP USER IF EXISTS cb_other")
        d.execute("CREATE USER cb_other")
        login = d.execute("SELECT current_user").fetchone()[0]
    cb = bouncer(cratebouncer, target, pool=1)
    a = psycopg.connect(cb.conninfo(), autocommit=True)
    b = psycopg.connect(cb.conninfo(), autocommit=True)
    try:
        a.execute("SET SESSION AUTHORIZATION cb_other")
        for _ in range(3):
            assert b.execute("SELECT current_user").fetchone()[0] == login
            a.execute("SELECT 1")
    finally:
        a.close()
        b.close()
        with target.direct() as d:
            d.execute("DROP USER IF EXISTS cb_other")


def test_startup_options_reach_crate(cratebouncer, target):
    """options=-c statement_timeout=... is applied, as CrateDB applies it directly."""
    cb = bouncer(cratebouncer, target, pool=1)
    with target.direct(options="-c statement_timeout=9s") as d:
        want = _show(d, "statement_timeout")
    with target.direct() as d:
        default = _show(d, "statement_timeout")
    assert want != default
    with psycopg.connect(cb.conninfo(options="'-c statement_timeout=9s'"), autocommit=True) as c, \
            psycopg.connect(cb.conninfo(), autocommit=True) as other:
        for _ in range(2):
            assert _show(c, "statement_timeout") == want
            assert _show(other, "statement_timeout") == default


# ---------------------------------------------------------------------------------------------
# transactions and cursors


def test_psycopg2_begin_declare_fetch(cratebouncer, target):
    """psycopg2's BEGIN (answered 'I' by CrateDB) holds the server: its named cursor's
    DECLARE/FETCH/CLOSE run on one connection, for many threads on 2 servers."""
    cb = bouncer(cratebouncer, target, pool=2)

    def client(i):
        conn = psycopg2.connect(host=cb.host, port=cb.port, dbname="doc", user="crate",
                                connect_timeout=TIMEOUT)
        try:
            for k in range(3):
                tag = lit(i)
                cur = conn.cursor(name=f"cur_{i}_{k}")
                cur.itersize = 7
                cur.execute(rows_query(tag, 40))
                got = [r for r in cur]
                assert [r[0] for r in got] == [tag] * 40
                cur.close()
                conn.commit()
        finally:
            conn.close()

    run_threads(client, 10)
    # every server is idle and outside a transaction: extended-protocol clients see 'I'
    with psycopg.connect(cb.conninfo(), autocommit=True) as c:
        for _ in range(4):
            c.execute("SELECT 1", prepare=False)
            assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_psycopg3_transactions_and_server_cursors(cratebouncer, target):
    """psycopg 3 transactions with server-side cursors (DECLARE/FETCH in the extended
    protocol, where CrateDB's Sync reports the state from before the statement ran): each
    thread's cursor stays on its server until COMMIT, on 2 servers."""
    cb = bouncer(cratebouncer, target, pool=2)

    def client(i):
        with psycopg.connect(cb.conninfo()) as c:
            for k in range(3):
                tag = lit(i)
                with c.transaction():
                    with c.cursor(name=f"sc_{i}_{k}") as cur:
                        cur.itersize = 9
                        cur.execute(rows_query(tag, 30))
                        assert [r[0] for r in cur] == [tag] * 30

    run_threads(client, 8)


def test_with_hold_cursor_holds_the_server(cratebouncer, target):
    cb = bouncer(cratebouncer, target, pool=1, query_wait_timeout=30)
    a = psycopg.connect(cb.conninfo(), autocommit=True)
    try:
        a.execute("DECLARE hc CURSOR WITH HOLD FOR " + rows_query("held", 5))
        got = []

        def other():
            with psycopg.connect(cb.conninfo(), autocommit=True) as b:
                got.append(b.execute("SELECT 42").fetchone()[0])

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.5)
        assert not got, "another client got the server while a cursor was open on it"
        assert [r[0] for r in a.execute("FETCH 2 FROM hc").fetchall()] == ["held", "held"]
        a.execute("CLOSE hc")
        t.join(TIMEOUT)
        assert got == [42]
    finally:
        a.close()


def test_extended_error_is_not_a_transaction(cratebouncer, target):
    """An autocommit error in the extended protocol (Sync answers 'E' on CrateDB): in
    statement mode the client stays, in transaction mode the server is released."""
    # with a parameter psycopg uses the extended protocol (without, a simple Query)
    bad = ("SELECT v FROM missing_tbl_xyz WHERE v = %s", ("x",))
    cb = bouncer(cratebouncer, target, mode="statement", pool=1)
    with psycopg.connect(cb.conninfo(), autocommit=True) as c:
        for k in range(3):
            with pytest.raises(psycopg.Error) as e:
                c.execute(*bad)
            assert "missing_tbl_xyz" in str(e.value)
            assert c.execute("SELECT 1 + %s", (1,)).fetchone()[0] == 2
    cb2 = bouncer(cratebouncer, target, mode="transaction", pool=1, query_wait_timeout=5)
    a = psycopg.connect(cb2.conninfo(), autocommit=True)
    try:
        with pytest.raises(psycopg.Error):
            a.execute(*bad)
        with psycopg.connect(cb2.conninfo(), autocommit=True) as b:
            assert b.execute("SELECT 3").fetchone()[0] == 3
    finally:
        a.close()


# ---------------------------------------------------------------------------------------------
# prepared statements and search_path


def test_prepared_statements_keyed_by_search_path(cratebouncer, target):
    """CrateDB analyses a statement at Parse against the search_path of that moment: two
    clients preparing the same text under different search_paths read their own tables."""
    target.table("cbs_one", "t", ["one"])
    target.table("cbs_two", "t", ["two"])
    cb = bouncer(cratebouncer, target, pool=1)

    def client(i):
        schema = ("cbs_one", "cbs_two")[i % 2]
        with psycopg.connect(cb.conninfo(), autocommit=True, prepare_threshold=0) as c:
            c.execute(f"SET search_path TO {schema}")
            for _ in range(5):
                assert c.execute("SELECT v FROM t").fetchall() == [(schema[4:],)]

    run_threads(client, 6)


def test_set_takes_effect_when_run_not_when_prepared(cratebouncer, target):
    """One server. A prepared SET is tracked when it is bound and run, not at its Parse: a
    client that only prepares one (libpq's PQprepare, psycopg's prepare_threshold=0, which
    prepares in a transaction of its own) leaves the server's settings as they were, and a
    client whose search_path the server really has stops being served under another one.
    An unnamed statement's SET (PQexecParams) is tracked when it runs."""
    target.table("cbs_one", "tp", ["one"])
    target.table("cbs_two", "tp", ["two"])
    cb = bouncer(cratebouncer, target, pool=1)
    conns = [psycopg.connect(cb.conninfo(), autocommit=True) for _ in range(3)]
    try:
        a, b, c = conns
        c.execute("SET search_path TO cbs_one")
        b.execute("SET search_path TO cbs_two")
        r = a.pgconn.prepare(b"cb_set", b"SET search_path TO cbs_one")
        assert r.status == psycopg.pq.ExecStatus.COMMAND_OK, r.error_message
        for _ in range(2):
            assert c.execute("SELECT v FROM tp").fetchall() == [("one",)]
            assert b.execute("SELECT v FROM tp").fetchall() == [("two",)]
        r = a.pgconn.exec_prepared(b"cb_set", [])
        assert r.status == psycopg.pq.ExecStatus.COMMAND_OK, r.error_message
        assert a.execute("SELECT v FROM tp").fetchall() == [("one",)]
        r = c.pgconn.exec_params(b"SET search_path TO cbs_two", [])
        assert r.status == psycopg.pq.ExecStatus.COMMAND_OK, r.error_message
        for _ in range(2):
            assert a.execute("SELECT v FROM tp").fetchall() == [("one",)]
            assert c.execute("SELECT v FROM tp").fetchall() == [("two",)]
    finally:
        for x in conns:
            x.close()


# ---------------------------------------------------------------------------------------------
# resets, DISCARD ALL, cancel


def _cancel_after(conn, delay):
    t = threading.Timer(delay, conn.cancel)
    t.start()
    return t


def _assert_killed(conn, t0):
    with pytest.raises(psycopg.Error) as e:
        conn.execute(ENDLESS)
    assert time.monotonic() - t0 < TIMEOUT
    st = e.value.sqlstate
    assert st in ("XX000", "57014"), f"not a cancel: {st} {e.value}"
    assert conn.execute("SELECT 5").fetchone()[0] == 5


def test_session_reset_leaves_nothing(cratebouncer, target):
    """Session mode, one server: after a client that changed settings, kept a WITH HOLD
    cursor and prepared statements, the next client finds none of it, and can be
    cancelled (CrateDB's DISCARD ALL would have made the session uncancellable)."""
    cb = bouncer(cratebouncer, target, mode="session", pool=1)
    with target.direct() as d:
        default_sp = _show(d, "search_path")
    with psycopg.connect(cb.conninfo(), autocommit=True, prepare_threshold=0) as a:
        a.execute("SET search_path TO other")
        a.execute("DECLARE left_open CURSOR WITH HOLD FOR SELECT 1")
        a.execute("SELECT 1 + %s", (1,))
    with psycopg.connect(cb.conninfo(), autocommit=True) as b:
        assert _show(b, "search_path") == default_sp
        with pytest.raises(psycopg.Error) as e:
            b.execute("FETCH 1 FROM left_open")
        assert "left_open" in str(e.value)
        t = _cancel_after(b, 1.0)
        _assert_killed(b, time.monotonic())
        t.join()
    assert "failed on the upstream" not in cb.log_text()


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_client_discard_all_keeps_cancel(cratebouncer, target, mode):
    cb = bouncer(cratebouncer, target, mode=mode, pool=1)
    with psycopg.connect(cb.conninfo(), autocommit=True) as c:
        c.execute("SET search_path TO other")
        c.execute("DISCARD ALL")
        # CrateDB's DISCARD ALL keeps settings
        assert _show(c, "search_path").startswith("other")
        t = _cancel_after(c, 1.0)
        _assert_killed(c, time.monotonic())
        t.join()


def test_functioncall_and_copy_messages_answered(cratebouncer, target):
    """A FunctionCall gets an ErrorResponse and ReadyForQuery (CrateDB would leave the
    client waiting); COPY messages outside COPY mode are ignored; the session goes on."""
    cb = bouncer(cratebouncer, target, pool=1)
    r = RawConn(cb.host, cb.port)
    try:
        r.login("crate", "doc")
        # FunctionCall: oid 1, no format codes, no arguments, text result
        body = struct.pack("!IhhH", 1, 0, 0, 0)
        r.send(b"F" + struct.pack("!I", 4 + len(body)) + body)
        with pytest.raises(PgError) as e:
            r.read_result()  # up to its ReadyForQuery
        assert e.value.sqlstate == "0A000" and "FunctionCall" in e.value.message
        r.send(b"c\x00\x00\x00\x04")  # CopyDone
        r.send(b"d\x00\x00\x00\x07abc")  # CopyData
        assert r.query("SELECT 7") == [["7"]]
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------
# the isolation check under mixed load


@pytest.mark.time_limit(ISOLATION_SECONDS + 60)
def test_isolation_under_mixed_load(cratebouncer, target):
    """200 clients (psycopg 3 async, extended protocol; psycopg2 threads, simple protocol)
    mix fast and slow queries, errors and transactions for ISOLATION_SECONDS; every answer
    is checked against the literal of the query that asked for it."""
    cb = bouncer(cratebouncer, target, pool=8, query_wait_timeout=60, pipeline_max_query_time=5)
    deadline = time.monotonic() + ISOLATION_SECONDS
    stats = {"ok": 0, "errors": 0, "mismatch": 0}
    lock = threading.Lock()

    def count(key):
        with lock:
            stats[key] += 1

    def check(tag, rows, n):
        if [r[0] for r in rows] != [tag] * n or len(rows) != n:
            count("mismatch")
            raise AssertionError(f"answer of {tag} has rows of another query")
        count("ok")

    async def async_client(i):
        await asyncio.sleep(random.random())
        async with await psycopg.AsyncConnection.connect(cb.conninfo(), autocommit=True) as c:
            while time.monotonic() < deadline:
                tag, kind = lit(i), random.random()
                if kind < 0.15:
                    try:
                        await c.execute(f"SELECT v FROM missing_{tag}")
                        raise AssertionError("no error")
                    except psycopg.errors.Error as e:
                        assert tag in str(e), f"{tag}: error of another query: {e}"
                        count("errors")
                    continue
                n = 2000 if kind > 0.9 else random.randint(1, 30)
                cur = await c.execute(rows_query(tag, n))
                check(tag, await cur.fetchall(), n)

    async def async_all():
        res = await asyncio.gather(*(async_client(i) for i in range(160)),
                                   return_exceptions=True)
        return [r for r in res if isinstance(r, BaseException)]

    def sync_client(i):
        conn = psycopg2.connect(host=cb.host, port=cb.port, dbname="doc", user="crate",
                                connect_timeout=TIMEOUT)
        conn.autocommit = True
        try:
            cur = conn.cursor()
            time.sleep(random.random())
            while time.monotonic() < deadline:
                tag, kind = lit(1000 + i), random.random()
                if kind < 0.15:
                    try:
                        cur.execute(f"SELECT v FROM missing_{tag}")
                        raise AssertionError("no error")
                    except psycopg2.Error as e:
                        assert tag in str(e), f"{tag}: error of another query: {e}"
                        count("errors")
                    continue
                if kind < 0.3:
                    # a transaction of two statements (BEGIN is answered 'I' by CrateDB)
                    cur.execute("BEGIN")
                    cur.execute(rows_query(tag, 3))
                    check(tag, cur.fetchall(), 3)
                    cur.execute(rows_query(tag + "b", 2))
                    check(tag + "b", cur.fetchall(), 2)
                    cur.execute("COMMIT")
                    continue
                n = 2000 if kind > 0.9 else random.randint(1, 30)
                cur.execute(rows_query(tag, n))
                check(tag, cur.fetchall(), n)
        finally:
            conn.close()

    threads_err = []

    def run_sync():
        try:
            run_threads(sync_client, 40, timeout=ISOLATION_SECONDS + 40)
        except BaseException as e:  # reported below
            threads_err.append(e)

    t = threading.Thread(target=run_sync)
    t.start()
    errors = asyncio.run(async_all())
    t.join(ISOLATION_SECONDS + 45)
    print(f"isolation check on {target.name} for {ISOLATION_SECONDS:g} s, 200 clients: "
          f"{stats['ok']} answers checked, {stats['errors']} errors checked, "
          f"{stats['mismatch']} mismatches")
    assert stats["mismatch"] == 0
    assert not errors, f"{len(errors)} async clients failed: {errors[0]!r}"
    assert not threads_err, f"sync clients failed: {threads_err[0]!r}"
    assert stats["ok"] >= 10 * ISOLATION_SECONDS, "too little load to say anything"
