"""The admin HTTP port ([admin] listen_addr, listen_port): Prometheus text at /metrics (checked
by promtool, counters moving under pgbench), JSON at /stats agreeing with SHOW POOLS, the /health
and /ready probes, the self-contained dashboard at / (rendered in headless Chromium under load,
with a screenshot kept in $CB_ARTIFACT_DIR), the access token, and the refusal to expose the
port beyond loopback without one.

Tools: promtool (Debian package prometheus) and chromium; the tests needing them skip, naming
the package, only when they are missing."""

import html.parser
import http.client
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time

import psycopg
import pytest

from helpers import (CB_BINARY, TIMEOUT, Background, clean_env, console, first_error, free_port,
                     listening, pgbench_cmd, pgbench_processed, show, wait_until)

ADMIN = "cbadmin"
CONSOLE = {"admin_users": ADMIN}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--virtual-time-budget=6000", "--window-size=1400,1000"]
HISTOGRAMS = ("cratebouncer_query_duration_seconds", "cratebouncer_transaction_duration_seconds",
              "cratebouncer_pool_wait_duration_seconds")


# ---------------------------------------------------------------------------------------------
# helpers


def http_get(port, path, headers=None, host="127.0.0.1"):
    """GET path -> (status, headers, body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def get_ok(port, path, **kw):
    status, headers, body = http_get(port, path, **kw)
    assert status == 200, f"GET {path}: {status} {body[:300]!r}"
    return headers, body


def get_json(port, path="/stats"):
    headers, body = get_ok(port, path)
    assert "json" in headers.get("Content-Type", ""), headers.get("Content-Type")
    return json.loads(body)


@pytest.fixture
def http_bouncer(cratebouncer):
    """http_bouncer(settings=, databases=, admin={...}) -> a Bouncer with the admin HTTP port on
    127.0.0.1 (cb.http_port), already accepting connections."""
    def make(settings=None, databases=None, admin=None):
        port = free_port()
        section = {"listen_addr": "127.0.0.1", "listen_port": port, **(admin or {})}
        cb = cratebouncer(settings={**CONSOLE, **(settings or {})}, databases=databases,
                          sections={"admin": section})
        cb.http_port = port
        try:
            wait_until(lambda: listening("127.0.0.1", port) or cb.proc.poll() is not None, 3,
                       "the admin HTTP port listening")
        except AssertionError:
            pytest.fail(f"nothing listens on the admin HTTP port {port} ([admin] listen_port)",
                        pytrace=False)
        return cb
    return make


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    """Prometheus text -> (types {family: type}, samples [(name, {label: value}, float)])."""
    types, samples = {}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparsable metrics line: {line!r}"
        labels = dict(_LABEL.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def value(samples, name, **labels):
    """The single sample of name whose labels include labels."""
    found = [v for n, lb, v in samples if n == name and all(lb.get(k) == x
                                                            for k, x in labels.items())]
    assert len(found) == 1, f"{len(found)} samples {name}{labels}"
    return found[0]


def scrape(port):
    headers, body = get_ok(port, "/metrics")
    assert headers.get("Content-Type", "").startswith("text/plain"), headers.get("Content-Type")
    return body.decode()


def start_pgbench(cb, pgbench, seconds, clients=4, rate=None):
    return subprocess.Popen(pgbench_cmd(pgbench, cb.host, cb.port, seconds, clients, rate=rate),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=clean_env())


def finish(proc, timeout=15, stop=False):
    """Its output once it ended (SIGINT first when stop); fails if pgbench failed."""
    if stop and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    if not stop:
        assert proc.returncode == 0, out
    return out


def artifact_dir():
    """$CB_ARTIFACT_DIR, else <cwd>/test-artifacts, created; a temp directory when the latter
    cannot be written (a read-only source tree under make distcheck)."""
    wanted = os.environ.get("CB_ARTIFACT_DIR")
    path = wanted or os.path.join(os.getcwd(), "test-artifacts")
    try:
        os.makedirs(path, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    if wanted:
        pytest.fail(f"CB_ARTIFACT_DIR={wanted} cannot be created or written", pytrace=False)
    path = os.path.join(tempfile.gettempdir(), "cratebouncer-test-artifacts")
    os.makedirs(path, exist_ok=True)
    print(f"<cwd>/test-artifacts is not writable: artifacts go to {path}")
    return path


def tool(name, package):
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} not found (install the Debian package {package})")
    return path


def traffic(cb, db="doc"):
    """A pool with some finished queries: one client logs in and out."""
    with cb.connect(dbname=db) as conn:
        conn.execute("select 1")


# ---------------------------------------------------------------------------------------------
# probes


def test_health_ready_and_unknown_path(http_bouncer):
    """/health answers 200, /ready 200 with a reachable upstream, an unknown path 404."""
    cb = http_bouncer()
    traffic(cb)
    assert http_get(cb.http_port, "/health")[0] == 200
    assert http_get(cb.http_port, "/ready")[0] == 200
    assert http_get(cb.http_port, "/no/such/page")[0] == 404


def test_listen_addr_list(http_bouncer):
    """[admin] listen_addr takes a list, as the other sides do: 127.0.0.1 and ::1 both
    answer (before, only one address was accepted there)."""
    cb = http_bouncer(admin={"listen_addr": "127.0.0.1, ::1"})
    assert http_get(cb.http_port, "/health")[0] == 200
    assert http_get(cb.http_port, "/health", host="::1")[0] == 200


def test_ready_503_when_upstream_down(http_bouncer, upstream):
    """With the only pool's upstream down, /ready is 503 and /stats, /metrics say so."""
    dead = free_port()
    cb = http_bouncer(databases={"down": upstream(port=dead)})
    err = first_error(cb.host, cb.port, database="down")
    assert err.message
    status = wait_until(lambda: (lambda s: s if s == 503 else None)(
        http_get(cb.http_port, "/ready")[0]), 5, "/ready 503")
    assert status == 503
    stats = get_json(cb.http_port)
    pool = [p for p in stats["pools"] if p["database"] == "down"]
    assert len(pool) == 1, stats["pools"]
    assert pool[0]["upstream_up"] in (False, 0), pool[0]
    assert pool[0]["last_error"], pool[0]
    _, samples = parse_metrics(scrape(cb.http_port))
    assert value(samples, "cratebouncer_upstream_up", database="down") == 0
    assert http_get(cb.http_port, "/health")[0] == 200, "the daemon itself is healthy"


