"""Transaction and statement pooling: the relay's own behaviour, checked with raw protocol
messages and psycopg against the real PostgreSQL (prepared statements across server
connections, pipelines, session state per client, limits)."""

import threading

import psycopg
import pytest

TX = {"pool_mode": "transaction", "default_pool_size": 2, "max_client_conn": 200}


def test_simple_queries_share_servers(cratebouncer, pg):
    b = cratebouncer(settings=TX)
    conns = [b.connect() for _ in range(8)]
    for round_ in range(3):
        for i, c in enumerate(conns):
            assert c.execute("select %s::int * 2", (i + round_,)).fetchone()[0] == 2 * (i + round_)
    pids = set()
    for c in conns:
        pids.add(c.execute("select pg_backend_pid()").fetchone()[0])
    assert 1 <= len(pids) <= 2


def test_prepared_statements_across_servers(cratebouncer):
    b = cratebouncer(settings=TX)
    conns = [psycopg.connect(b.conninfo(), autocommit=True, prepare_threshold=0) for _ in range(6)]
    try:
        for round_ in range(5):
            for i, c in enumerate(conns):
                r = c.execute("select %s::int + %s::int", (i, round_)).fetchone()[0]
                assert r == i + round_
                r = c.execute("select %s::text || 'x'", (str(i),)).fetchone()[0]
                assert r == f"{i}x"
    finally:
        for c in conns:
            c.close()


def test_transaction_keeps_server(cratebouncer):
    b = cratebouncer(settings=TX)
    a, other = b.connect(), b.connect()
    with a.transaction():
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
        other.execute("select 1")
        assert a.execute("select pg_backend_pid()").fetchone()[0] == pid
