"""Small tools the integration tests share: auth_file secrets, a raw pgwire client (to see
SQLSTATEs of login errors, which libpq does not expose, and to send malformed packets), psql.
"""

import base64
import hashlib
import hmac
import os
import random
import socket
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 10  # seconds, for every single network wait in the tests
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CB_BINARY = os.environ.get("CB_BINARY") or os.path.join(REPO, "src", "cratebouncer")

# ---------------------------------------------------------------------------------------------
# ports


def _port_is_free(port):
    for addr in ("127.0.0.1", "127.0.0.2"):
        s = socket.socket()
        try:
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port():
    """A random port that is free now, below the kernel's ephemeral range."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        if _port_is_free(port):
            return port
    raise RuntimeError("no free port found")


def listening(host, port):
    """Whether something listens on host:port. Read from /proc/net/tcp where possible, so that
    no probe connection shows up in the daemon's client count or log."""
    try:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            return False
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(host), "little"), port)
    return any(r.split()[1] == want and r.split()[3] == "0A" for r in rows)


# ---------------------------------------------------------------------------------------------
# auth_file secrets


def md5_secret(user, password):
    """PostgreSQL's stored md5 form: "md5" + md5(password + user)."""
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def _scram_keys(password, salt, iterations):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return salted, client_key, hashlib.sha256(client_key).digest(), server_key


def scram_secret(password, salt=None, iterations=4096):
    """A SCRAM-SHA-256 secret as PostgreSQL stores it (RFC 5803 form)."""
    salt = salt or os.urandom(16)
    _, _, stored_key, server_key = _scram_keys(password, salt, iterations)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def write_auth_file(path, users):
    """users: {name: secret} -> PgBouncer-format userlist."""
    with open(path, "w") as f:
        for name, secret in users.items():
            f.write(f'"{name}" "{secret}"\n')


# ---------------------------------------------------------------------------------------------
# raw pgwire client


class PgError(Exception):
    """An ErrorResponse; fields by their one-letter code (C = SQLSTATE, M = message)."""

    def __init__(self, fields):
        self.fields = fields
        self.sqlstate = fields.get("C")
        self.message = fields.get("M", "")
        super().__init__(f"{fields.get('S', 'ERROR')} {self.sqlstate}: {self.message}")


class Closed(Exception):
    """The peer closed the connection without an ErrorResponse."""


