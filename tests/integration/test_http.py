"""The HTTP side: plaintext HTTP on localhost through cratebouncer onto the CrateDB-shaped
HTTPS upstream (tests/crate_http.py), with the credentials injected, keep-alive pooling,
session pinning, streaming, framing checks, limits and errors."""

import base64
import gzip
import hashlib
import http.client
import json
import os
import socket
import threading
import time

import pytest

from helpers import free_port, wait_until


def http_section(crate, **over):
    s = {"listen_addr": "127.0.0.1", "listen_port": free_port(), "upstream": crate.url,
         "user": crate.user, "password": crate.password, "pool_size": 4,
         "tls_ca_file": crate.ca}
    s.update(over)
    return {k: v for k, v in s.items() if v is not None}


@pytest.fixture
def proxy(cratebouncer, crate_http):
    """cratebouncer with [http] in front of the CrateDB-shaped upstream; .http_port, .crate."""
    def make(crate=None, settings=None, **over):
        crate = crate or crate_http
        sec = http_section(crate, **over)
        b = cratebouncer(settings=settings, sections={"http": sec})
        b.http_port = sec["listen_port"]
        b.crate = crate
        return b
    return make


def conn(b, timeout=10):
    return http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=timeout)


def sql(c, stmt, args=None, headers=None, path="/_sql"):
    body = {"stmt": stmt}
    if args is not None:
        body["args"] = args
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, json.dumps(body), h)
    r = c.getresponse()
    data = r.read()
    return r, json.loads(data) if data else None


def test_sql_through_the_proxy(proxy):
    b = proxy()
    c = conn(b)
    r, body = sql(c, "select ? + 1 as x", [41])
    assert r.status == 200, body
    assert body["rows"] == [[42]] and body["cols"] == ["x"]
    # keep-alive: the same client connection, the same upstream session
    r1, _ = sql(c, "select 1")
    r2, _ = sql(c, "select 2")
    assert r1.getheader("X-Test-Session") == r2.getheader("X-Test-Session")
