#!/usr/bin/python3
"""A CrateDB-dialect pgwire server in front of a PostgreSQL, for tests and benchmarks: the
behaviours of CrateDB's PostgreSQL wire protocol that break a PostgreSQL pooler, so that CI
(which cannot have a CrateDB) exercises cratebouncer's CrateDB mode.

    /usr/bin/python3 tests/support/crate_pgwire.py --listen 127.0.0.1 --port N \\
        --cert DIR/ssl/server.crt --key DIR/ssl/server.key \\
        --pg-host 127.0.0.1 --pg-port P --pg-ca DIR/ssl/ca.crt [--ready-file F] [--tls-max 1.2]

Each behaviour is one CrateDB has, with the CrateDB source it comes from (server/src/main/java/
io/crate/protocols/postgres/PostgresWireProtocol.java "PWP", session/Session.java,
metadata/settings/session/SessionSettingRegistry.java, the grammar SqlBaseParser.g4), and was
checked against a real CrateDB 6.5.0 through tests/integration/test_crate.py:
- SSLRequest 'S' then TLS; cleartext password login only; after AuthenticationOk exactly the
  8 ParameterStatus CrateDB sends (crate_version first, lower-case `datestyle`); no
  ParameterStatus after a SET, ever (PWP sendParamsAndRdyForQuery).
- A simple Query ends with ReadyForQuery 'I' always, even after BEGIN (PWP handleSimpleQuery).
  BEGIN / START TRANSACTION make the session IN_TRANSACTION until COMMIT / END (Session
  beginTransaction/commit); there is no ROLLBACK (SqlBaseParser.g4), and no RESET name: both
  are syntax errors (42601), and one bad statement fails the whole Query before any of it runs
  (SqlParser.createStatementsForSimpleQuery).
- A Sync reports `session.transactionState()` ('T' after BEGIN, read before the group's
  deferred executions run: PWP handleSync), and 'E' after an error at Parse or Bind
  (ignoreTillSync), even in autocommit; an error while executing leaves it 'I' (seen on
  CrateDB 6.5.0).
- SET of a registered session setting applies; SET of an unknown name, SET LOCAL and SET TIME
  ZONE are ignored (SetSessionPlan); `SET name TO DEFAULT` resets one.
- DECLARE ... WITHOUT HOLD (the default) needs a transaction ("DECLARE CURSOR can only be used
  in transaction blocks", XX000) and is closed at COMMIT; WITH HOLD lives until CLOSE; an
  unknown cursor is "No cursor named `x` available" (XX000) (Session, Cursors).
- DISCARD ALL closes statements, portals, cursors and the transaction, keeps settings, and
  takes the session out of the map cancel requests are matched against (Session.resetAll,
  Sessions.cancel).
- A Query that arrives while an earlier one runs starts at once (Session.quickExec/sync);
  RowDescription, errors and ReadyForQuery are ordered (DelayableWriteChannel), DataRow and
  CommandComplete are written directly (ResultSetReceiver bypassDelay): the rows of two
  queries in flight interleave. Here such a Query runs on another PostgreSQL connection of the
  session, with the session's settings.
- CancelRequest kills the session's most recently started job, reported as XX000
  "Job killed. Cancellation request by: <user>" (Sessions.cancel, JobKilledException).
- FunctionCall and COPY messages get an ErrorResponse and no ReadyForQuery (PWP
  dispatchMessage default branch).

What differs from CrateDB (it is PostgreSQL underneath): the SQL is PostgreSQL's (apart from
the statements above); statements are run one at a time, so only RESET name and ROLLBACK are
caught before a Query runs; prepared statements are re-planned by PostgreSQL after a
search_path change (CrateDB analyses them once, at Parse: only the real-CrateDB tier shows
that); extended-protocol messages are not deferred to Sync; only simple Queries run
concurrently; a WITHOUT HOLD cursor is a WITH HOLD one on PostgreSQL, closed at COMMIT.

Prints "ready" and writes the port to --ready-file once it listens; SIGTERM/SIGINT stop it.
"""

