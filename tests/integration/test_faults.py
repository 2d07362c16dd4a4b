"""Fault injection under load: the upstream killed and restarted many times under 200 clients,
an upstream that stalls, closes mid-TLS-record or resets mid-answer (through a TCP relay that
forwards TLS bytes without decrypting them), half-closed clients, clients that never read, and
file descriptor exhaustion. Each test asserts real outcomes: acknowledged writes found in the
table afterwards, clear errors (SQLSTATE and message) instead of hangs, the daemon's pid alive
and unchanged, a well-behaved client served.

CB_FAULT_RESTARTS (default 5) sets how many times the upstream is killed and restarted.
"""

import collections
import os
import re
import select
import socket
import struct
import subprocess
import threading
import time

import pgenv
import psycopg
import pytest
from helpers import TIMEOUT, RawConn, first_error, startup_packet, wait_until

RESTARTS = int(os.environ.get("CB_FAULT_RESTARTS", "5"))
TX = {"pool_mode": "transaction", "default_pool_size": 4, "max_client_conn": 400,
      "server_login_retry": "0.2", "query_wait_timeout": 20}


def alive(b, pid):
    """The daemon still runs as the very same process."""
    return b.proc.pid == pid and b.proc.poll() is None and os.path.exists(f"/proc/{pid}")


