#!/bin/bash
# The Debian package, end to end (run by .ci/run, as root, after ./bootstrap --deps):
#   1. dpkg-buildpackage -us -uc -b in a copy of the tree (its files, committed or not);
#   2. lintian on the result: no error, no warning (debian/*.lintian-overrides explains any);
#   3. a throwaway Debian 12 root (debootstrap, cached as a tarball in $CB_CACHE) booted with
#      systemd-nspawn, sharing the host's network; apt installs the package in it;
#   4. the package's own checks: the unit enabled and running with the installed config,
#      the cratebouncer user, /etc/cratebouncer's owner and modes, the conffile, the socket
#      unit disabled, the man pages;
#   5. the operator's steps: a database added to the config (an upstream PostgreSQL with TLS
#      that this script starts on the host), systemctl restart, psql through the unit; a
#      second database added, systemctl reload, psql to it; apt remove stops the service.
# Everything it started stops on every exit path.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
cache=${CB_CACHE:-$HOME/.cache/cratebouncer}
suite=bookworm
mirror=${CB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /tmp/cb-package.XXXXXX)
chmod 755 "$work"	# PostgreSQL runs as postgres and must reach its directory
root=$work/root
nspawn_pid="" init_pid="" pg_started=""

say() { printf '== package: %s\n' "$*"; }
fail() { printf 'package.sh: FAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
	local rc=$?
	if [ -n "$init_pid" ] && kill -0 "$init_pid" 2>/dev/null; then
		kill -RTMIN+4 "$init_pid" 2>/dev/null || true	# systemd: poweroff
		for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
	fi
	[ -n "$nspawn_pid" ] && kill -9 "$nspawn_pid" 2>/dev/null || true
	[ -n "$pg_started" ] && "$py" "$src/tests/support/pgenv.py" stop "$work/pg" >/dev/null 2>&1 || true
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_root() { nsenter -t "$init_pid" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_free() { "$py" -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }

for t in dpkg-buildpackage lintian debootstrap systemd-nspawn nsenter psql; do
	command -v "$t" >/dev/null || fail "$t is missing: run ./bootstrap --deps"
done
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, systemd-nspawn)"

say "building with dpkg-buildpackage -us -uc -b in a copy of the tree"
mkdir "$work/src"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$src" && git ls-files -z --cached --others --exclude-standard |
		tar --null -T - -cf - --ignore-failed-read) | tar -C "$work/src" -xf -
else
	# a tarball (make distcheck): the tree is what was distributed
	(cd "$src" && tar --exclude=./_build --exclude=./_inst -cf - .) | tar -C "$work/src" -xf -
fi
if ! (cd "$work/src" && dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1); then
	tail -n 60 "$work/build.log" >&2
	fail "dpkg-buildpackage"
fi
deb=$(ls "$work"/cratebouncer_*.deb)
changes=$(ls "$work"/cratebouncer_*.changes)
grep -E '^(PASS|FAIL|# (PASS|FAIL|TOTAL))' "$work/build.log" | sed 's/^/   /' || true
say "built $(basename "$deb") ($(du -k "$deb" | cut -f1) kB)"
dpkg-deb --contents "$deb" | awk '{print "   " $1, $6}'

say "lintian"
if ! lintian --fail-on error,warning --display-info --tag-display-limit 0 "$changes" \
	>"$work/lintian.log" 2>&1; then
	cat "$work/lintian.log" >&2
	fail "lintian"
fi
if [ -s "$work/lintian.log" ]; then sed 's/^/   /' "$work/lintian.log"; else echo "   no tags"; fi

say "a throwaway Debian 12 root"
mkdir -p "$cache" "$root"
tarball=$cache/debian12-systemd-root.tar
if [ ! -s "$tarball" ]; then
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates \
		"$suite" "$work/fresh" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{ tail -n 30 "$work/debootstrap.log" >&2; fail "debootstrap"; }
	tar -C "$work/fresh" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
	rm -rf "$work/fresh"
fi
tar -C "$root" -xf "$tarball"
cp "$deb" "$root/root/"
# the container shares the host's network; apt in it reaches the same mirror
printf 'deb %s %s main\n' "$mirror" "$suite" >"$root/etc/apt/sources.list"
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

say "booting it with systemd-nspawn"
systemd-nspawn -q -D "$root" --boot --register=no --keep-unit --console=passive \
	--resolv-conf=off >"$work/nspawn.log" 2>&1 &
nspawn_pid=$!
for _ in $(seq 100); do
	init_pid=$(pgrep -P "$nspawn_pid" -x systemd || true)
	[ -n "$init_pid" ] && break
	kill -0 "$nspawn_pid" 2>/dev/null || { cat "$work/nspawn.log" >&2; fail "systemd-nspawn exited"; }
	sleep 0.1
done
[ -n "$init_pid" ] || fail "the container's systemd did not start"
state=""
for _ in $(seq 240); do	# its bus socket comes first, then the boot ends
	state=$(nsenter -t "$init_pid" -a systemctl is-system-running 2>/dev/null || true)
	case "$state" in running | degraded) break ;; esac
	sleep 0.25
done
echo "   container systemd: $state"
[ "$state" = degraded ] && nsenter -t "$init_pid" -a systemctl --failed --no-pager | sed 's/^/   /'
case "$state" in running | degraded) ;; *) fail "the container did not boot ($state)" ;; esac

