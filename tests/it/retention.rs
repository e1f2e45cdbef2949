//! Retention with the real daemon: finished jobs leave the database with their
//! events, young and running ones stay, part files stay unless asked, and what
//! keeps a file from being ingested twice (watch hashes, schedule identities)
//! survives the prune.

use std::path::Path;
use std::time::Duration;

use batchd::config::{Misfire, Schedule, Watch};
use serde_json::{json, Value};

use crate::helper::daemon::{Api, Daemon};
use crate::helper::*;

fn clean(d: &Daemon, body: Value) -> Value {
    let r = d.post("/v1/clean", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

#[test]
fn finished_jobs_are_pruned_and_files_are_still_taken_once() {
    let env = Env::new();
    let (inbox, sweep) = (env.path("inbox"), env.path("sweep"));
    std::fs::create_dir_all(&sweep).unwrap();
    let zip = env.archive("zip", "a.zip", &numbered(4, 100));
    std::fs::copy(&zip, sweep.join("a.zip")).unwrap();
    let d = Daemon::with(|c| {
        c.watch = vec![Watch {
            settle_seconds: 0.2,
            ..Watch::new("in", inbox.clone())
        }];
        c.schedule = vec![Schedule {
            name: "sweep".into(),
            cron: "0 3 * * *".into(),
            timezone: Some("UTC".into()),
            dir: sweep.clone(),
            pattern: "*.zip".into(),
            misfire: Misfire::Skip,
            grace_seconds: 86_400,
            output_dir: None,
            batch_size: None,
            file_column: None,
            priority: 0,
            max_part_bytes: None,
            regex_filter: None,
            max_files: None,
        }];
    });
    let api_job = d.create(&json!({"sources": [d.stage(&zip)], "batch_size": 2}));
    std::fs::copy(&zip, inbox.join("a.zip")).unwrap();
    let fired = d.post("/v1/schedules/sweep/run", &json!({}));
    assert_eq!(fired.json["result"], "QUEUED", "{}", fired.text);
    let all = || d.get("/v1/jobs").json["jobs"].as_array().unwrap().clone();
    assert!(wait_for(
        || {
            let j = all();
            j.len() == 3 && j.iter().all(|j| j["status"] == "COMPLETED")
        },
        Duration::from_secs(30)
    ));
    let out = d.wait_job(&api_job, Duration::from_secs(5))["out_dir"].as_str().unwrap().to_owned();
    assert!(wait_for(
        || listing(&inbox.join(".batchd/done")) == ["a.zip"],
        Duration::from_secs(10)
    ));

    // Young jobs stay; a dry run counts; then everything finished goes.
    assert_eq!(clean(&d, json!({"older_than_days": 1}))["jobs"], 0);
    assert_eq!(clean(&d, json!({"older_than_days": 0, "dry_run": true}))["jobs"], 3);
    assert_eq!(all().len(), 3, "a dry run prunes nothing");
    let metric = |name: &str| {
        let text = d.get("/metrics").text;
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_owned()
    };
    let before = (
        metric("batchd_rows_processed_total "),
        metric("batchd_task_duration_seconds_count{kind=\"PACK\"} "),
    );
    assert_eq!(before.0, "12", "3 jobs of 4 rows");
    let pruned = clean(&d, json!({"older_than_days": 0}));
    assert_eq!(pruned["jobs"], 3, "{pruned}");
    let after = (
        metric("batchd_rows_processed_total "),
        metric("batchd_task_duration_seconds_count{kind=\"PACK\"} "),
    );
    assert_eq!(before, after, "pruning does not make a counter go backwards");
    assert!(pruned["events"].as_u64().unwrap() >= 9, "{pruned}");
    assert!(all().is_empty());
    assert_eq!(d.get(&format!("/v1/jobs/{api_job}")).status, 404);
    let left: Vec<Value> = d.get("/v1/events?after=0&limit=1000").json["events"].as_array().unwrap().clone();
    assert!(left.iter().all(|e| e["job_id"].is_null()), "events of pruned jobs remain: {left:?}");
    assert!(left.iter().any(|e| e["kind"] == "retention.pruned"));
    // Parts stay on disk (delete_parts is off by default), whole.
    assert_eq!(inspect(Path::new(&out)).parts.len(), 2);

    // The same content dropped again is still a duplicate; the schedule does
    // not take its file again.
    std::fs::copy(&zip, inbox.join("again.zip")).unwrap();
    assert!(wait_for(
        || listing(&inbox.join(".batchd/duplicates")).contains(&"again.zip".to_owned()),
        Duration::from_secs(10)
    ));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(inbox.join(".batchd/duplicates/again.zip.duplicate.json")).unwrap()).unwrap();
    assert_eq!(report["duplicate_of"]["job_id"], "(pruned)");
    let fired = d.post("/v1/schedules/sweep/run", &json!({}));
    assert_eq!(fired.json["result"], "EMPTY", "{}", fired.text);
    assert!(all().is_empty());

    // delete_parts removes the part files and the emptied output dir.
    let job = d.create(&json!({"sources": [d.stage(&env.archive("zip", "b.zip", &numbered(4, 100)))], "batch_size": 2}));
    let out = d.wait_job(&job, Duration::from_secs(30))["out_dir"].as_str().unwrap().to_owned();
    let pruned = clean(&d, json!({"older_than_days": 0, "delete_parts": true}));
    assert_eq!(
        (pruned["jobs"].as_u64(), pruned["part_files"].as_u64()),
        (Some(1), Some(2)),
        "{pruned}"
    );
    assert!(!Path::new(&out).exists());

    check_counts(&d);

    // Bad input is a clear 400; the CLI works.
    let r = d.post("/v1/clean", &json!({"older_than_days": -1}));
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("BAD_REQUEST")),
        "{}",
        r.text
    );
    let r = d.post("/v1/clean", &json!({"older_than": 3}));
    assert_eq!(r.status, 400, "{}", r.text);
    let out = std::process::Command::new(BIN)
        .args(["clean", "--older-than-days", "0", "--dry-run", "--data-dir"])
        .arg(d.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("0 finished job(s)"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The trigger-kept job counts behind /metrics agree with the jobs table itself.
fn check_counts(d: &Daemon) {
    let text = d.get("/metrics").text;
    let db = r2d2_sqlite::rusqlite::Connection::open(d.data_dir().join("batchd.db")).unwrap();
    let mut st = db.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status").unwrap();
    let actual: std::collections::BTreeMap<String, i64> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for status in ["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"] {
        let line = format!("batchd_jobs{{status=\"{status}\"}} {}", actual.get(status).copied().unwrap_or(0));
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}