def _parse_error(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def startup_packet(user, database, extra=None, version=196608):
    params = {"user": user, "database": database, **(extra or {})}
    body = struct.pack("!I", version)  # protocol 3.0 unless asked
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


class RawConn:
    """Just enough of a PostgreSQL frontend: startup, password/md5/SCRAM auth, simple query."""

    def __init__(self, host, port, timeout=TIMEOUT):
        """host: an address, or a directory holding the Unix socket .s.PGSQL.<port>."""
        if host.startswith("/"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.params = {}
        self.auth_requests = []  # authentication codes the server sent (3 password, 5 md5, 10 SASL)

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Closed(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def read_msg(self):
        """(type byte as str, body); raises PgError on an ErrorResponse."""
        head = self.recv_exact(5)
        kind, length = chr(head[0]), struct.unpack("!I", head[1:])[0]
        body = self.recv_exact(length - 4)
        if kind == "E":
            raise PgError(_parse_error(body))
        return kind, body

    def ssl_request(self):
        """Send SSLRequest; the single answer byte."""
        self.send(struct.pack("!II", 8, 80877103))
        return self.recv_exact(1)

    def login(self, user, database, password=None, extra=None, version=196608):
        self.send(startup_packet(user, database, extra, version))
        scram = None
        while True:
            kind, body = self.read_msg()
            if kind == "R":
                code = struct.unpack("!I", body[:4])[0]
                if code in (3, 5, 10):
                    self.auth_requests.append(code)
                if code == 0:
                    continue
                if password is None:
                    raise AssertionError(f"server asked for a password (auth code {code})")
                if code == 3:
                    self._password_msg(password.encode() + b"\0")
                elif code == 5:
                    inner = md5_secret(user, password)[3:]
                    out = "md5" + hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                    self._password_msg(out.encode() + b"\0")
                elif code == 10:
                    mechs = body[4:].split(b"\0")
                    assert b"SCRAM-SHA-256" in mechs, mechs
                    scram = _ScramClient(password)
                    first = scram.first().encode()
                    self._password_msg(b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
                elif code == 11:
                    self._password_msg(scram.final(body[4:].decode()).encode())
                elif code == 12:
                    scram.verify(body[4:].decode())
                else:
                    raise AssertionError(f"unexpected auth code {code}")
            elif kind == "S":
                k, v = body.split(b"\0")[:2]
                self.params[k.decode()] = v.decode()
            elif kind == "K":
                self.backend_key = struct.unpack("!II", body)
            elif kind == "v":
                # NegotiateProtocolVersion: (newest minor version, the unrecognised options)
                minor, n = struct.unpack("!II", body[:8])
                self.negotiated = (minor & 0xFFFF, body[8:].split(b"\0")[:n])
            elif kind == "Z":
                return self

    def _password_msg(self, payload):
        self.send(b"p" + struct.pack("!I", len(payload) + 4) + payload)

    def query(self, sql):
        """Simple query; rows of strings (None for NULL) of the last result."""
        self.send_query(sql)
        return self.read_result()

    def send_query(self, sql):
        payload = sql.encode() + b"\0"
        self.send(b"Q" + struct.pack("!I", len(payload) + 4) + payload)

    def read_result(self):
        """The answer to a query up to its ReadyForQuery: rows of strings (None for NULL) of
        the last result; raises PgError after the ReadyForQuery if there was an error."""
        rows, error = [], None
        while True:
            try:
                kind, body = self.read_msg()
            except PgError as e:
                if "FATAL" in (e.fields.get("S"), e.fields.get("V")):
                    raise  # the server closes the connection next
                error = e
                continue
            except (Closed, OSError):
                if error:
                    raise error from None
                raise
            if kind == "T":
                rows = []
            elif kind == "D":
                rows.append(decode_row(body))
            elif kind == "Z":
                if error:
                    raise error
                return rows

    def close(self):
        try:
            self.send(b"X\0\0\0\4")
        except OSError:
            pass
        self.sock.close()


class _ScramClient:
    def __init__(self, password):
        self.password = password
        self.nonce = base64.b64encode(os.urandom(18)).decode()

    def first(self):
        self.client_first_bare = f"n=,r={self.nonce}"
        return "n,," + self.client_first_bare

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(self.nonce)
        salt, iters = base64.b64decode(attrs["s"]), int(attrs["i"])
        salted, client_key, stored_key, _ = _scram_keys(self.password, salt, iters)
        without_proof = f"c=biws,r={attrs['r']}"
        self.auth_message = f"{self.client_first_bare},{server_first},{without_proof}".encode()
        sig = hmac.new(stored_key, self.auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        self.salted = salted
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify(self, server_final):
        server_key = hmac.new(self.salted, b"Server Key", "sha256").digest()
        expected = hmac.new(server_key, self.auth_message, "sha256").digest()
        assert server_final == "v=" + base64.b64encode(expected).decode(), "bad server signature"


def login_error(host, port, user="crate", database="doc", password=None, extra=None):
    """Log in with the raw client and return the PgError it got; fails the test if the login
    succeeded."""
    conn = RawConn(host, port)
    try:
        conn.login(user, database, password, extra)
    except PgError as e:
        return e
    finally:
        conn.close()
    raise AssertionError(f"login as {user} to {database} unexpectedly succeeded")


def first_error(host, port, user="crate", database="doc", password=None, sql="select 1"):
    """The error a client meets when it logs in and runs sql, whether the pooler reports it at
    login or only at the first query (when it first needs an upstream connection)."""
    conn = RawConn(host, port)
    try:
        conn.login(user, database, password)
        conn.query(sql)
    except PgError as e:
        return e
    finally:
        conn.close()
    raise AssertionError(f"{sql!r} as {user} on {database} unexpectedly succeeded")


# ---------------------------------------------------------------------------------------------
# psql


def clean_env():
    """os.environ without PG* variables, so nothing from the caller changes libpq's behaviour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = str(TIMEOUT)
    return env


def psql(conninfo, sql, password=None, check=True):
    """Run psql -c SQL (unaligned, tuples only, no prompt); CompletedProcess with text."""
    env = clean_env()
    if password is not None:
        env["PGPASSWORD"] = password
    res = subprocess.run(["psql", "-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          "-d", conninfo, "-c", sql],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, timeout=TIMEOUT * 3)
    if check and res.returncode != 0:
        raise AssertionError(f"psql failed ({res.returncode}): {res.stderr}")
    return res


# ---------------------------------------------------------------------------------------------
# systemd's notification socket


class NotifySocket:
    """A Unix datagram socket standing in for systemd's NOTIFY_SOCKET: a thread collects
    every message (with the time.monotonic() it arrived) until close()."""

    def __init__(self, path):
        import threading

        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages = []  # (arrival time, text)
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self):
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            with self.cond:
                self.messages.append((time.monotonic(), data.decode(errors="replace")))
                self.cond.notify_all()

    def wait_for(self, pred, timeout=TIMEOUT, start=0):
        """The index of the first message from index start on for which pred(text) holds;
        raises AssertionError after timeout s."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.messages)):
                    if pred(self.messages[i][1]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching notification within {timeout} s; "
                                         f"got {[m for _, m in self.messages]}")
                self.cond.wait(left)

    def texts(self):
        with self.cond:
            return [m for _, m in self.messages]

    def close(self):
        self.closed = True
        self.thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def notify_fields(text):
    """'READY=1\\nSTATUS=x' -> {'READY': '1', 'STATUS': 'x'}."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# ---------------------------------------------------------------------------------------------
# waiting, background work, pgbench


def wait_until(pred, timeout=5.0, what="condition", interval=0.02):
    """pred()'s first truthy value within timeout s; AssertionError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(interval)


class Background:
    """fn() in a daemon thread; .result or .error once joined; .done() while it runs."""

    def __init__(self, fn):
        import threading

        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except Exception as e:  # examined by the test
            self.error = e

    def done(self):
        return not self.thread.is_alive()

    def join(self, timeout):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout} s"
        return self


def pgbench_cmd(pgbench, host, port, seconds, clients=4, dbname="doc", user="crate", rate=None):
    """pgbench -S (select only, simple protocol) for seconds s with clients connections; rate:
    transactions per second in all (-R), unlimited when None."""
    cmd = [pgbench, "-n", "-S", "-c", str(clients), "-j", "2", "-T", str(seconds)]
    if rate:
        cmd += ["-R", str(rate)]
    return cmd + ["-h", host, "-p", str(port), "-U", user, dbname]


def pgbench_processed(out):
    """The number of transactions pgbench reports as processed (AssertionError if none)."""
    import re

    m = re.search(r"number of transactions actually processed: (\d+)", out)
    assert m, f"no processed-transactions line in pgbench output:\n{out}"
    return int(m.group(1))


def run_threads(fn, n, timeout=40):
    """fn(i) for i in range(n), each in its own thread; the results in order. Raises with the
    first error (and how many clients failed) if any client failed."""
    deadline = time.monotonic() + timeout
    ex = ThreadPoolExecutor(max_workers=n)
    try:
        futures = [ex.submit(fn, i) for i in range(n)]
        results, errors = [], []
        for i, f in enumerate(futures):
            try:
                results.append(f.result(timeout=max(0.1, deadline - time.monotonic())))
            except Exception as e:  # reported below
                errors.append((i, e))
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    if errors:
        i, e = errors[0]
        raise AssertionError(f"{len(errors)} of {n} clients failed; client {i}: {e!r}") from e
    return results


def decode_row(body):
    """A DataRow body as a list of str (None for NULL)."""
    n = struct.unpack("!H", body[:2])[0]
    pos, row = 2, []
    for _ in range(n):
        ln = struct.unpack("!i", body[pos:pos + 4])[0]
        pos += 4
        if ln < 0:
            row.append(None)
        else:
            row.append(body[pos:pos + ln].decode())
            pos += ln
    return row


def console(cb, user="cbadmin", dbname="cratebouncer", **kw):
    """A psycopg 3 admin console connection (simple protocol: ClientCursor), closed at
    teardown."""
    import psycopg
    conn = psycopg.connect(cb.conninfo(dbname, user, **kw), autocommit=True,
                           cursor_factory=psycopg.ClientCursor)
    cb.connections.append(conn)
    return conn


def show(conn, what):
    """SHOW what -> list of {column: value} rows."""
    cur = conn.execute(f"SHOW {what}")
    names = [d.name for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def npm_module(module, spec, node_dir):
    """(NODE_PATH, None) with npm's module (npm install spec, e.g. "pg@8") under node_dir,
    installed there once; (None, why not). A node_dir of another user's that we cannot
    write gets a sibling of our own (node_dir-UID)."""
    if subprocess.run(["sh", "-c", "command -v node"], stdout=subprocess.DEVNULL).returncode:
        return None, "node not found on PATH (Debian package nodejs)"

    def loads(path):
        try:
            res = subprocess.run(["node", "-e", f"require('{module}')"],
                                 env={**os.environ, "NODE_PATH": path}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=60)
        except OSError:
            return False
        return res.returncode == 0

    if loads(os.path.join(node_dir, "node_modules")):
        return os.path.join(node_dir, "node_modules"), None
    if os.path.isdir(node_dir) and not os.access(node_dir, os.W_OK):
        node_dir = f"{node_dir}-{os.geteuid()}"
        if loads(os.path.join(node_dir, "node_modules")):
            return os.path.join(node_dir, "node_modules"), None
    try:
        os.makedirs(node_dir, exist_ok=True)
        res = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save",
                              "--prefix", node_dir, spec], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=180, cwd=node_dir)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"npm install {spec} into {node_dir} failed: {e}"
    path = os.path.join(node_dir, "node_modules")
    if res.returncode != 0 or not loads(path):
        return None, f"npm install {spec} into {node_dir} failed ({res.returncode}):\n{res.stdout}"
    return path, None
