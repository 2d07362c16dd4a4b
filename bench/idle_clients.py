#!/usr/bin/python3
"""Open N idle, logged-in pgwire client connections to a pooler and hold them.

Each connection speaks the raw protocol over plaintext TCP: a StartupMessage (protocol 3.0,
user and database), then it reads the pooler's answer until ReadyForQuery ('Z') and afterwards
sends nothing at all, so the pooler sees N idle logged-in clients. Authentication must be
trust (AuthenticationOk), unless --password is given, in which case a cleartext password
request is answered too.

    /usr/bin/python3 bench/idle_clients.py --port 6432 -n 5000 --ready-file /tmp/ready

Once every attempt has finished (logged in or failed), one line is printed to stdout:

    idle clients: 4998/5000 connected, 2 failed (1 x ConnectionRefusedError, 1 x E: ...)

and, if --ready-file is given, the same result is written there as JSON
({"wanted": N, "connected": C, "failed": F, "errors": {...}}), atomically, so a script can
wait for the file to appear. The connections are then held until SIGTERM/SIGINT, until stdin
reaches EOF (with --stdin), or until --hold-seconds have passed; then they are closed and the
process exits 0. It exits 1 only when not a single connection logged in.

Past 25,000 connections to a loopback --host it connects from 127.0.0.1, .2, ... in turn
(--sources K sets how many): one source address has about 28,000 ephemeral ports towards one
destination.
"""

import argparse
import asyncio
import collections
import json
import os
import resource
import signal
import socket
import struct
import sys
import time


def raise_fd_limit(n):
    """Soft RLIMIT_NOFILE up to what N sockets need, bounded by the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def startup_message(user, database, application_name):
    params = [("user", user), ("database", database)]
    if application_name:
        params.append(("application_name", application_name))
    body = struct.pack("!I", 196608)
    for k, v in params:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def error_text(payload):
    """The severity and message fields of an ErrorResponse body."""
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('S', 'ERROR')}: {fields.get('M', '?')}"


class LoginFailed(Exception):
    pass


# Linux's IP_BIND_ADDRESS_NO_PORT: a bound source address takes its port at connect(), so
# that one address can hold as many connections as there are ports per destination.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
PER_SOURCE = 25000  # connections per loopback source address (the ephemeral range is ~28k)


def source_addresses(args):
    """The local addresses to connect from: one, unless -n needs more ephemeral ports than one
    address has towards one destination; then 127.0.0.1, .2, ... (all of 127/8 is loopback)."""
    if args.sources:
        k = args.sources
    elif args.host.startswith("127.") and args.n > PER_SOURCE:
        k = -(-args.n // PER_SOURCE)
    else:
        return [None]
    return [f"127.0.0.{1 + i}" for i in range(k)]


async def open_from(args, source):
    if source is None:
        return await asyncio.open_connection(args.host, args.port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (args.host, args.port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def login(args, source=None):
    """Connect and log in; the open (reader, writer) once ReadyForQuery has arrived."""
    reader, writer = await open_from(args, source)
    try:
        writer.write(startup_message(args.user, args.database, args.application_name))
        await writer.drain()
        while True:
            head = await reader.readexactly(5)
            kind, length = head[:1], struct.unpack("!I", head[1:])[0]
            if length < 4 or length > 1 << 20:
                raise LoginFailed(f"bad message length {length} for {kind!r}")
            payload = await reader.readexactly(length - 4)
            if kind == b"R":
                code = struct.unpack("!I", payload[:4])[0]
                if code == 0:
                    continue
                if code == 3 and args.password is not None:
                    pw = args.password.encode() + b"\0"
                    writer.write(b"p" + struct.pack("!I", len(pw) + 4) + pw)
                    await writer.drain()
                    continue
                raise LoginFailed(f"unsupported authentication request {code}")
            if kind == b"E":
                raise LoginFailed("E " + error_text(payload))
            if kind == b"Z":
                return reader, writer
            # S (ParameterStatus), K (BackendKeyData), N (NoticeResponse): skip
    except BaseException:
        writer.close()
        raise


async def main_async(args):
    sem = asyncio.Semaphore(args.concurrency)
    held = []
    errors = collections.Counter()

    sources = source_addresses(args)

    async def one(i):
        async with sem:
            try:
                conn = await asyncio.wait_for(login(args, sources[i % len(sources)]),
                                              args.timeout)
            except asyncio.TimeoutError:
                errors["timeout"] += 1
                return
            except asyncio.IncompleteReadError:
                errors["connection closed by pooler during login"] += 1
                return
            except LoginFailed as e:
                errors[str(e)] += 1
                return
            except OSError as e:
                errors[type(e).__name__ + (f" ({e.strerror})" if e.strerror else "")] += 1
                return
            held.append(conn)

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(args.n)))
    elapsed = time.monotonic() - t0

    failed = args.n - len(held)
    detail = ", ".join(f"{c} x {e}" for e, c in errors.most_common())
    print(f"idle clients: {len(held)}/{args.n} connected, {failed} failed"
          + (f" ({detail})" if detail else "") + f" in {elapsed:.1f} s", flush=True)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"wanted": args.n, "connected": len(held), "failed": failed,
                       "errors": dict(errors), "seconds": round(elapsed, 2)}, f)
        os.replace(tmp, args.ready_file)

    # Hold until told to stop.
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.stdin:
        async def wait_stdin():
            await loop.run_in_executor(None, sys.stdin.read)
            stop.set()
        loop.create_task(wait_stdin())
    # Notice connections the pooler drops while they are held.
    dropped = 0

    async def watch(reader):
        nonlocal dropped
        try:
            data = await reader.read(1)
        except (OSError, asyncio.CancelledError):
            return
        if not data:
            dropped += 1

    watchers = [loop.create_task(watch(r)) for r, _ in held]
    try:
        await asyncio.wait_for(stop.wait(), args.hold_seconds)
    except asyncio.TimeoutError:
        pass
    if dropped:
        print(f"idle clients: {dropped} of the held connections were closed by the pooler",
              flush=True)
    for t in watchers:
        t.cancel()
    for _, w in held:
        w.close()
    await asyncio.sleep(0)
    return 0 if held else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6432)
    ap.add_argument("--user", default="crate")
    ap.add_argument("--database", default="doc")
    ap.add_argument("--password", default=None,
                    help="answer a cleartext password request with this (default: trust only)")
    ap.add_argument("--application-name", default="idle_clients")
    ap.add_argument("-n", type=int, default=5000, help="connections to open (default 5000)")
    ap.add_argument("--concurrency", type=int, default=200,
                    help="logins in flight at once (default 200)")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds allowed per login (default 30)")
    ap.add_argument("--ready-file", help="write the result here as JSON once all are up")
    ap.add_argument("--hold-seconds", type=float, default=None,
                    help="stop holding after this long (default: until SIGTERM/SIGINT)")
    ap.add_argument("--stdin", action="store_true", help="also stop at EOF on stdin")
    ap.add_argument("--sources", type=int, default=0,
                    help="connect from 127.0.0.1 .. 127.0.0.K in turn (default: as many as -n "
                    f"needs at {PER_SOURCE} per address, when --host is loopback)")
    args = ap.parse_args()

    limit = raise_fd_limit(args.n)
    if limit != resource.RLIM_INFINITY and limit < args.n + 16:
        print(f"idle_clients: warning: open file limit {limit} is below {args.n} connections",
              file=sys.stderr)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
