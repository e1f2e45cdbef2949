#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh machine
# (idempotent: each step only when its tool is missing), then runs the suite.
# .ci/run calls this same script.
#
#   scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

apt_need=()
need() { command -v "$1" >/dev/null 2>&1 || apt_need+=("$2"); }
need unzip unzip
need zip zip
need bsdtar libarchive-tools
need 7zz 7zip
need zstd zstd
need bzip2 bzip2
need xz xz-utils
need git git
need jar default-jdk-headless
need python3 python3
need systemd-analyze systemd
need chromium chromium
need npm npm
[ -x /usr/bin/time ] || apt_need+=(time)
if ((${#apt_need[@]})); then
  echo "test.sh: installing ${apt_need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_need[@]}" >/dev/null
fi

# The OpenAPI check validates responses with Python's jsonschema and PyYAML.
python3 -c "import yaml, jsonschema" 2>/dev/null || python3 -m pip install -q pyyaml jsonschema
# The delivery tests read buckets back with boto3 and check webhook
# signatures with the reference Standard Webhooks package.
python3 -c "import boto3, standardwebhooks" 2>/dev/null || python3 -m pip install -q boto3 standardwebhooks
# ... against Garage, a production S3-compatible server, built once from
# crates.io (~12 min on 2 cores) and kept in ~/.cargo/bin.
command -v garage >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/garage" ] || cargo install garage --locked
# The packaging test builds the .deb with cargo-deb.
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
# The dashboard test drives Debian's Chromium with playwright-core.
[ -d tests/ui/node_modules/playwright-core ] || npm ci --prefix tests/ui --no-audit --no-fund

cargo test --release --features failpoints "$@"
