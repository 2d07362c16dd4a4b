"""What the HTTP client files (test_client_*.py for crate-python, sqlalchemy-cratedb, records,
cratedb-async, pandas, Polars, Dask, micropython-cratedb) check, the same way for every client:
rows that carry their query's tag, the upstream's own message for a missing table, what the
guide's snippets print. Each file drives its client the way its documentation shows, against
http_sidecar(pool_size=POOL).http_url (plaintext, no credentials), and hands what it got to
these functions.

The SQL is what both upstreams accept: the stand-in (tests/support/crate_http.py, PostgreSQL
underneath) and a real CrateDB. Only REFRESH TABLE differs: CrateDB needs it before a SELECT
sees fresh rows, PostgreSQL has no such statement (refresh_sql())."""

import random
import re

POOL = 2  # the sidecar's pool_size, smaller than CLIENTS
CLIENTS = 8  # threads or tasks sharing it
ROWS = 5000  # "a few thousand rows", every one checked
ROUNDS = 3  # queries per concurrent client, so that clients interleave on the pool
CLIENT_ROWS = 300  # rows per query of a concurrent client
# The top of sys.summits, the same on every target (CrateDB has 1605 summits, the test
# PostgreSQL behind the stand-in the 6 highest, tests/support/pgenv.py).
TOP2 = [("Mont Blanc", 4808), ("Monte Rosa", 4634)]


def new_tag(i=0):
    return f"t{i}_{random.randrange(1 << 30)}"


def rows_sql(tag, n=ROWS):
    """n rows (tag, x) with x = 1..n; PostgreSQL's and CrateDB's generate_series both name
    their column generate_series."""
    return f"SELECT '{tag}' AS tag, generate_series AS x FROM generate_series(1, {n})"


# The same with the tag and the count as `?` parameters (crate-python's paramstyle, which
# sqlalchemy-cratedb compiles bound parameters to).
ROWS_SQL_QMARK = "SELECT ? AS tag, generate_series AS x FROM generate_series(1, ?)"


def check_rows(rows, tag, n=ROWS):
    """rows is a sequence of (tag, x): all n of them, each with this tag, x exactly 1..n."""
    rows = [tuple(r) for r in rows]
    assert len(rows) == n, f"{len(rows)} rows for {tag}, not {n}"
    strays = [r for r in rows if r[0] != tag]
    assert not strays, f"rows of another query reached {tag}: {strays[:3]}"
    assert sorted(int(r[1]) for r in rows) == list(range(1, n + 1)), f"wrong x for {tag}"


def missing(tag):
    return f"missing_{tag}"


def check_error(text, table):
    """text carries the upstream's own message for SELECT from a missing table: CrateDB's
    `RelationUnknown[Relation 'doc.t' unknown]`, or the stand-in's RelationUnknown[...] (its
    PostgreSQL's message inside, or CrateDB's wording)."""
    text = str(text)
    assert re.search(r"RelationUnknown\[.*" + re.escape(table), text, re.S), \
        f"not the upstream's message for {table}: {text}"


def refresh_sql(target, table):
    """The statement that makes fresh rows visible on target, or None (the stand-in)."""
    return None if target.kind == "standin" else f"REFRESH TABLE {table}"


def cluster_name(target):
    """What `SELECT name FROM sys.cluster` answers on target (tests/support/pgenv.py makes 'crate')."""
    if target.kind == "standin":
        return "crate"
    from crate import client
    c = client.connect(target.url, username=target.user, password=target.password,
                       ca_cert=target.ca, verify_ssl_cert=True)
    try:
        cur = c.cursor()
        cur.execute("SELECT name FROM sys.cluster")
        return cur.fetchone()[0]
    finally:
        c.close()


def table_name(prefix):
    return f"{prefix}_{random.randrange(1 << 30)}"
