#!/usr/bin/python3
"""A CrateDB-shaped HTTPS server (CrateDB's port 4200) in front of a PostgreSQL, for tests and
the demo. It answers `POST /_sql`, `GET /` and `/_blobs/<table>/<sha1>` the way CrateDB does,
closely enough to test an HTTP pooler/sidecar against it:

    /usr/bin/python3 tests/crate_http.py --listen 127.0.0.1 --port 4200 \\
        --cert DIR/ssl/server.crt --key DIR/ssl/server.key \\
        --pg "host=127.0.0.1 port=15432 dbname=doc user=crate password=secret" \\
        --user crate --password secret [--jwt-secret S] [--ready-file F] \\
        [--idle-close SECONDS] [--redirect-blobs-to URL] [--blob-dir DIR]

What it does, as CrateDB does:
- HTTP/1.1 with keep-alive (no pipelining, no HTTP/2); request bodies with Content-Length or
  chunked, and with `Content-Encoding: gzip` or `deflate`.
- Authentication on every request: `Authorization: Basic` with --user/--password, or
  `Authorization: Bearer <JWT>` (HS256, signed with --jwt-secret; its `username` or `sub` claim
  must be --user; `exp` is checked when present). A failed login is a plain-text 401 with
  `WWW-Authenticate: Basic realm="CrateDB Authenticator"` (CrateDB's string), and the connection
  is closed. `X-User` is ignored.
- One SQL session per TCP connection: the first authenticated request on a connection opens a
  PostgreSQL connection (autocommit) that lives as long as the TCP connection, so SET persists
  for the connection's life. `Default-Schema` is applied (as search_path) when the session is
  made, from the request that made it; later Default-Schema headers on that connection are
  ignored. Without the header the schema is `doc`, CrateDB's default.
- `POST /_sql` with `{"stmt", "args"}` or `{"stmt", "bulk_args"}`; `?types` adds `col_types`,
  `?error_trace` adds `error_trace` to errors. `?` and `$N` placeholders.
- `GET /` answers CrateDB's node-info JSON.
- Blobs `/_blobs/<table>/<sha1>`: PUT (201; 409 when present; 400 when the SHA-1 of the body is
  not the digest in the path), GET (200, or 206 for a single `Range`), HEAD, DELETE (204), 404
  when absent. Uploads are streamed to disk in 64 KiB chunks.

What differs from CrateDB (it is PostgreSQL underneath):
- The SQL is PostgreSQL's: ROLLBACK works, SET of an unknown setting is an error, etc.
- Error codes are derived from SQLSTATEs (42601 syntax -> 4000, 42P01 -> 4041, 42703 -> 4043,
  3F000 -> 4045, 23505 -> 4091, 42P07 -> 4093, 42501 -> 4011, other class 42/22 -> 4000,
  PostgreSQL unreachable -> 5030, anything else -> 5000); HTTP status = first three digits.
  Messages are `CrateDBExceptionName[PostgreSQL's message]`.
- col_types are mapped from PostgreSQL type OIDs to CrateDB's type ids (approximate; a type
  without a CrateDB counterpart is 4, text). Timestamps and dates are milliseconds since the
  epoch (a timestamp without time zone is taken as UTC), numeric is a JSON number (through
  float), uuid/inet/interval/time are strings.
- A statement without a result set answers `{"cols": [], "rows": [[]], "rowcount": N}`; when
  PostgreSQL gives no count (DDL, SET) N is 1 for CREATE/DROP/ALTER and 0 otherwise.
- Blob tables need not exist: any name made of [A-Za-z0-9_] is a blob table. Blobs live in
  --blob-dir (default: a temporary directory removed at exit).
- Every response carries `X-Test-Session: <PostgreSQL backend pid>` once the connection has a
  session, so tests can see which session served a request. Real CrateDB has no such header.
- --idle-close S closes a keep-alive connection after S seconds without a request (CrateDB
  does not by default; a cloud load balancer does).
- --redirect-blobs-to URL: blob GET, HEAD, and PUT with `Expect: 100-continue` answer
  `307 Temporary Redirect` with `Location: URL + path` (as a CrateDB node does for a blob that
  lives on another node; CrateDB's URL is https://<the node's publish IP>:<port>) unless the
  request is marked as already redirected: its Host header is the URL's host:port, or it
  carries `X-Test-Redirected: 1` (the header is test-only). A PUT without Expect is stored
  locally, as CrateDB stores it on any node; DELETE is served locally.
  Point URL at this same server under its other name (https://localhost:PORT when clients use
  127.0.0.1; the certificate covers both) or at a second instance sharing --blob-dir.

Prints "ready" on stdout and writes the port number to --ready-file once it listens; SIGTERM
or SIGINT stop it cleanly (exit 0). Exit status 2 when the port cannot be bound.
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
SESSION_HEADER = "X-Test-Session"
REDIRECTED_HEADER = "X-Test-Redirected"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class HttpError(Exception):
    """A response to send instead of going on: status, body, content type, extra headers."""

    def __init__(self, status, body=b"", ctype="text/plain; charset=UTF-8", headers=None,
                 close=False):
        super().__init__(status)
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.ctype = ctype
        self.headers = headers or {}
        self.close = close


class CrateError(Exception):
    """A CrateDB SQL error: code (4000 ...) and message; status is the code's first 3 digits."""

    def __init__(self, code, message, trace=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.trace = trace

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
    "42704": (4044, "TypeUnknownException"),
    "3F000": (4045, "SchemaUnknownException"),
    "42883": (4000, "UnsupportedFunctionException"),
    "23505": (4091, "DuplicateKeyException"),
    "42P07": (4093, "RelationAlreadyExists"),
    "42710": (4093, "RelationAlreadyExists"),
    "42501": (4011, "MissingPrivilegeException"),
    "57014": (5030, "JobKilledException"),
}


