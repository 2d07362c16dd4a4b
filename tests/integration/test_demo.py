"""tests/demo.sh, the README's first command, as a new user runs it: it prints how to reach
all three jobs (pgwire and HTTP through the sidecar, the admin console, /metrics, the
dashboard, a load), each printed command works as printed, its ports come from the
environment with a clear message naming the variable of a taken one, and every exit path
(Ctrl-C, SIGTERM, a failure on the way) stops everything it started."""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from helpers import free_port, listening, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("CB_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
CB_BINARY = os.environ.get("CB_BINARY") or os.path.join(SRCDIR, "src", "cratebouncer")
DEMO = os.path.join(SRCDIR, "tests", "demo.sh")
VARS = ("CB_DEMO_PORT", "CB_DEMO_HTTP_PORT", "CB_DEMO_ADMIN_PORT", "CB_DEMO_PG_PORT",
        "CB_DEMO_HTTP_UPSTREAM_PORT")


@pytest.fixture
def demo_env():
    """Free ports for every variable and a demo directory PostgreSQL (as postgres, when
    the suite runs as root) can reach."""
    d = tempfile.mkdtemp(prefix="cb-demo-", dir="/tmp")
    os.chmod(d, 0o755)
    env = dict(os.environ, CB_BINARY=CB_BINARY, CB_DEMO_DIR=d)
    ports = set()
    for v in VARS:
        p = free_port()
        while p in ports:
            p = free_port()
        ports.add(p)
        env[v] = str(p)
    yield env
    subprocess.run(["/usr/bin/python3", os.path.join(SRCDIR, "tests", "support", "pgenv.py"), "stop",
                    os.path.join(d, "pg")], capture_output=True, timeout=60)
    subprocess.run(["rm", "-rf", d])


def start_demo(env):
    """demo.sh in a process group of its own (as in a terminal, where Ctrl-C signals the
    whole foreground group); its output (stdout and stderr) goes to a file."""
    out = open(os.path.join(env["CB_DEMO_DIR"], "demo.out"), "w+")
    proc = subprocess.Popen(["bash", DEMO], env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=SRCDIR)
    proc.out = out
    return proc


def output(proc):
    with open(proc.out.name) as f:
        return f.read()


def wait_exit(proc, timeout=30):
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"demo.sh did not stop within {timeout} s:\n{output(proc)}")


