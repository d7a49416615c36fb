#!/usr/bin/env bash
# Who-data costs and coverage (issue "Who did it", item 6):
#   benches/whodata.sh realtime   # ../shared/bench/realtime with whodata on (fanotify) and off
#   benches/whodata.sh actors     # N short `sh -c` writers: how many events had a complete,
#                                 # partial or exited actor
# Needs root (CAP_SYS_ADMIN for fanotify) and python3; builds the `ci` profile unless FIMD
# points at a binary. FILES, BURST, N size the runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH:-$root/../shared/bench}
work=${WORK:-/tmp/fimd-whodata}
FILES=${FILES:-20000}
BURST=${BURST:-10000}
N=${N:-500}
if [ -z "${FIMD:-}" ]; then
    (cd "$root" && cargo build --profile ci --quiet)
    FIMD="${CARGO_TARGET_DIR:-$root/target}/ci/fimd"
fi
FIMD=$(readlink -f "$FIMD")
mkdir -p "$work"

# A wrapper that adds `whodata = MODE` to the [daemon] table of the config it is given
# (the realtime harness writes its own config).
wrapper() {
    local mode=$1 w=$work/fimd-$1
    cat > "$w" <<EOF
#!/bin/sh
for a in "\$@"; do
    case "\$a" in *.toml) grep -q '^whodata' "\$a" || sed -i 's/^\[daemon\]\$/[daemon]\nwhodata = "$mode"/' "\$a";; esac
done
exec "$FIMD" "\$@"
EOF
    chmod +x "$w"
    echo "$w"
}

realtime() {
    for mode in off auto; do
        echo "== whodata = $mode"
        "$bench/realtime" --fimd "$(wrapper $mode)" --files "$FILES" --idle-s 10 --burst "$BURST" | grep '^RESULT'
    done
}

actors() {
    local d=$work/actors
    rm -rf "$d"
    mkdir -p "$d/tree"
    printf '[daemon]\ndatabase = "%s/fimd.db"\ndebounce = "200ms"\nwhodata = "require"\n[[watch]]\npath = "%s/tree"\n[sensitive]\npaths = []\npatterns = []\n[users]\nauthorized_keys = false\n' \
        "$d" "$d" > "$d/fimd.toml"
    "$FIMD" --config "$d/fimd.toml" init 2>/dev/null
    "$FIMD" --config "$d/fimd.toml" run 2>"$d/daemon.log" &
    local pid=$!
    # Ready: the startup rescan is done (changes before that are the rescan's, without actors).
    for _ in $(seq 1 100); do
        grep -q "full rescan done" "$d/daemon.log" && break
        sleep 0.1
    done
    for i in $(seq 1 "$N"); do
        sh -c "echo $i > '$d/tree/f$i.conf'"
    done
    for _ in $(seq 1 300); do
        [ "$("$FIMD" --config "$d/fimd.toml" events --json 2>/dev/null | wc -l)" -ge "$N" ] && break
        sleep 0.1
    done
    kill -TERM $pid
    wait $pid || true
    "$FIMD" --config "$d/fimd.toml" events --json | python3 -c '
import json, sys
ev = [json.loads(l) for l in sys.stdin]
n = len(ev)
none = sum(1 for e in ev if e["actor"] is None)
a = [e["actor"] for e in ev if e["actor"]]
# complete: read while it ran; partial: a zombie (comm, uids, login, unit; no cmdline/exe);
# pid_only: reaped before it could be read.
complete = sum(1 for x in a if x["cmdline"] and x["exe"])
pid_only = sum(1 for x in a if x["comm"] is None)
partial = len(a) - complete - pid_only
print(f"RESULT events={n} complete={complete} partial={partial} pid_only={pid_only} no_actor={none}")
'
}

case "${1:-}" in
    realtime) realtime ;;
    actors) actors ;;
    *) echo "usage: $0 realtime|actors" >&2; exit 15 ;;
esac
