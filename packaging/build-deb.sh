#!/usr/bin/env bash
# Build the Debian package: target/debian/fimd_<version>_<arch>.deb
#   bash packaging/build-deb.sh              # release profile (thin LTO), as shipped
#   FIMD_PROFILE=ci bash packaging/build-deb.sh   # faster build for CI's package test
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${FIMD_PROFILE:-release}
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --locked --profile "$profile"
if [ "$profile" != release ]; then
    mkdir -p target/release
    cp "target/$profile/fimd" target/release/fimd
fi
cargo run --locked --quiet --example gen-assets -- target/assets
cargo deb --no-build --no-strip
ls -l target/debian/*.deb
