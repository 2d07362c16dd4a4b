"""The admin console: the virtual databases cratebouncer and pgbouncer, PgBouncer's SHOW columns
(through psql and psycopg), admin_users/stats_users, the control commands (PAUSE, RESUME, RELOAD,
SHUTDOWN, KILL, RECONNECT, WAIT_CLOSE, DISABLE, ENABLE, SET), masked secrets, and counters that
move under load."""

import os
import signal
import subprocess
import threading
import time

import psycopg
import psycopg2
import pytest

import pgenv
from helpers import (TIMEOUT, Background, PgError, RawConn, clean_env, console, login_error,
                     pgbench_cmd, pgbench_processed, show, wait_until)

ADMIN, STATS = "cbadmin", "cbstats"
CONSOLE = {"admin_users": ADMIN, "stats_users": STATS}

# PgBouncer's columns, in PgBouncer's order (REFERENCE.md section 5; STATS_TOTALS and
# STATS_AVERAGES as in PgBouncer 1.23).
STATS_COLS = [
    "database", "total_xact_count", "total_query_count", "total_server_assignment_count",
    "total_received", "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
    "total_client_parse_count", "total_server_parse_count", "total_bind_count",
    "avg_xact_count", "avg_query_count", "avg_server_assignment_count", "avg_recv", "avg_sent",
    "avg_xact_time", "avg_query_time", "avg_wait_time", "avg_client_parse_count",
    "avg_server_parse_count", "avg_bind_count"]
PART_COLS = [
    "database", "xact_count", "query_count", "server_assignment_count", "bytes_received",
    "bytes_sent", "xact_time", "query_time", "wait_time", "client_parse_count",
    "server_parse_count", "bind_count"]
POOLS_COLS = [
    "database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
    "cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle",
    "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode"]
CONN_COLS = [
    "type", "user", "database", "state", "addr", "port", "local_addr", "local_port",
    "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link",
    "remote_pid", "tls", "application_name", "prepared_statements", "id"]
DATABASES_COLS = [
    "name", "host", "port", "database", "force_user", "pool_size", "min_pool_size",
    "reserve_pool_size", "server_lifetime", "pool_mode", "max_connections",
    "current_connections", "paused", "disabled"]
EXPECTED_COLUMNS = {
    "STATS": STATS_COLS,
    "STATS_TOTALS": PART_COLS,
    "STATS_AVERAGES": PART_COLS,
    "POOLS": POOLS_COLS,
    "CLIENTS": CONN_COLS,
    "SERVERS": CONN_COLS,
    "DATABASES": DATABASES_COLS,
    "LISTS": ["list", "items"],
    "CONFIG": ["key", "value", "default", "changeable"],
    "VERSION": ["version"],
}
ALL_SHOWS = ["STATS", "STATS_TOTALS", "STATS_AVERAGES", "POOLS", "CLIENTS", "SERVERS",
             "DATABASES", "USERS", "CONFIG", "LISTS", "MEM", "STATE", "VERSION", "HELP", "HTTP",
             "HTTP_POOLS"]


# ---------------------------------------------------------------------------------------------
# helpers


def one(rows, **match):
    """The single row whose columns equal match."""
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"{len(found)} rows match {match}: {rows}"
    return found[0]


def psql_console(cb, sql, user=ADMIN, dbname="cratebouncer", password=None, check=True):
    """psql -A -F '|' with headers and no footer: (header, rows, CompletedProcess)."""
    env = clean_env()
    if password is not None:
        env["PGPASSWORD"] = password
    res = subprocess.run(["psql", "-X", "-w", "-A", "-F", "|", "--pset", "footer=off",
                          "-v", "ON_ERROR_STOP=1", "-d", cb.conninfo(dbname, user), "-c", sql],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         timeout=TIMEOUT * 3)
    if check and res.returncode != 0:
        raise AssertionError(f"psql {sql!r} failed ({res.returncode}): {res.stderr}")
    lines = res.stdout.splitlines()
    header = lines[0].split("|") if lines else []
    return header, [ln.split("|") for ln in lines[1:]], res


