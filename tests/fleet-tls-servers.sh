# The TLS fleet servers (tests/fleettls.rs), sourced by tests/fleet-servers.sh; on their own
# ports, so the plain servers and the tests that use them stay exactly as they are.
#
# At every start, `openssl` makes in $FLEET_DIR/tls (never committed): a throw-away CA, a
# server certificate for localhost and 127.0.0.1, a client certificate (CN=tlscert) and a
# second CA that signed nothing the servers use (the "wrong CA"); and two nkey users (seed
# and public key) from openssl Ed25519 keys.
#
# - PostgreSQL 15 on $FLEET_PG_TLS_PORT (5434), a second throw-away cluster that accepts TLS
#   only: the role `tlscert` logs in by its client certificate (`hostssl ... cert`), every
#   other role by password (`hostssl ... scram-sha-256`), plain TCP is rejected.
# - nats-server on $FLEET_NATS_TLS_PORT (4224): TLS, users admin/testhost (password) and the
#   nkey user `host` (the other nkey, `stranger`, is unknown to it).
# - nats-server on $FLEET_NATS_MTLS_PORT (4225): TLS that requires a client certificate from
#   the CA, and a token.
#
# Exports FIMD_TEST_TLS_DIR, FIMD_TEST_PG_TLS_PORT, FIMD_TEST_NATS_TLS_URL,
# FIMD_TEST_NATS_MTLS_URL and FIMD_TEST_NATS_TOKEN.

FLEET_PG_TLS_PORT=${FLEET_PG_TLS_PORT:-5434}
FLEET_NATS_TLS_PORT=${FLEET_NATS_TLS_PORT:-4224}
FLEET_NATS_MTLS_PORT=${FLEET_NATS_MTLS_PORT:-4225}
FLEET_NATS_TOKEN=tok-fleet-tls-MARKER