# ---------------------------------------------------------------------------------------------
# /metrics


def test_metrics_pass_promtool_under_load(http_bouncer, pgbench_tables):
    """A /metrics scrape under load passes promtool and has every expected family."""
    promtool = tool("promtool", "prometheus")
    cb = http_bouncer()
    bench = start_pgbench(cb, pgbench_tables, 3)
    try:
        time.sleep(1.0)
        assert bench.poll() is None, "pgbench ended early"
        text = scrape(cb.http_port)
    finally:
        out = finish(bench)
    assert pgbench_processed(out) > 0
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=TIMEOUT)
    assert check.returncode == 0, f"promtool check metrics:\n{check.stdout}{check.stderr}"
    types, samples = parse_metrics(text)
    expected = {"cratebouncer_pool_queries_total": "counter",
                "cratebouncer_pool_transactions_total": "counter",
                "cratebouncer_pool_clients": "gauge", "cratebouncer_pool_servers": "gauge",
                "cratebouncer_upstream_up": "gauge", **{h: "histogram" for h in HISTOGRAMS}}
    for family, kind in expected.items():
        # a counter's family may be declared with or without its _total suffix
        declared = types.get(family) or types.get(family.removesuffix("_total"))
        assert declared == kind, f"# TYPE of {family}: {declared}"
    doc = {"database": "doc", "user": "crate"}
    assert value(samples, "cratebouncer_pool_queries_total", **doc) > 0
    assert value(samples, "cratebouncer_pool_transactions_total", **doc) > 0
    assert value(samples, "cratebouncer_pool_clients", state="active", **doc) >= 1
    assert value(samples, "cratebouncer_pool_servers", state="active", **doc) >= 1
    client_states = {lb.get("state") for n, lb, _ in samples if n == "cratebouncer_pool_clients"}
    assert {"active", "waiting"} <= client_states, client_states
    assert value(samples, "cratebouncer_upstream_up", database="doc") == 1
    for h in HISTOGRAMS:
        buckets = sorted(((float(lb["le"]), v) for n, lb, v in samples
                          if n == h + "_bucket" and lb.get("database") == "doc"
                          and lb.get("user") == "crate"), key=lambda b: b[0])
        assert len(buckets) >= 2 and buckets[-1][0] == math.inf, f"{h} buckets: {buckets}"
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"{h} buckets not cumulative: {buckets}"
        assert buckets[-1][1] == value(samples, h + "_count", **doc)
        assert value(samples, h + "_sum", **doc) >= 0
    assert value(samples, HISTOGRAMS[0] + "_count", **doc) > 0


