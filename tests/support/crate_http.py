#!/usr/bin/python3
"""A CrateDB-shaped HTTPS server (CrateDB's port 4200) in front of a PostgreSQL, for tests and
the demo. It answers `/_sql`, `GET /` and `/_blobs/<table>/<sha1>` the way CrateDB 6.4 does
(each point below was checked against a real two-node CrateDB), closely enough to test an
HTTP pooler/sidecar against it:

    /usr/bin/python3 tests/support/crate_http.py --listen 127.0.0.1 --port 4200 \\
        --cert DIR/ssl/server.crt --key DIR/ssl/server.key \\
        --pg "host=127.0.0.1 port=15432 dbname=doc user=crate password=secret" \\
        --user crate --password secret [--ready-file F] [--idle-close SECONDS] \\
        [--jwt-iss ISS [--jwt-username NAME] [--jwt-aud AUD] [--jwks FILE] [--jwks-ca PEM]] \\
        [--jwt-secret S] [--redirect-blobs-to-port PORT | --redirect-blobs-to URL] \\
        [--blob-dir DIR]

What it does, as CrateDB does:
- HTTP/1.1 with keep-alive (no pipelining, no HTTP/2); header names in lower case, no Date or
  Server header. Request bodies with Content-Length or chunked; `Content-Encoding: gzip`,
  `x-gzip` or `deflate` (zlib-wrapped or raw) is undone, any other value is taken as identity;
  a `gzip` body that is not gzip: `500` `Input is not in the GZIP format` (plain text, closed).
- The /_sql body limit (http.max_content_length, 100 MB) applies after decompression:
  `413 Request Entity Too Large` with an empty body. A Content-Length over it is answered at
  once and the connection kept; a chunked or compressed body that grows over it gets
  `connection: close` and the connection is closed.
- Authentication on every request; a failed one is answered in plain text without a
  Content-Type, and the connection is closed:
  - `Authorization: Basic` with --user/--password. A wrong password or an unknown user: `401`
    `password authentication failed for user "U"` and `WWW-Authenticate: Basic
    realm="CrateDB Authenticator"`. No Authorization header (CrateDB then takes its default
    user `crate`) or Basic without a password: `401` `No valid auth.host_based.config entry
    found for host "IP", user "U", protocol "http". Did you enable TLS in your client?` (a
    CrateDB whose host_based config has no trust entry, as CrateDB Cloud).
  - A malformed header is a plain `500`: a single word ("Authorization header must contain
    auth scheme (basic, bearer) and base64 encoded value separated by a whitespace"), another
    scheme ("Only basic or bearer HTTP Authentication schemes are allowed."), bad base64
    ("Illegal base64 character 21"), a Bearer value that is no JWT (java-jwt's "The token was
    expected to have 3 parts, but got 2.", "The input is not a valid base 64 encoded
    string.", ...), or a JWT without `kid`, `iss` or `username` ("The JWT token must contain a
    public key id (kid)", "... an issuer (iss)", "... a 'username' claim").
  - `Authorization: Bearer <JWT>` with --jwt-iss: --user is a user created `WITH (jwt =
    {"iss": ISS, "username": NAME, "aud": AUD})`. A token whose `iss` and `username` claims are
    ISS and NAME is checked against the JWKS at the URL ISS (`https://` put before an ISS
    without a scheme; fetched at every login, with `Accept: application/json`, unless the last
    answer had `Cache-Control: max-age=N`), or read from --jwks FILE instead. The key is the
    JWK with the token's `kid`, else `No key found in URL with kid K`. The algorithm is the
    JWK's `alg` (RS256/384/512; none: RS256), which the token's `alg` must equal ("JWT
    algorithm X doesn't match public key algorithm Y", or without a JWK alg "The provided
    Algorithm doesn't match the one defined in the JWT's Header."); then the signature, iss,
    username, aud (default: the cluster id), exp, nbf and iat, in that order, with java-jwt's
    messages, as `401` `jwt authentication failed for user U. Reason: The Token has expired on
    2026-01-01T00:00:00Z.` (or "The Token's Signature resulted invalid when verified using the
    Algorithm: SHA256withRSA", "The Claim 'aud' value doesn't contain the required audience."
    ...). A token whose iss and username match no user: the `No valid auth.host_based.config
    entry ... user "null"` 401.
  - `X-User` is never read.
- One SQL session per TCP connection: the first authenticated request on a connection opens a
  PostgreSQL connection (autocommit) that lives as long as the TCP connection, so SET persists
  for the connection's life. `Default-Schema` is applied (as search_path) when the session is
  made, from the request that made it; later Default-Schema headers on that connection are
  ignored. Without the header the schema is `doc`, CrateDB's default.
- `/_sql` (any URI that starts with it, with any method) takes `{"stmt", "args"}` or
  `{"stmt", "bulk_args"}` with exactly one statement (a key given twice, at any depth, is
  refused as not JSON, below): a second one after a `;` is `400` 4000
  `ParsingException[line 1:11: mismatched input 'select' expecting <EOF>]` (`;;`: "extraneous
  input ';' expecting <EOF>"); one trailing `;` is fine. `?` and `$N` placeholders. `?types`
  adds `col_types` only as `?types`, `?types=` or `?types=true` (not `=1`, `=TRUE`, nor given
  twice); `?error_trace` the same way adds `error_trace` to errors. Body errors: empty: `400`
  4000 `SQLParseException[Missing request body]`; not JSON, or a field other than stmt, args,
  bulk_args: `400` 4000 `SQLParseException[Can't parse [BODY]. Expecting payload with `stmt`
  string and `args` or `bulk_args` arrays]`; no stmt, an empty one, or args that is not an
  array: `500` 5000 `SQLParseSourceException[Field [stmt] is missing]` (`... has no value`,
  ``args` must start with an array, not `VALUE_NUMBER``); non-empty args and bulk_args: `400`
  4000 `SQLParseException[request body contains args and bulk_args. It's forbidden to provide
  both]` (with an empty args, bulk_args is ignored).
- Results `{"cols", ["col_types",] "rows", "rowcount", "duration"}`; a statement without a
  result set `{"cols": [], "rows": [[]], "rowcount": N}` (SET, BEGIN, COMMIT, KILL: 0); bulk
  `{"cols": [], "duration", "results": [{"rowcount": N}, ...]}` (never col_types); an item that
  fails on a constraint is `{"rowcount": -2, "error": {"code": 4091, "message": ...}}`, any
  other error fails the whole request; a bulk SELECT is `400` 4004.
- Errors `{"error": {"message": "ExceptionName[...]", "code": N}}`, status by the code: 4000
  and 4004 -> 400, 4011 -> 401 (a missing privilege; JSON, and the connection stays open),
  4041/4043/4045 -> 404, 4091/4093 -> 409, 5000/5005 -> 500, 5030 -> 503.
- `KILL ALL` kills the statements running in the server's other sessions; each of them
  answers `500` `{"error":{"message":"JobKilledException[Job killed]","code":5005}}`. KILL
  itself answers rowcount 0, as CrateDB's does (also `KILL '<job id>'`, see below).
- The URI exactly `/` (any method), with an `Accept` that contains `application/json` or a
  User-Agent whose first word is not a browser's (`Mozilla/5.0`, `Chrome/120.0`, `Safari/..`
  ...; no User-Agent is no browser): the node info, pretty-printed, `content-type:
  application/json` (HEAD: `200` with content-length 0). Else the Admin UI (a placeholder page
  here): GET `200` `content-type: text/html`, other methods `403` `POST method is not allowed
  for [/]`. `/admin` and `/_plugin/crate-admin`: `307` with `location: /`. Any other path:
  GET `404` `Requested file [PATH] was not found` (plain text), other methods that 403.
- Blobs `/_blobs/<table>/<sha1>` (lower-case hex only; anything else, a query string too, is an
  empty `404`): PUT `201`, `409` when present, `400` when the SHA-1 of the body is not the
  digest (empty bodies; `100 Continue` before the body when asked for); GET `200`, or `206`
  with `content-range` for `Range: bytes=N-` or `bytes=N-M` (any other form: the whole blob;
  a start past the end: `416`); GET and HEAD carry `accept-ranges: bytes`, `expires: Thu, 31
  Dec 2037 23:59:59 GMT`, `cache-control: max-age=315360000` and no content-type; DELETE
  `204`; an absent blob `404`; other methods `405`. Uploads are streamed to disk in 64 KiB
  chunks.
- --redirect-blobs-to-port PORT: the server also listens on PORT (same address and TLS), as the
  node that holds every blob. A blob GET or HEAD, or a PUT with `Expect: 100-continue`, that
  reaches the main port is answered `307 Temporary Redirect`, empty, with `location:
  https://<listen IP>:PORT/_blobs/<table>/<sha1>` (whether the blob exists or not), as a
  CrateDB node answers for a blob whose shard is on another node: an IP literal, its publish
  address. A PUT without Expect and a DELETE are served on either port, as on any CrateDB node.

What differs from CrateDB (it is PostgreSQL underneath):
- The SQL is PostgreSQL's: ROLLBACK works (CrateDB: a parse error), SET GLOBAL fails, result
  column names and parse error messages are PostgreSQL's (`?column?` for CrateDB's `1`),
  etc. A SET of an unknown setting answers rowcount 0 (CrateDB ignores it; PostgreSQL's error
  is turned into that). CREATE ... IF NOT EXISTS of an existing object and DROP ... IF EXISTS
  of a missing one answer rowcount 0 (seen in PostgreSQL's notice), other DDL 1.
- Error codes are derived from SQLSTATEs: 42601 -> 4000 SQLParseException, 42P01 -> 4041
  RelationUnknown, 42703 -> 4043 ColumnUnknownException, 3F000 -> 4045
  SchemaUnknownException, 42883 -> 4004 UnsupportedFunctionException, 0A000 -> 4004
  UnsupportedFeatureException, 23505 -> 4091 DuplicateKeyException, 42P07/42710 -> 4093
  RelationAlreadyExists, 42501 -> 4011 MissingPrivilegeException, 57014 (cancelled) -> 5005
  JobKilledException, other class 42/22 -> 4000 SQLParseException, PostgreSQL unreachable ->
  5030, anything else -> 5000. Messages are `ExceptionName[PostgreSQL's message]`. (CrateDB
  answers a table the user may not see as `404` 4045 `SchemaUnknownException[Schema 'doc'
  unknown]`, and 4011 `Missing 'DML' privilege for user 'U'` only on a table it may see.)
- The multi-statement error names the next word, where CrateDB's parser names the next token.
- col_types are mapped from PostgreSQL type OIDs to CrateDB's type ids (approximate; a type
  without a CrateDB counterpart is 4, text). Timestamps and dates are milliseconds since the
  epoch (a timestamp without time zone is taken as UTC), numeric is a JSON number (through
  float), uuid/inet/interval/time are strings (an interval as Python writes it, `1:00:00`,
  where CrateDB writes `01:00:00`).
- Blob tables need not exist (CrateDB: `404` `Relation 'blob.T' unknown`): any name made of
  [A-Za-z0-9_] not starting with `_` is a blob table. Blobs live in --blob-dir (default: a
  temporary directory removed at exit). A Range end past the blob is cut to its last byte
  (CrateDB 6.4 announces the length asked for and never sends it).
- Only --user exists, and it may do everything.
- `KILL '<job id>'` kills nothing; `KILL ALL` is the way for a test to kill a running
  statement, e.g. `select pg_sleep(5)` (PostgreSQL's; CrateDB has no sleep function).
- Every response carries `x-test-session: <PostgreSQL backend pid>` once the connection has a
  session, so tests can see which session served a request. Real CrateDB has no such header.
- --idle-close S closes a keep-alive connection after S seconds without a request (CrateDB
  does not by default; a cloud load balancer does).
- --jwt-secret S (test-only; CrateDB accepts RS256/384/512 only): a Bearer JWT whose header
  says HS256, signed with S, whose `username` (or `sub`) claim is --user, is accepted (`exp`
  checked when present); one that fails is `401` `jwt authentication failed for user U.
  Reason: ...`.
- --redirect-blobs-to URL (its host an IP literal): blob GET, HEAD and PUT with Expect answer
  307 to URL + path unless the request's Host is the URL's host:port or it carries
  `X-Test-Redirected: 1` (test-only), for a second instance sharing --blob-dir.
- A broken deflate body is a 500 with zlib's message, not Netty's.

Prints "ready" on stdout and writes the port number to --ready-file once it listens; SIGTERM
or SIGINT stop it cleanly (exit 0). Exit status 2 when a port cannot be bound or an option is
wrong.
"""