import argparse
import asyncio
import os
import random
import re
import signal
import ssl
import struct
import sys

CRATE_VERSION = "6.5.0"
# PWP: the ParameterStatus messages after AuthenticationOk, in this order
WELCOME = [("crate_version", CRATE_VERSION), ("server_version", "14.0"),
           ("server_encoding", "UTF8"), ("client_encoding", "UTF8"), ("datestyle", "ISO"),
           ("TimeZone", "UTC"), ("integer_datetimes", "on"),
           ("standard_conforming_strings", "on")]
# SessionSettingRegistry: PostgreSQL has these too (forwarded) ...
SETTINGS_PG = {"search_path", "application_name", "statement_timeout", "enable_hashjoin",
               "datestyle", "client_encoding"}
# ... and these it lacks (kept here)
SETTINGS_OWN = {"error_on_unknown_object_key": "true", "memory.operation_limit": "0",
                "insert_select_fail_fast": "false"}

SESSIONS = {}  # (pid, key) -> Session, the cancel map
SESSION_ONLY = re.compile(r"\s*(set|begin|start|commit|end|discard|deallocate|close|reset)\b",
                          re.I)


def msg(t, body=b""):
    return t + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def error(code, text, severity="ERROR"):
    return msg(b"E", b"S" + cstr(severity) + b"V" + cstr(severity) + b"C" + cstr(code) +
               b"M" + cstr(text) + b"\0")


def ready(status):
    return msg(b"Z", status.encode())


def complete(tag):
    return msg(b"C", cstr(tag))


def error_fields(body):
    out, i = {}, 0
    while i < len(body) and body[i] != 0:
        j = body.index(b"\0", i + 1)
        out[chr(body[i])] = body[i + 1:j].decode(errors="replace")
        i = j + 1
    return out


async def read_msg(reader):
    head = await reader.readexactly(5)
    n = struct.unpack("!I", head[1:])[0]
    return head[:1], await reader.readexactly(n - 4)


def split_statements(sql):
    """Statements of a Query: quotes, dollar quotes and comments are skipped."""
    out, start, i, n = [], 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = sql.find(c, i + 1)
            i = n if j < 0 else j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "$":
            m = re.match(r"\$[A-Za-z_]*\$", sql[i:])
            if m:
                j = sql.find(m.group(0), i + len(m.group(0)))
                i = n if j < 0 else j + len(m.group(0))
            else:
                i += 1
        elif c == ";":
            out.append(sql[start:i])
            start = i = i + 1
        else:
            i += 1
    out.append(sql[start:])
    return [s.strip() for s in out if s.strip()]


class Backend:
    """One PostgreSQL connection of a session."""

    def __init__(self, reader, writer, pid, key):
        self.reader, self.writer, self.pid, self.key = reader, writer, pid, key


