#!/usr/bin/env python3
"""Watched inbox: pick-up latency and idle CPU, with the filesystem-event hint
(`events = true`, the default) and without it (`events = false`: a scan every
0.5 s), in the same run.

    python3 bench/watch_hint.py [DROPS]      (default 20 drops per mode)

Each mode starts `batchd serve` (release build) on a fresh data dir with one
watch in marker mode (a file is taken once NAME.done exists, no settle wait),
measures the daemon's CPU time (utime + stime from /proc) over 20 s idle, then
drops DROPS small ZIPs one at a time (the file renamed in, then its marker
created) and times from the marker's creation until the watcher has taken the
file (the marker is removed on claim). Prints medians and the worst case.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "batchd")
DROPS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run(mode_events, work):
    data = os.path.join(work, f"data-{mode_events}")
    inbox = os.path.join(data, "inbox")
    os.makedirs(inbox)
    config = os.path.join(work, f"{mode_events}.toml")
    with open(config, "w") as f:
        f.write(f'[[watch]]\nname = "inbox"\ndir = "{inbox}"\nmarker = true\nevents = {str(mode_events).lower()}\n')
    d = subprocess.Popen([BIN, "serve", "--config", config, "--data-dir", data, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(os.path.join(data, "daemon.json")):
            time.sleep(0.05)
        time.sleep(2)
        c0 = cpu_seconds(d.pid)
        time.sleep(20)
        idle_ms = (cpu_seconds(d.pid) - c0) * 1000
        src = os.path.join(work, "drop.zip")
        latencies = []
        for i in range(DROPS):
            name = f"drop-{mode_events}-{i}.zip"
            tmp = os.path.join(inbox, "." + name + ".part")
            shutil.copy(src, tmp)
            os.rename(tmp, os.path.join(inbox, name))
            marker = os.path.join(inbox, name + ".done")
            t0 = time.monotonic()
            open(marker, "w").close()
            while os.path.exists(marker):
                time.sleep(0.002)
            latencies.append(time.monotonic() - t0)
            time.sleep(0.3 + (i % 7) * 0.1)  # drops at no fixed phase of the scan
        return idle_ms, latencies
    finally:
        d.terminate()
        d.wait()


def main():
    work = tempfile.mkdtemp(prefix="batchd-watchhint-")
    try:
        with zipfile.ZipFile(os.path.join(work, "drop.zip"), "w") as z:
            z.writestr("manifest.csv", "file\na.txt\n")
            z.writestr("a.txt", "a\n")
        for events in (True, False):
            idle_ms, lat = run(events, work)
            label = "events = true " if events else "events = false"
            print(f"{label}: idle CPU {idle_ms:.0f} ms in 20 s; pick-up median {statistics.median(lat) * 1000:.0f} ms, "
                  f"worst {max(lat) * 1000:.0f} ms ({len(lat)} drops)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