def demo_processes(env):
    """Processes still running whose command line names the demo's directory or one of
    its ports (cratebouncer, crate_http.py, PostgreSQL)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if env["CB_DEMO_DIR"] in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def assert_all_stopped(env):
    wait_until(lambda: not demo_processes(env), 15, "every process the demo started to stop")
    busy = [f"{v}={env[v]}" for v in VARS if listening("127.0.0.1", int(env[v]))]
    assert not busy, f"still listening after the demo stopped: {busy}"


def printed_commands(text):
    """The indented command lines the demo printed: {first word: [argv, ...]}."""
    cmds = {}
    for line in text.splitlines():
        if line.startswith("    ") and line.strip().split(" ", 1)[0] in ("psql", "curl", "pgbench"):
            argv = shlex.split(line.strip())
            cmds.setdefault(argv[0], []).append(argv)
    return cmds


def run(argv, timeout=60):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PGCONNECT_TIMEOUT="10"))
    assert r.returncode == 0, f"{argv}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_demo_serves_all_three_jobs_and_stops_everything(demo_env, how):
    """Every command the demo prints works as printed (the interactive psql given a
    query); then Ctrl-C (SIGINT to the group) or SIGTERM (to the script alone, as a
    service manager sends it) stops cratebouncer, the HTTP endpoint and PostgreSQL."""
    env = demo_env
    proc = start_demo(env)
    try:
        wait_until(lambda: "Ctrl-C stops" in output(proc) or proc.poll() is not None, 60,
                   "the demo to print its instructions")
        text = output(proc)
        assert proc.poll() is None, f"demo.sh exited:\n{text}"
        print(text)
        port, admin = env["CB_DEMO_PORT"], env["CB_DEMO_ADMIN_PORT"]
        cmds = printed_commands(text)
        assert sorted(cmds) == ["curl", "pgbench", "psql"], text

        psqls = cmds["psql"]
        assert [a[a.index("-U") + 1] for a in psqls] == ["crate", "admin"], psqls
        assert all(a[a.index("-p") + 1] == port for a in psqls), psqls
        # the client's line is interactive: the same with a query
        assert run(psqls[0] + ["-Atc", "select 'through the demo'"]).strip() == "through the demo"
        pools = run(psqls[1] + ["-A", "-F", "|"])
        assert re.search(r"^doc\|crate\|", pools, re.M), pools

        sql, metrics = cmds["curl"]
        assert json.loads(run(sql))["rows"] == [[2]]
        assert f"http://127.0.0.1:{admin}/metrics" in metrics
        assert re.search(r"^cratebouncer_up 1$", run(metrics), re.M)

        m = re.search(r"dashboard: (http://\S+)", text)
        assert m and m.group(1) == f"http://127.0.0.1:{admin}/", text
        with urllib.request.urlopen(m.group(1), timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read(4096).lower()

        (load,) = cmds["pgbench"]
        load[load.index("-T") + 1] = "2"   # the printed 30 s, shortened
        load[load.index("-P") + 1] = "1"
        out = run(load)
        processed = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
        assert processed > 0, out
        stats = run(psqls[1][:-1] + ["SHOW STATS", "-A", "-F", "|"])
        assert re.search(r"^doc\|", stats, re.M), stats

        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
            expect = 130
        else:
            proc.send_signal(signal.SIGTERM)
            expect = 143
        assert wait_exit(proc) == expect, output(proc)
        assert "stopped cratebouncer and the demo upstreams" in output(proc)
        assert_all_stopped(env)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("var", ["CB_DEMO_PORT", "CB_DEMO_ADMIN_PORT", "CB_DEMO_HTTP_UPSTREAM_PORT"])
def test_demo_port_in_use_names_its_variable(demo_env, var):
    """A taken port is reported before anything starts, with the variable that moves it."""
    env = demo_env
    s = socket.socket()
    s.bind(("127.0.0.1", int(env[var])))
    s.listen(1)
    try:
        proc = start_demo(env)
        assert wait_exit(proc) == 1
        text = output(proc)
        assert f"port {env[var]} on 127.0.0.1 is in use" in text and f"{var}=<port>" in text, text
        assert "Starting" not in text, text
        assert not os.path.exists(os.path.join(env["CB_DEMO_DIR"], "pg")), "PostgreSQL was set up"
        assert not demo_processes(env)
    finally:
        s.close()


def test_demo_failure_after_the_upstreams_started_stops_them(demo_env, tmp_path):
    """cratebouncer failing to start (here: a binary that exits at once) ends the demo with
    a message, and the PostgreSQL and HTTP endpoint it had started are stopped."""
    fake = tmp_path / "cratebouncer"
    fake.write_text("#!/bin/sh\necho 'FATAL: cannot start (a test stand-in)' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = dict(demo_env, CB_BINARY=str(fake))
    proc = start_demo(env)
    assert wait_exit(proc, 60) == 1
    text = output(proc)
    assert "Starting the demo CrateDB HTTP endpoint" in text, text
    assert "demo.sh: cratebouncer did not start" in text, text
    assert "stopped cratebouncer and the demo upstreams" in text, text
    assert_all_stopped(env)


def test_demo_with_a_config_runs_it(tmp_path):
    """With an argument the demo runs cratebouncer on that config (a real cluster's) and
    starts nothing else: here a config -t would refuse, so it exits with the daemon's error."""
    bad = tmp_path / "bad.ini"
    bad.write_text("[cratebouncer]\nlisten_port = nope\n")
    r = subprocess.run(["bash", DEMO, str(bad)], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, CB_BINARY=CB_BINARY))
    assert r.returncode != 0
    assert "listen_port" in r.stderr, r.stderr
    assert "Starting" not in r.stdout + r.stderr