def crate_error(exc):
    """A psycopg exception as a CrateError."""
    state = getattr(exc, "sqlstate", None) or ""
    diag = getattr(exc, "diag", None)
    msg = (diag.message_primary if diag is not None and diag.message_primary else
           str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    trace = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if state in SQLSTATE_TO_CRATE:
        code, name = SQLSTATE_TO_CRATE[state]
    elif state[:2] in ("42", "22", "0A"):
        code, name = 4000, "SQLParseException" if state[:2] == "42" else "SQLActionException"
    elif state[:2] == "23":
        code, name = 4000, "SQLActionException"
    elif isinstance(exc, psycopg.ProgrammingError) and not state:  # psycopg's own checks
        code, name = 4000, "SQLParseException"
    elif isinstance(exc, psycopg.OperationalError) and not state:
        code, name = 5030, "UnavailableShardsException"
    else:
        code, name = 5000, "SQLActionException"
    return CrateError(code, f"{name}[{msg}]", trace)


def is_analysis_error(err):
    """An error that fails a whole bulk request (the statement itself is wrong) rather than
    one set of arguments."""
    return err.code in (4000, 4041, 4043, 4044, 4045) and "SQLActionException" not in err.message


# ---------------------------------------------------------------------------------------------
# request bodies

class BodyReader:
    """The request body as a stream of (decoded) chunks: Content-Length or chunked, then
    gzip/deflate undone when Content-Encoding says so. `done` once the raw body is read."""

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
                raise HttpError(400, "invalid Content-Length\n", close=True)
        else:
            self.remaining = 0
        self.done = (not self.chunked) and self.remaining == 0
        enc = (handler.headers.get("Content-Encoding") or "identity").strip().lower()
        if enc not in ("identity", "gzip", "x-gzip", "deflate"):
            raise HttpError(415, f"unsupported Content-Encoding {enc}\n")
        self.encoding = enc
        self.decoder = None
        if enc in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._deflate_pending = enc == "deflate"

    @property
    def expected_length(self):
        return None if self.chunked else self.remaining

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
                raise HttpError(400, "body shorter than Content-Length\n", close=True)
            self.remaining -= len(data)
            if self.remaining == 0:
                self.done = True
            return data
        if self.chunk_left == 0:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise HttpError(400, "bad chunk header\n", close=True)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "bad chunk size\n", close=True)
            if size == 0:
                while True:  # trailers, up to the empty line
                    t = self.rfile.readline(8192)
                    if not t:
                        raise HttpError(400, "truncated chunked body\n", close=True)
                    if t in (b"\r\n", b"\n"):
                        break
                self.done = True
                return b""
            self.chunk_left = size
        data = self.rfile.read(min(CHUNK, self.chunk_left))
        if not data:
            raise HttpError(400, "truncated chunked body\n", close=True)
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise HttpError(400, "bad chunk terminator\n", close=True)
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
            if self.decoder is not None:
                try:
                    raw = self.decoder.decompress(raw)
                except zlib.error as e:
                    raise HttpError(400, f"cannot decode {self.encoding} body: {e}\n",
                                    close=True)
                if not raw:
                    continue
            yield raw

    def read_all(self, limit):
        parts = []
        total = 0
        for c in self.chunks():
            total += len(c)
            if total > limit:
                raise HttpError(413, "request body too large\n", close=True)
            parts.append(c)
        return b"".join(parts)

    def drain(self):
        """Read away what is left of the raw body; False when it is too much to bother."""
        total = 0
        while not self.done:
            if self.expected_length is not None and self.expected_length > DRAIN_LIMIT:
                return False
            total += len(self._raw_chunk())
            if total > DRAIN_LIMIT:
                return False
        return True


