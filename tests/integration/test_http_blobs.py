"""Blobs through the HTTP side: PUT/GET/HEAD/DELETE pass, and a 307 to the node holding the
blob (another address of the cluster) is followed by cratebouncer, so that the local client's
request completes without the client ever seeing the cluster's internal address."""

import hashlib
import http.client
import os

from test_http import http_section


def test_blob_roundtrip_and_redirect(cratebouncer, crate_http_factory):
    # the upstream redirects blob GET and PUT to itself under its other name (localhost)
    crate = crate_http_factory(redirect_blobs_to="https://localhost:{port}")
    sec = http_section(crate)
    b = cratebouncer(sections={"http": sec})
    data = os.urandom(300000)
    digest = hashlib.sha1(data).hexdigest()
    c = http.client.HTTPConnection("127.0.0.1", sec["listen_port"], timeout=10)
    c.request("PUT", f"/_blobs/myblobs/{digest}", data)
    r = c.getresponse()
    assert r.status == 201, (r.status, r.read())
    r.read()
    c.request("GET", f"/_blobs/myblobs/{digest}")
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and hashlib.sha1(body).hexdigest() == digest
    c.request("HEAD", f"/_blobs/myblobs/{digest}")
    r = c.getresponse()
    r.read()
    assert r.status == 200
    c.request("PUT", f"/_blobs/myblobs/{digest}", data)
    r = c.getresponse()
    r.read()
    assert r.status == 409
    c.request("DELETE", f"/_blobs/myblobs/{digest}")
    r = c.getresponse()
    r.read()
    assert r.status == 204
    c.request("GET", f"/_blobs/myblobs/{digest}")
    r = c.getresponse()
    r.read()
    assert r.status == 404
    assert "Location" not in dict(r.getheaders())


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
