"""conecta (the release pinned in tests/requirements.txt: surister's Rust SQL-to-Arrow loader,
in CrateDB's Python guide) through cratebouncer with no password and no TLS. conecta has no TLS
at all (tokio-postgres with NoTls, an r2d2 pool), so it cannot reach CrateDB Cloud, which only
takes TLS: checked first, by what it sends a server. Through the sidecar: its snippet
in docs/cratedb-cloud.md, its own parameters (sql_bind's :name, bound on the client), 5000 rows,
the upstream's error, partitioned reads and lists of queries (each part on a connection of its
own, in a thread of its own), and 8 threads on a pool of 2.

conecta 0.0.8 panics on a query error instead of raising an exception (PanicException, a
BaseException), with the upstream's message inside; and its partition plan leaves out the
values at some partition boundaries (an xfail below): both are conecta's, not the sidecar's."""

import re
import socket
import struct
import subprocess
import sys

import conecta
import pytest

from conftest import run_snippet
from pgwire_checks import (CLIENTS, bounded, check_error, check_rows, cluster_name, in_threads,
                           missing, new_tag, rows_sql)


def url(b):
    return f"postgres://admin@{b.host}:{b.port}/doc"


def read(b, query, **kw):
    return bounded(conecta.read_sql, url(b), query, timeout=40, **kw)


def rows(table):
    return [(r["tag"], r["x"]) for r in table.to_pylist()]


def test_no_tls():
    """conecta never asks for TLS: the first thing it sends a server is a StartupMessage in
    plaintext, not an SSLRequest. That is why it cannot reach CrateDB Cloud on its own."""
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(20)
        port = ls.getsockname()[1]
        code = f"import conecta; conecta.read_sql('postgres://admin@127.0.0.1:{port}/doc', " \
               "'SELECT 1')"
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            c, _ = ls.accept()
            with c:
                c.settimeout(20)
                head = c.recv(8)
                length, version = struct.unpack("!ii", head)
                rest = c.recv(length - 8)
        finally:
            p.kill()
            p.wait()
    assert version != 80877103, "an SSLRequest"
    assert version == 196608, f"not a StartupMessage of protocol 3.0: {version}"
    assert b"user\0admin\0" in rest


def test_snippet(sidecar, pg_target):
    b = sidecar()
    out = run_snippet("conecta", b).splitlines()
    assert out[0] == cluster_name(pg_target)
    assert "Mont Blanc" in out[1], out


def test_parameters_rows_error(sidecar, pg_target):
    b = sidecar()
    q = conecta.sql_bind("SELECT height FROM sys.summits WHERE mountain = :m", {"m": "Mont Blanc"})
    assert read(b, q).to_pylist() == [{"height": 4808}]
    q = conecta.sql_bind("SELECT :s AS s, :n AS n, IDENT(:c) FROM sys.cluster",
                         {"s": "O'Brien", "n": 42, "c": "name"})
    assert read(b, q).to_pylist() == [{"s": "O'Brien", "n": 42, "name": cluster_name(pg_target)}]

    t = new_tag()
    check_rows(rows(read(b, rows_sql(t))), t)
    with pytest.raises(BaseException) as e:  # a pyo3 PanicException, see above
        read(b, f"SELECT v FROM {missing(t)}")
    check_error(pg_target, e.value, missing(t))
    assert read(b, "SELECT name FROM sys.cluster").to_pylist() == \
        [{"name": cluster_name(pg_target)}]


def plan_values(plan):
    """The x values the plan's data queries select (x >= a and x < b, or x <= b)."""
    got = set()
    for q in plan.data_queries:
        m = re.search(r"x >= (\d+) and x (<=?) (\d+)", q)
        lo, op, hi = int(m.group(1)), m.group(2), int(m.group(3))
        got |= set(range(lo, hi + 1 if op == "<=" else hi))
    return got


def test_partitions_and_lists(sidecar):
    b = sidecar(pool=2)
    t = new_tag()
    q = rows_sql(t)
    plan = conecta.create_partition_plan(url(b), [q], partition_on="x", partition_num=4)
    got = rows(read(b, q, partition_on="x", partition_num=4))
    assert {r[0] for r in got} == {t}
    xs = [r[1] for r in got]
    assert len(xs) == len(set(xs)), "a row twice"
    assert set(xs) == plan_values(plan), "not the rows the plan asked for"
    # a list of queries: one connection each, read in threads of their own
    tags = [new_tag(i) for i in range(4)]
    got = rows(read(b, [rows_sql(u, 700) for u in tags]))
    for u in tags:
        check_rows([r for r in got if r[0] == u], u, 700)
    assert len(got) == 4 * 700


@pytest.mark.xfail(strict=True, reason="conecta 0.0.8's partition plan leaves out values at "
                   "partition boundaries (for 1..5000 in 4 parts it asks for x < 2499, then "
                   "x >= 2500): conecta's own bug, with or without a sidecar")
def test_partition_plan_covers_the_range(sidecar):
    b = sidecar()
    t = new_tag()
    check_rows(rows(read(b, rows_sql(t), partition_on="x", partition_num=4)), t)


def test_threads_share_a_small_pool(sidecar):
    b = sidecar(pool=2)

    def client(i):
        for _ in range(2):
            t = new_tag(i)
            got = rows(read(b, rows_sql(t, 800)))
            assert {r[0] for r in got} == {t}, f"rows of other queries reached {t}"
            check_rows(got, t, 800)

    in_threads(client, CLIENTS)
