#!/usr/bin/env bash
# The long crash-consistency run (issue #16 item 13): tests/crash.rs with more kills and a
# bigger tree. A writer changes files (logging every path) while `fimd init`, `check` and
# `run` are SIGKILLed at random points; after each kill `PRAGMA integrity_check` must say ok;
# at the end the baseline must equal the disk and every written path be in some event.
#   benches/crash.sh                      # 22 kills on 50,000 files
#   KILLS=40 FILES=100000 benches/crash.sh
#   SEED=123 benches/crash.sh             # replay a run (each run prints its seed)
# Builds the test in the `ci` profile (optimised, like the binary the other benches use);
# PROFILE=dev reuses the debug build of `cargo test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export FIMD_CRASH_KILLS=${KILLS:-22}
export FIMD_CRASH_FILES=${FILES:-50000}
if [ -n "${SEED:-}" ]; then
    export FIMD_CRASH_SEED=$SEED
fi
log=${LOG:-/tmp/fimd-crash.log}
start=$(date +%s)
status=0
cargo test --profile "${PROFILE:-ci}" --locked --test crash -- --nocapture >"$log" 2>&1 || status=$?
grep -E '^(crash harness|clean init|kill [0-9]+|[0-9]+ (writes|paths)|test result|thread)' "$log" || true
echo "RESULT crash kills=$FIMD_CRASH_KILLS files=$FIMD_CRASH_FILES status=$status seconds=$(( $(date +%s) - start )) log=$log"
exit "$status"