def test_metrics_counters_increase(http_bouncer, pgbench_tables):
    """Counters and histogram counts in /metrics grow by at least pgbench's work."""
    cb = http_bouncer()
    traffic(cb)
    doc = {"database": "doc", "user": "crate"}
    _, before = parse_metrics(scrape(cb.http_port))
    bench = start_pgbench(cb, pgbench_tables, 2)
    processed = pgbench_processed(finish(bench))
    assert processed > 100, f"pgbench did only {processed} transactions"
    time.sleep(0.2)
    _, after = parse_metrics(scrape(cb.http_port))
    for name in ("cratebouncer_pool_queries_total", "cratebouncer_pool_transactions_total",
                 "cratebouncer_query_duration_seconds_count",
                 "cratebouncer_transaction_duration_seconds_count"):
        grew = value(after, name, **doc) - value(before, name, **doc)
        assert grew >= processed, f"{name} grew by {grew}, pgbench did {processed}"
    assert value(after, "cratebouncer_query_duration_seconds_sum", **doc) > \
        value(before, "cratebouncer_query_duration_seconds_sum", **doc)
    assert value(after, "cratebouncer_pool_wait_duration_seconds_count", **doc) >= \
        value(before, "cratebouncer_pool_wait_duration_seconds_count", **doc) + 3, \
        "pgbench's 4 clients got servers, 3 of them newly connected ones they waited for"


# ---------------------------------------------------------------------------------------------
# /stats


def _total(figure):
    """A count given as a number, or as an object of counts by state."""
    if isinstance(figure, dict):
        return sum(v for v in figure.values() if isinstance(v, (int, float)))
    return figure


def test_stats_json_agrees_with_show_pools(http_bouncer, upstream):
    """/stats has the documented fields and its pool agrees with SHOW POOLS."""
    cb = http_bouncer(databases={"doc": upstream(pool_size=1)})
    holder = cb.connect()
    holder.execute("select 1")

    def waiter():
        with psycopg.connect(cb.conninfo(), autocommit=True) as conn:
            return conn.execute("select 'waited'").fetchone()

    adm = console(cb)
    job = Background(waiter)
    try:
        wait_until(lambda: [p for p in show(adm, "POOLS") if p["cl_waiting"] == 1], 5,
                   "a waiting client")
        pool_rows = show(adm, "POOLS")
        stats = get_json(cb.http_port)
        totals_row = [r for r in show(adm, "STATS_TOTALS") if r["database"] == "doc"][0]
        version = show(adm, "VERSION")[0]["version"]
    finally:
        holder.close()
        job.join(TIMEOUT)
    assert job.error is None, repr(job.error)
    for key in ("version", "uptime_seconds", "clients", "servers", "pools"):
        assert key in stats, f"/stats without {key}: {sorted(stats)}"
    assert stats["version"] and stats["version"].split()[-1] in version, (stats["version"], version)
    assert 0 <= stats["uptime_seconds"] < 120
    assert _total(stats["clients"]) >= 2 and _total(stats["servers"]) >= 1, stats
    doc = [p for p in stats["pools"] if p["database"] == "doc" and p["user"] == "crate"]
    assert len(doc) == 1, stats["pools"]
    p = doc[0]
    row = [r for r in pool_rows if r["database"] == "doc" and r["user"] == "crate"][0]
    assert (p["clients"]["active"], p["clients"]["waiting"]) == (row["cl_active"],
                                                                 row["cl_waiting"]) == (1, 1)
    assert (p["servers"]["active"], p["servers"]["idle"], p["servers"]["used"],
            p["servers"]["login"]) == (row["sv_active"], row["sv_idle"], row["sv_used"],
                                       row["sv_login"])
    assert p["upstream_up"] in (True, 1) and not p["last_error"], p
    for part in ("totals", "averages"):
        assert isinstance(p[part], dict) and p[part], f"{part}: {p.get(part)!r}"
        assert all(isinstance(v, (int, float)) for v in p[part].values()), p[part]
    assert any(v > 0 for v in p["totals"].values()), p["totals"]
    same = [k for k in p["totals"] if k in totals_row]
    for k in same:  # figures named as in SHOW STATS_TOTALS agree with it
        assert p["totals"][k] == totals_row[k], f"totals.{k}: {p['totals'][k]} vs {totals_row[k]}"


