"""How clients authenticate to cratebouncer itself: trust, plain / md5 / scram-sha-256 against
the auth_file (secrets stored in clear, as md5 or as SCRAM), and peer on the Unix socket.
Whatever the client method, the upstream session is the injected user."""

import os
import pwd

import psycopg
import pytest

from helpers import RawConn, login_error, md5_secret, scram_secret

PASSWORD = "alice-pw"
STORED = {
    "plain": lambda: PASSWORD,
    "md5": lambda: md5_secret("alice", PASSWORD),
    "scram": lambda: scram_secret(PASSWORD),
}
# Which stored forms each auth_type can check, and the request code the client must see
# (3 cleartext password, 5 md5, 10 SASL).
WORKS = [
    ("plain", "plain", 3), ("plain", "md5", 3), ("plain", "scram", 3),
    ("md5", "plain", 5), ("md5", "md5", 5),
    ("scram-sha-256", "plain", 10), ("scram-sha-256", "scram", 10),
]


def test_trust_needs_no_password(cratebouncer):
    """auth_type=trust lets any user name in without asking for a password."""
    cb = cratebouncer(settings={"auth_type": "trust"})
    raw = RawConn(cb.host, cb.port).login("anyone", "doc")
    try:
        assert raw.auth_requests == []
        assert raw.query("select current_user") == [["crate"]]
    finally:
        raw.close()


@pytest.mark.parametrize("auth_type,stored,request_code", WORKS)
def test_auth_file_password(cratebouncer, auth_type, stored, request_code):
    """The right password logs in with the auth_type's method; the upstream user is still the
    injected one."""
    cb = cratebouncer(settings={"auth_type": auth_type}, users={"alice": STORED[stored]()})
    with cb.connect(user="alice", password=PASSWORD) as conn:
        assert conn.execute("select current_user").fetchone() == ("crate",)
    raw = RawConn(cb.host, cb.port).login("alice", "doc", PASSWORD)
    try:
        assert raw.auth_requests == [request_code]
        assert raw.query("select 1") == [["1"]]
    finally:
        raw.close()


@pytest.mark.parametrize("auth_type,stored,request_code", WORKS)
def test_auth_file_wrong_password(cratebouncer, auth_type, stored, request_code):
    """A wrong password is refused with 28P01 'password authentication failed for user'."""
    cb = cratebouncer(settings={"auth_type": auth_type}, users={"alice": STORED[stored]()})
    err = login_error(cb.host, cb.port, user="alice", password="not-" + PASSWORD)
    assert err.sqlstate == "28P01"
    assert 'password authentication failed for user "alice"' in err.message
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        cb.connect(user="alice", password="not-" + PASSWORD)


@pytest.mark.parametrize("auth_type", ["plain", "md5", "scram-sha-256"])
def test_unknown_user_refused(cratebouncer, auth_type):
    """A user missing from the auth_file gets the same 28P01 as a wrong password."""
    cb = cratebouncer(settings={"auth_type": auth_type}, users={"alice": PASSWORD})
    err = login_error(cb.host, cb.port, user="mallory", password=PASSWORD)
    assert err.sqlstate == "28P01"
    assert 'password authentication failed for user "mallory"' in err.message


def test_scram_cannot_use_md5_secret(cratebouncer):
    """scram-sha-256 cannot check a password stored as md5: the login is refused."""
    cb = cratebouncer(settings={"auth_type": "scram-sha-256"},
                      users={"alice": STORED["md5"]()})
    login_error(cb.host, cb.port, user="alice", password=PASSWORD)


def _os_user():
    return pwd.getpwuid(os.geteuid()).pw_name


def test_peer_same_os_user(cratebouncer):
    """auth_type=peer admits a Unix-socket client whose OS user is the requested user."""
    cb = cratebouncer(settings={"auth_type": "peer"})
    with cb.connect(host=cb.sockdir, user=_os_user()) as conn:
        assert conn.execute("select current_user").fetchone() == ("crate",)


def test_peer_other_user_refused(cratebouncer):
    """auth_type=peer refuses another user name with 28000 'peer authentication failed'."""
    cb = cratebouncer(settings={"auth_type": "peer"})
    other = "not_" + _os_user()
    err = login_error(cb.sockdir, cb.port, user=other)
    assert err.sqlstate == "28000"
    assert f'peer authentication failed for user "{other}"' in err.message


def test_peer_refuses_tcp(cratebouncer):
    """auth_type=peer has nothing to check on TCP: such clients are refused."""
    cb = cratebouncer(settings={"auth_type": "peer"})
    login_error(cb.host, cb.port, user=_os_user())
