#!/usr/bin/env python3
"""Crash loop: SIGKILL the daemon at random moments while it works, restart it
each time, and check that nothing was lost, duplicated or corrupted.

    python3 torture/crash_loop.py [KILLS] [SEED]     (default 200 kills, seed 1)

Scenario A: 10,000-row jobs (50 parts of 200 rows, 20 kB files): a new job is
queued whenever none is open, and the daemon is killed soon after each
start (0.05–1 s), so kills land in PLAN, PACK, part publication and FINISH.
Scenario B: 100-child campaigns in batches of 10 (a new one whenever the last
completed), killed 0.05–0.6 s after each start.
After the last restart every job must complete; every part is read by Python's
zipfile (every entry's CRC), every row must appear exactly once, no temp file
may remain, and SQLite's PRAGMA integrity_check must say ok.
"""
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Daemon, integrity, make_zip, tally, workdir  # noqa: E402

KILLS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)


def scenario_jobs(kills):
    work = workdir("batchd-crash-jobs-")
    data = os.path.join(work, "data")
    os.makedirs(os.path.join(data, "in"))
    src = os.path.join(work, "src.zip")
    make_zip(src, 10_000, 20_000)
    d = Daemon(data)
    jobs, mid = [], 0
    for i in range(kills):
        d.start()
        if not jobs or d.job(jobs[-1])["status"] == "COMPLETED":
            path = os.path.join(data, "in", "j%d.zip" % i)
            shutil.copy(src, path)
            status, body = d.call("POST", "/v1/jobs", {"sources": [path], "batch_size": 200})
            assert status == 201, body
            jobs.append(body["id"])
        time.sleep(rng.uniform(0.05, 1.0))
        mid += d.job(jobs[-1])["status"] in ("QUEUED", "PROCESSING")
        d.kill()
    d.start()
    out = {"kills": kills, "kills_mid_job": mid, "jobs": len(jobs),
           "rows_lost": 0, "rows_duplicated": 0, "corrupt_parts": 0, "temp_files": 0}
    for job_id in jobs:
        j = d.wait(job_id, 600)
        assert j["status"] == "COMPLETED", j
        tally(out, j["out_dir"], 10_000)
    d.stop()
    out["integrity_check"] = integrity(data)
    shutil.rmtree(work, ignore_errors=True)
    return out


def scenario_campaign(kills):
    work = workdir("batchd-crash-campaign-")
    data = os.path.join(work, "data")
    os.makedirs(data)
    template = os.path.join(work, "box.zip")
    make_zip(template, 40, 20_000)
    d = Daemon(data)
    campaigns, mid = [], 0
    for i in range(kills):
        d.start()
        if not campaigns or d.call("GET", "/v1/campaigns/" + campaigns[-1])[1]["status"] == "COMPLETED":
            # A new 100-child collection each time: children of a finished
            # campaign would (rightly) be skipped as already ingested.
            cid = "crash-%d" % len(campaigns)
            parent = os.path.join(data, cid)
            os.makedirs(parent)
            for k in range(100):
                shutil.copy(template, os.path.join(parent, "box-%03d.zip" % k))
            status, body = d.call("POST", "/v1/campaigns", {"parent": parent, "batch_size": 10, "campaign_id": cid,
                                                            "settings": {"batch_size": 10}})
            assert status == 201, body
            campaigns.append(cid)
        time.sleep(rng.uniform(0.05, 0.6))
        mid += d.call("GET", "/v1/campaigns/" + campaigns[-1])[1]["status"] == "RUNNING"
        d.kill()
    d.start()
    out = {"kills": kills, "kills_mid_campaign": mid, "campaigns": len(campaigns), "children": 0, "children_twice": 0,
           "rows_lost": 0, "rows_duplicated": 0, "corrupt_parts": 0, "temp_files": 0}
    for cid in campaigns:
        end = time.time() + 600
        while d.call("GET", "/v1/campaigns/" + cid)[1]["status"] != "COMPLETED":
            assert time.time() < end, "campaign %s did not complete" % cid
            time.sleep(0.2)
        c = d.call("GET", "/v1/campaigns/" + cid)[1]
        assert c["unique_children"] == 100 and c["children"]["succeeded"] == 100, c
        jobs = d.call("GET", "/v1/jobs?campaign_id=%s&kind=ingest&limit=500" % cid)[1]["jobs"]
        per_source = {}
        for j in jobs:
            per_source[j["sources"][0]] = per_source.get(j["sources"][0], 0) + 1
            tally(out, j["out_dir"], 40)
        out["children"] += len(per_source)
        out["children_twice"] += sum(1 for n in per_source.values() if n > 1)
    d.stop()
    out["integrity_check"] = integrity(data)
    shutil.rmtree(work, ignore_errors=True)
    return out


if __name__ == "__main__":
    started = time.time()
    a = scenario_jobs(KILLS)
    print("jobs:     ", a, flush=True)
    b = scenario_campaign(KILLS)
    print("campaign: ", b, flush=True)
    print("took %.0f s" % (time.time() - started))
    bad = (a["rows_lost"] or a["rows_duplicated"] or a["corrupt_parts"] or a["temp_files"] or a["integrity_check"] != "ok"
           or b["children"] != 100 * b["campaigns"] or b["children_twice"] or b["rows_lost"] or b["rows_duplicated"] or b["corrupt_parts"]
           or b["temp_files"] or b["integrity_check"] != "ok")
    sys.exit(1 if bad else 0)
