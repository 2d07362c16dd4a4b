#!/usr/bin/python3
"""How often one pgwire query crosses from one source file into another inside the daemon,
for the architecture notes (docs/architecture.md). It needs a build with -pg and uftrace:

    mkdir /tmp/pgb && cd /tmp/pgb && SRC/configure CFLAGS="-O0 -g -pg" && make -j2
    python3 SRC/tools/query-crossings.py /tmp/pgb/src/cratebouncer [--tree]

It starts the test PostgreSQL (tests/support/pgenv.py) and the daemon under `uftrace record`
in transaction mode, logs a client in, runs `select 1` once (the pool makes its server), then
times a second `select 1` on the same connection: the client is idle, the server idle in the
pool. Every function entered between the client sending that Query and it receiving the
answer is mapped to its source file (nm -l), and each call from a function of one file to a
function of another is counted:

  - crossings: calls whose callee is in another file than its caller;
  - back: those that enter a file already on the call stack below (A -> B -> A: a callback or
    a report going back to the module that called);
  - between client, pool and server: crossings from one of those modules to another (a
    module's files count as one: server.c, server_login.c, server_pipe.c, server_int.h).

--tree prints the calls with their files."""
import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CLIENT = r"""
import psycopg, sys, time
c = psycopg.connect(sys.argv[1], autocommit=True)
c.execute("select 1").fetchall()
time.sleep(0.5)
t0 = time.monotonic_ns()
c.execute("select 1").fetchall()
t1 = time.monotonic_ns()
time.sleep(0.3)
c.close()
print(t0, t1)
"""


def side(f):
    """client, pool or server for the files of those three modules (client_auth.c,
    server_login.c, server_pipe.c, server_int.h, pool_admin.c... belong to theirs); else None."""
    b = os.path.basename(f)
    for m in ("client", "server", "pool"):
        if b.startswith(m + ".") or b.startswith(m + "_"):
            return m
    return None


def symbols(binary):
    """address -> (name, file) for the program's own functions."""
    out = subprocess.run(["nm", "-l", "--defined-only", binary], capture_output=True, text=True,
                         check=True).stdout
    syms = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) >= 4 and p[1] in "tT" and ":" in p[3]:
            path = p[3].rsplit(":", 1)[0]
            if "/src/" in path:
                syms[int(p[0], 16)] = (p[2], "src/" + path.split("/src/", 1)[1])
    return syms


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", help="cratebouncer built with -pg")
    ap.add_argument("--tree", action="store_true", help="print the calls")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    for tool in ("uftrace", "nm"):
        if not shutil.which(tool):
            sys.exit(f"query-crossings: {tool} is needed (apt-get install uftrace binutils)")
    work = tempfile.mkdtemp(prefix="cb-crossings-")
    os.chmod(work, 0o755)  # PostgreSQL runs as the postgres user when this runs as root
    pgenv = os.path.join(ROOT, "tests", "support", "pgenv.py")
    env = subprocess.run(["/usr/bin/python3", pgenv, "start", os.path.join(work, "pg")],
                         capture_output=True, text=True)
    if env.returncode:
        sys.exit(f"query-crossings: pgenv start failed: {env.stderr}")
    pg = dict(line.split("=", 1) for line in env.stdout.split())
    try:
        with socket_port() as port:
            conf = os.path.join(work, "cb.ini")
            with open(conf, "w") as f:
                f.write(f"""[databases]
doc = host=localhost port={pg['PGENV_PORT']} dbname=postgres user=crate password=secret
[cratebouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
pool_mode = transaction
server_tls_ca_file = {pg['PGENV_CA']}
""")
        daemon = subprocess.Popen(["uftrace", "record", "--no-libcall", "-d", os.path.join(work, "uftrace.data"),
                                   binary, conf], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        dsn = f"host=127.0.0.1 port={port} dbname=doc user=crate"
        for _ in range(100):
            if subprocess.run(["/usr/bin/python3", "-c", f"import psycopg; psycopg.connect({dsn!r}).close()"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        marks = subprocess.run(["/usr/bin/python3", "-c", CLIENT, dsn], capture_output=True, text=True, check=True)
        t0, t1 = (int(x) / 1e9 for x in marks.stdout.split())
        time.sleep(0.2)
        daemon.terminate()
        daemon.wait(timeout=30)
        dump = subprocess.run(["uftrace", "dump", "-d", os.path.join(work, "uftrace.data")],
                              capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["/usr/bin/python3", pgenv, "stop", os.path.join(work, "pg")], capture_output=True)

    syms = symbols(binary)
    by_name = collections.defaultdict(set)
    for name, f in syms.values():
        by_name[name].add(f)
    base = None
    calls = []  # (depth, name, file)
    for line in dump.splitlines():
        p = line.split()
        if len(p) < 6 or p[2] != "[entry]":
            continue
        name, addr = p[3].rstrip(")").split("(")
        addr = int(addr, 16)
        if base is None and name == "main":
            base = addr - next(a for a, (n, _) in syms.items() if n == "main")
        t = float(p[0])
        if not t0 <= t <= t1:
            continue
        f = syms.get(addr - base, (name, None))[1] if base is not None else None
        if f is None:
            f = sorted(by_name[name])[0] if by_name[name] else "?"
        calls.append((int(p[-1]), name, f))

    stack = []  # (depth, file)
    crossings, back, tri = 0, 0, 0
    pairs = collections.Counter()
    for depth, name, f in calls:
        while stack and stack[-1][0] >= depth:
            stack.pop()
        caller = stack[-1][1] if stack else None
        mark = ""
        if caller and caller != f:
            crossings += 1
            pairs[(caller, f)] += 1
            mark = " <- " + caller
            if any(sf == f for _, sf in stack):
                back += 1
                mark += " (back)"
            if side(caller) and side(f) and side(caller) != side(f):
                tri += 1
        if args.tree:
            print(f"{'  ' * depth}{name}  [{os.path.basename(f)}]{mark}")
        stack.append((depth, f))
    shutil.rmtree(work, ignore_errors=True)
    print(f"functions entered: {len(calls)}")
    print(f"crossings: {crossings} (back into a file on the stack: {back}); "
          f"between client, pool and server: {tri}")
    for (a, b), n in sorted(pairs.items(), key=lambda x: (-x[1], x[0])):
        print(f"{n:4d} {os.path.basename(a)} -> {os.path.basename(b)}")


class socket_port:
    """A free TCP port on 127.0.0.1 (closed again on entry: the daemon binds it)."""

    def __enter__(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
