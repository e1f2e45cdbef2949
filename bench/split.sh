#!/usr/bin/env bash
# Benchmark: `batchd split` against a durable copy of the same source, in the
# shapes users have.
#
#   bench/split.sh [SHAPE ...]          SHAPE is FILESxBYTES (default: 4000x102400 200000x1024)
#   ROUNDS=5 KINDS="zip tar.gz dir" bench/split.sh 10000x102400
#
# For each shape it generates an export of FILES incompressible files of BYTES
# each plus manifest.csv (examples/make_export.py), packs it as a stored ZIP, a
# TAR.GZ and a directory, then alternates, ROUNDS times, the floor and the split:
#   ZIP, TAR.GZ  floor `cp SRC DST && sync DST` (a durable copy of the same bytes);
#                TAR.GZ also `gzip -dc SRC` (decoding alone), for reference;
#   directory    floor `cp -r SRC DST && sync -f DST`.
# Wall time and peak RSS come from GNU time. Prints each round and the medians;
# a ratio is the median split time over the median floor, measured in the same
# run. Targets (2 cores): ZIP <= 1.15x and TAR.GZ <= 1.4x at 100 KB files; at 1 KB
# files ZIP <= 2x and TAR.GZ <= 3x; peak RSS <= 64 MiB at 200,000 entries.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
KINDS=${KINDS:-zip tar.gz dir}
SHAPES=("$@")
((${#SHAPES[@]})) || SHAPES=(4000x102400 200000x1024)
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }

cargo build --release --quiet
BIN=$PWD/target/release/batchd

measure() { # command... -> prints "wall_seconds peak_kib"
  /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" >/dev/null
  tail -n 1 "$WORK/time.out"
}

summary() { # KIND SHAPE SIZE_BYTES FLOOR_LABEL < rows of "floor_s split_s split_kib [gzip_s]"
  python3 -c '
import statistics, sys
kind, shape, size, floor = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
fl = statistics.median(r[0] for r in rows)
sp = statistics.median(r[1] for r in rows)
rss = max(r[2] for r in rows) / 1024
ratios = sorted(r[1] / r[0] for r in rows)
extra = ""
if len(rows[0]) > 3:
    gz = statistics.median(r[3] for r in rows)
    extra = f"; gzip -dc median {gz:.2f} s (split/gzip {sp/gz:.2f}x)"
print(f"{kind} {shape}: {size/2**20:.0f} MiB; {floor} median {fl:.2f} s; split median {sp:.2f} s; "
      f"ratio of medians {sp/fl:.2f}x (per-round {ratios[0]:.2f}..{ratios[-1]:.2f}); peak RSS {rss:.1f} MiB{extra}")
' "$@"
}

echo "batchd split benchmark: shapes ${SHAPES[*]}, kinds $KINDS, $ROUNDS rounds, $(nproc) cores, $(date -u +%F)"
for shape in "${SHAPES[@]}"; do
  files=${shape%x*}
  bytes=${shape#*x}
  for kind in $KINDS; do
    src="$WORK/export-$shape.$kind"
    [ "$kind" = dir ] && src="$WORK/export-$shape"
    [ -e "$src" ] || python3 examples/make_export.py "$src" --rows "$files" --size "$bytes" --format "$kind" >/dev/null
    size=$(du -sb "$src" | cut -f1)
    rows=()
    for ((r = 1; r <= ROUNDS; r++)); do
      rm -rf "$WORK/copy" "$WORK/parts"
      sync
      if [ "$kind" = dir ]; then
        c=$(measure sh -c "cp -r '$src' '$WORK/copy' && sync -f '$WORK/copy'")
      else
        c=$(measure sh -c "cp '$src' '$WORK/copy' && sync '$WORK/copy'")
      fi
      rm -rf "$WORK/copy"
      sync
      s=$(measure "$BIN" split "$src" --out "$WORK/parts" --json)
      g=""
      if [ "$kind" = tar.gz ]; then
        g=$(measure sh -c "gzip -dc '$src' >/dev/null")
        g=${g% *}
      fi
      echo "  $kind $shape round $r: floor ${c% *} s, split ${s% *} s, split peak RSS $((${s#* } / 1024)) MiB${g:+, gzip -dc $g s}"
      rows+=("${c% *} $s $g")
    done
    floor="durable copy"
    [ "$kind" = dir ] && floor="cp -r + sync"
    printf '%s\n' "${rows[@]}" | summary "$kind" "$shape" "$size" "$floor"
  done
done
rm -rf "$WORK/parts" "$WORK/copy"
