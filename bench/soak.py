#!/usr/bin/python3
"""The load, the isolation check and the sampling of bench/soak.sh (which starts and stops the
daemons; see bench/README.md). Runs for --seconds against a running cratebouncer:

- pgwire (psycopg 3, pool_mode=transaction, database doc): --churn clients that connect, run a
  few operations and disconnect, over and over, and --persistent clients that keep one
  connection for the whole run (named prepared statements and pipeline mode among their
  operations);
- HTTP (POST /_sql through cratebouncer's [http] side): --http-keepalive clients on keep-alive
  connections (reconnecting now and then; Default-Schema doc or soak_s; gzip bodies too),
  --http-close clients sending "Connection: close" (a new TCP connection per request) and one
  --http-pinned client that SETs search_path (its upstream connection is then pinned to it).

Every query carries a literal of its own (c3_1207_48213...) and every answer is checked against
the query that asked for it: the rows (their tag, number and order), the row a write returned,
what a transaction sees of its own writes, SET LOCAL inside a transaction, the schema of an HTTP
session, the message of a deliberately provoked error. A wrong answer is a mismatch; any other
failure (an exception, an unexpected HTTP status, a lost connection) an unexplained error. Both
must be zero.

Every --sample seconds the load pauses (each client finishes its current operation; churn
clients disconnect, persistent ones stay connected), and the sampler records the daemon's VmRSS,
its open fds, SHOW LISTS / SHOW POOLS / SHOW HTTP / SHOW HTTP_POOLS from the admin console and
GET /metrics from the admin HTTP port, then resumes the load. At the end it prints the samples as
a table, writes them to OUT/samples.tsv and OUT/soak.png (python3-matplotlib), and checks growth
between the first sample at or after --warmup and the last one:

  RSS   growth <= max(--rss-pct % of the baseline, --rss-mb MB)
  fds   growth <= --fd-slack
  other fds (fds minus clients, servers and HTTP connections the daemon reports) growth
        <= --other-fd-slack

Exit status 0 when all checks pass, 1 otherwise.
"""

import argparse
import gzip
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.request

import psycopg
from psycopg import ClientCursor

MAX_KEPT = 10  # first mismatches / errors kept for the report


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {}
        self.mismatches = []
        self.errors = []

    def add(self, key, n=1):
        with self.lock:
            self.c[key] = self.c.get(key, 0) + n

    def get(self, key):
        with self.lock:
            return self.c.get(key, 0)

    def mismatch(self, who, what):
        with self.lock:
            self.c["mismatch"] = self.c.get("mismatch", 0) + 1
            if len(self.mismatches) < MAX_KEPT:
                self.mismatches.append(f"{time.strftime('%H:%M:%S')} {who}: {what}")

    def error(self, who, what):
        with self.lock:
            self.c["error"] = self.c.get("error", 0) + 1
            if len(self.errors) < MAX_KEPT:
                self.errors.append(f"{time.strftime('%H:%M:%S')} {who}: {what}")


STATS = Stats()


class Mismatch(Exception):
    pass


class Pauser:
    """The sampler pauses the workers at a quiet point: each one finishes its operation and
    waits in checkpoint() until resume()."""

    def __init__(self, n):
        self.n = n
        self.cond = threading.Condition()
        self.want = False
        self.paused = 0
        self.stop = False

    def checkpoint(self, before_pause=None):
        with self.cond:
            if not self.want:
                return
        if before_pause:
            before_pause()
        with self.cond:
            self.paused += 1
            self.cond.notify_all()
            while self.want and not self.stop:
                self.cond.wait(1)
            self.paused -= 1

    def pause(self, timeout):
        with self.cond:
            self.want = True
            end = time.monotonic() + timeout
            while self.paused < self.alive() and time.monotonic() < end:
                self.cond.wait(0.2)
            return self.paused >= self.alive()

    def alive(self):
        return sum(1 for t in WORKERS if t.is_alive())

    def resume(self):
        with self.cond:
            self.want = False
            self.cond.notify_all()

    def sleep(self, seconds):
        end = time.monotonic() + seconds
        while not self.stop:
            left = end - time.monotonic()
            if left <= 0:
                return
            with self.cond:
                if self.want:
                    return
            time.sleep(min(left, 0.05))


