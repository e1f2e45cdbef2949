//! The queue: fair claiming between jobs (a small job submitted behind a
//! large one finishes first), a job's own concurrency cap, part hooks that run
//! while packing goes on, and the pause switch (API, CLI, `/healthz`,
//! `/metrics`, kept across a restart).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use r2d2_sqlite::rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

use crate::helper::daemon::{Api, Daemon};
use crate::helper::*;

fn db(d: &Daemon) -> Connection {
    Connection::open_with_flags(d.data_dir().join("batchd.db"), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn job(d: &Daemon, id: &str) -> Value {
    d.get(&format!("/v1/jobs/{id}")).json
}

/// While a 40,000-row job runs, a 50-row job submitted after it finishes first.
#[test]
fn a_small_job_finishes_before_a_large_one_submitted_earlier() {
    let env = Env::new();
    let big = env.archive("zip", "big.zip", &numbered(40_000, 100));
    let small = env.archive("zip", "small.zip", &numbered(50, 100));
    let d = Daemon::with(|c| c.engine.workers = 2);
    let (big, small) = (d.stage(&big), d.stage(&small));
    let big_id = d.create(&json!({"sources": [big], "batch_size": 1000}));
    // Submit the small job once the large one is packing.
    assert!(wait_for(
        || job(&d, &big_id)["progress"]["processed"].as_i64() >= Some(1000),
        Duration::from_secs(120)
    ));
    let submitted = Instant::now();
    let small_id = d.create(&json!({"sources": [small], "batch_size": 1000}));
    let s = d.wait_job(&small_id, Duration::from_secs(120));
    let waited = submitted.elapsed();
    let b = d.wait_job(&big_id, Duration::from_secs(300));
    assert_eq!((s["status"].as_str(), b["status"].as_str()), (Some("COMPLETED"), Some("COMPLETED")));
    let big_left = 40_000 - job(&d, &big_id)["progress"]["processed"].as_i64().unwrap();
    assert_eq!(big_left, 0);
    let finished: (f64, f64) = db(&d)
        .query_row(
            "SELECT (SELECT finished FROM jobs WHERE id = ?1), (SELECT finished FROM jobs WHERE id = ?2)",
            [&small_id, &big_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(finished.0 < finished.1, "the small job finished first: {finished:?}");
    // The order is the assertion; the wait is printed for docs/benchmarks.md.
    eprintln!("fairness: the 50-row job completed {waited:.2?} after submission, while the 40,000-row job ran");
}

/// With `max_concurrency = 1`, a job never has two tasks running at once,
/// even with idle workers.
#[test]
fn a_job_caps_its_own_concurrency() {
    let env = Env::new();
    let src = env.archive("zip", "c.zip", &numbered(400, 2000));
    let d = Daemon::with(|c| c.engine.workers = 3);
    let staged = d.stage(&src);
    let r = d.post("/v1/jobs", &json!({"sources": [staged], "batch_size": 20, "max_concurrency": 0}));
    assert_eq!(r.status, 400, "{}", r.text);
    let id = d.create(&json!({"sources": [staged], "batch_size": 20, "max_concurrency": 1}));
    assert_eq!(job(&d, &id)["max_concurrency"], 1);
    let mut most = 0;
    let c = db(&d);
    let ended = wait_for(
        || {
            let running: i64 = c
                .query_row("SELECT COUNT(*) FROM tasks WHERE job_id = ?1 AND state = 'RUNNING'", [&id], |r| {
                    r.get(0)
                })
                .unwrap();
            most = most.max(running);
            job(&d, &id)["status"] == "COMPLETED"
        },
        Duration::from_secs(120),
    );
    assert!(ended);
    assert_eq!(most, 1, "never more than one task of the job at once");
    let overlapped: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM tasks a JOIN tasks b ON a.job_id = b.job_id AND a.id < b.id
             WHERE a.job_id = ?1 AND a.kind != 'HOOK' AND b.kind != 'HOOK' AND a.started < b.finished AND b.started < a.finished",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(overlapped, 0, "no two tasks of the job overlapped in time");
}

/// A slow part hook runs while packing goes on: the first hook run starts
/// before the last part is published.
#[test]
fn part_hooks_overlap_packing() {
    let env = Env::new();
    let src = env.archive("zip", "h.zip", &numbered(400, 20_000));
    let d = Daemon::with(|c| {
        c.engine.workers = 2;
        c.hooks.on_part = vec!["sh".into(), "-c".into(), "sleep 0.3".into()];
    });
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 20}));
    let j = d.wait_job(&id, Duration::from_secs(120));
    assert_eq!(j["status"], "COMPLETED", "{j}");
    let c = db(&d);
    let (first_hook_start, hooks): (f64, i64) = c
        .query_row(
            "SELECT MIN(at - json_extract(data, '$.seconds')), COUNT(*) FROM events WHERE job_id = ?1 AND kind = 'hook.ran'",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let last_part: f64 = c
        .query_row("SELECT MAX(finished) FROM parts WHERE job_id = ?1", [&id], |r| r.get(0))
        .unwrap();
    assert_eq!(hooks, 20);
    assert!(
        first_hook_start < last_part,
        "first hook started at {first_hook_start}, last part published at {last_part}"
    );
}

/// Paused, a submitted job waits and nothing is written; resumed, it
/// completes. The switch shows in /healthz and /metrics and survives a restart.
#[test]
fn pause_holds_queued_work_until_resume() {
    let env = Env::new();
    let src = env.archive("zip", "p.zip", &numbered(30, 100));
    let d = Daemon::start();
    let r = d.post("/v1/queue/pause", &json!({"reason": "disk swap"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["paused"], true);
    assert_eq!(r.json["reason"], "disk swap");
    assert_eq!(d.post("/v1/queue/resume", &json!({"reason": "x"})).status, 400);
    let health = crate::helper::daemon::http(d.addr, None, "GET", "/healthz", None, &[]);
    assert_eq!(health.json["queue"]["paused"], true, "{}", health.text);
    assert!(d.get("/metrics").text.contains("\nbatchd_queue_paused 1\n"));

    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 10}));
    let moved = wait_for(|| job(&d, &id)["status"] != "QUEUED", Duration::from_millis(1500));
    assert!(!moved, "a paused queue claims nothing: {}", job(&d, &id));
    let out = job(&d, &id)["out_dir"].as_str().unwrap().to_owned();
    assert!(!Path::new(&out).exists() || listing(Path::new(&out)).is_empty());

    // Still paused after a restart.
    let d = d.restart(|| {});
    assert_eq!(d.get("/v1/queue").json["paused"], true);
    assert!(!wait_for(|| job(&d, &id)["status"] != "QUEUED", Duration::from_millis(500)));

    let cli = Command::new(BIN)
        .arg("resume")
        .arg("--data-dir")
        .arg(d.data_dir())
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert!(String::from_utf8_lossy(&cli.stdout).starts_with("queue running"));
    let j = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(j["status"], "COMPLETED", "{j}");
    assert!(d.get("/metrics").text.contains("\nbatchd_queue_paused 0\n"));
    let kinds: Vec<String> = d.get("/v1/events").json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .filter(|k| k.starts_with("queue."))
        .collect();
    assert_eq!(kinds, ["queue.paused", "queue.resumed"]);
    let cli = Command::new(BIN)
        .args(["pause", "--reason", "upstream down", "--data-dir"])
        .arg(d.data_dir())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&cli.stdout).contains("(upstream down)"));
}

