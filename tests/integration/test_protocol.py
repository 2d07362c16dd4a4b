"""The client side of the wire protocol: no TLS towards clients, bounded startup packets,
database names resolved through [databases] (with the `*` fallback and user pass-through)."""

import struct

import psycopg
import pytest

from helpers import Closed, PgError, RawConn, login_error, startup_packet


def test_ssl_request_answered_n(cratebouncer):
    """SSLRequest gets 'N' and the same connection then logs in in plaintext."""
    cb = cratebouncer()
    raw = RawConn(cb.host, cb.port)
    try:
        assert raw.ssl_request() == b"N"
        raw.login("crate", "doc")
        assert raw.query("select current_user") == [["crate"]]
    finally:
        raw.close()


@pytest.mark.parametrize("version,extra,told", [
    (196608 + 2, {}, (0, [])),
    (196608, {"_pq_.compression": "on"}, (0, [b"_pq_.compression"])),
    (196608 + 2, {"_pq_.a": "1", "application_name": "x"}, (0, [b"_pq_.a"]))])
def test_newer_protocol_negotiated_down(cratebouncer, version, extra, told):
    """A client asking for protocol 3.2 (PostgreSQL 18's libpq with max_protocol_version) or
    for _pq_ options is told, as PostgreSQL tells it, that it gets 3.0 without them, before
    authentication, and then works; a plain 3.0 startup is told nothing."""
    cb = cratebouncer()
    raw = RawConn(cb.host, cb.port)
    try:
        raw.login("crate", "doc", extra=extra, version=version)
        assert raw.negotiated == told
        assert raw.query("select 41 + 1") == [["42"]]
    finally:
        raw.close()
    plain = RawConn(cb.host, cb.port)
    try:
        plain.login("crate", "doc")
        assert not hasattr(plain, "negotiated")
    finally:
        plain.close()


def test_psql_sslmode(cratebouncer):
    """psql with sslmode=require fails (no TLS offered); sslmode=prefer falls back to plaintext."""
    cb = cratebouncer()
    res = cb.psql("select 1", sslmode="require", check=False)
    assert res.returncode != 0
    assert "server does not support SSL" in res.stderr
    assert cb.psql("select 1", sslmode="prefer").stdout.strip() == "1"


def test_oversized_startup_packet_refused(cratebouncer):
    """A startup packet over 10000 bytes is refused without a login, and the daemon keeps
    serving others."""
    cb = cratebouncer()
    packet = startup_packet("crate", "doc", {"application_name": "x" * 10100})
    assert len(packet) > 10000
    raw = RawConn(cb.host, cb.port)
    try:
        try:
            raw.send(packet)
        except OSError:
            pass  # refused before we finished sending
        with pytest.raises((PgError, Closed, ConnectionResetError)):
            while True:
                kind, body = raw.read_msg()
                assert kind != "R", "the oversized startup packet was accepted"
    finally:
        raw.sock.close()
    assert cb.psql("select 1").stdout.strip() == "1"


def test_unknown_database(cratebouncer):
    """A database name not in [databases] (and no `*` entry) gives 3D000 'no such database'."""
    cb = cratebouncer()
    err = login_error(cb.host, cb.port, database="nosuchdb")
    assert err.sqlstate == "3D000"
    assert "no such database: nosuchdb" in err.message
    with pytest.raises(psycopg.OperationalError, match="no such database: nosuchdb"):
        cb.connect(dbname="nosuchdb")


def test_fallback_database(cratebouncer, pg):
    """`* = host=... port=...` serves any database name, connecting to the database of the
    same name upstream."""
    cb = cratebouncer(databases={
        "*": f"host=127.0.0.1 port={pg.port} user=crate password=secret"})
    for name in ("doc", "postgres"):
        with cb.connect(dbname=name) as conn:
            assert conn.execute("select current_database(), current_user").fetchone() == \
                (name, "crate")


@pytest.mark.parametrize("user", ["crate", "scramuser"])
def test_entry_without_user_passes_client_through(cratebouncer, upstream, user):
    """An entry without user= logs in upstream as the client's user, with that user's
    plaintext password from the auth_file."""
    cb = cratebouncer(settings={"auth_type": "plain"},
                      databases={"doc": upstream(user=None, password=None)},
                      users={"crate": "secret", "scramuser": "secret"})
    with cb.connect(user=user, password="secret") as conn:
        assert conn.execute("select current_user").fetchone() == (user,)


def _refused_at_header(raw, typ, length):
    """Sends only the header of a message of `length` (its length field): the ErrorResponse
    comes without the body ever being sent, then the connection closes."""
    raw.send(typ + struct.pack("!I", length))
    with pytest.raises(PgError) as e:
        while True:
            raw.read_msg()
    assert e.value.fields["C"] == "08P01", e.value.fields
    with pytest.raises((Closed, ConnectionResetError)):
        raw.read_msg()
    return e.value.fields["M"]


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_message_over_max_packet_size_refused_at_its_header(cratebouncer, mode):
    """A client message longer than max_packet_size is refused when its header arrives (a
    Query, Parse or Bind would otherwise be held whole, one gigabyte per client): an
    ErrorResponse naming the limit, the client disconnected; others keep their sessions, and
    a message just under the limit is served."""
    cb = cratebouncer(settings={"pool_mode": mode, "max_packet_size": 65536})
    other = RawConn(cb.host, cb.port).login("crate", "doc")
    other.query("set application_name = 'other'")
    for typ in (b"Q", b"P", b"B", b"d"):
        raw = RawConn(cb.host, cb.port).login("crate", "doc")
        try:
            msg = _refused_at_header(raw, typ, 65537)
            assert msg == "message of 65537 bytes from client is over max_packet_size (65536)"
        finally:
            raw.close()
    just = RawConn(cb.host, cb.port).login("crate", "doc")
    try:
        sql = "select '" + "x" * (65531 - 14) + "' = ''"
        assert len(sql.encode()) + 1 + 4 == 65536
        assert just.query(sql) == [["f"]]
    finally:
        just.close()
    assert other.query("show application_name") == [["other"]]
    other.close()


def test_default_max_packet_size_refuses_a_200mb_header(cratebouncer):
    """The default (100 MB, CrateDB's http.max_content_length) refuses a 200 MB Query at its
    header: nothing of it is buffered."""
    cb = cratebouncer()
    raw = RawConn(cb.host, cb.port).login("crate", "doc")
    try:
        msg = _refused_at_header(raw, b"Q", 200 * 1024 * 1024)
        assert msg.endswith("is over max_packet_size (104857600)"), msg
    finally:
        raw.close()
    assert cb.psql("select 1").stdout.strip() == "1"