WORKERS = []
PAUSER = None
ARGS = None


def tag_of(name, i):
    return f"{name}_{i}_{random.randrange(1 << 30)}"


def expect(who, got, want, what):
    if got != want:
        STATS.mismatch(who, f"{what}: expected {want!r}, got {got!r}")
        raise Mismatch(what)
    STATS.add("checked")


# ---------------------------------------------------------------------------------------------
# pgwire


def pg_connect(who):
    STATS.add("pg_connects")
    return psycopg.connect(host="127.0.0.1", port=ARGS.pg_port, dbname="doc", user="crate",
                           sslmode="disable", connect_timeout=30, autocommit=True,
                           application_name=who)


def pg_op(conn, who, i, persistent):
    """One operation with its own literal; checks the answer."""
    tag = tag_of(who, i)
    k = random.random()
    n = random.choice((1, 2, 3, 5, 10, 50)) if random.random() < 0.9 else 500
    want_rows = [(tag, g) for g in range(1, n + 1)]
    if k < 0.20:  # simple query protocol, literal in the text
        cur = ClientCursor(conn)
        cur.execute(f"SELECT '{tag}'::text AS tag, g FROM generate_series(1, {n}) g")
        expect(who, cur.fetchall(), want_rows, "simple-protocol rows")
        STATS.add("pg_simple")
    elif k < 0.40:  # extended protocol (unnamed, or named prepared statements)
        prepare = persistent and random.random() < 0.5
        cur = conn.execute("SELECT %s::text AS tag, g FROM generate_series(1, %s::int) g",
                           (tag, n), prepare=prepare)
        expect(who, cur.fetchall(), want_rows, "extended-protocol rows")
        STATS.add("pg_prepared" if prepare else "pg_extended")
    elif k < 0.55:  # a write transaction: it sees its own row and its SET LOCAL
        with conn.transaction():
            cur = conn.execute("INSERT INTO doc.soak (tag, who, n) VALUES (%s, %s, %s) "
                               "RETURNING tag, n", (tag, who, n))
            expect(who, cur.fetchall(), [(tag, n)], "INSERT RETURNING")
            conn.execute(f"SET LOCAL application_name = '{tag}'")
            cur = conn.execute("SELECT current_setting('application_name'), "
                               "(SELECT n FROM doc.soak WHERE tag = %s)", (tag,))
            expect(who, cur.fetchall(), [(tag, n)], "own write and SET LOCAL in a transaction")
        cur = conn.execute("UPDATE doc.soak SET n = n + 1 WHERE tag = %s RETURNING tag, n", (tag,))
        expect(who, cur.fetchall(), [(tag, n + 1)], "UPDATE RETURNING after COMMIT")
        if random.random() < 0.7:
            cur = conn.execute("DELETE FROM doc.soak WHERE tag = %s RETURNING tag", (tag,))
            expect(who, cur.fetchall(), [(tag,)], "DELETE RETURNING")
        cur = conn.execute("SELECT current_setting('application_name')")
        expect(who, cur.fetchall(), [(who,)], "application_name after the transaction")
        STATS.add("pg_write_tx")
    elif k < 0.65:  # a rolled-back write leaves nothing
        with conn.transaction():
            conn.execute("INSERT INTO doc.soak (tag, who, n) VALUES (%s, %s, %s)", (tag, who, n))
            cur = conn.execute("SELECT count(*) FROM doc.soak WHERE tag = %s", (tag,))
            expect(who, cur.fetchall(), [(1,)], "own uncommitted row")
            raise psycopg.Rollback()
        cur = conn.execute("SELECT count(*), %s::text FROM doc.soak WHERE tag = %s", (tag, tag))
        expect(who, cur.fetchall(), [(0, tag)], "rolled-back row")
        STATS.add("pg_rollback_tx")
    elif k < 0.75:  # an error of its own, then the connection still serves
        try:
            conn.execute(f"SELECT x FROM missing_{tag}")
            STATS.mismatch(who, f"SELECT from missing_{tag} did not fail")
            raise Mismatch("no error")
        except psycopg.errors.UndefinedTable as e:
            if f"missing_{tag}" not in str(e):
                STATS.mismatch(who, f"error of another query for missing_{tag}: {e}")
                raise Mismatch("foreign error")
            STATS.add("checked")
            STATS.add("pg_expected_errors")
        cur = conn.execute("SELECT %s::text", (tag,))
        expect(who, cur.fetchall(), [(tag,)], "answer after an error")
    elif k < 0.85 and persistent:  # pipeline mode: several queries in flight on one connection
        tags = [f"{tag}p{j}" for j in range(4)]
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::text, g FROM generate_series(1, %s::int) g",
                                 (t, j + 1)) for j, t in enumerate(tags)]
        for j, (t, cur) in enumerate(zip(tags, curs)):
            expect(who, cur.fetchall(), [(t, g) for g in range(1, j + 2)], "pipelined rows")
        STATS.add("pg_pipeline")
    else:  # a read of committed data written by anyone: count only, tag echoed
        cur = conn.execute("SELECT %s::text, count(*) >= 0 FROM doc.soak", (tag,))
        expect(who, cur.fetchall(), [(tag, True)], "count echo")
        STATS.add("pg_extended")
    STATS.add("pg_ops")


