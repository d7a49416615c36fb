#!/usr/bin/env bash
# Start the real servers the fleet tests use, on 127.0.0.1 only, and export their URLs.
#
#   source tests/fleet-servers.sh        # then: cargo test --test fleet
#   fleet_servers_stop                   # stop both (also done by `bash tests/fleet-servers.sh stop`)
#
# PostgreSQL 15 (Debian's `postgresql-15`): a throw-away cluster made with initdb in a temporary
# directory, run as the `postgres` user on port 5433 (socket in the same directory), password
# authentication over TCP. NATS (Debian's `nats-server`): JetStream on, port 4223, an `admin`
# user and one user per test host (`web-1`, `web-2`, `sim-000` .. `sim-199`) who may publish
# only under its own subjects. Both listen on 127.0.0.1 only.
#
# Exports FIMD_TEST_PG_URL (superuser), FIMD_TEST_PG_ADMIN_PASSWORD, FIMD_TEST_NATS_URL,
# FIMD_TEST_NATS_DIR, FIMD_TEST_PG_DIR and the helpers fleet_pg_stop/fleet_pg_start,
# fleet_nats_stop/fleet_nats_start (tests stop and restart them through
# `FLEET_FUNCTIONS_ONLY=1 . tests/fleet-servers.sh`, which defines the functions only).
#
# It also starts the TLS servers of tests/fleet-tls-servers.sh (other ports; certificates made
# with openssl at start) and exports what that file lists.

FLEET_PG_BIN=${FLEET_PG_BIN:-/usr/lib/postgresql/15/bin}
FLEET_PG_PORT=${FLEET_PG_PORT:-5433}
FLEET_NATS_PORT=${FLEET_NATS_PORT:-4223}
FLEET_DIR=${FLEET_DIR:-/tmp/fimd-fleet-servers}
# shellcheck source=tests/fleet-tls-servers.sh
. "$(dirname "${BASH_SOURCE[0]}")/fleet-tls-servers.sh"

fleet_pg_start() {
    su postgres -s /bin/sh -c "$FLEET_PG_BIN/pg_ctl -D '$FLEET_DIR/pg/data' -l '$FLEET_DIR/pg/log' -w -t 60 \
        -o \"-p $FLEET_PG_PORT -k '$FLEET_DIR/pg' -c listen_addresses=127.0.0.1 -c max_connections=400\" start" >/dev/null
}

fleet_pg_stop() {
    su postgres -s /bin/sh -c "$FLEET_PG_BIN/pg_ctl -D '$FLEET_DIR/pg/data' -m fast -w stop" >/dev/null 2>&1 || true
}

fleet_nats_start() {
    nats-server -c "$FLEET_DIR/nats/nats.conf" >>"$FLEET_DIR/nats/log" 2>&1 &
    echo $! >"$FLEET_DIR/nats/pid"
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$FLEET_NATS_PORT") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nats-server did not start; see $FLEET_DIR/nats/log" >&2
    return 1
}

fleet_nats_stop() {
    if [ -f "$FLEET_DIR/nats/pid" ]; then
        local pid
        pid=$(cat "$FLEET_DIR/nats/pid")
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        rm -f "$FLEET_DIR/nats/pid"
    fi
}

fleet_servers_stop() {
    fleet_pg_stop
    fleet_nats_stop
    fleet_tls_stop
}

fleet_servers_start() {
    [ -x "$FLEET_PG_BIN/initdb" ] || { echo "PostgreSQL 15 is not installed (apt-get install postgresql-15)" >&2; return 1; }
    command -v nats-server >/dev/null || { echo "nats-server is not installed (apt-get install nats-server)" >&2; return 1; }
    fleet_servers_stop
    rm -rf "$FLEET_DIR"
    mkdir -p "$FLEET_DIR/pg" "$FLEET_DIR/nats/js"
    chown postgres "$FLEET_DIR/pg"
    local pgpw=fleet-admin-pw
    printf '%s\n' "$pgpw" >"$FLEET_DIR/pg/pwfile"
    chown postgres "$FLEET_DIR/pg/pwfile"
    su postgres -s /bin/sh -c "$FLEET_PG_BIN/initdb -D '$FLEET_DIR/pg/data' -U postgres --pwfile='$FLEET_DIR/pg/pwfile' \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8" >"$FLEET_DIR/pg/initdb.log" 2>&1 \
        || { cat "$FLEET_DIR/pg/initdb.log" >&2; return 1; }
    fleet_pg_start || { cat "$FLEET_DIR/pg/log" >&2; return 1; }

    # NATS: admin may do anything; each host publishes only its own subjects (and reads its
    # replies, which carry the JetStream acks).
    {
        echo "listen: 127.0.0.1:$FLEET_NATS_PORT"
        echo "jetstream { store_dir: \"$FLEET_DIR/nats/js\" }"
        echo "max_payload: 1MB"
        echo "authorization {"
        echo "  users = ["
        echo "    { user: admin, password: fleet-admin-pw }"
        local h
        for h in testhost web-1 web-2 $(seq -f 'sim-%03g' 0 199); do
            # t.<test>.*: each test's own stream (tests run in parallel).
            echo "    { user: $h, password: \"pw-$h\", permissions: { publish: { allow: [\"fim.v1.events.$h.>\", \"fim.v1.hb.$h\", \"t.*.events.$h.>\", \"t.*.hb.$h\"] }, subscribe: { allow: [\"_INBOX.>\"] } } }"
        done
        echo "  ]"
        echo "}"
    } >"$FLEET_DIR/nats/nats.conf"
    fleet_nats_start || return 1

    export FIMD_TEST_PG_URL="postgres://postgres:$pgpw@127.0.0.1:$FLEET_PG_PORT/postgres"
    export FIMD_TEST_PG_ADMIN_PASSWORD="$pgpw"
    export FIMD_TEST_NATS_URL="nats://127.0.0.1:$FLEET_NATS_PORT"
    export FIMD_TEST_NATS_DIR="$FLEET_DIR/nats"
    export FIMD_TEST_PG_DIR="$FLEET_DIR/pg"
    export FIMD_TEST_NATS_ADMIN_PASSWORD=fleet-admin-pw
    export FIMD_TEST_FLEET_DIR="$FLEET_DIR"
    echo "fleet servers: PostgreSQL 127.0.0.1:$FLEET_PG_PORT, NATS 127.0.0.1:$FLEET_NATS_PORT ($FLEET_DIR)"
    fleet_tls_servers_start
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-start}" in
        start) fleet_servers_start ;;
        stop) fleet_servers_stop ;;
        *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
    esac
elif [ -z "${FLEET_FUNCTIONS_ONLY:-}" ]; then
    fleet_servers_start
fi
