"""bench/delay_relay.c, the network distance of bench/pgbench-rtt.sh: built as the bench
builds it, it delays each direction by the one-way delay (a round trip costs twice it),
limits the bandwidth when asked, and passes the bytes of both directions intact and in order,
the end of the stream included."""

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from helpers import REPO

SRC = os.path.join(REPO, "bench", "delay_relay.c")


@pytest.fixture(scope="module")
def relay_bin(tmp_path_factory):
    cc = shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler")
    out = str(tmp_path_factory.mktemp("relay") / "delay_relay")
    subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-o", out, SRC,
                    "-levent"], check=True, timeout=120)
    return out


@pytest.fixture
def echo_port():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    c.shutdown(socket.SHUT_WR)
                    return
                c.sendall(d)

    def accept():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def start(relay_bin, port, *args):
    p = subprocess.Popen([relay_bin, "0", "127.0.0.1", str(port), *args],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith("port "), line
    return p, int(line.split()[1])


def echo_through(rport, data):
    """Sends data and half-closes; everything read back until the end, and the seconds."""
    s = socket.create_connection(("127.0.0.1", rport))
    t0 = time.monotonic()

    def send():
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)

    th = threading.Thread(target=send)
    th.start()
    got = bytearray()
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        got += d
    th.join()
    s.close()
    return bytes(got), time.monotonic() - t0


def round_trips(rport, n=10):
    s = socket.create_connection(("127.0.0.1", rport))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for _ in range(n):
        t0 = time.monotonic()
        s.sendall(b"x" * 64)
        got = b""
        while len(got) < 64:
            got += s.recv(1024)
        rtts.append(time.monotonic() - t0)
    s.close()
    return sorted(rtts)


def test_delay_is_paid_each_way_and_bytes_arrive_intact(relay_bin, echo_port):
    p, rport = start(relay_bin, echo_port, "10")
    try:
        rtts = round_trips(rport)
        assert rtts[0] >= 0.020, rtts  # 10 ms there, 10 ms back
        assert rtts[len(rtts) // 2] < 0.030, rtts
        data = os.urandom(3 << 20)  # more than the relay queues before it stops reading
        got, _ = echo_through(rport, data)
        assert got == data
    finally:
        p.terminate()
        assert p.wait(10) == 0


def test_bandwidth_limit(relay_bin, echo_port):
    """At 80 Mbit/s, 4 MB take at least 0.42 s to go through (the echo overlaps the two
    directions); unlimited, far less."""
    data = os.urandom(4 << 20)
    p, rport = start(relay_bin, echo_port, "0", "80")
    try:
        got, secs = echo_through(rport, data)
        assert got == data and secs >= 0.42, secs
    finally:
        p.terminate()
        p.wait(10)
    p, rport = start(relay_bin, echo_port, "0")
    try:
        got, secs = echo_through(rport, data)
        assert got == data and secs < 0.3, secs
    finally:
        p.terminate()
        p.wait(10)