def pg_churn(idx):
    who = f"c{idx}"
    i = 0
    while not PAUSER.stop:
        PAUSER.checkpoint()
        if PAUSER.stop:
            break
        try:
            with pg_connect(who) as conn:
                for _ in range(random.randint(1, 5)):
                    i += 1
                    pg_op(conn, who, i, False)
                    PAUSER.sleep(ARGS.op_pause * random.uniform(0.5, 1.5))
        except Mismatch:
            pass
        except Exception as e:  # noqa: BLE001 - every failure is reported
            STATS.error(who, f"{type(e).__name__}: {e}".strip())
        PAUSER.sleep(ARGS.op_pause * random.uniform(1, 3))


def pg_persistent(idx):
    who = f"p{idx}"
    i = 0
    conn = None
    while not PAUSER.stop:
        PAUSER.checkpoint()
        if PAUSER.stop:
            break
        try:
            if conn is None or conn.closed:
                conn = pg_connect(who)
            i += 1
            pg_op(conn, who, i, True)
        except Mismatch:
            pass
        except Exception as e:  # noqa: BLE001
            STATS.error(who, f"{type(e).__name__}: {e}".strip())
            if conn is not None and conn.broken:
                conn = None
        PAUSER.sleep(ARGS.op_pause * random.uniform(0.5, 1.5))
    if conn is not None:
        conn.close()


# ---------------------------------------------------------------------------------------------
# HTTP


