"""Hostile input against the live daemon (issue 14, malformed input): for each listener
(pgwire clients, the admin console, HTTP, the admin HTTP port) CB_HOSTILE_N (10,000) malformed
or hostile inputs, made from real requests by a seeded generator, each on a connection of its
own, while a well-behaved client of every kind keeps working. Every bad input that the daemon
can judge (complete, and wrong) gets a clear error: an ErrorResponse with a SQLSTATE and a
message, or an HTTP 4xx/5xx with a body; the good clients see every answer be their own and
no error; the daemon is the same process at the end, and its log holds no crash."""
import http.client
import json
import os
import random
import re
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import TIMEOUT, free_port, listening, startup_packet, wait_until
from test_http import http_section

N = int(os.environ.get("CB_HOSTILE_N", "10000"))
WORKERS = 4
ADMIN = "cbadmin"
# 10,000 connections take 5-10 s here, several times that under ASan on a busy machine
pytestmark = pytest.mark.time_limit(300)


# ---------------------------------------------------------------------------------------------
# pgwire: what a bad input gets back


def pg_messages(data):
    """The complete backend messages in data: [(type, body)]."""
    out, i = [], 0
    while i + 5 <= len(data):
        t, n = data[i:i + 1], struct.unpack("!I", data[i + 1:i + 5])[0]
        if n < 4 or i + 1 + n > len(data):
            break
        out.append((t.decode("latin-1"), data[i + 5:i + 1 + n]))
        i += 1 + n
    return out


def error_fields(body):
    f = {}
    for part in body.split(b"\0"):
        if part:
            f[chr(part[0])] = part[1:].decode(errors="replace")
    return f


def exchange(port, data, timeout=3.0, read_until=None, half_close=False):
    """Sends data on a new connection (then half-closes it if asked), reads until the daemon
    closes (or read_until(data) holds, or timeout): the bytes received. Not half-closed by
    default: the daemon drops what a client sent before its EOF unread (the client is gone)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                break
            except socket.timeout:
                got += b"<timed out>"
                break
            if not chunk:
                break
            got += chunk
            if read_until and read_until(got):
                break
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    return got


def pg_error_in(got):
    """The first ErrorResponse's fields, or None."""
    for t, body in pg_messages(got):
        if t == "E":
            return error_fields(body)
    return None


def msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0" if isinstance(s, str) else s + b"\0"


# ---------------------------------------------------------------------------------------------
# pgwire generators: each input is (bytes, kind); kind "startup" inputs are judged before
# login, "session" ones after a good login (which the input starts with)


def gen_startup(rng):
    """A startup packet that is complete (its length is what was sent) and wrong."""
    choice = rng.randrange(9)
    if choice == 0:  # an unknown protocol version
        # (3.x with x > 0 is a 3.0 session, as PostgreSQL makes it)
        body = struct.pack("!I", rng.choice([0, 1, 0x20000, 0x40000, 0x50000, 0x10000 * rng.randrange(4, 65535)]))
        body += b"user\0crate\0database\0doc\0\0"
    elif choice == 1:  # no user
        body = struct.pack("!I", 196608) + b"database\0doc\0\0"
    elif choice == 2:  # the parameter list not terminated
        body = struct.pack("!I", 196608) + b"user\0crate\0database\0doc"
    elif choice == 3:  # a name without its value
        body = struct.pack("!I", 196608) + b"user\0crate\0database\0"
    elif choice == 4:  # random bytes after the version
        body = struct.pack("!I", 196608) + rng.randbytes(rng.randrange(1, 200))
    elif choice == 5:  # an unknown database
        body = struct.pack("!I", 196608) + b"user\0crate\0database\0no_such_db_%d\0\0" % rng.randrange(10**6)
    elif choice == 6:  # a cancel request of the wrong length
        body = struct.pack("!I", 80877102) + rng.randbytes(rng.choice([0, 4, 12]))
    elif choice == 7:  # a length below the minimum: judged on its first 4 bytes
        return struct.pack("!I", rng.randrange(0, 8)) + rng.randbytes(8)
    else:  # a length above the limit
        return struct.pack("!I", rng.choice([10**6, 2**31 - 1, 2**32 - 1])) + rng.randbytes(16)
    return struct.pack("!I", len(body) + 4) + body


