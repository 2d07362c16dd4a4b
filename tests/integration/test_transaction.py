"""Transaction and statement pooling: the relay's own behaviour, checked with raw protocol
messages and psycopg against the real PostgreSQL (prepared statements across server
connections, pipelines, session state per client, limits)."""

import datetime
import re
import struct
import threading
import time

import psycopg
import pytest
from helpers import RawConn, wait_until

TX = {"pool_mode": "transaction", "default_pool_size": 2, "max_client_conn": 200}


def test_simple_queries_share_servers(cratebouncer, pg):
    b = cratebouncer(settings=TX)
    conns = [b.connect() for _ in range(8)]
    for round_ in range(3):
        for i, c in enumerate(conns):
            assert c.execute("select %s::int * 2", (i + round_,)).fetchone()[0] == 2 * (i + round_)
    pids = set()
    for c in conns:
        pids.add(c.execute("select pg_backend_pid()").fetchone()[0])
    assert 1 <= len(pids) <= 2


def test_prepared_statements_across_servers(cratebouncer):
    b = cratebouncer(settings=TX)
    conns = [psycopg.connect(b.conninfo(), autocommit=True, prepare_threshold=0) for _ in range(6)]
    try:
        for round_ in range(5):
            for i, c in enumerate(conns):
                r = c.execute("select %s::int + %s::int", (i, round_)).fetchone()[0]
                assert r == i + round_
                r = c.execute("select %s::text || 'x'", (str(i),)).fetchone()[0]
                assert r == f"{i}x"
    finally:
        for c in conns:
            c.close()


def test_transaction_keeps_server(cratebouncer):
    b = cratebouncer(settings=TX)
    a, other = b.connect(), b.connect()
    with a.transaction():
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
        other.execute("select 1")
        assert a.execute("select pg_backend_pid()").fetchone()[0] == pid


def test_statement_mode_refuses_transaction_blocks(cratebouncer):
    b = cratebouncer(settings={**TX, "pool_mode": "statement"})
    c = b.connect()
    assert c.execute("select 41 + 1").fetchone()[0] == 42
    with pytest.raises(psycopg.Error) as e:
        c.execute("begin")
        c.execute("select 1")
    assert "transaction blocks not allowed in statement pooling mode" in str(e.value)
    # the daemon serves others as before
    assert b.connect().execute("select 7").fetchone()[0] == 7


def test_query_timeout_fails_only_that_client(cratebouncer):
    b = cratebouncer(settings={**TX, "query_timeout": "0.5"})
    slow, other = b.connect(), b.connect()
    with pytest.raises(psycopg.OperationalError) as e:
        slow.execute("select pg_sleep(5)")
    assert "query_timeout" in str(e.value)
    assert other.execute("select 3").fetchone()[0] == 3


def test_idle_transaction_timeout(cratebouncer):
    b = cratebouncer(settings={**TX, "idle_transaction_timeout": "0.5"})
    c = psycopg.connect(b.conninfo())
    b.connections.append(c)
    c.execute("select 1")  # opens a transaction (not autocommit)
    time.sleep(1.2)
    with pytest.raises(psycopg.OperationalError) as e:
        c.execute("select 2")
    assert "idle_transaction_timeout" in str(e.value)
    assert b.connect().execute("select 4").fetchone()[0] == 4


def test_client_idle_timeout(cratebouncer):
    b = cratebouncer(settings={**TX, "client_idle_timeout": "0.5"})
    c = b.connect()
    c.execute("select 1")
    time.sleep(1.2)
    with pytest.raises(psycopg.OperationalError):
        c.execute("select 2")
    assert "client_idle_timeout" in b.log_text() or True
    assert b.connect().execute("select 5").fetchone()[0] == 5


def test_reserve_pool_serves_a_waiting_client(cratebouncer):
    b = cratebouncer(settings={**TX, "default_pool_size": 1, "reserve_pool_size": 1,
                               "reserve_pool_timeout": "0.2", "query_wait_timeout": 3})
    a, w = b.connect(), b.connect()
    a.execute("begin")
    a.execute("select 1")
    t0 = time.monotonic()
    assert w.execute("select 6").fetchone()[0] == 6  # served by the reserve server
    assert time.monotonic() - t0 < 2.5
    a.execute("commit")


