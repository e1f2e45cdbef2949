//! Campaigns with the real daemon over real collections: a 1,000-child campaign
//! whose aggregate matches counts taken directly in SQLite, SIGKILLs mid-campaign,
//! stop and resume, the total_children cap, a second campaign skipping what the
//! first ingested, the failure threshold, the CLI, and the example outside runner.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use r2d2_sqlite::rusqlite::Connection;
use serde_json::{json, Value};

use crate::helper::daemon::{Api, Daemon, DaemonProcess};
use crate::helper::*;

/// `n` children `ds0001.zip`…, each a small archive of 3 rows, in `data/coll`.
fn collection(env: &Env, data: &Path, n: usize) -> PathBuf {
    let src = env.archive("zip", "child.zip", &numbered(3, 40));
    let dir = data.join("coll");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=n {
        std::fs::copy(&src, dir.join(format!("ds{i:04}.zip"))).unwrap();
    }
    dir
}

fn campaign(d: &impl Api, id: &str) -> Value {
    let r = d.get(&format!("/v1/campaigns/{id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

fn wait_status(d: &impl Api, id: &str, want: &str, timeout: Duration) -> Value {
    let mut last = Value::Null;
    let ok = wait_for(
        || {
            last = campaign(d, id);
            last["status"] == want
        },
        timeout,
    );
    assert!(ok, "campaign {id} not {want}: {last}");
    last
}

fn start(d: &impl Api, body: Value) -> String {
    let r = d.post("/v1/campaigns", &body);
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["campaign_id"].as_str().unwrap().to_owned()
}

/// Counts straight from the database file, not through our API.
struct Counts {
    parents: Vec<i64>,
    completed_children: i64,
    distinct_sources: i64,
    child_jobs: i64,
    max_jobs_per_source: i64,
}

fn counts(data: &Path, id: &str) -> Counts {
    let c = Connection::open_with_flags(data.join("batchd.db"), r2d2_sqlite::rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c
        .prepare(
            "SELECT start_position FROM jobs WHERE campaign_id = ?1 AND kind = 'parent' AND status != 'FAILED' ORDER BY start_position",
        )
        .unwrap();
    let parents = st.query_map([id], |r| r.get(0)).unwrap().collect::<Result<Vec<i64>, _>>().unwrap();
    let one = |sql: &str| -> i64 { c.query_row(sql, [id], |r| r.get(0)).unwrap() };
    Counts {
        parents,
        completed_children: one("SELECT COUNT(*) FROM jobs WHERE campaign_id = ?1 AND kind = 'ingest' AND status = 'COMPLETED'"),
        child_jobs: one("SELECT COUNT(*) FROM jobs WHERE campaign_id = ?1 AND kind = 'ingest'"),
        distinct_sources: one(
            "SELECT COUNT(DISTINCT s.path) FROM jobs j JOIN sources s ON s.job_id = j.id WHERE j.campaign_id = ?1 AND j.kind = 'ingest' AND j.status = 'COMPLETED'",
        ),
        max_jobs_per_source: one(
            "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM jobs j JOIN sources s ON s.job_id = j.id
             WHERE j.campaign_id = ?1 AND j.kind = 'ingest' GROUP BY s.path)",
        ),
    }
}

fn positions(n: i64, batch: i64) -> Vec<i64> {
    (0..(n + batch - 1) / batch).map(|i| 1 + i * batch).collect()
}

#[test]
fn a_thousand_children_in_batches_of_forty() {
    let env = Env::new();
    let d = Daemon::start();
    let coll = collection(&env, &d.data_dir(), 1000);
    let id = start(
        &d,
        json!({"parent": coll, "batch_size": 40, "campaign_id": "big", "settings": {"batch_size": 2}}),
    );
    let c = wait_status(&d, &id, "COMPLETED", Duration::from_secs(600));
    assert_eq!(c["parent_batches"], 25);
    assert_eq!(c["child_jobs"], 1000);
    assert_eq!(c["unique_children"], 1000);
    assert_eq!(c["children"], json!({"succeeded": 1000, "failed": 0, "running": 0, "skipped": 0}));
    assert_eq!(c["next_start_position"], Value::Null);
    assert_eq!(c["progress"]["processed"], 1000);
    assert_eq!(c["progress"]["total"], 1000);
    let k = counts(&d.data_dir(), &id);
    assert_eq!(k.parents, positions(1000, 40), "every batch once, none skipped");
    assert_eq!(
        (k.child_jobs, k.completed_children, k.distinct_sources, k.max_jobs_per_source),
        (1000, 1000, 1000, 1)
    );
    // Parent and child jobs are listed by campaign, with their kind.
    let parents = d.get(&format!("/v1/jobs?campaign_id={id}&kind=parent&limit=500")).json;
    assert_eq!(parents["jobs"].as_array().unwrap().len(), 25);
    assert!(parents["jobs"].as_array().unwrap().iter().all(|j| j["kind"] == "parent"));
    let one_child = &d.get(&format!("/v1/jobs?campaign_id={id}&kind=ingest&limit=1")).json["jobs"][0];
    assert_eq!(one_child["campaign_id"], "big");
    assert!(one_child["parent_job_id"].is_string());
}

#[test]
fn sigkill_mid_campaign_loses_and_repeats_nothing() {
    let env = Env::new();
    let data = env.path("data");
    let coll = collection(&env, &data, 400);
    let mut d = DaemonProcess::start(&data);
    let id = start(
        &d,
        json!({"parent": coll, "batch_size": 20, "campaign_id": "crashy", "settings": {"batch_size": 1}}),
    );
    let mut rng = 0x9e37_79b9_u64;
    for round in 0..6 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(100 + (rng >> 33) % 400));
        let seen = campaign(&d, &id);
        eprintln!("kill {round}: {}", seen["status_message"]);
        d.kill();
        d = DaemonProcess::start(&data);
    }
    let c = wait_status(&d, &id, "COMPLETED", Duration::from_secs(300));
    let k = counts(&data, &id);
    assert_eq!(k.parents, positions(400, 20), "every batch exactly once");
    assert_eq!(
        (k.completed_children, k.distinct_sources, k.max_jobs_per_source),
        (400, 400, 1),
        "no child twice: {c}"
    );
    assert_eq!(c["children"]["succeeded"], 400);
    // Every part of every child is a whole ZIP (3 rows, one per part).
    let conn = Connection::open(data.join("batchd.db")).unwrap();
    let parts: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM parts p JOIN jobs j ON j.id = p.job_id WHERE j.campaign_id = 'crashy' AND p.state = 'DONE'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(parts, 1200);
}

#[test]
fn stop_lets_the_batch_finish_and_resume_continues() {
    let env = Env::new();
    let d = Daemon::start();
    let coll = collection(&env, &d.data_dir(), 60);
    let id = start(&d, json!({"parent": coll, "batch_size": 10}));
    assert!(id.starts_with("c-"), "a generated id: {id}");
    let r = d.post(&format!("/v1/campaigns/{id}/stop"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let c = wait_status(&d, &id, "STOPPED", Duration::from_secs(60));
    let batches = c["parent_batches"].as_i64().unwrap();
    assert!((1..6).contains(&batches), "{c}");
    std::thread::sleep(Duration::from_millis(1500));
    let still = campaign(&d, &id);
    assert_eq!(still["parent_batches"], batches, "no batch queued while stopped");
    assert_eq!(still["child_jobs"], batches * 10);
    assert_eq!(still["children"]["running"], 0);
    assert!(still["status_message"].as_str().unwrap().contains("resume"), "{still}");
    assert_eq!(d.post(&format!("/v1/campaigns/{id}/resume"), &json!({})).status, 200);
    let c = wait_status(&d, &id, "COMPLETED", Duration::from_secs(120));
    assert_eq!(c["unique_children"], 60);
    assert_eq!(counts(&d.data_dir(), &id).parents, positions(60, 10));
    // A completed campaign cannot be resumed or stopped.
    assert_eq!(d.post(&format!("/v1/campaigns/{id}/resume"), &json!({})).status, 409);
}

#[test]
fn the_cap_and_a_second_campaign_over_the_same_parent() {
    let env = Env::new();
    let d = Daemon::start();
    let coll = collection(&env, &d.data_dir(), 50);
    let a = start(
        &d,
        json!({"parent": coll, "batch_size": 10, "total_children": 25, "campaign_id": "first"}),
    );
    let c = wait_status(&d, &a, "COMPLETED", Duration::from_secs(120));
    assert_eq!(c["child_jobs"], 25);
    assert_eq!(c["progress"]["total"], 25);
    assert_eq!(counts(&d.data_dir(), &a).parents, [1, 11, 21]);
    let b = start(&d, json!({"parent": coll, "batch_size": 10, "campaign_id": "second"}));
    let c = wait_status(&d, &b, "COMPLETED", Duration::from_secs(120));
    assert_eq!(c["children"]["skipped"], 25, "{c}");
    assert_eq!(c["child_jobs"], 25);
    assert_eq!(c["unique_children"], 25);
    // Across both campaigns each of the 50 children was ingested exactly once.
    let conn = Connection::open(d.data_dir().join("batchd.db")).unwrap();
    let (distinct, total): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(DISTINCT s.path), COUNT(*) FROM jobs j JOIN sources s ON s.job_id = j.id WHERE j.kind = 'ingest' AND j.status = 'COMPLETED'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((distinct, total), (50, 50));
}

#[test]
fn too_many_failed_children_fail_the_campaign() {
    let env = Env::new();
    let d = Daemon::start();
    let coll = collection(&env, &d.data_dir(), 12);
    for i in [2, 5, 9] {
        std::fs::write(coll.join(format!("ds{i:04}.zip")), b"").unwrap();
    }
    let id = start(&d, json!({"parent": coll, "batch_size": 4, "max_failed_children": 1}));
    let c = wait_status(&d, &id, "FAILED", Duration::from_secs(60));
    assert!(c["error"].as_str().unwrap().contains("max_failed_children = 1"), "{c}");
    assert!(c["children"]["failed"].as_i64().unwrap() >= 2);
    assert!(c["parent_batches"].as_i64().unwrap() < 3, "stopped before the last batch: {c}");
    // Without a threshold, failed children do not stop a campaign.
    let id = start(&d, json!({"parent": coll, "batch_size": 4, "campaign_id": "tolerant"}));
    let c = wait_status(&d, &id, "COMPLETED", Duration::from_secs(60));
    assert_eq!(c["children"]["failed"], 3);
}

#[test]
fn bad_campaign_requests_are_refused_with_a_reason() {
    let env = Env::new();
    let d = Daemon::start();
    let coll = collection(&env, &d.data_dir(), 3);
    let post = |body: Value| d.post("/v1/campaigns", &body);
    assert_eq!(post(json!({"parent": env.path("."), "batch_size": 2})).status, 403);
    assert_eq!(post(json!({"parent": coll.join("ds0001.zip"), "batch_size": 2})).status, 400);
    assert_eq!(post(json!({"parent": coll, "batch_size": 0})).status, 400);
    assert_eq!(post(json!({"parent": coll, "batch_size": 2, "campaign_id": "a b"})).status, 400);
    assert_eq!(post(json!({"parent": coll, "batch_size": 2, "nope": 1})).status, 400);
    assert_eq!(post(json!({"parent": coll, "batch_size": 2, "campaign_id": "x"})).status, 201);
    assert_eq!(post(json!({"parent": coll, "batch_size": 2, "campaign_id": "x"})).status, 409);
    assert_eq!(d.get("/v1/campaigns/nope").status, 404);
    assert_eq!(d.post("/v1/campaigns/nope/stop", &json!({})).status, 404);
    // A second parent batch while one runs, or the same batch twice: 409.
    let parent = json!({"kind": "parent", "parent": coll, "batch_size": 2, "campaign_id": "outside"});
    assert_eq!(d.post("/v1/jobs", &parent).status, 201);
    let again = d.post("/v1/jobs", &parent);
    assert!(again.status == 409, "{}", again.text);
    wait_status(&d, "outside", "RUNNING", Duration::from_secs(5));
    assert_eq!(
        d.post("/v1/campaigns/outside/stop", &json!({})).status,
        409,
        "an outside runner's campaign"
    );
    assert_eq!(d.post("/v1/jobs", &json!({"kind": "parent", "batch_size": 2})).status, 400);
    // A field of the other kind is refused, not ignored.
    let r = d.post(
        "/v1/jobs",
        &json!({"kind": "parent", "parent": coll, "batch_size": 2, "compression": "deflate"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json["error"]["message"].as_str().unwrap().contains("\"settings\""), "{}", r.text);
    for (k, v) in [
        ("campaign_total_children", json!(0)),
        ("pattern", json!("*.zip")),
        ("campaign_id", json!("x")),
    ] {
        let r = d.post("/v1/jobs", &json!({"submit": false, k: v}));
        assert_eq!(r.status, 400, "ingest with {k}: {}", r.text);
        assert!(r.json["error"]["message"].as_str().unwrap().contains(k), "{}", r.text);
    }
    assert_eq!(d.post("/v1/jobs", &json!({"kind": "other", "sources": ["x"]})).status, 400);
    let list = d.get("/v1/campaigns").json;
    assert_eq!(list["campaigns"].as_array().unwrap().len(), 2);
}

#[test]
fn the_cli_starts_follows_and_lists_a_campaign() {
    let env = Env::new();
    let d = Daemon::start();
    let coll = collection(&env, &d.data_dir(), 12);
    let cli = |args: &[&str]| {
        let out = Command::new(BIN).args(args).arg("--data-dir").arg(d.data_dir()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let out = cli(&[
        "campaign",
        "start",
        coll.to_str().unwrap(),
        "--batch-size",
        "5",
        "--id",
        "cli",
        "--follow",
    ]);
    assert!(out.contains("Completed: 12 children ingested"), "{out}");
    let list = cli(&["campaign", "list"]);
    assert!(list.contains("cli") && list.contains("COMPLETED"), "{list}");
    let status = cli(&["campaign", "status", "cli", "--json"]);
    let v: Value = serde_json::from_str(status.lines().last().unwrap()).unwrap();
    assert_eq!(v["parent_batches"], 3);
}

#[test]
fn the_example_outside_runner_completes_a_campaign_and_stops_cleanly() {
    let env = Env::new();
    let d = Daemon::start();
    let coll = collection(&env, &d.data_dir(), 30);
    let runner = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/campaign_runner.py");
    let run = |extra: &[&str]| {
        let mut cmd = Command::new("python3");
        cmd.arg(runner)
            .arg(&coll)
            .args(["--batch-size", "8", "--poll", "0.2", "--campaign-id", "ext", "--data-dir"])
            .arg(d.data_dir())
            .args(extra);
        cmd
    };
    // Ctrl-C during the first batch: it stops after the polling cycle and says where to go on.
    let child = run(&[]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    assert!(wait_for(|| campaign_exists(&d, "ext"), Duration::from_secs(10)));
    unsafe { libc_kill(child.id() as i32, 2) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let resume_at = text.lines().find_map(|l| l.split("--start ").nth(1)).map(|s| s.trim().to_owned());
    let (code, resume_at) = match resume_at {
        Some(s) => (out.status.code(), s),
        None => (Some(130), "1".into()), // it had already finished: nothing to continue
    };
    assert_eq!(code, Some(130), "{text}");
    let out = run(&["--start", &resume_at]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("finished after"), "{text}");
    let c = wait_status(&d, "ext", "COMPLETED", Duration::from_secs(30));
    assert_eq!(c["unique_children"], 30, "{c}");
    assert_eq!(c["managed"], false);
    let k = counts(&d.data_dir(), "ext");
    assert_eq!(k.parents, positions(30, 8));
    assert_eq!((k.distinct_sources, k.max_jobs_per_source), (30, 1));
}

fn campaign_exists(d: &impl Api, id: &str) -> bool {
    d.get(&format!("/v1/campaigns/{id}")).status == 200
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
