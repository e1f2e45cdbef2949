#!/usr/bin/env python3
"""Disk full: the daemon's parts directory on a small tmpfs, ENOSPC at random
offsets, and what is left behind.

    sudo python3 torture/disk_full.py [HITS] [SEED]     (default 20 hits, seed 1; needs root for mount)

For each hit the tmpfs is resized (mount -o remount) to a random size below what
the job needs (its ~24 MB of parts), so the write fails at a random offset. The
job retries (DISK_FULL is transient) and, still out of space, ends FAILED with
DISK_FULL. Then: no part and no temp file may be left in the parts directory,
SQLite's integrity_check must say ok, and once space is freed (the tmpfs grown
back) the same source must complete, every part read by Python's zipfile.
"""
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Daemon, check_parts, integrity, make_zip, workdir  # noqa: E402

HITS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)


def mount(path, size):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", path], check=True)


def resize(path, size):
    subprocess.run(["mount", "-o", "remount,size=%d" % size, path], check=True)


def leftovers(parts):
    return [os.path.join(r, f) for r, _, fs in os.walk(parts) for f in fs]


def main():
    work = workdir("batchd-diskfull-")
    data = os.path.join(work, "data")
    parts = os.path.join(data, "parts")
    os.makedirs(parts)
    os.makedirs(os.path.join(data, "in"))
    src = os.path.join(data, "in", "src.zip")
    make_zip(src, 1200, 20_000)  # 24 MB of files in 12 parts of 100 rows
    config = os.path.join(work, "batchd.toml")
    with open(config, "w") as f:
        # min_free_bytes = 0: this run is about ENOSPC itself, not the wait
        # that keeps a daemon from reaching it.
        f.write("[engine]\nmax_attempts = 3\nbackoff_base_ms = 100\nbackoff_max_seconds = 1\nmin_free_bytes = 0\n")
    mount(parts, 64 << 20)
    d = Daemon(data, config).start()
    results = []
    try:
        for hit in range(HITS):
            size = rng.randint(64 << 10, 22 << 20)  # 64 KiB … 22 MiB: below the 24 MB needed
            resize(parts, size)
            status, body = d.call("POST", "/v1/jobs", {"sources": [src], "batch_size": 100})
            assert status == 201, body
            j = d.wait(body["id"], 120)
            # Judged once the job's last running task has stopped too.
            end = time.time() + 10
            while time.time() < end and "batchd_tasks_running 0\n" not in d.text("/metrics"):
                time.sleep(0.05)
            left = leftovers(parts)
            ok = integrity(data)
            # Free space, then the same source again.
            resize(parts, 64 << 20)
            status, body = d.call("POST", "/v1/jobs", {"sources": [src], "batch_size": 100})
            again = d.wait(body["id"], 120)
            rows, corrupt, stray = check_parts(again["out_dir"])
            results.append({
                "tmpfs_bytes": size, "status": j["status"], "code": (j.get("error") or {}).get("code"),
                "retries": sum(1 for e in j.get("errors", []) if e["kind"] == "task.retry"),
                "left_behind": len(left), "left_names": [os.path.relpath(p, parts) for p in left][:8], "integrity": ok, "next_job": again["status"],
                "next_rows": len(set(rows)), "next_corrupt": corrupt + len(stray),
            })
            print(results[-1], flush=True)
            shutil.rmtree(again["out_dir"])
    finally:
        d.stop()
        subprocess.run(["umount", parts])
    final = integrity(data)
    shutil.rmtree(work, ignore_errors=True)
    failed = sum(r["status"] == "FAILED" and r["code"] == "DISK_FULL" for r in results)
    clean = sum(r["left_behind"] == 0 and r["integrity"] == "ok" for r in results)
    recovered = sum(r["next_job"] == "COMPLETED" and r["next_rows"] == 1200 and r["next_corrupt"] == 0 for r in results)
    print("%d ENOSPC hits: %d FAILED DISK_FULL, %d left nothing behind with the database ok, "
          "%d next jobs completed whole; final integrity_check %s" % (len(results), failed, clean, recovered, final))
    sys.exit(0 if failed == clean == recovered == len(results) and final == "ok" else 1)


if __name__ == "__main__":
    main()
