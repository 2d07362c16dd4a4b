#!/usr/bin/python3
"""A throwaway PostgreSQL 15 that behaves like a CrateDB Cloud endpoint, for tests and the demo.

It requires TLS on TCP (certificates from a test CA made here with the openssl CLI), logs users
in by cleartext password (crate), md5 (md5user) or SCRAM (scramuser), and lets the superuser in
over its Unix socket for the tests' own checks. Usable as a module (start(), stop()) and as a CLI:

    /usr/bin/python3 tests/support/pgenv.py start DIR [--port N]   # prints PGENV_* shell assignments
    /usr/bin/python3 tests/support/pgenv.py stop DIR

As root, PostgreSQL runs as the `postgres` OS user (initdb refuses root) and DIR is given to it.
"""

import argparse
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import time

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"
PASSWORD = "secret"
UPSTREAM_USERS = ("crate", "md5user", "scramuser")
START_TIMEOUT = 30  # seconds for pg_ctl to see the server accept connections

HBA = """\
# Like CrateDB Cloud: TCP only over TLS, with a password.
local     all  all        trust
hostnossl all  all        0.0.0.0/0    reject
hostssl   all  crate      127.0.0.0/8  password
hostssl   all  md5user    127.0.0.0/8  md5
hostssl   all  scramuser  127.0.0.0/8  scram-sha-256
"""


class PortBusy(RuntimeError):
    """The requested port (or one of the listen addresses on it) is taken."""


class PgEnv:
    """A running test PostgreSQL: where it listens and which CA signed its certificate."""

    host = "127.0.0.1"
    superuser = SUPERUSER
    password = PASSWORD

    def __init__(self, directory, port):
        self.dir = os.path.abspath(directory)
        self.port = port
        self.data_dir = os.path.join(self.dir, "data")
        self.ssl_dir = os.path.join(self.dir, "ssl")
        self.ca = os.path.join(self.ssl_dir, "ca.crt")
        self.other_ca = os.path.join(self.ssl_dir, "other-ca.crt")
        self.server_cert = os.path.join(self.ssl_dir, "server.crt")
        self.server_key = os.path.join(self.ssl_dir, "server.key")
        self.socket_dir = self.dir
        self.log_file = os.path.join(self.dir, "postgresql.log")

    def connect(self, dbname="doc"):
        """A superuser psycopg connection over the Unix socket, autocommit."""
        import psycopg

        return psycopg.connect(host=self.socket_dir, port=self.port, user=SUPERUSER,
                               dbname=dbname, autocommit=True, connect_timeout=10)

    def sql(self, query, params=None, dbname="doc"):
        """Run one statement as superuser; the result rows (empty when there are none)."""
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def stop(self):
        stop(self.dir)

    def __repr__(self):
        return f"PgEnv(dir={self.dir!r}, port={self.port})"


def _as_root():
    return os.geteuid() == 0


def _pg_cmd(args):
    """The command line, run as the postgres OS user when we are root."""
    if _as_root():
        return ["runuser", "-u", "postgres", "--"] + args
    return args


def _run(args, as_pg=False, **kw):
    cmd = _pg_cmd(args) if as_pg else args
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=kw.pop("timeout", 120), **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({res.returncode}):\n{res.stdout}")
    return res.stdout


def _openssl(*args):
    _run(["openssl", *args])


