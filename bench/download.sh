#!/usr/bin/env bash
# Part downloads over the API against a durable local copy of the same file.
#
#   bench/download.sh [MIB] [ROUNDS]    default: a 1024 MiB part, 3 rounds
#
# Makes one archive of 64 files of MIB/64 MiB each (stored, incompressible),
# runs it as a one-part job in `batchd serve` (127.0.0.1, a free port), then
# per round, interleaved: `cp PART COPY && sync COPY` (the floor),
# `curl` of GET /v1/jobs/{id}/parts/1/content into a file plus its sync, and
# `batchd fetch` (download + SHA-256 check + rename). Prints the medians, each
# ratio against the copy measured in the same run, and the daemon's peak RSS
# while it streamed (the part is never read into memory).
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
ROUNDS=${2:-3}
cargo build --release --quiet
BIN=$PWD/target/release/batchd
DATA=$(mktemp -d "${TMPDIR:-/tmp}/batchd-dl.XXXXXX")
trap 'kill "$DAEMON" 2>/dev/null || true; rm -rf "$DATA"' EXIT
mkdir -p "$DATA/in" "$DATA/out"
python3 - "$DATA/in/big" "$MIB" <<'PY'
import os, sys
d, mib = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
each = mib * 1048576 // 64
with open(os.path.join(d, "manifest.csv"), "w") as m:
    m.write("file\n")
    for i in range(64):
        m.write(f"f{i}.bin\n")
        with open(os.path.join(d, f"f{i}.bin"), "wb") as f:
            left = each
            while left:
                n = min(left, 8 << 20)
                f.write(os.urandom(n))
                left -= n
PY
"$BIN" serve --data-dir "$DATA" --listen 127.0.0.1:0 >"$DATA/serve.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do [ -s "$DATA/daemon.json" ] && break; sleep 0.1; done
ADDR=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"])' "$DATA/daemon.json")
TOKEN=$(cat "$DATA/token")
ID=$("$BIN" submit "$DATA/in/big" --batch-size 64 --wait --json --data-dir "$DATA" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
PART=$(ls "$DATA"/parts/"$ID"/*.zip)
echo "part: $(du -m "$PART" | cut -f1) MiB"
peak=0
sample() { while kill -0 "$DAEMON" 2>/dev/null; do
  r=$(awk '/VmRSS/ {print $2}' /proc/"$DAEMON"/status); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" >"$DATA/peak"
  sleep 0.05; done; }
sample & SAMPLER=$!
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
declare -a CP CURL FETCH
for r in $(seq "$ROUNDS"); do
  rm -f "$DATA/out/"*; sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  CP+=("$(t sh -c "cp '$PART' '$DATA/out/copy.zip' && sync '$DATA/out/copy.zip'")")
  rm -f "$DATA/out/"*; sync
  CURL+=("$(t sh -c "curl -sf -H 'Authorization: Bearer $TOKEN' -o '$DATA/out/dl.zip' http://$ADDR/v1/jobs/$ID/parts/1/content && sync '$DATA/out/dl.zip'")")
  cmp -s "$PART" "$DATA/out/dl.zip" || { echo "download differs from the part"; exit 1; }
  rm -f "$DATA/out/"*; sync
  FETCH+=("$(t "$BIN" fetch "$ID" --out "$DATA/out" --data-dir "$DATA")")
  cmp -s "$PART" "$DATA/out/$(basename "$PART")" || { echo "fetch differs from the part"; exit 1; }
done
kill "$SAMPLER" 2>/dev/null || true
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cp_m=$(med "${CP[@]}"); curl_m=$(med "${CURL[@]}"); fetch_m=$(med "${FETCH[@]}")
printf 'cp+sync   %6.2f s\n' "$cp_m"
printf 'GET+sync  %6.2f s  %.2fx\n' "$curl_m" "$(echo "$curl_m / $cp_m" | bc -l)"
printf 'fetch     %6.2f s  %.2fx  (download, SHA-256, fsync, rename)\n' "$fetch_m" "$(echo "$fetch_m / $cp_m" | bc -l)"
echo "daemon peak RSS while serving: $(( $(cat "$DATA/peak" 2>/dev/null || echo 0) / 1024 )) MiB"
