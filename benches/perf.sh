#!/usr/bin/env bash
# Reproduces the performance figures of benches/README.md (issue "Performance"):
#   benches/perf.sh aide        # vs-aide three times at 100k files; the three RESULT lines
#   benches/perf.sh memory      # init/check max RSS at 100k and 1M files (mktree), and the ratio
#   benches/perf.sh hashing     # MB/s on large files, files/s on small ones (warm cache)
#   benches/perf.sh cold        # cold-cache init with 2/4/8/16 hashing threads (drops caches: root)
#   benches/perf.sh governance  # the cost of low_priority, and hash_rate pacing
#   benches/perf.sh realtime    # the daemon: latency, changes/s, idle CPU/RSS (100k files)
#   benches/perf.sh all
# Needs the harness beside the project (../shared/bench) and python3; builds the `ci` profile
# unless FIMD points at a binary. WORK (default /tmp/fimd-perf) keeps the generated trees.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH:-$root/../shared/bench}
work=${WORK:-/tmp/fimd-perf}
mkdir -p "$work"
if [ -z "${FIMD:-}" ]; then
    (cd "$root" && cargo build --profile ci --quiet)
    FIMD="${CARGO_TARGET_DIR:-$root/target}/ci/fimd"
fi

# timed LABEL CMD...: one line with wall seconds and max RSS.
timed() {
    local label=$1; shift
    /usr/bin/time -f "$label: wall %e s, user %U s, sys %S s, max RSS %M KiB" "$@" >/dev/null 2>"$work/time.err" || true
    tail -1 "$work/time.err"
}

# config TREE DB [EXTRA...]: a config watching TREE with the database at DB.
config() {
    local tree=$1 db=$2; shift 2
    printf '[daemon]\ndatabase = "%s"\n%s\n[[watch]]\npath = "%s"\n\n[sensitive]\npaths = []\npatterns = []\n\n[users]\nauthorized_keys = false\n' \
        "$db" "$(printf '%s\n' "$@")" "$tree"
}

tree() { # tree NAME ARGS...: build once, reuse
    local dir=$work/$1; shift
    [ -d "$dir" ] || python3 "$bench/mktree" "$dir" "$@" >/dev/null
    echo "$dir"
}

aide() {
    for i in 1 2 3; do
        "$bench/vs-aide" --fimd "$FIMD" --files 100000 | grep '^RESULT'
    done
}

memory() {
    for n in 100000 1000000; do
        local t; t=$(tree "tree-$n" --files $n $([ $n = 1000000 ] && echo --size-mib 2000))
        config "$t" "$work/db-$n/fimd.db" > "$work/mem-$n.toml"
        rm -rf "$work/db-$n"
        find "$t" -type f -print0 | xargs -0 cat >/dev/null
        timed "init $n files" "$FIMD" --config "$work/mem-$n.toml" init
        timed "check $n files" "$FIMD" --config "$work/mem-$n.toml" check
    done
}

hashing() {
    local big=$work/big
    if [ ! -d "$big" ]; then
        mkdir -p "$big"
        for i in 1 2 3 4 5 6 7 8; do head -c $((128 << 20)) /dev/urandom > "$big/blob$i"; done
    fi
    cat "$big"/* >/dev/null
    config "$big" "$work/db-big/fimd.db" 'hash_workers = 2' > "$work/big.toml"
    rm -rf "$work/db-big"
    echo "large files: 8 x 128 MiB = 1024 MiB"
    timed "init large files" "$FIMD" --config "$work/big.toml" init
    local t; t=$(tree tree-100000 --files 100000)
    find "$t" -type f -print0 | xargs -0 cat >/dev/null
    printf '[daemon]\ndatabase = "%s"\n\n[content]\nmax_bytes = 0\n\n[[watch]]\npath = "%s"\n\n[sensitive]\npaths = []\npatterns = []\n\n[users]\nauthorized_keys = false\n' \
        "$work/db-small/fimd.db" "$t" > "$work/small.toml"
    rm -rf "$work/db-small"
    echo "small files: 100000 files (600 MiB), contents not kept"
    timed "init small files, no contents" "$FIMD" --config "$work/small.toml" init
    timed "check --full small files, no contents" "$FIMD" --config "$work/small.toml" check --full
}

cold() {
    local t; t=$(tree tree-100000 --files 100000)
    for w in 2 4 8 16; do
        config "$t" "$work/db-cold/fimd.db" "hash_workers = $w" > "$work/cold.toml"
        rm -rf "$work/db-cold"
        sync; echo 3 > /proc/sys/vm/drop_caches
        timed "cold init, $w hashing threads" "$FIMD" --config "$work/cold.toml" init
    done
}

governance() {
    local t; t=$(tree tree-100000 --files 100000)
    find "$t" -type f -print0 | xargs -0 cat >/dev/null
    for lp in false true; do
        config "$t" "$work/db-gov/fimd.db" "low_priority = $lp" > "$work/gov.toml"
        rm -rf "$work/db-gov"
        timed "init, low_priority = $lp" "$FIMD" --config "$work/gov.toml" init
    done
    config "$t" "$work/db-gov/fimd.db" "hash_rate = 104857600" > "$work/gov.toml"
    timed "check --full at hash_rate = 100 MiB/s (600 MiB)" "$FIMD" --config "$work/gov.toml" check --full
}

realtime() {
    "$bench/realtime" --fimd "$FIMD"
}

case "${1:-all}" in
    aide|memory|hashing|cold|governance|realtime) "$1" ;;
    all) aide; memory; hashing; cold; governance; realtime ;;
    *) echo "usage: $0 [aide|memory|hashing|cold|governance|realtime|all]" >&2; exit 2 ;;
esac