def gen_session_msg(rng):
    """One complete client message, malformed or hostile, to send after a good login."""
    choice = rng.randrange(12)
    if choice == 0:  # an unknown message type
        t = bytes([rng.choice([c for c in range(256) if chr(c) not in "QPBEDCSHFdcfXp"])])
        return msg(t, rng.randbytes(rng.randrange(0, 64)))
    if choice == 1:  # a length below 4
        return rng.choice([b"Q", b"P", b"B", b"S"]) + struct.pack("!I", rng.randrange(0, 4))
    if choice == 2:  # a huge length
        return b"Q" + struct.pack("!I", rng.choice([2**30, 2**31 - 1, 2**32 - 1])) + b"x" * 16
    if choice == 3:  # a Query without its NUL
        return msg(b"Q", b"select 1" + rng.randbytes(rng.randrange(0, 8)).replace(b"\0", b"x"))
    if choice == 4:  # a Parse whose parameter count lies
        return msg(b"P", b"s\0select $1\0" + struct.pack("!H", rng.randrange(2, 60000))) + msg(b"S", b"")
    if choice == 5:  # a Bind with counts that do not match
        body = b"\0\0" + struct.pack("!HH", 3, 0) + struct.pack("!H", rng.randrange(2, 1000))
        return msg(b"B", body) + msg(b"S", b"")
    if choice == 6:  # an Execute of a portal that does not exist
        return msg(b"E", cstr("no_portal_%d" % rng.randrange(10**6)) + struct.pack("!I", 0)) + msg(b"S", b"")
    if choice == 7:  # a Describe of an unknown kind
        return msg(b"D", bytes([rng.choice(b"XYZ\0")]) + b"x\0") + msg(b"S", b"")
    if choice == 8:  # a bad SQL statement (the upstream's error passes)
        return msg(b"Q", cstr("selec %d from" % rng.randrange(10**6)))
    if choice == 9:  # a Close of an unknown kind
        return msg(b"C", b"Q" + b"x\0") + msg(b"S", b"")
    if choice == 10:  # a FunctionCall (not supported through a pooler)
        return msg(b"F", struct.pack("!I", 1) + b"\0\0\0\0\0\0")
    # a second startup packet inside the session
    return startup_packet("crate", "doc")


# ---------------------------------------------------------------------------------------------
# HTTP generators: a request that is complete and wrong


