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
