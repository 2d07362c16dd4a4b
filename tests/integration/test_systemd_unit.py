"""The systemd units in systemd/: the service's sandbox (systemd-analyze security), that the
units parse (systemd-analyze verify), that the socket unit hands over fds named "pgwire",
and that the sysusers.d/tmpfiles.d snippets create what the service expects.

No PostgreSQL and no running systemd needed: systemd-analyze works on unit files offline.
The service is generated from cratebouncer.service.in with the substitutions Makefile.am's
do_subst makes (read from Makefile.am, so the two cannot drift apart).
"""

import os
import re
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("CB_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
SYSTEMD_DIR = os.path.join(SRCDIR, "systemd")
CB_BINARY = os.environ.get("CB_BINARY") or os.path.join(SRCDIR, "src", "cratebouncer")

MAX_EXPOSURE = 2.0  # Debian's pgbouncer.service: 9.2
SYSCONFDIR = "/etc"


def _analyze():
    path = os.environ.get("SYSTEMD_ANALYZE") or shutil.which("systemd-analyze")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return path


def _run(args, cwd=None, **env):
    return subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=60,
                          env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0",
                               "LC_ALL": "C.UTF-8", **env})


def _subst_expressions(sbindir, sysconfdir):
    """The sed -e expressions of Makefile.am's do_subst, with make's variables filled in."""
    with open(os.path.join(SRCDIR, "Makefile.am")) as f:
        text = f.read()
    m = re.search(r"^do_subst\s*=\s*\$\(SED\)(.*)$", text, re.M)
    assert m, "Makefile.am has no do_subst = $(SED) ... line"
    exprs = re.findall(r"-e\s+'([^']*)'", m.group(1))
    assert exprs, "no -e '...' expressions in do_subst"
    values = {"sbindir": sbindir, "sysconfdir": sysconfdir}
    out = []
    for e in exprs:
        e = re.sub(r"\$\((\w+)\)", lambda v: values.get(v.group(1), v.group(0)), e)
        assert "$(" not in e, f"do_subst uses a make variable this test does not know: {e}"
        out.append(e)
    return out


def _generate(src, dst, sbindir, sysconfdir=SYSCONFDIR):
    """dst from src.in, with the sed that make uses."""
    args = ["sed"]
    for e in _subst_expressions(sbindir, sysconfdir):
        args += ["-e", e]
    with open(dst, "w") as out:
        subprocess.run(args + [src], stdout=out, check=True, timeout=30)
    with open(dst) as f:
        left = re.findall(r"@\w+@", f.read())
    assert not left, f"{os.path.basename(src)}: not substituted by do_subst: {left}"
    return dst


def _parse_unit(path):
    """{section: {key: [values in order]}} (keys may repeat, as in systemd)."""
    sections, cur = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                cur = sections.setdefault(line[1:-1], {})
                continue
            key, sep, value = line.partition("=")
            assert sep and cur is not None, f"{path}: cannot parse line {line!r}"
            cur.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture
def units(tmp_path):
    """The generated service (sbindir: where CB_BINARY is), the socket, snippets, in tmp_path."""
    sbindir = os.path.dirname(os.path.abspath(CB_BINARY))
    service = _generate(os.path.join(SYSTEMD_DIR, "cratebouncer.service.in"),
                        str(tmp_path / "cratebouncer.service"), sbindir)
    socket = str(tmp_path / "cratebouncer.socket")
    shutil.copyfile(os.path.join(SYSTEMD_DIR, "cratebouncer.socket"), socket)
    tmpfiles = _generate(os.path.join(SYSTEMD_DIR, "cratebouncer.tmpfiles.in"),
                         str(tmp_path / "cratebouncer.tmpfiles"), sbindir)
    return {"dir": str(tmp_path), "service": service, "socket": socket, "tmpfiles": tmpfiles,
            "sysusers": os.path.join(SYSTEMD_DIR, "cratebouncer.sysusers"),
            "sbindir": sbindir}


def test_security_exposure(units):
    analyze = _analyze()
    r = _run([analyze, "security", "--offline=yes", "--no-pager", units["service"]],
             cwd=units["dir"])
    text = r.stdout.decode("utf-8", "replace")
    m = re.search(r"Overall exposure level for cratebouncer\.service:\s*([0-9]+(?:\.[0-9]+)?)",
                  text)
    assert m, f"no 'Overall exposure level' line (exit {r.returncode}):\n{text}"
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE, (
        f"exposure {exposure} > {MAX_EXPOSURE}; the settings that cost:\n"
        + "\n".join(line for line in text.splitlines() if line.startswith("✗")))