def gen_http(rng, path="/_sql"):
    """A malformed or hostile HTTP request (bytes)."""
    body = b'{"stmt": "select 1"}'
    choice = rng.randrange(14)
    if choice == 0:  # a bad request line
        return rng.choice([b"GARBAGE\r\n\r\n", b"POST\r\n\r\n", b"POST /_sql\r\n\r\n",
                           b"POST /_sql HTTP/9.9\r\n\r\n", b" / HTTP/1.1\r\n\r\n",
                           b"POST /_sql HTTP/1.1 extra\r\n\r\n"])
    if choice == 1:  # random bytes
        return rng.randbytes(rng.randrange(1, 300)).replace(b"\r\n\r\n", b"xxxx") + b"\r\n\r\n"
    if choice == 2:  # a header line without a colon
        return b"POST %s HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n" % path.encode()
    if choice == 3:  # Content-Length and Transfer-Encoding both (smuggling)
        return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked"
                b"\r\n\r\n0\r\n\r\n" % (path.encode(), rng.randrange(0, 50)))
    if choice == 4:  # two different Content-Lengths
        return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n"
                % (path.encode(), len(body), len(body) + 1 + rng.randrange(9))) + body
    if choice == 5:  # a Content-Length that is not a number
        return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n"
                % (path.encode(), rng.choice([b"-1", b"1e3", b"0x10", b"abc", b"99999999999999999999999"])))
    if choice == 6:  # a bad chunk size
        return (b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\nxx\r\n0\r\n\r\n"
                % (path.encode(), rng.choice([b"zz", b"-5", b"fffffffffffffffffff", b"1 ;;;\x01"])))
    if choice == 7:  # an unknown Transfer-Encoding
        return (b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: %s\r\n\r\n"
                % (path.encode(), rng.choice([b"gzip", b"chunked, gzip", b"identity", b"x"])))
    if choice == 8:  # a header longer than the limits (HTTP 8 kB, as CrateDB; admin 32 kB)
        return b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % (b"a" * rng.randrange(33000, 70000))
    if choice == 9:  # a request line longer than the limit
        return b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % (b"a" * rng.randrange(5000, 70000))
    if choice == 10:  # a NUL or a control byte in a header
        return b"GET / HTTP/1.1\r\nHost: x\r\nX-Y: a%sb\r\n\r\n" % bytes([rng.choice([0, 1, 8, 0x7f])])
    if choice == 11:  # obs-fold (a header continued on the next line)
        return b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n"
    if choice == 12:  # a space before the colon
        return b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"
    # an HTTP/1.1 request without Host
    return b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"


HTTP_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")


def http_error_in(got):
    """(status, body) of the first response if it is an error with a body, else None."""
    m = HTTP_STATUS.match(got)
    if not m or int(m.group(1)) < 400:
        return None
    head, _, body = got.partition(b"\r\n\r\n")
    return (int(m.group(1)), body) if body.strip() else None


# ---------------------------------------------------------------------------------------------
# the good clients


class GoodClients:
    """A pgwire client (psycopg2, transaction mode: each query on whatever server is free),
    an admin console client, an HTTP keep-alive client and an admin HTTP client, each in a
    thread, each checking every answer is its own."""

    def __init__(self, cb):
        self.cb, self.stop, self.errors, self.counts = cb, threading.Event(), [], {}
        self.threads = [threading.Thread(target=self._run, args=(f,), daemon=True)
                        for f in (self._pg, self._console, self._http, self._admin_http)]

    def _run(self, fn):
        name = fn.__name__.strip("_")
        self.counts[name] = 0
        try:
            fn(name)
        except Exception as e:  # noqa: BLE001 - every failure is the test's
            self.errors.append(f"{name}: {e!r}")

    def _pg(self, name):
        import psycopg2
        conn = psycopg2.connect(self.cb.conninfo())
        conn.autocommit = True
        cur = conn.cursor()
        i = 0
        while not self.stop.is_set():
            i += 1
            cur.execute("select %s::int, %s::text", (i, f"good-{i}"))
            row = cur.fetchone()
            if row != (i, f"good-{i}"):
                raise AssertionError(f"query {i} got {row}")
            self.counts[name] += 1
        conn.close()

    def _console(self, name):
        import psycopg2
        conn = psycopg2.connect(self.cb.conninfo(dbname="cratebouncer", user=ADMIN))
        conn.autocommit = True
        cur = conn.cursor()
        while not self.stop.is_set():
            cur.execute("SHOW POOLS")
            cols = [d[0] for d in cur.description]
            if "cl_active" not in cols:
                raise AssertionError(f"SHOW POOLS columns {cols}")
            cur.fetchall()
            self.counts[name] += 1
            time.sleep(0.01)
        conn.close()

    def _http(self, name):
        c = http.client.HTTPConnection("127.0.0.1", self.cb.http_port, timeout=TIMEOUT)
        i = 0
        while not self.stop.is_set():
            i += 1
            c.request("POST", "/_sql", json.dumps({"stmt": "select ?", "args": [f"http-{i}"]}),
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            if r.status != 200 or json.loads(data)["rows"] != [[f"http-{i}"]]:
                raise AssertionError(f"request {i}: {r.status} {data[:200]!r}")
            self.counts[name] += 1
        c.close()

    def _admin_http(self, name):
        c = http.client.HTTPConnection("127.0.0.1", self.cb.admin_port, timeout=TIMEOUT)
        while not self.stop.is_set():
            c.request("GET", "/health")
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                raise AssertionError(f"/health: {r.status} {data[:200]!r}")
            self.counts[name] += 1
            time.sleep(0.01)
        c.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        wait_until(lambda: all(self.counts.get(k, 0) > 0 for k in
                               ("pg", "console", "http", "admin_http")) or self.errors, 30,
                   "the good clients to get their first answers")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(TIMEOUT)


@pytest.fixture
def daemon(cratebouncer, crate_http):
    sec = http_section(crate_http)
    admin_port = free_port()
    cb = cratebouncer(settings={"pool_mode": "transaction", "default_pool_size": 4,
                                "admin_users": ADMIN, "max_client_conn": 500},
                      sections={"http": sec,
                                "admin": {"listen_addr": "127.0.0.1", "listen_port": admin_port}})
    cb.http_port, cb.admin_port = sec["listen_port"], admin_port
    for p in (cb.http_port, cb.admin_port):
        wait_until(lambda p=p: listening("127.0.0.1", p), TIMEOUT, f"port {p}")
    return cb


def run_inputs(inputs, judge):
    """Runs judge(input) for every input on WORKERS threads: the failures (at most 10)."""
    failures, lock = [], threading.Lock()

    def one(item):
        why = judge(item)
        if why:
            with lock:
                if len(failures) < 10:
                    failures.append(why)
    with ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(one, inputs))
    return failures


