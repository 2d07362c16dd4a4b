"""tests/support/crate_http.py, the CrateDB-shaped HTTPS upstream, tested directly with urllib3 and
httpx over TLS verified against pgenv's CA: what the HTTP-side tests of cratebouncer rely on."""

import base64
import gzip
import hashlib
import json
import os
import socket
import ssl
import sys
import time
import uuid
import zlib

import pytest

urllib3 = pytest.importorskip("urllib3", reason="Debian package python3-urllib3")
httpx = pytest.importorskip("httpx", reason="Debian package python3-httpx")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support"))
from crate_http import make_jwt  # noqa: E402

from helpers import TIMEOUT  # noqa: E402


def pool(c, **kw):
    """A urllib3 pool of at most one connection to c (so requests share a TCP connection)."""
    kw.setdefault("maxsize", 1)
    kw.setdefault("block", True)
    headers = {"Authorization": basic(c.user, c.password), **kw.pop("headers", {})}
    return urllib3.HTTPSConnectionPool(c.host, c.port, cert_reqs="CERT_REQUIRED", ca_certs=c.ca,
                                       headers=headers, timeout=TIMEOUT, retries=False, **kw)


def client(c, **kw):
    """An httpx client with one keep-alive connection to c."""
    kw.setdefault("auth", c.auth)
    return httpx.Client(base_url=c.url, verify=c.ca, timeout=TIMEOUT,
                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                        **kw)


def rq(p, method, url, headers=None, **kw):
    """p.request with the pool's headers (authorization) kept under per-request headers."""
    return p.request(method, url, headers={**p.headers, **(headers or {})}, **kw)


def sql(p, stmt, args=None, bulk_args=None, query="", headers=None):
    """POST /_sql through urllib3 pool p: (status, decoded JSON, response)."""
    body = {"stmt": stmt}
    if args is not None:
        body["args"] = args
    if bulk_args is not None:
        body["bulk_args"] = bulk_args
    r = rq(p, "POST", "/_sql" + query, body=json.dumps(body).encode(),
                  headers={"Content-Type": "application/json", **(headers or {})})
    return r.status, json.loads(r.data), r


def tls_socket(c):
    ctx = ssl.create_default_context(cafile=c.ca)
    raw = socket.create_connection((c.host, c.port), timeout=TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname=c.host)


