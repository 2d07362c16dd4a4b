"""The soak test (bench/soak.sh, issue 14 items 4 and 5) in CI: five minutes of mixed pgwire and
HTTP load with connection churn, the isolation check, and RSS / fd growth checks, against the
binary under test (CB_BINARY). Skipped unless CB_SOAK=1; CB_SOAK_SECONDS and CB_SOAK_SAMPLE
change its length (default 300 and 30). The script starts its own PostgreSQL, stand-in and
daemon; its samples, summary and log go to CB_ARTIFACT_DIR/soak."""

import os
import subprocess

import pytest

from helpers import CB_BINARY

REPO = os.environ.get("CB_SRCDIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
SECONDS = int(os.environ.get("CB_SOAK_SECONDS", "300"))
SAMPLE = int(os.environ.get("CB_SOAK_SAMPLE", "30"))


def sanitized(binary):
    """An ASan build: its allocator quarantines freed memory (up to 256 MB by default), so RSS
    grows by design and says nothing about leaks there (LeakSanitizer does, at exit)."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


@pytest.mark.skipif(os.environ.get("CB_SOAK") != "1", reason="the soak test runs with CB_SOAK=1")
@pytest.mark.time_limit(SECONDS + 240)
def test_soak(tmp_path):
    out = os.path.join(os.environ.get("CB_ARTIFACT_DIR") or str(tmp_path), "soak")
    env = dict(os.environ, CB_BINARY=CB_BINARY, CRATEBOUNCER=CB_BINARY,
               SOAK_SECONDS=str(SECONDS), SOAK_SAMPLE=str(SAMPLE), SOAK_OUT=out)
    if sanitized(CB_BINARY):
        env.setdefault("SOAK_RSS_MB", "1024")  # the isolation and fd checks still apply
    res = subprocess.run(["bash", os.path.join(REPO, "bench", "soak.sh")], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=SECONDS + 200)
    print(res.stdout)
    assert res.returncode == 0, f"bench/soak.sh exited {res.returncode}:\n{res.stdout[-6000:]}"
    assert "isolation check:" in res.stdout and " 0 mismatches, 0 unexplained errors" in res.stdout
