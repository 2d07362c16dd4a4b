"""CancelRequest through cratebouncer: the key it issued cancels the query the client's
upstream session is running (over a new TLS connection with the upstream's key); a wrong
key cancels nothing."""
import signal
import socket
import struct
import subprocess
import threading
import time

import psycopg
import pytest

from helpers import TIMEOUT, clean_env

MODES = {"session": {}, "transaction": {"pool_mode": "transaction", "default_pool_size": 2}}


@pytest.fixture(params=sorted(MODES))
def mode(request):
    """Each test in session mode and in transaction mode (two servers for several clients)."""
    return MODES[request.param]


def test_psycopg_cancel(cratebouncer, mode):
    """psycopg's conn.cancel() stops a running pg_sleep at once; the connection stays usable."""
    cb = cratebouncer(settings=mode)
    with psycopg.connect(cb.conninfo(), autocommit=True) as conn:
        threading.Timer(0.5, conn.cancel).start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(8)")
        assert time.monotonic() - started < 4
        assert conn.execute("select 'usable'").fetchone() == ("usable",)


def test_psql_ctrl_c_cancels(cratebouncer, mode):
    """SIGINT to psql (Ctrl-C) sends a CancelRequest; the query ends with 57014."""
    cb = cratebouncer(settings=mode)
    proc = subprocess.Popen(["psql", "-X", cb.conninfo(), "-c", "select pg_sleep(8)"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())
    time.sleep(1.0)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert time.monotonic() - started < 4
    assert "canceling statement due to user request" in err, (out, err)


def test_wrong_key_cancels_nothing(cratebouncer, mode):
    """A CancelRequest with the right pid but a wrong key leaves the query running."""
    cb = cratebouncer(settings=mode)
    with psycopg.connect(cb.conninfo(), autocommit=True) as conn:
        pid = conn.info.backend_pid  # cratebouncer's id for this client, not the upstream's

        def forged():
            time.sleep(0.3)
            with socket.create_connection((cb.host, cb.port), timeout=TIMEOUT) as s:
                s.sendall(struct.pack("!IIII", 16, 80877102, pid, 0x12345678))
                s.recv(1)

        threading.Thread(target=forged).start()
        assert conn.execute("select pg_sleep(1.2), 'completed'").fetchone()[1] == "completed"
