#!/usr/bin/env bash
# The cost of the fd-relative walk (issue #16 item 2): fimd walks every directory through
# `scan::reach` (its own sorted walk instead of walkdir), so trees deeper than PATH_MAX are
# covered. This measures what that costs where it matters, and what a deep tree costs:
#   benches/deep.sh             # both, three runs each
#   FIMD_BEFORE=path/to/old/fimd benches/deep.sh   # the same runs with another binary, A/B
# 1. `check` with nothing changed on mktree's 100k files (walk + lstat, no hashing: the part
#    of a scan the walk dominates), warm cache.
# 2. `init` and `check` of a tree 100 levels deep with 200-byte names (a 20 KB path at the
#    bottom) and 10 files per level (1 000 files, 990 of them beyond PATH_MAX).
# Needs ../shared/bench/mktree and python3. FIMD defaults to this checkout's ci build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH:-$root/../shared/bench}
work=${WORK:-/tmp/fimd-deep-bench}
mkdir -p "$work"
if [ -z "${FIMD:-}" ]; then
    (cd "$root" && cargo build --profile ci --quiet)
    FIMD="${CARGO_TARGET_DIR:-$root/target}/ci/fimd"
fi

timed() { # timed LABEL CMD...: wall seconds and max RSS
    local label=$1; shift
    /usr/bin/time -f "$label: wall %e s, max RSS %M KiB" "$@" >/dev/null 2>"$work/time.err" || true
    tail -1 "$work/time.err"
}

config() { # config TREE DB
    printf '[daemon]\ndatabase = "%s"\n\n[[watch]]\npath = "%s"\n\n[sensitive]\npaths = []\npatterns = []\n\n[users]\nauthorized_keys = false\n' "$2" "$1"
}

flat=$work/tree-100000
[ -d "$flat" ] || python3 "$bench/mktree" "$flat" --files 100000 >/dev/null
deep=$work/deep
if [ ! -d "$deep" ]; then
    mkdir -p "$deep"
    python3 - "$deep" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
name = "d" * 200
for level in range(100):
    for i in range(10):
        f = os.open(f"f{i}.conf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(f, f"level {level} file {i}\n".encode())
        os.close(f)
    os.mkdir(name, dir_fd=fd)
    nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = nxt
EOF
fi
find "$flat" -type f -print0 | xargs -0 cat >/dev/null

for bin in ${FIMD_BEFORE:+before:$FIMD_BEFORE} after:$FIMD; do
    label=${bin%%:*}; exe=${bin#*:}
    config "$flat" "$work/db-flat-$label/fimd.db" > "$work/flat-$label.toml"
    rm -rf "$work/db-flat-$label"
    "$exe" --config "$work/flat-$label.toml" init 2>/dev/null
    for run in 1 2 3; do
        timed "$label: check 100k files unchanged (run $run)" "$exe" --config "$work/flat-$label.toml" check
    done
    config "$deep" "$work/db-deep-$label/fimd.db" > "$work/deep-$label.toml"
    for run in 1 2 3; do
        rm -rf "$work/db-deep-$label"
        timed "$label: init deep tree (run $run)" "$exe" --config "$work/deep-$label.toml" init
        timed "$label: check deep tree (run $run)" "$exe" --config "$work/deep-$label.toml" check
    done
    "$exe" --config "$work/deep-$label.toml" status --json \
        | python3 -c 'import json,sys; print(sys.argv[1] + ": deep tree baseline entries:", json.load(sys.stdin).get("baseline_entries"))' "$label"
done