def login_bytes(user="crate", database="doc"):
    return startup_packet(user, database)


def logged_in(got):
    return any(t == "Z" for t, _ in pg_messages(got))


def judge_pg(port, user, database):
    def judge(item):
        data, kind = item
        full = data if kind == "startup" else login_bytes(user, database) + data
        # until an error, or an answer without one (a ReadyForQuery after the login's)
        got = exchange(port, full, read_until=lambda g: pg_error_in(g) is not None or sum(
            t == "Z" for t, _ in pg_messages(g)) > (kind == "session"))
        if kind == "session" and not logged_in(got) and pg_error_in(got) is None:
            return f"{kind} {data[:80]!r}: the good login was not answered: {got[:200]!r}"
        err = pg_error_in(got)
        if err is None:
            shown = [(t, b[:60]) for t, b in pg_messages(got) if t not in "SRK"]
            return f"{kind} {data[:80]!r}: no ErrorResponse, got {shown} ({len(got)} bytes)"
        if not err.get("C") or not err.get("M"):
            return f"{kind} {data[:80]!r}: an ErrorResponse without SQLSTATE or message: {err}"
        return None
    return judge


# What the admin HTTP port (libevent's evhttp, which forwards nothing) may serve instead of
# refusing, as RFC 9112 allows a recipient: obs-fold replaced by a space (5.2), and a NUL in a
# value (evhttp ends the value there; the port reads no header but Authorization).
ADMIN_LENIENT = (re.compile(rb"\r\n[ \t]"), re.compile(rb"^[^\r\n]*: [^\r\n]*\x00", re.M))


def judge_http(port, lenient=()):
    def judge(data):
        # until a head and, for an error, its body has begun (or the daemon closes)
        got = exchange(port, data, read_until=lambda g: b"\r\n\r\n" in g and (
            http_error_in(g) is not None or not HTTP_STATUS.match(g) or
            int(HTTP_STATUS.match(g).group(1)) < 400))
        if http_error_in(got) is None:
            if any(r.search(data.partition(b"\r\n\r\n")[0]) for r in lenient) and \
                    HTTP_STATUS.match(got):
                return None
            return f"{data[:100]!r}: no HTTP error with a body, got {got[:200]!r}"
        return None
    return judge


