"""cratebouncer as a service: systemd notification and watchdog, socket activation, reload on
SIGHUP, graceful and immediate stops, the exposure guard for trust, secrets kept out of logs,
credentials from $CREDENTIALS_DIRECTORY, permission warnings, and what gets logged where."""

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import psycopg
import pytest

from helpers import (CB_BINARY, TIMEOUT, Background, NotifySocket, RawConn, clean_env,
                     first_error, free_port, listening, login_error, notify_fields, wait_until,
                     write_auth_file)

pytestmark = pytest.mark.skipif(not os.path.exists(CB_BINARY), reason=f"{CB_BINARY} not built")

# ---------------------------------------------------------------------------------------------
# helpers


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def all_output(cb):
    """What the daemon wrote: its logfile and its stdout/stderr."""
    return read(cb.logfile) + read(cb.stderr_path)


def sighup(cb, settle=0.5):
    """SIGHUP, then give the daemon settle s to finish the reload (it is synchronous)."""
    cb.proc.send_signal(signal.SIGHUP)
    time.sleep(settle)


def is_ready(msg):
    return "READY=1" in msg.splitlines()


def assert_refused(cb):
    """No new client gets in, over TCP or the Unix socket."""
    for host in (cb.host, cb.sockdir):
        try:
            conn = psycopg.connect(cb.conninfo(host=host, connect_timeout=2), autocommit=True)
        except psycopg.OperationalError:
            continue
        conn.close()
        raise AssertionError(f"a new client got in via {host} after the stop signal")


def assert_not_crashed(rc, allowed_signal=None):
    assert rc is not None, "the daemon did not exit"
    if rc < 0:
        assert -rc == allowed_signal, f"the daemon died of signal {-rc}"


@pytest.fixture
def notify():
    """notify(bouncer) -> a NotifySocket whose path is put into the bouncer's NOTIFY_SOCKET."""
    made = []

    def make(cb):
        path = os.path.join(cb.workdir, "notify.sock")
        ns = NotifySocket(path)
        made.append(ns)
        cb.env["NOTIFY_SOCKET"] = path
        return ns

    yield make
    for ns in made:
        ns.close()


# ---------------------------------------------------------------------------------------------
# systemd notification


def test_notify_ready_and_status(service_bouncer, notify):
    """READY=1 arrives once clients can connect; STATUS follows the number of clients."""
    cb = service_bouncer()
    ns = notify(cb)
    cb.launch(wait=False)
    i = ns.wait_for(is_ready)
    # no polling: at READY=1 the listeners must already be bound
    assert listening(cb.host, cb.port), "READY=1 sent before the TCP listener was bound"
    assert os.path.exists(os.path.join(cb.sockdir, f".s.PGSQL.{cb.port}"))
    conn = cb.connect()
    assert conn.execute("select 1").fetchone() == (1,)

    def status(n):
        return lambda m: re.search(rf"\bclients: *{n}\b", notify_fields(m).get("STATUS", ""))

    j = ns.wait_for(status(1), timeout=3.5, start=i)
    conn.close()
    ns.wait_for(status(0), timeout=3.5, start=j + 1)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_notify_reload_and_stop(service_bouncer, notify, stop_signal):
    """SIGHUP sends RELOADING=1 with the current MONOTONIC_USEC, then READY=1; SIGTERM/SIGINT
    send STOPPING=1 and the idle daemon exits 0."""
    cb = service_bouncer()
    ns = notify(cb)
    cb.launch()
    i = ns.wait_for(is_ready)
    before = time.clock_gettime(time.CLOCK_MONOTONIC)
    cb.proc.send_signal(signal.SIGHUP)
    j = ns.wait_for(lambda m: "RELOADING=1" in m.splitlines(), timeout=5, start=i + 1)
    after = time.clock_gettime(time.CLOCK_MONOTONIC)
    fields = notify_fields(ns.texts()[j])
    assert "MONOTONIC_USEC" in fields, f"RELOADING=1 without MONOTONIC_USEC: {ns.texts()[j]!r}"
    usec = int(fields["MONOTONIC_USEC"])
    assert (before - 0.05) * 1e6 <= usec <= (after + 0.05) * 1e6, "not CLOCK_MONOTONIC now"
    k = ns.wait_for(is_ready, timeout=5, start=j + 1)
    assert cb.psql("select 'after reload'").stdout.strip() == "after reload"
    cb.proc.send_signal(stop_signal)
    ns.wait_for(lambda m: "STOPPING=1" in m.splitlines(), timeout=5, start=k + 1)
    assert cb.reap(5) == 0