def kill_upstream(pg):
    """Immediate shutdown: PostgreSQL's processes quit at once, no checkpoint (a crash, as far
    as durability goes: only transactions committed with synchronous_commit on survive)."""
    data = os.path.join(pg.dir, "data")
    subprocess.run(pgenv._pg_cmd([f"{pgenv.PG_BIN}/pg_ctl", "-D", data, "-m", "immediate",
                                  "-w", "-t", "30", "stop"]),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def restart_upstream(pg):
    """Start the killed PostgreSQL again, by pg_ctl alone: pgenv.start's checks and ownership
    walk run Python code that, among 200 busy client threads (the GIL), took 10 s a restart."""
    data = os.path.join(pg.dir, "data")
    subprocess.run(pgenv._pg_cmd([f"{pgenv.PG_BIN}/pg_ctl", "-D", data, "-l",
                                  os.path.join(pg.dir, "postgresql.log"), "-w", "-t", "30",
                                  "start"]),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=True)


def ensure_upstream(pg):
    """The session's PostgreSQL runs again on its port (no-op when it runs)."""
    pgenv.start(pg.dir, pg.port)


# ---------------------------------------------------------------------------------------------
# the upstream killed and restarted under 200 clients


@pytest.mark.time_limit(90 + 4 * RESTARTS)
def test_upstream_killed_and_restarted_under_200_clients(cratebouncer, pg):
    """200 clients mix reads and acknowledged writes (BEGIN; SET LOCAL synchronous_commit=on;
    INSERT; COMMIT) while the upstream is killed (immediate stop) and restarted RESTARTS times.
    Proves: every acknowledged write is in the table afterwards; every operation was answered
    (success, or a psycopg error with a message: no thread hangs); each client reads its own
    acknowledged writes; writes are acknowledged again after every restart; the daemon's pid is
    unchanged and alive."""
    pg.sql("create table if not exists fault_log (id bigint primary key, who int)")
    pg.sql("truncate fault_log")
    pg.sql("grant all on fault_log to crate")
    b = cratebouncer(settings=TX)
    pid = b.proc.pid
    nclients = 200
    lock = threading.Lock()
    acked = []  # keys whose COMMIT succeeded
    errors = []  # (client, exception class, sqlstate, message)
    bad = []  # anything that is not a clean answer or a clear psycopg error
    ops = [0]
    stop = threading.Event()

    def client(w):
        n = 0
        mine = 0
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = psycopg.connect(b.conninfo(), autocommit=True)
                    fatal = []  # FATALs libpq took as notices (see below)
                    c.add_notice_handler(
                        lambda d, f=fatal: d.severity == "FATAL" and f.append(d.message_primary))
                if n % 2 == 0:
                    key = w * 1_000_000 + n
                    with c.transaction():
                        c.execute("set local synchronous_commit = on")
                        c.execute("insert into fault_log values (%s, %s)", (key, w))
                    with lock:
                        acked.append(key)
                    mine += 1
                else:
                    seen = c.execute("select count(*) from fault_log where who = %s",
                                     (w,)).fetchone()[0]
                    if seen < mine:
                        with lock:
                            bad.append((w, f"read {seen} of its {mine} acknowledged writes"))
                with lock:
                    ops[0] += 1
                n += 1
            except psycopg.Error as e:
                msg = str(e).strip()
                # A FATAL that arrives while the client is idle (in a transaction, its server
                # killed between two queries) is handed by libpq to the notice processor, and
                # the next query fails with "server closed the connection unexpectedly"
                # alone (PostgreSQL's own FATAL is treated the same way): the client was told,
                # the message is the notice's.
                if (c is not None and fatal and
                        "closed the connection unexpectedly" in msg.splitlines()[0]):
                    msg = f"{fatal[-1]} (as a notice)"
                with lock:
                    errors.append((w, type(e).__name__, e.sqlstate, msg))
                    if not msg:
                        bad.append((w, f"{type(e).__name__} without a message"))
                n += 1
                if c is not None:
                    try:
                        c.close()
                    except Exception:  # noqa: BLE001
                        pass
                c = None
                time.sleep(0.05)
            except Exception as e:  # noqa: BLE001
                with lock:
                    bad.append((w, repr(e)))
                c = None
                time.sleep(0.05)
        if c is not None:
            c.close()

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(nclients)]
    t0 = time.monotonic()
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(acked) >= nclients, timeout=30, what="first writes acknowledged")
        progress = []
        phases = []  # seconds per restart: (kill, start, first 20 writes acknowledged)
        for i in range(RESTARTS):
            before = len(acked)
            t1 = time.monotonic()
            kill_upstream(pg)
            t2 = time.monotonic()
            restart_upstream(pg)
            t3 = time.monotonic()
            wait_until(lambda: len(acked) >= before + 20, timeout=30,
                       what=f"writes acknowledged after restart {i + 1}")
            phases.append((t2 - t1, t3 - t2, time.monotonic() - t3))
            progress.append(len(acked) - before)
            assert alive(b, pid), f"the daemon died or restarted at restart {i + 1}"
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT * 3)
        ensure_upstream(pg)
    hung = [i for i, t in enumerate(threads) if t.is_alive()]
    elapsed = time.monotonic() - t0
    print(f"{RESTARTS} restarts, {nclients} clients: {len(acked)} writes acknowledged, "
          f"{ops[0]} operations, {len(errors)} errors in {elapsed:.1f} s")
    for name, col in (("kill", 0), ("start", 1), ("acknowledged again", 2)):
        v = sorted(p[col] for p in phases)
        if v:
            print(f"  per restart, {name}: median {v[len(v) // 2]:.2f} s, max {v[-1]:.2f} s")
    kinds = collections.Counter((e[2], e[3].splitlines()[0][:90]) for e in errors)
    for (sqlstate, first_line), n in kinds.most_common(8):
        print(f"  {n:5d} x {sqlstate} {first_line}")
    assert not hung, f"{len(hung)} clients never got an answer (e.g. client {hung[0]})"
    # every error names its cause: cratebouncer's message, not just libpq's end of connection
    unnamed = [e for e in errors if "closed the connection unexpectedly" in e[3].splitlines()[0]]
    assert not unnamed, f"{len(unnamed)} errors without cratebouncer's message: {unnamed[:3]}"
    assert not bad, f"{len(bad)} unclear outcomes, first: {bad[:5]}"
    rows = {r[0] for r in pg.sql("select id from fault_log")}
    lost = [k for k in acked if k not in rows]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes lost, e.g. {lost[:5]}"
    assert alive(b, pid), "the daemon died or restarted"
    # the errors the clients met name what happened
    for w, cls, sqlstate, msg in errors:
        assert sqlstate is None or sqlstate[:2] in ("08", "57", "53", "25", "40"), \
            (w, cls, sqlstate, msg)
    # and after it all, new clients are served at once
    with psycopg.connect(b.conninfo(), autocommit=True) as c:
        assert c.execute("select count(*) from fault_log").fetchone()[0] == len(rows)


