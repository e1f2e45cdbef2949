#!/usr/bin/env bash
# Benchmark: `batchd split` against a durable copy of the same archive.
#
#   bench/split.sh [FILES] [ROUNDS]      (defaults: 10000 files of 100 KB, 5 rounds)
#
# Generates an export of FILES incompressible 100 KB files plus manifest.csv,
# packs it as a stored ZIP and as a TAR.GZ, then for each archive alternates,
# ROUNDS times, `cp SRC DST && sync DST` (the floor: a durable copy of the same
# bytes) with `batchd split SRC --out DIR` (default batch size 2000). Wall time and
# peak RSS come from /usr/bin/time. Prints each round and the medians; the ratio is
# the median split time over the median copy time, measured in the same run.
# Targets on a 2-core machine: ZIP <= 1.15x, TAR.GZ <= 1.4x, peak RSS <= 64 MiB.
set -euo pipefail
FILES=${1:-10000}
ROUNDS=${2:-5}
cd "$(dirname "$0")/.."
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }

cargo build --release --quiet
BIN=$PWD/target/release/batchd

for fmt in zip tar.gz; do
  src="$WORK/export-$FILES.$fmt"
  [ -f "$src" ] || python3 examples/make_export.py "$src" --rows "$FILES" --size 102400 --format "$fmt"
done

measure() { # label command... -> prints "wall_seconds peak_kib"
  /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" >/dev/null
  cat "$WORK/time.out"
}

echo "batchd split benchmark: $FILES files x 100 KB, $ROUNDS rounds, $(nproc) cores, $(date -u +%F)"
for fmt in zip tar.gz; do
  src="$WORK/export-$FILES.$fmt"
  size=$(stat -c %s "$src")
  rows=()
  for ((r = 1; r <= ROUNDS; r++)); do
    rm -f "$WORK/copy"; rm -rf "$WORK/parts"; sync
    c=$(measure sh -c "cp '$src' '$WORK/copy' && sync '$WORK/copy'")
    rm -f "$WORK/copy"; sync
    s=$(measure "$BIN" split "$src" --out "$WORK/parts" --json)
    echo "  $fmt round $r: durable copy ${c% *} s, split ${s% *} s, split peak RSS $(( ${s#* } / 1024 )) MiB"
    rows+=("${c% *} $s")
  done
  printf '%s\n' "${rows[@]}" | python3 -c '
import statistics, sys
fmt, size = sys.argv[1], int(sys.argv[2])
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
cp = statistics.median(r[0] for r in rows)
sp = statistics.median(r[1] for r in rows)
rss = max(r[2] for r in rows) / 1024
ratios = sorted(r[1] / r[0] for r in rows)
print(f"{fmt}: {size/2**30:.2f} GiB; durable copy median {cp:.2f} s; split median {sp:.2f} s "
      f"({size/2**20/sp:.0f} MiB/s); ratio of medians {sp/cp:.2f}x "
      f"(per-round {ratios[0]:.2f}..{ratios[-1]:.2f}); peak RSS {rss:.1f} MiB")
' "$fmt" "$size"
done
rm -rf "$WORK/parts" "$WORK/copy"
