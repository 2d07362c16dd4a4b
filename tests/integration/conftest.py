"""Fixtures: one TLS-only PostgreSQL for the session (tests/support/pgenv.py) and a factory that runs
cratebouncer daemons against it, each with its own config, ports and temp directory.

Environment: CB_BINARY (the daemon; default <repo>/src/cratebouncer), CB_KEEP_TMP=1 keeps the
temp directories for inspection.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psycopg
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
sys.path.insert(0, HERE)

import pgenv  # noqa: E402
from helpers import (CB_BINARY, TIMEOUT, clean_env, free_port, listening, psql,  # noqa: E402
                     npm_module, write_auth_file)

KEEP_TMP = os.environ.get("CB_KEEP_TMP") == "1"
TEST_TIME_LIMIT = 60  # seconds per test, setup and teardown included
STOP_GRACE = 5  # seconds between SIGTERM and SIGKILL

# Nothing from the caller's environment may steer libpq (no PGPASSWORD, no ~/.pgpass, ...).
for _k in [k for k in os.environ if k.startswith("PG")]:
    del os.environ[_k]
os.environ["PGPASSFILE"] = "/nonexistent/pgpass"
os.environ["PGCONNECT_TIMEOUT"] = str(TIMEOUT)


def _mkdtemp(prefix):
    # Short and under /tmp: a Unix socket path must fit in 107 bytes.
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


# ---------------------------------------------------------------------------------------------
# per-test time limit, and daemon logs attached to failure reports


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): a longer per-test time limit")


def pytest_terminal_summary(terminalreporter):
    """The real-CrateDB tier (crate_targets.py) says whether it ran."""
    if os.environ.get("CB_CRATEDB_PG"):
        terminalreporter.write_line("real-CrateDB tier: ran against CB_CRATEDB_PG")
    else:
        terminalreporter.write_line("real-CrateDB tier: SKIPPED (CB_CRATEDB_PG is not set; the "
                                    "CrateDB tests ran against the stand-in only)")


@pytest.fixture(autouse=True)
def _time_limit(request):
    """Fail (rather than hang) a test that runs longer than TEST_TIME_LIMIT seconds (or its
    time_limit marker's)."""
    m = request.node.get_closest_marker("time_limit")
    limit = int(m.args[0]) if m else TEST_TIME_LIMIT

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded {limit} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    saved = getattr(item, "_cb_problem_outputs", None)
    for i, b in enumerate(getattr(item, "_cratebouncers", [])):
        text = saved[i] if saved else b.output()
        rep.sections.append((f"cratebouncer {b.workdir} output", text or "(empty)"))
    for c in getattr(item, "_crate_https", []):
        rep.sections.append((f"crate_http.py {c.workdir} stderr", c.output() or "(empty)"))


# ---------------------------------------------------------------------------------------------
# PostgreSQL


@pytest.fixture(scope="session")
def pg():
    """The upstream: TLS-only PostgreSQL 15 with users crate (password), md5user (md5),
    scramuser (scram-sha-256), all with password 'secret', database doc."""
    directory = _mkdtemp("cbpg-")
    env = None
    try:
        for attempt in range(5):
            try:
                env = pgenv.start(directory, free_port())
                break
            except pgenv.PortBusy:
                if attempt == 4:
                    raise
        yield env
    finally:
        pgenv.stop(directory)
        if not KEEP_TMP:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def upstream(pg):
    """upstream(**overrides) -> a [databases] entry (dict) for the test PostgreSQL as crate;
    an override of None drops that key."""
    def make(**overrides):
        entry = {"host": "127.0.0.1", "port": pg.port, "dbname": "doc", "user": "crate",
                 "password": pgenv.PASSWORD}
        entry.update(overrides)
        return {k: v for k, v in entry.items() if v is not None}
    return make


# ---------------------------------------------------------------------------------------------
# cratebouncer


class StartError(Exception):
    pass


class Bouncer:
    """One cratebouncer process with its config, listening on 127.0.0.1:port and in sockdir."""

    host = "127.0.0.1"

    def __init__(self, pg, settings, databases, users, args):
        self.workdir = _mkdtemp("cb-")
        self.reaped = False  # reap() saw it exit: no problem at teardown
        self.sockdir = self.workdir
        self.config_path = os.path.join(self.workdir, "cratebouncer.ini")
        self.logfile = os.path.join(self.workdir, "cratebouncer.log")
        self.pidfile = os.path.join(self.workdir, "cratebouncer.pid")
        self.stderr_path = os.path.join(self.workdir, "stderr.txt")
        self.auth_file = os.path.join(self.workdir, "userlist.txt")
        self.pg = pg
        self.settings = settings or {}
        self.databases = databases
        self.users = users
        self.args = list(args)
        self.proc = None
        self.stopped = False
        self.port = None
        self.connections = []
        self.sections = {}  # extra INI sections written after the global one: {name: {k: v}}

    # -- config and process

    def write_config(self):
        glob = {
            "listen_addr": self.host,
            "listen_port": self.port,
            "unix_socket_dir": self.sockdir,
            "auth_type": "trust",
            "logfile": self.logfile,
            "pidfile": self.pidfile,
            "server_tls_sslmode": "verify-full",
            "server_tls_ca_file": self.pg.ca,
            "server_connect_timeout": 5,
        }
        if self.users is not None:
            write_auth_file(self.auth_file, self.users)
            glob["auth_file"] = self.auth_file
        glob.update(self.settings)
        self.sockdir = glob.get("unix_socket_dir") or None
        lines = ["[databases]"]
        for name, entry in self.databases.items():
            if isinstance(entry, dict):
                entry = " ".join(f"{k}={v}" for k, v in entry.items())
            lines.append(f"{name} = {entry}")
        lines += ["", "[cratebouncer]"]
        lines += [f"{k} = {v}" for k, v in glob.items() if v is not None]
        for section, entries in self.sections.items():
            lines += ["", f"[{section}]"]
            lines += [f"{k} = {v}" for k, v in entries.items() if v is not None]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        for attempt in range(3):
            self.port = free_port()
            self.stopped = False
            self.write_config()
            self.stderr_f = open(self.stderr_path, "ab")
            try:
                self.proc = subprocess.Popen([CB_BINARY, *self.args, self.config_path],
                                             stdin=subprocess.DEVNULL, stdout=self.stderr_f,
                                             stderr=subprocess.STDOUT, cwd=self.workdir)
            except OSError as e:
                self.stderr_f.close()
                raise StartError(f"cannot run {CB_BINARY}: {e}") from None
            try:
                self._wait_ready()
                return self
            except StartError:
                self.stop()
                if "in use" in self.output(with_config=False) and attempt < 2:
                    continue  # lost a race for the port: try another
                raise

    def _wait_ready(self, timeout=TIMEOUT):
        """Until the TCP port accepts connections and the Unix socket exists (if configured)."""
        deadline = time.monotonic() + timeout
        sock_path = self.sockdir and os.path.join(self.sockdir, f".s.PGSQL.{self.port}")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"cratebouncer exited with {self.proc.returncode} at start")
            if listening(self.host, self.port) and (not sock_path or os.path.exists(sock_path)):
                self._wait_sections()
                return
            time.sleep(0.02)
        raise StartError(f"cratebouncer did not accept connections on port {self.port} "
                         f"within {timeout} s")

    def _wait_sections(self, grace=3.0):
        """A little while for the [http] and [admin] TCP listeners, set up just after the main
        one: a test connecting there at once would race them. Not an error if one does not
        come up (some tests configure one to fail)."""
        # the first address of a listen_addr list
        ports = [(str(sec.get("listen_addr") or "127.0.0.1").replace(",", " ").split()[0],
                  str(sec.get("listen_port", ""))) for sec in self.sections.values()]
        deadline = time.monotonic() + grace
        for host, port in ports:
            if not port.isdigit() or not (host.startswith("127.") or host == "0.0.0.0"):
                continue
            port = int(port)
            while (time.monotonic() < deadline and self.proc.poll() is None
                   and not listening(host, port)):
                time.sleep(0.02)

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_GRACE. Returns a problem description or None."""
        if self.proc is None or self.stopped:
            return None
        self.stopped = True
        for c in self.connections:
            try:
                c.close()
            except Exception:
                pass
        problem = None
        if self.proc.poll() is not None:
            if not self.reaped:
                problem = f"cratebouncer had exited on its own with {self.proc.returncode}"
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
                print(f"cratebouncer pid {self.proc.pid} ignored SIGTERM for {STOP_GRACE} s: "
                      "killed", file=sys.stderr)
        rc = self.proc.returncode
        if rc < 0 and -rc not in (signal.SIGTERM, signal.SIGKILL):
            problem = f"cratebouncer died of signal {-rc}"
        out = self.output()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            if marker in out:
                problem = f"sanitizer report ({marker}) in cratebouncer output"
        if "(a bug)" in out:
            # the daemon's own checks (a connection state move it never makes) found one
            problem = "cratebouncer logged a bug it detected in itself: (a bug) in its output"
        self.stderr_f.close()
        return problem

    def reap(self, timeout):
        """Wait up to timeout s for the daemon to exit (a test stopped it); its exit status, or
        None if it still runs. The teardown still checks its output."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.reaped = True
        return rc

    def output(self, with_config=True):
        """Config, log file and stdout/stderr, for failure reports."""
        parts = []
        paths = (self.config_path,) if with_config else ()
        for path in paths + (self.logfile, self.stderr_path):
            try:
                with open(path, errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            if text:
                parts.append(f"--- {os.path.basename(path)} ---\n{text}")
        return "\n".join(parts)

    def log_text(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- clients

    def conninfo(self, dbname="doc", user="crate", host=None, **kw):
        parts = {"host": host or self.host, "port": self.port, "dbname": dbname, "user": user,
                 "connect_timeout": TIMEOUT, **kw}
        return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)

    def connect(self, dbname="doc", user="crate", host=None, **kw):
        """A psycopg 3 connection through cratebouncer (autocommit), closed at teardown."""
        conn = psycopg.connect(self.conninfo(dbname, user, host, **kw), autocommit=True)
        self.connections.append(conn)
        return conn

    def psql(self, sql, dbname="doc", user="crate", password=None, check=True, **kw):
        return psql(self.conninfo(dbname, user, **kw), sql, password=password, check=check)


@pytest.fixture
def cratebouncer(pg, upstream, request):
    """cratebouncer(settings={...}, databases={...}, users={...}, args=[...], sections={...}) ->
    a running Bouncer. settings override the global section (None drops a key); databases
    default to {"doc": upstream()}; users, when given, are written to an auth_file
    (name -> secret); sections adds further INI sections ({"admin": {"listen_port": N}})."""
    if not os.path.exists(CB_BINARY):
        if os.environ.get("CB_BINARY"):
            pytest.fail(f"CB_BINARY={CB_BINARY} does not exist")
        pytest.skip(f"{CB_BINARY} not built")
    made = []
    request.node._cratebouncers = made

    def make(settings=None, databases=None, users=None, args=(), sections=None):
        b = Bouncer(pg, settings, databases or {"doc": upstream()}, users, args)
        b.sections = dict(sections or {})
        made.append(b)
        try:
            return b.start()
        except StartError as e:
            error = str(e)  # the report gets b.output() from pytest_runtest_makereport
        pytest.fail(error, pytrace=False)

    yield make

    problems = [p for p in (b.stop() for b in made) if p]
    if problems:  # the report gets b.output() before the directories go
        request.node._cb_problem_outputs = [b.output() for b in made]
    if not KEEP_TMP:
        for b in made:
            shutil.rmtree(b.workdir, ignore_errors=True)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


# ---------------------------------------------------------------------------------------------
# cratebouncer as a service (systemd environment, wrappers, expected exits)

# Variables through which systemd talks to a service: none leaks in from the caller.
SERVICE_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                    "LISTEN_FDNAMES", "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY")


