#!/usr/bin/env bash
# Try fimd on a fresh clone without touching the system: builds it, makes a small demo tree
# under a temp directory, records a baseline, changes a few files and shows what fimd reports.
#   bash packaging/demo.sh            # demo tree
#   bash packaging/demo.sh /etc       # a real tree, read-only (the database stays in the temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
fimd="$PWD/target/release/fimd"
work=$(mktemp -d /tmp/fimd-demo.XXXXXX)
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
echo "== the demo's files are in $work (config: $work/fimd.toml)"
