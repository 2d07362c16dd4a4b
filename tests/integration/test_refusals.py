"""Upstream failures reach the client as a clear ErrorResponse, are logged once per cause, and
do not disturb another, correctly configured pool of the same daemon."""

import re

import psycopg
import pytest

from helpers import first_error, free_port


def check_refusal(cb, message, sqlstate, log_marker):
    """Database 'bad' fails with message/sqlstate for every client while 'good' keeps
    serving; the log names the cause once."""
    err = first_error(cb.host, cb.port, database="bad")
    assert err.sqlstate == sqlstate, err
    assert message in err.message
    with cb.connect(dbname="good") as conn:
        assert conn.execute("select current_user").fetchone() == ("crate",)
    # Later clients, within server_login_retry, get the same cause.
    err = first_error(cb.host, cb.port, database="bad")
    assert err.sqlstate == sqlstate, err
    assert message in err.message
    with pytest.raises(psycopg.Error, match=re.escape(message)):
        with cb.connect(dbname="bad") as conn:
            conn.execute("select 1")
    with cb.connect(dbname="good") as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    lines = [ln for ln in cb.log_text().splitlines() if log_marker in ln]
    assert len(lines) == 1, f"expected one log line with {log_marker!r}, got {lines}"


@pytest.mark.parametrize("where", ["global", "per-database"])
def test_untrusted_ca(cratebouncer, upstream, pg, where):
    """A server certificate from a CA we do not trust is refused with 08006 and OpenSSL's
    reason, whether the wrong CA is the global server_tls_ca_file or a pool's sslrootcert."""
    if where == "global":
        settings = {"server_tls_ca_file": pg.other_ca}
        dbs = {"bad": upstream(), "good": upstream(sslrootcert=pg.ca)}
    else:
        settings = {}
        dbs = {"bad": upstream(sslrootcert=pg.other_ca), "good": upstream()}
    cb = cratebouncer(settings={**settings, "server_login_retry": 15}, databases=dbs)
    check_refusal(cb, 'server certificate of "127.0.0.1" failed verification: '
                      "unable to get local issuer certificate", "08006", "failed verification")


def test_wrong_host_name(cratebouncer, upstream):
    """Connecting to 127.0.0.2, which the certificate does not name, fails verify-full."""
    cb = cratebouncer(databases={"bad": upstream(host="127.0.0.2"), "good": upstream()})
    check_refusal(cb, 'server certificate of "127.0.0.2" failed verification: '
                      "IP address mismatch", "08006", "failed verification")


def test_verify_ca_does_not_check_name(cratebouncer, upstream):
    """sslmode=verify-ca checks the chain only, so the name mismatch of 127.0.0.2 is accepted."""
    cb = cratebouncer(databases={"doc": upstream(host="127.0.0.2", sslmode="verify-ca")})
    with cb.connect() as conn:
        assert conn.execute("select ssl from pg_stat_ssl "
                            "where pid = pg_backend_pid()").fetchone() == (True,)


@pytest.mark.parametrize("user", ["crate", "md5user", "scramuser"])
def test_wrong_upstream_password(cratebouncer, upstream, pg, user):
    """A wrong injected password is reported with the upstream's message and 28P01."""
    cb = cratebouncer(databases={"bad": upstream(user=user, password="wrong"),
                                 "good": upstream()})
    check_refusal(cb, f'upstream login to 127.0.0.1:{pg.port} as "{user}" failed: '
                      f'password authentication failed for user "{user}"', "28P01",
                  "password authentication failed")


def test_upstream_down(cratebouncer, upstream):
    """An upstream port where nothing listens gives 08006 'cannot connect to upstream'."""
    dead = free_port()
    cb = cratebouncer(databases={"bad": upstream(port=dead), "good": upstream()})
    check_refusal(cb, f"cannot connect to upstream 127.0.0.1:{dead}: Connection refused",
                  "08006", "Connection refused")


def test_upstream_requires_tls(cratebouncer, upstream, pg):
    """With sslmode=disable the upstream (TLS-only, like CrateDB Cloud) rejects the login; the
    client sees the upstream's reason."""
    cb = cratebouncer(databases={"bad": upstream(sslmode="disable"), "good": upstream()})
    check_refusal(cb, f'upstream login to 127.0.0.1:{pg.port} as "crate" failed: '
                      "pg_hba.conf rejects connection", "28000", "pg_hba.conf rejects")