import argparse
import base64
import datetime
import decimal
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
import zlib

import psycopg
from psycopg import sql as pgsql

REALM = 'Basic realm="CrateDB Authenticator"'
SQL_BODY_LIMIT = 100 * 1024 * 1024  # CrateDB's http.max_content_length
CHUNK = 64 * 1024
IO_TIMEOUT = 60  # seconds for any single read or write once a request has started
HANDSHAKE_TIMEOUT = 10
DRAIN_LIMIT = 16 * 1024 * 1024  # unread body we still read away to keep a connection usable
CRATE_VERSION = "5.8.0"
CLUSTER_ID = "crate-http-test-cluster-id"  # CrateDB's default JWT audience is its cluster id
SESSION_HEADER = "X-Test-Session"
REDIRECTED_HEADER = "X-Test-Redirected"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
JSON_TYPE = "application/json; charset=UTF-8"
ADMIN_UI = (b"<!DOCTYPE html>\n<html><head><title>CrateDB Admin UI</title></head>"
            b"<body>crate_http.py stands in for the Admin UI here.</body></html>\n")
BROWSER_AGENT = re.compile(r"(Mozilla|Chrome|Safari|Opera|Android|AppleWebKit)+?[/\s][\d.]+")
AUTH_FORMAT = ("Authorization header must contain auth scheme (basic, bearer) and base64 "
               "encoded value separated by a whitespace")


class HttpError(Exception):
    """A response to send instead of going on: status, body, content type (None: none),
    extra headers; close: close the connection after it (close_header: and say so)."""

    def __init__(self, status, body=b"", ctype=None, headers=None, close=False,
                 close_header=False):
        super().__init__(status)
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.ctype = ctype
        self.headers = headers or {}
        self.close = close or close_header
        self.close_header = close_header


class CrateError(Exception):
    """A CrateDB SQL error: code (4000 ...) and message; status is the code's first 3 digits."""

    def __init__(self, code, message, trace=None, sqlstate=""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.trace = trace
        self.sqlstate = sqlstate

    @property
    def status(self):
        return int(str(self.code)[:3])

    def body(self, with_trace=False):
        out = {"error": {"message": self.message, "code": self.code}}
        if with_trace:
            out["error_trace"] = self.trace or ""
        return out

# ---------------------------------------------------------------------------------------------
# SQL: placeholders, values, types, errors

def translate_placeholders(stmt, args):
    """CrateDB's `?` and `$N` placeholders to psycopg's `%s` (with args reordered for `$N`),
    literal `%` doubled. Quotes ('...', "...") and comments are left alone. Returns
    (query, params)."""
    out = []
    params = []
    seq = 0
    i, n = 0, len(stmt)
    while i < n:
        c = stmt[i]
        if c in ("'", '"'):
            j = i + 1
            while j < n:
                if stmt[j] == c:
                    if j + 1 < n and stmt[j + 1] == c:  # doubled quote inside
                        j += 2
                        continue
                    break
                j += 1
            out.append(stmt[i:j + 1].replace("%", "%%"))
            i = j + 1
        elif stmt.startswith("--", i):
            j = stmt.find("\n", i)
            j = n if j < 0 else j
            out.append(stmt[i:j].replace("%", "%%"))
            i = j
        elif stmt.startswith("/*", i):
            j = stmt.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(stmt[i:j].replace("%", "%%"))
            i = j
        elif c == "?":
            if seq >= len(args):
                raise CrateError(4000, "SQLParseException[The query contains a parameter "
                                       f"placeholder ? at position {seq + 1}, but there are "
                                       f"only {len(args)} parameter values]")
            out.append("%s")
            params.append(args[seq])
            seq += 1
            i += 1
        elif c == "$" and i + 1 < n and stmt[i + 1].isdigit():
            j = i + 1
            while j < n and stmt[j].isdigit():
                j += 1
            k = int(stmt[i + 1:j])
            if not 1 <= k <= len(args):
                raise CrateError(4000, f"SQLParseException[The query contains a parameter "
                                       f"placeholder ${k}, but there are only {len(args)} "
                                       "parameter values]")
            out.append("%s")
            params.append(args[k - 1])
            i = j
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), params


