"""Upstream TLS session resumption (server_tls_session_reuse): a reconnect to the CrateDB
stand-ins resumes the session of an earlier verified connection (SHOW SERVERS' tls column,
SHOW HTTP's counters), 0 turns it off (also by SET), a session is never offered to another host
name, sslmode or CA file, and a reload that changes the CA still verifies. PostgreSQL turns
tickets off, so its servers never resume.

The stand-ins are Python's ssl (OpenSSL) servers, which issue TLS 1.3 tickets after a full
handshake as CrateDB's Java TLS does."""

import http.client
import json
import threading
import time

import psycopg
import pytest

from crate_targets import StandIn, crate_standin  # noqa: F401 (fixture)
from helpers import TIMEOUT, console, first_error, show, wait_until
from test_http import proxy  # noqa: F401 (fixture)

CONSOLE = {"admin_users": "cbadmin"}


def standin_db(st, pg, **kw):
    e = {"host": st.host, "port": st.port, "dbname": "doc", "user": "crate",
         "password": pg.password, "sslrootcert": st.ca, "pool_size": 2}
    e.update(kw)
    return e


def fresh_server_tls(cb, adm, dbname="doc"):
    """Logs in through a new upstream connection (after RECONNECT closed the old ones) and
    returns that server's tls column."""
    adm.execute(f"RECONNECT {dbname}")
    wait_until(lambda: not [s for s in show(adm, "SERVERS") if s["database"] == dbname], 5,
               f"{dbname}'s servers closed by RECONNECT")
    with cb.connect(dbname=dbname) as c:
        assert c.execute("select 'through'").fetchone() == ("through",)
        servers = [s for s in show(adm, "SERVERS") if s["database"] == dbname]
    assert len(servers) == 1, servers
    return servers[0]["tls"]


def test_reconnect_resumes(cratebouncer, crate_standin, pg):
    """The first server does a full handshake; each one after RECONNECT resumes, and the
    session is verified TLS 1.2 or later with a cipher named."""
    cb = cratebouncer(settings=CONSOLE, databases={"doc": standin_db(crate_standin, pg)})
    adm = console(cb)
    first = fresh_server_tls(cb, adm)
    assert first.startswith("TLSv1.") and "/resumed" not in first, first
    for _ in range(3):
        tls = fresh_server_tls(cb, adm)
        assert tls.endswith("/resumed"), tls
        assert tls.split("/")[:2] == first.split("/")[:2], (tls, first)


def test_refill_of_a_warm_pool_resumes(cratebouncer, crate_standin, pg):
    """min_pool_size opens several servers at once: after RECONNECT the janitor's refill
    resumes them from the tickets the first ones got."""
    db = standin_db(crate_standin, pg, pool_size=4, min_pool_size=3)
    cb = cratebouncer(settings=CONSOLE, databases={"doc": db})
    adm = console(cb)
    wait_until(lambda: len(show(adm, "SERVERS")) == 3, 10, "3 warm servers")
    # the first three connected at once, before any ticket existed
    for _ in range(2):
        adm.execute("RECONNECT doc")
        servers = wait_until(
            lambda: (lambda s: s if len(s) == 3 and all(r["state"] == "idle" for r in s) and
                     all(r["tls"] != "TLS" for r in s) else None)(show(adm, "SERVERS")),
            15, "3 servers refilled")
    assert all(s["tls"].endswith("/resumed") for s in servers), servers


def test_reuse_off(cratebouncer, crate_standin, pg):
    """server_tls_session_reuse = 0 does full handshakes only; SET turns it back on."""
    cb = cratebouncer(settings={**CONSOLE, "server_tls_session_reuse": 0},
                      databases={"doc": standin_db(crate_standin, pg)})
    adm = console(cb)
    for _ in range(3):
        tls = fresh_server_tls(cb, adm)
        assert tls.startswith("TLSv1.") and "/resumed" not in tls, tls
    adm.execute("SET server_tls_session_reuse = 1")
    assert "/resumed" not in fresh_server_tls(cb, adm), "no ticket was kept while off"
    assert fresh_server_tls(cb, adm).endswith("/resumed")


def test_session_stays_with_its_host_name(cratebouncer, crate_standin, pg):
    """A session got for 127.0.0.1 is not offered to the same upstream under the name
    localhost (the cache key is the name verified, the host connected to and the port)."""
    cb = cratebouncer(settings=CONSOLE, databases={
        "ip": standin_db(crate_standin, pg), "name": standin_db(crate_standin, pg, host="localhost")})
    adm = console(cb)
    fresh_server_tls(cb, adm, "ip")
    assert fresh_server_tls(cb, adm, "ip").endswith("/resumed")
    name = fresh_server_tls(cb, adm, "name")
    assert "/resumed" not in name, name
    assert fresh_server_tls(cb, adm, "name").endswith("/resumed")