# ---------------------------------------------------------------------------------------------
# a TCP relay between cratebouncer and PostgreSQL that stalls, cuts or resets


class Relay:
    """127.0.0.1:port forwards to the upstream byte for byte (TLS is not decrypted). arm(mode,
    after) makes the first connection whose upstream-to-cratebouncer stream grows by more than
    `after` bytes from then on fail, once, in the middle of the TLS record that crosses it:
    "stall" stops forwarding (both ways), "cut" closes both sides (FIN), "rst" resets both
    (SO_LINGER 0). One thread per connection (select), so that a close takes effect at once."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.mode = None
        self.after = 0
        self.pairs = []  # [client side, upstream side, bytes upstream->client, base at arm]
        self.fired = threading.Event()
        self.fired_info = None
        self.closed = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def arm(self, mode, after):
        with self.lock:
            for p in self.pairs:
                p[3] = p[2]
            self.mode, self.after = mode, after
            self.fired.clear()

    def _accept(self):
        while not self.closed:
            try:
                cs, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                us = socket.create_connection(self.target, timeout=TIMEOUT)
            except OSError:
                cs.close()
                continue
            pair = [cs, us, 0, 0]
            with self.lock:
                self.pairs.append(pair)
            t = threading.Thread(target=self._pump, args=(pair,), daemon=True)
            self.threads.append(t)
            t.start()

    def _pump(self, pair):
        cs, us = pair[0], pair[1]
        pos = 0  # bytes forwarded upstream -> cratebouncer
        next_record = 1  # where the next TLS record header starts (after the SSLRequest answer)
        buf = b""
        try:
            while not self.closed:
                r, _, _ = select.select([cs, us], [], [], 0.1)
                if cs in r:
                    data = cs.recv(65536)
                    if not data:
                        break
                    us.sendall(data)
                if us not in r:
                    continue
                data = us.recv(65536)
                if not data:
                    break
                buf += data
                out = b""
                cut_at = None
                with self.lock:
                    limit = pair[3] + self.after if self.mode else None
                while buf:
                    if pos + len(out) < next_record:
                        k = min(len(buf), next_record - pos - len(out))
                    elif len(buf) >= 5:
                        length = struct.unpack("!H", buf[3:5])[0]
                        if len(buf) < 5 + length:
                            break  # the whole record first
                        k = 5 + length
                        next_record = pos + len(out) + k
                        if limit is not None and next_record > limit:
                            cut_at = len(out) + 5 + length // 2  # in the middle of it
                    else:
                        break
                    out += buf[:k]
                    buf = buf[k:]
                    if cut_at is not None:
                        break
                if cut_at is None:
                    cs.sendall(out)
                    pos += len(out)
                    pair[2] = pos
                    continue
                cs.sendall(out[:cut_at])
                with self.lock:
                    mode, self.mode = self.mode, None
                    self.fired_info = (mode, pos + cut_at)
                self.fired.set()
                if mode == "stall":
                    while not self.closed:
                        time.sleep(0.1)
                elif mode == "rst":
                    for s in (cs, us):
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
        except OSError:
            pass
        for s in (cs, us):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        for t in self.threads:
            t.join(2)
        self.lsock.close()


@pytest.fixture
def relay(pg):
    r = Relay(pg.port)
    yield r
    r.close()


# an answer of about 27 TLS records, in rows of 200 bytes each
BIG = "select repeat('x', 200) from generate_series(1, 2000)"


class SteadyClient:
    """A well-behaved client on its own database (its own pool): select n every 20 ms, from
    a thread; finish() stops it and checks it was served throughout."""

    def __init__(self, b, dbname):
        self.stop, self.served, self.failures = threading.Event(), [], []
        self.t = threading.Thread(target=self._run, args=(b, dbname), daemon=True)
        self.t.start()

    def _run(self, b, dbname):
        try:
            with psycopg.connect(b.conninfo(dbname), autocommit=True) as c:
                n = 0
                while not self.stop.is_set():
                    assert c.execute("select %s::int", (n,)).fetchone()[0] == n
                    self.served.append(time.monotonic())
                    n += 1
                    time.sleep(0.02)
        except Exception as e:  # noqa: BLE001
            self.failures.append(e)

    def halt(self):
        self.stop.set()
        self.t.join(TIMEOUT)

    def finish(self, b, pid):
        """Stopped; it never failed, the daemon is the same process, and no gap of more
        than a second came between two of its answers."""
        self.halt()
        assert not self.failures, f"the well-behaved client failed: {self.failures[0]!r}"
        assert alive(b, pid)
        gaps = [y - x for x, y in zip(self.served, self.served[1:])]
        assert max(gaps) < 1.0, f"the well-behaved client waited {max(gaps):.2f} s"


REASONS = {"cut": r"upstream (closed the connection|connection failed)",
           "rst": r"upstream (closed the connection|connection failed)",
           "stall": r"query_timeout: the query ran longer than 3 s"}


@pytest.mark.parametrize("mode", ["cut", "rst", "stall"])
def test_upstream_fails_mid_answer(cratebouncer, upstream, relay, mode):
    """The upstream connection fails in the middle of a TLS record of a large answer: closed
    (FIN), reset (RST), or stalled (no more bytes; query_timeout=3 ends it). Proves: the client
    whose answer it was gets an error within seconds (no hang; for the stall, only once
    query_timeout struck), the daemon logs the reason, a well-behaved client on another pool is
    served throughout, the next clients of the faulty pool are served whole answers on a new
    server connection, and the daemon's pid is unchanged. (What the client's byte stream looks
    like is test_error_after_a_partial_answer_is_well_formed's.)"""
    settings = {**TX, "default_pool_size": 2, "query_timeout": 3}
    b = cratebouncer(settings=settings,
                     databases={"doc": upstream(port=relay.port), "direct": upstream()})
    pid = b.proc.pid
    steady = SteadyClient(b, "direct")
    try:
        victim = psycopg.connect(b.conninfo(), autocommit=True)
        assert len(victim.execute(BIG).fetchall()) == 2000  # the relay passes it whole
        relay.arm(mode, 40000)
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as ei:
            victim.execute(BIG).fetchall()
        took = time.monotonic() - t0
        victim.close()
        assert relay.fired.is_set(), "the relay did not inject the fault"
        print(f"{mode}: {ei.value!r} after {took:.2f} s; fault at byte {relay.fired_info[1]}")
        assert str(ei.value).strip()
        if mode == "stall":
            assert 2.5 < took < 8, f"the error came after {took:.1f} s"
        else:
            assert took < 3, f"the error came after {took:.1f} s"
        wait_until(lambda: re.search(REASONS[mode], b.log_text()), timeout=5,
                   what=f"/{REASONS[mode]}/ in the log")
        # the pool recovers: new clients are served on a new server connection
        for _ in range(3):
            with psycopg.connect(b.conninfo(), autocommit=True) as c:
                assert len(c.execute(BIG).fetchall()) == 2000
        n_before = len(steady.served)
        wait_until(lambda: len(steady.served) > n_before + 5, timeout=5,
                   what="steady client served")
    finally:
        steady.halt()
    steady.finish(b, pid)