def _adapt_arg(v):
    """JSON values as psycopg parameters: objects as jsonb, arrays of them likewise."""
    if isinstance(v, dict):
        return psycopg.types.json.Jsonb(v)
    if isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
        return psycopg.types.json.Jsonb(v)
    return v


def to_json_value(v):
    """A value psycopg returned as CrateDB writes it in JSON."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
        return v
    if isinstance(v, decimal.Decimal):
        if v.is_nan() or v.is_infinite():
            return str(v)
        return int(v) if v == v.to_integral_value() and abs(v) < 2 ** 63 else float(v)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return (v - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(v, datetime.date):
        d = datetime.datetime(v.year, v.month, v.day, tzinfo=datetime.timezone.utc)
        return (d - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(v, (list, tuple)):
        return [to_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): to_json_value(x) for k, x in v.items()}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, (uuid.UUID, datetime.time, datetime.timedelta, ipaddress._BaseAddress,
                      ipaddress._BaseNetwork)):
        return str(v)
    return str(v)


# PostgreSQL type OID -> CrateDB type id (approximate).
PG_TO_CRATE = {
    16: 3,                     # bool -> boolean
    25: 4, 1043: 4, 19: 4, 705: 4, 18: 4,  # text, varchar, name, unknown, "char" -> text
    1042: 27,                  # bpchar -> character
    21: 8, 23: 9, 20: 10,      # int2, int4, int8
    26: 9,                     # oid -> integer
    700: 7, 701: 6,            # float4 -> real, float8 -> double
    1700: 22,                  # numeric
    1184: 11, 1114: 15,        # timestamptz, timestamp
    1082: 24,                  # date
    1266: 20, 1083: 20,        # timetz, time -> time with time zone
    1186: 17,                  # interval
    114: 12, 3802: 12,         # json, jsonb -> object
    869: 5,                    # inet -> ip
    2950: 29,                  # uuid
    1560: 25, 1562: 25,        # bit, varbit
    24: 19, 2205: 23,          # regproc, regclass
    2206: 30,                  # regtype
    30: 21,                    # oidvector
}
PG_ARRAY_ELEM = {
    1000: 16, 1009: 25, 1015: 1043, 1003: 19, 1014: 1042, 1005: 21, 1007: 23, 1016: 20,
    1028: 26, 1021: 700, 1022: 701, 1231: 1700, 1185: 1184, 1115: 1114, 1182: 1082,
    1270: 1266, 1183: 1083, 1187: 1186, 199: 114, 3807: 3802, 1041: 869, 2951: 2950,
}


def crate_type(oid):
    if oid in PG_ARRAY_ELEM:
        return [100, crate_type(PG_ARRAY_ELEM[oid])]
    return PG_TO_CRATE.get(oid, 4)


# SQLSTATE -> (CrateDB code, CrateDB exception name)
SQLSTATE_TO_CRATE = {
    "42601": (4000, "SQLParseException"),
    "42P01": (4041, "RelationUnknown"),
    "42703": (4043, "ColumnUnknownException"),
    "3F000": (4045, "SchemaUnknownException"),
    "42883": (4004, "UnsupportedFunctionException"),
    "0A000": (4004, "UnsupportedFeatureException"),
    "23505": (4091, "DuplicateKeyException"),
    "42P07": (4093, "RelationAlreadyExists"),
    "42710": (4093, "RelationAlreadyExists"),
    "42501": (4011, "MissingPrivilegeException"),
    "57014": (5005, "JobKilledException"),
}


def crate_error(exc):
    """A psycopg exception as a CrateError."""
    state = getattr(exc, "sqlstate", None) or ""
    diag = getattr(exc, "diag", None)
    msg = (diag.message_primary if diag is not None and diag.message_primary else
           str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    trace = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if state == "57014":  # cancelled by KILL ALL: CrateDB's killed job
        return CrateError(5005, "JobKilledException[Job killed]", trace, state)
    if state in SQLSTATE_TO_CRATE:
        code, name = SQLSTATE_TO_CRATE[state]
    elif state[:2] in ("42", "22"):
        code, name = 4000, "SQLParseException"
    elif state[:2] == "23":
        code, name = 4000, "SQLActionException"
    elif isinstance(exc, psycopg.ProgrammingError) and not state:  # psycopg's own checks
        code, name = 4000, "SQLParseException"
    elif isinstance(exc, psycopg.OperationalError) and not state:
        code, name = 5030, "UnavailableShardsException"
    else:
        code, name = 5000, "SQLActionException"
    return CrateError(code, f"{name}[{msg}]", trace, state)


def is_row_error(err):
    """An error that fails one set of bulk arguments (a constraint), not the whole request."""
    return err.sqlstate[:2] == "23"


_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_NEXT_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|.", re.S)


def _skip_quoted(stmt, i):
    """The index after the quoted text, comment or dollar-quoted string at i (or i)."""
    n = len(stmt)
    c = stmt[i]
    if c in ("'", '"'):
        j = i + 1
        while j < n:
            if stmt[j] == c:
                if j + 1 < n and stmt[j + 1] == c:
                    j += 2
                    continue
                return j + 1
            j += 1
        return n
    if stmt.startswith("--", i):
        j = stmt.find("\n", i)
        return n if j < 0 else j
    if stmt.startswith("/*", i):
        j = stmt.find("*/", i + 2)
        return n if j < 0 else j + 2
    if c == "$":
        m = _DOLLAR_QUOTE.match(stmt, i)
        if m:
            j = stmt.find(m.group(0), m.end())
            return n if j < 0 else j + len(m.group(0))
    return i


def check_one_statement(stmt):
    """CrateDB's /_sql takes one statement; a ';' may only end it (comments may follow)."""
    i, n = 0, len(stmt)
    while i < n:
        j = _skip_quoted(stmt, i)
        if j != i:
            i = j
            continue
        if stmt[i] == ";":
            k = i + 1
            while k < n:
                if stmt[k].isspace():
                    k += 1
                    continue
                j = _skip_quoted(stmt, k)
                if j != k and not stmt[k] in ("'", '"', "$"):  # a comment
                    k = j
                    continue
                break
            if k >= n:
                return
            line = stmt.count("\n", 0, k) + 1
            col = k - (stmt.rfind("\n", 0, k) + 1) + 1
            if stmt[k] == ";":
                what = "extraneous input ';' expecting <EOF>"
            else:
                what = f"mismatched input '{_NEXT_WORD.match(stmt, k).group(0)}' expecting <EOF>"
            raise CrateError(4000, f"ParsingException[line {line}:{col}: {what}]")
        i += 1


def _json_token(v):
    """The name of the JSON token Jackson sees for value v."""
    if v is None:
        return "VALUE_NULL"
    if isinstance(v, bool):
        return "VALUE_BOOLEAN"
    if isinstance(v, (int, float)):
        return "VALUE_NUMBER"
    if isinstance(v, str):
        return "VALUE_STRING"
    if isinstance(v, list):
        return "START_ARRAY"
    return "START_OBJECT"