/// Below `engine.min_free_bytes` free, PLAN and PACK wait (shown in
/// /v1/queue and /metrics, told once in the job's history) instead of failing
/// the job with DISK_FULL, and go on when space returns. The shortage is made
/// real: a fallocated ballast file on the same file system.
#[test]
fn tasks_wait_for_disk_space_and_go_on_when_it_returns() {
    let env = Env::new();
    let src = env.archive("zip", "s.zip", &numbered(30, 100));
    let free = batchd::fsx::free_bytes(env.dir.path()).unwrap();
    // The threshold sits `margin` below the free space and the ballast takes
    // twice that: wide enough that other tests' writes cannot cross it.
    let margin: u64 = (2u64 << 30).min(free / 4);
    assert!(margin >= 128 << 20, "this test needs 512 MiB free, found {} MiB", free >> 20);
    let d = Daemon::with(|c| c.engine.min_free_bytes = free - margin);
    assert!(
        batchd::fsx::free_bytes(&d.data_dir()).unwrap() >= free - margin / 2,
        "one file system"
    );
    let ballast = d.data_dir().join("ballast");
    let made = Command::new("fallocate")
        .args(["-l", &(2 * margin).to_string()])
        .arg(&ballast)
        .status()
        .unwrap();
    assert!(made.success(), "fallocate");
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 10}));
    assert!(wait_for(
        || !d.get("/v1/queue").json["waiting_for_space"].is_null(),
        Duration::from_secs(30)
    ));
    let q = d.get("/v1/queue").json;
    let w = &q["waiting_for_space"];
    assert!(w["free_bytes"].as_u64().unwrap() < w["min_free_bytes"].as_u64().unwrap(), "{q}");
    assert!(d.get("/metrics").text.contains("\nbatchd_waiting_for_space 1\n"));
    let j = job(&d, &id);
    assert!(matches!(j["status"].as_str(), Some("QUEUED" | "PROCESSING")), "{j}");
    // Waiting is not failing: over a few rounds of looking again, no attempt
    // is used and the job does not end.
    let c = db(&d);
    let spent = wait_for(
        || {
            // A task looking at the space is RUNNING for a moment, its attempt
            // counted until it is put back; one put back must show none.
            let attempts: i64 = c
                .query_row(
                    "SELECT COALESCE(MAX(attempts), 0) FROM tasks WHERE job_id = ?1 AND state != 'RUNNING'",
                    [&id],
                    |r| r.get(0),
                )
                .unwrap();
            attempts > 0 || !matches!(job(&d, &id)["status"].as_str(), Some("QUEUED" | "PROCESSING"))
        },
        Duration::from_secs(6),
    );
    assert!(!spent, "waiting for space costs no attempt: {}", job(&d, &id));
    let told: i64 = db(&d)
        .query_row(
            "SELECT COUNT(*) FROM events WHERE job_id = ?1 AND kind = 'task.waiting_for_space'",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(told, 1, "told once in the job's history");

    std::fs::remove_file(&ballast).unwrap();
    let j = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(j["status"], "COMPLETED", "{j}");
    assert!(d.get("/v1/queue").json["waiting_for_space"].is_null());
    inspect(Path::new(j["out_dir"].as_str().unwrap()));
}
