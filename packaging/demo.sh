#!/usr/bin/env bash
# Try fimd on a fresh clone without touching the system: builds it, makes a small demo tree
# under a temp directory, records a baseline, changes a few files and shows what fimd reports.
#   bash packaging/demo.sh            # demo tree
#   bash packaging/demo.sh /etc       # a real tree, read-only (the database goes to the temp dir)
# The temp directory is removed at the end. FIMD_BIN=path uses that binary instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${FIMD_BIN:-}" ]; then
    fimd=$FIMD_BIN
else
    echo "== building fimd (release; about 3 minutes the first time)"
    cargo build --release
    fimd="$PWD/target/release/fimd"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/fimd-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=${1:-$work/tree}
if [ -z "${1:-}" ]; then
    mkdir -p "$tree/ssh" "$tree/nginx/conf.d"
    printf 'PermitRootLogin no\nPasswordAuthentication no\n' > "$tree/ssh/sshd_config"
    printf 'server { listen 80; }\n' > "$tree/nginx/conf.d/site.conf"
    printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n' > "$tree/ssh/id_demo"
fi
cat > "$work/fimd.toml" <<TOML
[daemon]
database = "$work/db/fimd.db"
[[watch]]
path = "$tree"
[users]
authorized_keys = false
TOML
echo "== fimd init   (baseline of $tree into $work/db/fimd.db)"
"$fimd" --config "$work/fimd.toml" init
if [ -z "${1:-}" ]; then
    printf 'PermitRootLogin yes\nPasswordAuthentication no\n' > "$tree/ssh/sshd_config"
    chmod 0666 "$tree/nginx/conf.d/site.conf"
    printf 'rotated\n' >> "$tree/ssh/id_demo"
    printf 'new\n' > "$tree/nginx/conf.d/backdoor.conf"
fi
echo "== fimd check  (exit code: 0 clean, else 1 added | 2 removed | 4 changed)"
set +e
"$fimd" --config "$work/fimd.toml" check
echo "exit code: $?"
set -e
echo "== fimd events"
"$fimd" --config "$work/fimd.toml" events
first_diff=$("$fimd" --config "$work/fimd.toml" events --json | grep '"diff":"' | head -1 | sed 's/^{"id":\([0-9]*\).*/\1/' || true)
if [ -n "$first_diff" ]; then
    echo "== fimd diff $first_diff"
    "$fimd" --config "$work/fimd.toml" diff "$first_diff"
fi
echo "== done; removing $work"