def _no_duplicate_keys(pairs):
    """CrateDB's JSON parser detects duplicate keys at any depth (strict duplicate
    detection): the body is refused as unparseable."""
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("duplicate key")
    return d


def parse_sql_body(raw):
    """CrateDB's SQLRequestParser: (stmt, args or None, bulk_args or None)."""
    if not raw:
        raise CrateError(4000, "SQLParseException[Missing request body]")
    text = raw.decode("utf-8", "replace")
    cant = CrateError(4000, f"SQLParseException[Can't parse [{text}]. Expecting payload with "
                            "`stmt` string and `args` or `bulk_args` arrays]")
    try:
        req = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, UnicodeDecodeError):
        raise cant from None
    stmt = args = bulk = None
    if isinstance(req, dict):
        for key, v in req.items():
            if key == "stmt":
                if isinstance(v, (dict, list)):
                    raise CrateError(5000, "SQLParseSourceException[Field [stmt] has an "
                                           "invalid value]")
                v = "" if v is None else (json.dumps(v) if not isinstance(v, str) else v)
                if not v:
                    raise CrateError(5000, "SQLParseSourceException[Field [stmt] has no "
                                           "value]")
                stmt = v
            elif key == "args":
                if not isinstance(v, list):
                    raise CrateError(5000, "SQLParseSourceException[`args` must start with "
                                           f"an array, not `{_json_token(v)}`]")
                args = v
            elif key == "bulk_args":
                if not isinstance(v, list):
                    raise CrateError(5000, "SQLParseSourceException[Field [bulk_args] has an "
                                           "invalid value]")
                for a in v:
                    if not isinstance(a, list):
                        raise CrateError(5000, "SQLParseSourceException[`bulk_args` must "
                                               "contain a list of `args` (values list). Got "
                                               f"unexpected: {_json_token(a)}]")
                bulk = v
            else:
                raise cant
    if stmt is None:
        raise CrateError(5000, "SQLParseSourceException[Field [stmt] is missing]")
    if args and bulk:
        raise CrateError(4000, "SQLParseException[request body contains args and bulk_args. "
                               "It's forbidden to provide both]")
    return stmt, args, bulk


def query_flag(query, name):
    """CrateDB's paramContainFlag: `?name`, `?name=` or `?name=true`, exactly once."""
    return query.get(name) in ([""], ["true"])


KILL_STMT = re.compile(r"^\s*kill\s+(all|'[^']*')\s*;?\s*$", re.I)
SET_STMT = re.compile(r"^\s*set\s", re.I)


# ---------------------------------------------------------------------------------------------
# request bodies

class BodyReader:
    """The request body as a stream of (decoded) chunks: Content-Length or chunked, then
    gzip/deflate undone when Content-Encoding says so (any other value: as it is). `done`
    once the raw body is read."""

    def __init__(self, handler):
        self.h = handler
        self.rfile = handler.rfile
        te = (handler.headers.get("Transfer-Encoding") or "").lower()
        cl = handler.headers.get("Content-Length")
        self.chunked = "chunked" in te
        if self.chunked:
            self.remaining = None
            self.chunk_left = 0
        elif cl is not None:
            try:
                self.remaining = int(cl)
                if self.remaining < 0:
                    raise ValueError
            except ValueError:
                raise HttpError(400, close=True)
        else:
            self.remaining = 0
        self.done = (not self.chunked) and self.remaining == 0
        enc = (handler.headers.get("Content-Encoding") or "identity").strip().lower()
        self.encoding = enc
        self.decoder = None
        if enc in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._deflate_pending = enc == "deflate"
        self._gzip_checked = self.decoder is None
        self.discard_all = False

    @property
    def expected_length(self):
        return None if self.chunked else self.remaining

    @property
    def transformed(self):
        """Chunked or compressed: its size is known only once read."""
        return self.chunked or self.decoder is not None or self._deflate_pending

    def _continue(self):
        self.h.send_continue()

    def _raw_chunk(self):
        """The next piece of the raw body, b"" at its end."""
        if self.done:
            return b""
        self._continue()
        if not self.chunked:
            data = self.rfile.read(min(CHUNK, self.remaining))
            if not data:
                raise HttpError(400, close=True)
            self.remaining -= len(data)
            if self.remaining == 0:
                self.done = True
            return data
        if self.chunk_left == 0:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise HttpError(400, close=True)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise HttpError(400, close=True)
            if size == 0:
                while True:  # trailers, up to the empty line
                    t = self.rfile.readline(8192)
                    if not t:
                        raise HttpError(400, close=True)
                    if t in (b"\r\n", b"\n"):
                        break
                self.done = True
                return b""
            self.chunk_left = size
        data = self.rfile.read(min(CHUNK, self.chunk_left))
        if not data:
            raise HttpError(400, close=True)
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise HttpError(400, close=True)
        return data

    def chunks(self):
        """Decoded chunks until the end of the body."""
        while True:
            raw = self._raw_chunk()
            if not raw:
                if self.decoder is not None:
                    tail = self.decoder.flush()
                    if tail:
                        yield tail
                return
            if self._deflate_pending:
                # "deflate" is zlib-wrapped by the RFC, raw deflate by some clients.
                zlib_ok = len(raw) >= 2 and (raw[0] & 0x0F) == 8 and \
                    ((raw[0] << 8) | raw[1]) % 31 == 0
                self.decoder = zlib.decompressobj(zlib.MAX_WBITS if zlib_ok else -zlib.MAX_WBITS)
                self._deflate_pending = False
            if not self._gzip_checked:
                self._gzip_checked = True
                if raw[:2] != b"\x1f\x8b"[:len(raw[:2])]:
                    raise HttpError(500, "Input is not in the GZIP format", close=True)
            if self.decoder is not None:
                try:
                    raw = self.decoder.decompress(raw)
                except zlib.error as e:
                    raise HttpError(500, str(e), close=True)
                if not raw:
                    continue
            yield raw

    def read_all(self, limit):
        """The whole decoded body; 413 over limit, as Netty's HttpObjectAggregator answers."""
        if self.expected_length is not None and self.expected_length > limit and \
                not self.transformed:
            self.discard_all = True  # the body, if it comes, is read away: the connection stays
            raise HttpError(413)  # answered before the body is read
        parts = []
        total = 0
        for c in self.chunks():
            total += len(c)
            if total > limit:
                raise HttpError(413, close_header=True)
            parts.append(c)
        return b"".join(parts)

    def drain(self):
        """Read away what is left of the raw body; False when it is too much to bother."""
        total = 0
        while not self.done:
            if self.expected_length is not None and self.expected_length > DRAIN_LIMIT and \
                    not self.discard_all:
                return False
            total += len(self._raw_chunk())
            if total > DRAIN_LIMIT and not self.discard_all:
                return False
        return True


# ---------------------------------------------------------------------------------------------
# authentication

class AuthFailed(Exception):
    """A failed authentication: status (401 or 500) and CrateDB's plain-text message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _b64url_decode(s):
    if len(s) % 4 == 1 or not re.fullmatch(r"[A-Za-z0-9_-]*=*", s):
        raise ValueError("not base64url")
    s = s + "=" * (-len(s) % 4)
    return base64.urlsafe_b64decode(s.encode())


def _java_b64decode(s):
    """java.util.Base64.getDecoder().decode(s), with its messages."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = s.rstrip("=")
    for c in body:
        if c not in alphabet:
            raise AuthFailed(500, f"Illegal base64 character {ord(c):x}")
    if len(body) % 4 == 1:
        raise AuthFailed(500, "Last unit does not have enough valid bits")
    if "=" in s and len(s) % 4:
        raise AuthFailed(500, "Input byte array has wrong 4-byte ending unit")
    return base64.b64decode(body + "=" * (-len(body) % 4))


