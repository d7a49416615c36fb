#!/usr/bin/env bash
# The cost of fimd during package upgrades (issue "Package-aware changes", item 7).
#
# N synthetic packages of F files each (/usr/bin/<pkg>-<i>, /usr/lib/<pkg>/<i>.so and one
# conffile /etc/<pkg>/<pkg>.conf), installed at version 1.0 into a private dpkg root, are
# upgraded to 2.0 by one `dpkg -i` of all the new .debs:
#   off:  dpkg alone;
#   on:   with `fimd run` watching the root's /usr/bin, /usr/lib, /etc and
#         /var/lib/dpkg/info, `[packages] root` pointing at it, at the shipped unit's
#         priority (Nice=10, best-effort I/O priority 7; the unit's CPUQuota is left out).
# Prints the upgrade's wall time each way (median of ROUNDS), fimd's CPU time (user + system,
# from the upgrade's start until its last event: a figure the machine's load barely moves),
# the events fimd recorded, how
# long after the upgrade the last one came, events per second, and how many events were
# not low/verified (a clean upgrade must give none).
#
#   benches/upgrade.sh                       # N=40 F=50 ROUNDS=3
#   N=100 F=100 ROUNDS=5 benches/upgrade.sh
# Needs root, dpkg-deb and dpkg; builds the `ci` profile unless FIMD points at a binary.
set -euo pipefail
root_dir=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-40}
F=${F:-50}
ROUNDS=${ROUNDS:-3}
work=${WORK:-/tmp/fimd-upgrade}
if [ -z "${FIMD:-}" ]; then
    (cd "$root_dir" && cargo build --profile ci --quiet)
    FIMD="${CARGO_TARGET_DIR:-$root_dir/target}/ci/fimd"
fi
rm -rf "$work"
mkdir -p "$work"

# make_debs VERSION: N packages in $work/debs-VERSION.
make_debs() {
    local v=$1 out=$work/debs-$1
    mkdir -p "$out"
    for p in $(seq 1 "$N"); do
        local name=pkg$p pkg=$work/build/pkg$p-$v
        mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/$name" "$pkg/etc/$name"
        for i in $(seq 1 "$F"); do
            if [ $((i % 2)) -eq 0 ]; then
                printf '#!/bin/sh\necho %s %s %s\n' "$name" "$i" "$v" > "$pkg/usr/bin/$name-$i"
                chmod 755 "$pkg/usr/bin/$name-$i"
            else
                head -c 4096 /dev/zero | tr '\0' "$((i % 10))" > "$pkg/usr/lib/$name/$i.so"
                printf '%s\n' "$v" >> "$pkg/usr/lib/$name/$i.so"
            fi
        done
        printf 'setting = 1\n' > "$pkg/etc/$name/$name.conf"
        printf '/etc/%s/%s.conf\n' "$name" "$name" > "$pkg/DEBIAN/conffiles"
        printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: bench <bench@localhost>\nDescription: fimd upgrade bench\n' \
            "$name" "$v" > "$pkg/DEBIAN/control"
        dpkg-deb --root-owner-group --build "$pkg" "$out/$name.deb" >/dev/null
    done
}