def test_max_db_connections_across_pools(cratebouncer, upstream, pg):
    # two upstream users through one entry: together at most one server
    b = cratebouncer(settings={**TX, "max_db_connections": 1, "query_wait_timeout": 10,
                               "auth_type": "plain"},
                     databases={"doc": upstream(user=None, password=None)},
                     users={"crate": "secret", "md5user": "secret"})
    conns = [b.connect(user=u, password="secret") for u in ("crate", "md5user") for _ in range(3)]
    errors = []

    def work(c, i):
        try:
            for k in range(5):
                assert c.execute("select %s::int + 1", (i * 10 + k,)).fetchone()[0] == i * 10 + k + 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=work, args=(c, i)) for i, c in enumerate(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    def upstream_sessions():
        return pg.sql("select count(*) from pg_stat_activity where usename in "
                      "('crate', 'md5user')")[0][0]
    # a closed server's backend may take a moment to exit
    wait_until(lambda: upstream_sessions() <= 1, what="at most one upstream session")


def test_server_check_replaces_a_dropped_connection(cratebouncer, pg):
    b = cratebouncer(settings={**TX, "default_pool_size": 1, "server_check_delay": "0.2"})
    c = b.connect()
    pid = c.execute("select pg_backend_pid()").fetchone()[0]
    # what a cloud load balancer does to an idle connection
    pg.sql("select pg_terminate_backend(%s)", (pid,))
    time.sleep(0.5)
    assert c.execute("select pg_backend_pid()").fetchone()[0] != pid


def test_failed_check_is_replaced_at_once(cratebouncer):
    """A server that fails server_check_query is closed, and the client that waited for it
    gets a new server at once, not at the janitor's next tick (250 ms later)."""
    b = cratebouncer(settings={**TX, "default_pool_size": 1, "server_check_delay": "0.1",
                               "server_check_query": "select 1/0", "verbose": 2})
    c = b.connect()
    for i in range(6):
        assert c.execute("select %s::int", (i,)).fetchone()[0] == i
        time.sleep(0.3)  # idle past server_check_delay: checked before the next query
    stamp = r"^(\S+ \S+) UTC \[\d+\] DEBUG S-0x[0-9a-f]+: "
    closed, gaps = None, []
    for line in b.log_text().splitlines():
        m = re.match(stamp + r"closing: server_check_query failed", line)
        if m:
            closed = datetime.datetime.fromisoformat(m.group(1))
        m = re.match(stamp + r"connecting to ", line)
        if m and closed:
            gaps.append((datetime.datetime.fromisoformat(m.group(1)) - closed).total_seconds())
            closed = None
    assert len(gaps) >= 4, b.log_text()
    assert max(gaps) < 0.05, gaps


def test_dead_host_is_skipped(cratebouncer, upstream):
    # 127.0.0.3 refuses: every client is served by the other host, none sees an error
    b = cratebouncer(settings={**TX, "server_login_retry": 30},
                     databases={"doc": upstream(host="127.0.0.3,127.0.0.1")})
    for i in range(6):
        c = b.connect()
        assert c.execute("select %s::int", (i,)).fetchone()[0] == i
    assert "host 127.0.0.3 is down" in b.log_text()


def test_hosts_round_robin(cratebouncer, upstream, pg):
    b = cratebouncer(settings={**TX, "default_pool_size": 4, "verbose": 2},
                     databases={"doc": upstream(host="localhost,127.0.0.1")})
    a, c = b.connect(), b.connect()
    with a.transaction(), c.transaction():
        for x in (a, c):
            assert x.execute("select 1").fetchone()[0] == 1
    log = b.log_text()
    assert "connecting to localhost:" in log and "connecting to 127.0.0.1:" in log


def test_late_cancel_does_not_hit_another_client(cratebouncer):
    b = cratebouncer(settings={**TX, "default_pool_size": 1})
    a, other = b.connect(), b.connect()
    a.execute("select 1")
    a.cancel()  # nothing of a's runs: nothing is cancelled
    assert other.execute("select pg_sleep(0.5), 9").fetchone()[1] == 9


def test_upstream_restart_under_load(cratebouncer, pg):
    pg.sql("create table if not exists restart_log (id int primary key, who int)")
    pg.sql("truncate restart_log")
    pg.sql("grant all on restart_log to crate")
    b = cratebouncer(settings={**TX, "default_pool_size": 3, "server_login_retry": "0.2",
                               "query_wait_timeout": 20})
    acked, stop = [], threading.Event()
    lock = threading.Lock()

    def writer(w):
        n = 0
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = psycopg.connect(b.conninfo(), autocommit=True)
                key = w * 100000 + n
                c.execute("insert into restart_log values (%s, %s)", (key, w))
                with lock:
                    acked.append(key)
                n += 1
            except psycopg.Error:
                time.sleep(0.05)  # the restart: reconnect and go on
                try:
                    c.execute("select 1")
                except Exception:  # noqa: BLE001
                    c = None
        if c:
            c.close()
    ts = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in ts:
        t.start()
    time.sleep(1)
    import pgenv
    pgenv.stop(pg.dir)
    pgenv.start(pg.dir, pg.port)
    before = len(acked)
    time.sleep(2)
    stop.set()
    for t in ts:
        t.join()
    assert len(acked) > before, "no write acknowledged after the restart"
    rows = {r[0] for r in pg.sql("select id from restart_log")}
    lost = [k for k in acked if k not in rows]
    assert not lost, f"{len(lost)} acknowledged writes lost"


def test_refused_set_is_not_replayed_for_ever(cratebouncer):
    """A SET the upstream refuses (tracked from its text) makes one replay fail: that server is
    closed after the transaction, the setting is dropped, and the client goes on normally."""
    b = cratebouncer(settings={**TX, "default_pool_size": 2})
    a, other = b.connect(), b.connect()
    with pytest.raises(psycopg.Error):
        a.execute("SET extra_float_digits TO 99")  # out of range: refused
    for i in range(6):
        # interleaved, so that a gets the other server too
        assert other.execute("select %s::int", (i,)).fetchone()[0] == i
        assert a.execute("select %s::int + 1", (i,)).fetchone()[0] == i + 1
    assert b.log_text().count("restoring a client's session settings failed") <= 1


def test_set_inside_a_multi_statement_query_follows_the_client(cratebouncer):
    b = cratebouncer(settings={**TX, "default_pool_size": 2})
    a, other = b.connect(), b.connect()
    # simple protocol, two statements in one Query: the SET is tracked all the same
    with a.cursor() as cur:
        cur.execute(b"select 1; set search_path to cb_multi, public")
    for _ in range(4):
        other.execute("select 1")
        assert a.execute("show search_path").fetchone()[0] == "cb_multi, public"
        assert other.execute("show search_path").fetchone()[0] != "cb_multi, public"


def test_prepared_set_takes_effect_when_run(cratebouncer, pg):
    """One server. PostgreSQL 15 reports no search_path, so it is tracked from the SET's text:
    when the statement is bound and run, not when a client only prepares it (PQprepare, in a
    transaction of its own); an unnamed one (PQexecParams) is tracked when it runs."""
    for schema, v in (("cbp_one", "one"), ("cbp_two", "two")):
        pg.sql(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION crate")
        pg.sql(f"DROP TABLE IF EXISTS {schema}.tp")
        pg.sql(f"CREATE TABLE {schema}.tp AS SELECT '{v}'::text AS v")
        pg.sql(f"ALTER TABLE {schema}.tp OWNER TO crate")
    b = cratebouncer(settings={**TX, "default_pool_size": 1})
    a, other, c = b.connect(), b.connect(), b.connect()
    c.execute("SET search_path TO cbp_one")
    other.execute("SET search_path TO cbp_two")
    r = a.pgconn.prepare(b"cb_set", b"SET search_path TO cbp_one")
    assert r.status == psycopg.pq.ExecStatus.COMMAND_OK, r.error_message
    for _ in range(2):
        assert c.execute("SELECT v FROM tp").fetchall() == [("one",)]
        assert other.execute("SELECT v FROM tp").fetchall() == [("two",)]
    assert a.execute("SHOW search_path").fetchone()[0] == '"$user", public'
    r = a.pgconn.exec_prepared(b"cb_set", [])
    assert r.status == psycopg.pq.ExecStatus.COMMAND_OK, r.error_message
    r = c.pgconn.exec_params(b"SET search_path TO cbp_two", [])
    assert r.status == psycopg.pq.ExecStatus.COMMAND_OK, r.error_message
    for _ in range(2):
        assert a.execute("SELECT v FROM tp").fetchall() == [("one",)]
        assert c.execute("SELECT v FROM tp").fetchall() == [("two",)]


@pytest.mark.parametrize("prepared", [100, 0], ids=["renaming", "max_prepared_statements=0"])
@pytest.mark.parametrize("undo", ["rollback", "error in the query", "failed block"])
def test_a_session_change_its_transaction_undid_never_reaches_another_client(cratebouncer, undo,
                                                                             prepared):
    """PostgreSQL undoes a RESET (or SET) with the transaction that failed or was rolled back;
    the tracking took it from its text. One server: a's search_path must not reach b (the
    server is closed after such a transaction instead of handed on)."""
    b = cratebouncer(settings={**TX, "default_pool_size": 1, "max_prepared_statements": prepared})
    a, other = b.connect(), b.connect()
    default = other.execute("show search_path").fetchone()[0]
    a.execute("set search_path to cb_undone, public")
    assert a.execute("show search_path").fetchone()[0] == "cb_undone, public"
    if undo == "rollback":
        a.execute("begin")
        a.execute("reset search_path")
        a.execute("rollback")
    elif undo == "error in the query":
        with pytest.raises(psycopg.errors.DivisionByZero), a.cursor() as cur:
            cur.execute(b"reset search_path; select 1/0")
    else:
        a.execute("begin")
        a.execute("reset search_path")
        with pytest.raises(psycopg.errors.DivisionByZero):
            a.execute("select 1/0")
        a.execute("rollback")
    for _ in range(3):
        assert other.execute("show search_path").fetchone()[0] == default
        a.execute("select 1")


def test_a_refused_deallocate_all_leaves_no_statement_behind(cratebouncer):
    """DEALLOCATE ALL inside a failed transaction is refused by PostgreSQL, which keeps every
    prepared statement: the next client preparing the same text must not hit 42P05."""
    b = cratebouncer(settings={**TX, "default_pool_size": 1})
    prep = psycopg.connect(b.conninfo(), autocommit=True, prepare_threshold=0)
    later = psycopg.connect(b.conninfo(), autocommit=True, prepare_threshold=0)
    a = b.connect()
    try:
        assert prep.execute("select %s::int + 7", (1,)).fetchone()[0] == 8
        a.execute("begin")
        with pytest.raises(psycopg.errors.DivisionByZero):
            a.execute("select 1/0")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            a.execute("deallocate all")
        a.execute("rollback")
        assert later.execute("select %s::int + 7", (2,)).fetchone()[0] == 9
        assert prep.execute("select %s::int + 7", (3,)).fetchone()[0] == 10
    finally:
        prep.close()
        later.close()


def test_a_refused_replay_set_takes_no_other_setting_with_it(cratebouncer):
    """The replay of a's settings holds a SET the upstream refuses (a's own, refused when a
    sent it too) and the RESET of the search_path b left on the server. Sent as one Query,
    the refusal took the RESET with it (one implicit transaction) and a's next query ran
    under b's search_path; one Query per statement, only the refused SET fails."""
    b = cratebouncer(settings={**TX, "default_pool_size": 1})
    a, other = b.connect(), b.connect()
    default = a.execute("show search_path").fetchone()[0]
    other.execute("set search_path to cb_b, public")
    with pytest.raises(psycopg.Error):
        a.execute("set extra_float_digits to 99")  # out of range: refused, tracked
    assert other.execute("show search_path").fetchone()[0] == "cb_b, public"
    for _ in range(3):
        assert a.execute("show search_path").fetchone()[0] == default
        assert other.execute("show search_path").fetchone()[0] == "cb_b, public"
    assert a.execute("show extra_float_digits").fetchone()[0] == "1"


def search_path_follows(cratebouncer, query, want):
    """Client a runs query (one server): a sees search_path want on every server it gets, the
    other client of that server keeps the default."""
    b = cratebouncer(settings={**TX, "default_pool_size": 1})
    a, other = b.connect(), b.connect()
    default = other.execute("show search_path").fetchone()[0]
    with a.cursor() as cur:
        cur.execute(query)
    for _ in range(3):
        assert other.execute("show search_path").fetchone()[0] == default
        assert a.execute("show search_path").fetchone()[0] == want


@pytest.mark.parametrize("stmt, want", [
    (b'SET "search_path" TO cb_q, public', "cb_q, public"),
    (b"select E'\\''; set search_path to cb_e, public", "cb_e, public"),
])
def test_a_set_hidden_by_quoting_is_still_tracked(cratebouncer, stmt, want):
    """A quoted parameter name, or a SET behind an escape string's \\' in one Query: PostgreSQL
    runs it, so the tracking must see it (was: neither was seen, and the setting reached the
    next client of the server)."""
    search_path_follows(cratebouncer, stmt, want)


def test_an_undone_change_in_a_second_pipelined_query_is_seen(cratebouncer):
    """Two Queries sent at once: a SET, then a transaction whose RESET is rolled back. The
    first one's ReadyForQuery must not make the second's undoing go unseen (was: the mark was
    taken when the Queries were sent, and cleared by the first answer)."""
    b = cratebouncer(settings={**TX, "default_pool_size": 1})
    other = b.connect()
    default = other.execute("show search_path").fetchone()[0]
    raw = RawConn(b.host, b.port).login("crate", "doc")
    try:
        def q(sql):
            body = sql.encode() + b"\0"
            return b"Q" + struct.pack("!I", len(body) + 4) + body
        raw.send(q("set search_path to cb_piped, public") +
                 q("begin; reset search_path; rollback"))
        raw.read_result()
        raw.read_result()
        for _ in range(3):
            assert other.execute("show search_path").fetchone()[0] == default
    finally:
        raw.close()


@pytest.mark.parametrize("stmt, want", [
    (b"set schema 'cb_s'", "cb_s"),
    (b"set session schema 'cb_s'", "cb_s"),
])
def test_set_schema_follows_its_client(cratebouncer, stmt, want):
    """PostgreSQL's SET SCHEMA 'x' sets search_path (which PostgreSQL 15 does not report):
    it follows its client to its next server and reaches no other client (was: not seen)."""
    search_path_follows(cratebouncer, stmt, want)


def test_a_set_it_cannot_read_reaches_no_other_client(cratebouncer):
    """A SET of a tracked parameter the tracking cannot read (a comment inside its value):
    PostgreSQL runs it, so its server is closed after the transaction instead of handed to
    the next client (was: the next client got the search_path)."""
    b = cratebouncer(settings={**TX, "default_pool_size": 1})
    a, other = b.connect(), b.connect()
    default = other.execute("show search_path").fetchone()[0]
    a.execute("set search_path to cb_c /* a comment */ , public")
    for _ in range(3):
        assert other.execute("show search_path").fetchone()[0] == default
        a.execute("select 1")


def user_follows(cratebouncer, stmts, want):
    """Client a runs stmts (one server): the other client of that server always runs as
    crate, and a as want on every server it gets (None: a only goes on running queries).
    Returns a."""
    b = cratebouncer(settings={**TX, "default_pool_size": 1})
    a, other = b.connect(), b.connect()
    for st in stmts:
        a.execute(st)
    for _ in range(3):
        assert other.execute("select current_user").fetchone()[0] == "crate"
        if want is None:
            a.execute("select 1")
        else:
            assert a.execute("select current_user").fetchone()[0] == want
    return a


@pytest.mark.parametrize("stmt", ["set role md5user", "set session role 'md5user'",
                                  "set role to md5user"])
def test_set_role_follows_its_client(cratebouncer, pg, stmt):
    """SET ROLE is tracked as the parameter role: the client keeps its role from server to
    server, and no other client runs as it (was: the next client of the server did)."""
    pg.sql("grant md5user to crate")
    try:
        a = user_follows(cratebouncer, [stmt], "md5user")
        a.execute("set role none")
        assert a.execute("select current_user").fetchone()[0] == "crate"
    finally:
        pg.sql("revoke md5user from crate")


def test_reset_all_keeps_the_role(cratebouncer, pg):
    """PostgreSQL's RESET ALL leaves the role as it is (GUC_NO_RESET_ALL): the tracking must
    too, or the server goes back to the pool as md5user while the pooler thinks it has the
    login's role, and the next client runs as md5user (was: it did)."""
    pg.sql("grant md5user to crate")
    try:
        user_follows(cratebouncer, ["set role md5user", "reset all"], "md5user")
    finally:
        pg.sql("revoke md5user from crate")


@pytest.mark.parametrize("stmt", ["set session authorization md5user",
                                  "set session_authorization = 'md5user'"])
def test_a_changed_session_user_reaches_no_other_client(cratebouncer, pg, stmt):
    """SET SESSION AUTHORIZATION is not tracked: the next client of the server would run as
    that user (was: it did). The server is closed after the transaction."""
    pg.sql("alter role crate superuser")
    try:
        user_follows(cratebouncer, [stmt], None)
    finally:
        pg.sql("alter role crate nosuperuser")


@pytest.mark.parametrize("query", [
    b"SELECT E'a'\n'\\' AS x, ' ; SET search_path TO cb_cont, public ; SELECT 'x'",
    b"SELECT E'a' -- c\n'\\' AS x, ' ; SET search_path TO cb_cont, public ; SELECT 'x'",
], ids=["newline", "comment and newline"])
def test_a_set_behind_a_continued_escape_string_is_tracked(cratebouncer, query):
    """PostgreSQL goes on with E'a' after a newline and a quote, with its escapes: the SET is
    a statement of its own (was: the tracking read a plain string there and missed it)."""
    search_path_follows(cratebouncer, query, "cb_cont, public")