def decode_jwt(token):
    """java-jwt's JWT.decodeJwt: (header, payload, signing input, signature) or AuthFailed
    (500, as CrateDB answers an undecodable token)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthFailed(500, f"The token was expected to have 3 parts, but got {len(parts)}.")
    h64, p64, s64 = parts
    try:
        hraw, praw = _b64url_decode(h64), _b64url_decode(p64)
        sig = _b64url_decode(s64)
    except (ValueError, TypeError):
        raise AuthFailed(500, "The input is not a valid base 64 encoded string.") from None
    objs = []
    for raw in (hraw, praw):
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            obj = None
        if not isinstance(obj, dict):
            raise AuthFailed(500, f"The string '{raw.decode('utf-8', 'replace')}' doesn't "
                                  "have a valid JSON format.")
        objs.append(obj)
    header, payload = objs
    for claim in ("exp", "nbf", "iat"):
        v = payload.get(claim)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise AuthFailed(500, f"The claim '{claim}' contained a non-numeric date value.")
    return header, payload, f"{h64}.{p64}".encode(), sig


def check_jwt(token, secret, user):
    """Whether token is an HS256 JWT signed with secret for user (claim username or sub)."""
    try:
        h64, p64, s64 = token.split(".")
        header = json.loads(_b64url_decode(h64))
        payload = json.loads(_b64url_decode(p64))
        sig = _b64url_decode(s64)
    except (ValueError, TypeError):
        return False
    if not isinstance(header, dict) or header.get("alg") != "HS256" or \
            not isinstance(payload, dict):
        return False
    want = hmac.new(secret.encode(), f"{h64}.{p64}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(want, sig):
        return False
    exp = payload.get("exp")
    if exp is not None and (not isinstance(exp, (int, float)) or exp < time.time()):
        return False
    return payload.get("username", payload.get("sub")) == user


def make_jwt(secret, claims):
    """An HS256 JWT (for tests)."""
    def enc(obj):
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    head = enc({"alg": "HS256", "typ": "JWT"}) + "." + enc(claims)
    sig = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def _instant(seconds):
    """java.time.Instant.toString() of a JWT date (whole seconds, as java-jwt reads them)."""
    t = datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Jwks:
    """CrateDB's CachingJwkProvider: the JWKS at the issuer URL (or a file), kept for the
    answer's Cache-Control max-age (not at all without one)."""

    def __init__(self, iss, path=None, cafile=None):
        self.url = iss if iss.startswith("http") else "https://" + iss
        self.path = path
        self.cafile = cafile
        self._cache = None  # (expires monotonic, {kid: jwk})
        self._lock = threading.Lock()

    def get(self, kid):
        with self._lock:
            now = time.monotonic()
            keys = self._cache[1] if self._cache and now < self._cache[0] else None
            if keys is None:
                keys, ttl = self._load()
                if ttl > 0:
                    self._cache = (now + ttl, keys)
        if kid not in keys:
            raise ValueError(f"No key found in {self.url} with kid {kid}")
        return keys[kid]

    def _load(self):
        ttl = 0
        try:
            if self.path:
                with open(self.path, "rb") as f:
                    doc = json.load(f)
            else:
                ctx = ssl.create_default_context(cafile=self.cafile)
                rq = urllib.request.Request(self.url, headers={"Accept": "application/json"})
                with urllib.request.urlopen(rq, timeout=10, context=ctx) as r:
                    doc = json.load(r)
                    cc = (r.headers.get("Cache-Control") or "").strip()
                    if cc.startswith("max-age="):
                        try:
                            ttl = max(int(cc[cc.index("=") + 1:]), 0)
                        except ValueError:
                            ttl = 0
        except (OSError, ValueError):
            raise ValueError(f"Cannot obtain jwks from url {self.url}") from None
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not keys:
            raise ValueError(f"No keys found in {self.url}")
        return {k.get("kid"): k for k in keys if isinstance(k, dict)}, ttl


def _rsa_verify(jwk, alg, signing_input, sig):
    """Whether sig is an RSASSA-PKCS1-v1_5 signature of signing_input by the JWK's key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    n = int.from_bytes(_b64url_decode(jwk["n"]), "big")
    e = int.from_bytes(_b64url_decode(jwk["e"]), "big")
    key = rsa.RSAPublicNumbers(e, n).public_key()
    digest = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}[alg]()
    try:
        key.verify(sig, signing_input, padding.PKCS1v15(), digest)
        return True
    except InvalidSignature:
        return False


def verify_rs_jwt(header, payload, signing_input, sig, jwks, iss, name, aud):
    """CrateDB's JWTAuthenticationMethod (java-jwt underneath): None, or the Reason."""
    try:
        jwk = jwks.get(header.get("kid"))
    except ValueError as e:
        return str(e)
    if jwk.get("kty") != "RSA" or "n" not in jwk or "e" not in jwk:
        return "Only RSA algorithm is supported for JWT"
    alg = jwk.get("alg")
    if alg is not None:
        if header.get("alg") is not None and header.get("alg") != alg:
            return f"JWT algorithm {header.get('alg')} doesn't match public key algorithm {alg}"
        if alg not in ("RS256", "RS384", "RS512"):
            return f"Unsupported algorithm {alg}"
    alg = alg or "RS256"
    if header.get("alg") != alg:
        return "The provided Algorithm doesn't match the one defined in the JWT's Header."
    if not _rsa_verify(jwk, alg, signing_input, sig):
        return ("The Token's Signature resulted invalid when verified using the Algorithm: "
                f"SHA{alg[2:]}withRSA")
    if payload.get("iss") != iss:
        return "The Claim 'iss' value doesn't match the required issuer."
    if payload.get("username") != name:
        return "The Claim 'username' value doesn't match the required one."
    if "aud" not in payload:
        return "The Claim 'aud' is not present in the JWT."
    auds = payload["aud"] if isinstance(payload["aud"], list) else [payload["aud"]]
    if aud not in auds:
        return "The Claim 'aud' value doesn't contain the required audience."
    now = int(time.time())
    if payload.get("exp") is not None and now > int(payload["exp"]):
        return f"The Token has expired on {_instant(payload['exp'])}."
    for claim in ("nbf", "iat"):
        if payload.get(claim) is not None and now < int(payload[claim]):
            return f"The Token can't be used before {_instant(payload[claim])}."
    return None


# ---------------------------------------------------------------------------------------------
# the server

BLOB_PATH = re.compile(r"^/_blobs/([^_/][^/]*)/([0-9a-f]{40})$")  # CrateDB's BLOBS_PATTERN
SAFE_TABLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
BLOB_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")  # CrateDB's CONTENT_RANGE_PATTERN
NEXT_REQUEST = re.compile(rb"^[A-Z]{1,16}( |$)")  # the start of a request line
BLOB_GET_HEADERS = {"Accept-Ranges": "bytes", "Expires": "Thu, 31 Dec 2037 23:59:59 GMT",
                    "Cache-Control": "max-age=315360000"}