class HttpClient:
    def __init__(self, who, close_each=False, schema=None):
        self.who = who
        self.close_each = close_each
        self.schema = schema
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def sql(self, stmt, args=None, bulk_args=None, compress=False):
        body = {"stmt": stmt}
        if args is not None:
            body["args"] = args
        if bulk_args is not None:
            body["bulk_args"] = bulk_args
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if compress:
            data = gzip.compress(data, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        if self.schema:
            headers["Default-Schema"] = self.schema
        if self.close_each:
            headers["Connection"] = "close"
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", ARGS.http_port, timeout=60)
            STATS.add("http_connects")
        try:
            self.conn.request("POST", "/_sql", body=data, headers=headers)
            r = self.conn.getresponse()
            raw = r.read()
        except Exception:
            self.close()
            raise
        if self.close_each or r.will_close:
            self.close()
        STATS.add("http_requests")
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw.decode(errors="replace")


def http_op(c, i):
    who = c.who
    tag = tag_of(who, i)
    k = random.random()
    want_schema = c.schema or "doc"
    if k < 0.45:
        n = random.choice((1, 2, 5, 20)) if random.random() < 0.9 else 300
        status, body = c.sql("SELECT ? AS tag, current_schema() AS s, g "
                             "FROM generate_series(1, ?) AS g", [tag, n])
        expect(who, status, 200, f"HTTP status of {tag} ({body!r:.200})")
        expect(who, body.get("rows"), [[tag, want_schema, g] for g in range(1, n + 1)],
               "HTTP rows (tag, schema)")
    elif k < 0.60:  # a gzip body over 8 KiB, as crate-python sends a long args list
        ids = [random.randrange(10**9) for _ in range(1500)]
        status, body = c.sql("SELECT ?, cardinality(?::bigint[]), current_schema()",
                             [tag, ids], compress=True)
        expect(who, status, 200, f"HTTP status of gzip {tag} ({body!r:.200})")
        expect(who, body.get("rows"), [[tag, len(ids), want_schema]], "HTTP gzip rows")
        STATS.add("http_gzip")
    elif k < 0.80:  # a bulk insert and reading it back
        rows = [[f"{tag}b{j}", who, j] for j in range(random.randint(1, 8))]
        status, body = c.sql("INSERT INTO doc.soak_http (tag, who, n) VALUES (?, ?, ?)",
                             bulk_args=rows)
        expect(who, status, 200, f"HTTP bulk status ({body!r:.200})")
        expect(who, body.get("results"), [{"rowcount": 1}] * len(rows), "HTTP bulk results")
        status, body = c.sql("DELETE FROM doc.soak_http WHERE tag LIKE ? RETURNING tag, n",
                             [f"{tag}b%"])
        expect(who, status, 200, f"HTTP delete status ({body!r:.200})")
        expect(who, sorted(body.get("rows") or []), sorted([r[0], r[2]] for r in rows),
               "HTTP DELETE RETURNING")
        STATS.add("http_writes")
    else:  # an error of its own
        status, body = c.sql(f"SELECT x FROM missing_{tag}")
        msg = body.get("error", {}).get("message", "") if isinstance(body, dict) else body
        if status not in (400, 404) or f"missing_{tag}" not in msg:
            STATS.mismatch(who, f"error for missing_{tag}: {status} {body!r:.300}")
            raise Mismatch("foreign error")
        STATS.add("checked")
        STATS.add("http_expected_errors")
    STATS.add("http_ops")


def http_worker(idx, close_each):
    who = f"h{'x' if close_each else 'k'}{idx}"
    # keep-alive clients alternate between the default schema and soak_s (the pool is keyed by
    # Default-Schema; a session of the wrong schema would show in current_schema())
    c = HttpClient(who, close_each=close_each, schema=("soak_s" if idx % 2 else None))
    i = 0
    reqs_left = random.randint(20, 80)
    while not PAUSER.stop:
        PAUSER.checkpoint()
        if PAUSER.stop:
            break
        i += 1
        try:
            http_op(c, i)
        except Mismatch:
            pass
        except Exception as e:  # noqa: BLE001
            STATS.error(who, f"{type(e).__name__}: {e}".strip())
            c.close()
        reqs_left -= 1
        if reqs_left <= 0:  # churn of keep-alive connections too
            c.close()
            reqs_left = random.randint(20, 80)
        PAUSER.sleep(ARGS.op_pause * random.uniform(0.5, 1.5) * (2 if close_each else 1))
    c.close()


def http_pinned(idx):
    """SET search_path pins the upstream connection to this client connection: every answer must
    show soak_p, and no other client may ever see soak_p (their checks expect doc/soak_s)."""
    who = f"hp{idx}"
    i = 0
    c = HttpClient(who)
    while not PAUSER.stop:
        PAUSER.checkpoint()
        if PAUSER.stop:
            break
        try:
            c.close()
            status, body = c.sql("SET search_path TO soak_p")
            expect(who, status, 200, f"HTTP SET status ({body!r:.200})")
            for _ in range(random.randint(5, 30)):
                if PAUSER.stop:
                    break
                i += 1
                tag = tag_of(who, i)
                status, body = c.sql("SELECT ?, current_schema()", [tag])
                expect(who, status, 200, f"HTTP pinned status ({body!r:.200})")
                expect(who, body.get("rows"), [[tag, "soak_p"]], "HTTP pinned session")
                STATS.add("http_ops")
                STATS.add("http_pinned")
                PAUSER.sleep(ARGS.op_pause * random.uniform(0.5, 1.5))
                with PAUSER.cond:
                    if PAUSER.want:
                        break  # it stays connected (and pinned) through the pause
        except Mismatch:
            c.close()
        except Exception as e:  # noqa: BLE001
            STATS.error(who, f"{type(e).__name__}: {e}".strip())
            c.close()
    c.close()


# ---------------------------------------------------------------------------------------------
# sampling


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def proc_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def admin_show():
    """SHOW LISTS, POOLS, HTTP, HTTP_POOLS over the admin console (simple protocol)."""
    out = {}
    with psycopg.connect(host="127.0.0.1", port=ARGS.pg_port, dbname="cratebouncer",
                         user="soakstats", sslmode="disable", connect_timeout=30,
                         autocommit=True, cursor_factory=ClientCursor) as conn:
        for what in ("LISTS", "POOLS", "HTTP", "HTTP_POOLS"):
            cur = conn.execute(f"SHOW {what}")
            cols = [d.name for d in cur.description]
            out[what] = [dict(zip(cols, row)) for row in cur.fetchall()]
    return out


def metrics_ok():
    with urllib.request.urlopen(f"http://127.0.0.1:{ARGS.admin_port}/metrics", timeout=30) as r:
        text = r.read().decode()
        return r.status == 200 and "cratebouncer" in text, len(text)


def take_sample(t0, phase):
    s = {"t": round(time.monotonic() - t0), "phase": phase}
    s["quiet"] = PAUSER.pause(30) if phase != "start" else True
    try:
        time.sleep(0.5)  # let the daemon see the closes of the churn clients
        s["rss_kb"] = proc_rss_kb(ARGS.pid)
        s["fds"] = proc_fds(ARGS.pid)
        shows = admin_show()
        lists = {r["list"]: int(r["items"]) for r in shows["LISTS"]}
        doc = [r for r in shows["POOLS"] if r["database"] == "doc"]
        s["cl"] = lists["used_clients"] - 1  # without the console's own connection
        s["sv"] = lists["used_servers"] + lists["free_servers"]
        s["sv_idle"] = sum(int(r["sv_idle"]) for r in doc)
        s["sv_active"] = sum(int(r["sv_active"]) for r in doc)
        s["cl_waiting"] = sum(int(r["cl_waiting"]) for r in doc)
        h = shows["HTTP"][0]
        hp = shows["HTTP_POOLS"][0]
        s["http_cl"] = int(h["clients"])
        s["http_up"] = int(hp["sv_active"]) + int(hp["sv_idle"]) + int(hp["sv_pinned"])
        s["http_pinned"] = int(hp["sv_pinned"])
        s["http_5xx"] = int(h["5xx"])
        s["http_up_err"] = int(h["upstream_errors"])
        # fds the daemon's own figures do not explain: listeners, log, event loop, ... and leaks
        s["other_fds"] = s["fds"] - s["cl"] - s["sv"] - s["http_cl"] - s["http_up"]
        ok, _ = metrics_ok()
        s["metrics"] = "ok" if ok else "BAD"
    finally:
        if phase != "start":
            PAUSER.resume()
    s["pg_ops"] = STATS.get("pg_ops")
    s["http_ops"] = STATS.get("http_ops")
    s["connects"] = STATS.get("pg_connects") + STATS.get("http_connects")
    s["mismatch"] = STATS.get("mismatch")
    s["errors"] = STATS.get("error")
    return s


COLS = [("t", "t s", 6), ("phase", "phase", 7), ("rss_kb", "RSS kB", 8), ("fds", "fds", 5),
        ("other_fds", "other", 6), ("cl", "pg cl", 6), ("sv", "pg sv", 6),
        ("sv_idle", "sv_idle", 8), ("http_cl", "http cl", 8), ("http_up", "http up", 8),
        ("http_pinned", "pinned", 7), ("pg_ops", "pg ops", 8), ("http_ops", "http ops", 9),
        ("connects", "connects", 9), ("mismatch", "mism", 5), ("errors", "err", 4),
        ("quiet", "quiet", 6), ("metrics", "metrics", 8)]


def print_table(samples):
    print(" ".join(f"{h:>{w}}" for _, h, w in COLS))
    for s in samples:
        print(" ".join(f"{str(s.get(k, '-')):>{w}}" for k, _, w in COLS))


def write_tsv(samples, path):
    with open(path, "w") as f:
        keys = [k for k, _, _ in COLS]
        f.write("\t".join(keys) + "\n")
        for s in samples:
            f.write("\t".join(str(s.get(k, "")) for k in keys) + "\n")


def plot(samples, path, base_t):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("no PNG: python3-matplotlib is not installed (the Debian package "
                "python3-matplotlib; samples are in samples.tsv)")
    t = [s["t"] for s in samples]
    fig, ax = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax[0].plot(t, [s["rss_kb"] / 1024 for s in samples], marker="o")
    ax[0].set_ylabel("VmRSS MB")
    ax[1].plot(t, [s["fds"] for s in samples], marker="o", label="open fds")
    ax[1].plot(t, [s["other_fds"] for s in samples], marker=".", label="other fds")
    ax[1].set_ylabel("fds")
    ax[1].legend()
    for key, label in (("cl", "pg clients"), ("sv", "pg servers"), ("http_cl", "http clients"),
                       ("http_up", "http upstream")):
        ax[2].plot(t, [s[key] for s in samples], marker=".", label=label)
    ax[2].set_ylabel("connections")
    ax[2].set_xlabel("seconds")
    ax[2].legend()
    for a in ax:
        a.axvline(base_t, color="grey", linestyle=":")
    fig.suptitle("cratebouncer soak (bench/soak.sh): dotted line = baseline after warm-up")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return f"plot: {path}"


# ---------------------------------------------------------------------------------------------


def main():
    global ARGS, PAUSER
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--seconds", type=float, default=3600)
    p.add_argument("--sample", type=float, default=60)
    p.add_argument("--warmup", type=float, default=300)
    p.add_argument("--churn", type=int, default=4)
    p.add_argument("--persistent", type=int, default=4)
    p.add_argument("--http-keepalive", type=int, default=3)
    p.add_argument("--http-close", type=int, default=2)
    p.add_argument("--http-pinned", type=int, default=1)
    p.add_argument("--op-pause", type=float, default=0.1,
                   help="seconds each client waits between operations (about)")
    p.add_argument("--rss-pct", type=float, default=20)
    p.add_argument("--rss-mb", type=float, default=8)
    p.add_argument("--fd-slack", type=int, default=16)
    p.add_argument("--other-fd-slack", type=int, default=4)
    p.add_argument("--out", required=True)
    ARGS = p.parse_args()

    specs = ([(pg_churn, (i,)) for i in range(ARGS.churn)]
             + [(pg_persistent, (i,)) for i in range(ARGS.persistent)]
             + [(http_worker, (i, False)) for i in range(ARGS.http_keepalive)]
             + [(http_worker, (i, True)) for i in range(ARGS.http_close)]
             + [(http_pinned, (i,)) for i in range(ARGS.http_pinned)])
    PAUSER = Pauser(len(specs))
    t0 = time.monotonic()
    samples = [take_sample(t0, "start")]
    for fn, a in specs:
        WORKERS.append(threading.Thread(target=fn, args=a, daemon=True))
    for w in WORKERS:
        w.start()

    def report_progress(s):
        print(f"# t={s['t']} s RSS {s['rss_kb']} kB, fds {s['fds']} (other {s['other_fds']}), "
              f"pg cl/sv {s['cl']}/{s['sv']}, http cl/up {s['http_cl']}/{s['http_up']}, "
              f"{s['pg_ops']} pg ops, {s['http_ops']} http ops, {s['mismatch']} mismatches, "
              f"{s['errors']} errors", flush=True)

    end = t0 + ARGS.seconds
    next_t = t0 + ARGS.sample
    failed_sample = None
    while True:
        now = time.monotonic()
        target = min(next_t, end)
        if now < target:
            time.sleep(min(target - now, 1))
            if not all(w.is_alive() for w in WORKERS):
                break
            continue
        phase = "end" if target >= end else ("warmup" if target - t0 < ARGS.warmup else "load")
        try:
            s = take_sample(t0, phase)
        except Exception as e:  # noqa: BLE001 - the daemon died or the console failed
            failed_sample = f"sampling failed: {type(e).__name__}: {e}"
            break
        samples.append(s)
        report_progress(s)
        if phase == "end":
            break
        next_t += ARGS.sample
    PAUSER.stop = True
    PAUSER.resume()
    for w in WORKERS:
        w.join(90)
    stuck = sum(1 for w in WORKERS if w.is_alive())

    print()
    print("samples (taken with the load paused: churn clients gone, persistent ones connected;")
    print(" other = fds - pg clients - pg servers - http clients - http upstream connections)")
    print_table(samples)
    write_tsv(samples, os.path.join(ARGS.out, "samples.tsv"))

    fails = []
    if failed_sample:
        fails.append(failed_sample)
    if stuck:
        fails.append(f"{stuck} client threads did not stop")
    base = next((s for s in samples[1:] if s["t"] >= ARGS.warmup), None)
    last = samples[-1]
    if base is None or base is last:
        fails.append(f"no sample after the warm-up ({ARGS.warmup:g} s) other than the last: "
                     "run longer or sample more often")
        base = samples[1] if len(samples) > 1 else samples[0]
    print(f"\nbaseline: the sample at t={base['t']} s (first at or after the {ARGS.warmup:g} s "
          f"warm-up); last: t={last['t']} s")
    rss_tol = max(base["rss_kb"] * ARGS.rss_pct / 100, ARGS.rss_mb * 1024)
    checks = [
        ("RSS kB", last["rss_kb"] - base["rss_kb"], rss_tol,
         f"max({ARGS.rss_pct:g} % of {base['rss_kb']} kB, {ARGS.rss_mb:g} MB)"),
        ("fds", last["fds"] - base["fds"], ARGS.fd_slack, f"{ARGS.fd_slack}"),
        ("other fds", last["other_fds"] - base["other_fds"], ARGS.other_fd_slack,
         f"{ARGS.other_fd_slack}"),
    ]
    for name, grew, tol, how in checks:
        ok = grew <= tol
        print(f"growth {name:10s} {grew:+8.0f} (tolerance +{tol:.0f} = {how}): "
              f"{'ok' if ok else 'FAIL'}")
        if not ok:
            fails.append(f"{name} grew by {grew:.0f} (tolerance {tol:.0f})")
    peak = max(s["rss_kb"] for s in samples)
    print(f"peak RSS {peak} kB; not quiet at sampling: "
          f"{sum(1 for s in samples if not s.get('quiet'))}; metrics endpoint not ok: "
          f"{sum(1 for s in samples if s.get('metrics') != 'ok')}")
    if any(s.get("metrics") != "ok" for s in samples):
        fails.append("GET /metrics on the admin port failed")

    c = dict(STATS.c)
    dur = time.monotonic() - t0
    print(f"\nload over {dur:.0f} s: {c.get('pg_ops', 0)} pgwire operations "
          f"({c.get('pg_simple', 0)} simple, {c.get('pg_extended', 0)} extended, "
          f"{c.get('pg_prepared', 0)} prepared, {c.get('pg_pipeline', 0)} pipelined, "
          f"{c.get('pg_write_tx', 0)} write transactions, {c.get('pg_rollback_tx', 0)} rollbacks, "
          f"{c.get('pg_expected_errors', 0)} provoked errors) on {c.get('pg_connects', 0)} "
          f"connections; {c.get('http_ops', 0)} HTTP operations ({c.get('http_requests', 0)} "
          f"requests, {c.get('http_gzip', 0)} gzip, {c.get('http_writes', 0)} bulk writes, "
          f"{c.get('http_pinned', 0)} pinned, {c.get('http_expected_errors', 0)} provoked "
          f"errors) on {c.get('http_connects', 0)} connections")
    print(f"isolation check: {c.get('checked', 0)} answers checked, "
          f"{c.get('mismatch', 0)} mismatches, {c.get('error', 0)} unexplained errors")
    for m in STATS.mismatches:
        print(f"  mismatch: {m}")
    for e in STATS.errors:
        print(f"  error: {e}")
    if c.get("mismatch", 0):
        fails.append(f"{c['mismatch']} mismatches")
    if c.get("error", 0):
        fails.append(f"{c['error']} unexplained errors")
    if c.get("checked", 0) < 10 * dur:
        fails.append(f"only {c.get('checked', 0)} answers checked in {dur:.0f} s: too little load")

    if len(samples) > 1:
        print(plot(samples, os.path.join(ARGS.out, "soak.png"), base["t"]))
    with open(os.path.join(ARGS.out, "summary.json"), "w") as f:
        json.dump({"samples": samples, "counters": c, "fails": fails,
                   "mismatches": STATS.mismatches, "errors": STATS.errors}, f, indent=1)
    if fails:
        print("\nsoak: FAILED: " + "; ".join(fails))
        return 1
    print("\nsoak: passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
