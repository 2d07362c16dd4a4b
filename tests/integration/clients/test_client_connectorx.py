"""connectorx (the release pinned in tests/requirements.txt) through cratebouncer with no password
and no TLS, with protocol="cursor" as CrateDB needs (its default protocol, "binary", is
`COPY (...) TO STDOUT WITH BINARY`, which CrateDB does not support): its snippet in
docs/cratedb-cloud.md, read_sql into pandas, Arrow and Polars with all 5000 rows checked, the
upstream's error, and concurrency. connectorx has no bind parameters: what it parameterises is
the split of a query (partition_on / partition_num / partition_range, and lists of queries),
each part on a connection of its own in a thread of its own, which is checked here along
with 8 threads each running read_sql on a sidecar pool of 2."""

import connectorx as cx
import pytest

from conftest import run_snippet

# connectorx 0.4.6 builds its DataFrames with an API that pandas 3 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:make_block is deprecated")
from pgwire_checks import (CLIENTS, bounded, check_error, check_rows, cluster_name,
                           connectorx_threads_pool, in_threads, missing, new_tag, rows_sql)


def url(b):
    return f"postgresql://admin@{b.host}:{b.port}/doc?sslmode=disable"


def read(b, query, **kw):
    return bounded(cx.read_sql, url(b), query, protocol="cursor", **kw)


def parts_sidecar(sidecar, pool_mode, parts):
    """A sidecar for a read_sql split into parts. connectorx keeps all of a read's connections
    open until the read is done: in session mode each keeps the server it got, so the pool
    must have one for each part and one for the metadata query (anything less waits until
    query_wait_timeout: see "Sizing the pool" in docs/cratedb-cloud.md). In transaction mode
    2 are shared by all of them."""
    return sidecar(pool=parts + 1 if pool_mode == "session" else 2)


def by_tag(table):
    """{tag: [(tag, x), ...]} from a pandas frame, Arrow table or Polars frame of (tag, x)."""
    if hasattr(table, "to_pylist"):  # pyarrow
        rows = [(r["tag"], r["x"]) for r in table.to_pylist()]
    elif hasattr(table, "iter_rows"):  # polars
        rows = list(table.select("tag", "x").iter_rows())
    else:  # pandas
        rows = list(table[["tag", "x"]].itertuples(index=False, name=None))
    out = {}
    for r in rows:
        out.setdefault(r[0], []).append(r)
    return out


def test_snippet(sidecar, pg_target):
    b = sidecar()
    out = run_snippet("connectorx", b).splitlines()
    assert out[0] == cluster_name(pg_target)
    assert "Mont Blanc" in out[1], out


@pytest.mark.parametrize("return_type", ["pandas", "arrow", "polars"])
def test_rows_error(sidecar, pg_target, return_type):
    b = sidecar()
    t = new_tag()
    got = by_tag(read(b, rows_sql(t), return_type=return_type))
    assert list(got) == [t]
    check_rows(got[t], t)
    with pytest.raises(RuntimeError) as e:
        read(b, f"SELECT v FROM {missing(t)}", return_type=return_type)
    check_error(pg_target, e.value, missing(t))
    df = read(b, "SELECT name FROM sys.cluster", return_type=return_type)
    names = df["name"].to_pylist() if return_type == "arrow" else list(df["name"])
    assert names == [cluster_name(pg_target)]


def test_partitions(sidecar, pg_target, pool_mode):
    """partition_on: connectorx asks for min and max, then reads 4 ranges on 4 connections."""
    b = parts_sidecar(sidecar, pool_mode, 4)
    t = new_tag()
    got = by_tag(read(b, rows_sql(t), partition_on="x", partition_num=4, return_type="arrow"))
    check_rows(got[t], t)
    got = by_tag(read(b, rows_sql(t, 3000), partition_on="x", partition_range=(1, 3000),
                      partition_num=3, return_type="pandas"))
    check_rows(got[t], t, 3000)
    df = read(b, "SELECT mountain, height FROM sys.summits WHERE height > 4500",
              partition_on="height", partition_num=2)
    assert {"Mont Blanc", "Monte Rosa", "Dom", "Liskamm", "Weisshorn"} <= set(df["mountain"])


def test_threads_share_a_small_pool(sidecar, pool_mode):
    # one read_sql of 8 queries: 8 connections, one per query, each in its own thread
    b = parts_sidecar(sidecar, pool_mode, CLIENTS)
    tags = [new_tag(i) for i in range(CLIENTS)]
    got = by_tag(read(b, [rows_sql(t, 600) for t in tags], return_type="arrow"))
    assert sorted(got) == sorted(tags)
    for t in tags:
        check_rows(got[t], t, 600)

    # 8 threads of the application, each with its own read_sql: on a pool of 2 in transaction
    # mode; in session mode on a pool of 8 (see pgwire_checks.connectorx_threads_pool)
    b = sidecar(pool=connectorx_threads_pool(pool_mode))

    def client(i):
        for _ in range(2):
            t = new_tag(i)
            got = by_tag(read(b, rows_sql(t, 800), return_type="polars"))
            assert list(got) == [t], f"rows of other queries reached {t}: {list(got)}"
            check_rows(got[t], t, 800)

    in_threads(client, CLIENTS)


def test_default_protocol(sidecar, pg_target):
    """Without protocol="cursor" connectorx reads with COPY ... TO STDOUT: CrateDB refuses it
    (so it does directly; cratebouncer passes its error on). PostgreSQL, and the stand-in,
    which runs PostgreSQL's SQL, answer it."""
    b = sidecar()
    t = new_tag()
    if not pg_target.crate or pg_target.kind == "standin":
        check_rows(by_tag(bounded(cx.read_sql, url(b), rows_sql(t, 1000),
                                  return_type="arrow"))[t], t, 1000)
        return
    with pytest.raises(RuntimeError) as e:
        bounded(cx.read_sql, url(b), rows_sql(t, 1000), return_type="arrow")
    assert "COPY" in str(e.value) or "copy" in str(e.value), e.value
    check_rows(by_tag(read(b, rows_sql(t, 1000), return_type="arrow"))[t], t, 1000)