def is_browser(agent):
    """CrateDB's Headers.isBrowser: the User-Agent's first word is a browser engine's."""
    if agent is None:
        return False
    return BROWSER_AGENT.fullmatch(re.split(r"\s+", agent)[0]) is not None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "crate_http.py"

    def version_string(self):
        return self.server_version

    # -- connection life

    def setup(self):
        super().setup()
        self.session = None
        self.session_pid = None
        self._notices = []
        self._pending_body = None
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        self.server.track(self.connection, False)
        if self.session is not None:
            try:
                self.session.close()
            except Exception:
                pass
            self.session = None

    def handle_one_request(self):
        # Waiting for a request line: the idle limit applies (None: wait for ever).
        self.connection.settimeout(self.server.idle_close)
        self._continue_pending = False
        self._expects_continue = False
        self._body = None
        if self._pending_body is not None and not self._skip_unasked_body():
            self.close_connection = True
            return
        super().handle_one_request()

    def _skip_unasked_body(self):
        """After an answer to a request that waited for 100 Continue (a 307, 413, ...), the
        connection stays open, as Netty keeps it: a client that sent the body anyway has it
        read away; one that did not sends its next request. False: close."""
        n, self._pending_body = self._pending_body, None
        try:
            head = self.rfile.peek(16)[:16]
        except OSError:
            return False
        if not head:
            return False
        if NEXT_REQUEST.match(head):
            return True
        while n > 0:
            try:
                data = self.rfile.read(min(CHUNK, n))
            except OSError:
                return False
            if not data:
                return False
            n -= len(data)
        return True

    def parse_request(self):
        self.connection.settimeout(IO_TIMEOUT)  # a request has started
        return super().parse_request()

    def handle_expect_100(self):
        # Send 100 Continue only when (and if) the body is read: a 401, 307 or 413 is
        # answered without making the client send the body.
        self._continue_pending = True
        self._expects_continue = True
        return True

    def send_continue(self):
        if self._continue_pending:
            self._continue_pending = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            sys.stderr.write("crate_http %s %s\n" % (self.address_string(), fmt % args))

    # -- responses (as Netty writes them: lower-case names, no Server or Date header)

    def send_response(self, code, message=None):
        self.log_request(code)
        self.send_response_only(code, message)

    def send_header(self, keyword, value):
        super().send_header(keyword.lower(), value)

    def respond(self, status, body=b"", ctype=JSON_TYPE, headers=None, close=False,
                close_header=False, head=False, length=None):
        """Status, headers and body in one write (body may be omitted for HEAD/streaming).
        ctype None: no Content-Type; close: close after it, close_header: and say so."""
        if close or close_header:
            self.close_connection = True
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if status != 204:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if close_header:
            self.send_header("Connection", "close")
        if self.session_pid is not None:
            self.send_header(SESSION_HEADER, str(self.session_pid))
        self._headers_buffer.append(b"\r\n")
        if body and not head:
            self._headers_buffer.append(body)
        self.flush_headers()

    def respond_json(self, status, obj, **kw):
        self.respond(status, json.dumps(obj, separators=(",", ":")).encode(), **kw)

    def respond_crate_error(self, err, with_trace):
        self.respond_json(err.status, err.body(with_trace))

    # -- dispatch (CrateDB's pipeline: authentication, then /_sql, /_blobs, the rest)

    def _dispatch(self):
        self._body = None
        try:
            self._body = BodyReader(self)
            self.authenticate()
            uri = self.path
            if uri.startswith("/_sql"):
                self.sql(uri)
            elif uri.startswith("/_blobs"):
                self.blob(uri)
            else:
                self.main_or_site(uri)
        except HttpError as e:
            self.respond(e.status, e.body, ctype=e.ctype, headers=e.headers, close=e.close,
                         close_header=e.close_header, head=self.command == "HEAD")
        except (OSError, ssl.SSLError):
            self.close_connection = True
            return
        except Exception as e:  # a bug here: say so, keep serving
            traceback.print_exc()
            try:
                self.respond(500, f"internal error in crate_http.py: {e}\n",
                             ctype="text/plain; charset=UTF-8", close=True)
            except OSError:
                pass
        finally:
            self._finish_body()

    def _finish_body(self):
        """Leave the connection at the next request: read away an unread body, or close."""
        b = self._body
        if b is None or b.done:
            return
        if self._continue_pending:  # the client waits for 100 Continue: it sends no body
            if b.chunked or b.remaining is None or (b.remaining > DRAIN_LIMIT and
                                                    not b.discard_all):
                self.close_connection = True
            else:
                self._pending_body = b.remaining  # unless it sends it anyway
            return
        try:
            if not b.drain():
                self.close_connection = True
        except (HttpError, OSError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _dispatch

    # -- authentication (CrateDB's HttpAuthUpstreamHandler, on every request)

    def authenticate(self):
        try:
            self._authenticate()
        except AuthFailed as e:
            if e.status == 401:  # sendUnauthorized: the message, a newline, the realm
                raise HttpError(401, e.message + "\n", headers={"WWW-Authenticate": REALM},
                                close=True)
            raise HttpError(e.status, e.message, close=True)  # exceptionCaught's send500

    def _authenticate(self):
        srv = self.server
        peer = self.client_address[0]

        def no_entry(user):
            return AuthFailed(401, f'No valid auth.host_based.config entry found for host '
                                   f'"{peer}", user "{user}", protocol "http". Did you enable '
                                   'TLS in your client?')

        auth = self.headers.get("Authorization")
        if auth is None:  # CrateDB's auth.trust.http_default_user, without a password
            raise no_entry("crate")
        words = [w for w in auth.split(" ") if w]
        if not words:
            raise no_entry("null")
        if len(words) < 2:
            raise AuthFailed(500, AUTH_FORMAT)
        scheme, value = words[0].lower(), words[1]
        if scheme == "basic":
            user, _, password = _java_b64decode(value).decode("utf-8", "replace").partition(":")
            if not password:  # only the trust method would take it; there is none
                raise no_entry(user)
            if hmac.compare_digest(user.encode(), srv.user.encode()) and \
                    hmac.compare_digest(password.encode(), srv.password.encode()):
                return
            raise AuthFailed(401, f'password authentication failed for user "{user}"')
        if scheme != "bearer":
            raise AuthFailed(500, "Only basic or bearer HTTP Authentication schemes are allowed.")
        header, payload, signing_input, sig = decode_jwt(value)
        if srv.jwt_secret and header.get("alg") == "HS256":  # test-only
            if check_jwt(value, srv.jwt_secret, srv.user):
                return
            raise AuthFailed(401, f"jwt authentication failed for user {srv.user}. Reason: "
                                  "the HS256 token is not valid")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthFailed(500, "The JWT token must contain a public key id (kid)")
        if not isinstance(payload.get("iss"), str) or not payload["iss"]:
            raise AuthFailed(500, "The JWT token must contain an issuer (iss)")
        if not isinstance(payload.get("username"), str) or not payload["username"]:
            raise AuthFailed(500, "The JWT token must contain a 'username' claim")
        if srv.jwks is None or payload["iss"] != srv.jwt_iss or \
                payload["username"] != srv.jwt_username:
            raise no_entry("null")  # no user has these jwt properties
        reason = verify_rs_jwt(header, payload, signing_input, sig, srv.jwks, srv.jwt_iss,
                               srv.jwt_username, srv.jwt_aud)
        if reason:
            raise AuthFailed(401, f"jwt authentication failed for user {srv.user}. "
                                  f"Reason: {reason}")

    # -- the SQL session of this connection

    def get_session(self):
        if self.session is not None and not self.session.closed:
            return self.session
        self.session = None
        self.session_pid = None
        schema = self.headers.get("Default-Schema") or "doc"
        try:
            conn = psycopg.connect(self.server.pg, autocommit=True)
        except psycopg.Error as e:
            raise CrateError(5030, f"UnavailableShardsException[cannot reach PostgreSQL: "
                                   f"{str(e).strip()}]")
        try:
            conn.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(schema)))
        except psycopg.Error as e:
            conn.close()
            raise crate_error(e)
        conn.add_notice_handler(lambda d: self._notices.append(d.message_primary or ""))
        self.session = conn
        self.session_pid = conn.info.backend_pid
        return conn

    # -- GET / and the rest (CrateDB's MainAndStaticFileHandler)

    def main_or_site(self, uri):
        low = uri.strip().lower()
        if low in ("/admin", "/_plugin/crate-admin"):
            raise HttpError(307, headers={"Location": "/"})
        if uri == "/":
            accept = self.headers.get("Accept")
            if (accept is not None and "application/json" in accept) or \
                    not is_browser(self.headers.get("User-Agent")):
                return self.node_info()
        if self.command != "GET":
            raise HttpError(403, f"POST method is not allowed for [{uri}]")
        path = uri.lstrip("/") or "index.html"
        if path == "index.html":
            return self.respond(200, ADMIN_UI, ctype="text/html")
        raise HttpError(404, f"Requested file [{path}] was not found")

    def node_info(self):
        if self.command == "HEAD":
            return self.respond(200, ctype=None)
        srv = self.server
        info = {"ok": True, "status": 200}
        if srv.node_name:
            info["name"] = srv.node_name
        info["cluster_name"] = srv.cluster_name
        info["version"] = {
            "number": CRATE_VERSION,
            "build_hash": "0000000000000000000000000000000000000000",
            "build_timestamp": "2024-01-01T00:00:00Z",
            "build_snapshot": False,
            "lucene_version": "9.11.1",
        }
        # Jackson's pretty printer: 2 spaces, `"key" : value`, a newline at the end
        text = json.dumps(info, indent=2, separators=(",", " : ")) + "\n"
        self.respond(200, text.encode(), ctype="application/json")

    # -- /_sql

    def sql(self, uri):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query, keep_blank_values=True)
        with_types = query_flag(query, "types")
        with_trace = query_flag(query, "error_trace")
        try:
            raw = self._body.read_all(SQL_BODY_LIMIT)
            t0 = time.monotonic()
            conn = self.get_session()  # CrateDB makes the session before it parses the body
            stmt, args, bulk = parse_sql_body(raw)
            check_one_statement(stmt)
            if args is not None or bulk is None:
                out = self.run_one(conn, stmt, args or [], with_types)
                out["duration"] = round((time.monotonic() - t0) * 1000, 3)
            else:
                results = self.run_bulk(conn, stmt, bulk)
                out = {"cols": [], "duration": round((time.monotonic() - t0) * 1000, 3),
                       "results": results}
            self.respond_json(200, out)
        except CrateError as e:
            self.respond_crate_error(e, with_trace)

    def _execute(self, conn, stmt, args):
        query, params = translate_placeholders(stmt, args)
        params = [_adapt_arg(a) for a in params]
        self._notices = []
        state = self.server.state
        state.running(self.session_pid, True)
        try:
            return conn.execute(query, params)
        except psycopg.Error as e:
            if conn.closed or conn.broken:  # the session is gone: the next request makes one
                self.session = None
                self.session_pid = None
            raise crate_error(e) from None
        finally:
            state.running(self.session_pid, False)

    def run_one(self, conn, stmt, args, with_types):
        m = KILL_STMT.match(stmt)
        if m:
            if m.group(1).lower() == "all":
                self.server.state.kill_all(conn, self.session_pid)
            return self._no_result(0, with_types)
        try:
            cur = self._execute(conn, stmt, args)
        except CrateError as e:
            if e.sqlstate == "42704" and SET_STMT.match(stmt):  # CrateDB ignores the setting
                return self._no_result(0, with_types)
            raise
        if cur.description is not None:
            rows = [[to_json_value(v) for v in row] for row in cur.fetchall()]
            out = {"cols": [d.name for d in cur.description]}
            if with_types:
                out["col_types"] = [crate_type(d.type_code) for d in cur.description]
            out["rows"] = rows
            out["rowcount"] = len(rows)
            return out
        rc = cur.rowcount
        if rc is None or rc < 0:
            tag = (cur.statusmessage or "").split(" ")[0].upper()
            skipped = any(n.endswith(", skipping") for n in self._notices)
            rc = 1 if tag in ("CREATE", "DROP", "ALTER") and not skipped else 0
        return self._no_result(rc, with_types)

    @staticmethod
    def _no_result(rowcount, with_types):
        """A statement without a result set: CrateDB answers cols [] and a row count."""
        out = {"cols": []}
        if with_types:
            out["col_types"] = []
        out["rows"] = [[]]
        out["rowcount"] = rowcount
        return out

    def run_bulk(self, conn, stmt, bulk_args):
        results = []
        for args in bulk_args:
            try:
                cur = self._execute(conn, stmt, args)
            except CrateError as e:
                if not is_row_error(e) or conn.closed:
                    raise
                results.append({"rowcount": -2, "error": {"code": e.code, "message": e.message}})
                continue
            if cur.description is not None:
                raise CrateError(4004, "UnsupportedFeatureException[Bulk operations for "
                                       "statements that return result sets is not supported]")
            results.append({"rowcount": max(cur.rowcount, 0) if cur.rowcount is not None else 0})
        return results

    # -- /_blobs/<table>/<digest> (CrateDB's HttpBlobHandler)

    def blob(self, uri):
        srv = self.server
        method = self.command
        m = BLOB_PATH.match(uri)
        if not m:
            raise HttpError(404, close_header=self.close_connection)
        table, digest = m.groups()
        if not SAFE_TABLE.match(table):
            raise HttpError(404, f"Relation 'blob.{table}' unknown")
        # CrateDB redirects GET and HEAD, and a PUT only when it asks for 100-continue (one
        # without Expect is stored by whichever node it reaches)
        if method in ("GET", "HEAD") or (method == "PUT" and self._expects_continue):
            target = srv.blob_redirect(self)
            if target:
                raise HttpError(307, headers={"Location": target + uri},
                                close_header=self.close_connection)
        directory = os.path.join(srv.blob_dir, table)
        path = os.path.join(directory, digest)
        if method == "PUT":
            return self.blob_put(directory, path, digest)
        if method in ("GET", "HEAD"):
            return self.blob_get(path, head=method == "HEAD")
        if method == "DELETE":
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise HttpError(404, close_header=self.close_connection)
            return self.respond(204, ctype=None, close_header=self.close_connection)
        raise HttpError(405, close_header=self.close_connection)

    def redirected(self):
        if (self.headers.get(REDIRECTED_HEADER) or "").strip() in ("1", "true", "yes"):
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        return host == self.server.redirect_netloc

    def blob_put(self, directory, path, digest):
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=directory)
        try:
            sha = hashlib.sha1()
            with os.fdopen(fd, "wb") as f:
                for chunk in self._body.chunks():
                    sha.update(chunk)
                    f.write(chunk)
            if os.path.exists(path):
                raise HttpError(409, close_header=self.close_connection)
            if sha.hexdigest() != digest:
                raise HttpError(400, close_header=self.close_connection)
            try:
                os.link(tmp, path)  # atomic, and fails when a concurrent PUT won
            except FileExistsError:
                raise HttpError(409, close_header=self.close_connection)
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self.respond(201, ctype=None, close_header=self.close_connection)

    def blob_get(self, path, head):
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise HttpError(404, close_header=self.close_connection)
        with f:
            size = os.fstat(f.fileno()).st_size
            if head:
                if size < 1:  # CrateDB's head(): an empty blob is not found
                    raise HttpError(404, close_header=self.close_connection)
                return self.respond(200, ctype=None, headers=BLOB_GET_HEADERS, head=True,
                                    length=size)
            start, end, status = 0, size - 1, 200
            headers = {}
            rng = self.headers.get("Range")
            m = BLOB_RANGE.match(rng) if rng is not None else None
            if m:  # any other form of Range: the whole blob, as CrateDB answers it
                start = int(m.group(1))
                if start > size:
                    raise HttpError(416, close_header=self.close_connection)
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            headers.update(BLOB_GET_HEADERS)
            length = max(end - start + 1, 0)
            self.respond(status, ctype=None, headers=headers, head=True, length=length,
                         close_header=self.close_connection)
            f.seek(start)
            left = length
            while left > 0:
                data = f.read(min(CHUNK, left))
                if not data:
                    self.close_connection = True  # truncated under us
                    return
                self.wfile.write(data)
                left -= len(data)


