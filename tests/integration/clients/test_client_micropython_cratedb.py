"""micropython-cratedb (crate/micropython-cratedb's cratedb.py) run by MicroPython's unix port
against cratebouncer's HTTP side: the way a microcontroller without TLS reaches CrateDB Cloud.

cratedb.py does its HTTP with MicroPython's `requests` (micropython-lib; `urequests` as a
fallback): one `POST /_sql` (or `/_sql?types`) per statement on a new connection, HTTP/1.1
with `Connection: close` and `Host: <host>` (no port), `Content-Type: text/json`,
`Default-Schema`, a JSON body `{"stmt", "args"}` or `{"stmt", "bulk_args"}` (a list of lists
is a bulk request), and Basic auth only when given a user and password. A 400/404/409 raises
CrateDBError with the error document, any other non-200 NetworkError.

Neither is available to CI: micropython-cratedb is not on PyPI, MicroPython is not packaged
in Debian 12, and CI reaches Debian, PyPI, npm, Maven and crates.io but not GitHub, where
both live. So this file runs only when given them by hand:
  CB_MICROPYTHON          the micropython binary (ports/unix, e.g. build-standard/micropython)
  CB_MICROPYTHON_CRATEDB  a directory with cratedb.py and what it imports that the binary
                          lacks: base64.py (micropython-lib python-stdlib/base64) and, unless
                          frozen in, requests/ (micropython-lib python-ecosys/requests)
It is put first on MICROPYPATH, before the binary's frozen modules."""

import json
import os
import subprocess
import threading

import pytest

import http_checks as hc
from conftest import snippet

MICROPYTHON = os.environ.get("CB_MICROPYTHON", "")
LIB = os.environ.get("CB_MICROPYTHON_CRATEDB", "")

pytestmark = pytest.mark.skipif(
    not (MICROPYTHON and LIB),
    reason="micropython-cratedb: not on PyPI, MicroPython not in Debian 12, and CI cannot "
           "reach GitHub where both live; set CB_MICROPYTHON (the micropython binary) and "
           "CB_MICROPYTHON_CRATEDB (the directory of cratedb.py, base64.py, requests/) to run "
           "it by hand")


def micropython(code, timeout=60):
    """Run code under MicroPython with micropython-cratedb importable; its stdout."""
    env = dict(os.environ, MICROPYPATH=f"{LIB}:.frozen")
    r = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert r.returncode == 0, f"micropython failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def run_json(b, body):
    """Run body (MicroPython code that fills the dict `out`) against b; out."""
    code = ("import json\nimport cratedb\n"
            f"crate = cratedb.CrateDB(host='127.0.0.1', port={b.http_port}, use_ssl=False)\n"
            "out = {}\n" + body + "\nprint(json.dumps(out))\n")
    return json.loads(micropython(code).splitlines()[-1])


def test_guide_snippet(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    code = snippet("micropython-cratedb").replace("port=4200", f"port={b.http_port}")
    assert f"port={b.http_port}" in code
    want = [hc.cluster_name(b.target)] + [f"{m} {h}" for m, h in hc.TOP2]
    assert micropython(code).splitlines() == want


def test_parameters_bulk_and_types(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    tag, name = hc.new_tag(), hc.table_name("mp_bulk")
    refresh = hc.refresh_sql(b.target, name)
    out = run_json(b, f"""
out['p'] = crate.execute("SELECT ?, ? + 1, ?", ["it's ?", 41, None])['rows']
out['s'] = crate.execute("SELECT mountain, height FROM sys.summits WHERE height > ? "
                         "ORDER BY height DESC", [4600])['rows']
out['t'] = crate.execute("SELECT name FROM sys.cluster", with_types=True)['col_types']
crate.execute("CREATE TABLE {name} (id INTEGER, v TEXT)")
try:
    r = crate.execute("INSERT INTO {name} (id, v) VALUES (?, ?)",
                      [[i, '{tag}-' + str(i)] for i in range(1, 51)])
    out['bulk'] = [x['rowcount'] for x in r['results']]
    crate.execute("INSERT INTO {name} (id, v) VALUES (?, ?)", [51, '{tag}-51'],
                  return_response=False)
    if {refresh!r}:
        crate.execute({refresh!r})
    out['back'] = crate.execute("SELECT id, v FROM {name} ORDER BY id")['rows']
finally:
    crate.execute("DROP TABLE IF EXISTS {name}")
""")
    assert out["p"] == [["it's ?", 42, None]]
    assert [tuple(r) for r in out["s"]] == hc.TOP2
    assert out["t"] == [4]  # text
    assert out["bulk"] == [1] * 50
    assert [tuple(r) for r in out["back"]] == [(i, f"{tag}-{i}") for i in range(1, 52)]


def test_thousands_of_rows(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    tag = hc.new_tag()
    out = run_json(b, f"""
out['rows'] = crate.execute({hc.rows_sql(tag)!r})['rows']
out['p'] = crate.execute({hc.ROWS_SQL_QMARK!r}, [{tag!r}, {hc.ROWS}])['rows']
""")
    hc.check_rows(out["rows"], tag)
    hc.check_rows(out["p"], tag)


def test_error_has_the_upstreams_message_then_works(http_sidecar):
    b = http_sidecar(pool_size=hc.POOL)
    table = hc.missing(hc.new_tag())
    out = run_json(b, f"""
try:
    crate.execute("SELECT * FROM {table}")
    out['error'] = None
except cratedb.CrateDBError as e:
    out['error'] = e.args[0]
out['after'] = crate.execute("SELECT name FROM sys.cluster")['rows']
""")
    assert out["error"]["error"]["code"] == 4041, out
    hc.check_error(out["error"]["error"]["message"], table)
    assert out["after"] == [[hc.cluster_name(b.target)]]


def test_devices_share_a_smaller_pool(http_sidecar):
    """CLIENTS MicroPython processes at once (devices behind one gateway), each checking it
    got its own tagged rows, over the sidecar's pool of 2."""
    b = http_sidecar(pool_size=hc.POOL)
    tags = [[hc.new_tag(i) for _ in range(hc.ROUNDS)] for i in range(hc.CLIENTS)]
    results, errors = [None] * hc.CLIENTS, []

    def device(i):
        try:
            results[i] = run_json(b, f"""
for tag in {tags[i]!r}:
    out[tag] = crate.execute({hc.ROWS_SQL_QMARK!r}, [tag, {hc.CLIENT_ROWS}])['rows']
""")
        except Exception as e:  # reported below
            errors.append((i, e))

    threads = [threading.Thread(target=device, args=(i,)) for i in range(hc.CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, f"{len(errors)} of {hc.CLIENTS} devices failed; {errors[0]}"
    for i in range(hc.CLIENTS):
        assert sorted(results[i]) == sorted(tags[i])
        for tag, rows in results[i].items():
            hc.check_rows(rows, tag, hc.CLIENT_ROWS)
