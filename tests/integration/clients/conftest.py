"""Fixtures of the client tests (tests/integration/clients/): each client of CrateDB's Python
guide, at the release pinned in tests/requirements.txt, through cratebouncer with no password
and no TLS. This directory runs on the virtual environment of tests/venv.sh (run.sh), with the
fixtures of tests/integration/conftest.py.

pgwire clients: `pg_target` is the upstream, one of
  postgresql  the suite's TLS-only PostgreSQL 15,
  standin     tests/support/crate_pgwire.py, CrateDB's dialect of pgwire, in front of it,
  cratedb     a real CrateDB given by CB_CRATEDB_PG (a libpq conninfo with sslrootcert);
and `pool_mode` is session or transaction. `sidecar()` is a cratebouncer in front of the pair.
HTTP clients: `http_target` is tests/support/crate_http.py ("standin") or a real CrateDB given by
CB_CRATEDB_HTTP ("cratedb": "url=https://localhost:4200 user=... password=... ca=FILE"), and
`http_sidecar()` a cratebouncer whose [http] side is in front of it.

The snippets of docs/cratedb-cloud.md are the tests': `snippet(name)` is the ```python block
that follows `<!-- snippet: name -->` there, and `run_snippet()` runs it with the sidecar's
addresses in place of the documented 127.0.0.1:6432 and http://127.0.0.1:4200."""

import os
import re
import subprocess
import sys

import pytest

from crate_targets import CRATEDB_PG, NO_CRATEDB, Target, crate_standin  # noqa: F401
from helpers import TIMEOUT, free_port, listening, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
DOC = os.path.join(REPO, "docs", "cratedb-cloud.md")
CRATEDB_HTTP = os.environ.get("CB_CRATEDB_HTTP", "")
NO_CRATEDB_HTTP = ("no real CrateDB over HTTP: set CB_CRATEDB_HTTP to \"url=https://host:4200 "
                   "user=... password=... ca=FILE\" to run this tier")
PG_TARGETS = ["postgresql", "standin", "cratedb"]
MODES = ["session", "transaction"]


def pytest_terminal_summary(terminalreporter):
    if not CRATEDB_HTTP:
        terminalreporter.write_line("real-CrateDB HTTP tier: SKIPPED (CB_CRATEDB_HTTP is not "
                                    "set; the HTTP clients ran against the stand-in only)")


class PgTarget(Target):
    """A pgwire upstream; .kind is postgresql, standin or cratedb."""

    def __init__(self, kind, **kw):
        super().__init__(kind, **kw)
        self.kind = kind

    @property
    def crate(self):
        return self.kind != "postgresql"


@pytest.fixture(params=PG_TARGETS)
def pg_target(request, pg):
    kind = request.param
    if kind == "postgresql":
        return PgTarget(kind, host="127.0.0.1", port=pg.port, ca=pg.ca, user="crate",
                        password=pg.password, pg=pg)
    if kind == "standin":
        st = request.getfixturevalue("crate_standin")
        assert st.proc.poll() is None, "the stand-in died: " + st.output()
        return PgTarget(kind, host=st.host, port=st.port, ca=st.ca, user="crate",
                        password=pg.password, pg=pg)
    if not CRATEDB_PG:
        pytest.skip(NO_CRATEDB)
    from psycopg.conninfo import conninfo_to_dict
    d = conninfo_to_dict(CRATEDB_PG)
    return PgTarget(kind, host=d.get("host", "localhost"), port=int(d.get("port", 5432)),
                    ca=d.get("sslrootcert"), user=d.get("user", "crate"),
                    password=d.get("password"), dbname=d.get("dbname", "doc"))


@pytest.fixture(params=MODES)
def pool_mode(request):
    return request.param


@pytest.fixture
def sidecar(cratebouncer, pg_target, pool_mode):
    """sidecar(pool=2, **settings) -> a cratebouncer with database doc on pg_target in
    pool_mode; its pool is smaller than the clients the tests run."""
    def make(pool=2, **settings):
        s = {"pool_mode": pool_mode, "default_pool_size": pool, "max_client_conn": 500,
             "query_wait_timeout": 60}
        s.update(settings)
        b = cratebouncer(settings=s, databases={"doc": pg_target.entry()})
        b.target = pg_target
        b.mode = pool_mode
        return b
    return make


class HttpTarget:
    def __init__(self, kind, url, user, password, ca, standin=None):
        self.kind, self.url, self.user, self.password, self.ca = kind, url, user, password, ca
        self.standin = standin


@pytest.fixture(params=["standin", "cratedb"])
def http_target(request):
    if request.param == "standin":
        c = request.getfixturevalue("crate_http")
        return HttpTarget("standin", c.url, c.user, c.password, c.ca, standin=c)
    if not CRATEDB_HTTP:
        pytest.skip(NO_CRATEDB_HTTP)
    d = dict(kv.split("=", 1) for kv in CRATEDB_HTTP.split())
    return HttpTarget("cratedb", d["url"], d.get("user", "crate"), d.get("password", ""),
                      d.get("ca"))


@pytest.fixture
def http_sidecar(cratebouncer, http_target):
    """http_sidecar(pool_size=2, **over) -> a cratebouncer whose [http] side is in front of
    http_target; .http_url is http://127.0.0.1:PORT."""
    def make(pool_size=2, **over):
        sec = {"listen_addr": "127.0.0.1", "listen_port": free_port(),
               "upstream": http_target.url, "user": http_target.user,
               "password": http_target.password, "pool_size": pool_size,
               "tls_ca_file": http_target.ca}
        sec.update(over)
        sec = {k: v for k, v in sec.items() if v is not None}
        b = cratebouncer(sections={"http": sec})
        b.http_port = sec["listen_port"]
        b.http_url = f"http://127.0.0.1:{b.http_port}"
        b.target = http_target
        wait_until(lambda: listening("127.0.0.1", b.http_port), TIMEOUT, "HTTP listener")
        return b
    return make


def snippet(name):
    """The ```python block after `<!-- snippet: name -->` in docs/cratedb-cloud.md."""
    with open(DOC) as f:
        text = f.read()
    m = re.search(r"<!-- snippet: " + re.escape(name) + r" -->\s*```python\n(.*?)```", text,
                  re.S)
    assert m, f"docs/cratedb-cloud.md has no snippet {name!r}"
    return m.group(1)


def run_snippet(name, b, python=sys.executable, env=None, timeout=120):
    """Run snippet name as its own process against cratebouncer b (pgwire port, HTTP port);
    its stdout. A failure shows its stderr."""
    code = snippet(name).replace("127.0.0.1:6432", f"127.0.0.1:{b.port}")
    code = code.replace("port=6432", f"port={b.port}")
    if getattr(b, "http_port", None):
        code = code.replace("127.0.0.1:4200", f"127.0.0.1:{b.http_port}")
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout,
                       env=e)
    assert r.returncode == 0, f"snippet {name} failed ({r.returncode}):\n{r.stderr}"
    return r.stdout
