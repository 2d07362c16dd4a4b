"""Pipelining (pipeline_depth, pipeline_max_query_time): in transaction and statement mode a
client's autocommit simple Query of a shape known to be fast may be sent to a busy server
behind other clients' such queries; the server answers in order and each client must get its
own answer, in its own session state.

Checked: many psycopg2 clients on a pool of 2 each getting the answers to their own literals
(and their own errors), INSERTs from many clients landing exactly once (transaction and
statement mode); transaction blocks and SET never pipelined (rollbacks leave nothing, nobody
runs inside another's transaction, each session keeps its own TimeZone), with a
pipeline_depth = 0 control; a SELECT set_config() not reaching the queries behind it; a query
pipelined behind another client's session-state replay; clients that vanish while their query
is pipelined or running; a cancel of a query waiting behind another (held until it runs,
nobody else hit); query_timeout of a query with others behind it; the late-cancel race (the
query behind the target is re-sent, never failed); pipeline_depth = 0; the admin console
under pipelined load. Counters come from the admin HTTP port's /metrics
(cratebouncer_pool_pipelined_queries_total, cratebouncer_pool_pipeline_retries_total).
"""

import functools
import http.client
import os
import random
import re
import signal
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import psycopg2
import psycopg2.errors
import pytest

from helpers import (TIMEOUT, RawConn, console, decode_row, free_port, listening, run_threads,
                     show, wait_until)

ADMIN = "cbadmin"
POOL = 2
CLIENT_TIMEOUT = 40  # seconds for all clients of one test to finish
PIPELINED = "cratebouncer_pool_pipelined_queries_total"
RETRIES = "cratebouncer_pool_pipeline_retries_total"
# pipeline_max_query_time for the load tests: the default; queries must be pipelined under
# this load as configured out of the box
LOAD_MAX_QT = 0.001
# a log line the daemon writes when its own invariant broke (src/pgwire/server.c)
BROKEN = "a pipelined query left a transaction open"


# ---------------------------------------------------------------------------------------------
# helpers


def start(cratebouncer, mode="transaction", pool=POOL, **extra):
    """A cratebouncer in mode with default_pool_size=pool, the admin console (cbadmin) and the
    admin HTTP port on 127.0.0.1 (cb.http_port)."""
    port = free_port()
    settings = {"pool_mode": mode, "default_pool_size": pool, "max_client_conn": 300,
                "admin_users": ADMIN}
    settings.update(extra)
    cb = cratebouncer(settings=settings,
                      sections={"admin": {"listen_addr": "127.0.0.1", "listen_port": port}})
    cb.http_port = port
    wait_until(lambda: listening("127.0.0.1", port) or cb.proc.poll() is not None, 3,
               "the admin HTTP port listening")
    assert cb.proc.poll() is None, "cratebouncer exited"
    return cb