def test_session_never_skips_verification(cratebouncer, crate_standin, pg):
    """Sessions of an unverified (sslmode=require) and of a verified pool to the same upstream
    do not let a pool whose CA does not sign the certificate in: it fails verification."""
    cb = cratebouncer(settings={**CONSOLE, "server_login_retry": 0}, databases={
        "req": standin_db(crate_standin, pg, sslmode="require"),
        "good": standin_db(crate_standin, pg),
        "bad": standin_db(crate_standin, pg, sslrootcert=pg.other_ca)})
    adm = console(cb)
    for db in ("req", "good"):
        fresh_server_tls(cb, adm, db)
        assert fresh_server_tls(cb, adm, db).endswith("/resumed")
    err = first_error(cb.host, cb.port, database="bad")
    assert err.sqlstate == "08006" and "failed verification" in err.message, err


def test_reload_to_another_ca_verifies_again(cratebouncer, crate_standin, pg):
    """The same entry reloaded with a CA that does not sign the certificate: the next
    connection is refused, the cached session notwithstanding."""
    cb = cratebouncer(settings={**CONSOLE, "server_login_retry": 0},
                      databases={"doc": standin_db(crate_standin, pg)})
    adm = console(cb)
    fresh_server_tls(cb, adm)
    assert fresh_server_tls(cb, adm).endswith("/resumed")
    cb.databases["doc"] = standin_db(crate_standin, pg, sslrootcert=pg.other_ca)
    cb.write_config()
    adm.execute("RELOAD")
    adm.execute("RECONNECT doc")
    wait_until(lambda: not show(adm, "SERVERS"), 5, "servers closed by RECONNECT")
    err = first_error(cb.host, cb.port)
    assert err.sqlstate == "08006" and "failed verification" in err.message, err


@pytest.fixture(scope="module")
def tls12_standin(pg):
    st = StandIn(pg, "--tls-max", "1.2")
    yield st
    st.stop()


def test_tls12_session_survives_a_cancel(cratebouncer, tls12_standin, pg):
    """A TLS 1.2 upstream resumes by session id, one session for every connection to it,
    cancel requests too. A cancel connection closes with close_notify, or OpenSSL would mark
    the shared session not resumable and the next server would pay a full handshake."""
    cb = cratebouncer(settings=CONSOLE, databases={"doc": standin_db(tls12_standin, pg)})
    adm = console(cb)
    first = fresh_server_tls(cb, adm)
    assert first.startswith("TLSv1.2/") and "/resumed" not in first, first
    assert fresh_server_tls(cb, adm).endswith("/resumed")
    for _ in range(2):
        with psycopg.connect(cb.conninfo(dbname="doc"), autocommit=True) as c:
            t = threading.Timer(1.0, c.cancel)
            t.start()
            t0 = time.monotonic()
            with pytest.raises(psycopg.Error) as e:
                c.execute("SELECT count(*) FROM generate_series(1, 2000000000)")
            t.join()
            assert time.monotonic() - t0 < TIMEOUT
            assert e.value.sqlstate in ("XX000", "57014"), e.value
        tls = fresh_server_tls(cb, adm)
        assert tls.startswith("TLSv1.2/") and tls.endswith("/resumed"), tls


def test_postgresql_never_resumes(cratebouncer, upstream):
    """PostgreSQL sets SSL_OP_NO_TICKET and no session cache: every server is a full
    handshake, and nothing breaks for offering none."""
    cb = cratebouncer(settings=CONSOLE, databases={"doc": upstream(pool_size=2)})
    adm = console(cb)
    for _ in range(3):
        tls = fresh_server_tls(cb, adm)
        assert tls.startswith("TLSv1.") and "/resumed" not in tls, tls


def http_counters(adm):
    row = show(adm, "HTTP")[0]
    return row["tls_handshakes"], row["tls_resumed"]


@pytest.mark.parametrize("reuse", [1, 0])
def test_http_upstream_resumes(proxy, reuse):  # noqa: F811
    """The HTTP side's upstream connections, closed after upstream_idle_timeout, resume on the
    next request (counted in SHOW HTTP), unless server_tls_session_reuse = 0."""
    b = proxy(settings={**CONSOLE, "server_tls_session_reuse": reuse}, upstream_idle_timeout=0.2)
    adm = console(b)
    for i in range(4):
        c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=TIMEOUT)
        c.request("POST", "/_sql", body=json.dumps({"stmt": "SELECT name FROM sys.cluster"}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200, r.read()
        r.read()
        c.close()
        wait_until(lambda: show(adm, "HTTP_POOLS")[0]["sv_idle"] == 0, 5,
                   "the idle upstream connection closed")
        time.sleep(0.05)
    handshakes, resumed = http_counters(adm)
    assert handshakes == 4, handshakes
    assert resumed == (3 if reuse else 0), (handshakes, resumed)
