#!/usr/bin/env bash
# History that scales (issue #16 item 7): `fimd events --limit 5` on a long history, and
# pruning it with `[store] keep_events`.
#
# Builds a database with EVENTS events (default 1.2M; realistic rows: old/new state JSON,
# a reason, a short diff on every tenth) with `fimd init` + sqlite3, then with
# /usr/bin/time -v (wall time and max RSS, best of ROUNDS):
#   limit:       fimd events --limit 5
#   limit+path:  fimd events --limit 5 --path '**/file-7.conf'   (a glob in Rust: reads
#                newest first until 5 match)
#   json:        fimd events --json --limit 5
#   status:      fimd status
# and, with PRUNE=1, `fimd check` with keep_events = "30d" on a history whose events are all
# 60 days old except the last 1000: events pruned, time, database size before/after.
#
#   benches/history.sh                        # the `ci` build of this tree
#   FIMD=/path/to/fimd benches/history.sh     # another binary (main's, for a before figure)
#   EVENTS=200000 ROUNDS=3 PRUNE=1 benches/history.sh
# Needs sqlite3 and /usr/bin/time. Machines here are shared: compare runs made together.
set -euo pipefail
root_dir=$(cd "$(dirname "$0")/.." && pwd)
EVENTS=${EVENTS:-1200000}
ROUNDS=${ROUNDS:-3}
PRUNE=${PRUNE:-0}
work=${WORK:-/tmp/fimd-history-bench}
if [ -z "${FIMD:-}" ]; then
    (cd "$root_dir" && cargo build --profile ci --quiet)
    FIMD="${CARGO_TARGET_DIR:-$root_dir/target}/ci/fimd"
fi
rm -rf "$work"
mkdir -p "$work/tree"
for i in $(seq 0 9); do echo "x = $i" > "$work/tree/file-$i.conf"; done
cat > "$work/fimd.toml" <<EOF
[daemon]
database = "$work/fimd.db"
host = "bench"
[[watch]]
path = "$work/tree"
[users]
authorized_keys = false
EOF
"$FIMD" --config "$work/fimd.toml" init 2>/dev/null

echo "== making $EVENTS events"
start=$(date +%s.%N)
now_ns=$(date +%s%N)
sqlite3 "$work/fimd.db" <<EOF
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $EVENTS)
INSERT INTO events (uid, time, time_ns, host, source, event, path, changed, old, new,
                    sensitive, diff, severity, reason, actor, package)
SELECT (SELECT value FROM meta WHERE key = 'instance') || ':' || i,
       strftime('%Y-%m-%dT%H:%M:%fZ', ($now_ns / 1000000000 - ($EVENTS - i)) , 'unixepoch'),
       $now_ns - ($EVENTS - i) * 1000000000,
       'bench', 'inotify', 'modified',
       CAST('$work/tree/file-' || (i % 10) || '.conf' AS BLOB),
       '["sha256","size","mtime","ctime"]',
       '{"type":"file","size":' || (100 + i % 50) || ',"mode":"0644","uid":0,"gid":0,"mtime":"2026-11-29T10:00:00.000000000Z","ctime":"2026-11-29T10:00:00.000000000Z","inode":' || i || ',"nlink":1,"sha256":"' || lower(hex(randomblob(32))) || '","caps":null,"acl":null,"selinux":null,"xattrs":null,"flags":null}',
       '{"type":"file","size":' || (101 + i % 50) || ',"mode":"0644","uid":0,"gid":0,"mtime":"2026-11-30T07:59:59.000000000Z","ctime":"2026-11-30T07:59:59.000000000Z","inode":' || i || ',"nlink":1,"sha256":"' || lower(hex(randomblob(32))) || '","caps":null,"acl":null,"selinux":null,"xattrs":null,"flags":null}',
       0,
       CASE WHEN i % 10 = 0 THEN '--- a' || char(10) || '+++ b' || char(10) || '@@ -1 +1 @@' || char(10) || '-x = ' || (i - 1) || char(10) || '+x = ' || i || char(10) END,
       'medium', 'changed outside any package transaction', NULL, NULL
FROM n;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
EOF
printf 'made in %.1f s; database %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" \
    "$(du -h "$work/fimd.db" | cut -f1)"

# measure NAME ARGS...: best wall time and max RSS of ROUNDS runs.
measure() {
    local name=$1 best_t="" best_rss=""
    shift
    for _ in $(seq 1 "$ROUNDS"); do
        /usr/bin/time -v -o "$work/time.txt" "$FIMD" --config "$work/fimd.toml" "$@" > "$work/out.txt" 2>/dev/null
        local t rss
        t=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (k = 1; k <= n; k++) s = s * 60 + p[k]; print s}' "$work/time.txt")
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
        if [ -z "$best_t" ] || [ "$(echo "$t < $best_t" | bc)" = 1 ]; then best_t=$t; fi
        if [ -z "$best_rss" ] || [ "$rss" -lt "$best_rss" ]; then best_rss=$rss; fi
    done
    printf 'RESULT %-11s wall=%ss max_rss=%sMiB lines=%s\n' "$name" "$best_t" \
        "$((best_rss / 1024))" "$(wc -l < "$work/out.txt")"
}

echo "== $FIMD, $EVENTS events, best of $ROUNDS"
measure limit events --limit 5
measure limit+path events --limit 5 --path '**/file-7.conf'
measure json events --json --limit 5
measure status status

if [ "$PRUNE" = 1 ]; then
    echo "== pruning: all but the last 1000 events 60 days old, keep_events = 30d"
    sqlite3 "$work/fimd.db" "UPDATE events SET time_ns = time_ns - 60 * 86400 * 1000000000 WHERE id <= (SELECT MAX(id) - 1000 FROM events)"
    printf '[store]\nkeep_events = "30d"\n' >> "$work/fimd.toml"
    before=$(du -b "$work/fimd.db" | cut -f1)
    /usr/bin/time -v -o "$work/time.txt" "$FIMD" --config "$work/fimd.toml" check > /dev/null 2>&1 || true
    after=$(du -b "$work/fimd.db" | cut -f1)
    printf 'RESULT prune wall=%s max_rss=%sMiB events_left=%s db_before=%sMiB db_after=%sMiB\n' \
        "$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")" \
        "$(( $(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt") / 1024 ))" \
        "$(sqlite3 "$work/fimd.db" 'SELECT COUNT(*) FROM events')" \
        "$((before / 1048576))" "$((after / 1048576))"
fi