# ---------------------------------------------------------------------------------------------
# the dashboard


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr"}


class _Refs(html.parser.HTMLParser):
    """Resource attributes (refs), element ids, and the text inside each element with an id."""

    def __init__(self):
        super().__init__()
        self.refs, self.ids, self.texts, self._open = [], set(), {}, []

    def handle_starttag(self, tag, attrs):
        ident = None
        for k, v in attrs:
            if k in ("src", "href", "action", "data", "poster", "srcset") and v:
                self.refs.append((tag, k, v))
            if k == "id" and v:
                ident = v
                self.ids.add(v)
                self.texts.setdefault(v, "")
        if tag not in VOID:
            self._open.append((tag, ident))

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        for _, ident in self._open:
            if ident:
                self.texts[ident] += data


EXTERNAL = re.compile(r"""(?:^|[\s,])(?:https?:)?//""", re.I)


def test_dashboard_is_self_contained(http_bouncer):
    """GET / is one self-contained HTML page with the live-figure elements."""
    cb = http_bouncer()
    headers, body = get_ok(cb.http_port, "/")
    assert headers.get("Content-Type", "").startswith("text/html"), headers.get("Content-Type")
    page = body.decode()
    refs = _Refs()
    refs.feed(page)
    external = [r for r in refs.refs if EXTERNAL.match(r[2].strip())]
    assert not external, f"external references: {external}"
    for pattern in (r"""url\(\s*['"]?\s*(?:https?:)?//""", r"""@import\s+['"]?(?:https?:)?//""",
                    r"""\bimport\b[^;\n]*from\s*['"](?:https?:)?//""",
                    r"""(?:fetch|EventSource|WebSocket)\(\s*['"`](?:https?|wss?):"""):
        m = re.search(pattern, page, re.I)
        assert not m, f"external resource in the page: {m.group(0)!r}"
    for element in ("total-qps", "total-tps", "total-clients"):
        assert element in refs.ids, f"no element with id {element}"


def _number(text):
    """The first number in text (1,234 / 1.2k / 3 M ...), or None."""
    m = re.search(r"(-?\d[\d,]*(?:\.\d+)?)\s*([kKMG])?", text or "")
    if not m:
        return None
    n = float(m.group(1).replace(",", ""))
    return n * {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}.get(m.group(2) or "", 1)


