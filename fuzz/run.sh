#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS (default 600), one after the other,
# from the committed seeds plus the corpus grown by earlier runs. Exits non-zero
# on the first panic, hang (over 10 s on one input), or input needing over 2 GiB;
# the input is saved under fuzz/artifacts/TARGET/.
#
#   cargo install cargo-fuzz --locked
#   fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
# cargo-fuzz builds with nightly-only flags (-Zsanitizer=address); the project's
# toolchain is stable, and RUSTC_BOOTSTRAP lets it take them.
export RUSTC_BOOTSTRAP=1
for target in manifest split; do
  mkdir -p "fuzz/corpus/$target"
  # The splitter packs on a rayon pool built per split. Dropping a pool lets its
  # threads exit on their own, and LeakSanitizer, checking right after an input,
  # reports what the still-exiting threads hold (their deques and thread-local
  # destructors) as leaked. A real leak would grow RSS over millions of runs,
  # which -rss_limit_mb still catches.
  leaks=1
  [ "$target" = split ] && leaks=0
  # The progress lines (NEW, REDUCE, pulse, NEW_FUNC) are left out; with pipefail, a
  # failure of cargo fuzz fails the script.
  cargo fuzz run -O "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -detect_leaks=$leaks 2>&1 |
    grep -vE '^#[0-9]+ +(NEW|REDUCE|pulse)|NEW_FUNC'
done
