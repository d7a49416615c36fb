#!/bin/sh
# Issue #16 item 3: the daemon with its database on a full disk. Per run: the database on an
# 8 MiB tmpfs, `fimd run` started, the tmpfs filled, a watched file changed, the space freed
# after 12 s, then 70 s of watching: did the daemon exit (and when), was the change recorded,
# what did the log say. Needs root (mount).
#
#   benches/diskfull.sh [RUNS]        # default 4 runs; FIMD=/path/to/fimd (default target/debug/fimd)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
FIMD=${FIMD:-$here/target/debug/fimd}
runs=${1:-4}

one_run() {
    base=$(mktemp -d)
    mkdir -p "$base/tree" "$base/state"
    mount -t tmpfs -o size=8m,mode=0700 tmpfs "$base/state"
    for i in $(seq 1 50); do echo "value = $i" > "$base/tree/f$i.conf"; done
    cat > "$base/fimd.toml" <<EOF
[daemon]
database = "$base/state/fimd.db"
debounce = "50ms"
rescan_interval = "1h"
whodata = "off"
[users]
authorized_keys = false
[[watch]]
path = "$base/tree"
EOF
    "$FIMD" --config "$base/fimd.toml" run 2> "$base/log" &
    pid=$!
    i=0
    until grep -q "baseline built" "$base/log" || [ $i -ge 300 ]; do sleep 0.1; i=$((i + 1)); done
    dd if=/dev/zero of="$base/state/filler" bs=64k 2> /dev/null || true
    echo "value = changed" > "$base/tree/f1.conf"
    sleep 12
    rm -f "$base/state/filler"
    freed=$(date +%s)
    exited=no
    code=-
    after=-
    t=0
    while [ $t -lt 70 ]; do
        if ! kill -0 $pid 2> /dev/null; then
            wait $pid && code=0 || code=$?
            exited=yes
            after=$(($(date +%s) - freed))
            break
        fi
        sleep 1
        t=$((t + 1))
    done
    recorded=$("$FIMD" --config "$base/fimd.toml" events --json 2> /dev/null | grep -c '"f1.conf\|/f1.conf"' || true)
    if [ $exited = no ]; then
        kill -TERM $pid 2> /dev/null || true
        wait $pid && code=0 || code=$?
    fi
    diskfull=$(grep -c "disk full (" "$base/log" || true)
    ioerr=$(grep -c "disk I/O error\|database or disk is full" "$base/log" || true)
    depth=$(grep -c "transaction depth" "$base/log" || true)
    echo "RESULT exited_by_itself=$exited exit_code=$code exit_s_after_free=$after change_recorded=$recorded log_disk_full=$diskfull log_sqlite_error=$ioerr log_transaction_depth=$depth"
    umount -l "$base/state"
    rm -rf "$base"
}

for r in $(seq 1 "$runs"); do
    one_run
done