def read_to_eof(sock, timeout=TIMEOUT):
    """Everything the peer sends until it closes (AssertionError after timeout s)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no end of the connection within {timeout} s "
                                 f"({len(data)} bytes)") from None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def daemon_side_state(daemon_port, client_port):
    """The TCP state (hex, as in /proc/net/tcp: 01 established, 04 FIN-WAIT-1...) of the
    daemon's end of the connection from 127.0.0.1:client_port; None when there is none."""
    with open("/proc/net/tcp") as f:
        rows = [r.split() for r in f.read().splitlines()[1:]]
    for r in rows:
        if r[1].endswith(":%04X" % daemon_port) and r[2].endswith(":%04X" % client_port):
            return r[3]
    return None


def split_messages(data):
    """Backend messages [(type, body)] and the bytes left over (a partial message)."""
    msgs, pos = [], 0
    while pos + 5 <= len(data):
        kind, length = chr(data[pos]), struct.unpack("!I", data[pos + 1:pos + 5])[0]
        if pos + 1 + length > len(data):
            break
        msgs.append((kind, data[pos + 5:pos + 1 + length]))
        pos += 1 + length
    return msgs, data[pos:]


def answer_through_faulty_relay(cratebouncer, upstream, relay, mode, at, sql):
    """A daemon whose pool reaches the upstream through the relay, a raw client logged in,
    the fault armed at byte `at` of what the upstream sends, sql sent: (daemon, every byte
    the client got until the connection ended)."""
    b = cratebouncer(settings={**TX, "default_pool_size": 2, "query_timeout": 3},
                     databases={"doc": upstream(port=relay.port)})
    r = RawConn(b.host, b.port)
    r.login("crate", "doc")
    assert r.query("select 1") == [["1"]]
    relay.arm(mode, at)
    r.send_query(sql)
    data = read_to_eof(r.sock)
    r.sock.close()
    assert relay.fired.is_set(), "the relay did not inject the fault"
    return b, data


