#!/usr/bin/env python3
"""Cycles of "a client's first query on an empty pool" through a pooler, for
bench/tls-reconnect.sh: the admin console empties the pool (RECONNECT, then SHOW SERVERS until
no server of the database is left), a client logs in and runs SELECT 1, which makes the pooler
open, TLS-handshake and log in a new upstream connection, and leaves. With --keep the admin
console runs the same commands but RECONNECT, so the server is reused: the difference between
the two is what a new upstream connection costs.

--implicit-begin: the client is psycopg2 as it comes (autocommit off: BEGIN before the query)
and leaves without COMMIT, as many scripts do; with --keep this shows whether the pooler keeps
a server its client left inside a transaction (servers_seen 1) or opens one per cycle.

Prints one line of JSON: the median and p90 of the client's login + first query (ms), the
on-CPU time per cycle (us, from /proc/PID/schedstat) of each --cpu PID, and how many distinct
servers SHOW SERVERS showed (about --cycles with RECONNECT, 1 or a few with --keep)."""

import argparse
import json
import statistics
import time

import psycopg2


def cpu_ns(pid):
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--cpu", type=int, action="append", default=[])
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--implicit-begin", action="store_true")
    a = ap.parse_args()
    dsn = f"host=127.0.0.1 port={a.port} user=crate sslmode=disable connect_timeout=20"
    adm = psycopg2.connect(dsn + " dbname=pgbouncer")
    adm.autocommit = True
    cur = adm.cursor()

    seen = set()

    def servers():
        cur.execute("SHOW SERVERS")
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        rows = [r for r in rows if r["database"] == "doc"]
        seen.update((r["ptr"], r["connect_time"], r["local_port"]) for r in rows)
        return rows

    times = []
    cpu0 = [cpu_ns(p) for p in a.cpu]
    for _ in range(a.cycles):
        if a.keep:
            cur.execute("SHOW VERSION")
            servers()
        else:
            cur.execute("RECONNECT doc")
            deadline = time.monotonic() + 20
            while servers():
                if time.monotonic() > deadline:
                    raise SystemExit("the pool did not empty after RECONNECT")
                time.sleep(0.001)
        t0 = time.perf_counter()
        c = psycopg2.connect(dsn + " dbname=doc")
        c.autocommit = not a.implicit_begin
        c.cursor().execute("SELECT 1")
        times.append((time.perf_counter() - t0) * 1000)
        c.close()
    servers()
    cpu = [(cpu_ns(p) - c0) / 1000 / a.cycles for p, c0 in zip(a.cpu, cpu0)]
    times.sort()
    print(json.dumps({"p50_ms": statistics.median(times),
                      "p90_ms": times[int(len(times) * 0.9)],
                      "cpu_us": cpu, "servers_seen": len(seen)}))


if __name__ == "__main__":
    main()
