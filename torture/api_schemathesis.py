#!/usr/bin/env python3
"""schemathesis (from PyPI) against docs/openapi.yaml and a live daemon.

Starts `batchd serve` on 127.0.0.1 in a temp data dir holding real inputs: an
archive, a directory of child archives for a campaign, and a schedule's
directory, with one cron schedule configured. schemathesis runs on a copy of
docs/openapi.yaml that adds request examples naming those real paths (and the
schedule's name), so the examples phase runs and the stateful phase gets real
job and campaign ids to follow its links with; random data alone almost never
names a file that exists. It runs every phase (examples, coverage, fuzzing,
stateful) with the given checks, then checks
the daemon is still up, answers /healthz, and its database passes
integrity_check. Prints the figures; exits non-zero on any failure.

    pip install schemathesis
    python3 torture/api_schemathesis.py [MAX_EXAMPLES] [--checks LIST]

The default checks are the ones the issue names: no server error
(not_a_server_error) and no schema violation (status codes, content types,
headers and bodies conforming to the spec), plus schemathesis' negative-data and
auth checks (malformed requests must be refused, requests without the token
too)."""
import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, Daemon, make_zip  # noqa: E402

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "ignored_auth",
    "unsupported_method",
])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("max_examples", nargs="?", type=int, default=100)
    ap.add_argument("--checks", default=CHECKS)
    ap.add_argument("--keep", action="store_true", help="keep the data dir and report")
    a = ap.parse_args()
    if not shutil.which("schemathesis"):
        sys.exit("schemathesis is not installed: pip install schemathesis")
    work = tempfile.mkdtemp(prefix="batchd-schemathesis-")
    data = os.path.join(work, "data")
    inbox = os.path.join(data, "in")
    children = os.path.join(inbox, "children")
    swept = os.path.join(inbox, "swept")
    for d in (children, swept):
        os.makedirs(d)
    sample = os.path.join(inbox, "sample.zip")
    make_zip(sample, 30, 100)
    for i in range(3):
        make_zip(os.path.join(children, "child-%d.zip" % i), 4, 50, seed=i)
    make_zip(os.path.join(swept, "nightly.zip"), 5, 50)
    config = os.path.join(work, "batchd.toml")
    with open(config, "w") as f:
        f.write('[[schedule]]\nname = "nightly"\ncron = "0 2 * * *"\ntimezone = "UTC"\ndir = %s\n'
                % json.dumps(swept))
    spec = os.path.join(work, "openapi.yaml")
    with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
        doc = yaml.safe_load(f)
    media = lambda path, method: doc["paths"][path][method]["requestBody"]["content"]["application/json"]
    media("/v1/jobs", "post")["examples"] = {
        "queued": {"value": {"sources": [sample], "batch_size": 10}},
        "draft": {"value": {"submit": False, "batch_size": 10}},
    }
    media("/v1/campaigns", "post")["examples"] = {
        "campaign": {"value": {"parent": children, "batch_size": 2, "pattern": "*.zip"}},
    }
    doc["components"]["parameters"]["ScheduleName"]["example"] = "nightly"
    with open(spec, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    d = Daemon(data, config).start()
    report = os.path.join(work, "report")
    cmd = ["schemathesis", "run", spec,
           "--url", "http://%s:%s" % (d.host, d.port),
           "--header", "Authorization: Bearer " + d.token,
           "--checks", a.checks, "--max-examples", str(a.max_examples),
           # One worker: CPython 3.11's ast.parse is not thread-safe, and
           # hypothesis calls it to describe strategies ("AST constructor
           # recursion depth mismatch" with two workers).
           "--seed", "1", "--workers", "1", "--no-color",
           "--report", "json", "--report-dir", report,
           "--request-timeout", "30", "--suppress-health-check", "all"]
    started = time.time()
    # In the work dir: schemathesis keeps a cache under ./.schemathesis.
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    took = time.time() - started
    print(run.stdout)
    alive = d.proc.poll() is None
    health = d.call("GET", "/healthz") if alive else None
    d.stop()
    db = sqlite3.connect(os.path.join(data, "batchd.db"))
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    jobs = dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    db.close()
    print("schemathesis exit %d in %.0f s; daemon alive afterwards: %s; /healthz %s; integrity_check %s; jobs made %s"
          % (run.returncode, took, alive, health, integrity, json.dumps(jobs)))
    if a.keep:
        print("kept", work)
    else:
        shutil.rmtree(work)
    ok = run.returncode == 0 and alive and integrity == "ok"
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
