"""The upstream itself behaves like CrateDB Cloud, checked with psql directly (no cratebouncer):
the other tests' refusals mean something only if these hold."""

import pytest

from helpers import psql


def direct(pg, user="crate", host="127.0.0.1", sslmode="verify-full", ca=None):
    return (f"host={host} port={pg.port} dbname=doc user={user} sslmode={sslmode} "
            f"sslrootcert={ca or pg.ca}")


@pytest.mark.parametrize("user", ["crate", "md5user", "scramuser"])
def test_direct_tls_login(pg, user):
    """Each upstream user logs in over verified TLS with password 'secret'."""
    res = psql(direct(pg, user), "select current_user, ssl from pg_stat_ssl "
                                 "where pid = pg_backend_pid()", password="secret")
    assert res.stdout.strip() == f"{user}|t"


@pytest.mark.parametrize("user,method", [("crate", "password"), ("md5user", "md5"),
                                         ("scramuser", "scram-sha-256")])
def test_upstream_auth_methods(pg, user, method):
    """pg_hba asks each user for the password method the upstream-login tests rely on."""
    rows = pg.sql("select auth_method from pg_hba_file_rules "
                  "where type = 'hostssl' and %s = any(user_name)", (user,))
    assert rows == [(method,)]


def test_plaintext_tcp_rejected(pg):
    """TCP without TLS is refused by the upstream (hostnossl ... reject)."""
    res = psql(direct(pg, sslmode="disable"), "select 1", password="secret", check=False)
    assert res.returncode != 0
    assert "no encryption" in res.stderr


def test_wrong_host_name_fails_verification(pg):
    """127.0.0.2 is not in the certificate, so verify-full fails there."""
    res = psql(direct(pg, host="127.0.0.2"), "select 1", password="secret", check=False)
    assert res.returncode != 0
    assert "does not match host name" in res.stderr


def test_other_ca_fails_verification(pg):
    """The unrelated CA does not verify the server certificate."""
    res = psql(direct(pg, ca=pg.other_ca), "select 1", password="secret", check=False)
    assert res.returncode != 0
    assert "certificate verify failed" in res.stderr


def test_superuser_over_socket(pg):
    """The tests' own checks run as superuser over the Unix socket."""
    assert pg.sql("select current_setting('is_superuser')") == [("on",)]