class Session:
    def __init__(self, server, reader, writer):
        self.server, self.reader, self.writer = server, reader, writer
        self.user = self.password = None
        self.pid, self.key = random.randrange(1, 1 << 31), random.randrange(1, 1 << 31)
        self.in_tx = False
        self.cursors = {}  # name -> with_hold
        self.settings = {}  # SET values PostgreSQL has, replayed on extra connections
        self.own = dict(SETTINGS_OWN)
        self.primary = None
        self.spare = []  # idle extra connections
        self.jobs = []  # running simple Queries, oldest first: (backend, ordered-gate)
        self.order = asyncio.Lock()  # ordered messages: one job's at a time
        self.primary_lock = asyncio.Lock()
        self.tasks = set()
        self.ext_error = self.bound = False
        self.prepared = set()
        self.drop = []  # answer types of injected messages to drop, in order

    # -- output: DataRow/CommandComplete directly, the rest in job order

    def send(self, data):
        self.writer.write(data)

    # -- PostgreSQL side

    async def connect_pg(self):
        cfg = self.server
        ctx = ssl.create_default_context(cafile=cfg.pg_ca)
        r, w = await asyncio.open_connection(cfg.pg_host, cfg.pg_port)
        w.write(struct.pack("!II", 8, 80877103))
        await w.drain()
        if await r.readexactly(1) != b"S":
            raise RuntimeError("PostgreSQL refused TLS")
        await w.start_tls(ctx, server_hostname="localhost")
        params = b"user\0" + cstr(self.user) + b"database\0doc\0\0"
        w.write(struct.pack("!II", len(params) + 8, 196608) + params)
        pid = key = 0
        while True:
            t, b = await read_msg(r)
            if t == b"R":
                code = struct.unpack("!I", b[:4])[0]
                if code == 3:
                    w.write(msg(b"p", cstr(self.password or "")))
                elif code != 0:
                    raise RuntimeError(f"PostgreSQL asks for auth method {code}")
            elif t == b"E":
                raise PermissionError(error_fields(b).get("M", "login failed"))
            elif t == b"K":
                pid, key = struct.unpack("!II", b)
            elif t == b"Z":
                break
        be = Backend(r, w, pid, key)
        # the startup database is the default schema (Session: the `database` parameter)
        await self.run_on(be, "SET search_path TO " + self.schema, quiet=True)
        for k, v in list(self.settings.items()):
            await self.run_on(be, f"SET {k} TO {v}", quiet=True)
        return be

    async def run_on(self, be, sql, quiet=False, gate=None):
        """Runs one statement on be. With gate (the earlier jobs' end) not done yet,
        DataRow and CommandComplete go out at once and the rest waits for gate, as in
        CrateDB's DelayableWriteChannel. Returns the ErrorResponse fields or None."""
        be.writer.write(msg(b"Q", cstr(sql)))
        err, ordered = None, []
        while True:
            t, b = await read_msg(be.reader)
            if t == b"Z":
                break
            if t == b"E":
                err = error_fields(b)
            if t in (b"S", b"N") or quiet:
                continue
            m = self.crate_error(err) if t == b"E" else msg(t, b)
            if gate is None or gate.done():
                for o in ordered:
                    self.send(o)
                ordered = []
                self.send(m)
            elif t in (b"D", b"C"):
                self.send(m)  # ResultSetReceiver bypassDelay: written directly
            else:
                ordered.append(m)
        if gate is not None:
            await gate
        for m in ordered:
            self.send(m)
        return err

    def crate_error(self, f):
        code, text = f.get("C", "XX000"), f.get("M", "")
        if code == "57014":  # JobKilledException
            return error("XX000", f"Job killed. Cancellation request by: {self.user}")
        m = re.match(r'cursor "(.*)" does not exist', text)
        if m:
            return error("XX000", f"No cursor named `{m.group(1)}` available")
        m = re.match(r'relation "(.*)" does not exist', text)
        if m:
            return error("42P01", f"Relation '{m.group(1)}' unknown")
        return error(code, text)

    # -- the client's messages

    async def serve(self):
        try:
            if not await self.startup():
                return
            while True:
                t, b = await read_msg(self.reader)
                if t == b"X":
                    return
                if t == b"Q":
                    # the next message is read while this Query runs (Session.quickExec),
                    # but statements that only change the session (SET, BEGIN, ...) are
                    # done before: CrateDB runs them while handling the message
                    sql = b[:-1].decode()
                    done = self.start_query(sql)
                    if all(SESSION_ONLY.match(st) for st in split_statements(sql)):
                        await done
                elif t in (b"P", b"B", b"D", b"E", b"C", b"H", b"S"):
                    for job in list(self.jobs):
                        await job[1]  # a stand-in limitation: after running Queries
                    await self.extended(t, b)
                else:
                    # PWP dispatchMessage: FunctionCall, COPY messages: an error, no
                    # ReadyForQuery
                    self.send(error("XX000", f"Unsupported messageType: {t.decode()}"))
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            for task in list(self.tasks):
                task.cancel()
            SESSIONS.pop((self.pid, self.key), None)
            for be in [self.primary] + self.spare + [j[0] for j in self.jobs]:
                if be is not None:
                    be.writer.close()
            self.writer.close()

    async def startup(self):
        while True:
            n = struct.unpack("!I", await self.reader.readexactly(4))[0]
            body = await self.reader.readexactly(n - 4)
            code = struct.unpack("!I", body[:4])[0]
            if code == 80877103:  # SSLRequest
                self.writer.write(b"S")
                await self.writer.drain()
                await self.writer.start_tls(self.server.tls)
                continue
            if code == 80877104:  # GSSENCRequest
                self.writer.write(b"N")
                continue
            if code == 80877102:  # CancelRequest
                pid, key = struct.unpack("!II", body[4:12])
                sess = SESSIONS.get((pid, key))
                if sess is not None:
                    await sess.cancel_newest()
                return False
            break
        parts = body[4:].split(b"\0")
        params = dict(zip([p.decode() for p in parts[0::2]], [p.decode() for p in parts[1::2]]))
        self.user = params.get("user", "crate")
        self.schema = params.get("database", "doc") or "doc"
        self.writer.write(msg(b"R", struct.pack("!I", 3)))  # cleartext password
        await self.writer.drain()
        t, b = await read_msg(self.reader)
        self.password = b[:-1].decode()
        for opt in re.findall(r"-c\s*([\w.]+)=(\S+)", params.get("options", "")):
            if opt[0].lower() in SETTINGS_PG:
                self.settings[opt[0].lower()] = "'" + opt[1].replace("'", "''") + "'"
            elif opt[0].lower() in self.own:
                self.own[opt[0].lower()] = opt[1]
        try:
            self.primary = await self.connect_pg()
        except PermissionError:
            self.send(error("28P01", f"password authentication failed for user \"{self.user}\"",
                            "FATAL"))
            await self.writer.drain()
            return False
        out = msg(b"R", struct.pack("!I", 0))
        for k, v in WELCOME:
            out += msg(b"S", cstr(k) + cstr(v))
        out += msg(b"K", struct.pack("!II", self.pid, self.key)) + ready("I")
        self.writer.write(out)
        SESSIONS[(self.pid, self.key)] = self
        return True

    async def cancel_newest(self):
        """Sessions.cancel: the most recently started job is killed."""
        if not self.jobs:
            return
        be = self.jobs[-1][0]
        if be is None:
            return
        r, w = await asyncio.open_connection(self.server.pg_host, self.server.pg_port)
        w.write(struct.pack("!IIII", 16, 80877102, be.pid, be.key))
        await w.drain()
        await r.read()
        w.close()

    def start_query(self, sql):
        """Runs a Query as a job of its own: on the main connection when nothing runs,
        else at once on another one."""
        done = asyncio.get_running_loop().create_future()
        prev = [j[1] for j in self.jobs]
        job = [None, done]
        self.jobs.append(job)

        async def run():
            try:
                await self.query(sql, job, prev)
            except Exception as e:  # noqa: BLE001 (reported, the session goes on)
                print(f"crate_pgwire: query failed: {e!r}", file=sys.stderr)
                self.send(error("XX000", f"stand-in failure: {e!r}") + ready("I"))
            finally:
                self.jobs.remove(job)
                done.set_result(None)
        task = asyncio.ensure_future(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return done

    async def query(self, sql, job, prev):
        stmts = split_statements(sql)
        for s in stmts:
            low = " ".join(s.lower().split())
            if re.match(r"rollback\b", low) or (re.match(r"reset\b", low) and not re.match(
                    r"reset (global\b|session authorization$)", low)):
                # SqlBaseParser.g4: no ROLLBACK, only RESET GLOBAL / SESSION AUTHORIZATION;
                # the whole Query fails before any of it runs
                return await self.after(prev, error(
                    "42601", f"line 1:1: no viable alternative at input '{s}'") + ready("I"))
        if not stmts:
            return await self.after(prev, msg(b"I") + ready("I"))
        if not prev:
            job[0] = self.primary
            for s in stmts:
                if await self.statement(self.primary, s, None):
                    break
            self.send(ready("I"))  # PWP handleSimpleQuery: always IDLE
            return
        # Session.quickExec: it starts at once, here on another connection; its rows go out
        # directly, the rest after the earlier jobs (DelayableWriteChannel)
        be = self.spare.pop() if self.spare else await self.connect_pg()
        job[0] = be
        try:
            await self.run_on(be, "SET search_path TO " + self.schema, quiet=True)
            for k, v in list(self.settings.items()):
                await self.run_on(be, f"SET {k} TO {v}", quiet=True)
            before = asyncio.ensure_future(asyncio.gather(*prev))
            for s in stmts:
                if await self.statement(be, s, before):
                    break
            await self.after(prev, ready("I"))
        finally:
            self.spare.append(be)

    async def after(self, prev, data):
        for p in prev:
            await p
        self.send(data)

    async def statement(self, be, s, gate):
        """One statement of a Query; True when it failed (the rest is skipped)."""
        low = " ".join(s.lower().split())
        m = re.match(r"(begin|start transaction)\b", low)
        if m:
            self.in_tx = True
            return await self.answer(gate, complete("BEGIN"))
        if re.match(r"(commit|end)\b", low):
            for name, hold in list(self.cursors.items()):
                if not hold:
                    await self.run_on(be, f'CLOSE "{name}"', quiet=True)
                    del self.cursors[name]
            self.in_tx = False
            return await self.answer(gate, complete("COMMIT"))
        if low == "discard all":
            await self.run_on(be, "CLOSE ALL", quiet=True)
            await self.run_on(be, "DEALLOCATE ALL", quiet=True)
            self.cursors.clear()
            self.prepared.clear()
            self.in_tx = False
            SESSIONS.pop((self.pid, self.key), None)  # uncancellable from now on
            return await self.answer(gate, complete("DISCARD ALL"))
        m = re.match(r"set (session |local )?([\w.]+) *(=|to) *(.*)$", s, re.I | re.S)
        if m or re.match(r"set time zone\b", low):
            name = m.group(2).lower() if m else ""
            if m and not (m.group(1) or "").lower().startswith("local") and name in SETTINGS_PG:
                if name == "search_path" and m.group(4).strip().lower() == "default":
                    # the session's default schema is the startup database
                    s = "SET search_path TO " + self.schema
                err = await self.run_on(be, s, gate=gate)
                if err is None:
                    if m.group(4).strip().lower() == "default":
                        self.settings.pop(name, None)
                    else:
                        self.settings[name] = m.group(4).strip()
                return err is not None
            if m and not (m.group(1) or "").lower().startswith("local") and name in self.own:
                v = m.group(4).strip().strip("'")
                self.own[name] = SETTINGS_OWN[name] if v.lower() == "default" else v
            # an unknown setting, SET LOCAL, SET TIME ZONE: ignored (SetSessionPlan)
            return await self.answer(gate, complete("SET"))
        m = re.match(r"show ([\w.]+)$", low)
        if m and m.group(1) in self.own:
            row = msg(b"T", struct.pack("!H", 1) + cstr(m.group(1)) +
                      struct.pack("!IhIhih", 0, 0, 25, -1, -1, 0))
            v = self.own[m.group(1)].encode()
            return await self.answer(gate, row + msg(b"D", struct.pack("!HI", 1, len(v)) + v) +
                                     complete("SHOW"))
        m = re.match(r'declare +("[^"]+"|\w+) +(.*?)cursor +(with hold +|without hold +)?for +(.*)$',
                     s, re.I | re.S)
        if m:
            name = m.group(1).strip('"') if m.group(1).startswith('"') else m.group(1).lower()
            hold = bool(m.group(3)) and m.group(3).lower().startswith("with hold")
            if not hold and not self.in_tx:
                return await self.answer(gate, error(
                    "XX000", "DECLARE CURSOR can only be used in transaction blocks"), True)
            err = await self.run_on(be, f'DECLARE "{name}" {m.group(2)}CURSOR WITH HOLD FOR '
                                    f"{m.group(4)}", gate=gate)
            if err is None:
                self.cursors[name] = hold
            return err is not None
        m = re.match(r"close (all|\"[^\"]+\"|\w+)$", low if '"' not in s else s.strip(), re.I)
        if m:
            if m.group(1).lower() == "all":
                self.cursors.clear()
            else:
                n = m.group(1).strip('"') if m.group(1).startswith('"') else m.group(1).lower()
                self.cursors.pop(n, None)
        return (await self.run_on(be, s, gate=gate)) is not None

    async def answer(self, gate, data, failed=False):
        if gate is not None:
            await gate
        self.send(data)
        return failed

    async def extended(self, t, b):
        """Parse/Bind/Describe/Execute/Close/Flush/Sync on the session's main connection."""
        async with self.primary_lock:
            be = self.primary
            if t == b"P":
                name = b[:b.index(b"\0")]
                if name and name in self.prepared:
                    # CrateDB replaces a statement of the same name silently
                    be.writer.write(msg(b"C", b"S" + name + b"\0"))
                    self.drop.append(b"3")
                if name:
                    self.prepared.add(name)
            elif t == b"C" and b[:1] == b"S":
                self.prepared.discard(b[1:-1])
            be.writer.write(msg(t, b))
            if t not in (b"S", b"H"):
                return
            done = asyncio.get_running_loop().create_future()
            job = (be, done)
            self.jobs.append(job)
            try:
                await self.ext_answers(be, t)
            finally:
                self.jobs.remove(job)
                done.set_result(None)

    async def ext_answers(self, be, t):
            while True:
                if t == b"H":
                    # Flush: what is there now (no ReadyForQuery ends it)
                    try:  # one byte: a cancelled wait consumes nothing
                        rt = await asyncio.wait_for(be.reader.readexactly(1), 0.05)
                    except asyncio.TimeoutError:
                        break
                    n = struct.unpack("!I", await be.reader.readexactly(4))[0]
                    rb = await be.reader.readexactly(n - 4)
                else:
                    rt, rb = await read_msg(be.reader)
                if rt == b"S" or rt == b"N":
                    continue
                if self.drop and rt == self.drop[0]:
                    self.drop.pop(0)
                    continue
                if rt == b"2":
                    self.bound = True
                if rt == b"E":
                    # PWP: an error at Parse/Bind sets ignoreTillSync, and that Sync answers
                    # 'E'; one while executing does not
                    self.ext_error = self.ext_error or not self.bound
                    self.send(self.crate_error(error_fields(rb)))
                    continue
                if rt == b"Z":
                    # PWP handleSync: session.transactionState() (an extended BEGIN runs on
                    # PostgreSQL, whose 'T' says so)
                    z = "E" if self.ext_error else ("T" if self.in_tx or rb == b"T" else "I")
                    self.send(ready(z))
                    self.ext_error = self.bound = False
                    break
                self.send(msg(rt, rb))


class Server:
    def __init__(self, args):
        self.pg_host, self.pg_port, self.pg_ca = args.pg_host, args.pg_port, args.pg_ca
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(args.cert, args.key)
        if args.tls_max == "1.2":
            # CrateDB on a JVM run with -Djdk.tls.server.protocols=TLSv1.2: sessions by id,
            # which a client reuses for every connection (no single-use tickets)
            self.tls.maximum_version = ssl.TLSVersion.TLSv1_2

    async def handle(self, reader, writer):
        await Session(self, reader, writer).serve()


async def main(args):
    srv = Server(args)
    try:
        server = await asyncio.start_server(srv.handle, args.listen, args.port, reuse_address=True)
    except OSError as e:
        print(f"crate_pgwire: cannot listen on {args.listen}:{args.port}: {e}", file=sys.stderr)
        sys.exit(2)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.rename(args.ready_file + ".tmp", args.ready_file)
    print("ready", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--pg-ca", required=True)
    p.add_argument("--ready-file")
    p.add_argument("--tls-max", choices=["1.2", "1.3"], default="1.3")
    asyncio.run(main(p.parse_args()))