class State:
    """What a server and its blob port share: the blob directory and the running sessions."""

    def __init__(self, blob_dir=None):
        self.temp_blob_dir = None
        if blob_dir:
            os.makedirs(blob_dir, exist_ok=True)
            self.blob_dir = blob_dir
        else:
            self.temp_blob_dir = self.blob_dir = tempfile.mkdtemp(prefix="crate-blobs-")
        self._running = {}
        self._lock = threading.Lock()

    def running(self, pid, on):
        if pid is None:
            return
        with self._lock:
            n = self._running.get(pid, 0) + (1 if on else -1)
            if n > 0:
                self._running[pid] = n
            else:
                self._running.pop(pid, None)

    def kill_all(self, conn, own_pid):
        """KILL ALL: cancel what every other session runs (PostgreSQL's pg_cancel_backend)."""
        with self._lock:
            pids = [p for p in self._running if p != own_pid]
        for pid in pids:
            try:
                conn.execute("SELECT pg_cancel_backend(%s)", [pid])
            except psycopg.Error:
                pass

    def cleanup(self):
        if self.temp_blob_dir:
            shutil.rmtree(self.temp_blob_dir, ignore_errors=True)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, opts, tls, state, jwks=None, blob_node=False):
        self.opts = opts
        self.tls = tls
        self.state = state
        self.blob_dir = state.blob_dir
        self.blob_node = blob_node
        self.user = opts.user
        self.password = opts.password
        self.jwt_secret = opts.jwt_secret
        self.jwks = jwks
        self.jwt_iss = opts.jwt_iss
        self.jwt_username = opts.jwt_username or opts.user
        self.jwt_aud = opts.jwt_aud or CLUSTER_ID
        self.pg = opts.pg
        self.idle_close = opts.idle_close
        self.quiet = opts.quiet
        self.node_name = opts.node_name
        self.cluster_name = opts.cluster_name
        self.redirect_to = opts.redirect_blobs_to
        self.redirect_port = opts.redirect_blobs_to_port
        self.redirect_netloc = None
        if self.redirect_to:
            u = urllib.parse.urlsplit(self.redirect_to)
            port = u.port or (443 if u.scheme == "https" else 80)
            host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
            self.redirect_netloc = f"{host}:{port}".lower()
        self._conns = set()
        self._lock = threading.Lock()
        super().__init__(addr, Handler)

    def server_bind(self):
        # HTTPServer's would look up the host's FQDN (DNS) for nothing.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def blob_redirect(self, handler):
        """Where a blob GET/HEAD/PUT-with-Expect is sent (None: served here)."""
        if self.blob_node:
            return None
        if self.redirect_port:
            ip = self.server_address[0]
            host = f"[{ip}]" if ":" in ip else ip
            return f"{'https' if self.tls else 'http'}://{host}:{self.redirect_port}"
        if self.redirect_to and not handler.redirected():
            return self.redirect_to.rstrip("/")
        return None

    def track(self, sock, alive):
        with self._lock:
            (self._conns.add if alive else self._conns.discard)(sock)

    def finish_request(self, request, client_address):
        """In the connection's thread: the TLS handshake, then HTTP."""
        if self.tls is not None:
            request.settimeout(HANDSHAKE_TIMEOUT)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                if not self.quiet:
                    sys.stderr.write(f"crate_http {client_address[0]} TLS handshake: {e}\n")
                request.close()
                return
        try:
            self.RequestHandlerClass(request, client_address, self)
        finally:
            try:
                request.close()
            except OSError:
                pass

    def shutdown_request(self, request):
        # The TLS socket was closed in finish_request; closing the plain one again is fine.
        try:
            request.close()
        except OSError:
            pass

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def close_all(self):
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                socket.socket.shutdown(s, socket.SHUT_RDWR)  # not SSLSocket's: wakes readers
            except OSError:
                pass