@pytest.mark.parametrize("mode", ["cut", "stall"])
def test_error_after_a_partial_answer_is_well_formed(cratebouncer, upstream, relay, mode):
    """When the server connection fails (cut mid-TLS-record) or stalls (query_timeout) after
    part of an answer (rows of 200 bytes) was relayed, the client's byte stream must stay
    valid pgwire: whole messages only, the last an ErrorResponse (08006 for the loss, 57014
    for query_timeout) that names the cause, then the end of the connection."""
    b, data = answer_through_faulty_relay(cratebouncer, upstream, relay, mode, 40000, BIG)
    msgs, rest = split_messages(data)
    kinds = "".join(k for k, _ in msgs)
    assert not rest and set(kinds) <= set("TDE"), \
        f"malformed stream: {len(msgs)} messages, then {rest[:60]!r}... ({len(rest)} bytes)"
    assert kinds.endswith("E"), kinds[-5:]
    fields = {chr(p[0]): p[1:].decode() for p in msgs[-1][1].split(b"\0") if p}
    assert fields["C"] == ("57014" if mode == "stall" else "08006"), fields
    assert "upstream" in fields["M"] or "query_timeout" in fields["M"], fields


@pytest.mark.parametrize("mode", ["cut", "stall"])
def test_failure_inside_a_long_row_ends_the_stream_clean(cratebouncer, upstream, relay, mode):
    """Rows over 8 kB stream to the client as they come. When the server connection fails
    inside one, no ErrorResponse can follow (it would be read as the row's bytes): the client
    gets whole messages, then the start of that row, then the end of the connection, and the
    log names the cause."""
    b, data = answer_through_faulty_relay(cratebouncer, upstream, relay, mode, 100000,
                                          "select repeat('x', 30000) from generate_series(1, 20)")
    msgs, rest = split_messages(data)
    kinds = "".join(k for k, _ in msgs)
    assert set(kinds) <= set("TD") and kinds.startswith("T"), kinds
    assert rest[:1] == b"D" and len(rest) >= 5, rest[:20]
    assert struct.unpack("!I", rest[1:5])[0] + 1 > len(rest)  # a row cut short
    assert set(rest[11:]) <= {ord("x")}, rest[-80:]  # and nothing after its start (no E)
    want = "query_timeout" if mode == "stall" else "upstream"
    wait_until(lambda: want in b.log_text(), 5, "the cause in the log")


# ---------------------------------------------------------------------------------------------
# clients that misbehave


