#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses into fuzz/corpus/<harness>/: small real
inputs (what psql, libpq's extended protocol, PostgreSQL and CrateDB, SCRAM, HTTP clients
and the sample config send), framed as each harness reads its input (see the comment at
the top of each fuzz/fuzz_*.c). Run it again after changing a harness's input format;
files it does not write (crash reproducers, crash-*) are left alone.

    python3 fuzz/make_corpus.py
"""
import base64
import gzip
import hashlib
import hmac
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- pgwire --------------------------------------------------------------------------

def msg(t, body=b""):
    return t + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def startup(params, version=196608):
    body = struct.pack("!I", version) + b"".join(cstr(k) + cstr(v) for k, v in params) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def parse(name, sql, oids=()):
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack("!H", len(oids)) +
               b"".join(struct.pack("!I", o) for o in oids))


def bind(portal, stmt, params=()):
    body = cstr(portal) + cstr(stmt) + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        body += struct.pack("!i", len(p)) + p
    return msg(b"B", body + struct.pack("!H", 0))


def describe(kind, name):
    return msg(b"D", kind + cstr(name))


def close(kind, name):
    return msg(b"C", kind + cstr(name))


def execute(portal="", rows=0):
    return msg(b"E", cstr(portal) + struct.pack("!I", rows))


SYNC = msg(b"S")
FLUSH = msg(b"H")
TERMINATE = msg(b"X")


def query(sql):
    return msg(b"Q", cstr(sql))


def row_description(cols):
    body = struct.pack("!H", len(cols))
    for name, oid in cols:
        body += cstr(name) + struct.pack("!IhIhih", 0, 0, oid, -1, -1, 0)
    return msg(b"T", body)


def data_row(vals):
    body = struct.pack("!H", len(vals))
    for v in vals:
        body += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return msg(b"D", body)


def complete(tag):
    return msg(b"C", cstr(tag))


def ready(status=b"I"):
    return msg(b"Z", status)


def error(sqlstate, text, severity="ERROR"):
    return msg(b"E", b"S" + cstr(severity) + b"V" + cstr(severity) + b"C" + cstr(sqlstate) +
               b"M" + cstr(text) + b"\0")


def param_status(k, v):
    return msg(b"S", cstr(k) + cstr(v))


def auth(code, data=b""):
    return msg(b"R", struct.pack("!I", code) + data)


PARSE_COMPLETE = msg(b"1")
BIND_COMPLETE = msg(b"2")
CLOSE_COMPLETE = msg(b"3")
NO_DATA = msg(b"n")


def startup_corpus():
    h = "fuzz_startup"
    write(h, "psql", startup([("user", "alice"), ("database", "doc"),
                              ("application_name", "psql"), ("client_encoding", "UTF8")]))
    write(h, "pgjdbc", startup([("user", "crate"), ("database", "doc"), ("client_encoding", "UTF8"),
                                ("DateStyle", "ISO"), ("TimeZone", "Europe/Berlin"),
                                ("extra_float_digits", "2")]))
    write(h, "options", startup([("user", "bob"), ("options", "-c search_path=doc\\ x --statement_timeout=5s")]))
    write(h, "no_database", startup([("user", "u")]))
    write(h, "ssl_request", struct.pack("!II", 8, 80877103))
    write(h, "gssenc_request", struct.pack("!II", 8, 80877104))
    write(h, "cancel_request", struct.pack("!IIII", 16, 80877102, 12345, 0xdeadbeef))
    write(h, "protocol_3_2", startup([("user", "alice")], version=196610))


def relay_client_corpus():
    h = "fuzz_relay_client"
    simple = query("SELECT 1") + query("SET TimeZone TO 'UTC'; SELECT now()") + TERMINATE
    extended = (parse("", "SELECT $1::int", (23,)) + bind("", "", (b"42",)) + describe(b"P", "") +
                execute() + SYNC)
    named = (parse("s1", "SELECT * FROM t WHERE id = $1", (23,)) + describe(b"S", "s1") + SYNC +
             bind("", "s1", (b"7",)) + execute() + SYNC + close(b"S", "s1") + SYNC +
             query("DEALLOCATE s1"))
    pipeline = (parse("a", "SELECT 1") + parse("b", "SELECT 2") + bind("", "a") + execute() +
                bind("", "b") + execute() + FLUSH + SYNC + query("DEALLOCATE ALL") +
                query("DISCARD ALL"))
    crate = (query("BEGIN") + query("DECLARE c1 NO SCROLL CURSOR WITH HOLD FOR SELECT 1") +
             query("FETCH 1 FROM c1") + query("CLOSE c1") + query("COMMIT") +
             msg(b"F", struct.pack("!IH", 1234, 0) + struct.pack("!HH", 0, 0)) +
             msg(b"d", b"copydata") + msg(b"c"))
    prepare_sync = parse("stmt", "SELECT 1") + SYNC
    # byte 0: options (bits 0-1 mode, bit 2 CrateDB, bit 3 idle answer), byte 1: piece seed
    for opts, name, body in [(0, "session_simple", simple), (1, "tx_extended", extended),
                             (1, "tx_named", named), (3, "tx_named_lru", named),
                             (2, "stmt_pipeline", pipeline), (5, "crate_tx", crate),
                             (9, "tx_idle_prepare", prepare_sync + prepare_sync),
                             (6, "crate_stmt_extended", extended + named)]:
        write(h, name, bytes([opts, 0x5a]) + body)


def relay_server_corpus():
    h = "fuzz_relay_server"
    login = (auth(0) + param_status("server_version", "14.0") + param_status("TimeZone", "UTC") +
             msg(b"K", struct.pack("!II", 1, 2)) + ready())
    select = (row_description([("x", 23)]) + data_row([b"1"]) + complete("SELECT 1") + ready())
    extended_c = parse("", "SELECT $1::int", (23,)) + bind("", "", (b"42",)) + describe(b"P", "") + execute() + SYNC
    extended_s = (PARSE_COMPLETE + BIND_COMPLETE + row_description([("int4", 23)]) +
                  data_row([b"42", None]) + complete("SELECT 1") + ready())
    named_c = parse("s1", "SELECT 1") + describe(b"S", "s1") + SYNC + bind("", "s1") + execute() + SYNC
    named_s = (PARSE_COMPLETE + msg(b"t", struct.pack("!H", 0)) + row_description([("?column?", 23)]) +
               ready() + BIND_COMPLETE + data_row([b"1"]) + complete("SELECT 1") + ready())
    err_c = parse("s2", "SELEC 1") + bind("", "s2") + execute() + SYNC
    err_s = error("42601", "syntax error at or near \"SELEC\"") + ready()
    set_c = query("SET TimeZone TO 'Europe/Berlin'")
    set_s = param_status("TimeZone", "Europe/Berlin") + complete("SET") + ready()
    tx_c = query("BEGIN") + query("SELECT 1") + query("COMMIT")
    tx_s = complete("BEGIN") + ready(b"T") + select.replace(ready(), ready(b"T")) + complete("COMMIT") + ready()
    notice = msg(b"N", b"SNOTICE\0VNOTICE\0C00000\0Mhello\0\0") + msg(b"A", struct.pack("!I", 7) + cstr("chan") + cstr("payload"))

    def field(b):
        return struct.pack("!H", len(b)) + b
    # byte 0: options (bits 0-1 mode, bit 2 CrateDB, bit 3 nobody linked, bit 4 replay,
    # bit 5 reset, bit 6 stop after ReadyForQuery), byte 1: piece seed, client field, server bytes
    for opts, name, c, s in [(0, "session_login_select", query("SELECT 1"), login + select),
                             (1, "tx_extended", extended_c, extended_s),
                             (1, "tx_named", named_c, named_s),
                             (3, "tx_error_skip", err_c, err_s),
                             (1 | 16, "tx_replay", set_c, param_status("TimeZone", "Europe/Berlin") + complete("SET") + ready() + set_s),
                             (2, "stmt_tx_violation", tx_c, tx_s),
                             (5 | 32, "crate_reset", tx_c, complete("COMMIT") + ready() + tx_s),
                             (1 | 8, "nobody_linked", query("SELECT 1"), select + notice),
                             (1 | 64, "stop_after_ready", query("SELECT 1") + query("SELECT 1"), select + select),
                             (5, "crate_error_extended", extended_c, error("XX000", "boom") + ready(b"E"))]:
        write(h, name, bytes([opts, 0x33]) + field(c) + s)


# ---- SCRAM (RFC 7677's example exchange) ---------------------------------------------

def scram_corpus():
    h = "fuzz_scram"
    pw, cnonce, snonce = b"pencil", "rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    salt, iters = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 128

    def field(b):
        return struct.pack("!H", len(b)) + b
    salted = hashlib.pbkdf2_hmac("sha256", pw, salt, iters)
    ck = hmac.new(salted, b"Client Key", "sha256").digest()
    sk = hmac.new(salted, b"Server Key", "sha256").digest()
    stored = hashlib.sha256(ck).digest()
    first_bare = "n=,r=" + cnonce
    server_first = "r=%s%s,s=%s,i=%d" % (cnonce, snonce, base64.b64encode(salt).decode(), iters)
    without_proof = "c=biws,r=" + cnonce + snonce
    auth_msg = ",".join([first_bare, server_first, without_proof]).encode()
    proof = bytes(a ^ b for a, b in zip(ck, hmac.new(stored, auth_msg, "sha256").digest()))
    client_final = without_proof + ",p=" + base64.b64encode(proof).decode()
    server_final = "v=" + base64.b64encode(hmac.new(sk, auth_msg, "sha256").digest()).decode()
    secret = "SCRAM-SHA-256$%d:%s$%s:%s" % (iters, base64.b64encode(salt).decode(),
                                             base64.b64encode(stored).decode(),
                                             base64.b64encode(sk).decode())
    e = lambda s: s.encode()
    # client side: server-first, server-final, user
    write(h, "client_exchange", b"\0" + field(e(server_first)) + field(e(server_final)) + field(b""))
    write(h, "client_user", b"\0" + field(e(server_first)) + field(b"v=AAAA") + field(b"us=er,x"))
    write(h, "client_error", b"\0" + field(e(server_first)) + field(b"e=invalid-proof") + field(b"u"))
    write(h, "client_bad_nonce", b"\0" + field(b"r=xyz,s=QSXCR+Q6sek8bf92,i=4096") + field(b"") + field(b""))
    # server side: secret, client-first, client-final
    write(h, "server_exchange", b"\1" + field(e(secret)) + field(e("n,," + first_bare)) + field(e(client_final)))
    write(h, "server_fixed_secret", b"\1" + field(b"") + field(e("n,,n=,r=" + cnonce)) + field(b"c=biws,r=x,p=AAAA"))
    write(h, "server_gs2_y", b"\1" + field(b"") + field(b"y,,n=user,r=abc,x=ext") + field(b"c=eSws,r=abc,p=" + b"A" * 43 + b"="))
    write(h, "server_channel_binding", b"\1" + field(b"") + field(b"p=tls-server-end-point,,n=,r=abc") + field(b""))


# ---- HTTP ----------------------------------------------------------------------------

def http_corpus():
    h = "fuzz_http"
    sql = b'{"stmt": "SELECT name FROM sys.cluster", "args": []}'
    set_body = b'{"args": [1], "stmt": "SET search_path TO doc"}'
    req = lambda head, body=b"": head.replace(b"\n", b"\r\n") + body
    cl = req(b"POST /_sql?types HTTP/1.1\nHost: localhost:4200\nContent-Type: application/json\n"
             b"Content-Length: %d\nConnection: keep-alive\nUser-Agent: curl/7.88.1\n\n" % len(sql), sql)
    chunked_body = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, set_body[:10], len(set_body) - 10, set_body[10:])
    chunked = req(b"POST /_sql HTTP/1.1\nHost: localhost\nTransfer-Encoding: chunked\n"
                  b"Default-Schema: doc\n\n", chunked_body)
    gz = gzip.compress(set_body, mtime=0)
    gzipped = req(b"POST /_sql HTTP/1.1\nHost: x\nContent-Encoding: gzip\nContent-Length: %d\n\n" % len(gz), gz)
    dfl = zlib.compress(sql)
    deflated = req(b"POST /_sql HTTP/1.1\nHost: x\nContent-Encoding: deflate\nContent-Length: %d\n\n" % len(dfl), dfl)
    get = req(b"GET / HTTP/1.1\nHost: localhost:4200\nAuthorization: Basic Zm9vOmJhcg==\nX-User: admin\n"
              b"Connection: close, X-Trace\nX-Trace: 1\nTE: trailers\nAccept: */*\n\n")
    smuggle = req(b"POST /_sql HTTP/1.1\nHost: x\nContent-Length: 4\nTransfer-Encoding: chunked\n\n", b"0\r\n\r\n")
    two_cl = req(b"POST /_sql HTTP/1.1\nHost: x\nContent-Length: 4\nContent-Length: 5\n\n", b"abcd")
    blob = req(b"PUT /_blobs/b/da39a3ee5e6b4b0d3255bfef95601890afd80709 HTTP/1.1\nHost: x\n"
               b"Expect: 100-continue\nContent-Length: 3\n\n", b"abc")
    escaped = b'{"st\\u006dt": "/* c */ \\u0053ET x = 1"}'
    esc = req(b"POST /_sql HTTP/1.1\nHost: x\nContent-Length: %d\n\n" % len(escaped), escaped)
    for flags, name, data in [(0, "req_sql_content_length", cl), (0, "req_sql_chunked", chunked),
                              (0, "req_sql_gzip", gzipped), (0, "req_sql_deflate", deflated),
                              (0, "req_get_hop_by_hop", get), (0, "req_cl_and_te", smuggle),
                              (0, "req_two_content_length", two_cl), (0, "req_blob_expect", blob),
                              (2, "req_sql_escaped_key", esc)]:
        write(h, name, bytes([flags, 0x21]) + data)
    resp_json = b'{"cols":["name"],"rows":[["crate"]],"rowcount":1,"duration":1.2}'
    r200 = req(b"HTTP/1.1 200 OK\ncontent-type: application/json; charset=UTF-8\n"
               b"content-length: %d\n\n" % len(resp_json), resp_json)
    rchunk = req(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nKeep-Alive: timeout=5\n"
                 b"Connection: keep-alive\n\n", b"5\r\nhello\r\n0\r\n\r\n")
    r401 = req(b"HTTP/1.1 401 Unauthorized\nWWW-Authenticate: Basic realm=\"CrateDB\"\ncontent-length: 0\n\n")
    r307 = req(b"HTTP/1.1 307 Temporary Redirect\nLocation: http://node2:4200/_blobs/b/x\ncontent-length: 0\n\n")
    r100 = req(b"HTTP/1.1 100 Continue\n\n")
    r10 = req(b"HTTP/1.0 200 \nServer: x\n\n", b"until the end")
    for flags, name, data in [(1, "resp_200_json", r200), (1, "resp_chunked", rchunk),
                              (1, "resp_401", r401), (1, "resp_307", r307), (1, "resp_100", r100),
                              (1, "resp_http10_eof", r10)]:
        write(h, name, bytes([flags, 0x42]) + data)
    # /_sql bodies on their own (bit 1; the rest is not HTTP)
    for name, body in [("sql_body_set", set_body), ("sql_body_select", sql),
                       ("sql_body_comment", b'{"stmt":"-- x\\nRESET ALL"}'),
                       ("sql_body_nested", b'{"bulk_args":[[1,{"a":"}"}]],"stmt":"DECLARE c CURSOR"}')]:
        write(h, name, bytes([2 | 1, 0]) + body)


# ---- config and auth_file ------------------------------------------------------------

def config_corpus():
    h = "fuzz_config"
    with open(os.path.join(HERE, "..", "conf", "cratebouncer.ini"), "rb") as f:
        sample = f.read()
    write(h, "sample_ini", b"\0" + sample)
    write(h, "sample_ini_file", b"\2" + sample)
    write(h, "databases", b"\0" + b"""[cratebouncer]
