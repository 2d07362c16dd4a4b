"""The command line: -V, -h, -t (config check with FILE:LINE errors), -d, and the pidfile."""

import os
import re
import signal
import subprocess
import time

import pytest

from helpers import CB_BINARY, TIMEOUT, free_port, listening, psql

pytestmark = pytest.mark.skipif(not os.path.exists(CB_BINARY), reason=f"{CB_BINARY} not built")


def run(*args):
    return subprocess.run([CB_BINARY, *args], capture_output=True, text=True, timeout=TIMEOUT)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def good_config(pg, workdir, port=None):
    return f"""\
[databases]
doc = host=127.0.0.1 port={pg.port} dbname=doc user=crate password=secret

[cratebouncer]
listen_addr = 127.0.0.1
listen_port = {port or free_port()}
unix_socket_dir =
auth_type = trust
server_tls_sslmode = verify-full
server_tls_ca_file = {pg.ca}
logfile = {workdir}/cratebouncer.log
pidfile = {workdir}/cratebouncer.pid
"""


def test_version():
    """-V prints the name and version and exits 0."""
    res = run("-V")
    assert res.returncode == 0
    assert "cratebouncer 0.1.0" in res.stdout


def test_help():
    """-h prints usage and exits 0."""
    res = run("-h")
    assert res.returncode == 0
    assert "usage" in (res.stdout + res.stderr).lower()


def test_check_good_config(pg, tmp_path):
    """-t on a valid config exits 0 without starting to serve."""
    cfg = write(tmp_path / "good.ini", good_config(pg, tmp_path))
    res = run("-t", cfg)
    assert res.returncode == 0, res.stderr
    assert not os.path.exists(tmp_path / "cratebouncer.pid")


def _file_line(cfg, line):
    # FILE as given on the command line (an absolute path here), or its base name.
    return re.compile(rf"(^|\s)({re.escape(cfg)}|{re.escape(os.path.basename(cfg))}):{line}:",
                      re.M)


def test_check_reports_every_error(pg, tmp_path):
    """-t on a config with two bad lines exits 1 and reports both as FILE:LINE: message."""
    text = good_config(pg, tmp_path).replace(
        "auth_type = trust\n", "auth_type = trust\nbogus_key = 1\ndefault_pool_size = lots\n")
    cfg = write(tmp_path / "bad.ini", text)
    lines = text.splitlines()
    bogus = lines.index("bogus_key = 1") + 1
    lots = lines.index("default_pool_size = lots") + 1
    res = run("-t", cfg)
    assert res.returncode == 1
    assert _file_line(cfg, bogus).search(res.stderr), res.stderr
    assert _file_line(cfg, lots).search(res.stderr), res.stderr


def test_check_reports_bad_database_entry(pg, tmp_path):
    """-t reports an unknown key inside a [databases] entry with its line."""
    text = good_config(pg, tmp_path).replace(
        "[databases]\n", "[databases]\nbroken = host=127.0.0.1 port=1 pool_sise=5\n")
    cfg = write(tmp_path / "bad.ini", text)
    res = run("-t", cfg)
    assert res.returncode == 1
    assert _file_line(cfg, 2).search(res.stderr), res.stderr


def test_pidfile_written(cratebouncer):
    """The pidfile holds the daemon's pid while it runs."""
    cb = cratebouncer()
    with open(cb.pidfile) as f:
        assert int(f.read().strip()) == cb.proc.pid


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_daemonize(pg, tmp_path):
    """-d returns at once, leaving a background daemon (its pid in the pidfile) that serves."""
    workdir = tmp_path
    port = free_port()
    cfg = write(workdir / "d.ini", good_config(pg, workdir, port))
    res = subprocess.run([CB_BINARY, "-d", cfg], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    pid = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while pid is None and time.monotonic() < deadline:
            try:
                with open(workdir / "cratebouncer.pid") as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                time.sleep(0.05)
        assert pid, "no pidfile"
        while not listening("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        out = psql(f"host=127.0.0.1 port={port} dbname=doc user=crate", "select current_user")
        assert out.stdout.strip() == "crate"
    finally:
        if pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