def concurrent_sleepers(cb, n, seconds=0.5, dbname="doc"):
    """n clients at once, each running pg_sleep(seconds) in its own session: the elapsed time."""
    barrier = threading.Barrier(n, timeout=TIMEOUT)

    def client():
        barrier.wait()
        with psycopg.connect(cb.conninfo(dbname), autocommit=True) as conn:
            conn.execute("select pg_sleep(%s)", (seconds,))

    started = time.monotonic()
    jobs = [Background(client) for _ in range(n)]
    for j in jobs:
        j.join(TIMEOUT * 2)
    elapsed = time.monotonic() - started
    errors = [repr(j.error) for j in jobs if j.error]
    assert not errors, errors
    return elapsed


def stats_of(conn, what="STATS", db="doc"):
    return one(show(conn, what), database=db)


def run_pgbench(cb, pgbench, seconds=2, clients=4):
    res = subprocess.run(pgbench_cmd(pgbench, cb.host, cb.port, seconds, clients),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=clean_env(), timeout=seconds + 20)
    assert res.returncode == 0, res.stdout
    return pgbench_processed(res.stdout)


# ---------------------------------------------------------------------------------------------
# columns, roles, protocol


@pytest.mark.parametrize("what", list(EXPECTED_COLUMNS))
def test_show_columns_match_pgbouncer(cratebouncer, what):
    """SHOW <what> has PgBouncer's column names in PgBouncer's order, in psql and in psycopg."""
    cb = cratebouncer(settings=CONSOLE)
    with cb.connect() as client:  # a pool, a client and a server, so that rows exist
        client.execute("select 1")
        header, rows, _ = psql_console(cb, f"SHOW {what};")
        cur = console(cb).execute(f"SHOW {what}")
        names = [d.name for d in cur.description]
        data = cur.fetchall()
    assert header == EXPECTED_COLUMNS[what], f"psql header of SHOW {what}"
    assert names == EXPECTED_COLUMNS[what], f"psycopg description of SHOW {what}"
    assert rows, f"SHOW {what} returned no rows through psql"
    assert all(len(r) == len(header) for r in rows), rows
    assert data and all(len(r) == len(names) for r in data)


def test_every_show_runs(cratebouncer):
    """Every SHOW answers through psql and psycopg2; an unknown one is 42601."""
    cb = cratebouncer(settings=CONSOLE)
    for what in ALL_SHOWS:
        psql_console(cb, f"show {what.lower()};")
    conn = psycopg2.connect(cb.conninfo("pgbouncer", ADMIN))
    conn.autocommit = True
    try:
        cur = conn.cursor()
        for what in ALL_SHOWS:
            cur.execute(f"SHOW {what}")
            if what != "HELP":
                assert cur.description, f"SHOW {what} sent no row description"
        with pytest.raises(psycopg2.Error) as exc:
            cur.execute("SHOW NO_SUCH_THING")
        assert exc.value.pgcode == "42601"
        cur.execute("SHOW VERSION")
        assert "cratebouncer" in cur.fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("dbname", ["cratebouncer", "pgbouncer"])