def read_response(s):
    """One response from socket s: (status line, headers dict lower-cased, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        if not data:
            raise AssertionError(f"connection closed before a response: {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        data = s.recv(65536)
        if not data:
            break
        rest += data
    return lines[0], headers, rest[:n]


def closed_by_peer(s, wait=TIMEOUT):
    """Whether the server closes s (EOF or reset) within wait seconds."""
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True
    except (socket.timeout, TimeoutError):
        return False


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def table_name():
    return "t_" + uuid.uuid4().hex[:10]


# ---------------------------------------------------------------------------------------------
# node info, results, args, types


def test_node_info(crate_http):
    p = pool(crate_http)
    r = rq(p, "GET", "/")
    assert r.status == 200
    info = json.loads(r.data)
    assert info["ok"] is True and info["status"] == 200
    assert info["name"] and info["cluster_name"] == "crate"
    assert info["version"]["number"].startswith("5.")
    # the certificate also covers localhost (what --redirect-blobs-to relies on)
    with httpx.Client(verify=crate_http.ca, auth=crate_http.auth, timeout=TIMEOUT) as h:
        assert h.get(f"https://localhost:{crate_http.port}/").json()["ok"] is True


def test_results_args_and_types(crate_http):
    p = pool(crate_http)
    status, res, r = sql(p, "SELECT 1 AS a, ? AS b, $1 || ? AS c, '50%' AS pct, "
                            "1.5::numeric AS n, true AS t, 2.5::float8 AS d, "
                            "10000000000::bigint AS big, "
                            "'2021-01-02 03:04:05.678+00'::timestamptz AS ts, "
                            "'{\"k\": [1, 2]}'::jsonb AS obj, ARRAY[1, 2] AS arr",
                         args=["x", "y"], query="?types")
    assert status == 200, res
    assert res["cols"] == ["a", "b", "c", "pct", "n", "t", "d", "big", "ts", "obj", "arr"]
    assert res["rows"] == [[1, "x", "xy", "50%", 1.5, True, 2.5, 10000000000, 1609556645678,
                            {"k": [1, 2]}, [1, 2]]]
    assert res["rowcount"] == 1
    assert isinstance(res["duration"], (int, float))
    assert res["col_types"] == [9, 4, 4, 4, 22, 3, 6, 10, 11, 12, [100, 9]]
    # without ?types: no col_types
    status, res, _ = sql(p, "SELECT 'a' AS s")
    assert status == 200 and "col_types" not in res and res["rows"] == [["a"]]
    # a literal ? or $1 inside quotes is not a placeholder
    status, res, _ = sql(p, "SELECT '?$1' AS q, ? AS v", args=[7])
    assert res["rows"] == [["?$1", 7]], res


def test_dml_and_bulk_args(crate_http):
    p = pool(crate_http)
    t = table_name()
    status, res, _ = sql(p, f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    assert status == 200 and res["cols"] == [] and res["rowcount"] == 1, res
    status, res, _ = sql(p, f"INSERT INTO {t} VALUES (?, ?)", args=[1, "one"])
    assert status == 200 and res["rowcount"] == 1
    status, res, _ = sql(p, f"INSERT INTO {t} VALUES (?, ?)",
                         bulk_args=[[2, "two"], [1, "dup"], [3, "three"]])
    assert status == 200, res
    assert [x["rowcount"] for x in res["results"]] == [1, -2, 1]
    assert res["results"][1]["error"]["code"] == 4091
    assert "error" not in res["results"][0]
    status, res, _ = sql(p, f"UPDATE {t} SET v = 'x' WHERE id > ?", args=[1])
    assert res["rowcount"] == 2
    status, res, _ = sql(p, f"SELECT id, v FROM {t} ORDER BY id")
    assert res["rows"] == [[1, "one"], [2, "x"], [3, "x"]] and res["rowcount"] == 3
    # a statement that is wrong in itself fails the whole bulk request
    status, res, _ = sql(p, f"INSERT INTO nope_{t} VALUES (?)", bulk_args=[[1], [2]])
    assert status == 404 and res["error"]["code"] == 4041
    status, res, _ = sql(p, f"DROP TABLE {t}")
    assert status == 200


def test_errors_and_status_codes(crate_http):
    p = pool(crate_http)
    cases = [
        ("SELEC 1", 400, 4000),
        ("SELECT * FROM no_such_table", 404, 4041),
        ("SELECT no_such_column FROM (SELECT 1 AS a) s", 404, 4043),
        ("SELECT * FROM no_such_schema.t", 404, 4041),
        ("DO $$ BEGIN RAISE EXCEPTION 'boom'; END $$", 500, 5000),
    ]
    for stmt, want_status, want_code in cases:
        status, res, r = sql(p, stmt)
        assert (status, res["error"]["code"]) == (want_status, want_code), (stmt, res)
        assert isinstance(res["error"]["message"], str) and res["error"]["message"]
        assert "error_trace" not in res
        assert r.headers["Content-Type"].startswith("application/json")
    status, res, _ = sql(p, "SELEC 1", query="?error_trace=true")
    assert status == 400 and "error_trace" in res
    # the connection survived every error
    assert p.num_connections == 1
    # a body that is not JSON, args and bulk_args together, placeholders without values
    r = rq(p, "POST", "/_sql", body=b"{not json")
    assert r.status == 400 and json.loads(r.data)["error"]["code"] == 4000
    status, res, _ = sql(p, "SELECT ?", args=[1], bulk_args=[[1]])
    assert status == 400 and res["error"]["code"] == 4000
    status, res, _ = sql(p, "SELECT ?, ?", args=[1])
    assert status == 400 and res["error"]["code"] == 4000
    r = rq(p, "GET", "/no/such/path")
    assert r.status == 404


# ---------------------------------------------------------------------------------------------
# authentication


def test_failed_login_is_401_and_closes(crate_http):
    body = b'{"stmt": "SELECT 1"}'
    # CrateDB's answers (seen on a real CrateDB): plain text without a Content-Type, then the
    # connection is closed; a malformed Authorization header is a 500
    no_entry = (b'No valid auth.host_based.config entry found for host "127.0.0.1", user '
                b'"%s", protocol "http". Did you enable TLS in your client?\n')
    cases = [
        (basic("crate", "wrong"), 401, b'password authentication failed for user "crate"\n'),
        (basic("other", "secret"), 401, b'password authentication failed for user "other"\n'),
        (None, 401, no_entry % b"crate"),  # X-User is not read: CrateDB's default user
        (basic("crate", ""), 401, no_entry % b"crate"),
        ("Bearer not.a.jwt", 500, b"The input is not a valid base 64 encoded string."),
        ("Digest abc", 500, b"Only basic or bearer HTTP Authentication schemes are allowed."),
    ]
    for auth, want_status, want_text in cases:
        s = tls_socket(crate_http)
        hdr = f"Authorization: {auth}\r\n" if auth else "X-User: crate\r\n"
        s.sendall(f"POST /_sql HTTP/1.1\r\nHost: x\r\n{hdr}Content-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        line, headers, text = read_response(s)
        assert line.startswith(f"HTTP/1.1 {want_status} "), (auth, line)
        if want_status == 401:
            assert headers["www-authenticate"] == 'Basic realm="CrateDB Authenticator"'
        else:
            assert "www-authenticate" not in headers
        assert "content-type" not in headers, headers
        assert text == want_text, (auth, text)
        assert closed_by_peer(s), auth
        s.close()
    # Expect: 100-continue and a bad password: 401 without a 100 Continue first, then closed
    s = tls_socket(crate_http)
    s.sendall(f"PUT /_blobs/b/{'0' * 40} HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: {basic('crate', 'wrong')}\r\nExpect: 100-continue\r\n"
              "Content-Length: 1000000\r\n\r\n".encode())
    line, headers, _ = read_response(s)
    assert line.startswith("HTTP/1.1 401")
    assert closed_by_peer(s)
    s.close()
    # urllib3 sees the same 401 (CrateDB closes without a Connection header)
    p = pool(crate_http, headers={"Authorization": basic("crate", "wrong")})
    r = rq(p, "GET", "/")
    assert r.status == 401 and "Connection" not in r.headers


def test_jwt_bearer(crate_http):
    good = make_jwt(crate_http.jwt_secret, {"username": "crate", "exp": time.time() + 600})
    wrong_secret = make_jwt("other", {"username": "crate"})
    wrong_user = make_jwt(crate_http.jwt_secret, {"username": "someone"})
    expired = make_jwt(crate_http.jwt_secret, {"username": "crate", "exp": time.time() - 10})
    with httpx.Client(verify=crate_http.ca, timeout=TIMEOUT, base_url=crate_http.url) as h:
        r = h.post("/_sql", json={"stmt": "SELECT 1"},
                   headers={"Authorization": f"Bearer {good}"})
        assert r.status_code == 200 and r.json()["rows"] == [[1]]
    for tok in (wrong_secret, wrong_user, expired):
        # a new connection each: CrateDB closes after a failed login without saying so
        # (no Connection: close), so a reused connection would race with that close
        with httpx.Client(verify=crate_http.ca, timeout=TIMEOUT, base_url=crate_http.url) as h:
            r = h.post("/_sql", json={"stmt": "SELECT 1"},
                       headers={"Authorization": f"Bearer {tok}"})
            assert r.status_code == 401


# ---------------------------------------------------------------------------------------------
# sessions: one per TCP connection


def test_keep_alive_reuses_one_session(crate_http):
    p = pool(crate_http)
    pids = {sql(p, "SELECT pg_backend_pid()")[2].headers["X-Test-Session"] for _ in range(5)}
    assert len(pids) == 1 and p.num_connections == 1
    pid = pids.pop()
    assert sql(p, "SELECT pg_backend_pid()")[1]["rows"] == [[int(pid)]]
    with client(crate_http) as h:
        pids2 = {h.post("/_sql", json={"stmt": "SELECT 1"}).headers["X-Test-Session"]
                 for _ in range(5)}
    assert len(pids2) == 1 and pids2 != {pid}
    # a new session on the old connection when PostgreSQL drops it
    status, res, r = sql(p, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert status >= 500
    r = sql(p, "SELECT 1")[2]
    assert r.status == 200 and r.headers["X-Test-Session"] != pid


def test_default_schema_per_connection(crate_http, pg):
    schema = "s_" + uuid.uuid4().hex[:8]
    pg.sql(f"CREATE SCHEMA {schema} AUTHORIZATION crate")
    try:
        a = pool(crate_http)
        status, res, _ = sql(a, "SELECT current_schema()", headers={"Default-Schema": schema})
        assert res["rows"] == [[schema]], res
        sql(a, "CREATE TABLE only_here (x int)")
        # later Default-Schema headers on this connection are ignored
        status, res, _ = sql(a, "SELECT current_schema()", headers={"Default-Schema": "doc"})
        assert res["rows"] == [[schema]]
        assert sql(a, "SELECT count(*) FROM only_here")[0] == 200
        # another connection without the header: CrateDB's default schema, doc
        b = pool(crate_http)
        status, res, _ = sql(b, "SELECT current_schema()")
        assert res["rows"] == [["doc"]]
        assert sql(b, "SELECT count(*) FROM only_here")[0] == 404
    finally:
        pg.sql(f"DROP SCHEMA {schema} CASCADE")


def test_set_persists_per_connection(crate_http):
    with client(crate_http) as a, client(crate_http) as b:
        assert a.post("/_sql", json={"stmt": "SET application_name TO 'conn-a'"}) \
            .status_code == 200
        assert b.post("/_sql", json={"stmt": "SET application_name TO 'conn-b'"}) \
            .status_code == 200
        for _ in range(3):
            ra = a.post("/_sql", json={"stmt": "SHOW application_name"})
            rb = b.post("/_sql", json={"stmt": "SHOW application_name"})
            assert ra.json()["rows"] == [["conn-a"]]
            assert rb.json()["rows"] == [["conn-b"]]
            assert ra.headers["X-Test-Session"] != rb.headers["X-Test-Session"]
    with client(crate_http) as c:  # a new connection starts afresh
        assert c.post("/_sql", json={"stmt": "SHOW application_name"}).json()["rows"] == [[""]]


# ---------------------------------------------------------------------------------------------
# request bodies


def test_chunked_gzip_and_deflate_bodies(crate_http):
    stmt = json.dumps({"stmt": "SELECT ? AS v", "args": ["x" * 20000]}).encode()
    with client(crate_http) as h:
        def gen():
            for i in range(0, len(stmt), 1000):
                yield stmt[i:i + 1000]
        r = h.post("/_sql", content=gen())  # an iterator: Transfer-Encoding: chunked
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert r.status_code == 200 and r.json()["rows"] == [["x" * 20000]]
        for enc, data in (("gzip", gzip.compress(stmt)), ("deflate", zlib.compress(stmt)),
                          ("deflate", _raw_deflate(stmt))):  # raw deflate, as some send
            r = h.post("/_sql", content=data, headers={"Content-Encoding": enc})
            assert r.status_code == 200, (enc, r.text)
            assert r.json()["rows"] == [["x" * 20000]]
    p = pool(crate_http)
    gz = gzip.compress(stmt)
    r = p.urlopen("POST", "/_sql", body=[gz[:100], gz[100:]], chunked=True,
                  headers={**p.headers, "Content-Encoding": "gzip"})
    assert r.status == 200 and json.loads(r.data)["rows"] == [["x" * 20000]]
    # not gzip under Content-Encoding: gzip: CrateDB's plain 500, and the connection closed
    r = rq(p, "POST", "/_sql", body=b"garbage", headers={"Content-Encoding": "gzip"})
    assert r.status == 500 and r.data == b"Input is not in the GZIP format"


def _raw_deflate(data):
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


# ---------------------------------------------------------------------------------------------
# blobs


def test_blobs(crate_http):
    data = os.urandom(300_000)
    digest = hashlib.sha1(data).hexdigest()
    path = f"/_blobs/myblobs/{digest}"
    p = pool(crate_http)
    assert rq(p, "GET", path).status == 404
    assert rq(p, "HEAD", path).status == 404
    assert rq(p, "PUT", path, body=data).status == 201
    assert rq(p, "PUT", path, body=data).status == 409
    r = rq(p, "GET", path)
    assert r.status == 200 and r.data == data
    r = rq(p, "HEAD", path)
    assert r.status == 200 and int(r.headers["Content-Length"]) == len(data) and r.data == b""
    r = rq(p, "GET", path, headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.data == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = rq(p, "GET", path, headers={"Range": "bytes=-5"})  # CrateDB: only bytes=N-[M]
    assert r.status == 200 and r.data == data
    r = rq(p, "GET", path, headers={"Range": "bytes=299990-"})
    assert r.status == 206 and r.data == data[299990:]
    r = rq(p, "GET", path, headers={"Range": f"bytes={len(data) + 1}-"})
    assert r.status == 416
    # a body whose SHA-1 is not the digest in the path
    bad = "0" * 40
    assert rq(p, "PUT", f"/_blobs/myblobs/{bad}", body=b"hello").status == 400
    assert rq(p, "GET", f"/_blobs/myblobs/{bad}").status == 404
    assert rq(p, "DELETE", path).status == 204
    assert rq(p, "DELETE", path).status == 404
    assert rq(p, "GET", path).status == 404
    assert p.num_connections == 1  # every answer kept the connection
    # chunked and with Expect: 100-continue (httpx streams an iterator chunked)
    with client(crate_http) as h:
        r = h.put(path, content=iter([data[:1000], data[1000:]]))
        assert r.status_code == 201
        assert h.get(path).content == data
    s = tls_socket(crate_http)
    small = b"expect me"
    d2 = hashlib.sha1(small).hexdigest()
    s.sendall(f"PUT /_blobs/myblobs/{d2} HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: {basic(crate_http.user, crate_http.password)}\r\n"
              f"Expect: 100-continue\r\nContent-Length: {len(small)}\r\n\r\n".encode())
    assert s.recv(100).startswith(b"HTTP/1.1 100")
    s.sendall(small)
    line, _, _ = read_response(s)
    assert line.startswith("HTTP/1.1 201")
    s.close()


def test_blob_upload_is_streamed(crate_http):
    """32 MiB through a chunked upload: the server's peak memory grows by far less."""
    def hwm():
        with open(f"/proc/{crate_http.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    block = os.urandom(1 << 20)
    sha = hashlib.sha1()
    for _ in range(32):
        sha.update(block)
    path = f"/_blobs/big/{sha.hexdigest()}"
    with client(crate_http) as h:
        h.get("/")
        before = hwm()
        r = h.put(path, content=(block for _ in range(32)))
        assert r.status_code == 201
        assert h.head(path).headers["content-length"] == str(32 << 20)
        r = h.get(path, headers={"Range": f"bytes={(32 << 20) - 3}-"})
        assert r.status_code == 206 and r.content == block[-3:]
    grown = hwm() - before
    assert grown < 12 << 20, f"peak RSS grew by {grown} bytes for a 32 MiB upload"


def test_blob_redirect(crate_http_factory):
    from helpers import free_port
    blob_port = free_port()
    c = crate_http_factory(args=("--redirect-blobs-to-port", str(blob_port)))
    data = b"redirected blob"
    path = f"/_blobs/r/{hashlib.sha1(data).hexdigest()}"
    p = pool(c)
    # a PUT that asks for 100-continue is redirected before its body goes, to an IP literal
    # (CrateDB's Location names the node's publish address)
    # (the head alone, as a client that waits for the 100 sends it)
    s = tls_socket(c)
    s.sendall((f"PUT {path} HTTP/1.1\r\nHost: {c.host}:{c.port}\r\n"
               f"Authorization: {basic(c.user, c.password)}\r\n"
               f"Content-Length: {len(data)}\r\nExpect: 100-continue\r\n\r\n").encode())
    status, headers, _ = read_response(s)
    s.close()
    assert " 307 " in status, status
    assert headers["location"] == f"https://127.0.0.1:{blob_port}{path}"
    # urllib3 sends the body at once all the same: read away, the connection kept (as Netty)
    r = rq(p, "PUT", path, body=data, headers={"Expect": "100-continue"}, redirect=False)
    assert r.status == 307 and r.data == b""
    assert r.headers["Location"] == f"https://127.0.0.1:{blob_port}{path}"
    # one without Expect is stored where it arrives, as CrateDB stores it on any node
    assert rq(p, "PUT", path, body=data).status == 201
    assert rq(p, "GET", path, redirect=False).status == 307
    assert rq(p, "HEAD", path, redirect=False).status == 307
    # a blob that does not exist is redirected all the same
    r = rq(p, "GET", f"/_blobs/r/{'0' * 40}", redirect=False)
    assert r.status == 307 and r.headers["Location"].endswith("0" * 40)
    with httpx.Client(verify=c.ca, auth=c.auth, timeout=TIMEOUT) as h:
        r = h.get(c.url + path)
        assert r.status_code == 307
        # (a client following it by itself drops Authorization: the Location is another
        # origin; so follow it by hand, with the credentials)
        r = h.get(r.headers["Location"])
        assert r.status_code == 200 and r.content == data
        assert h.head(r.url).status_code == 200
    # DELETE is answered where it arrives
    assert rq(p, "DELETE", path).status == 204
    # /_sql is never redirected
    assert sql(p, "SELECT 1")[0] == 200


def test_idle_close(crate_http_factory):
    c = crate_http_factory(idle_close=0.5)
    s = tls_socket(c)
    s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: {basic(c.user, c.password)}\r\n\r\n".encode())
    line, _, _ = read_response(s)
    assert line.startswith("HTTP/1.1 200")
    t0 = time.monotonic()
    assert closed_by_peer(s, wait=5)
    assert 0.3 < time.monotonic() - t0 < 3
    s.close()
    # a pool sees its connection dropped and makes a new one (a new session)
    p = pool(c)
    first = sql(p, "SELECT 1")[2].headers["X-Test-Session"]
    assert sql(p, "SELECT 1")[2].headers["X-Test-Session"] == first  # not idle yet
    time.sleep(1.0)
    second = sql(p, "SELECT 1")[2].headers["X-Test-Session"]
    assert second != first


def test_sigterm_exits_cleanly(crate_http):
    p = pool(crate_http)
    assert sql(p, "SELECT 1")[0] == 200  # an open keep-alive connection with a session
    t0 = time.monotonic()
    assert crate_http.stop() == 0
    assert time.monotonic() - t0 < 3
    assert "Traceback" not in crate_http.output()
