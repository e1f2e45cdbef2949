#!/usr/bin/env bash
# Delivering a job's parts to S3-compatible storage (a local Garage) against
# uploading the same bytes with another client, in the same run.
#
#   bench/delivery.sh [MIB] [ROUNDS]    default: 2048 MiB, 2 rounds
#
# Makes a directory source of MIB MiB (200 incompressible files) and starts
# Garage (built by scripts/test.sh) and `batchd serve` with [delivery.s3] on
# 127.0.0.1. Per round, interleaved:
#   split    `batchd split` of the source alone (no upload): the packing floor
#   job      a daemon job of 20 parts, split and delivered (parts go up while
#            the rest are packed; 2 hook workers; 16 MiB multipart requests)
#   curl     `curl --aws-sigv4 -T` of the same 20 part files, 2 at a time
#            (one PUT each, unsigned payload: no hashing, no multipart), the
#            upload floor
# Prints medians, job / (split + curl) (below 1: packing and uploading
# overlap), the job's delivery-only cost against curl, and the daemon's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-2048}
ROUNDS=${2:-2}
GARAGE=$(command -v garage || echo "$HOME/.cargo/bin/garage")
[ -x "$GARAGE" ] || { echo "garage is not installed: run scripts/test.sh first"; exit 1; }
cargo build --release --quiet
BIN=$PWD/target/release/batchd
W=$(mktemp -d "${TMPDIR:-/tmp}/batchd-s3.XXXXXX")
trap 'kill "$DAEMON" "$GPID" 2>/dev/null || true; rm -rf "$W"' EXIT
KEY=GK0123456789abcdef01234567
SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S3P=$(free_port); RPC=$(free_port); ADM=$(free_port)
cat >"$W/garage.toml" <<EOF
metadata_dir = "$W/g/meta"
data_dir = "$W/g/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC"
rpc_public_addr = "127.0.0.1:$RPC"
rpc_secret = "$SECRET"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3P"
[admin]
api_bind_addr = "127.0.0.1:$ADM"
EOF
"$GARAGE" -c "$W/garage.toml" server >"$W/garage.log" 2>&1 &
GPID=$!
G() { for _ in $(seq 50); do "$GARAGE" -c "$W/garage.toml" "$@" >/dev/null 2>&1 && return; sleep 0.2; done; echo "garage $*: failed"; exit 1; }
sleep 1
NODE=$("$GARAGE" -c "$W/garage.toml" node id -q 2>/dev/null | cut -d@ -f1)
G layout assign -z dc1 -c 10G "$NODE"; G layout apply --version 1
G key import --yes -n bench "$KEY" "$SECRET"; G bucket create parts
G bucket allow --read --write --owner parts --key bench

mkdir -p "$W/in"
python3 - "$W/in/big" "$MIB" <<'PY'
import os, sys
d, mib = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
each = mib * 1048576 // 200
with open(os.path.join(d, "manifest.csv"), "w") as m:
    m.write("file\n")
    for i in range(200):
        m.write(f"f{i:03}.bin\n")
        with open(os.path.join(d, f"f{i:03}.bin"), "wb") as f:
            f.write(os.urandom(each))
PY
cat >"$W/batchd.toml" <<EOF
[http]
allowed_roots = ["$W"]
[s3]
endpoint = "http://127.0.0.1:$S3P"
region = "garage"
[delivery.s3]
bucket = "parts"
key = "{job}/{file}"
EOF
AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET "$BIN" serve --config "$W/batchd.toml" --data-dir "$W/data" --listen 127.0.0.1:0 >"$W/serve.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do [ -s "$W/data/daemon.json" ] && break; sleep 0.1; done
peak=0
sample() { while kill -0 "$DAEMON" 2>/dev/null; do
  r=$(awk '/VmRSS/ {print $2}' /proc/"$DAEMON"/status 2>/dev/null || echo 0); [ "${r:-0}" -gt "$peak" ] && peak=$r && echo "$peak" >"$W/peak"
  sleep 0.1; done; }
sample & SAMPLER=$!
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
declare -a SPLIT JOB CURL
for r in $(seq "$ROUNDS"); do
  rm -rf "$W/split"; sync
  SPLIT+=("$(t "$BIN" split "$W/in/big" --batch-size 10 --out "$W/split")")
  sync
  JOB+=("$(t "$BIN" submit "$W/in/big" --batch-size 10 --wait --data-dir "$W/data")")
  sync
  CURL+=("$(t sh -c "ls '$W'/split/*.zip | xargs -P2 -I{} sh -c 'curl -sf --aws-sigv4 aws:amz:garage:s3 --user $KEY:$SECRET -H \"x-amz-content-sha256: UNSIGNED-PAYLOAD\" -T {} http://127.0.0.1:$S3P/parts/curl-$r/\$(basename {})'")")
done
kill "$SAMPLER" 2>/dev/null || true
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
S=$(med "${SPLIT[@]}"); J=$(med "${JOB[@]}"); C=$(med "${CURL[@]}")
echo "source: $MIB MiB in 20 parts; rounds: $ROUNDS"
printf 'split alone        %6.2f s\n' "$S"
printf 'job (split+deliver) %6.2f s   %.0f MB/s end to end\n' "$J" "$(echo "$MIB * 1.048576 / $J" | bc -l)"
printf 'curl -T, 2 at once %6.2f s   %.0f MB/s\n' "$C" "$(echo "$MIB * 1.048576 / $C" | bc -l)"
printf 'job / (split + curl)  %.2f   (below 1: packing and uploading overlap)\n' "$(echo "$J / ($S + $C)" | bc -l)"
printf 'delivery cost: (job - split) / curl = %.2f\n' "$(echo "($J - $S) / $C" | bc -l)"
echo "daemon peak RSS: $(( $(cat "$W/peak" 2>/dev/null || echo 0) / 1024 )) MiB"
