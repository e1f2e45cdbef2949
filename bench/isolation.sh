#!/usr/bin/env bash
# What worker processes cost, and the daemon against `batchd split`.
#
#   bench/isolation.sh [ROUNDS [SOURCE ...]]   default 3 rounds
#
# Sources by default (generated once under target/bench): a 2 GB stored ZIP
# (2,000 x 1 MB) and a 1 GB TAR.GZ (1,000 x 1 MB; random bytes, so gzip barely
# shrinks it). bench/split.sh's 200,000 x 1 KB TAR.GZ is the many-entries case.
# For each source, in the same run and interleaved round by round:
#   - `batchd split` (the floor the daemon is held to),
#   - a daemon job with engine.isolation = "thread",
#   - a daemon job with engine.isolation = "process" (the default),
# each daemon on a fresh data dir, the job submitted with `batchd submit --wait`
# and timed from submit to its end; the two modes alternate which goes first. Prints the medians and the ratios
# process/thread (the isolation overhead) and daemon/split. Parts go to the same
# disk as the source; page cache is warm after the first round for all three.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
shift || true
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
SOURCES=("$@")
if ((${#SOURCES[@]} == 0)); then
  ZIP="$WORK/export-2000x1048576.zip"
  TGZ="$WORK/export-1000x1048576.tar.gz"
  [ -e "$ZIP" ] || python3 examples/make_export.py "$ZIP" --rows 2000 --size 1048576 --format zip >/dev/null
  [ -e "$TGZ" ] || python3 examples/make_export.py "$TGZ" --rows 1000 --size 1048576 --format tar.gz >/dev/null
  SOURCES=("$ZIP" "$TGZ")
fi
cargo build --release --quiet
BIN=$PWD/target/release/batchd
SCRATCH=$(mktemp -d "$WORK/isolation.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

now() { date +%s.%N; }
# Rows per part: 100 (20 parts of 100 MB for the 2 GB ZIP); BATCH=2000 for many small entries.
BATCH=${BATCH:-100}

# split SOURCE -> seconds
split_once() {
  rm -rf "$SCRATCH/split"
  local s; s=$(now)
  "$BIN" split "$1" --out "$SCRATCH/split" -n "$BATCH" >/dev/null
  python3 -c "print(f'{$(now) - $s:.3f}')"
}

# job MODE SOURCE -> seconds
job_once() {
  local data="$SCRATCH/data-$1"
  rm -rf "$data"; mkdir -p "$data/in"
  printf '[engine]\nisolation = "%s"\n' "$1" >"$SCRATCH/$1.toml"
  ln "$2" "$data/in/" 2>/dev/null || cp "$2" "$data/in/"
  "$BIN" serve --config "$SCRATCH/$1.toml" --data-dir "$data" --listen 127.0.0.1:0 >"$data/serve.log" 2>&1 &
  local daemon=$!
  for _ in $(seq 100); do [ -s "$data/daemon.json" ] && break; sleep 0.1; done
  local s; s=$(now)
  "$BIN" submit --data-dir "$data" "$data/in/$(basename "$2")" --batch-size "$BATCH" --wait --json >"$data/job.json"
  local e; e=$(now)
  kill "$daemon"; wait "$daemon" 2>/dev/null || true
  grep -q '"status": "COMPLETED"' "$data/job.json" || { echo "job failed: $(cat "$data/job.json")" >&2; exit 1; }
  python3 -c "print(f'{$e - $s:.3f}')"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for src in "${SOURCES[@]}"; do
  : >"$SCRATCH/split.t"; : >"$SCRATCH/thread.t"; : >"$SCRATCH/process.t"
  for r in $(seq "$ROUNDS"); do
    # Alternate the order, so neither mode always runs after the other's writes.
    if ((r % 2)); then order=(thread process); else order=(process thread); fi
    split_once "$src" >>"$SCRATCH/split.t"
    for mode in "${order[@]}"; do job_once "$mode" "$src" >>"$SCRATCH/$mode.t"; done
  done
  sp=$(median <"$SCRATCH/split.t"); th=$(median <"$SCRATCH/thread.t"); pr=$(median <"$SCRATCH/process.t")
  python3 -c "
name, sp, th, pr = '$(basename "$src")', $sp, $th, $pr
print(f'{name}: split {sp:.2f} s, daemon thread {th:.2f} s, daemon process {pr:.2f} s (medians of $ROUNDS)')
print(f'  process / thread = {pr / th:.3f}x   daemon (process) / split = {pr / sp:.2f}x   daemon (thread) / split = {th / sp:.2f}x')
"
done