def test_client_that_never_reads_is_disconnected(cratebouncer):
    """One server (default_pool_size=1). A client sends a query with a 40 MB answer and never
    reads it, of a shape the daemon learnt is fast (so others are pipelined behind it); another
    client's query (simple protocol, a fast shape) waits behind it. Proves: after about 10 s the
    daemon disconnects the non-reader with "the client did not read its answer" (08006, in the
    log), the waiting client is then answered, a new client is served, and the daemon's pid is
    unchanged. (A client whose query was not pipelined waits for a server as usual, up to
    query_wait_timeout.)"""
    b = cratebouncer(settings={**TX, "default_pool_size": 1, "pipeline_max_query_time": 1})
    pid = b.proc.pid
    # pg_sleep first: the second client's query comes while the server is still quiet (a
    # server already deep in a long answer takes nobody behind it)
    shape = "select repeat('x', {}) from pg_sleep({}), generate_series(1, {})"
    warm = RawConn(b.host, b.port, timeout=25).login("crate", "doc")
    for _ in range(10):  # both shapes become known as fast
        assert warm.query(shape.format(1, 0, 1)) == [["x"]]
        assert warm.query("select 1") == [["1"]]
    slow = socket.create_connection((b.host, b.port), timeout=TIMEOUT)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    r = RawConn.__new__(RawConn)
    r.sock, r.params, r.auth_requests = slow, {}, []
    r.login("crate", "doc")
    r.send_query(shape.format(1000, 0.5, 40000))  # and reads nothing
    time.sleep(0.2)
    t0 = time.monotonic()
    assert warm.query("select 42") == [["42"]]
    took = time.monotonic() - t0
    print(f"the waiting client was answered after {took:.1f} s")
    assert 5 < took < 15, f"answered after {took:.1f} s"
    warm.close()
    wait_until(lambda: "the client did not read its answer" in b.log_text(), timeout=5,
               what="the non-reader's disconnection in the log")
    # the daemon has closed its end of the non-reader's connection at once, not after its
    # 5 s close-flush wait (the kernel may still hold megabytes for it: it reads slowly
    # through its small window, so no read to the end here)
    wait_until(lambda: daemon_side_state(b.port, slow.getsockname()[1]) not in ("01", None),
               timeout=3, what="the daemon's end of the non-reader's connection closed")
    slow.close()
    with psycopg.connect(b.conninfo(), autocommit=True) as c:
        assert c.execute("select 7").fetchone()[0] == 7
    assert alive(b, pid)


def test_half_closed_clients(cratebouncer):
    """30 clients each send a query and at once shut down their sending side (half-close),
    every third a query that runs a while (pg_sleep). The daemon takes the EOF as the client
    leaving (today none of the 30 gets its answer: not asserted, PgBouncer does the same).
    Proves: each connection ends within seconds with whole messages only (no half-open client
    lingers), the one server (default_pool_size=1) is not left stuck: a new client is served
    within 3 s, and the daemon's pid is unchanged."""
    b = cratebouncer(settings={**TX, "default_pool_size": 1})
    pid = b.proc.pid
    socks = []
    for i in range(30):
        r = RawConn(b.host, b.port)
        r.login("crate", "doc")
        r.send_query("select pg_sleep(0.2), 1" if i % 3 == 0 else "select 1")
        r.sock.shutdown(socket.SHUT_WR)
        socks.append(r.sock)
    answered = 0
    for s in socks:
        data = read_to_eof(s, timeout=TIMEOUT)
        msgs, rest = split_messages(data)
        assert not rest, f"partial message {rest[:40]!r}"
        if "Z" in "".join(k for k, _ in msgs):
            answered += 1
        s.close()
    print(f"{answered} of 30 half-closed clients got their answer")
    t0 = time.monotonic()
    with psycopg.connect(b.conninfo(), autocommit=True) as c:
        assert c.execute("select 5").fetchone()[0] == 5
    assert time.monotonic() - t0 < 3
    assert alive(b, pid)


# ---------------------------------------------------------------------------------------------
# file descriptor exhaustion