def test_console_roles(cratebouncer, dbname):
    """admin_users run all, stats_users only SHOW (42501), others refused with 28000."""
    cb = cratebouncer(settings=CONSOLE)
    err = login_error(cb.host, cb.port, user="crate", database=dbname)
    assert err.sqlstate == "28000", err
    assert "admin_users" in err.message and "stats_users" in err.message, err.message
    stats = console(cb, STATS, dbname)
    assert [r["version"] for r in show(stats, "VERSION")] and show(stats, "CONFIG")
    for command in ("PAUSE", "RESUME", "RELOAD", "SET query_wait_timeout = 7", "KILL doc",
                    "SHUTDOWN"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            stats.execute(command)
    assert one(show(stats, "CONFIG"), key="query_wait_timeout")["value"] == "120"
    admin = console(cb, ADMIN, dbname)
    admin.execute("PAUSE")
    assert one(show(admin, "STATE"), key="paused")["value"] == "yes"
    admin.execute("RESUME")
    assert one(show(stats, "STATE"), key="paused")["value"] == "no"
    with cb.connect() as client:
        assert client.execute("select 'served'").fetchone() == ("served",)


def test_extended_protocol_is_refused_clearly(cratebouncer):
    """Extended-protocol queries get 0A000 naming the simple protocol; simple ones work."""
    cb = cratebouncer(settings=CONSOLE)
    conn = psycopg.connect(cb.conninfo("cratebouncer", ADMIN), autocommit=True)
    cb.connections.append(conn)
    for sql, kw in (("SHOW VERSION", {"prepare": True}), ("SHOW %s", {"params": ["VERSION"]})):
        with pytest.raises(psycopg.errors.FeatureNotSupported) as exc:
            conn.execute(sql, **kw)
        assert "simple" in str(exc.value)
    cur = psycopg.ClientCursor(conn)
    cur.execute("SHOW VERSION")
    assert "cratebouncer" in cur.fetchone()[0]


def test_console_errors(cratebouncer):
    """Unknown commands are 42601, an unknown database 3D000; the console stays usable."""
    cb = cratebouncer(settings=CONSOLE)
    conn = console(cb)
    for sql, state in (("FROBNICATE", "42601"), ("PAUSE nosuchdb", "3D000"),
                       ("KILL nosuchdb", "3D000"), ("DISABLE nosuchdb", "3D000"),
                       ("KILL", "42601")):
        with pytest.raises(psycopg.Error) as exc:
            conn.execute(sql)
        assert exc.value.sqlstate == state, f"{sql}: {exc.value.sqlstate} {exc.value}"
    assert one(show(conn, "STATE"), key="active")["value"] == "yes"


# ---------------------------------------------------------------------------------------------
# contents of SHOW


def test_show_contents(cratebouncer, upstream, pg):
    """SHOW DATABASES/CLIENTS/SERVERS/POOLS/LISTS/USERS describe a client and its backend."""
    cb = cratebouncer(settings=CONSOLE,
                      databases={"doc": upstream(pool_size=4), "other": upstream()})
    client = cb.connect(application_name="probe-app")
    backend_pid = client.execute("select pg_backend_pid()").fetchone()[0]
    conn = console(cb)
    dbs = show(conn, "DATABASES")
    assert sorted(r["name"] for r in dbs) == ["doc", "other"]
    doc = one(dbs, name="doc")
    assert (doc["host"], doc["port"], doc["database"], doc["force_user"]) == \
        ("127.0.0.1", pg.port, "doc", "crate")
    assert doc["pool_size"] == 4 and doc["current_connections"] == 1
    assert doc["paused"] == 0 and doc["disabled"] == 0
    assert one(dbs, name="other")["current_connections"] == 0
    cl = one(show(conn, "CLIENTS"), database="doc")
    assert (cl["type"], cl["user"], cl["state"], cl["addr"], cl["application_name"]) == \
        ("C", "crate", "active", "127.0.0.1", "probe-app")
    assert cl["local_port"] == cb.port
    sv = one(show(conn, "SERVERS"), database="doc")
    assert (sv["type"], sv["user"], sv["state"], sv["remote_pid"], sv["port"]) == \
        ("S", "crate", "active", backend_pid, pg.port)
    assert sv["tls"], "the upstream connection is TLS"
    assert sv["link"] == cl["ptr"] and cl["link"] == sv["ptr"], "client and server not linked"
    pool = one(show(conn, "POOLS"), database="doc", user="crate")
    assert (pool["cl_active"], pool["cl_waiting"], pool["sv_active"], pool["sv_idle"]) == \
        (1, 0, 1, 0)
    assert pool["pool_mode"] == "session"
    lists = {r["list"]: r["items"] for r in show(conn, "LISTS")}
    assert lists["databases"] == 2 and lists["pools"] == 1, lists
    assert lists["used_servers"] == 1, lists
    assert "crate" in [r["name"] for r in show(conn, "USERS")]
    client.close()
    wait_until(lambda: one(show(conn, "POOLS"), database="doc")["sv_idle"] == 1, 5,
               "the server back in the pool as idle")
    assert one(show(conn, "SERVERS"), database="doc")["state"] == "idle"


def test_pools_waiting_client(cratebouncer, upstream):
    """pool_size=1: SHOW POOLS shows a holder active and a second client waiting."""
    cb = cratebouncer(settings=CONSOLE, databases={"doc": upstream(pool_size=1)})
    holder = cb.connect()
    holder.execute("select 1")

    def waiter():
        with psycopg.connect(cb.conninfo(), autocommit=True) as conn:
            return conn.execute("select 'waited'").fetchone()

    adm = console(cb)
    job = Background(waiter)
    pool = wait_until(lambda: [p for p in show(adm, "POOLS")
                               if p["database"] == "doc" and p["cl_waiting"] == 1],
                      5, "a waiting client in SHOW POOLS")[0]
    assert (pool["cl_active"], pool["cl_waiting"], pool["sv_active"]) == (1, 1, 1), pool
    time.sleep(1.1)
    pool = one(show(adm, "POOLS"), database="doc")
    assert pool["maxwait"] >= 1, pool
    assert "waiting" in [c["state"] for c in show(adm, "CLIENTS") if c["database"] == "doc"]
    holder.close()
    job.join(TIMEOUT)
    assert job.error is None and job.result == ("waited",), repr(job.error)
    wait_until(lambda: [p for p in show(adm, "POOLS") if p["database"] == "doc" and
                        (p["cl_active"], p["cl_waiting"], p["sv_active"], p["sv_idle"]) ==
                        (0, 0, 0, 1)], 5, "no client left and the server idle in SHOW POOLS")


# ---------------------------------------------------------------------------------------------
# control commands


def test_pause_resume(cratebouncer, upstream):
    """PAUSE doc: the held session runs, a new client waits until RESUME; others unaffected."""
    cb = cratebouncer(settings=CONSOLE, databases={"doc": upstream(), "other": upstream()})
    holder = cb.connect()
    holder.execute("select 1")
    adm = console(cb)
    adm.execute("PAUSE doc")
    assert one(show(adm, "DATABASES"), name="doc")["paused"] == 1
    assert one(show(adm, "DATABASES"), name="other")["paused"] == 0
    assert holder.execute("select 'kept'").fetchone() == ("kept",)

    def newcomer():
        with psycopg.connect(cb.conninfo(), autocommit=True) as conn:
            return conn.execute("select 'after resume'").fetchone(), time.monotonic()

    job = Background(newcomer)
    with cb.connect(dbname="other") as other:
        assert other.execute("select 'other db'").fetchone() == ("other db",)
    time.sleep(1.0)
    assert not job.done(), f"a new client was served while paused: {job.result or job.error!r}"
    resumed_at = time.monotonic()
    adm.execute("RESUME doc")
    job.join(TIMEOUT)
    assert job.error is None, repr(job.error)
    assert job.result[0] == ("after resume",)
    assert job.result[1] - resumed_at < 3, "served long after RESUME"
    assert one(show(adm, "DATABASES"), name="doc")["paused"] == 0


def test_reload_changes_pool_size(cratebouncer, upstream):
    """pool_size changed in the file + RELOAD: SHOW DATABASES and concurrency follow."""
    cb = cratebouncer(settings=CONSOLE, databases={"doc": upstream(pool_size=1)})
    adm = console(cb)
    assert one(show(adm, "DATABASES"), name="doc")["pool_size"] == 1
    slow = concurrent_sleepers(cb, 2)
    assert slow >= 0.95, f"2 x 0.5 s over pool_size=1 took only {slow:.2f} s"
    assert one(show(adm, "DATABASES"), name="doc")["current_connections"] == 1
    cb.databases["doc"] = upstream(pool_size=3)
    cb.write_config()
    adm.execute("RELOAD")
    assert one(show(adm, "DATABASES"), name="doc")["pool_size"] == 3
    fast = concurrent_sleepers(cb, 3, seconds=1.0)
    # queued over 2 connections or fewer it would take 2 s or more
    assert fast < 1.9, f"after RELOAD to pool_size=3, 3 x 1 s took {fast:.2f} s"
    assert one(show(adm, "DATABASES"), name="doc")["current_connections"] == 3


def test_shutdown(service_bouncer):
    """SHUTDOWN ends the daemon at once (exit 0) although a client is connected."""
    cb = service_bouncer(settings=CONSOLE).launch()
    client = cb.connect()
    client.execute("select 1")
    adm = console(cb)
    try:
        adm.execute("SHUTDOWN")
    except psycopg.OperationalError:
        pass  # the daemon may close the console before the answer arrives
    assert cb.reap(3) == 0, "SHUTDOWN did not end the daemon with 0 within 3 s"
    with pytest.raises(psycopg.OperationalError):
        client.execute("select 1")


def test_shutdown_wait_for_clients(service_bouncer):
    """SHUTDOWN WAIT_FOR_CLIENTS refuses new clients and exits 0 when the last leaves."""
    cb = service_bouncer(settings=CONSOLE).launch()
    client = cb.connect()
    client.execute("select 1")
    adm = console(cb)
    adm.execute("SHUTDOWN WAIT_FOR_CLIENTS")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(cb.conninfo(connect_timeout=2)).close()
    assert client.execute("select 'still served'").fetchone() == ("still served",)
    adm.close()
    time.sleep(0.3)
    assert cb.proc.poll() is None, "exited while a client was still connected"
    client.close()
    assert cb.reap(5) == 0, "did not exit 0 within 5 s of the last client leaving"


def test_kill(cratebouncer, upstream, pg):
    """KILL a drops a's client and servers; database b's client and server are untouched."""
    cb = cratebouncer(settings=CONSOLE, databases={"a": upstream(), "b": upstream()})
    ca, cbb = cb.connect(dbname="a"), cb.connect(dbname="b")
    pid_a = ca.execute("select pg_backend_pid()").fetchone()[0]
    pid_b = cbb.execute("select pg_backend_pid()").fetchone()[0]
    adm = console(cb)
    assert {s["database"] for s in show(adm, "SERVERS")} == {"a", "b"}
    adm.execute("KILL a")
    with pytest.raises(psycopg.OperationalError):
        ca.execute("select 1")
    servers = wait_until(lambda: (lambda s: s if all(r["database"] != "a" for r in s) else None)(
        show(adm, "SERVERS")), 5, "no server of a in SHOW SERVERS")
    assert [(s["database"], s["remote_pid"]) for s in servers] == [("b", pid_b)]
    assert all(c["database"] != "a" for c in show(adm, "CLIENTS"))
    wait_until(lambda: not pg.sql("select 1 from pg_stat_activity where pid = %s", (pid_a,)), 5,
               "a's backend gone upstream")
    assert cbb.execute("select pg_backend_pid()").fetchone() == (pid_b,)


def test_reconnect_and_wait_close(cratebouncer, upstream, pg):
    """RECONNECT renews servers; WAIT_CLOSE returns once the held old server closed."""
    cb = cratebouncer(settings=CONSOLE, databases={"doc": upstream(pool_size=2)})
    idle = cb.connect()
    idle_pid = idle.execute("select pg_backend_pid()").fetchone()[0]
    holder = cb.connect()
    held_pid = holder.execute("select pg_backend_pid()").fetchone()[0]
    idle.close()
    adm = console(cb)
    wait_until(lambda: one(show(adm, "POOLS"), database="doc")["sv_idle"] == 1, 5, "idle server")
    adm.execute("RECONNECT doc")
    servers = wait_until(lambda: (lambda s: s if len(s) == 1 else None)(show(adm, "SERVERS")), 5,
                         "the idle server closed by RECONNECT")
    assert servers[0]["remote_pid"] == held_pid and servers[0]["close_needed"] == 1, servers
    wait_until(lambda: not pg.sql("select 1 from pg_stat_activity where pid = %s", (idle_pid,)),
               5, "the idle backend gone upstream")
    waiter_conn = console(cb)
    job = Background(lambda: waiter_conn.execute("WAIT_CLOSE doc"))
    time.sleep(0.8)
    assert not job.done(), "WAIT_CLOSE returned while a pre-RECONNECT server was in use"
    assert holder.execute("select 'still served'").fetchone() == ("still served",)
    holder.close()
    job.join(5)
    assert job.error is None, repr(job.error)
    assert all(s["remote_pid"] != held_pid for s in show(adm, "SERVERS"))
    with cb.connect() as fresh:
        new_pid = fresh.execute("select pg_backend_pid()").fetchone()[0]
    assert new_pid not in (idle_pid, held_pid)
    adm.execute("WAIT_CLOSE")  # nothing old left: returns at once


def test_reconnect_during_reset(cratebouncer, upstream, pg):
    """A server still running server_reset_query when RECONNECT comes is closed once the reset
    ends, not put back in the pool as idle."""
    cb = cratebouncer(settings={**CONSOLE, "server_reset_query": "select pg_sleep(0.5)"},
                      databases={"doc": upstream(pool_size=2)})
    with cb.connect() as c:
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
    adm = console(cb)
    assert one(show(adm, "SERVERS"), database="doc")["state"] == "used", "reset not running"
    adm.execute("RECONNECT doc")
    wait_until(lambda: not show(adm, "SERVERS"), 5, "the reset server closed after RECONNECT")
    wait_until(lambda: not pg.sql("select 1 from pg_stat_activity where pid = %s", (pid,)), 5,
               "its backend gone upstream")
    with cb.connect() as c:
        assert c.execute("select pg_backend_pid()").fetchone()[0] != pid


def test_disable_enable(cratebouncer, upstream):
    """DISABLE a refuses new clients of a (held ones keep working); ENABLE a lets them in."""
    cb = cratebouncer(settings=CONSOLE, databases={"a": upstream(), "b": upstream()})
    held = cb.connect(dbname="a")
    held.execute("select 1")
    adm = console(cb)
    adm.execute("DISABLE a")
    assert one(show(adm, "DATABASES"), name="a")["disabled"] == 1
    err = login_error(cb.host, cb.port, database="a")
    assert "disabled" in err.message, err.message
    assert held.execute("select 'held'").fetchone() == ("held",)
    with cb.connect(dbname="b") as other:
        assert other.execute("select 'b'").fetchone() == ("b",)
    adm.execute("ENABLE a")
    assert one(show(adm, "DATABASES"), name="a")["disabled"] == 0
    with cb.connect(dbname="a") as again:
        assert again.execute("select 'again'").fetchone() == ("again",)


def test_set(cratebouncer, upstream):
    """SET query_wait_timeout shows in SHOW CONFIG and applies; listen_port/unknown keys fail."""
    cb = cratebouncer(settings=CONSOLE, databases={"doc": upstream(pool_size=1)})
    adm = console(cb)
    adm.execute("SET query_wait_timeout = 5")
    row = one(show(adm, "CONFIG"), key="query_wait_timeout")
    assert float(row["value"]) == 5 and row["default"] == "120" and row["changeable"] == "yes"
    with pytest.raises(psycopg.Error):
        adm.execute(f"SET listen_port = {cb.port + 1}")
    port_row = one(show(adm, "CONFIG"), key="listen_port")
    assert port_row["value"] == str(cb.port) and port_row["changeable"] == "no"
    with pytest.raises(psycopg.Error):
        adm.execute("SET no_such_option_xyz = 1")
    assert "no_such_option_xyz" not in [r["key"] for r in show(adm, "CONFIG")]
    holder = cb.connect()  # the only server, connected before the short timeout is set
    holder.execute("select 1")
    adm.execute("SET query_wait_timeout = 1")
    started = time.monotonic()
    waiter = RawConn(cb.host, cb.port)
    try:
        with pytest.raises(PgError) as exc:
            waiter.login("crate", "doc")
            waiter.query("select 1")
    finally:
        waiter.close()
    elapsed = time.monotonic() - started
    assert exc.value.message.startswith("query_wait_timeout"), exc.value
    assert 0.8 <= elapsed < 4, f"gave up after {elapsed:.2f} s with query_wait_timeout = 1"


def test_secrets_masked(cratebouncer, upstream):
    """No password or token appears in any SHOW output, for admin or stats users."""
    client_pw = {ADMIN: "Admin-Pw-6161", STATS: "Stats-Pw-7272", "crate": "Client-Pw-8383"}
    other_pw, file_pw, token = "Other-Upstream-Pw-9494", "File-Upstream-Pw-1212", "Token-Pw-3434"
    secrets = list(client_pw.values()) + [other_pw, file_pw, token, pgenv.PASSWORD]
    cb = cratebouncer(settings={**CONSOLE, "auth_type": "md5"}, users=client_pw)
    pwfile = os.path.join(cb.workdir, "upstream-pw")
    tokfile = os.path.join(cb.workdir, "admin-token")
    for path, text in ((pwfile, file_pw), (tokfile, token)):
        with open(path, "w") as f:
            f.write(text + "\n")
        os.chmod(path, 0o600)
    cb.databases = {"doc": upstream(), "other": upstream(password=other_pw),
                    "viafile": upstream(password=None, password_file=pwfile)}
    cb.sections = {"admin": {"access_token_file": tokfile}}
    cb.write_config()
    adm = console(cb, password=client_pw[ADMIN])
    adm.execute("RELOAD")
    assert sorted(r["name"] for r in show(adm, "DATABASES")) == ["doc", "other", "viafile"]
    with cb.connect(password=client_pw["crate"]) as client:
        client.execute("select 1")
        for user in (ADMIN, STATS):
            for what in ALL_SHOWS:
                _, _, res = psql_console(cb, f"SHOW {what}", user=user,
                                         password=client_pw[user])
                for secret in secrets:
                    assert secret not in res.stdout + res.stderr, \
                        f"{secret} in SHOW {what} as {user}"
        for what in ALL_SHOWS:
            cur = adm.execute(f"SHOW {what}")
            text = repr(cur.fetchall()) if cur.description else ""
            for secret in secrets:
                assert secret not in text, f"{secret} in SHOW {what} through psycopg"


# ---------------------------------------------------------------------------------------------
# counters


def test_stats_counters_under_load(cratebouncer, pgbench_tables):
    """pgbench -S moves SHOW STATS totals by its work; SHOW STATS_TOTALS agrees."""
    cb = cratebouncer(settings=CONSOLE)
    adm = console(cb)
    with cb.connect() as warm:
        warm.execute("select 1")
    before = stats_of(adm)
    processed = run_pgbench(cb, pgbench_tables)
    assert processed > 100, f"pgbench did only {processed} transactions"
    after = wait_until(lambda: (lambda a, b: a if a == b else None)(stats_of(adm), stats_of(adm)),
                       3, "stable counters")
    assert after["total_xact_count"] - before["total_xact_count"] >= processed, (before, after)
    assert after["total_query_count"] - before["total_query_count"] >= processed, (before, after)
    # each pgbench -S transaction is at least a Query message in and a result back
    assert after["total_received"] - before["total_received"] >= processed * 20, (before, after)
    assert after["total_sent"] - before["total_sent"] >= processed * 20, (before, after)
    assert after["total_query_time"] > before["total_query_time"]
    assert after["total_xact_time"] > before["total_xact_time"]
    totals = stats_of(adm, "STATS_TOTALS")
    for col in PART_COLS[1:]:
        stats_col = {"bytes_received": "total_received", "bytes_sent": "total_sent"}.get(
            col, "total_" + col)
        assert totals[col] == after[stats_col], f"STATS_TOTALS {col} != STATS {stats_col}"


def test_stats_averages_with_stats_period(cratebouncer, pgbench_tables):
    """With stats_period = 1, avg_query_count is above 0 within about 2 s of load."""
    cb = cratebouncer(settings={**CONSOLE, "stats_period": 1})
    adm = console(cb)
    bench = subprocess.Popen(pgbench_cmd(pgbench_tables, cb.host, cb.port, 6, clients=2),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=clean_env())

    def averages():
        assert bench.poll() is None, f"pgbench ended early:\n{bench.communicate()[0]}"
        rows = [r for r in show(adm, "STATS") if r["database"] == "doc"]
        return rows and rows[0]["avg_query_count"] > 0 and rows[0]

    try:
        # about 2 s (a period to fill, one to report), with a margin for a busy machine
        row = wait_until(averages, 4.0, "avg_query_count > 0", interval=0.1)
        assert row["avg_xact_count"] > 0 and row["avg_recv"] > 0 and row["avg_sent"] > 0, row
        avg = stats_of(adm, "STATS_AVERAGES")
        assert avg["query_count"] > 0 and avg["xact_count"] > 0, avg
    finally:
        bench.send_signal(signal.SIGINT)  # done: no need to wait for -T to run out
        try:
            bench.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            bench.kill()
            bench.communicate()