def check_after(cb, good, pid):
    assert not good.errors, f"a good client saw a failure: {good.errors}"
    assert cb.proc.poll() is None and cb.proc.pid == pid, "the daemon exited"
    log = cb.log_text()
    for bad in ("AddressSanitizer", "runtime error", "Assertion", "Segmentation"):
        assert bad not in log, f"{bad} in the log"


def test_pgwire_listener(daemon):
    """N malformed pgwire inputs (half before login, half after a good one) to the client
    listener; each gets an ErrorResponse with a SQLSTATE and a message."""
    cb, rng = daemon, random.Random(14001)
    inputs = [(gen_startup(rng), "startup") if i % 2 == 0 else (gen_session_msg(rng), "session")
              for i in range(N)]
    pid = cb.proc.pid
    with GoodClients(cb) as good:
        t0 = time.monotonic()
        failures = run_inputs(inputs, judge_pg(cb.port, "crate", "doc"))
        took = time.monotonic() - t0
    print(f"pgwire: {N} hostile inputs in {took:.1f} s; good clients: {good.counts}")
    assert not failures, "\n".join(failures)
    check_after(cb, good, pid)


def test_admin_console(daemon):
    """N malformed inputs to the admin console (logged in as the admin user): malformed
    messages and commands it does not know; each gets an ErrorResponse."""
    cb, rng = daemon, random.Random(14002)
    words = ["SHOW", "KILL", "PAUSE", "RESUME", "RELOAD", "SET", "WAIT_CLOSE", "DISABLE",
             "ENABLE", "RECONNECT", "SUSPEND", "SHUTDOWN"]

    def command():
        c = rng.randrange(4)
        if c == 0:
            return msg(b"Q", cstr(rng.choice(["SHOW", "KILL", "PAUSE"]) + " no_such_%d" % rng.randrange(10**6)))
        if c == 1:
            return msg(b"Q", cstr("%s %s" % (rng.choice(["FROB", "SELEC", "DROP"]), rng.choice(words))))
        if c == 2:
            return msg(b"Q", cstr("SHOW " + "".join(rng.choice("abcdef;'\"\\ ") for _ in range(rng.randrange(1, 40)))))
        return gen_session_msg(rng)
    # SHUTDOWN and the like must never be what a random command turns out to be
    inputs = []
    while len(inputs) < N:
        c = command()
        if re.search(rb"\b(SHUTDOWN|SUSPEND|PAUSE|KILL|DISABLE|RECONNECT|RELOAD|WAIT_CLOSE)\b\0", c):
            continue
        inputs.append((c, "session"))
    pid = cb.proc.pid
    with GoodClients(cb) as good:
        failures = run_inputs(inputs, judge_pg(cb.port, ADMIN, "cratebouncer"))
    print(f"admin console: {N} hostile inputs; good clients: {good.counts}")
    assert not failures, "\n".join(failures)
    check_after(cb, good, pid)


@pytest.mark.parametrize("where", ["http", "admin_http"])
def test_http_listeners(daemon, where):
    """N malformed HTTP requests to the HTTP side or the admin HTTP port; each gets a 4xx or
    5xx with a body."""
    cb, rng = daemon, random.Random(14003 if where == "http" else 14004)
    port = cb.http_port if where == "http" else cb.admin_port
    path = "/_sql" if where == "http" else "/metrics"
    inputs = [gen_http(rng, path) for _ in range(N)]
    pid = cb.proc.pid
    with GoodClients(cb) as good:
        t0 = time.monotonic()
        failures = run_inputs(inputs, judge_http(port, ADMIN_LENIENT if where == "admin_http" else ()))
        took = time.monotonic() - t0
    print(f"{where}: {N} hostile requests in {took:.1f} s; good clients: {good.counts}")
    assert not failures, "\n".join(failures)
    check_after(cb, good, pid)