def test_fd_exhaustion(cratebouncer):
    """The running daemon's descriptor limit is cut (prlimit --nofile) to its open descriptors
    plus 8, and 30 clients connect at once and send their startup packets. Proves: the clients
    within the limit log in; those beyond it are neither crashed nor garbled, they wait
    (accept() pauses on EMFILE, "accept failed: Too many open files" in the log); a client that
    was already connected is served throughout; as logged-in clients leave, the waiting ones
    are accepted and logged in, all 30 in the end; the daemon's pid is unchanged."""
    b = cratebouncer(settings={**TX, "default_pool_size": 1})
    pid = b.proc.pid
    steady = SteadyClient(b, "doc")
    wait_until(lambda: steady.served, timeout=5, what="the steady client served")
    nfd = len(os.listdir(f"/proc/{pid}/fd"))
    limit = nfd + 8
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={limit}:{limit}"], check=True,
                   timeout=TIMEOUT)
    pending = []
    try:
        for _ in range(30):
            s = socket.create_connection((b.host, b.port), timeout=TIMEOUT)
            s.sendall(startup_packet("crate", "doc"))
            pending.append(s)
        first_wave = None
        logged_in = 0
        deadline = time.monotonic() + 30
        held = []  # logged-in clients kept open during the first wave
        while pending and time.monotonic() < deadline:
            r, _, _ = select.select(pending, [], [], 1.0)
            for s in r:
                data = b""
                s.settimeout(TIMEOUT)
                while b"Z\0\0\0\5" not in data:  # up to ReadyForQuery
                    chunk = s.recv(65536)
                    assert chunk, f"a client was closed at login after {data!r}"
                    data += chunk
                msgs, _ = split_messages(data)
                assert [k for k, _ in msgs if k == "E"] == [], msgs
                pending.remove(s)
                held.append(s)
                logged_in += 1
            if not r and first_wave is None:
                # nothing more comes while the descriptors are taken: the rest waits
                first_wave = logged_in
                assert 0 < first_wave < 30, f"{first_wave} of 30 logged in under the limit"
                assert "accept failed: Too many open files" in b.log_text()
                n_before = len(steady.served)
                wait_until(lambda: len(steady.served) > n_before + 5, timeout=5,
                           what="the steady client served while descriptors ran out")
            if first_wave is not None:
                for s in held:  # make room: the waiting clients come in
                    s.close()
                held = []
        print(f"limit {limit} (daemon had {nfd} open): {first_wave} logged in at first, "
              f"{logged_in} of 30 in the end")
        assert first_wave is not None, "the limit did not hold anyone back"
        assert logged_in == 30, f"only {logged_in} of 30 clients logged in in the end"
        for s in held:
            s.close()
        with psycopg.connect(b.conninfo(), autocommit=True) as c:
            assert c.execute("select 3").fetchone()[0] == 3
    finally:
        for s in pending:
            s.close()
        steady.halt()
    steady.finish(b, pid)


# ---------------------------------------------------------------------------------------------
# an upstream that stalls during the login


class StallingUpstream:
    """A TCP peer that goes as far as `step` in a pgwire login and then says nothing more:
    "connecting" (TLS required: the SSLRequest is never answered), "startup" (the
    StartupMessage is read, no answer), "authenticating" (a cleartext password is asked for
    and read), "parameters" (AuthenticationOk, then nothing)."""

    def __init__(self, step):
        self.step = step
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.login, args=(c,), daemon=True).start()

    @staticmethod
    def read_msg(c, typed=True):
        def exact(n):
            b = b""
            while len(b) < n:
                chunk = c.recv(n - len(b))
                if not chunk:
                    raise OSError("closed")
                b += chunk
            return b
        head = exact(5 if typed else 4)
        n = struct.unpack("!I", head[-4:])[0]
        return exact(n - 4)

    def login(self, c):
        try:
            if self.step == "connecting":
                c.recv(8)  # the SSLRequest, never answered
                return
            self.read_msg(c, typed=False)  # StartupMessage
            if self.step == "authenticating":
                c.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
                self.read_msg(c)
            elif self.step == "parameters":
                c.sendall(b"R" + struct.pack("!II", 8, 0))  # AuthenticationOk
        except OSError:
            pass

    def close(self):
        self.stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("step", ["connecting", "startup", "authenticating", "parameters"])
def test_login_stall_names_the_step(cratebouncer, step):
    """An upstream that stops answering during the login: the waiting client gets a
    connection error after server_connect_timeout that names the login step it stalled in,
    and the daemon goes on."""
    up = StallingUpstream(step)
    try:
        entry = {"host": "127.0.0.1", "port": up.port, "dbname": "doc", "user": "crate",
                 "password": "x", "sslmode": "require" if step == "connecting" else "disable"}
        b = cratebouncer(settings={"server_connect_timeout": 1, "server_login_retry": 5},
                         databases={"doc": entry})
        e = first_error(b.host, b.port)
        assert e is not None, "the login went through a stalling upstream"
        assert "server_connect_timeout" in str(e) and f"login step: {step}" in str(e), str(e)
        assert b.proc.poll() is None
    finally:
        up.close()
