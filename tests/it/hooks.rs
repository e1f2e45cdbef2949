//! Site hooks with the real daemon and real programs: `on_part` and `on_job`
//! get the facts in BATCHD_* variables and as JSON on stdin; a failing hook is
//! retried with backoff and then fails the job HOOK_FAILED with its parts kept;
//! a hook past its timeout is killed with everything it started.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helper::daemon::{Api, Daemon};
use crate::helper::*;

/// A hook in Python that records its environment and stdin as
/// `LOG/<hook>-<part or job>-<attempt>.json`, copies the part into `LOG/uploaded/`
/// (the "upload"), then behaves as `behaviour` says.
fn recorder(log: &Path, behaviour: &str) -> Vec<String> {
    let script = r#"
import json, os, shutil, sys, time
log, behaviour = sys.argv[1], sys.argv[2]
facts = {k: v for k, v in os.environ.items() if k.startswith("BATCHD_")}
stdin = json.load(sys.stdin)
key = os.environ.get("BATCHD_PART_NUMBER", "job")
name = "%s-%s-%s.json" % (os.environ["BATCHD_HOOK"], key, os.environ["BATCHD_ATTEMPT"])
with open(os.path.join(log, name), "w") as f:
    json.dump({"env": facts, "stdin": stdin, "pid": os.getpid()}, f)
if behaviour == "slow":
    time.sleep(0.4)
if behaviour == "fail-first" and os.environ["BATCHD_ATTEMPT"] == "1":
    print("upload refused: try again", file=sys.stderr); sys.exit(75)
if behaviour == "fail":
    print("upload failed: bucket gone", file=sys.stderr); sys.exit(3)
if behaviour == "hang":
    import subprocess
    child = subprocess.Popen(["sleep", "60"])
    with open(os.path.join(log, "child-%s.pid" % os.environ["BATCHD_ATTEMPT"]), "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
if "BATCHD_PART_PATH" in os.environ:
    os.makedirs(os.path.join(log, "uploaded"), exist_ok=True)
    shutil.copy(os.environ["BATCHD_PART_PATH"], os.path.join(log, "uploaded"))
"#;
    vec![
        "python3".into(),
        "-c".into(),
        script.into(),
        log.to_str().unwrap().into(),
        behaviour.into(),
    ]
}

/// True once the hook has written its whole record (it creates the file first).
fn recorded(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| serde_json::from_str::<Value>(&s).is_ok())
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn events(d: &Daemon, kind: &str) -> Vec<Value> {
    d.get("/v1/events?after=0&limit=1000").json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn hooks_get_every_fact_and_run_once_per_part_and_job() {
    let env = Env::new();
    let log = env.path("log");
    std::fs::create_dir_all(&log).unwrap();
    let d = Daemon::with(|c| {
        c.hooks.on_part = recorder(&log, "slow");
        c.hooks.on_job = recorder(&log, "ok");
    });
    let src = d.stage(&env.archive("zip", "s.zip", &numbered(25, 1000)));
    let id = d.create(&json!({"sources": [src], "batch_size": 10}));
    // The job shows its HOOK stage while the (slow) part hooks run.
    let mut stages = Vec::new();
    let job = loop {
        let j = d.get(&format!("/v1/jobs/{id}")).json;
        if let Some(s) = j["progress"]["current_stage"]["name"].as_str() {
            if stages.last().map(String::as_str) != Some(s) {
                stages.push(s.to_owned());
            }
        }
        if matches!(j["status"].as_str(), Some("COMPLETED" | "FAILED")) {
            break j;
        }
        std::thread::sleep(Duration::from_millis(30));
    };
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert!(stages.contains(&"HOOK".to_owned()), "stages seen: {stages:?}");
    let parts = d.get(&format!("/v1/jobs/{id}/parts")).json["parts"].as_array().unwrap().clone();
    assert_eq!(parts.len(), 3);
    for p in &parts {
        let n = p["n"].as_i64().unwrap();
        let rec = read(&log.join(format!("on_part-{n}-1.json")));
        assert_eq!(rec["env"]["BATCHD_JOB_ID"], id.as_str());
        assert_eq!(rec["env"]["BATCHD_PART_PATH"], p["path"]);
        assert_eq!(rec["env"]["BATCHD_PART_SHA256"], p["sha256"]);
        assert_eq!(rec["env"]["BATCHD_PART_ROWS"], p["rows"].to_string());
        assert_eq!(rec["env"]["BATCHD_JOB_STATUS"], "PROCESSING");
        assert_eq!(rec["stdin"]["part"]["sha256"], p["sha256"]);
        assert_eq!(rec["stdin"]["job_id"], id.as_str());
    }
    // Exactly one run per part and one per job; the job hook ran last.
    let names = listing(&log);
    assert_eq!(names.iter().filter(|n| n.starts_with("on_part-")).count(), 3, "{names:?}");
    let job_rec = read(&log.join("on_job-job-1.json"));
    assert_eq!(job_rec["env"]["BATCHD_JOB_STATUS"], "COMPLETED");
    assert_eq!(job_rec["env"]["BATCHD_JOB_PARTS"], "3");
    assert_eq!(job_rec["env"]["BATCHD_JOB_ROWS"], "25");
    assert_eq!(job_rec["stdin"]["parts"].as_array().unwrap().len(), 3);
    // The "uploaded" copies are whole ZIPs (Python's zipfile checks every CRC).
    let uploaded = inspect(&log.join("uploaded"));
    assert_eq!(uploaded.parts.len(), 3);
    let ran = events(&d, "hook.ran");
    assert_eq!(ran.len(), 4);
    assert!(ran.iter().all(|e| e["data"]["exit_code"] == 0));
}

#[test]
fn a_flaky_hook_is_retried_and_a_failing_one_fails_the_job_keeping_its_parts() {
    let env = Env::new();
    let log = env.path("log");
    std::fs::create_dir_all(&log).unwrap();
    let d = Daemon::with(|c| {
        c.hooks.on_part = recorder(&log, "fail-first");
        c.hooks.on_job = recorder(&log, "ok");
        c.hooks.backoff_seconds = 0.1;
    });
    let src = d.stage(&env.archive("zip", "s.zip", &numbered(20, 1000)));
    let id = d.create(&json!({"sources": [src], "batch_size": 10}));
    let job = d.wait_job(&id, Duration::from_secs(30));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(
        job["errors"].as_array().unwrap().len(),
        2,
        "the retries show in the job's errors: {job}"
    );
    for n in [1, 2] {
        assert!(log.join(format!("on_part-{n}-1.json")).exists());
        assert!(log.join(format!("on_part-{n}-2.json")).exists());
    }
    let retries = events(&d, "task.retry");
    assert_eq!(retries.len(), 2, "{retries:?}");
    let msg = retries[0]["data"]["error"]["message"].as_str().unwrap();
    assert!(msg.contains("exited 75") && msg.contains("upload refused"), "{msg}");
    drop(d);

    // Failing every time: 3 attempts with backoff, then FAILED HOOK_FAILED.
    let log2 = env.path("log2");
    std::fs::create_dir_all(&log2).unwrap();
    let d = Daemon::with(|c| {
        c.hooks.on_part = recorder(&log2, "fail");
        c.hooks.on_job = recorder(&log2, "ok");
        c.hooks.backoff_seconds = 0.1;
        c.engine.workers = 1;
    });
    let src = d.stage(&env.archive("zip", "t.zip", &numbered(20, 1000)));
    let id = d.create(&json!({"sources": [src], "batch_size": 10}));
    let job = d.wait_job(&id, Duration::from_secs(30));
    assert_eq!(job["status"], "FAILED", "{job}");
    assert_eq!(job["error"]["code"], "HOOK_FAILED", "{job}");
    let msg = job["error"]["message"].as_str().unwrap();
    assert!(msg.contains("exited 3 (attempt 3 of 3)") && msg.contains("bucket gone"), "{msg}");
    let attempts: Vec<_> = listing(&log2).into_iter().filter(|n| n.starts_with("on_part-1-")).collect();
    assert_eq!(attempts, ["on_part-1-1.json", "on_part-1-2.json", "on_part-1-3.json"]);
    // The parts are kept, whole.
    let out = Path::new(job["out_dir"].as_str().unwrap());
    assert_eq!(inspect(out).parts.len(), 2);
    // on_job heard of the failure (it runs just after FAILED is recorded).
    assert!(wait_for(|| recorded(&log2.join("on_job-job-1.json")), Duration::from_secs(10)));
    let job_rec = read(&log2.join("on_job-job-1.json"));
    assert_eq!(job_rec["env"]["BATCHD_JOB_STATUS"], "FAILED");
    assert_eq!(job_rec["env"]["BATCHD_JOB_ERROR"], "HOOK_FAILED");
    let ran = events(&d, "hook.ran");
    assert!(ran
        .iter()
        .any(|e| e["data"]["stderr_tail"].as_str().unwrap().contains("bucket gone")));
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_its_children() {
    let env = Env::new();
    let log = env.path("log");
    std::fs::create_dir_all(&log).unwrap();
    let d = Daemon::with(|c| {
        c.hooks.on_job = recorder(&log, "hang");
        c.hooks.timeout_seconds = 1.0;
        c.hooks.max_attempts = 2;
        c.hooks.backoff_seconds = 0.1;
    });
    let src = d.stage(&env.archive("zip", "s.zip", &numbered(5, 100)));
    let id = d.create(&json!({"sources": [src], "batch_size": 10}));
    let started = std::time::Instant::now();
    let job = d.wait_job(&id, Duration::from_secs(30));
    assert_eq!(job["status"], "FAILED", "{job}");
    assert_eq!(job["error"]["code"], "HOOK_FAILED");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 1 s (attempt 2 of 2)"),
        "{job}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    // The `sleep 60` each attempt started is gone too (killed with the group).
    for attempt in [1, 2] {
        let pid = std::fs::read_to_string(log.join(format!("child-{attempt}.pid"))).unwrap();
        assert!(
            wait_for(
                || !Path::new(&format!("/proc/{pid}")).exists() || zombie(&pid),
                Duration::from_secs(5)
            ),
            "the hook's child {pid} outlived the timeout"
        );
    }
    // A program that does not exist is a clear error, not a hang.
    drop(d);
    let d = Daemon::with(|c| c.hooks.on_part = vec!["/nonexistent/upload".into()]);
    let src = d.stage(&env.archive("zip", "t.zip", &numbered(5, 100)));
    let id = d.create(&json!({"sources": [src], "batch_size": 10}));
    let job = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(job["error"]["code"], "HOOK_FAILED", "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("could not be started"), "{job}");
}

/// A killed process whose parent has not reaped it yet.
fn zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split(' ').nth(2) == Some("Z"))
}

/// The parts a job published before it was cancelled are still delivered
/// (`hooks.on_cancel = "deliver"`, the default): every DONE part reaches
/// on_part, once; with "drop", the deliveries still queued are dropped.
/// Cancelling also tells `on_job`, with status CANCELLED.
#[test]
fn on_job_hears_of_a_cancelled_job() {
    let env = Env::new();
    let log = env.path("log");
    std::fs::create_dir_all(&log).unwrap();
    let src = env.archive("zip", "c.zip", &numbered(400, 20_000));
    let d = Daemon::with(|c| {
        c.engine.workers = 1;
        c.hooks.on_part = recorder(&log, "slow");
        c.hooks.on_job = recorder(&log, "ok");
    });
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 10}));
    assert!(wait_for(
        || d.get(&format!("/v1/jobs/{id}")).json["progress"]["processed"].as_i64() >= Some(10),
        Duration::from_secs(60)
    ));
    assert_eq!(d.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).status, 200);
    assert!(wait_for(|| recorded(&log.join("on_job-job-1.json")), Duration::from_secs(10)));
    let rec = read(&log.join("on_job-job-1.json"));
    assert_eq!(rec["env"]["BATCHD_JOB_STATUS"], "CANCELLED", "{rec}");
    assert_eq!(rec["stdin"]["job_status"], "CANCELLED");
    let parts: i64 = rec["env"]["BATCHD_JOB_PARTS"].as_str().unwrap().parse().unwrap();
    assert!((1..40).contains(&parts), "the parts done before the cancel: {parts}");
    // Recorded in the history once the program has exited.
    assert!(wait_for(
        || events(&d, "hook.ran").iter().any(|e| e["data"]["hook"] == "on_job"),
        Duration::from_secs(10)
    ));
    // Every part done by the end is delivered, exactly once.
    let done_parts = || -> Vec<String> {
        let mut v: Vec<String> = d.get(&format!("/v1/jobs/{id}/parts")).json["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["state"] == "DONE")
            .map(|p| {
                Path::new(p["path"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        v.sort();
        v
    };
    let uploaded = || listing(&log.join("uploaded"));
    assert!(
        wait_for(|| !done_parts().is_empty() && uploaded() == done_parts(), Duration::from_secs(30)),
        "done {:?}, delivered {:?}",
        done_parts(),
        uploaded()
    );
    let runs = listing(&log).into_iter().filter(|n| n.starts_with("on_part-")).count();
    assert_eq!(runs, uploaded().len(), "one on_part run per part");
    assert_eq!(d.get(&format!("/v1/jobs/{id}")).json["status"], "CANCELLED");
}

#[test]
fn a_cancelled_job_with_on_cancel_drop_delivers_no_more_parts() {
    let env = Env::new();
    let log = env.path("log");
    std::fs::create_dir_all(&log).unwrap();
    let src = env.archive("zip", "c.zip", &numbered(400, 20_000));
    let d = Daemon::with(|c| {
        c.engine.workers = 2;
        c.hooks.workers = 1;
        c.hooks.on_part = recorder(&log, "slow");
        c.hooks.on_cancel = batchd::config::OnCancel::Drop;
    });
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 10}));
    // Parts are published faster than one slow hook thread delivers them.
    assert!(wait_for(
        || d.get(&format!("/v1/jobs/{id}")).json["progress"]["processed"].as_i64() >= Some(100),
        Duration::from_secs(60)
    ));
    assert_eq!(d.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).status, 200);
    let c = r2d2_sqlite::rusqlite::Connection::open(d.data_dir().join("batchd.db")).unwrap();
    let hooks = |state: &str| -> i64 {
        c.query_row(
            "SELECT COUNT(*) FROM tasks WHERE job_id = ?1 AND kind = 'HOOK' AND state = ?2",
            [&id, state],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(wait_for(|| hooks("RUNNING") == 0 && hooks("READY") == 0, Duration::from_secs(10)));
    assert!(hooks("CANCELLED") > 0, "queued deliveries were dropped");
    let done: usize = d.get(&format!("/v1/jobs/{id}/parts")).json["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "DONE")
        .count();
    assert!(listing(&log.join("uploaded")).len() < done, "fewer delivered than done");
}
