#!/bin/sh
# Builds target/debian/batchd_<version>-1_<arch>.deb from a fresh clone:
# installs cargo-deb if missing, then `cargo deb --strip` (a release build; the
# debug info the release profile keeps for profiling is stripped from the package).
set -eu
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo deb --locked --strip "$@"
