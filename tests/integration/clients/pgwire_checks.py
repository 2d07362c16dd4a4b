"""What the pgwire client files (test_client_*.py) check, the same way for every client: rows
that carry their query's tag, the upstream's own error message for a missing table, and the
names of the sidecar's pool. Each file drives its client the way the client's documentation
shows and hands what it got to these functions."""

import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

CLIENTS = 8  # threads or tasks sharing the sidecar's pool of 2
ROWS = 5000  # "a few thousand rows", every one checked
SUMMITS = {"Mont Blanc": 4808, "Monte Rosa": 4634}  # the same in sys.summits of every target


def new_tag(i=0):
    return f"t{i}_{random.randrange(1 << 30)}"


def rows_sql(tag, n=ROWS):
    """n rows (tag, x) with x = 1..n; PostgreSQL's and CrateDB's generate_series both name
    their column generate_series."""
    return f"SELECT '{tag}' AS tag, generate_series AS x FROM generate_series(1, {n})"


def check_rows(rows, tag, n=ROWS):
    """rows is a sequence of (tag, x): all n of them, each with this tag, x exactly 1..n."""
    rows = [tuple(r) for r in rows]
    assert len(rows) == n, f"{len(rows)} rows for {tag}, not {n}"
    strays = [r for r in rows if r[0] != tag]
    assert not strays, f"rows of another query reached {tag}: {strays[:3]}"
    assert sorted(int(r[1]) for r in rows) == list(range(1, n + 1)), f"wrong x for {tag}"


def missing(tag):
    return f"missing_{tag}"


def error_pattern(target, table):
    """The upstream's message for SELECT from a table that does not exist."""
    if target.crate:  # CrateDB's RelationUnknown (and the stand-in's copy of it)
        return rf"Relation '(doc\.)?{re.escape(table)}' unknown"
    return rf'relation "{re.escape(table)}" does not exist'


def check_error(target, text, table):
    text = str(text).replace('\\"', '"')  # Rust clients show the message Debug-quoted
    assert re.search(error_pattern(target, table), text), \
        f"not the upstream's message for {table}: {text}"


def cluster_name(target):
    """What `SELECT name FROM sys.cluster` answers on target (tests/support/pgenv.py makes 'crate')."""
    if target.pg is not None:
        return "crate"
    with target.direct() as c:
        return c.execute("SELECT name FROM sys.cluster").fetchone()[0]


def in_threads(fn, n=CLIENTS, timeout=45):
    """fn(i) for i in range(n), each in its own thread; their results. Raises the first
    client's error, saying how many failed (helpers.run_threads without the suite's imports,
    for the checks that also run in a subprocess). A client stuck in native code (a Rust
    client) fails the test after timeout s instead of hanging it: the main thread only waits."""
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


def bounded(fn, *args, timeout=45, **kw):
    """fn(*args, **kw) in a thread of its own, waited for at most timeout s: a call into a
    client's native code (connectorx, conecta) that never returns fails the test instead of
    hanging the suite, where the per-test SIGALRM cannot interrupt it."""
    ex = ThreadPoolExecutor(max_workers=1)
    try:
        return ex.submit(fn, *args, **kw).result(timeout=timeout)
    finally:
        ex.shutdown(wait=False)


def connectorx_threads_pool(pool_mode):
    """The sidecar's pool for CLIENTS application threads that call connectorx's read_sql
    (also under pandas or Polars). connectorx 0.4.6 holds Python's GIL while it waits for a
    connection from its r2d2 pool (seen without any pooler: against a server that never
    answers, every other Python thread stops until r2d2's 30 s timeout). A read queued in the
    sidecar for a server connection so stops the threads that would free one: in session mode
    a server is freed only when its client disconnects, which those threads have still to do,
    and all of them wait until query_wait_timeout. Through any pooler in session mode, then,
    pool_size must cover the threads that read at once; in transaction mode a server is free
    as soon as its query is answered, and 2 do for 8 threads."""
    return CLIENTS if pool_mode == "session" else 2