# The CA, the server and client certificates and the unrelated CA (EC P-256).
fleet_tls_certs() {
    local d="$FLEET_DIR/tls"
    mkdir -p "$d"
    (
        set -e
        cd "$d"
        for ca in ca other-ca; do
            openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
                -subj "/CN=fimd test $ca" -keyout "$ca.key" -out "$ca.crt" \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        done
        sign() { # name subject extensions
            openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
                -keyout "$1.key" -out "$1.csr"
            printf '%b\n' "$3" >"$1.ext"
            openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
                -extfile "$1.ext" -out "$1.crt"
        }
        sign server "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
        sign client "/CN=tlscert" "extendedKeyUsage=clientAuth"
        chmod 600 ./*.key
    ) >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; return 1; }
}

# An nkey user NAME: $FLEET_DIR/tls/NAME.seed and NAME.pub. The nkey encoding (nats-io/nkeys):
# base32 without padding of prefix byte(s) + the raw 32-byte key + CRC-16/XMODEM (little-endian).
fleet_nkey() {
    local d="$FLEET_DIR/tls"
    openssl genpkey -algorithm ed25519 -out "$d/$1.ed25519" 2>/dev/null || return 1
    python3 -c '
import base64, subprocess, sys
key, seed_out, pub_out = sys.argv[1:]
def raw(*args):
    der = subprocess.run(["openssl", "pkey", "-in", key, "-outform", "DER", *args],
                         check=True, capture_output=True).stdout
    return der[-32:]
def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc.to_bytes(2, "little")
def encode(data):
    return base64.b32encode(data + crc16(data)).decode().rstrip("=")
USER, SEED = 20 << 3, 18 << 3
open(seed_out, "w").write(encode(bytes([SEED | (USER >> 5), (USER & 31) << 3]) + raw()) + "\n")
open(pub_out, "w").write(encode(bytes([USER]) + raw("-pubout")) + "\n")
' "$d/$1.ed25519" "$d/$1.seed" "$d/$1.pub"
}

fleet_pg_tls_start() {
    su postgres -s /bin/sh -c "$FLEET_PG_BIN/pg_ctl -D '$FLEET_DIR/pgtls/data' -l '$FLEET_DIR/pgtls/log' -w -t 60 \
        -o \"-p $FLEET_PG_TLS_PORT -k '$FLEET_DIR/pgtls' -c listen_addresses=127.0.0.1\" start" >/dev/null
}

fleet_tls_stop() {
    if [ -d "$FLEET_DIR/pgtls/data" ]; then
        su postgres -s /bin/sh -c "$FLEET_PG_BIN/pg_ctl -D '$FLEET_DIR/pgtls/data' -m fast -w stop" \
            >/dev/null 2>&1 || true
    fi
    local n pid
    for n in nats-tls nats-mtls; do
        if [ -f "$FLEET_DIR/$n/pid" ]; then
            pid=$(cat "$FLEET_DIR/$n/pid")
            kill "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
            rm -f "$FLEET_DIR/$n/pid"
        fi
    done
}

fleet_wait_port() { # port log
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server on port $1 did not start; see $2" >&2
    return 1
}

fleet_pg_tls_init() {
    local d="$FLEET_DIR/tls" p="$FLEET_DIR/pgtls"
    mkdir -p "$p"
    cp "$d/server.crt" "$d/server.key" "$d/ca.crt" "$p/"
    chown -R postgres "$p"
    su postgres -s /bin/sh -c "$FLEET_PG_BIN/initdb -D '$p/data' -U postgres --pwfile='$FLEET_DIR/pg/pwfile' \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8" >"$p/initdb.log" 2>&1 \
        || { cat "$p/initdb.log" >&2; return 1; }
    printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\nssl_ca_file = '%s'\n" \
        "$p/server.crt" "$p/server.key" "$p/ca.crt" >>"$p/data/postgresql.conf"
    # TLS only over TCP; tlscert logs in by its client certificate (CN = role name).
    printf '%s\n' \
        "local     all all                  trust" \
        "hostssl   all tlscert 127.0.0.1/32 cert" \
        "hostssl   all all     127.0.0.1/32 scram-sha-256" \
        "hostnossl all all     0.0.0.0/0    reject" >"$p/data/pg_hba.conf"
    fleet_pg_tls_start || { cat "$p/log" >&2; return 1; }
}

fleet_nats_tls_init() {
    local d="$FLEET_DIR/tls" n
    for n in nats-tls nats-mtls; do mkdir -p "$FLEET_DIR/$n/js"; done
    {
        echo "listen: 127.0.0.1:$FLEET_NATS_TLS_PORT"
        echo "jetstream { store_dir: \"$FLEET_DIR/nats-tls/js\" }"
        echo "tls { cert_file: \"$d/server.crt\", key_file: \"$d/server.key\" }"
        echo "authorization {"
        echo "  users = ["
        echo "    { user: admin, password: fleet-admin-pw }"
        echo "    { user: testhost, password: \"pw-testhost\" }"
        echo "    { nkey: $(cat "$d/host.pub") }"
        echo "  ]"
        echo "}"
    } >"$FLEET_DIR/nats-tls/nats.conf"
    {
        echo "listen: 127.0.0.1:$FLEET_NATS_MTLS_PORT"
        echo "jetstream { store_dir: \"$FLEET_DIR/nats-mtls/js\" }"
        echo "tls { cert_file: \"$d/server.crt\", key_file: \"$d/server.key\", ca_file: \"$d/ca.crt\", verify: true }"
        echo "authorization { token: \"$FLEET_NATS_TOKEN\" }"
    } >"$FLEET_DIR/nats-mtls/nats.conf"
    local port
    for n in nats-tls nats-mtls; do
        port=$FLEET_NATS_TLS_PORT
        [ "$n" = nats-mtls ] && port=$FLEET_NATS_MTLS_PORT
        nats-server -c "$FLEET_DIR/$n/nats.conf" >>"$FLEET_DIR/$n/log" 2>&1 &
        echo $! >"$FLEET_DIR/$n/pid"
        fleet_wait_port "$port" "$FLEET_DIR/$n/log" || return 1
    done
}

# Needs $FLEET_DIR/pg/pwfile (the admin password), made by fleet_servers_start.
fleet_tls_servers_start() {
    command -v openssl >/dev/null || { echo "openssl is not installed (apt-get install openssl)" >&2; return 1; }
    command -v python3 >/dev/null || { echo "python3 is not installed" >&2; return 1; }
    fleet_tls_certs || return 1
    { fleet_nkey host && fleet_nkey stranger; } || { echo "cannot make the test nkeys" >&2; return 1; }
    fleet_pg_tls_init || return 1
    fleet_nats_tls_init || return 1
    export FIMD_TEST_TLS_DIR="$FLEET_DIR/tls"
    export FIMD_TEST_PG_TLS_PORT="$FLEET_PG_TLS_PORT"
    export FIMD_TEST_NATS_TLS_URL="tls://localhost:$FLEET_NATS_TLS_PORT"
    export FIMD_TEST_NATS_MTLS_URL="tls://localhost:$FLEET_NATS_MTLS_PORT"
    export FIMD_TEST_NATS_TOKEN="$FLEET_NATS_TOKEN"
    echo "fleet TLS servers: PostgreSQL 127.0.0.1:$FLEET_PG_TLS_PORT (TLS only), NATS TLS 127.0.0.1:$FLEET_NATS_TLS_PORT, NATS mTLS+token 127.0.0.1:$FLEET_NATS_MTLS_PORT"
}