def test_watchdog(service_bouncer, notify):
    """With WATCHDOG_USEC=2 s and WATCHDOG_PID set to its pid, WATCHDOG=1 comes at least every
    second."""
    cb = service_bouncer(env={"WATCHDOG_USEC": "2000000"},
                         wrapper=["sh", "-c", 'export WATCHDOG_PID=$$; exec "$0" "$@"'])
    ns = notify(cb)
    cb.launch(wait=False)
    ready_at = ns.messages[ns.wait_for(is_ready)][0]
    time.sleep(3.2)
    end = time.monotonic()
    pings = [t for t, m in list(ns.messages) if "WATCHDOG=1" in m.splitlines()]
    assert len(pings) >= 3, f"{len(pings)} WATCHDOG=1 in 3.2 s"
    points = [ready_at] + [t for t in pings if t >= ready_at] + [end]
    gaps = [b - a for a, b in zip(points, points[1:])]
    assert max(gaps) <= 1.25, f"a gap of {max(gaps):.2f} s between watchdog pings"
    assert cb.proc.poll() is None


# ---------------------------------------------------------------------------------------------
# socket activation


def test_socket_activation(service_bouncer):
    """Under systemd-socket-activate the daemon serves the passed socket and binds nothing of
    its own (no listen_port, no Unix socket)."""
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        pytest.skip("systemd-socket-activate not installed (Debian package systemd)")
    cb = service_bouncer().prepare()
    config_port = cb.port
    activation_port = free_port()
    while activation_port == config_port:
        activation_port = free_port()
    cb.wrapper = [tool, "-l", f"127.0.0.1:{activation_port}", "--fdname=pgwire"]
    cb.launch(wait=False)
    wait_until(lambda: listening("127.0.0.1", activation_port), TIMEOUT,
               "systemd-socket-activate listening")
    cb.port = activation_port  # clients go through the passed socket from here on
    assert cb.psql("select current_user").stdout.strip() == "crate"
    with cb.connect() as conn:
        assert conn.execute("select 6 * 7").fetchone() == (42,)
    assert cb.proc.poll() is None
    assert not listening("127.0.0.1", config_port), "listen_port bound despite passed sockets"
    assert not os.path.exists(os.path.join(cb.sockdir, f".s.PGSQL.{config_port}")), \
        "Unix socket created despite passed sockets"


def test_socket_activation_admin(service_bouncer):
    """Sockets named pgwire and admin: clients on the first, the admin HTTP port (/health,
    /metrics) on the second, although [admin] listen_port is 0."""
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        pytest.skip("systemd-socket-activate not installed (Debian package systemd)")
    import http.client
    cb = service_bouncer().prepare()
    pg_port, admin_port = free_port(), free_port()
    while admin_port == pg_port:
        admin_port = free_port()
    cb.wrapper = [tool, "-l", f"127.0.0.1:{pg_port}", "-l", f"127.0.0.1:{admin_port}",
                  "--fdname=pgwire:admin"]
    cb.launch(wait=False)
    wait_until(lambda: listening("127.0.0.1", admin_port), TIMEOUT,
               "systemd-socket-activate listening")
    cb.port = pg_port
    with cb.connect() as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=TIMEOUT)
    conn.request("GET", "/health")
    resp = conn.getresponse()
    assert resp.status == 200 and b"ok" in resp.read()
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    body = resp.read().decode()
    assert resp.status == 200 and 'cratebouncer_pool_queries_total{database="doc"' in body
    conn.close()