def test_verify(units):
    analyze = _analyze()
    # First a trivial unit: if even that does not verify cleanly, verify cannot work here.
    probe = os.path.join(units["dir"], "cb-probe.service")
    with open(probe, "w") as f:
        f.write("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    r = _run([analyze, "verify", "--man=no", probe], cwd=units["dir"])
    if r.returncode != 0 or r.stdout.strip():
        pytest.skip("systemd-analyze verify does not work offline here: "
                    + r.stdout.decode("utf-8", "replace").strip()[:300])
    os.unlink(probe)
    if not os.access(CB_BINARY, os.X_OK):
        pytest.skip(f"{CB_BINARY} is not built: verify would only complain about ExecStart")
    # Documentation=man:... must name the man pages in docs/ (found through MANPATH).
    man, env = "--man=no", {}
    if shutil.which("man"):
        mandir = os.path.join(units["dir"], "man")
        for name in os.listdir(os.path.join(SRCDIR, "docs")):
            section = name.rsplit(".", 1)[-1]
            if section.isdigit():
                os.makedirs(os.path.join(mandir, f"man{section}"), exist_ok=True)
                os.symlink(os.path.join(SRCDIR, "docs", name),
                           os.path.join(mandir, f"man{section}", name))
        man, env = "--man=yes", {"MANPATH": mandir}
    r = _run([analyze, "verify", man, units["service"], units["socket"]], cwd=units["dir"], **env)
    out = r.stdout.decode("utf-8", "replace").strip()
    assert r.returncode == 0 and not out, f"systemd-analyze verify (exit {r.returncode}):\n{out}"


def test_service_settings(units):
    svc = _parse_unit(units["service"])["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["Type"] == "notify"
    assert one["ExecStart"] == (f"{units['sbindir']}/cratebouncer "
                                f"{SYSCONFDIR}/cratebouncer/cratebouncer.ini")
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["User"] == one["Group"] == "cratebouncer"
    assert one["Restart"] == "on-failure"
    assert one["WatchdogSec"] and one["LimitNOFILE"] == "65536"
    assert one["RuntimeDirectory"] == "cratebouncer"
    # It must reach the cluster, listen on TCP and a Unix socket, talk to journald/sd_notify.
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "PrivateNetwork" not in svc or one["PrivateNetwork"] in ("no", "false")
    assert not one.get("IPAddressDeny"), "IPAddressDeny would cut it off from the cluster"
    assert one.get("CapabilityBoundingSet") == "", "no capabilities at all"
    assert one.get("ProtectSystem") == "strict"


def test_socket_unit(units):
    sock = _parse_unit(units["socket"])["Socket"]
    names = sock.get("FileDescriptorName", [])
    assert names and names[-1] == "pgwire", "cratebouncer serves only fds named pgwire"
    assert sock.get("Service", ["cratebouncer.service"])[-1] == "cratebouncer.service"
    listen = [v for v in sock.get("ListenStream", []) if v]
    assert "127.0.0.1:6432" in listen
    unix = [v for v in listen if v.startswith("/")]
    assert unix == ["/run/cratebouncer/.s.PGSQL.6432"], listen
    # The Unix socket lives in the service's RuntimeDirectory, which must outlive restarts.
    svc = _parse_unit(units["service"])["Service"]
    assert svc["RuntimeDirectory"][-1] == "cratebouncer"
    assert svc.get("RuntimeDirectoryPreserve", ["no"])[-1] in ("yes", "restart")


def test_sysusers_and_tmpfiles(units, tmp_path):
    """In a scratch root: sysusers creates the service's user, tmpfiles its config dir."""
    sysusers, tmpfiles = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    if not sysusers or not tmpfiles:
        pytest.skip("systemd-sysusers/systemd-tmpfiles are not installed")
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles --root needs root to set ownership")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    r = _run([sysusers, f"--root={root}", units["sysusers"]])
    assert r.returncode == 0, r.stdout.decode("utf-8", "replace")
    with open(root / "etc" / "passwd") as f:
        users = {line.split(":")[0]: line.split(":") for line in f}
    assert "cratebouncer" in users, "sysusers did not create the user the service runs as"
    with open(root / "etc" / "group") as f:
        groups = {line.split(":")[0]: line.split(":") for line in f}
    assert "cratebouncer" in groups
    gid = int(groups["cratebouncer"][2])
    r = _run([tmpfiles, f"--root={root}", "--create", units["tmpfiles"]])
    assert r.returncode == 0, r.stdout.decode("utf-8", "replace")
    st = os.stat(root / SYSCONFDIR.lstrip("/") / "cratebouncer")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, gid, 0o750)