# fresh_root: an empty dpkg database with version 1.0 of every package installed.
fresh_root() {
    rm -rf "$work/root" "${STATE:-$work/state}"
    mkdir -p "$work/root/var/lib/dpkg/info" "$work/root/var/lib/dpkg/updates" "$work/root/var/log"
    : > "$work/root/var/lib/dpkg/status"
    : > "$work/root/var/lib/dpkg/available"
    dpkg --root="$work/root" --log="$work/root/var/log/dpkg.log" -i "$work"/debs-1.0/*.deb >/dev/null
}

upgrade() { # prints the wall seconds of one dpkg -i of every 2.0 package
    local t0 t1
    # Start from a quiet disk: the writeback of preparing the root (rm -rf, 80 installs)
    # otherwise lands inside the timed upgrade (it made "off" vary 1.1-3.5 s from round to round).
    sync
    sleep 1
    t0=$(date +%s.%N)
    dpkg --root="$work/root" --log="$work/root/var/log/dpkg.log" -i "$work"/debs-2.0/*.deb >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

cat > "$work/fimd.toml" <<EOF
[daemon]
database = "${STATE:-$work/state}/fimd.db"
debounce = "${DEBOUNCE:-200ms}"
whodata = "${WHODATA:-auto}"
rescan_interval = "1h"

[[watch]]
path = "$work/root/usr/bin"
[[watch]]
path = "$work/root/usr/lib"
[[watch]]
path = "$work/root/etc"
[[watch]]
path = "$work/root/var/lib/dpkg/info"

[sensitive]
paths = []
patterns = []

[users]
authorized_keys = false

[packages]
root = "$work/root"
EOF

command -v bc >/dev/null || { echo "needs bc" >&2; exit 1; }
make_debs 1.0
make_debs 2.0
files=$((N * (F + 1)))
echo "packages=$N files_per_package=$((F + 1)) files=$files"

# cpu_ticks PID: user + system CPU time of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

off=() on=() cpu=()
for r in $(seq 1 "$ROUNDS"); do
    fresh_root
    off+=("$(upgrade)")

    fresh_root
    "$FIMD" --config "$work/fimd.toml" init 2>/dev/null
    # As the shipped unit runs it: Nice=10, IOSchedulingClass=best-effort, priority 7.
    nice -n 10 ionice -c 2 -n 7 "$FIMD" --config "$work/fimd.toml" run 2>"$work/daemon.log" &
    pid=$!
    # Ready: the daemon published its package databases (after the startup rescan began).
    for _ in $(seq 1 200); do
        "$FIMD" --config "$work/fimd.toml" status --json 2>/dev/null | grep -q '"packages"' && break
        sleep 0.05
    done
    sleep 1
    cpu0=$(cpu_ticks $pid)
    start=$(date +%s.%N)
    on+=("$(upgrade)")
    # Wait until the event count is stable for 2 s (at most 120 s).
    last=-1 stable=0
    for _ in $(seq 1 1200); do
        n=$("$FIMD" --config "$work/fimd.toml" events --json 2>/dev/null | wc -l)
        if [ "$n" = "$last" ]; then stable=$((stable + 1)); else stable=0; last=$n; fi
        [ $stable -ge 20 ] && break
        sleep 0.1
    done
    cpu+=("$(echo "($(cpu_ticks $pid) - $cpu0) / $(getconf CLK_TCK)" | bc -l)")
    kill -TERM $pid
    wait $pid || true
    "$FIMD" --config "$work/fimd.toml" events --json > "$work/events-$r.json"
    python3 - "$work/events-$r.json" "$start" <<'PY'
import json, sys, datetime
events = [json.loads(l) for l in open(sys.argv[1])]
start = float(sys.argv[2])
def ts(t):
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")[:26] + "+00:00").timestamp()
last = max((ts(e["time"]) for e in events), default=start)
bad = [e for e in events if e["severity"] != "low"]
unverified = [e for e in events if e["package"] and not e["package"]["verified"]
              and e["event"] != "removed"]
span = max(last - start, 1e-9)
print(f"round events={len(events)} not_low={len(bad)} unverified={len(unverified)} "
      f"last_event_after_s={span:.2f} events_per_s={len(events)/span:.0f}")
for e in bad[:5]:
    print("  not low:", e["severity"], e["event"], e["path"], "--", e["reason"])
PY
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
moff=$(median "${off[@]}")
mon=$(median "${on[@]}")
echo "upgrade wall s: off=${off[*]} on=${on[*]}"
echo "fimd CPU s from the upgrade's start until its last event: ${cpu[*]}"
printf 'RESULT packages=%d files=%d upgrade_off_s=%.3f upgrade_on_s=%.3f slowdown_pct=%.1f fimd_cpu_s=%.3f\n' \
    "$N" "$files" "$moff" "$mon" "$(echo "($mon - $moff) * 100 / $moff" | bc -l)" "$(median "${cpu[@]}")"
