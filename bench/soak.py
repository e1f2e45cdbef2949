#!/usr/bin/env python3
"""Soak: status queries while a daemon's database grows to 100,000 jobs.

    python3 bench/soak.py [JOBS]        (default 100000; needs target/release/batchd)

Starts `batchd serve` on a temp data dir and creates JOBS one-row jobs over the
HTTP API (4 client threads); the engine runs them as they come, so the database
holds real tasks, parts and events. At every tenth of the way, and again after
`POST /v1/clean` has pruned every finished job, it times 200 of each status
query on a fresh keep-alive connection and prints p50/p99 in milliseconds. The
floor in the same run is GET /healthz (no database). Standard library only.
"""
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BATCHD_BIN") or os.path.join(ROOT, "target", "release", "batchd")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000


def main():
    work = tempfile.mkdtemp(prefix="batchd-soak-")
    data = os.path.join(work, "data")
    os.makedirs(os.path.join(data, "in"))
    src = os.path.join(data, "in", "one.zip")
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("manifest.csv", "file\na.txt\n")
        z.writestr("a.txt", "hello\n")
    log = open(os.path.join(work, "serve.log"), "w")
    proc = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", "127.0.0.1:0"], stdout=log, stderr=log)
    try:
        for _ in range(100):
            if os.path.exists(os.path.join(data, "daemon.json")):
                break
            time.sleep(0.1)
        addr = json.load(open(os.path.join(data, "daemon.json")))["listen"]
        host, port = addr.rsplit(":", 1)
        token = open(os.path.join(data, "token")).read().strip()
        hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}

        def conn():
            return http.client.HTTPConnection(host, int(port), timeout=60)

        def call(c, method, path, body=None):
            c.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdr)
            r = c.getresponse()
            data = r.read()
            return r.status, data

        ids = []
        lock = threading.Lock()

        def creator(count):
            c = conn()
            for _ in range(count):
                status, body = call(c, "POST", "/v1/jobs", {"sources": [src], "batch_size": 10})
                assert status == 201, body
                with lock:
                    ids.append(json.loads(body)["id"])

        def timed(label, paths):
            c = conn()
            out = {}
            for name, path in paths:
                samples = []
                for _ in range(200):
                    p = path() if callable(path) else path
                    t = time.perf_counter()
                    status, _ = call(c, "GET", p)
                    samples.append((time.perf_counter() - t) * 1000)
                    assert status == 200, (p, status)
                samples.sort()
                out[name] = (samples[len(samples) // 2], samples[int(len(samples) * 0.99)])
            c.close()
            cells = " | ".join("%.2f / %.2f" % out[n] for n, _ in paths)
            print("| %s | %s |" % (label, cells), flush=True)

        def queries():
            return [
                ("healthz", "/healthz"),
                ("job", lambda: "/v1/jobs/" + random.choice(ids)),
                ("list", "/v1/jobs?limit=50"),
                ("list COMPLETED", "/v1/jobs?status=COMPLETED&limit=50"),
                ("metrics", "/metrics"),
            ]

        print("| jobs created (elapsed, completed) | " + " | ".join(n + " p50 / p99 ms" for n, _ in queries()) + " |")
        print("|---" * (len(queries()) + 1) + "|")
        started = time.time()
        step = N // 10
        for k in range(10):
            threads = [threading.Thread(target=creator, args=(step // 4,)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            c = conn()
            _, body = call(c, "GET", "/metrics")
            c.close()
            done = [l.split()[-1] for l in body.decode().splitlines() if l.startswith('batchd_jobs{status="COMPLETED"}')][0]
            timed("%d (%.0f s, %s completed)" % (len(ids), time.time() - started, done), queries())
        # Let the engine finish, then prune everything finished.
        c = conn()
        while True:
            _, body = call(c, "GET", "/metrics")
            text = body.decode()
            if 'batchd_jobs{status="QUEUED"} 0' in text and 'batchd_jobs{status="PROCESSING"} 0' in text:
                break
            time.sleep(1)
        done_at = time.time() - started
        t = time.perf_counter()
        status, body = call(c, "POST", "/v1/clean", {"older_than_days": 0})
        took = time.perf_counter() - t
        assert status == 200, body
        pruned = json.loads(body)
        ids[:] = ids[:1]  # a pruned id answers 404; keep the query shape on a known-missing id
        print()
        print("all %d jobs completed after %.0f s; POST /v1/clean pruned %d jobs and %d events in %.1f s"
              % (N, done_at, pruned["jobs"], pruned["events"], took))
        size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data) if f.startswith("batchd.db"))
        print("database files after the prune: %.1f MiB" % (size / 2**20))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
