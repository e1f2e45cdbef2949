#!/usr/bin/env python3
"""Load: minutes of API load on a live daemon while its engine runs jobs.

    python3 torture/api_load.py [SECONDS] [CLIENTS]     (default 600 s, 6 clients)

Starts `batchd serve` (target/release/batchd) in a temp data dir with three real
archives in its inbox root. CLIENTS threads, each on its own keep-alive
connection, send as fast as they are answered a mix of: job views, job lists
(plain and filtered), parts, events, /metrics, job creations (paced at 4 a
second in all, so the engine keeps up and jobs really run) and cancels. Every
10 s the daemon's RSS is read from /proc.

It fails (exit 1) when any response is a 5xx, when any body mentions
"database is locked" or "busy", when a request fails at the socket, when the
RSS of the last minute is more than 20 % above that of the second minute (the
first is warm-up), or when, after the load, the jobs do not all end, a sample of
completed jobs' parts do not read whole in Python's zipfile, or the database
fails integrity_check. Standard library only."""
import http.client
import json
import os
import random
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Daemon, integrity, make_zip, tally, workdir  # noqa: E402

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 600
CLIENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 6
CREATES_PER_SECOND = 4.0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Load:
    def __init__(self, d, sources):
        self.d = d
        self.sources = sources
        self.lock = threading.Lock()
        self.ids = []
        self.created = 0
        self.counts = {}
        self.bad = []  # (op, status, body) of every 5xx or locked/busy answer
        self.socket_errors = 0
        self.latency = {}
        self.started = time.time()
        self.stop = False

    def record(self, op, status, body, seconds):
        with self.lock:
            key = (op, status)
            self.counts[key] = self.counts.get(key, 0) + 1
            self.latency.setdefault(op, []).append(seconds)
            text = body.decode(errors="replace")
            if status >= 500 or "locked" in text or "busy" in text.lower():
                self.bad.append((op, status, text[:300]))

    def pick_op(self):
        r = random.random()
        with self.lock:
            may_create = self.created < (time.time() - self.started) * CREATES_PER_SECOND
            if may_create and r < 0.3:
                self.created += 1
                return "create"
            have = bool(self.ids)
        if not have or r < 0.45:
            return "list" if r < 0.4 else "list_status"
        return random.choice(["view", "view", "view", "parts", "events", "metrics", "cancel"])

    def client(self):
        conn = http.client.HTTPConnection(self.d.host, int(self.d.port), timeout=60)
        headers = {"Authorization": "Bearer " + self.d.token, "Content-Type": "application/json"}
        while not self.stop:
            op = self.pick_op()
            with self.lock:
                jid = random.choice(self.ids) if self.ids else None
            method, path, body = "GET", "/v1/jobs?limit=50", None
            if op == "create":
                method, path = "POST", "/v1/jobs"
                body = json.dumps({"sources": [random.choice(self.sources)], "batch_size": 5})
            elif op == "list_status":
                path = "/v1/jobs?status=%s&limit=50" % random.choice(["COMPLETED", "PROCESSING", "QUEUED", "CANCELLED"])
            elif op == "view":
                path = "/v1/jobs/" + jid
            elif op == "parts":
                path = "/v1/jobs/%s/parts" % jid
            elif op == "events":
                path = "/v1/events?after=%d" % random.randint(0, 1000)
            elif op == "metrics":
                path = "/metrics"
            elif op == "cancel":
                method, path, body = "POST", "/v1/jobs/%s/cancel" % jid, "{}"
            t = time.time()
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.socket_errors += 1
                    self.bad.append((op, 0, repr(e)))
                conn.close()
                conn = http.client.HTTPConnection(self.d.host, int(self.d.port), timeout=60)
                continue
            self.record(op, r.status, data, time.time() - t)
            if op == "create" and r.status == 201:
                with self.lock:
                    self.ids.append(json.loads(data)["id"])
        conn.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000 if xs else 0.0


def main():
    work = workdir("batchd-load-")
    data = os.path.join(work, "data")
    os.makedirs(os.path.join(data, "in"))
    sources = []
    for i in range(3):
        p = os.path.join(data, "in", "load%d.zip" % i)
        make_zip(p, 50, 2000, seed=i)
        sources.append(p)
    d = Daemon(data).start()
    load = Load(d, sources)
    threads = [threading.Thread(target=load.client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    samples = []
    end = time.time() + SECONDS
    while time.time() < end:
        time.sleep(min(10, max(0, end - time.time())))
        samples.append((time.time() - load.started, rss_kib(d.proc.pid)))
        if len(samples) % 6 == 0:
            with load.lock:
                n = sum(load.counts.values())
            print("  %4.0f s: %d requests, %d jobs created, RSS %.1f MiB" % (samples[-1][0], n, load.created, samples[-1][1] / 1024), flush=True)
    load.stop = True
    for t in threads:
        t.join()
    requests = sum(load.counts.values())
    # Drain: every job ends.
    statuses = {}
    deadline = time.time() + 300
    while time.time() < deadline:
        statuses = {}
        for jid in load.ids:
            s = d.job(jid)["status"]
            statuses[s] = statuses.get(s, 0) + 1
        if all(s in ("COMPLETED", "FAILED", "CANCELLED") for s in statuses):
            break
        time.sleep(1)
    completed = [j for j in load.ids if d.job(j)["status"] == "COMPLETED"]
    totals = {}
    for jid in random.sample(completed, min(50, len(completed))):
        j = d.job(jid)
        tally(totals, j["out_dir"], 50)
    rc = d.stop()
    ok_db = integrity(data)

    def window(lo, hi):
        xs = [r for (t, r) in samples if lo <= t < hi]
        return sum(xs) / len(xs) / 1024 if xs else 0.0

    first = window(60, 120) if SECONDS >= 180 else window(0, SECONDS / 2)
    last = window(SECONDS - 60, SECONDS + 1) if SECONDS >= 180 else window(SECONDS / 2, SECONDS + 1)
    print("load: %d s, %d clients, %d requests (%.0f/s), %d jobs created: %s"
          % (SECONDS, CLIENTS, requests, requests / SECONDS, len(load.ids), json.dumps(statuses)))
    for op in sorted(load.latency):
        xs = load.latency[op]
        print("  %-12s %7d  p50 %6.2f ms  p99 %7.2f ms  max %7.1f ms" % (op, len(xs), pct(xs, 0.5), pct(xs, 0.99), max(xs) * 1000))
    codes = {}
    for (op, status), n in load.counts.items():
        codes[status] = codes.get(status, 0) + n
    print("  status codes: %s; socket errors %d; 5xx or locked/busy answers %d" % (json.dumps(codes), load.socket_errors, len(load.bad)))
    print("  RSS MiB: min %.1f, max %.1f; second minute %.1f, last minute %.1f (growth %+.1f %%)"
          % (min(r for _, r in samples) / 1024, max(r for _, r in samples) / 1024, first, last, (last / first - 1) * 100 if first else 0))
    print("  parts of %d completed jobs read whole: %s; daemon exit %s; integrity_check %s" % (min(50, len(completed)), json.dumps(totals), rc, ok_db))
    for b in load.bad[:10]:
        print("  BAD:", b)
    failed = (load.bad or load.socket_errors or (first and last > first * 1.2) or ok_db != "ok" or rc != 0
              or any(s not in ("COMPLETED", "FAILED", "CANCELLED") for s in statuses)
              or totals.get("corrupt_parts", 0) or totals.get("rows_lost", 0) or totals.get("rows_duplicated", 0)
              or totals.get("temp_files", 0))
    shutil.rmtree(work)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