def _chromium(chromium, url, extra, timeout=45):
    profile = tempfile.mkdtemp(prefix="cb-chromium-")
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # chromium and the helpers it started
        out, err = proc.communicate()
        raise AssertionError(f"chromium {extra} did not finish within {timeout} s:\n{err[-2000:]}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, f"chromium {extra} exited {proc.returncode}:\n{err[-2000:]}"
    return out


def test_dashboard_live_in_chromium(http_bouncer, pgbench_tables):
    """Under pgbench, Chromium renders non-zero total-qps/total-tps; screenshot kept."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium not found (install the Debian package chromium)")
    cb = http_bouncer()
    url = f"http://127.0.0.1:{cb.http_port}/"
    artifacts = artifact_dir()
    # a private name first: concurrent runs sharing the directory must not see half a file
    fd, shot = tempfile.mkstemp(prefix=".dashboard-", suffix=".png", dir=artifacts)
    os.close(fd)
    # rate-limited: a steady load that leaves CPU for Chromium on a small machine
    bench = start_pgbench(cb, pgbench_tables, 50, clients=4, rate=400)
    try:
        time.sleep(1.5)
        assert bench.poll() is None, "pgbench ended early"
        dom = _chromium(chromium, url, [f"--screenshot={shot}", "--dump-dom"])
        assert bench.poll() is None, "pgbench ended before the dashboard was read"
        with open(shot, "rb") as f:
            png = f.read()
        os.chmod(shot, 0o644)
        os.replace(shot, os.path.join(artifacts, "dashboard-under-load.png"))
    finally:
        finish(bench, stop=True)
        if os.path.exists(shot):
            os.unlink(shot)
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    width, height = struct.unpack("!II", png[16:24])
    assert (width, height) == (1400, 1000), (width, height)
    assert len(png) > 5000, f"a {len(png)}-byte screenshot looks blank"
    refs = _Refs()
    refs.feed(dom)
    figures = {i: refs.texts.get(i) for i in ("total-qps", "total-tps", "total-clients")}
    for element in ("total-qps", "total-tps"):
        n = _number(figures[element])
        assert n is not None and n > 0, \
            f"#{element} shows {figures[element]!r} under load (all: {figures})"
    assert (_number(figures["total-clients"]) or 0) >= 4, figures


# ---------------------------------------------------------------------------------------------
# access


def test_access_token_keeps_loopback_working(http_bouncer):
    """With access_token_file set, loopback requests work and never see the token."""
    token = "Admin-Http-Token-5656"
    tokdir = tempfile.mkdtemp(prefix="cb-token-")
    try:
        tokfile = os.path.join(tokdir, "token")
        with open(tokfile, "w") as f:
            f.write(token + "\n")
        os.chmod(tokfile, 0o600)
        cb = http_bouncer(admin={"access_token_file": tokfile})
        traffic(cb)
        for path in ("/health", "/ready", "/metrics", "/stats", "/"):
            for headers in ({}, {"Authorization": f"Bearer {token}"}):
                status, _, body = http_get(cb.http_port, path, headers=headers)
                assert status == 200, f"GET {path} {headers}: {status}"
                assert token.encode() not in body, f"the token in GET {path}"
    finally:
        shutil.rmtree(tokdir, ignore_errors=True)


def test_refuses_exposed_port_without_token(service_bouncer):
    """[admin] on 0.0.0.0 without access_token_file is refused; with one it serves."""
    port = free_port()
    cb = service_bouncer(sections={"admin": {"listen_addr": "0.0.0.0", "listen_port": port}})
    cb.prepare()
    check = subprocess.run([CB_BINARY, "-t", cb.config_path], capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert check.returncode != 0, "cratebouncer -t accepted an exposed admin port without token"
    try:
        res = subprocess.run([CB_BINARY, cb.config_path], capture_output=True, text=True,
                             cwd=cb.workdir, timeout=TIMEOUT, env=clean_env())
    except subprocess.TimeoutExpired:
        raise AssertionError("the daemon ran with an exposed admin port and no token") from None
    assert res.returncode != 0
    assert "access_token_file" in res.stderr + check.stdout + check.stderr, res.stderr
    assert not listening("0.0.0.0", port)
    tokfile = os.path.join(cb.workdir, "token")
    with open(tokfile, "w") as f:
        f.write("Exposed-Token-7878\n")
    os.chmod(tokfile, 0o600)
    cb.sections["admin"]["access_token_file"] = tokfile
    cb.write_config()
    cb.launch()
    wait_until(lambda: listening("0.0.0.0", port), 3, "the admin port on 0.0.0.0")
    assert http_get(port, "/health")[0] == 200


def _listening_ports(pid):
    """TCP ports the process listens on (from its socket inodes and /proc/net/tcp{,6})."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for r in rows:
            cols = r.split()
            if cols[3] == "0A" and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.parametrize("admin", [None, {"listen_port": 0}], ids=["absent", "port-0"])
def test_admin_port_off(cratebouncer, admin):
    """Without [admin] listen_port (or with 0) the daemon listens on its client port only."""
    cb = cratebouncer(sections={"admin": admin} if admin else None)
    traffic(cb)
    assert _listening_ports(cb.proc.pid) == {cb.port}