def metric(cb, name, database="doc", user="crate"):
    """The value of counter name for the pool (database, user) from /metrics; 0 when the pool
    has no sample yet. Fails when the family is not declared at all."""
    conn = http.client.HTTPConnection("127.0.0.1", cb.http_port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200, f"/metrics: {resp.status} {body[:300]}"
    finally:
        conn.close()
    family = name.removesuffix("_total")
    assert re.search(rf"^# TYPE {family}(_total)? counter$", body, re.M), \
        f"{name} not declared in /metrics"
    found = []
    for line in body.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}}\s+(\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
            if labels.get("database") == database and labels.get("user") == user:
                found.append(float(m.group(2)))
    assert len(found) <= 1, f"{len(found)} samples of {name} for {database}/{user}"
    return found[0] if found else 0.0


def doc_pool(adm):
    rows = [r for r in show(adm, "POOLS") if r["database"] == "doc" and r["user"] == "crate"]
    assert len(rows) == 1, rows
    return rows[0]


def pg2(cb, autocommit=True):
    conn = psycopg2.connect(cb.conninfo())
    conn.autocommit = autocommit
    return conn


def crate_backends(pg):
    """Upstream client backends of user crate (the pooler's servers)."""
    return pg.sql("select count(*) from pg_stat_activity where usename = 'crate' "
                  "and backend_type = 'client backend'")[0][0]


def no_crate_backends(pg):
    """Waits until servers of earlier tests' daemons have gone from the upstream."""
    wait_until(lambda: crate_backends(pg) == 0, 10, "no upstream backends of crate left")


class BackendSampler:
    """Counts crate's upstream backends every 20 ms in a thread; .max once stopped."""

    def __init__(self, pg):
        self.pg = pg
        self.max = 0
        self.samples = 0
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        with self.pg.connect() as conn:
            while not self.stop_ev.is_set():
                n = conn.execute("select count(*) from pg_stat_activity where usename = "
                                 "'crate' and backend_type = 'client backend'").fetchone()[0]
                self.max = max(self.max, n)
                self.samples += 1
                time.sleep(0.02)

    def stop(self):
        self.stop_ev.set()
        self.thread.join(TIMEOUT)
        return self.max


def fresh_table(pg, name, columns):
    pg.sql(f"DROP TABLE IF EXISTS {name}")
    pg.sql(f"CREATE TABLE {name} ({columns})")
    pg.sql(f"ALTER TABLE {name} OWNER TO crate")


def warm(cb, queries, times=5):
    """Runs each query times (sequentially, on one connection) so that its shape is known to
    be fast before the load starts."""
    conn = pg2(cb)
    try:
        cur = conn.cursor()
        for _ in range(times):
            for q in queries:
                cur.execute(q)
                if cur.description:
                    cur.fetchall()
    finally:
        conn.close()


FAST = "select %s, %s, %s || '-' || %s, pg_backend_pid()"


def fast_client(cb, t, rounds, barrier=None, inserts=False, table=None, errors=True):
    """A psycopg2 autocommit client running rounds fast queries with its own literals (and
    INSERTs of its own keys, and now and then a query that fails); asserts every answer; the
    backend pids seen."""
    conn = pg2(cb)
    pids = []
    try:
        cur = conn.cursor()
        if barrier:
            barrier.wait()
        for j in range(rounds):
            cur.execute(FAST, (t, j, f"t{t}", j))
            row = cur.fetchone()
            assert row[:3] == (t, j, f"t{t}-{j}"), f"client {t} round {j} got {row}"
            pids.append(row[3])
            if inserts and j % 4 == 0:
                cur.execute(f"insert into {table} values (%s, %s, %s)", (t, j, f"v{t}.{j}"))
                assert cur.rowcount == 1
            if errors and j % 25 == 7:
                with pytest.raises(psycopg2.errors.DivisionByZero):
                    cur.execute("select %s / 0", (t * 1000 + j,))
                cur.execute("select %s / 2", (t * 1000 + j,))
                assert cur.fetchone() == ((t * 1000 + j) // 2,)
    finally:
        conn.close()
    return pids


def query_into(out, name, conn, sql):
    """Runs sql on a psycopg2 connection (in a thread): out[name] is ("ok", first row) or
    ("error", the exception)."""
    try:
        cur = conn.cursor()
        cur.execute(sql)
        out[name] = ("ok", cur.fetchone())
    except Exception as e:  # examined by the caller
        out[name] = ("error", e)


def _wait_active(pg, text, timeout=5):
    wait_until(lambda: pg.sql("select count(*) from pg_stat_activity where state = 'active' "
                              "and query = %s", (text,))[0][0] > 0, timeout,
               f"{text!r} running upstream")


def qmsg(sql):
    """A simple-protocol Query message."""
    q = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(q) + 4) + q


def check_log(cb):
    log = cb.log_text()
    assert BROKEN not in log, [ln for ln in log.splitlines() if BROKEN in ln][:5]


# ---------------------------------------------------------------------------------------------
# 1. many clients, a small pool


@pytest.mark.parametrize("mode", ["transaction", "statement"])
def test_many_clients_get_their_own_answers(cratebouncer, pg, mode):
    """30 psycopg2 threads on a pool of 2, 200 fast queries each with literals of their own
    (some failing with division by zero, some INSERTs): every answer is the one its client
    asked for, every row lands exactly once, queries were pipelined, and no more than 2
    upstream backends served them."""
    fresh_table(pg, "pl_rows", "t int, j int, v text")
    no_crate_backends(pg)
    cb = start(cratebouncer, mode, pipeline_max_query_time=LOAD_MAX_QT)
    warm(cb, [FAST % (1, 2, "'w'", 3), "insert into pl_rows values (-1, -1, 'warm')",
              "select 5 / 2"])
    pg.sql("delete from pl_rows")
    before = metric(cb, PIPELINED)
    n, rounds = 30, 200
    barrier = threading.Barrier(n, timeout=TIMEOUT * 2)
    sampler = BackendSampler(pg)
    try:
        pids = run_threads(lambda t: fast_client(cb, t, rounds, barrier, inserts=True,
                                                 table="pl_rows"), n)
    finally:
        most = sampler.stop()
    pipelined = metric(cb, PIPELINED) - before
    print(f"{mode}: {pipelined:.0f} of {n * rounds} fast queries pipelined; "
          f"at most {most} upstream backends in {sampler.samples} samples")
    all_pids = {p for ps in pids for p in ps}
    assert 1 <= len(all_pids) <= POOL, f"{len(all_pids)} upstream backends for pool {POOL}"
    assert most <= POOL, f"{most} upstream backends of crate at once for pool {POOL}"
    assert pipelined > 0, "no query was pipelined"
    want = {(t, j) for t in range(n) for j in range(0, rounds, 4)}
    rows = pg.sql("select t, j, v, count(*) from pl_rows group by t, j, v")
    assert [r for r in rows if r[3] != 1] == [], "rows inserted more than once"
    assert {(t, j) for t, j, _, _ in rows} == want
    assert all(v == f"v{t}.{j}" for t, j, v, _ in rows)
    check_log(cb)


# ---------------------------------------------------------------------------------------------
# 2. transaction blocks and SET


class LoadUntil:
    """Lets clients go on until enough queries were pipelined (checked every 0.1 s) and at
    least min_s have passed, or max_s have passed: .stop is set then."""

    def __init__(self, cb, base, enough, min_s=1.5, max_s=10):
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.pipelined = 0
        self._halt = threading.Event()

        def watch():
            while not self._halt.is_set():
                elapsed = time.monotonic() - self.started
                try:
                    self.pipelined = metric(cb, PIPELINED) - base
                except Exception:  # noqa: BLE001 - the daemon's failure shows elsewhere
                    pass
                if (self.pipelined >= enough and elapsed >= min_s) or elapsed >= max_s:
                    self.stop.set()
                    return
                time.sleep(0.1)

        self.thread = threading.Thread(target=watch, daemon=True)
        self.thread.start()

    def halt(self):
        self._halt.set()
        self.stop.set()
        self.thread.join(TIMEOUT)


@pytest.mark.parametrize("depth", [8, 0], ids=["pipelined", "depth0-control"])
def test_transactions_and_set_stay_isolated(cratebouncer, pg, depth):
    """While 14 clients hammer fast SELECTs (pipelined), 6 psycopg2 clients run
    BEGIN; INSERT; SELECT txid_current(); COMMIT or ROLLBACK, and 4 clients SET TimeZone and
    read it back: rolled back rows never show up anywhere, the fast clients never run inside
    anyone's transaction (no transaction id, now() = statement_timestamp()) and always see
    the default TimeZone, and each SET client sees its own zone, by SHOW and by a SELECT of
    the same shape as the fast clients'. The load goes on until 20 queries were pipelined
    (at most 10 s). depth0-control: the same with pipeline_depth = 0, where none is."""
    fresh_table(pg, "pl_tx", "t int, r int, kind text")
    cb = start(cratebouncer, pipeline_max_query_time=LOAD_MAX_QT, pipeline_depth=depth)
    probe = ("select %s, txid_current_if_assigned() is null, now() = statement_timestamp(), "
             "current_setting('TimeZone')")
    conn = pg2(cb)
    cur = conn.cursor()
    cur.execute("show TimeZone")
    default_tz = cur.fetchone()[0]
    conn.close()
    zones = [z for z in ("America/New_York", "Asia/Tokyo", "Europe/Berlin", "Australia/Sydney",
                         "America/Sao_Paulo") if z != default_tz]
    warm(cb, [probe % 1, "select count(*) from pl_tx where kind = 'rollback'"])
    before = metric(cb, PIPELINED)
    fast_n, tx_n, set_n = 14, 6, 4
    barrier = threading.Barrier(fast_n + tx_n + set_n + 1, timeout=TIMEOUT * 2)
    load = None
    committed = [[] for _ in range(tx_n)]

    def fast(i):
        conn = pg2(cb)
        j = 0
        try:
            cur = conn.cursor()
            barrier.wait()
            while j < 100 or not load.stop.is_set():
                cur.execute(probe, (i * 100000 + j,))
                row = cur.fetchone()
                assert row == (i * 100000 + j, True, True, default_tz), \
                    f"fast client {i} round {j}: {row}"
                if j % 10 == 0:
                    cur.execute("select count(*) from pl_tx where kind = 'rollback'")
                    assert cur.fetchone() == (0,), "a rolled back (or uncommitted) row visible"
                j += 1
        finally:
            conn.close()

    def tx(i):
        conn = pg2(cb, autocommit=False)
        r = 0
        try:
            cur = conn.cursor()
            barrier.wait()
            while r < 10 or not load.stop.is_set():
                kind = "commit" if r % 2 else "rollback"
                cur.execute("insert into pl_tx values (%s, %s, %s)", (i, r, kind))
                cur.execute("select txid_current()")
                xid = cur.fetchone()[0]
                cur.execute(probe, (r,))
                row = cur.fetchone()
                assert row[0] == r and row[1] is False and row[3] == default_tz, row
                cur.execute("select txid_current(), count(*) from pl_tx where t = %s and r = %s",
                            (i, r))
                assert cur.fetchone() == (xid, 1), "not the same transaction any more"
                if kind == "commit":
                    conn.commit()
                    committed[i].append(r)
                else:
                    conn.rollback()
                r += 1
        finally:
            conn.close()

    def setter(i):
        conn = pg2(cb)
        r = 0
        try:
            cur = conn.cursor()
            barrier.wait()
            while r < 30 or not load.stop.is_set():
                zone = zones[(i + r // 10) % len(zones)]
                if r % 10 == 0:
                    cur.execute("set TimeZone = %s", (zone,))
                cur.execute("show TimeZone")
                assert cur.fetchone() == (zone,), f"set client {i} round {r}"
                for k in range(3):
                    cur.execute(probe, (r * 10 + k,))
                    row = cur.fetchone()
                    assert row == (r * 10 + k, True, True, zone), \
                        f"set client {i} round {r}: {row}"
                r += 1
        finally:
            conn.close()

    def role(i):
        if i == 0:
            nonlocal load
            barrier.wait()
            load = LoadUntil(cb, before, 20 if depth else 10**9, max_s=10 if depth else 2)
            return None
        i -= 1
        if i < fast_n:
            return fast(i)
        if i < fast_n + tx_n:
            return tx(i - fast_n)
        return setter(i - fast_n - tx_n)

    try:
        run_threads(role, 1 + fast_n + tx_n + set_n)
    finally:
        if load:
            load.halt()
    pipelined = metric(cb, PIPELINED) - before
    print(f"depth {depth}: {pipelined:.0f} queries pipelined in "
          f"{time.monotonic() - load.started:.1f} s")
    if depth:
        assert pipelined > 0, "no query was pipelined"
    else:
        assert pipelined == 0
    rows = pg.sql("select t, r, kind, count(*) from pl_tx group by t, r, kind order by t, r")
    assert rows == [(t, r, "commit", 1) for t in range(tx_n) for r in committed[t]]
    check_log(cb)


def test_select_set_config_does_not_reach_queries_behind(cratebouncer, pg):
    """A SELECT may change a session setting (set_config(..., false)): pool of 1,
    pipeline_max_query_time 2 s, S runs SELECT set_config('TimeZone', 'Asia/Tokyo', false),
    pg_sleep(0.5) and D's SELECT current_setting('TimeZone') is sent while S runs (so,
    pipelined, if S's query let anything behind it): D must see its own (the default)
    TimeZone, S keeps Tokyo, and a new client afterwards sees the default."""
    cb = start(cratebouncer, pool=1, pipeline_max_query_time=2)
    conn = pg2(cb)
    cur = conn.cursor()
    cur.execute("show TimeZone")
    default_tz = cur.fetchone()[0]
    conn.close()
    zone = "Asia/Tokyo" if default_tz != "Asia/Tokyo" else "Europe/Berlin"
    warm(cb, [f"select set_config('TimeZone', '{default_tz}', false), pg_sleep(0.01)",
              "select current_setting('TimeZone'), 0"], times=4)
    before = metric(cb, PIPELINED)
    s_conn, d_conn = pg2(cb), pg2(cb)
    out = {}

    run = functools.partial(query_into, out)

    try:
        s_sql = f"select set_config('TimeZone', '{zone}', false), pg_sleep(0.5)"
        ts = threading.Thread(target=run, args=("S", s_conn, s_sql))
        ts.start()
        _wait_active(pg, s_sql)
        td = threading.Thread(target=run, args=("D", d_conn,
                                                "select current_setting('TimeZone'), 1"))
        td.start()
        for t in (ts, td):
            t.join(TIMEOUT)
            assert not t.is_alive()
        assert out["S"] == ("ok", (zone, "")), out
        assert out["D"] == ("ok", (default_tz, 1)), \
            f"D ran with S's setting: {out['D']} (default {default_tz})"
        cur = s_conn.cursor()
        cur.execute("show TimeZone")
        assert cur.fetchone() == (zone,), "S lost its own setting"
        cur = d_conn.cursor()
        cur.execute("show TimeZone")
        assert cur.fetchone() == (default_tz,), "D has S's setting"
        fresh = pg2(cb)
        cur = fresh.cursor()
        cur.execute("select current_setting('TimeZone'), 2")
        assert cur.fetchone() == (default_tz, 2), "a new client got S's setting"
        fresh.close()
    finally:
        s_conn.close()
        d_conn.close()
    print(f"D pipelined behind S: {metric(cb, PIPELINED) > before}")
    check_log(cb)


def test_pipelined_query_behind_a_settings_replay(cratebouncer):
    """Pool of 1. S has SET TimeZone (its own session setting), D has the default. Both send
    a fast SELECT current_setting('TimeZone') at the same moment, 20 times, in both orders:
    the first gets the server and cratebouncer replays its settings (SET ... before its
    query); the second, if pipelined behind, runs after that replay, so the server's
    setting must be judged by what it will be then, not by what it was. Each must see its
    own TimeZone every time."""
    cb = start(cratebouncer, pool=1, pipeline_max_query_time=2)
    q = "select current_setting('TimeZone'), {}"
    warm(cb, [q.format(0)], times=4)
    d = RawConn(cb.host, cb.port).login("crate", "doc")
    s = RawConn(cb.host, cb.port).login("crate", "doc")
    try:
        default_tz = d.query("show TimeZone")[0][0]
        zone = "Asia/Tokyo" if default_tz != "Asia/Tokyo" else "Europe/Berlin"
        s.query(f"set TimeZone = '{zone}'")
        before = metric(cb, PIPELINED)
        wrong = []
        for i in range(20):
            first, second = (s, d) if i % 2 else (d, s)
            # the server is left with the settings of the one that goes second
            second.query(q.format(-1))
            first.send(qmsg(q.format(i)))
            second.send(qmsg(q.format(i + 1000)))
            got = {first: first.read_result(), second: second.read_result()}
            want = {first: [[zone if first is s else default_tz, str(i)]],
                    second: [[zone if second is s else default_tz, str(i + 1000)]]}
            if got != want:
                wrong.append((i, "S first" if first is s else "D first",
                              f"S got {got[s]}, D got {got[d]}"))
        pipelined = metric(cb, PIPELINED) - before
        after = (s.query("show TimeZone"), d.query("show TimeZone"))
        print(f"{pipelined:.0f} of 20 pipelined; afterwards SHOW TimeZone: S {after[0]}, "
              f"D {after[1]}; wrong: {wrong}")
        assert not wrong, (f"{len(wrong)} of 20 rounds saw the other's TimeZone "
                           f"(S has {zone}, D {default_tz}), {pipelined:.0f} pipelined; "
                           f"afterwards S shows {after[0]}, D {after[1]}: {wrong[:4]}")
        assert after == ([[zone]], [[default_tz]])
    finally:
        d.close()
        s.close()
    check_log(cb)


# ---------------------------------------------------------------------------------------------
# 3. clients that vanish


def _raw_vanisher(cb, k, results):
    """A raw pgwire client that sends a fast query (or two) and leaves in one of several
    abrupt ways before (or while) its answer comes."""
    how = k % 5
    conn = RawConn(cb.host, cb.port)
    conn.login("crate", "doc")
    q = (FAST % (k, 7, f"'r{k}'", 7)).encode() + b"\0"
    msg = b"Q" + struct.pack("!I", len(q) + 4) + q
    if how == 0:  # RST right after the query
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.send(msg)
    elif how == 1:  # a moment later, plain close
        conn.send(msg)
        time.sleep(random.random() * 0.003)
    elif how == 2:  # two queries, then gone
        conn.send(msg + msg)
    elif how == 3:  # the query and Terminate at once
        conn.send(msg + b"X\0\0\0\4")
    else:  # reads part of the answer, then RST
        conn.send(msg)
        try:
            conn.recv_exact(5)
        except Exception:  # noqa: BLE001 - it is leaving anyway
            pass
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.sock.close()
    results.append(how)


def test_vanishing_clients_do_not_disturb_others(cratebouncer, pg):
    """12 psycopg2 clients hammer fast queries on a pool of 2 while raw clients send the same
    shape of query and vanish (RST, close, Terminate, two queries then close, half-read
    answer), and psycopg2 clients have their socket shut down from another thread mid-query:
    the others get correct answers, the daemon stays up, and once everybody has gone SHOW
    POOLS shows no client and no active server (nobody's server stuck on a departed
    client)."""
    no_crate_backends(pg)
    cb = start(cratebouncer, pipeline_max_query_time=LOAD_MAX_QT)
    warm(cb, [FAST % (1, 2, "'w'", 3)])
    before = metric(cb, PIPELINED)
    adm = console(cb)
    n_fast, n_raw, n_shut = 12, 4, 2
    vanished = []
    shut_errors = []

    def raw(i):
        for r in range(40):
            _raw_vanisher(cb, i * 1000 + r, vanished)

    def shut(i):
        for r in range(10):
            conn = pg2(cb)
            fd_sock = socket.socket(fileno=os.dup(conn.fileno()))
            timer = threading.Timer(random.random() * 0.02, fd_sock.shutdown, [socket.SHUT_RDWR])
            timer.start()
            try:
                cur = conn.cursor()
                for j in range(200):
                    cur.execute(FAST, (i, j, "s", j))
                    assert cur.fetchone()[:3] == (i, j, f"s-{j}")
            except psycopg2.OperationalError as e:  # the socket went away under it
                shut_errors.append(str(e))
            finally:
                timer.join()
                fd_sock.close()
                conn.close()

    def role(i):
        if i < n_fast:
            return fast_client(cb, i, 300, errors=False)
        if i < n_fast + n_raw:
            return raw(i - n_fast)
        return shut(i - n_fast - n_raw)

    sampler = BackendSampler(pg)
    try:
        run_threads(role, n_fast + n_raw + n_shut)
    finally:
        most = sampler.stop()
    assert cb.proc.poll() is None, "cratebouncer died"
    assert len(vanished) == n_raw * 40
    print(f"{metric(cb, PIPELINED) - before:.0f} pipelined, {len(shut_errors)} psycopg2 "
          f"connections shut down mid-query, at most {most} upstream backends")
    assert most <= POOL, f"{most} upstream backends of crate at once for pool {POOL}"
    assert metric(cb, PIPELINED) > before, "no query was pipelined"
    wait_until(lambda: (lambda p: (p["cl_active"], p["cl_waiting"], p["sv_active"]) ==
                        (0, 0, 0))(doc_pool(adm)), 5,
               "no client and no active server left in SHOW POOLS")
    assert show(adm, "SERVERS") and len(show(adm, "SERVERS")) <= POOL
    assert [c for c in show(adm, "CLIENTS") if c["database"] == "doc"] == []
    # the pool still serves, pipelined too
    assert fast_client(cb, 99, 20, errors=False)
    check_log(cb)


# ---------------------------------------------------------------------------------------------
# 4. cancel of a query waiting behind another


def test_cancel_of_a_query_waiting_behind_another(cratebouncer, pg):
    """Pool of 1, pipeline_max_query_time 2 s: A runs pg_sleep(1.5); B's pg_sleep(1.5) is
    pipelined behind it and C's pg_sleep(0.01) behind B; B is cancelled while it waits. A
    completes, B gets 57014, C completes; the cancel hits nobody else."""
    cb = start(cratebouncer, pool=1, pipeline_max_query_time=2)
    warm(cb, ["select pg_sleep(0.01), 'w'"], times=4)
    before = metric(cb, PIPELINED)
    ca, cbb, cc = pg2(cb), pg2(cb), pg2(cb)
    out = {}

    def run(name, conn, sql):
        t0 = time.monotonic()
        try:
            cur = conn.cursor()
            cur.execute(sql)
            out[name] = ("ok", cur.fetchone(), time.monotonic() - t0)
        except Exception as e:  # examined below
            out[name] = ("error", e, time.monotonic() - t0)

    try:
        ta = threading.Thread(target=run, args=("A", ca, "select pg_sleep(1.5), 'A'"))
        ta.start()
        _wait_active(pg, "select pg_sleep(1.5), 'A'")
        tb = threading.Thread(target=run, args=("B", cbb, "select pg_sleep(1.5), 'B'"))
        tb.start()
        wait_until(lambda: metric(cb, PIPELINED) >= before + 1, 1, "B pipelined behind A")
        tc = threading.Thread(target=run, args=("C", cc, "select pg_sleep(0.01), 'C'"))
        tc.start()
        wait_until(lambda: metric(cb, PIPELINED) >= before + 2, 1, "C pipelined behind B")
        assert "A" not in out, f"A finished too early for the test: {out}"
        cbb.cancel()
        for t in (ta, tb, tc):
            t.join(TIMEOUT)
            assert not t.is_alive()
        print({k: (v[0], repr(v[1]), round(v[2], 3)) for k, v in out.items()})
        assert out["A"][0] == "ok" and out["A"][1] == ("", "A"), f"A: {out['A']}"
        assert out["B"][0] == "error" and isinstance(out["B"][1], psycopg2.errors.QueryCanceled), \
            f"B: {out['B']}"
        assert out["C"][0] == "ok" and out["C"][1] == ("", "C"), f"C: {out['C']}"
        # every connection goes on
        for conn, name in ((ca, "a"), (cbb, "b"), (cc, "c")):
            cur = conn.cursor()
            cur.execute("select %s", (name,))
            assert cur.fetchone() == (name,)
    finally:
        for conn in (ca, cbb, cc):
            conn.close()
    check_log(cb)


def test_query_timeout_with_queries_behind(cratebouncer, pg):
    """Pool of 1, pipeline_max_query_time 2 s, query_timeout 0.5 s: A's pg_sleep(1.2) has
    B's and C's short queries pipelined behind it. A fails with query_timeout; B and C get
    their own answers (the cancel that stops A must not reach them), and every connection
    but A's goes on; the server is not lost (one upstream backend throughout)."""
    no_crate_backends(pg)
    cb = start(cratebouncer, pool=1, pipeline_max_query_time=2, query_timeout=0.5)
    warm(cb, ["select pg_sleep(0.01), 'w'"], times=4)
    before = metric(cb, PIPELINED)
    conns = {k: pg2(cb) for k in "ABC"}
    out = {}

    def run(name, sql):
        try:
            cur = conns[name].cursor()
            cur.execute(sql)
            out[name] = ("ok", cur.fetchone())
        except Exception as e:  # examined below
            out[name] = ("error", e)

    sampler = BackendSampler(pg)
    try:
        ta = threading.Thread(target=run, args=("A", "select pg_sleep(1.2), 'A'"))
        ta.start()
        _wait_active(pg, "select pg_sleep(1.2), 'A'")
        tb = threading.Thread(target=run, args=("B", "select pg_sleep(0.01), 'B'"))
        tb.start()
        wait_until(lambda: metric(cb, PIPELINED) >= before + 1, 1, "B pipelined behind A")
        tc = threading.Thread(target=run, args=("C", "select pg_sleep(0.01), 'C'"))
        tc.start()
        wait_until(lambda: metric(cb, PIPELINED) >= before + 2, 1, "C pipelined behind B")
        for t in (ta, tb, tc):
            t.join(TIMEOUT)
            assert not t.is_alive()
        print({k: (v[0], repr(v[1])) for k, v in out.items()})
        # psycopg2 reports the connection closed, not the message (as without pipelining)
        assert out["A"][0] == "error" and isinstance(out["A"][1], psycopg2.OperationalError), \
            out["A"]
        assert "pooler error: query_timeout" in cb.log_text()
        assert out["B"] == ("ok", ("", "B")), out["B"]
        assert out["C"] == ("ok", ("", "C")), out["C"]
        for name in "BC":
            cur = conns[name].cursor()
            cur.execute("select %s", (name.lower(),))
            assert cur.fetchone() == (name.lower(),)
        fresh = pg2(cb)
        cur = fresh.cursor()
        cur.execute("select 'fresh'")
        assert cur.fetchone() == ("fresh",)
        fresh.close()
    finally:
        most = sampler.stop()
        for c in conns.values():
            c.close()
    assert most <= 1, f"{most} upstream backends for a pool of 1"
    check_log(cb)


# ---------------------------------------------------------------------------------------------
# 5. the late-cancel race


def test_late_cancel_never_fails_the_query_behind(cratebouncer, pg):
    """Pool of 1, pipeline_max_query_time 2 s, 20 rounds: A runs pg_sleep(0.2), B's
    pg_sleep(0.2) is pipelined behind it, and A is cancelled at a random moment between 0.1
    and 0.3 s after it started (before, around or after its end). A gets its answer or
    57014; B always gets its own answer (re-sent when the cancel came late and hit it)."""
    ROUNDS = 20
    cb = start(cratebouncer, pool=1, pipeline_max_query_time=2)
    warm(cb, ["select pg_sleep(0.01), 'w'"], times=4)
    retries_before = metric(cb, RETRIES)
    ca, cbb = pg2(cb), pg2(cb)
    outcomes = []
    not_pipelined = 0
    try:
        for rnd in range(ROUNDS):
            out = {}

            run = functools.partial(query_into, out)

            before = metric(cb, PIPELINED)
            a_sql, b_sql = f"select pg_sleep(0.2), 'A{rnd}'", f"select pg_sleep(0.2), 'B{rnd}'"
            started = time.monotonic()
            ta = threading.Thread(target=run, args=("A", ca, a_sql))
            ta.start()
            time.sleep(0.03)
            tb = threading.Thread(target=run, args=("B", cbb, b_sql))
            tb.start()
            # a cancel takes some 40 ms to reach the upstream (a new TLS connection), so
            # from 0.1 s on it may come while A runs, around its end, during B or after it
            delay = random.uniform(0.1, 0.3)
            time.sleep(max(0.0, started + delay - time.monotonic()))
            ca.cancel()
            for t in (ta, tb):
                t.join(TIMEOUT)
                assert not t.is_alive()
            if metric(cb, PIPELINED) < before + 1:
                not_pipelined += 1
            a, b = out["A"], out["B"]
            outcomes.append((round(delay, 3), a[0], b[0]))
            assert b == ("ok", ("", f"B{rnd}")), f"round {rnd} (cancel at {delay:.3f} s): B {b!r}"
            assert a == ("ok", ("", f"A{rnd}")) or (
                a[0] == "error" and isinstance(a[1], psycopg2.errors.QueryCanceled)), \
                f"round {rnd}: A {a!r}"
            time.sleep(0.05)  # the cancel connection done: the server may pipeline again
    finally:
        ca.close()
        cbb.close()
    retries = metric(cb, RETRIES) - retries_before
    print(f"outcomes (cancel delay, A, B): {outcomes}")
    print(f"pipeline retries: {retries:.0f}; A cancelled {sum(o[1] == 'error' for o in outcomes)}"
          f" times; B not pipelined in {not_pipelined} rounds")
    assert not_pipelined < ROUNDS, "B was never pipelined behind A: the race was not exercised"
    check_log(cb)


# ---------------------------------------------------------------------------------------------
# 5b. the extended protocol


@pytest.mark.parametrize("prepare", [False, True], ids=["unnamed", "named"])
def test_extended_protocol_clients_get_their_own_answers(cratebouncer, pg, prepare):
    """30 psycopg 3 threads on a pool of 2 with parameterized queries: unnamed, each one
    Parse/Bind/Describe/Execute/Sync; named (prepare=True), Bind/Execute/Sync of a statement
    prepared once. Each asserts its own answers, now and then an error (the group's Sync
    ends it); such groups are pipelined and no more than 2 upstream backends are used."""
    cb = start(cratebouncer, pipeline_max_query_time=LOAD_MAX_QT)
    no_crate_backends(pg)
    sampler = BackendSampler(pg)
    before = metric(cb, PIPELINED)

    def client(t):
        with psycopg.connect(cb.conninfo(), autocommit=True) as conn:
            for j in range(150):
                row = conn.execute("select %s::int, %s::int, %s::text || '-' || %s::text",
                                   (t, j, f"t{t}", str(j)), prepare=prepare).fetchone()
                assert row == (t, j, f"t{t}-{j}"), f"client {t} round {j} got {row}"
                if j % 30 == 11:
                    with pytest.raises(psycopg.errors.DivisionByZero):
                        conn.execute("select %s::int / 0", (j,), prepare=prepare)
        return t

    try:
        assert run_threads(client, 30) == list(range(30))
    finally:
        peak = sampler.stop()
    assert peak <= POOL, f"{peak} upstream backends for a pool of {POOL}"
    assert metric(cb, PIPELINED) > before, "no extended-protocol group was pipelined"
    check_log(cb)


def test_asyncpg_statement_cache_pipelined(cratebouncer, pg):
    """asyncpg (named statements from its cache: Bind/Execute/Sync) with 24 connections on a
    pool of 2: every fetch returns its own values, and transactions of other connections
    stay whole."""
    asyncpg = pytest.importorskip("asyncpg")
    import asyncio

    cb = start(cratebouncer, pipeline_max_query_time=LOAD_MAX_QT)
    fresh_table(pg, "pipe_async", "k int primary key, v text")
    before = metric(cb, PIPELINED)

    async def main():
        kw = dict(host=cb.host, port=cb.port, user="crate", database="doc", ssl=False,
                  timeout=TIMEOUT)
        conns = [await asyncpg.connect(**kw) for _ in range(24)]

        async def fast(t, conn):
            for j in range(120):
                row = await conn.fetchrow("select $1::int as a, $2::text as b", t, f"{t}.{j}")
                assert (row["a"], row["b"]) == (t, f"{t}.{j}"), (t, j, row)

        async def writer(t, conn):
            for j in range(20):
                async with conn.transaction():
                    await conn.execute("insert into pipe_async values ($1, $2)", t * 100 + j, "x")
                    n = await conn.fetchval("select count(*) from pipe_async where k = $1",
                                            t * 100 + j)
                    assert n == 1
                try:
                    async with conn.transaction():
                        await conn.execute("insert into pipe_async values ($1, $2)",
                                           t * 100 + 50 + j, "gone")
                        raise RuntimeError("roll back")
                except RuntimeError:
                    pass

        try:
            await asyncio.gather(*(fast(t, c) for t, c in enumerate(conns[:20])),
                                 *(writer(t, c) for t, c in enumerate(conns[20:])))
        finally:
            for c in conns:
                await c.close()

    asyncio.run(asyncio.wait_for(main(), CLIENT_TIMEOUT))
    rows = pg.sql("select k, v from pipe_async order by k")
    assert rows == [(t * 100 + j, "x") for t in range(4) for j in range(20)], rows[:10]
    assert metric(cb, PIPELINED) > before, "no asyncpg query was pipelined"
    check_log(cb)


# ---------------------------------------------------------------------------------------------
# 5c. a client that holds others up


def test_head_not_reading_does_not_hold_others_for_ever(cratebouncer, pg):
    """Pool of 1, pipeline_max_query_time 2 s. A's query (a shape learned as fast) sleeps
    0.3 s and then returns ~200 MB, and A never reads; B's SELECT is pipelined behind it.
    After 10 s of A not reading, A is disconnected (its error is queued behind its unread
    answer) and B gets its answer; the daemon goes on serving."""
    cb = start(cratebouncer, pool=1, pipeline_max_query_time=2)
    big = ("select case when g = 1 then pg_sleep({s}) end, repeat('x', {n}) "
           "from generate_series(1, {rows}) g")
    warm(cb, [big.format(s=0, n=1, rows=1), "select 1 + 1, 2"])
    a = RawConn(cb.host, cb.port, timeout=30).login("crate", "doc")
    a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    b = RawConn(cb.host, cb.port, timeout=30).login("crate", "doc")
    before = metric(cb, PIPELINED)
    a.send(qmsg(big.format(s=0.3, n=100000, rows=2000)))
    time.sleep(0.1)
    t0 = time.monotonic()
    b.send(qmsg("select 41 + 1, 2"))
    assert b.read_result() == [["42", "2"]]
    waited = time.monotonic() - t0
    assert metric(cb, PIPELINED) > before, "B was not pipelined behind A"
    assert waited < 25, f"B waited {waited:.1f} s"
    wait_until(lambda: "did not read its answer" in cb.log_text(), 5, "A disconnected")
    a.close()
    with pg2(cb) as conn:
        cur = conn.cursor()
        cur.execute("select 7")
        assert cur.fetchone() == (7,)
    check_log(cb)


def test_comment_ending_at_cr_hides_no_statement(cratebouncer, pg):
    """A query whose -- comment ends at a CR (PostgreSQL ends it there) and hides a SET is
    not pipelined: the client queued after it never runs with that setting."""
    cb = start(cratebouncer, pool=1, pipeline_max_query_time=2)
    warm(cb, ["select pg_sleep(0)", "select current_setting('search_path')"])
    a = RawConn(cb.host, cb.port).login("crate", "doc")
    b = RawConn(cb.host, cb.port).login("crate", "doc")
    for _ in range(5):
        a.send(qmsg("select pg_sleep(0.2) --x\r; set search_path = evil"))
        time.sleep(0.05)
        b.send(qmsg("select current_setting('search_path')"))
        assert b.read_result() == [['"$user", public']]
        a.read_result()   # one ReadyForQuery for both statements
    check_log(cb)


# ---------------------------------------------------------------------------------------------
# 5d. extended-protocol groups at the wire level


def _msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body


def _parse(name, q):
    return _msg(b"P", name.encode() + b"\0" + q.encode() + b"\0" + struct.pack("!H", 0))


def _bind(stmt, params=()):
    body = b"\0" + stmt.encode() + b"\0" + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        v = str(p).encode()
        body += struct.pack("!i", len(v)) + v
    return _msg(b"B", body + struct.pack("!H", 0))


def _execute():
    return _msg(b"E", b"\0" + struct.pack("!I", 0))


SYNC = _msg(b"S", b"")


def _answer(conn):
    """(type, ...) tuples up to the ReadyForQuery: ("D", row), ("E", sqlstate), ("Z",)."""
    out = []
    while True:
        head = conn.recv_exact(5)
        kind, length = chr(head[0]), struct.unpack("!I", head[1:])[0]
        body = conn.recv_exact(length - 4)
        if kind == "E":
            code = [f[1:].decode() for f in body.split(b"\0") if f[:1] == b"C"]
            out.append(("E", code[0] if code else None))
        elif kind == "D":
            out.append(("D", tuple(decode_row(body))))
        elif kind == "Z":
            out.append(("Z",))
            return out


def test_statement_whose_parse_may_fail_is_not_relied_on(cratebouncer):
    """Pool of 1. A's group fails (division by zero) before its Parse of a named statement
    "SELECT 42", so the server skips that Parse; B, queued behind A, prepares the same text.
    B must not be told the statement exists (nothing is pipelined behind an unconfirmed
    Parse): B gets 42."""
    cb = start(cratebouncer, pool=1, pipeline_max_query_time=2)
    a = RawConn(cb.host, cb.port).login("crate", "doc")
    b = RawConn(cb.host, cb.port).login("crate", "doc")

    def group_a(sleep, div, text):
        return (_parse("", "SELECT pg_sleep($1::float8)") + _bind("", [sleep]) + _execute() +
                _parse("", "SELECT 1/$1::int") + _bind("", [div]) + _execute() +
                _parse("s1", text) + _bind("s1") + _execute() + SYNC)

    for i in range(4):
        a.send(group_a(0, 1, f"SELECT {100 + i}"))
        _answer(a)
        b.send(_parse("sb", f"SELECT {200 + i}") + _bind("sb") + _execute() + SYNC)
        assert ("D", (str(200 + i),)) in _answer(b)
    for _ in range(3):
        a.send(group_a(0.3, 0, "SELECT 42"))
        time.sleep(0.1)
        b.send(_parse("sb", "SELECT 42") + _bind("sb") + _execute() + SYNC)
        assert ("E", "22012") in _answer(a)
        got = _answer(b)
        assert ("D", ("42",)) in got, got
    check_log(cb)


def test_skipped_eviction_close_leaves_the_statement_usable(cratebouncer):
    """max_prepared_statements = 1: preparing s2 evicts s1 (a Close the relay injects), but
    the group fails first and the server skips that Close; s1 must keep working."""
    cb = start(cratebouncer, pool=1, max_prepared_statements=1, pipeline_depth=0)
    a = RawConn(cb.host, cb.port).login("crate", "doc")
    a.send(_parse("s1", "SELECT 1") + _bind("s1") + _execute() + SYNC)
    assert ("D", ("1",)) in _answer(a)
    a.send(_parse("", "SELECT 1/0") + _bind("") + _execute() +
           _parse("s2", "SELECT 2") + _bind("s2") + _execute() + SYNC)
    assert ("E", "22012") in _answer(a)
    for _ in range(3):
        a.send(_bind("s1") + _execute() + SYNC)
        got = _answer(a)
        assert ("D", ("1",)) in got, got
    a.send(_bind("s2") + _execute() + SYNC)
    assert ("D", ("2",)) in _answer(a)


def test_departed_clients_query_does_not_hold_the_pool(cratebouncer, pg):
    """Pool of 1. A's UPDATE waits for a row lock, B's is pipelined behind it; B leaves,
    then A. The departed clients' queries are cancelled after a second, so a new client is
    served within a few seconds, not once the lock is gone."""
    fresh_table(pg, "pipe_lock", "id int primary key, x int")
    pg.sql("insert into pipe_lock values (1, 0)")
    cb = start(cratebouncer, pool=1, pipeline_max_query_time=2)
    a = RawConn(cb.host, cb.port).login("crate", "doc")
    b = RawConn(cb.host, cb.port).login("crate", "doc")
    for i in range(4):
        a.send(qmsg(f"UPDATE pipe_lock SET x = {i} WHERE id = 1"))
        a.read_result()
        b.send(qmsg(f"UPDATE pipe_lock SET x = {i} WHERE id = 1"))
        b.read_result()
    with pg.connect() as locker:
        locker.execute("begin")
        locker.execute("select * from pipe_lock where id = 1 for update")
        before = metric(cb, PIPELINED)
        a.send(qmsg("UPDATE pipe_lock SET x = 10 WHERE id = 1"))
        time.sleep(0.05)
        b.send(qmsg("UPDATE pipe_lock SET x = 11 WHERE id = 1"))
        wait_until(lambda: metric(cb, PIPELINED) > before, 3, "B pipelined behind A")
        b.close()
        time.sleep(0.1)
        a.close()
        t0 = time.monotonic()
        c = RawConn(cb.host, cb.port, timeout=20).login("crate", "doc")
        c.send(qmsg("SELECT 1"))
        assert c.read_result() == [["1"]]
        waited = time.monotonic() - t0
        locker.execute("rollback")
    assert waited < 8, f"the new client waited {waited:.1f} s"
    check_log(cb)


def test_show_pools_counts_a_cancel_in_flight(cratebouncer, pg):
    """SHOW POOLS sv_being_canceled is 1 while a CancelRequest for a server's session is on
    its way (the upstream's postmaster is stopped, so the cancel connection hangs) and 0
    again once the upstream has dealt with it."""
    cb = start(cratebouncer, pool=1)
    adm = console(cb)
    conn = pg2(cb)
    with open(os.path.join(pg.data_dir, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    result = {}

    def run():
        try:
            conn.cursor().execute("select pg_sleep(5)")
            result["r"] = "ok"
        except Exception as e:  # examined below
            result["r"] = e

    t = threading.Thread(target=run)
    t.start()
    _wait_active(pg, "select pg_sleep(5)")
    assert doc_pool(adm)["sv_being_canceled"] == 0
    os.kill(postmaster, signal.SIGSTOP)
    try:
        threading.Thread(target=conn.cancel, daemon=True).start()
        wait_until(lambda: doc_pool(adm)["sv_being_canceled"] == 1, 5,
                   "sv_being_canceled = 1 with the cancel held up")
    finally:
        os.kill(postmaster, signal.SIGCONT)
    t.join(TIMEOUT)
    assert isinstance(result.get("r"), psycopg2.errors.QueryCanceled), result
    wait_until(lambda: doc_pool(adm)["sv_being_canceled"] == 0, 5, "sv_being_canceled back to 0")
    conn.close()


# ---------------------------------------------------------------------------------------------
# 6. pipeline_depth = 0


def test_pipeline_depth_zero_turns_it_off(cratebouncer, pg):
    """The load of the first test with pipeline_depth = 0: nothing is pipelined, every
    answer is still right, and the pool of 2 is respected."""
    fresh_table(pg, "pl_rows0", "t int, j int, v text")
    no_crate_backends(pg)
    cb = start(cratebouncer, pipeline_depth=0, pipeline_max_query_time=LOAD_MAX_QT)
    warm(cb, [FAST % (1, 2, "'w'", 3), "insert into pl_rows0 values (-1, -1, 'warm')"])
    pg.sql("delete from pl_rows0")
    n, rounds = 30, 100
    barrier = threading.Barrier(n, timeout=TIMEOUT * 2)
    pids = run_threads(lambda t: fast_client(cb, t, rounds, barrier, inserts=True,
                                             table="pl_rows0"), n)
    assert len({p for ps in pids for p in ps}) <= POOL
    assert metric(cb, PIPELINED) == 0, "queries pipelined with pipeline_depth = 0"
    assert pg.sql("select count(*), count(distinct (t, j)) from pl_rows0") == [
        (n * len(range(0, rounds, 4)),) * 2]
    check_log(cb)


# ---------------------------------------------------------------------------------------------
# 7. the admin console under pipelined load


def test_admin_console_during_pipelined_load(cratebouncer, pg):
    """SHOW POOLS, SERVERS and CLIENTS keep answering while 30 clients' queries are
    pipelined on a pool of 2: one doc pool row counting all 30 clients, at most 2 servers,
    30 doc clients; the daemon stays up."""
    cb = start(cratebouncer, pipeline_max_query_time=LOAD_MAX_QT)
    warm(cb, [FAST % (1, 2, "'w'", 3)])
    before = metric(cb, PIPELINED)
    adm = console(cb)
    n = 30
    connected = threading.Barrier(n + 1, timeout=TIMEOUT * 2)
    finished = threading.Event()  # every client through its queries
    release = threading.Event()  # the console checks are over: the clients may go
    remaining = [n]
    lock = threading.Lock()

    def client(t):
        conn = pg2(cb)
        try:
            cur = conn.cursor()
            connected.wait()
            for j in range(250):
                cur.execute(FAST, (t, j, "c", t))
                assert cur.fetchone()[:3] == (t, j, f"c-{t}")
        finally:
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    finished.set()
            release.wait(CLIENT_TIMEOUT)  # stays connected until then
            conn.close()

    ex = ThreadPoolExecutor(max_workers=n)
    futures = [ex.submit(client, t) for t in range(n)]
    try:
        connected.wait()
        rounds = 0
        states = set()
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while (not finished.is_set() or rounds < 5) and time.monotonic() < deadline:
            pool = doc_pool(adm)
            assert pool["cl_active"] + pool["cl_waiting"] == n, pool
            assert pool["sv_active"] + pool["sv_idle"] + pool["sv_used"] <= POOL, pool
            servers = [s for s in show(adm, "SERVERS") if s["database"] == "doc"]
            assert 1 <= len(servers) <= POOL, servers
            states.update(s["state"] for s in servers)
            clients = [c for c in show(adm, "CLIENTS") if c["database"] == "doc"]
            assert len(clients) == n, f"{len(clients)} doc clients in SHOW CLIENTS"
            rounds += 1
        release.set()
        for f in futures:
            f.result(CLIENT_TIMEOUT)
    finally:
        release.set()
        ex.shutdown(wait=True)
    print(f"{rounds} console rounds, server states seen {states}, "
          f"{metric(cb, PIPELINED) - before:.0f} pipelined")
    assert "active" in states
    assert metric(cb, PIPELINED) > before, "no query was pipelined"
    assert cb.proc.poll() is None
    check_log(cb)