say "apt install ./$(basename "$deb")"
default_port_free=yes
port_free 6432 || default_port_free=no
in_root apt-get update -q >"$work/apt.log" 2>&1 || { tail -n 20 "$work/apt.log" >&2; fail "apt-get update"; }
in_root apt-get install -y -q "/root/$(basename "$deb")" >>"$work/apt.log" 2>&1 ||
	{ tail -n 30 "$work/apt.log" >&2; fail "apt-get install"; }
grep -E '^(Setting up|Created symlink)' "$work/apt.log" | sed 's/^/   /'

check() {	# what, expected, actual
	if [ "$2" = "$3" ]; then echo "   ok: $1: $3"; else fail "$1: expected '$2', got '$3'"; fi
}
check "cratebouncer.service enabled" enabled "$(in_root systemctl is-enabled cratebouncer.service || true)"
check "cratebouncer.socket not enabled" disabled "$(in_root systemctl is-enabled cratebouncer.socket || true)"
# active once it has sent READY=1 (Type=notify): polled; on failure its status and journal
wait_active() {
	local st=""
	for _ in $(seq 40); do
		st=$(in_root systemctl is-active cratebouncer.service || true)
		[ "$st" = active ] && break
		sleep 0.25
	done
	if [ "$st" != active ]; then
		in_root systemctl status --no-pager cratebouncer.service >&2 || true
		in_root journalctl -u cratebouncer --no-pager -n 30 >&2 || true
	fi
	echo "$st"
}
if [ $default_port_free = yes ]; then
	check "cratebouncer.service running with the installed config" active "$(wait_active)"
else
	echo "   (127.0.0.1:6432 is taken on this host: the installed config's service cannot listen; not checked)"
fi
check "user" "cratebouncer" "$(in_root id -un cratebouncer 2>/dev/null || true)"
check "/etc/cratebouncer" "750 root cratebouncer" "$(in_root stat -c '%a %U %G' /etc/cratebouncer)"
check "cratebouncer.ini" "640 root cratebouncer" "$(in_root stat -c '%a %U %G' /etc/cratebouncer/cratebouncer.ini)"
check "conffile" "/etc/cratebouncer/cratebouncer.ini" \
	"$(in_root dpkg-query -W -f='${Conffiles}' cratebouncer | awk 'NF {print $1}')"
check "installed config valid" "0" "$(in_root cratebouncer -t /etc/cratebouncer/cratebouncer.ini >/dev/null 2>&1; echo $?)"
for m in /usr/share/man/man8/cratebouncer.8.gz /usr/share/man/man5/cratebouncer.ini.5.gz; do
	check "man page" "$m" "$(in_root ls "$m" 2>/dev/null || true)"
done

say "the operator's steps: a cluster in the config, restart, psql through the unit"
env_out=$("$py" "$src/tests/support/pgenv.py" start "$work/pg" --port "$(free_port)")
pg_started=yes
eval "$env_out"
port=$(free_port)
cp "$PGENV_CA" "$root/etc/cratebouncer/ca.pem"
printf 'secret\n' >"$root/etc/cratebouncer/password"
in_root chown root:cratebouncer /etc/cratebouncer/ca.pem /etc/cratebouncer/password
in_root chmod 0640 /etc/cratebouncer/ca.pem /etc/cratebouncer/password
conf=$root/etc/cratebouncer/cratebouncer.ini
sed -i -e "s/^;doc = .*/doc = host=localhost port=$PGENV_PORT dbname=doc user=crate password_file=password/" \
	-e "s/^listen_port = 6432$/listen_port = $port/" \
	-e "s|^server_tls_ca_file =.*|server_tls_ca_file = /etc/cratebouncer/ca.pem|" "$conf"
grep -q "^doc = host=localhost port=$PGENV_PORT" "$conf" && grep -q "^listen_port = $port$" "$conf" &&
	grep -q '^server_tls_ca_file = /etc/cratebouncer/ca.pem$' "$conf" || fail "editing the config"
in_root systemctl restart cratebouncer.service || { in_root journalctl -u cratebouncer --no-pager | tail -n 20 >&2; fail "systemctl restart"; }
check "cratebouncer.service after restart" active "$(wait_active)"
q() { PGCONNECT_TIMEOUT=10 psql "host=127.0.0.1 port=$port user=crate dbname=$1" -Atc "$2" 2>&1; }
check "psql through the unit" "served by the package" "$(q doc "select 'served by the package'")"
check "upstream TLS" "t" "$(q doc "select ssl from pg_stat_ssl where pid = pg_backend_pid()")"

# a second database, applied by SIGHUP
sed -i "/^doc = host=localhost/a postgres = host=localhost port=$PGENV_PORT dbname=postgres user=crate password_file=password" "$conf"
in_root systemctl reload cratebouncer.service || { in_root journalctl -u cratebouncer --no-pager | tail -n 20 >&2; fail "systemctl reload"; }
check "after systemctl reload" "postgres" "$(q postgres "select current_database()")"
in_root journalctl -u cratebouncer --no-pager -o cat | tail -n 6 | sed 's/^/   journal: /'
check "secrets stay out of the journal" "0" "$(in_root journalctl -u cratebouncer --no-pager -o cat | grep -c secret || true)"

say "apt remove"
in_root apt-get remove -y -q cratebouncer >>"$work/apt.log" 2>&1 || { tail -n 20 "$work/apt.log" >&2; fail "apt-get remove"; }
check "service after remove" "inactive" "$(in_root systemctl is-active cratebouncer.service || true)"
check "config kept after remove (a conffile)" "yes" "$(test -f "$conf" && echo yes)"
say "passed"