def _make_certs(ssl_dir):
    """Test CA, server certificate for localhost/127.0.0.1 signed by it, and an unrelated CA."""
    os.makedirs(ssl_dir, exist_ok=True)

    def p(name):
        return os.path.join(ssl_dir, name)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    for name, cn in (("ca", "cratebouncer test CA"), ("other-ca", "unrelated test CA")):
        _openssl("req", "-x509", *ec, "-keyout", p(name + ".key"), "-out", p(name + ".crt"),
                 "-days", "3650", "-subj", "/CN=" + cn, *ca_ext)
    _openssl("req", "-new", *ec, "-keyout", p("server.key"), "-out", p("server.csr"),
             "-subj", "/CN=localhost")
    with open(p("server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
             "-CAcreateserial", "-out", p("server.crt"), "-days", "3650",
             "-extfile", p("server.ext"))
    os.chmod(p("server.key"), 0o600)


def _write_settings(env):
    """Our settings live in an included file, rewritten at each start (the port may change)."""
    conf = os.path.join(env.data_dir, "pgenv.conf")
    with open(conf, "w") as f:
        f.write(f"""\
port = {env.port}
listen_addresses = '127.0.0.1,127.0.0.2'
unix_socket_directories = '{env.socket_dir}'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
ssl = on
ssl_cert_file = '{env.server_cert}'
ssl_key_file = '{env.server_key}'
password_encryption = 'scram-sha-256'
log_connections = on
log_disconnections = on
log_line_prefix = '%m [%p] %q%u@%d '
""")
    main_conf = os.path.join(env.data_dir, "postgresql.conf")
    with open(main_conf) as f:
        text = f.read()
    if "include 'pgenv.conf'" not in text:
        with open(main_conf, "a") as f:
            f.write("\ninclude 'pgenv.conf'\n")
    with open(os.path.join(env.data_dir, "pg_hba.conf"), "w") as f:
        f.write(HBA)


def _give_to_postgres(path):
    if not _as_root():
        return
    pw = pwd.getpwnam("postgres")
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
    # Every parent must be traversable by postgres.
    res = subprocess.run(_pg_cmd(["test", "-w", path]), timeout=10)
    if res.returncode != 0:
        raise RuntimeError(f"the postgres OS user cannot reach {path}: "
                           "use a directory whose parents are world-executable (e.g. under /tmp)")


def _check_port_free(port):
    for addr in ("127.0.0.1", "127.0.0.2"):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
        except OSError as e:
            raise PortBusy(f"{addr}:{port}: {e.strerror}") from None
        finally:
            s.close()


def _is_running(env):
    res = subprocess.run(_pg_cmd([f"{PG_BIN}/pg_ctl", "-D", env.data_dir, "status"]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return res.returncode == 0


def _running_port(env):
    pidfile = os.path.join(env.data_dir, "postmaster.pid")
    with open(pidfile) as f:
        lines = f.read().splitlines()
    return int(lines[3])  # postmaster.pid line 4 is the port


def _bootstrap_sql(env):
    """Roles and database, once, right after initdb."""
    conn = env.connect("postgres")
    with conn:
        conn.execute("CREATE DATABASE doc")
        conn.execute(f"CREATE ROLE crate LOGIN PASSWORD '{PASSWORD}'")
        conn.execute(f"CREATE ROLE scramuser LOGIN PASSWORD '{PASSWORD}'")
        conn.execute("SET password_encryption = 'md5'")
        conn.execute(f"CREATE ROLE md5user LOGIN PASSWORD '{PASSWORD}'")
        me = pwd.getpwuid(os.geteuid()).pw_name
        if me != SUPERUSER:  # lets `psql -h DIR -p PORT doc` work for whoever runs the tests
            conn.execute(f'CREATE ROLE "{me}" SUPERUSER LOGIN')
    conn = env.connect("doc")
    with conn:
        users = ", ".join(UPSTREAM_USERS)
        conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE doc TO {users}")
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {users}")
        conn.execute("CREATE SCHEMA doc")  # CrateDB's default schema, for realism
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA doc TO {users}")
        # What the snippets of CrateDB's Python guide read: sys.cluster's name and a few of
        # sys.summits' rows (CrateDB's own values; CrateDB has 1605 summits).
        conn.execute("CREATE SCHEMA sys")
        conn.execute(f"GRANT USAGE ON SCHEMA sys TO {users}")
        conn.execute("CREATE TABLE sys.cluster (id text, name text, master_node text)")
        conn.execute("INSERT INTO sys.cluster VALUES "
                     "('7ab2e1b4-1d3f-4b8e-9b7c-2f1e9a6c5d01', 'crate', 'pgenv-node')")
        conn.execute("CREATE TABLE sys.summits (mountain text, height integer, "
                     "prominence integer, country text, range text, region text, "
                     "first_ascent integer)")
        conn.execute("""INSERT INTO sys.summits VALUES
            ('Mont Blanc', 4808, 4695, 'FR/IT', 'U-Savoy/Aosta', 'Mont Blanc massif', 1786),
            ('Monte Rosa', 4634, 2165, 'CH', 'Valais', 'Monte Rosa Alps', 1855),
            ('Dom', 4545, 1046, 'CH', 'Valais', 'Mischabel', 1858),
            ('Liskamm', 4527, 376, 'CH/IT', 'Valais/Aosta', 'Monte Rosa Alps', 1861),
            ('Weisshorn', 4506, 1235, 'CH', 'Valais', 'Weisshorn-Matterhorn', 1861),
            ('Matterhorn', 4478, 1042, 'CH/IT', 'Valais/Aosta', 'Weisshorn-Matterhorn', 1865)""")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA sys TO {users}")


def start(directory, port=15432):
    """Create (first time) and start the cluster in directory; return a PgEnv once it accepts
    connections. Raises PortBusy when the port is taken. Restarting an existing directory
    reuses its certificates and data."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    env = PgEnv(directory, port)
    if len(os.path.join(env.socket_dir, f".s.PGSQL.{port}")) > 107:
        raise RuntimeError(f"{directory} is too long for a Unix socket path")
    # The cluster counts as made only once its roles exist: a first start that failed (port
    # busy) after initdb leaves a data directory that must be made again.
    ready_mark = os.path.join(directory, "pgenv-ready")
    fresh = not os.path.exists(ready_mark)
    if fresh and os.path.exists(os.path.join(env.data_dir, "PG_VERSION")) and _is_running(env):
        stop(directory)

    if not fresh and _is_running(env):
        env.port = _running_port(env)
        return env

    if fresh:
        if os.path.exists(env.data_dir):
            shutil.rmtree(env.data_dir)
        _make_certs(env.ssl_dir)
        _give_to_postgres(directory)
        _run([f"{PG_BIN}/initdb", "-D", env.data_dir, "-U", SUPERUSER, "-A", "trust",
              "-E", "UTF8", "--locale=C", "-N"], as_pg=True)
    _check_port_free(port)
    _write_settings(env)
    _give_to_postgres(directory)
    try:
        _run([f"{PG_BIN}/pg_ctl", "-D", env.data_dir, "-l", env.log_file, "-w",
              "-t", str(START_TIMEOUT), "start"], as_pg=True, timeout=START_TIMEOUT + 10)
    except RuntimeError as e:
        log = _tail(env.log_file)
        if "Address already in use" in log:
            raise PortBusy(f"port {port}: {log}") from None
        raise RuntimeError(f"{e}\n--- {env.log_file} ---\n{log}") from None
    _wait_ready(env)
    if fresh:
        _bootstrap_sql(env)
        with open(ready_mark, "w") as f:
            f.write("roles and database created\n")
    return env


def _tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def _wait_ready(env, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            env.connect("postgres").close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop(directory):
    """Stop the cluster in directory (fast shutdown); no error when it is not running."""
    data = os.path.join(os.path.abspath(directory), "data")
    if not os.path.exists(os.path.join(data, "postmaster.pid")):
        return
    subprocess.run(_pg_cmd([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30",
                            "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start", help="start (creating if needed); print PGENV_* assignments")
    st.add_argument("dir")
    st.add_argument("--port", type=int, default=15432)
    sp = sub.add_parser("stop", help="stop the cluster in DIR")
    sp.add_argument("dir")
    args = ap.parse_args(argv)
    if args.cmd == "stop":
        stop(args.dir)
        return 0
    try:
        env = start(args.dir, args.port)
    except (PortBusy, RuntimeError) as e:
        print(f"pgenv: {e}", file=sys.stderr)
        return 1
    for key, val in (("PORT", env.port), ("CA", env.ca), ("OTHER_CA", env.other_ca),
                     ("SOCKET_DIR", env.socket_dir), ("DIR", env.dir)):
        print(f"PGENV_{key}={shlex.quote(str(val))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