# ---------------------------------------------------------------------------------------------
# authentication

def _b64url_decode(s):
    s = s + "=" * (-len(s) % 4)
    return base64.urlsafe_b64decode(s.encode())


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


# ---------------------------------------------------------------------------------------------
# the server

BLOB_PATH = re.compile(r"^/_blobs/([A-Za-z0-9_]+)/([0-9a-fA-F]{40})$")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


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
        self._body = None
        super().handle_one_request()

    def parse_request(self):
        self.connection.settimeout(IO_TIMEOUT)  # a request has started
        return super().parse_request()

    def handle_expect_100(self):
        # Send 100 Continue only when (and if) the body is read: a 401, 307 or 409 is
        # answered without making the client send the body.
        self._continue_pending = True
        return True

    def send_continue(self):
        if self._continue_pending:
            self._continue_pending = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            sys.stderr.write("crate_http %s %s\n" % (self.address_string(), fmt % args))

    # -- responses

    def respond(self, status, body=b"", ctype="application/json; charset=UTF-8", headers=None,
                close=False, head=False, length=None):
        """Status, headers and body in one write (body may be omitted for HEAD/streaming)."""
        if close:
            self.close_connection = True
        self.send_response(status)
        if self.session_pid is not None:
            self.send_header(SESSION_HEADER, str(self.session_pid))
        if ctype and (body or length or head):
            self.send_header("Content-Type", ctype)
        if status != 204:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")
        if body and not head:
            self._headers_buffer.append(body)
        self.flush_headers()

    def respond_json(self, status, obj, **kw):
        self.respond(status, json.dumps(obj, separators=(",", ":")).encode(), **kw)

    def respond_crate_error(self, err, with_trace):
        self.respond_json(err.status, err.body(with_trace))

    # -- dispatch

    def _dispatch(self):
        self._body = None
        try:
            self._body = BodyReader(self)
            if not self.authenticate():
                if self._auth_user:
                    msg = f'password authentication failed for user "{self._auth_user}"\n'
                else:
                    msg = "authentication failed\n"
                raise HttpError(401, msg, headers={"WWW-Authenticate": REALM}, close=True)
            url = urllib.parse.urlsplit(self.path)
            path = url.path
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            m = BLOB_PATH.match(path)
            if m:
                self.blob(m.group(1), m.group(2).lower())
            elif path == "/_sql":
                if self.command != "POST":
                    raise HttpError(405, "only POST on /_sql\n", headers={"Allow": "POST"})
                self.sql(query)
            elif path == "/" and self.command in ("GET", "HEAD"):
                self.node_info()
            else:
                raise HttpError(404, f"No handler found for uri [{path}] and method "
                                     f"[{self.command}]\n")
        except HttpError as e:
            self.respond(e.status, e.body, ctype=e.ctype, headers=e.headers, close=e.close,
                         head=self.command == "HEAD")
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
            self.close_connection = True
            return
        try:
            if not b.drain():
                self.close_connection = True
        except (HttpError, OSError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _dispatch

    # -- authentication

    def authenticate(self):
        self._auth_user = None
        auth = self.headers.get("Authorization") or ""
        scheme, _, cred = auth.strip().partition(" ")
        scheme = scheme.lower()
        cred = cred.strip()
        srv = self.server
        if scheme == "basic":
            try:
                user, _, password = base64.b64decode(cred, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            self._auth_user = user
            return hmac.compare_digest(user.encode(), srv.user.encode()) and \
                hmac.compare_digest(password.encode(), srv.password.encode())
        if scheme == "bearer" and srv.jwt_secret:
            self._auth_user = ""
            return check_jwt(cred, srv.jwt_secret, srv.user)
        return False

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
        self.session = conn
        self.session_pid = conn.info.backend_pid
        return conn

    # -- GET /

    def node_info(self):
        srv = self.server
        self.respond_json(200, {
            "ok": True,
            "status": 200,
            "name": srv.node_name,
            "cluster_name": srv.cluster_name,
            "version": {
                "number": CRATE_VERSION,
                "build_hash": "0000000000000000000000000000000000000000",
                "build_timestamp": "2024-01-01T00:00:00Z",
                "build_snapshot": False,
                "lucene_version": "9.11.1",
            },
        }, head=self.command == "HEAD")

    # -- POST /_sql

    def sql(self, query):
        with_types = "types" in query and query["types"][-1].lower() not in ("false", "0")
        with_trace = "error_trace" in query and \
            query["error_trace"][-1].lower() not in ("false", "0")
        try:
            raw = self._body.read_all(SQL_BODY_LIMIT)
            try:
                req = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                raise CrateError(4000, f"SQLParseException[Failed to parse source [{e}]]")
            if not isinstance(req, dict) or not isinstance(req.get("stmt"), str):
                raise CrateError(4000, "SQLParseException[Field [stmt] was not found]")
            if "args" in req and "bulk_args" in req:
                raise CrateError(4000, "SQLParseException[request body contains args and "
                                       "bulk_args. It's forbidden to provide both]")
            t0 = time.monotonic()
            conn = self.get_session()
            if "bulk_args" in req:
                out = self.run_bulk(conn, req["stmt"], req["bulk_args"])
            else:
                args = req.get("args") or []
                if not isinstance(args, list):
                    raise CrateError(4000, "SQLParseException[args must be an array]")
                out = self.run_one(conn, req["stmt"], args, with_types)
            out["duration"] = round((time.monotonic() - t0) * 1000, 3)
            self.respond_json(200, out)
        except CrateError as e:
            self.respond_crate_error(e, with_trace)

    def _execute(self, conn, stmt, args):
        query, params = translate_placeholders(stmt, args)
        params = [_adapt_arg(a) for a in params]
        try:
            return conn.execute(query, params)
        except psycopg.Error as e:
            if conn.closed or conn.broken:  # the session is gone: the next request makes one
                self.session = None
                self.session_pid = None
            raise crate_error(e) from None

    def run_one(self, conn, stmt, args, with_types):
        cur = self._execute(conn, stmt, args)
        if cur.description is not None:
            rows = [[to_json_value(v) for v in row] for row in cur.fetchall()]
            out = {"cols": [d.name for d in cur.description]}
            if with_types:
                out["col_types"] = [crate_type(d.type_code) for d in cur.description]
            out["rows"] = rows
            out["rowcount"] = len(rows)
            return out
        return self._result_body(cur, with_types)

    @staticmethod
    def _result_body(cur, with_types):
        """A statement without a result set: CrateDB answers cols [] and a row count."""
        rc = cur.rowcount
        if rc is None or rc < 0:
            tag = (cur.statusmessage or "").split(" ")[0].upper()
            rc = 1 if tag in ("CREATE", "DROP", "ALTER") else 0
        out = {"cols": []}
        if with_types:
            out["col_types"] = []
        out["rows"] = [[]]
        out["rowcount"] = rc
        return out

    def run_bulk(self, conn, stmt, bulk_args):
        if not isinstance(bulk_args, list) or not all(isinstance(a, list) for a in bulk_args):
            raise CrateError(4000, "SQLParseException[bulk_args must be an array of arrays]")
        results = []
        for i, args in enumerate(bulk_args):
            try:
                cur = self._execute(conn, stmt, args)
            except CrateError as e:
                if is_analysis_error(e) or conn.closed:
                    raise
                results.append({"rowcount": -2, "error": {"code": e.code, "message": e.message}})
                continue
            if cur.description is not None:
                raise CrateError(4000, "UnsupportedFeatureException[Bulk operations for "
                                       "statements that return result sets is not supported]")
            results.append({"rowcount": max(cur.rowcount, 0) if cur.rowcount is not None else 0})
        return {"cols": [], "results": results}

    # -- /_blobs/<table>/<digest>

    def blob(self, table, digest):
        srv = self.server
        method = self.command
        # CrateDB redirects GET and HEAD, and a PUT only when it asks for 100-continue (one
        # without Expect is stored by whichever node it reaches)
        expect = (self.headers.get("Expect") or "").strip().lower() == "100-continue"
        if (srv.redirect_to and not self.redirected() and
                (method in ("GET", "HEAD") or (method == "PUT" and expect))):
            target = srv.redirect_to.rstrip("/") + self.path
            raise HttpError(307, b"", headers={"Location": target})
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
                raise HttpError(404)
            return self.respond(204)
        raise HttpError(405, f"method {method} not allowed on blobs\n",
                        headers={"Allow": "GET, HEAD, PUT, DELETE"})

    def redirected(self):
        if (self.headers.get(REDIRECTED_HEADER) or "").strip() in ("1", "true", "yes"):
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        return host == self.server.redirect_netloc

    def blob_put(self, directory, path, digest):
        os.makedirs(directory, exist_ok=True)
        if os.path.exists(path):
            raise HttpError(409)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=directory)
        try:
            sha = hashlib.sha1()
            with os.fdopen(fd, "wb") as f:
                for chunk in self._body.chunks():
                    sha.update(chunk)
                    f.write(chunk)
            if sha.hexdigest() != digest:
                raise HttpError(400, f"digest mismatch: the body's SHA-1 is {sha.hexdigest()}\n")
            try:
                os.link(tmp, path)  # atomic, and fails when a concurrent PUT won
            except FileExistsError:
                raise HttpError(409)
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self.respond(201)

    def blob_get(self, path, head):
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise HttpError(404)
        with f:
            size = os.fstat(f.fileno()).st_size
            start, end, status = 0, size - 1, 200
            headers = {"Accept-Ranges": "bytes"}
            rng = (self.headers.get("Range") or "").strip().replace(" ", "")
            m = RANGE.match(rng) if rng else None
            if m and (m.group(1) or m.group(2)):  # one range; several ranges: whole blob
                a, b = m.group(1), m.group(2)
                if a:
                    start = int(a)
                    end = min(int(b), size - 1) if b else size - 1
                else:
                    start = max(size - int(b), 0)
                if start >= size or start > end:
                    raise HttpError(416, b"", headers={"Content-Range": f"bytes */{size}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            length = end - start + 1 if size else 0
            self.respond(status, ctype="application/octet-stream", headers=headers,
                         head=True, length=length)
            if head:
                return
            f.seek(start)
            left = length
            while left > 0:
                data = f.read(min(CHUNK, left))
                if not data:
                    self.close_connection = True  # truncated under us
                    return
                self.wfile.write(data)
                left -= len(data)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, opts, tls):
        self.opts = opts
        self.tls = tls
        self.user = opts.user
        self.password = opts.password
        self.jwt_secret = opts.jwt_secret
        self.pg = opts.pg
        self.idle_close = opts.idle_close
        self.quiet = opts.quiet
        self.node_name = opts.node_name
        self.cluster_name = opts.cluster_name
        self.redirect_to = opts.redirect_blobs_to
        self.redirect_netloc = None
        if self.redirect_to:
            u = urllib.parse.urlsplit(self.redirect_to)
            port = u.port or (443 if u.scheme == "https" else 80)
            self.redirect_netloc = f"{u.hostname}:{port}".lower()
        self._temp_blob_dir = None
        if opts.blob_dir:
            os.makedirs(opts.blob_dir, exist_ok=True)
            self.blob_dir = opts.blob_dir
        else:
            self._temp_blob_dir = self.blob_dir = tempfile.mkdtemp(prefix="crate-blobs-")
        self._conns = set()
        self._lock = threading.Lock()
        super().__init__(addr, Handler)

    def server_bind(self):
        # HTTPServer's would look up the host's FQDN (DNS) for nothing.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

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

    def cleanup(self):
        if self._temp_blob_dir:
            shutil.rmtree(self._temp_blob_dir, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4200, help="0: any free port (see --ready-file)")
    ap.add_argument("--cert", help="server certificate (PEM); without --cert: plain HTTP")
    ap.add_argument("--key", help="its private key (PEM)")
    ap.add_argument("--pg", required=True, help="libpq conninfo of the PostgreSQL behind it")
    ap.add_argument("--user", default="crate")
    ap.add_argument("--password", default="")
    ap.add_argument("--jwt-secret", help="accept Bearer JWTs (HS256) signed with this secret")
    ap.add_argument("--ready-file", help="written (with the port number) once listening")
    ap.add_argument("--idle-close", type=float, metavar="SECONDS",
                    help="close keep-alive connections idle this long")
    ap.add_argument("--redirect-blobs-to", metavar="URL",
                    help="answer blob GET/PUT with 307 to URL + path (see the docstring)")
    ap.add_argument("--blob-dir", help="where blobs live (default: a temp dir, removed at exit)")
    ap.add_argument("--node-name", default="crate-http-test")
    ap.add_argument("--cluster-name", default="crate")
    ap.add_argument("--quiet", action="store_true", help="no request log on stderr")
    opts = ap.parse_args(argv)

    tls = None
    if opts.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(opts.cert, opts.key)
        tls.set_alpn_protocols(["http/1.1"])
    if ":" in opts.listen:
        Server.address_family = socket.AF_INET6
    try:
        srv = Server((opts.listen, opts.port), opts, tls)
    except OSError as e:
        print(f"crate_http: cannot listen on {opts.listen}:{opts.port}: {e.strerror}",
              file=sys.stderr)
        return 2

    stopping = threading.Event()

    def on_signal(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

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
        srv.server_close()
        srv.close_all()
        srv.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
