#!/bin/sh
# Measure the daemon (`fimd run`) with the shared realtime harness: startup with baseline
# build, idle CPU/RSS, write-to-event latency, burst throughput, lost changes, SIGTERM.
#
#   benches/realtime.sh                 # quick: 5000 files, 10 s idle, burst of 5000
#   benches/realtime.sh --full          # the harness defaults: 100k files, 60 s idle
#   benches/realtime.sh --files 20000   # anything else is passed to the harness
#
# Builds `cargo build --profile ci` (release optimisation without LTO) unless FIMD points at
# a binary. The harness lives beside the project: ../shared/bench/realtime (or $REALTIME).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
harness=${REALTIME:-$here/../shared/bench/realtime}
if [ ! -x "$harness" ]; then
    echo "realtime.sh: harness not found (set REALTIME=/path/to/realtime)" >&2
    exit 2
fi
if [ -z "${FIMD:-}" ]; then
    (cd "$here" && cargo build --profile ci --quiet)
    FIMD="${CARGO_TARGET_DIR:-$here/target}/ci/fimd"
fi
if [ "${1:-}" = "--full" ]; then
    shift
    exec "$harness" --fimd "$FIMD" "$@"
fi
if [ $# -eq 0 ]; then
    set -- --files 5000 --idle-s 10 --burst 5000
fi
exec "$harness" --fimd "$FIMD" "$@"
