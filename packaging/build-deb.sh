#!/bin/sh
# Builds target/debian/batchd_<version>-1_<arch>.deb from a fresh clone:
# installs cargo-deb if missing, then `cargo deb` (a release build, stripped).
set -eu
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo deb --locked "$@"