class ServiceBouncer(Bouncer):
    """A Bouncer run with extra environment variables and an optional command in front of it
    (sh -c ..., systemd-socket-activate ...); prepare() writes the config, launch() runs it."""

    def __init__(self, pg, settings, databases, users, args, env=None, wrapper=()):
        super().__init__(pg, settings, databases, users, args)
        self.env = dict(env or {})
        self.wrapper = list(wrapper)
        self.problem = None

    def prepare(self):
        """Pick a port and write the config (and auth_file); the daemon is not started."""
        self.port = free_port()
        self.write_config()
        return self

    def launch(self, wait=True):
        """Start the daemon as configured; with wait, until it accepts connections."""
        if self.port is None:
            self.prepare()
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV_VARS}
        env.update(self.env)
        self.stopped = False
        self.stderr_f = open(self.stderr_path, "ab")
        try:
            self.proc = subprocess.Popen([*self.wrapper, CB_BINARY, *self.args, self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=self.stderr_f,
                                         stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        except OSError as e:
            self.stderr_f.close()
            raise StartError(f"cannot run {CB_BINARY}: {e}") from None
        if wait:
            self._wait_ready()
        return self

    def reap(self, timeout):
        """Wait up to timeout s for the daemon to exit on its own; its exit status, or None if
        it still runs (then it is left to the fixture's teardown)."""
        rc = super().reap(timeout)
        if rc is None:
            return None
        if not self.stopped:
            self.stopped = True
            self.stderr_f.close()
            out = self.output()
            for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                if marker in out:
                    self.problem = f"sanitizer report ({marker}) in cratebouncer output"
        return rc


@pytest.fixture
def service_bouncer(pg, upstream, request):
    """service_bouncer(settings=, databases=, users=, args=, env=, wrapper=, sections=) -> a
    ServiceBouncer, not yet started (call .launch()); stopped at teardown unless it exited (see
    .reap())."""
    if not os.path.exists(CB_BINARY):
        if os.environ.get("CB_BINARY"):
            pytest.fail(f"CB_BINARY={CB_BINARY} does not exist")
        pytest.skip(f"{CB_BINARY} not built")
    made = []
    request.node._cratebouncers = made

    def make(settings=None, databases=None, users=None, args=(), env=None, wrapper=(),
             sections=None):
        b = ServiceBouncer(pg, settings, databases or {"doc": upstream()}, users, args, env,
                           wrapper)
        b.sections = dict(sections or {})
        made.append(b)
        return b

    yield make

    problems = [p for p in (b.stop() for b in made) if p]
    problems += [b.problem for b in made if b.problem]
    if problems:
        request.node._cb_problem_outputs = [b.output() for b in made]
    if not KEEP_TMP:
        for b in made:
            shutil.rmtree(b.workdir, ignore_errors=True)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


PGBENCH = os.environ.get("PGBENCH", "/usr/lib/postgresql/15/bin/pgbench")


@pytest.fixture(scope="session")
def pgbench_tables(pg):
    """pgbench's tables (scale 1) in the test PostgreSQL's doc database, readable and writable
    by crate; PGBENCH is the pgbench binary. Skips when pgbench is missing."""
    if not os.path.exists(PGBENCH):
        pytest.skip(f"{PGBENCH} not found (Debian package postgresql-contrib)")
    res = subprocess.run([PGBENCH, "-i", "-s", "1", "-q", "-h", pg.socket_dir, "-p", str(pg.port),
                          "-U", pg.superuser, "doc"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=clean_env(), timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"pgbench -i failed ({res.returncode}):\n{res.stdout}")
    pg.sql("GRANT SELECT, INSERT, UPDATE, DELETE ON pgbench_accounts, pgbench_branches, "
           "pgbench_tellers, pgbench_history TO crate")
    return PGBENCH


# ---------------------------------------------------------------------------------------------
# a CrateDB-shaped HTTPS upstream (tests/support/crate_http.py) over the test PostgreSQL

CRATE_HTTP = os.path.join(REPO, "tests", "support", "crate_http.py")


class CrateHttp:
    """One tests/support/crate_http.py process: CrateDB's HTTP endpoint over TLS (the certificate pgenv
    made, for localhost and 127.0.0.1, signed by pg.ca), backed by the test PostgreSQL as crate.
    host, port, url (https://127.0.0.1:PORT), ca, user, password, auth ((user, password)),
    jwt_secret, blob_dir, workdir; stop() -> exit status; output() -> its stderr."""

    host = "127.0.0.1"
    user = "crate"
    password = pgenv.PASSWORD
    jwt_secret = "test-jwt-secret"

    def __init__(self, pg, idle_close=None, redirect_blobs_to=None, blob_dir=None, args=()):
        self.pg = pg
        self.ca = pg.ca
        self.idle_close = idle_close
        self.redirect_template = redirect_blobs_to
        self.redirect_blobs_to = None
        self.workdir = _mkdtemp("cbhttp-")
        self.blob_dir = blob_dir or os.path.join(self.workdir, "blobs")
        self.ready_file = os.path.join(self.workdir, "ready")
        self.stderr_path = os.path.join(self.workdir, "stderr.txt")
        self.args = list(args)
        self.proc = None
        self.port = None

    @property
    def url(self):
        return f"https://{self.host}:{self.port}"

    @property
    def auth(self):
        return (self.user, self.password)

    def start(self):
        pg_conninfo = (f"host=127.0.0.1 port={self.pg.port} dbname=doc user=crate "
                       f"password={pgenv.PASSWORD} sslmode=verify-full sslrootcert={self.pg.ca} "
                       f"connect_timeout={TIMEOUT}")
        for attempt in range(3):
            self.port = free_port()
            cmd = ["/usr/bin/python3", CRATE_HTTP, "--listen", self.host, "--port", str(self.port),
                   "--cert", self.pg.server_cert, "--key", self.pg.server_key,
                   "--pg", pg_conninfo, "--user", self.user, "--password", self.password,
                   "--jwt-secret", self.jwt_secret, "--ready-file", self.ready_file,
                   "--blob-dir", self.blob_dir, *self.args]
            if self.idle_close is not None:
                cmd += ["--idle-close", str(self.idle_close)]
            if self.redirect_template:
                self.redirect_blobs_to = self.redirect_template.format(port=self.port)
                cmd += ["--redirect-blobs-to", self.redirect_blobs_to]
            with open(self.stderr_path, "ab") as err:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=err,
                                             cwd=self.workdir)
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                if os.path.exists(self.ready_file):
                    return self
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
            else:
                self.stop()
                raise StartError(f"crate_http.py not ready within {TIMEOUT} s:\n{self.output()}")
            if self.proc.returncode == 2 and attempt < 2:
                continue  # lost a race for the port
            raise StartError(f"crate_http.py exited with {self.proc.returncode}:\n"
                             f"{self.output()}")

    def stop(self):
        """SIGTERM (SIGKILL after STOP_GRACE); its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        return self.proc.returncode

    def output(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


@pytest.fixture
def crate_http_factory(pg, request):
    """crate_http_factory(idle_close=None, redirect_blobs_to=None, blob_dir=None, args=()) -> a
    started CrateHttp; redirect_blobs_to may name the port as {port} (e.g.
    "https://localhost:{port}", this same server under its other name). All are stopped at
    teardown; a failed test's report gets their stderr."""
    made = []
    request.node._crate_https = made

    def make(**kw):
        c = CrateHttp(pg, **kw)
        made.append(c)
        try:
            return c.start()
        except StartError as e:
            error = str(e)
        pytest.fail(error, pytrace=False)

    yield make

    for c in made:
        c.stop()
        if not KEEP_TMP:
            shutil.rmtree(c.workdir, ignore_errors=True)


@pytest.fixture
def crate_http(crate_http_factory):
    """A CrateDB-shaped HTTPS upstream with default options (see CrateHttp)."""
    return crate_http_factory()


@pytest.fixture(scope="session")
def node_pg():
    """(NODE_PATH for npm's "pg", None) once installed, or (None, why not).
    Session-scoped, so that the npm install does not count against a test's time limit; the
    first file that needs it installs it (CB_NODE_DIR, default /var/tmp/cratebouncer-node,
    outside the source tree)."""
    return npm_module("pg", "pg@8", os.environ.get("CB_NODE_DIR", "/var/tmp/cratebouncer-node"))
