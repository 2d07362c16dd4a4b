"""Queries through cratebouncer: the client sends no password, cratebouncer logs in upstream over
verified TLS with the credentials from its config."""

import subprocess
import uuid

import psycopg
import psycopg2
import pytest

from helpers import TIMEOUT, RawConn, clean_env


def test_query_without_client_password(cratebouncer):
    """psql with no password at all (-w) gets a result through cratebouncer."""
    cb = cratebouncer()
    assert cb.psql("select 40 + 2").stdout.strip() == "42"


def test_injected_user_whatever_the_client_name(cratebouncer):
    """The upstream session runs as the configured user even when the client gives another name."""
    cb = cratebouncer()
    with cb.connect(user="somebody_else") as conn:
        assert conn.execute("select current_user, session_user").fetchone() == ("crate", "crate")


def test_upstream_session_is_tls(cratebouncer, pg):
    """The upstream connection is TLS 1.2+ from 127.0.0.1, seen from inside and from outside
    the session, while the client's own connection to cratebouncer is plaintext."""
    cb = cratebouncer()
    with cb.connect() as conn:
        assert not conn.pgconn.ssl_in_use
        pid, ssl, version, addr = conn.execute(
            "select pid, ssl, version, host(inet_client_addr()) from pg_stat_ssl "
            "where pid = pg_backend_pid()").fetchone()
        assert ssl is True
        assert version in ("TLSv1.2", "TLSv1.3")
        assert addr == "127.0.0.1"
        seen = pg.sql("select a.usename, host(a.client_addr), s.ssl from pg_stat_activity a "
                      "join pg_stat_ssl s using (pid) where a.pid = %s", (pid,))
        assert seen == [("crate", "127.0.0.1", True)]


def test_written_data_is_upstream(cratebouncer, pg):
    """Rows written through cratebouncer (extended protocol with parameters) are in the
    upstream database, read back by a direct superuser connection."""
    cb = cratebouncer()
    table = "t_" + uuid.uuid4().hex[:10]
    with cb.connect() as conn:
        conn.execute(f"create table {table} (id int primary key, name text)")
        conn.execute(f"insert into {table} values (%s, %s), (%s, %s)", (1, "one", 2, "two"))
    assert pg.sql(f"select id, name from {table} order by id") == [(1, "one"), (2, "two")]
    assert pg.sql("select tableowner from pg_tables where tablename = %s",
                  (table,)) == [("crate",)]
    pg.sql(f"drop table {table}")


@pytest.mark.parametrize("user", ["crate", "md5user", "scramuser"])
def test_upstream_login_methods(cratebouncer, upstream, user):
    """cratebouncer answers the upstream's cleartext (crate), md5 (md5user) and SCRAM-SHA-256
    (scramuser) password requests."""
    cb = cratebouncer(databases={"doc": upstream(user=user)})
    with cb.connect() as conn:
        assert conn.execute("select current_user").fetchone() == (user,)


def test_upstream_by_dns_name(cratebouncer, upstream):
    """host=localhost verifies against the certificate's DNS name (verify-full)."""
    cb = cratebouncer(databases={"doc": upstream(host="localhost")})
    with cb.connect() as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_unix_socket(cratebouncer):
    """psql -h SOCKDIR -p PORT reaches cratebouncer over its Unix socket."""
    cb = cratebouncer()
    res = subprocess.run(["psql", "-X", "-w", "-A", "-t", "-h", cb.sockdir, "-p", str(cb.port),
                          "-U", "crate", "-d", "doc", "-c", "select current_user"],
                         capture_output=True, text=True, env=clean_env(), timeout=TIMEOUT * 3)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "crate"


def test_prepared_statements_and_pipeline(cratebouncer):
    """psycopg 3's server-side prepared statements (after repeated executions) and pipeline
    mode go through unchanged in session mode."""
    cb = cratebouncer()
    with cb.connect() as conn:
        for i in range(8):
            assert conn.execute("select %s::int * 2", (i,), prepare=True).fetchone() == (i * 2,)
        assert conn.execute("select count(*) from pg_prepared_statements").fetchone()[0] >= 1
        with conn.pipeline():
            curs = [conn.execute("select %s::int + 1", (i,)) for i in range(20)]
        assert [c.fetchone()[0] for c in curs] == list(range(1, 21))


def test_psycopg2_and_raw_simple_query(cratebouncer):
    """psycopg2 (simple protocol, as in CrateDB's docs) and a bare protocol client both work;
    the startup answer carries the upstream's ParameterStatus values."""
    cb = cratebouncer()
    conn = psycopg2.connect(cb.conninfo())
    try:
        cur = conn.cursor()
        cur.execute("select %s || %s", ("crate", "bouncer"))
        assert cur.fetchone() == ("cratebouncer",)
    finally:
        conn.close()
    raw = RawConn(cb.host, cb.port).login("crate", "doc")
    try:
        assert raw.params.get("server_version", "").startswith("15")
        assert raw.params.get("client_encoding") == "UTF8"
        assert raw.query("select 1, null") == [["1", None]]
    finally:
        raw.close()


def test_error_inside_session_keeps_it_usable(cratebouncer):
    """A failing statement returns the upstream's error and SQLSTATE; the session stays usable."""
    cb = cratebouncer()
    with cb.connect() as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("select * from no_such_table_here")
        assert conn.execute("select 'still here'").fetchone() == ("still here",)