def _ip_literal(host):
    try:
        ipaddress.ip_address((host or "").strip("[]"))
        return True
    except ValueError:
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4200, help="0: any free port (see --ready-file)")
    ap.add_argument("--cert", help="server certificate (PEM); without --cert: plain HTTP")
    ap.add_argument("--key", help="its private key (PEM)")
    ap.add_argument("--pg", required=True, help="libpq conninfo of the PostgreSQL behind it")
    ap.add_argument("--user", default="crate")
    ap.add_argument("--password", default="")
    ap.add_argument("--jwt-iss", metavar="ISS",
                    help="--user's jwt iss: accept RS256/384/512 Bearer JWTs checked against "
                         "the JWKS at this URL (or --jwks)")
    ap.add_argument("--jwt-username", metavar="NAME",
                    help="--user's jwt username (the token's username claim; default --user)")
    ap.add_argument("--jwt-aud", metavar="AUD", help=f"--user's jwt aud (default {CLUSTER_ID})")
    ap.add_argument("--jwks", metavar="FILE", help="read the JWKS from FILE, not from ISS")
    ap.add_argument("--jwks-ca", metavar="PEM", help="CA to verify an https ISS with")
    ap.add_argument("--jwt-secret",
                    help="test-only: also accept HS256 Bearer JWTs signed with this secret")
    ap.add_argument("--ready-file", help="written (with the port number) once listening")
    ap.add_argument("--idle-close", type=float, metavar="SECONDS",
                    help="close keep-alive connections idle this long")
    ap.add_argument("--redirect-blobs-to-port", type=int, metavar="PORT",
                    help="also listen on PORT as the node holding the blobs; blob GET/HEAD/"
                         "PUT-with-Expect on the main port answer 307 to it")
    ap.add_argument("--redirect-blobs-to", metavar="URL",
                    help="answer blob GET/HEAD/PUT-with-Expect with 307 to URL + path (an IP "
                         "literal host; see the docstring)")
    ap.add_argument("--blob-dir", help="where blobs live (default: a temp dir, removed at exit)")
    ap.add_argument("--node-name", default="crate-http-test")
    ap.add_argument("--cluster-name", default="crate")
    ap.add_argument("--quiet", action="store_true", help="no request log on stderr")
    opts = ap.parse_args(argv)
    if opts.redirect_blobs_to and \
            not _ip_literal(urllib.parse.urlsplit(opts.redirect_blobs_to).hostname):
        print("crate_http: --redirect-blobs-to needs an IP literal host, as CrateDB's "
              "Location has", file=sys.stderr)
        return 2
    if opts.redirect_blobs_to and opts.redirect_blobs_to_port:
        print("crate_http: --redirect-blobs-to and --redirect-blobs-to-port exclude each other",
              file=sys.stderr)
        return 2
    if (opts.jwks or opts.jwt_username or opts.jwt_aud) and not opts.jwt_iss:
        print("crate_http: --jwks, --jwt-username and --jwt-aud need --jwt-iss", file=sys.stderr)
        return 2
    jwks = Jwks(opts.jwt_iss, opts.jwks, opts.jwks_ca) if opts.jwt_iss else None

    tls = None
    if opts.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(opts.cert, opts.key)
        tls.set_alpn_protocols(["http/1.1"])
    if ":" in opts.listen:
        Server.address_family = socket.AF_INET6
    state = State(opts.blob_dir)
    servers = []
    for port, blob_node in ((opts.port, False), (opts.redirect_blobs_to_port, True)):
        if blob_node and not port:
            continue
        try:
            servers.append(Server((opts.listen, port), opts, tls, state, jwks, blob_node))
        except OSError as e:
            print(f"crate_http: cannot listen on {opts.listen}:{port}: {e.strerror}",
                  file=sys.stderr)
            for s in servers:
                s.server_close()
            state.cleanup()
            return 2
    srv = servers[0]

    stopping = threading.Event()

    def on_signal(signum, frame):
        if not stopping.is_set():
            stopping.set()
            for s in servers:
                threading.Thread(target=s.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
    port = srv.server_address[1]
    if opts.ready_file:
        tmp = opts.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, opts.ready_file)
    print("ready", flush=True)
    if not opts.quiet:
        scheme = "https" if tls else "http"
        sys.stderr.write(f"crate_http listening on {scheme}://{opts.listen}:{port}\n")
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        for s in servers:
            if s is not srv:
                s.shutdown()
            s.server_close()
            s.close_all()
        state.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
