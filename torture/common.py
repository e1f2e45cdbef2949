"""Shared pieces of the torture scripts: a batchd daemon in a temp data dir,
the JSON API, and independent checks (Python's zipfile reads every entry with
its CRC; SQLite's own integrity_check). Standard library only."""
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BATCHD_BIN") or os.path.join(ROOT, "target", "release", "batchd")


def make_zip(path, rows, size, seed=0):
    """manifest.csv naming f0.bin … plus the files: `size` bytes each, stored."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.csv", "file\n" + "".join("f%d.bin\n" % i for i in range(rows)))
        for i in range(rows):
            z.writestr("f%d.bin" % i, (("%d-%d-" % (seed, i)).encode() * (size // 4 + 1))[:size])


class Daemon:
    def __init__(self, data, config=None):
        self.data = data
        self.config = config
        self.proc = None

    def start(self):
        try:
            os.remove(os.path.join(self.data, "daemon.json"))
        except FileNotFoundError:
            pass
        cmd = [BIN, "serve", "--data-dir", self.data, "--listen", "127.0.0.1:0"]
        if self.config:
            cmd += ["--config", self.config]
        env = dict(os.environ, BATCHD_LOG="warn")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        for _ in range(200):
            if os.path.exists(os.path.join(self.data, "daemon.json")):
                break
            if self.proc.poll() is not None:
                sys.exit("batchd exited at start with %s" % self.proc.returncode)
            time.sleep(0.02)
        addr = json.load(open(os.path.join(self.data, "daemon.json")))["listen"]
        self.host, self.port = addr.rsplit(":", 1)
        self.token = open(os.path.join(self.data, "token")).read().strip()
        return self

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        return self.proc.wait()

    def call(self, method, path, body=None):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=60)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        r = c.getresponse()
        data = json.loads(r.read() or b"null")
        c.close()
        return r.status, data

    def text(self, path):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=60)
        c.request("GET", path, headers={"Authorization": "Bearer " + self.token})
        body = c.getresponse().read().decode()
        c.close()
        return body

    def job(self, job_id):
        return self.call("GET", "/v1/jobs/" + job_id)[1]

    def wait(self, job_id, timeout=300):
        end = time.time() + timeout
        while time.time() < end:
            j = self.job(job_id)
            if j["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                return j
            time.sleep(0.1)
        sys.exit("job %s did not end: %s" % (job_id, j))


def check_parts(out_dir):
    """Reads every part with zipfile (full CRC check): returns (rows seen, corrupt parts, stray files)."""
    rows, corrupt, stray = [], 0, []
    for name in sorted(os.listdir(out_dir)):
        if not name.endswith(".zip"):
            stray.append(name)
            continue
        try:
            with zipfile.ZipFile(os.path.join(out_dir, name)) as z:
                if z.testzip() is not None:
                    corrupt += 1
                    continue
                manifest = [n for n in z.namelist() if n.endswith(".csv")][0]
                rows += z.read(manifest).decode().splitlines()[1:]
        except zipfile.BadZipFile:
            corrupt += 1
    return rows, corrupt, stray


def tally(totals, out_dir, want_rows):
    """Adds one job's check_parts findings to `totals` (rows_lost,
    rows_duplicated, corrupt_parts, temp_files)."""
    rows, bad, stray = check_parts(out_dir)
    totals["corrupt_parts"] = totals.get("corrupt_parts", 0) + bad
    totals["temp_files"] = totals.get("temp_files", 0) + len(stray)
    totals["rows_lost"] = totals.get("rows_lost", 0) + want_rows - len(set(rows))
    totals["rows_duplicated"] = totals.get("rows_duplicated", 0) + len(rows) - len(set(rows))


def integrity(data):
    c = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "batchd.db"), uri=True)
    r = c.execute("PRAGMA integrity_check").fetchone()[0]
    c.close()
    return r


def workdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)