# ---------------------------------------------------------------------------------------------
# SIGHUP


def test_reload_under_load(service_bouncer, pgbench_tables):
    """pgbench -S with 8 clients for 6 s while config and auth_file are reloaded every 0.3 s:
    exit 0, no failed transaction."""
    cb = service_bouncer(settings={"auth_type": "md5"}, users={"crate": "Bench-Pw-77"}).launch()
    stop, hups = threading.Event(), [0]

    def hupper():
        flip = False
        while not stop.wait(0.3):
            flip = not flip  # every reload reads a changed config
            cb.settings["query_wait_timeout"] = 121 if flip else 120
            cb.write_config()
            cb.proc.send_signal(signal.SIGHUP)
            hups[0] += 1

    env = clean_env()
    env["PGPASSWORD"] = "Bench-Pw-77"
    t = threading.Thread(target=hupper)
    t.start()
    try:
        res = subprocess.run([pgbench_tables, "-n", "-S", "-c", "8", "-j", "2", "-T", "6",
                              "-h", cb.host, "-p", str(cb.port), "-U", "crate", "doc"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env, timeout=30)
    finally:
        stop.set()
        t.join(5)
    out = res.stdout
    assert res.returncode == 0, out
    assert hups[0] >= 15, f"only {hups[0]} SIGHUPs sent"
    failed = re.search(r"number of failed transactions: (\d+)", out)
    assert failed, f"no failed-transactions line in pgbench output:\n{out}"
    assert int(failed.group(1)) == 0, out
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    assert processed and int(processed.group(1)) > 0, out
    assert cb.proc.poll() is None


def test_reload_pool_size(service_bouncer, upstream):
    """Raising a database's pool_size from 1 to 3 by SIGHUP lets 3 concurrent clients run at
    once (0.5 s instead of 1.5 s)."""
    cb = service_bouncer(databases={"doc": upstream(pool_size=1)}).launch()

    def burst():
        errors, barrier = [], threading.Barrier(3, timeout=TIMEOUT)

        def client():
            try:
                barrier.wait()
                with cb.connect() as conn:
                    conn.execute("select pg_sleep(0.5)")
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=client) for _ in range(3)]
        started = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(TIMEOUT)
        assert not any(th.is_alive() for th in threads)
        assert errors == []
        return time.monotonic() - started

    slow = burst()
    assert slow >= 1.4, f"pool_size=1 ran 3 x 0.5 s in {slow:.2f} s"
    cb.databases = {"doc": upstream(pool_size=3)}
    cb.write_config()
    sighup(cb)
    fast = burst()
    assert fast < 1.2, f"after reload to pool_size=3, 3 x 0.5 s took {fast:.2f} s"


