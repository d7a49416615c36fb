#!/usr/bin/env bash
# Package test (CI, as root): install the .deb, check the files and the unit, run a real
# init + check of this machine with the installed config, then purge and check nothing is left.
# PID 1 is not systemd here, so the daemon is tested with the environment its unit gives it.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(ls target/debian/fimd_*.deb | head -1)
fail() { echo "package test FAILED: $*" >&2; exit 1; }

echo "== dpkg -c $deb"
dpkg -c "$deb"
dpkg --purge fimd >/dev/null 2>&1 || true
rm -rf /var/lib/fimd
dpkg -i "$deb"

echo "== installed files"
test -x /usr/bin/fimd || fail "/usr/bin/fimd missing"
test -f /etc/fimd/fimd.toml || fail "config missing"
unit=$(ls /lib/systemd/system/fimd.service /usr/lib/systemd/system/fimd.service 2>/dev/null | head -1)
test -n "$unit" || fail "unit missing"
test -f /usr/share/man/man8/fimd.8.gz || fail "man page missing"
test "$(stat -c %a /var/lib/fimd)" = 700 || fail "/var/lib/fimd is not 0700"
cmp -s /etc/fimd/fimd.toml config/fimd.toml || fail "installed config differs from config/fimd.toml"
dpkg-query -W -f='${Conffiles}\n' fimd | grep -q /etc/fimd/fimd.toml || fail "config is not a conffile"
! systemctl is-enabled fimd >/dev/null 2>&1 || fail "the package enabled the service behind the admin's back"

echo "== systemd-analyze"
systemd-analyze verify --man=no "$unit"
# 2.2 with who-data (CAP_SYS_ADMIN at start, four syscalls back after ~@privileged).
systemd-analyze security --offline=true --threshold=22 "$unit" | tail -1

echo "== fimd config-check"
fimd config-check
echo "== fimd --config /etc/fimd/fimd.toml init (the machine's real /etc, /root, units...)"
time fimd --config /etc/fimd/fimd.toml init
echo "== fimd check (must be clean)"
set +e
fimd --config /etc/fimd/fimd.toml check
rc=$?
set -e
test $rc = 0 || fail "check right after init reported changes or failed (exit $rc)"
fimd status
test "$(stat -c %a /var/lib/fimd/fimd.db)" = 600 || fail "database is not 0600"

echo "== the installed daemon under the unit's environment (NOTIFY_SOCKET, WATCHDOG_USEC, CREDENTIALS_DIRECTORY, JOURNAL_STREAM)"
python3 packaging/test-daemon-env.py

echo "== dpkg --purge"
dpkg --purge fimd
for p in /usr/bin/fimd /etc/fimd /var/lib/fimd "$unit" /usr/share/man/man8/fimd.8.gz; do
    test ! -e "$p" || fail "$p left behind after purge"
done
! dpkg -s fimd >/dev/null 2>&1 || fail "package still known to dpkg"
echo "package test: OK"