listen_port = 6433
pool_mode = transaction
auth_type = scram-sha-256
auth_file = users.txt
server_idle_timeout = 10min
query_timeout = 500ms
tcp_keepalive = on
[databases]
doc = host=crate1 port=5432 dbname=doc user=crate password='se\\'cret' pool_size=5 sslmode=disable server_kind=cratedb
* = host=/var/run/postgresql
[users]
app = pool_mode=session
[admin]
listen_port = 8080
[http]
listen_port = 4201
upstream = https://crate1:4200
""")
    write(h, "errors", b"\0[nosuch]\nkey\n[databases]\nx = port=70000\nx = host=a\nx = host=b\n"
                       b"[cratebouncer]\nlisten_port=1\nlisten_port=2\nunix_socket_mode = 0999\n")
    userlist = (b'"alice" "md5d5a5d8ed9b02c0c4bb0c6c9b3c2f8e3a"\n'
                b'; a comment\n# another\n\n'
                b'"bob" "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="\n'
                b'"we""ird" "pass word" ignored fields\n'
                b'  "alice" "replaced"\r\n')
    write(h, "auth_file", b"\1" + userlist)
    write(h, "auth_file_via_file", b"\3" + userlist)
    write(h, "auth_file_line", b'\1"crate" "crate"')
    write(h, "auth_file_unterminated", b'\1"crate" "open\n')


if __name__ == "__main__":
    startup_corpus()
    relay_client_corpus()
    relay_server_corpus()
    scram_corpus()
    http_corpus()
    config_corpus()
