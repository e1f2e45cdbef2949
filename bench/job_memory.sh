#!/usr/bin/env bash
# Peak RSS of the daemon while it runs one job (PLAN and PACK) on a large source.
#
#   bench/job_memory.sh [SOURCE ...]   default: the 200,000 x 1 KB ZIP and TAR.GZ
#                                      that bench/split.sh generates
#
# Starts `batchd serve` on a fresh data dir (127.0.0.1, a free port), links each
# source into it (the API takes sources below its allowed roots), submits it with
# `batchd submit --wait`, and samples the VmRSS of the daemon plus its worker
# processes every 50 ms. Prints the
# idle RSS, then per source the job's time and the peak.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${BENCH_DIR:-target/bench}
SOURCES=("$@")
if ((${#SOURCES[@]} == 0)); then
  for k in zip tar.gz; do
    s="$WORK/export-200000x1024.$k"
    [ -e "$s" ] || python3 examples/make_export.py "$s" --rows 200000 --size 1024 --format "$k" >/dev/null
    SOURCES+=("$s")
  done
fi
cargo build --release --quiet
BIN=$PWD/target/release/batchd
DATA=$(mktemp -d "${TMPDIR:-/tmp}/batchd-jobmem.XXXXXX")
trap 'kill "$DAEMON" 2>/dev/null || true; rm -rf "$DATA"' EXIT
mkdir -p "$DATA/in"
"$BIN" serve --data-dir "$DATA" --listen 127.0.0.1:0 >"$DATA/serve.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do [ -s "$DATA/daemon.json" ] && break; sleep 0.1; done
# The daemon and its worker processes (engine.isolation = "process"), summed:
# what the machine pays for the job.
rss() {
  local total=0 p
  for p in "$DAEMON" $(cat /proc/"$DAEMON"/task/*/children 2>/dev/null); do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
echo "idle daemon: $(( $(rss) / 1024 )) MiB"
for src in "${SOURCES[@]}"; do
  dst="$DATA/in/$(basename "$src")"
  ln "$src" "$dst" 2>/dev/null || cp "$src" "$dst"
  ( while kill -0 "$DAEMON" 2>/dev/null; do rss; sleep 0.05; done ) >"$DATA/rss" &
  SAMPLER=$!
  start=$(date +%s.%N)
  "$BIN" submit --data-dir "$DATA" "$dst" --wait --json >"$DATA/job.json"
  end=$(date +%s.%N)
  kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
  peak=$(sort -n "$DATA/rss" | tail -n 1)
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
name, start, end, peak = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
st, msg = j["status"], j.get("status_message", "")
print(f"{name}: {st} ({msg}) in {end - start:.1f} s; peak RSS of daemon + workers {peak / 1024:.1f} MiB")
' "$DATA/job.json" "$(basename "$src")" "$start" "$end" "$peak"
done
