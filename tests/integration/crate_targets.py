"""The CrateDB-dialect upstreams the CrateDB tests run against (test_crate.py,
test_crate_clients.py): "standin", tests/support/crate_pgwire.py in front of the suite's PostgreSQL
(always), and "cratedb", a real CrateDB given by CB_CRATEDB_PG (a libpq conninfo with TLS,
e.g. "host=localhost port=5432 user=crate password=... dbname=doc sslmode=verify-full
sslrootcert=/path/ca.pem"), skipped with that reason shown when the variable is unset."""

import os
import shutil
import subprocess
import tempfile
import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from helpers import TIMEOUT

STANDIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "support", "crate_pgwire.py")
CRATEDB_PG = os.environ.get("CB_CRATEDB_PG", "")
NO_CRATEDB = ("no real CrateDB: set CB_CRATEDB_PG to its pgwire conninfo (with sslrootcert) to "
              "run this tier")


class Target:
    """A CrateDB-dialect upstream: the stand-in or a real CrateDB."""

    def __init__(self, name, host, port, ca, user, password, dbname="doc", pg=None):
        self.name, self.host, self.port, self.ca = name, host, port, ca
        self.user, self.password, self.dbname, self.pg = user, password, dbname, pg

    def entry(self, **kw):
        e = {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user,
             "password": self.password, "sslrootcert": self.ca}
        e.update(kw)
        return {k: v for k, v in e.items() if v is not None}

    def direct(self, **kw):
        """A psycopg 3 connection straight to the upstream over verified TLS, autocommit."""
        return psycopg.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, dbname=self.dbname, sslmode="verify-full",
                               sslrootcert=self.ca, autocommit=True, connect_timeout=TIMEOUT,
                               **kw)

    def id_table(self, name, n, value):
        """doc.name (id int, v text) with ids 1..n, all with v = value, made fresh."""
        if self.pg is not None:
            # the stand-in's sessions start in schema doc, as CrateDB's
            self.pg.sql("CREATE SCHEMA IF NOT EXISTS doc AUTHORIZATION crate")
            self.pg.sql(f"DROP TABLE IF EXISTS doc.{name}")
            self.pg.sql(f"CREATE TABLE doc.{name} (id int, v text)")
            self.pg.sql(f"ALTER TABLE doc.{name} OWNER TO crate")
            self.pg.sql(f"INSERT INTO doc.{name} SELECT g, %s FROM generate_series(1, {n}) g",
                        (value,))
            return
        with self.direct() as c:
            c.execute(f"DROP TABLE IF EXISTS {name}")
            c.execute(f"CREATE TABLE {name} (id INT, v TEXT)")
            c.execute(f"INSERT INTO {name} (id, v) SELECT g, %s FROM generate_series(1, {n}) "
                      "AS t(g)", (value,))
            c.execute(f"REFRESH TABLE {name}")

    def table(self, schema, name, values):
        """schema.name (v text) holding values, made fresh."""
        if self.pg is not None:
            # the stand-in is PostgreSQL underneath, where a schema must exist first
            self.pg.sql(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION crate")
            self.pg.sql(f"DROP TABLE IF EXISTS {schema}.{name}")
            self.pg.sql(f"CREATE TABLE {schema}.{name} (v text)")
            self.pg.sql(f"ALTER TABLE {schema}.{name} OWNER TO crate")
            for v in values:
                self.pg.sql(f"INSERT INTO {schema}.{name} VALUES (%s)", (v,))
            return
        with self.direct() as c:
            c.execute(f"DROP TABLE IF EXISTS {schema}.{name}")
            c.execute(f"CREATE TABLE {schema}.{name} (v TEXT)")
            for v in values:
                c.execute(f"INSERT INTO {schema}.{name} (v) VALUES (%s)", (v,))
            c.execute(f"REFRESH TABLE {schema}.{name}")


class StandIn:
    """tests/support/crate_pgwire.py running in front of the suite's PostgreSQL."""

    host = "127.0.0.1"

    def __init__(self, pg, *extra):
        self.pg, self.ca = pg, pg.ca
        self.dir = tempfile.mkdtemp(prefix="cbstandin-", dir="/tmp")
        self.ready = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "stderr.txt"), "wb")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3",
             STANDIN, "--listen", self.host, "--port", "0", "--cert", pg.server_cert,
             "--key", pg.server_key, "--pg-host", "127.0.0.1", "--pg-port", str(pg.port),
             "--pg-ca", pg.ca, "--ready-file", self.ready, *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("crate_pgwire.py did not start: " + self.output())
            time.sleep(0.05)
        with open(self.ready) as f:
            self.port = int(f.read())

    def output(self):
        with open(os.path.join(self.dir, "stderr.txt"), errors="replace") as f:
            return f.read()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        if os.environ.get("CB_KEEP_TMP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def crate_standin(pg):
    st = StandIn(pg)
    yield st
    st.stop()


@pytest.fixture(params=["standin", "cratedb"])
def target(request, pg):
    if request.param == "standin":
        st = request.getfixturevalue("crate_standin")
        assert st.proc.poll() is None, "the stand-in died: " + st.output()
        return Target("standin", st.host, st.port, st.ca, "crate", pg.password, pg=pg)
    if not CRATEDB_PG:
        pytest.skip(NO_CRATEDB)
    d = conninfo_to_dict(CRATEDB_PG)
    return Target("cratedb", d.get("host", "localhost"), int(d.get("port", 5432)),
                  d.get("sslrootcert"), d.get("user", "crate"), d.get("password"),
                  d.get("dbname", "doc"))



def crate_bouncer(cratebouncer, target, mode="transaction", pool=2, **settings):
    """A cratebouncer with one database doc on the target."""
    s = {"pool_mode": mode, "default_pool_size": pool, "max_client_conn": 500}
    s.update(settings)
    return cratebouncer(settings=s, databases={"doc": target.entry()})
