#!/usr/bin/env bash
# Benchmark: the daemon's status API under load.
#
#   bench/api.sh [SECONDS]     (default 10)
#
# Starts `batchd serve` on a temp data dir, completes one job, then with wrk
# (32 connections, 2 threads) measures GET /v1/jobs/{id} and GET /healthz of the
# same server in the same run, then GET /v1/jobs/{id} again while six 4,000-file
# (400 MB) jobs run in the daemon, then the idle daemon's RSS and CPU over 10 s.
# Targets (2 cores): >= 10,000 req/s, p99 <= 10 ms, >= 50 % of the /healthz rate;
# p99 <= 50 ms while a split runs; idle RSS <= 20 MiB and no busy polling.
set -euo pipefail
SECS=${1:-10}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet
BIN=$PWD/target/release/batchd
WORK=$(mktemp -d /tmp/batchd-api-bench.XXXXXX)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

mkdir -p "$WORK/data/in"
cp -r examples/sample-export "$WORK/data/in/"
python3 examples/make_export.py "$WORK/data/in/load.zip" --rows 4000 --size 102400 --format zip
"$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -f "$WORK/data/daemon.json" ] && break; sleep 0.1; done
ADDR=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['listen'])" "$WORK/data/daemon.json")
TOKEN=$(cat "$WORK/data/token")
ID=$("$BIN" submit "$WORK/data/in/sample-export" --data-dir "$WORK/data" --wait --json | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")

run() { # label url -> prints "label req/s p99"
  wrk -t2 -c32 -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" "$2" >"$WORK/wrk.out"
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' "$WORK/wrk.out")
  echo "$1: $rps req/s, p99 $p99 ${errs:+($errs)}"
}

echo "batchd API benchmark: wrk -t2 -c32 -d${SECS}s, $(nproc) cores, $(date -u +%F)"
job=$(run "GET /v1/jobs/{id}" "http://$ADDR/v1/jobs/$ID"); echo "$job"
health=$(run "GET /healthz" "http://$ADDR/healthz"); echo "$health"
python3 -c "import sys; a=float(sys.argv[1].split(': ')[1].split()[0]); b=float(sys.argv[2].split(': ')[1].split()[0]); print(f'job status rate = {100*a/b:.0f} % of /healthz')" "$job" "$health"

LOADS=()
for i in 1 2 3 4 5 6; do
  LOADS+=("$("$BIN" submit "$WORK/data/in/load.zip" --data-dir "$WORK/data" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")")
done
sleep 0.5
SECS=$(( SECS < 5 ? SECS : 5 )) run "GET /v1/jobs/{id} while splits run" "http://$ADDR/v1/jobs/${LOADS[0]}"
for l in "${LOADS[@]}"; do
  state=$("$BIN" status "$l" --data-dir "$WORK/data" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['status'])")
  echo "  load job $l was $state at the end of the measurement"
  "$BIN" follow "$l" --data-dir "$WORK/data" >/dev/null 2>&1
done

sleep 2
t0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
sleep 10
t1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
echo "idle: RSS $((rss / 1024)) MiB, CPU $(( (t1 - t0) * 10 )) ms over 10 s"