def test_reload_broken_config_keeps_old(service_bouncer, upstream):
    """A reload of a config with errors logs each as FILE:LINE and changes nothing: the daemon
    keeps serving with the old config, the connected client included."""
    cb = service_bouncer().launch()
    held = cb.connect()
    assert held.execute("select 1").fetchone() == (1,)
    with open(cb.config_path) as f:
        lines = f.read().splitlines()
    # a valid new database, the old one removed, and two bad lines in the global section
    entry = " ".join(f"{k}={v}" for k, v in upstream().items())
    lines = [f"doc2 = {entry}" if ln.startswith("doc =") else ln for ln in lines]
    lines += ["no_such_setting_here = 1", "max_client_conn = lots"]
    with open(cb.config_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    bad_lines = [len(lines) - 1, len(lines)]
    sighup(cb)
    assert cb.proc.poll() is None, "the daemon exited on a broken reload"
    out = all_output(cb)
    for n in bad_lines:
        assert re.search(rf"cratebouncer\.ini:{n}\b", out), f"no FILE:{n} error logged"
    assert held.execute("select 2").fetchone() == (2,)
    assert cb.psql("select 'old config'").stdout.strip() == "old config"
    err = first_error(cb.host, cb.port, database="doc2")
    assert "no such database" in err.message, "doc2 from the broken config is in effect"


def test_reload_auth_file_adds_user(service_bouncer):
    """A user added to auth_file can log in (md5) after SIGHUP; existing users still can."""
    users = {"alice": "Alice-Pw-31"}
    cb = service_bouncer(settings={"auth_type": "md5"}, users=users).launch()
    err = login_error(cb.host, cb.port, user="bob", password="Bob-Pw-42")
    assert err.sqlstate == "28P01"
    users["bob"] = "Bob-Pw-42"
    write_auth_file(cb.auth_file, users)
    sighup(cb)
    for user, pw in users.items():
        conn = RawConn(cb.host, cb.port).login(user, "doc", pw)
        try:
            assert conn.auth_requests == [5]
            assert conn.query("select current_user") == [["crate"]]
        finally:
            conn.close()


def test_reload_reopens_logfile(service_bouncer):
    """After the logfile is renamed, SIGHUP makes the daemon write to a new file of the
    configured name."""
    cb = service_bouncer().launch()
    cb.psql("select 1", user="before_rotation")
    wait_until(lambda: "before_rotation" in read(cb.logfile), 5, "login of before_rotation logged")
    rotated = cb.logfile + ".1"
    os.rename(cb.logfile, rotated)
    sighup(cb, settle=0.2)
    cb.psql("select 1", user="after_rotation")
    wait_until(lambda: "after_rotation" in read(cb.logfile), 5,
               "a new logfile with the login of after_rotation")
    assert "after_rotation" not in read(rotated)


def test_reload_rereads_ca_file(service_bouncer, upstream, pg):
    """SIGHUP reads server_tls_ca_file again: new upstream connections verify against the new
    content while a connected client keeps working."""
    cb = service_bouncer(databases={"a": upstream(), "b": upstream(), "c": upstream()})
    ca = os.path.join(cb.workdir, "upstream-ca.crt")
    shutil.copy(pg.ca, ca)
    cb.settings["server_tls_ca_file"] = ca
    cb.launch()
    held = cb.connect(dbname="a")
    assert held.execute("select 1").fetchone() == (1,)
    shutil.copy(pg.other_ca, ca)
    sighup(cb)
    err = first_error(cb.host, cb.port, database="b")
    assert "certificate" in err.message, err.message
    assert held.execute("select 2").fetchone() == (2,)
    shutil.copy(pg.ca, ca)
    sighup(cb)
    with cb.connect(dbname="c") as conn:
        assert conn.execute("select 3").fetchone() == (3,)


# ---------------------------------------------------------------------------------------------
# stopping


def test_sigterm_waits_for_client(service_bouncer):
    """SIGTERM during a query: the query completes, new clients are refused, and the daemon
    exits 0 once the client has left."""
    cb = service_bouncer().launch()
    conn = cb.connect()
    conn.execute("select 1")
    query = Background(lambda: conn.execute("select 'done' from pg_sleep(2)").fetchone())
    time.sleep(0.5)
    cb.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert_refused(cb)
    query.join(TIMEOUT)
    assert query.error is None, repr(query.error)
    assert query.result == ("done",)
    time.sleep(0.3)
    assert cb.proc.poll() is None, "exited while its client was still connected"
    assert conn.execute("select 'still served'").fetchone() == ("still served",)
    conn.close()
    assert cb.reap(5) == 0


def test_sigint_waits_for_query_only(service_bouncer):
    """SIGINT during a query: the query completes, new clients are refused, the daemon then
    disconnects the client and exits 0 without waiting for it to leave."""
    cb = service_bouncer().launch()
    conn = cb.connect()
    conn.execute("select 1")
    query = Background(lambda: conn.execute("select 'done' from pg_sleep(2)").fetchone())
    time.sleep(0.5)
    cb.proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    assert_refused(cb)
    query.join(TIMEOUT)
    assert query.error is None, repr(query.error)
    assert query.result == ("done",)
    assert cb.reap(3) == 0, "did not exit 0 within 3 s of the query's end"
    with pytest.raises(psycopg.OperationalError):
        conn.execute("select 1")


@pytest.mark.parametrize("signals", [(signal.SIGTERM, signal.SIGTERM), (signal.SIGQUIT,)],
                         ids=["second-TERM", "QUIT"])
def test_immediate_stop(service_bouncer, signals):
    """A second SIGTERM, or SIGQUIT, ends the daemon at once, cutting off a running query."""
    cb = service_bouncer().launch()
    conn = cb.connect()
    conn.execute("select 1")
    query = Background(lambda: conn.execute("select pg_sleep(4)"))
    time.sleep(0.5)
    for sig in signals[:-1]:
        cb.proc.send_signal(sig)
        time.sleep(0.3)
        assert cb.proc.poll() is None, "the first SIGTERM did not wait for the client"
    started = time.monotonic()
    cb.proc.send_signal(signals[-1])
    rc = cb.reap(3)
    elapsed = time.monotonic() - started
    assert_not_crashed(rc, allowed_signal=signals[-1])
    assert elapsed < 1.0, f"took {elapsed:.2f} s to exit"
    query.join(TIMEOUT)
    assert isinstance(query.error, psycopg.OperationalError), repr(query.error or query.result)


def test_shutdown_timeout(service_bouncer):
    """With shutdown_timeout = 1, SIGTERM with an idle client that never leaves exits after
    about 1 s."""
    cb = service_bouncer(settings={"shutdown_timeout": 1}).launch()
    conn = cb.connect()
    assert conn.execute("select 1").fetchone() == (1,)
    started = time.monotonic()
    cb.proc.send_signal(signal.SIGTERM)
    rc = cb.reap(6)
    elapsed = time.monotonic() - started
    assert_not_crashed(rc)
    assert 0.8 <= elapsed <= 3.5, f"exited {elapsed:.2f} s after SIGTERM"


# ---------------------------------------------------------------------------------------------
# exposure guard


def run_check(cb):
    return subprocess.run([CB_BINARY, "-t", cb.config_path], capture_output=True, text=True,
                          timeout=TIMEOUT)


@pytest.mark.parametrize("addr", ["0.0.0.0", "127.0.0.1, 0.0.0.0"])
def test_exposure_guard_refuses_trust(service_bouncer, addr):
    """auth_type = trust on a non-loopback listen_addr: -t fails, and the daemon exits 1 with
    an error naming allow_unauthenticated_remote."""
    cb = service_bouncer(settings={"listen_addr": addr}).prepare()
    check = run_check(cb)
    assert check.returncode != 0, "cratebouncer -t accepted the exposed trust config"
    assert "allow_unauthenticated_remote" in check.stdout + check.stderr
    try:
        res = subprocess.run([CB_BINARY, cb.config_path], capture_output=True, text=True,
                             cwd=cb.workdir, timeout=TIMEOUT, env=clean_env())
    except subprocess.TimeoutExpired:
        raise AssertionError("the daemon started with trust on " + addr) from None
    assert res.returncode == 1, res.stderr
    assert "allow_unauthenticated_remote" in res.stderr, res.stderr
    assert not listening("0.0.0.0", cb.port)


@pytest.mark.parametrize("case", ["allow-remote", "star", "md5", "loopback", "loopback-127.0.0.2"])
def test_exposure_guard_allows(service_bouncer, case):
    """Trust on 0.0.0.0 (or "*", every IPv4 and IPv6 address, as PgBouncer reads it) with
    allow_unauthenticated_remote = 1, md5 on 0.0.0.0, and trust on a loopback address all
    start and serve."""
    settings, users, password, listen_host = {}, None, None, "127.0.0.1"
    if case == "allow-remote":
        settings = {"listen_addr": "0.0.0.0", "allow_unauthenticated_remote": 1}
        listen_host = "0.0.0.0"
    elif case == "star":
        settings = {"listen_addr": "*", "allow_unauthenticated_remote": 1}
        listen_host = "0.0.0.0"
    elif case == "md5":
        settings = {"listen_addr": "0.0.0.0", "auth_type": "md5"}
        users, password, listen_host = {"crate": "Md5-Pw-5"}, "Md5-Pw-5", "0.0.0.0"
    elif case == "loopback-127.0.0.2":
        settings = {"listen_addr": "127.0.0.2"}
        listen_host = "127.0.0.2"
    cb = service_bouncer(settings=settings, users=users).prepare()
    check = run_check(cb)
    assert check.returncode == 0, check.stdout + check.stderr
    cb.launch(wait=False)
    wait_until(lambda: listening(listen_host, cb.port) or cb.proc.poll() is not None, TIMEOUT,
               "listening")
    assert cb.proc.poll() is None, f"exited with {cb.proc.returncode}"
    if case == "loopback-127.0.0.2":
        cb.host = "127.0.0.2"
    assert cb.psql("select 'served'", password=password).stdout.strip() == "served"
    if case == "star":
        # :: too (IPv6-only beside 0.0.0.0, which would otherwise take the port from it)
        cb.host = "::1"
        assert cb.psql("select 'over IPv6'").stdout.strip() == "over IPv6"


# ---------------------------------------------------------------------------------------------
# secrets


UPSTREAM_BAD = "Upstream-Secret-4711"
UPSTREAM_BAD_FILE = "Upstream-File-Secret-1234"
CLIENT_MD5 = "Client-Secret-0815"
CLIENT_SCRAM = "Client-Scram-Secret-2342"
CLIENT_WRONG = "Client-Wrong-Secret-9999"
SECRETS = (UPSTREAM_BAD, UPSTREAM_BAD_FILE, CLIENT_MD5, CLIENT_SCRAM, CLIENT_WRONG)


def test_secrets_stay_out_of_logs(service_bouncer, notify, upstream):
    """With verbose = 2: md5, cleartext and SCRAM client logins, wrong passwords, failed
    upstream logins, reloads and a stop leave no password in the log, stderr or sd_notify."""
    cb = service_bouncer(settings={"auth_type": "md5", "verbose": 2, "log_connections": 1,
                                   "log_disconnections": 1, "log_pooler_errors": 1},
                         users={"alice": CLIENT_MD5, "bob": CLIENT_SCRAM})
    pwfile = os.path.join(cb.workdir, "bad-upstream-pw")
    with open(pwfile, "w") as f:
        f.write(UPSTREAM_BAD_FILE + "\n")
    os.chmod(pwfile, 0o600)
    cb.databases = {"doc": upstream(), "bad": upstream(password=UPSTREAM_BAD),
                    "badfile": upstream(password=None, password_file=pwfile)}
    ns = notify(cb)
    cb.launch()

    def login_ok(user, password, code):
        conn = RawConn(cb.host, cb.port).login(user, "doc", password)
        try:
            assert conn.auth_requests == [code]
            assert conn.query("select current_user") == [["crate"]]
        finally:
            conn.close()

    def reload_to(auth_type):
        cb.settings["auth_type"] = auth_type
        cb.write_config()
        start = len(ns.texts())
        cb.proc.send_signal(signal.SIGHUP)
        ns.wait_for(is_ready, timeout=5, start=start + 1)

    login_ok("alice", CLIENT_MD5, 5)
    assert login_error(cb.host, cb.port, "alice", password=CLIENT_WRONG).sqlstate == "28P01"
    for db in ("bad", "badfile"):
        err = first_error(cb.host, cb.port, "alice", db, password=CLIENT_MD5)
        assert "password authentication failed" in err.message, err.message
    reload_to("plain")
    login_ok("alice", CLIENT_MD5, 3)
    assert login_error(cb.host, cb.port, "alice", password=CLIENT_WRONG).sqlstate == "28P01"
    reload_to("scram-sha-256")
    login_ok("bob", CLIENT_SCRAM, 10)
    assert login_error(cb.host, cb.port, "bob", password=CLIENT_WRONG).sqlstate == "28P01"
    cb.proc.send_signal(signal.SIGTERM)
    assert cb.reap(5) == 0
    log, stderr, notes = read(cb.logfile), read(cb.stderr_path), "\n".join(ns.texts())
    assert "alice" in log and "bob" in log, "the test needs a log of the logins"
    for where, text in (("logfile", log), ("stderr", stderr), ("sd_notify", notes)):
        for secret in SECRETS:
            assert secret not in text, f"{secret} appears in the {where}"


def test_password_file_from_credentials_directory(service_bouncer, upstream):
    """password_file = $CREDENTIALS_DIRECTORY/upstream-pw reads the upstream password from the
    directory systemd names in CREDENTIALS_DIRECTORY."""
    cb = service_bouncer()
    creds = os.path.join(cb.workdir, "credentials")
    os.mkdir(creds, 0o700)
    with open(os.path.join(creds, "upstream-pw"), "w") as f:
        f.write("secret\n")
    os.chmod(os.path.join(creds, "upstream-pw"), 0o600)
    cb.databases = {"doc": upstream(password=None,
                                    password_file="$CREDENTIALS_DIRECTORY/upstream-pw")}
    cb.env["CREDENTIALS_DIRECTORY"] = creds
    cb.launch()
    with cb.connect() as conn:
        assert conn.execute("select current_user").fetchone() == ("crate",)


@pytest.mark.parametrize("mode", [0o644, 0o600], ids=["0644", "0600"])
def test_secret_file_permission_warnings(service_bouncer, upstream, mode):
    """A config file holding password=, a password_file and an auth_file that others can read
    each get a warning naming the file; at 0600 none does."""
    cb = service_bouncer(settings={"auth_type": "md5"}, users={"alice": "Alice-Pw-31"})
    pwfile = os.path.join(cb.workdir, "upstream-pw")
    with open(pwfile, "w") as f:
        f.write("secret\n")
    cb.databases = {"doc": upstream(),
                    "viafile": upstream(password=None, password_file=pwfile)}
    cb.prepare()
    files = (cb.config_path, pwfile, cb.auth_file)
    for path in files:
        os.chmod(path, mode)
    cb.launch()
    assert cb.psql("select 1", password="Alice-Pw-31", user="alice").stdout.strip() == "1"
    warnings = [ln for ln in all_output(cb).splitlines() if "warn" in ln.lower()]
    for path in files:
        named = [ln for ln in warnings if path in ln]
        if mode & 0o004:
            assert named, f"no warning about {oct(mode)} {path}; warnings: {warnings}"
        else:
            assert not named, f"warning about a 0600 file: {named}"


# ---------------------------------------------------------------------------------------------
# logging


def test_log_connections_disconnections(service_bouncer):
    """log_connections logs one `login` line with user and database per client; log_disconnections
    one `closing` line per client leaving."""
    cb = service_bouncer(settings={"log_connections": 1, "log_disconnections": 1}).launch()
    users = ("logger_one", "logger_two", "logger_three")
    for user in users:
        with cb.connect(user=user) as conn:
            conn.execute("select 1")

    def closings():
        return [ln for ln in read(cb.logfile).splitlines() if "closing" in ln]

    wait_until(lambda: len(closings()) >= 3, 5, "three closing lines")
    time.sleep(0.2)
    lines = read(cb.logfile).splitlines()
    for user in users:
        logins = [ln for ln in lines if "login" in ln and user in ln]
        assert len(logins) == 1, f"login lines for {user}: {logins}"
        assert "doc" in logins[0]
    assert len(closings()) == 3, closings()


def test_log_pooler_errors(service_bouncer):
    """log_pooler_errors logs the message of an error the daemon sends to a client."""
    cb = service_bouncer(settings={"log_pooler_errors": 1}).launch()
    err = login_error(cb.host, cb.port, database="nosuchdb_xyz")
    assert "no such database" in err.message
    wait_until(lambda: err.message in read(cb.logfile), 5, "the error message in the log")


def test_logging_switches_off(service_bouncer):
    """With log_connections, log_disconnections and log_pooler_errors off, logins, disconnects
    and pooler errors are not logged."""
    cb = service_bouncer(settings={"log_connections": 0, "log_disconnections": 0,
                                   "log_pooler_errors": 0}).launch()
    with cb.connect(user="quiet_user") as conn:
        conn.execute("select 1")
    err = login_error(cb.host, cb.port, database="nosuchdb_quiet")
    assert "no such database" in err.message
    time.sleep(0.3)
    log = read(cb.logfile)
    assert "quiet_user" not in log
    assert "closing" not in log
    assert "nosuchdb_quiet" not in log


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")


@pytest.mark.parametrize("matching", [True, False], ids=["journal", "other-inode"])
def test_journal_stream_format(service_bouncer, matching):
    """When JOURNAL_STREAM names the file stderr goes to, stderr lines carry a <N> priority
    prefix and no timestamp; when it names another file, the usual timestamped lines."""
    cb = service_bouncer()
    open(cb.stderr_path, "ab").close()
    st = os.stat(cb.stderr_path if matching else cb.workdir)
    cb.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    cb.launch()
    cb.psql("select 1", user="journal_user")
    wait_until(lambda: "journal_user" in read(cb.stderr_path), 5, "login line on stderr")
    cb.proc.send_signal(signal.SIGTERM)
    assert cb.reap(5) == 0
    lines = [ln for ln in read(cb.stderr_path).splitlines() if ln.strip()]
    assert lines
    if matching:
        bad = [ln for ln in lines if not re.match(r"<[0-7]>", ln) or TIMESTAMP.search(ln)]
        assert not bad, f"stderr lines without <N> prefix or with a timestamp: {bad}"
        assert any(ln.startswith("<6>") for ln in lines)
    else:
        assert all(TIMESTAMP.search(ln) and not re.match(r"<[0-7]>", ln)
                   for ln in lines if "journal_user" in ln)


def test_socket_activation_http(service_bouncer, crate_http):
    """A socket named http serves the HTTP side (although [http] listen_port is 0)."""
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        pytest.skip("systemd-socket-activate not installed (Debian package systemd)")
    import http.client
    import json
    cb = service_bouncer(sections={"http": {"upstream": crate_http.url, "user": crate_http.user,
                                            "password": crate_http.password,
                                            "tls_ca_file": crate_http.ca}}).prepare()
    pg_port, http_port = free_port(), free_port()
    while http_port == pg_port:
        http_port = free_port()
    cb.wrapper = [tool, "-l", f"127.0.0.1:{pg_port}", "-l", f"127.0.0.1:{http_port}",
                  "--fdname=pgwire:http"]
    cb.launch(wait=False)
    wait_until(lambda: listening("127.0.0.1", http_port), TIMEOUT,
               "systemd-socket-activate listening")
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=TIMEOUT)
    conn.request("POST", "/_sql", json.dumps({"stmt": "select 6 * 7"}),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read())["rows"] == [[42]]
    conn.close()
