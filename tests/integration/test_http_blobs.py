"""Blobs through the HTTP side: PUT/GET/HEAD/DELETE pass; a PUT goes as the client sent it;
and a 307 to the node holding the blob (https://<its IP>:<port>, as CrateDB redirects) is
followed by cratebouncer, with the certificate checked against the configured cluster host
name, or answered with an error saying why it cannot be. The local client never sees the
cluster's internal address."""

import gzip
import hashlib
import http.client
import json
import os
import socket
import time

from helpers import wait_until
from test_http import http_section


def expect_put(port, path, data, wait=True):
    """A PUT with Expect: 100-continue over a raw socket: the body waits for the 100 (unless
    not wait). (interim status or None, final status, final body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    interim = None
    f = s.makefile("rb")
    if wait:
        s.sendall(head)
        line = f.readline()
        while f.readline() not in (b"\r\n", b""):
            pass
        interim = int(line.split()[1])
        if interim != 100:
            return None, interim, _body(f)
        s.sendall(data)
    else:
        s.sendall(head + data)
    line = f.readline()
    while line.startswith(b"HTTP/1.1 100"):
        f.readline()
        line = f.readline()
    status = int(line.split()[1])
    return interim, status, _body(f)


def _body(f):
    n = 0
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.decode().partition(":")
        if k.strip().lower() == "content-length":
            n = int(v)
    return f.read(n)


def test_blob_roundtrip_and_redirect(cratebouncer, crate_http_factory):
    # the upstream (configured as localhost) redirects to itself by IP, as a CrateDB node
    # redirects to another's publish address: GET, HEAD, and a PUT with Expect
    crate = crate_http_factory(redirect_blobs_to="https://127.0.0.1:{port}")
    sec = http_section(crate, upstream=f"https://localhost:{crate.port}")
    b = cratebouncer(args=("-v", "-v"), sections={"http": sec})
    port = sec["listen_port"]
    data = os.urandom(300000)
    digest = hashlib.sha1(data).hexdigest()
    path = f"/_blobs/myblobs/{digest}"
    # a PUT with Expect is redirected; cratebouncer follows, and the 100 comes from the node
    assert expect_put(port, path, data)[:2] == (100, 201)
    assert "certificate checked for localhost" in b.log_text()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and hashlib.sha1(body).hexdigest() == digest
    assert "Location" not in dict(r.getheaders())
    c.request("HEAD", path)
    r = c.getresponse()
    r.read()
    assert r.status == 200
    # a PUT without Expect goes as sent (no Expect added) and is stored where it arrives
    c.request("PUT", path, data)
    r = c.getresponse()
    r.read()
    assert r.status == 409
    c.request("DELETE", path)
    r = c.getresponse()
    r.read()
    assert r.status == 204
    c.request("PUT", path, data)
    r = c.getresponse()
    r.read()
    assert r.status == 201
    c.request("GET", path)
    r = c.getresponse()
    assert r.status == 200 and r.read() == data


def test_blob_redirect_that_cannot_be_followed(cratebouncer, crate_http_factory):
    crate = crate_http_factory(redirect_blobs_to="https://127.0.0.1:{port}")
    sec = http_section(crate, upstream=f"https://localhost:{crate.port}")
    b = cratebouncer(sections={"http": sec})
    data = b"x" * 1000
    path = f"/_blobs/myblobs/{hashlib.sha1(data).hexdigest()}"
    # the body came with the head, before any 100: it went to the first node already
    _, status, body = expect_put(sec["listen_port"], path, data, wait=False)
    err = json.loads(body)["error"]
    assert status == 502 and err["code"] == 5023, body
    assert "cannot follow" in err["message"] and "body had gone" in err["message"]
    # a redirect to plain http:// would carry the credentials in the clear
    plain = crate_http_factory(redirect_blobs_to="http://127.0.0.1:{port}")
    sec2 = http_section(plain, upstream=f"https://localhost:{plain.port}")
    cratebouncer(sections={"http": sec2})
    c = http.client.HTTPConnection("127.0.0.1", sec2["listen_port"], timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    err = json.loads(r.read())["error"]
    assert r.status == 502 and "plain http://" in err["message"], err
    assert "secret" not in b.log_text()


def test_privilege_401_passes_and_login_401_is_the_config(cratebouncer, crate_http, pg):
    pg.sql("DROP TABLE IF EXISTS doc.cb_secret_t")
    pg.sql("CREATE TABLE doc.cb_secret_t (v int)")
    pg.sql("REVOKE ALL ON doc.cb_secret_t FROM PUBLIC")
    sec = http_section(crate_http)
    b = cratebouncer(sections={"http": sec})
    c = http.client.HTTPConnection("127.0.0.1", sec["listen_port"], timeout=10)
    hdr = {"Content-Type": "application/json"}
    c.request("POST", "/_sql", json.dumps({"stmt": "select * from doc.cb_secret_t"}), hdr)
    r = c.getresponse()
    err = json.loads(r.read())["error"]
    # CrateDB's own 401 JSON (4011, a missing privilege) reaches the client as it is
    assert r.status == 401 and err["code"] == 4011 and "cratebouncer" not in err["message"]
    assert "refused the credentials" not in b.log_text()
    # ... and the connection goes on
    c.request("POST", "/_sql", json.dumps({"stmt": "select 1"}), hdr)
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read())["rows"] == [[1]]
    # a failed login (plain 401 with WWW-Authenticate) is the injected credentials
    bad = cratebouncer(sections={"http": http_section(crate_http, password="wrong")})
    c2 = http.client.HTTPConnection("127.0.0.1", bad.sections["http"]["listen_port"], timeout=10)
    c2.request("POST", "/_sql", json.dumps({"stmt": "select 1"}), hdr)
    r = c2.getresponse()
    err = json.loads(r.read())["error"]
    assert r.status == 401 and "cratebouncer config needs fixing" in err["message"]
    assert "refused the credentials" in bad.log_text()


def test_bearer_token_file_is_read_again_when_it_changes(cratebouncer, crate_http, tmp_path):
    from crate_http import make_jwt
    tok = tmp_path / "token"
    good = make_jwt(crate_http.jwt_secret, {"username": crate_http.user})
    tok.write_text(make_jwt("not-the-secret", {"username": crate_http.user}) + "\n")
    sec = http_section(crate_http, user=None, password=None, bearer_token_file=str(tok))
    b = cratebouncer(sections={"http": sec})
    hdr = {"Content-Type": "application/json"}

    def status():
        c = http.client.HTTPConnection("127.0.0.1", sec["listen_port"], timeout=10)
        c.request("POST", "/_sql", json.dumps({"stmt": "select 1"}), hdr)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status

    assert status() == 401
    # replaced by a rename, as a token refresher does
    new = tmp_path / "token.new"
    new.write_text(good + "\n")
    os.rename(new, tok)
    wait_until(lambda: status() == 200, 10, "the new token injected")
    assert "changed: the new token is injected" in b.log_text()
    assert good not in b.log_text()
    # rewritten in place with an expired-by-signature token: refused again
    time.sleep(0.05)
    tok.write_text(make_jwt("other", {"username": crate_http.user}) + "\n")
    wait_until(lambda: status() == 401, 10, "the rewritten token injected")


def test_sql_body_limit_after_decompression(cratebouncer, crate_http):
    sec = http_section(crate_http, max_sql_body_mb=1)
    cratebouncer(sections={"http": sec})
    stmt = "select 1" + " " * (2 * 1024 * 1024)
    body = gzip.compress(json.dumps({"stmt": stmt}).encode())
    assert len(body) < 64 * 1024
    hdr = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    c = http.client.HTTPConnection("127.0.0.1", sec["listen_port"], timeout=10)
    c.request("POST", "/_sql", body, hdr)
    r = c.getresponse()
    err = json.loads(r.read())["error"]
    assert r.status == 413 and "after decompression" in err["message"], err
    # under the limit inflated, it passes
    c = http.client.HTTPConnection("127.0.0.1", sec["listen_port"], timeout=10)
    small = gzip.compress(json.dumps({"stmt": "select 1" + " " * 500000}).encode())
    c.request("POST", "/_sql", small, hdr)
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read())["rows"] == [[1]]


def test_http_side_in_admin_console_and_metrics(cratebouncer, crate_http):
    import json
    import shutil
    import subprocess

    from helpers import free_port
    admin_port = free_port()
    sec = http_section(crate_http)
    b = cratebouncer(settings={"admin_users": "crate"},
                     sections={"http": sec, "admin": {"listen_port": admin_port}})
    c = http.client.HTTPConnection("127.0.0.1", sec["listen_port"], timeout=10)
    for i in range(3):
        c.request("POST", "/_sql", json.dumps({"stmt": "select ?", "args": [i]}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["rows"] == [[i]]
    c.request("POST", "/_sql", json.dumps({"stmt": "select * from no_such_table"}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    assert r.status == 404
    out = b.psql("SHOW HTTP", dbname="cratebouncer").stdout
    assert f"127.0.0.1:{sec['listen_port']}" in out and "|4|3|0|1|0|" in out.replace(" ", ""), out
    out = b.psql("SHOW HTTP_POOLS", dbname="cratebouncer").stdout
    assert "127.0.0.1:" in out and "crate" in out
    a = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    a.request("GET", "/metrics")
    text = a.getresponse().read().decode()
    assert 'cratebouncer_http_responses_total{upstream="' in text
    assert 'class="2xx"} 3' in text and 'class="4xx"} 1' in text
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True)
        assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p
    a.request("GET", "/stats")
    st = json.loads(a.getresponse().read())
    assert st["http"][0]["responses"]["2xx"] == 3 and st["http"][0]["upstream_up"] is True


def test_http_side_survives_reload(cratebouncer, crate_http):
    import json
    import signal
    import time
    sec = http_section(crate_http, header_timeout="5s", queue_timeout="3s")
    b = cratebouncer(sections={"http": sec})
    c = http.client.HTTPConnection("127.0.0.1", sec["listen_port"], timeout=10)
    for round_ in range(3):
        b.proc.send_signal(signal.SIGHUP)
        time.sleep(0.6)  # a few timer ticks after the old config is gone
        c.request("POST", "/_sql", json.dumps({"stmt": "select ?", "args": [round_]}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["rows"] == [[round_]]
    assert "reload" in b.log_text().lower()
