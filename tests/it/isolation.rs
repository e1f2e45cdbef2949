//! Worker processes: a task that panics, aborts, allocates past
//! `engine.worker_memory_mib`, hangs past its timeout, or has its worker
//! SIGKILLed from outside fails only its own attempts, with the code that says
//! which, and is retried; the daemon answers `GET /v1/jobs` throughout and a
//! healthy job beside them completes with parts byte-identical to `batchd
//! split`. Workers are recycled after `max_tasks_per_worker` tasks. The faults
//! come from `BATCHD_TASK_FAULT` (see `src/failpoint.rs`), so they run only in
//! the failpoints build the suite uses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helper::daemon::{Api, Daemon, DaemonProcess};
use crate::helper::*;

fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    listing(dir)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect()
}

/// Every error the job's view lists (retries and the final failure), by code.
fn codes(job: &Value) -> Vec<String> {
    job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn write_config(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

/// The worker processes the daemon `pid` has now.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

#[cfg(feature = "failpoints")]
#[test]
fn misbehaving_tasks_fail_only_their_own_attempts() {
    let env = Env::new();
    let data = env.path("data");
    let inbox = data.join("in");
    std::fs::create_dir_all(&inbox).unwrap();
    let good_src = env.archive("zip", "good.zip", &numbered(240, 3000));
    env.split(&good_src, &env.path("reference"), &["-n", "40"]).ok();
    let good = inbox.join("good.zip");
    std::fs::copy(&good_src, &good).unwrap();
    let faults = ["panic", "abort", "alloc", "hang", "kill"];
    let small = env.archive("zip", "small.zip", &numbered(30, 100));
    for f in faults {
        std::fs::copy(&small, inbox.join(format!("boom-{f}.zip"))).unwrap();
    }
    let config = write_config(
        &env.path("batchd.toml"),
        "[engine]\nworkers = 3\nmax_attempts = 2\nbackoff_base_ms = 50\ntask_timeout_seconds = 3\nworker_memory_mib = 300\n",
    );
    // `kill` is a hang this test ends from outside before the timeout.
    let spec = "panic:boom-panic,abort:boom-abort,alloc:boom-alloc,hang:boom-hang,hang:boom-kill";
    let d = DaemonProcess::start_env(&data, Some(&config), &[("BATCHD_TASK_FAULT", spec)]);
    let daemon_pid = d.child.id();
    let mut ids = std::collections::BTreeMap::new();
    for f in faults {
        let src = inbox.join(format!("boom-{f}.zip"));
        // One part, so one PACK task and exactly two attempts.
        ids.insert(f, d.create(&json!({"sources": [src], "batch_size": 100})));
    }
    let good_id = d.create(&json!({"sources": [good], "batch_size": 40}));

    // Kill the `kill` job's worker twice (one per attempt), from outside.
    let mut killed = Vec::new();
    let mut served = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        let r = d.get("/v1/jobs?limit=100");
        assert_eq!(r.status, 200, "the daemon answers while workers die: {}", r.text);
        served += 1;
        for item in std::fs::read_dir(&inbox).unwrap().flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("boom-kill.zip.").and_then(|r| r.strip_suffix(".hanging")) {
                let pid: u32 = pid.parse().unwrap();
                if !killed.contains(&pid) {
                    assert!(
                        children(daemon_pid).contains(&pid),
                        "the hanging task runs in a worker of the daemon"
                    );
                    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
                    killed.push(pid);
                }
            }
        }
        let all_ended = r.json["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| matches!(j["status"].as_str(), Some("COMPLETED" | "FAILED" | "CANCELLED")));
        if all_ended && r.json["jobs"].as_array().unwrap().len() == 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served > 5);
    assert_eq!(
        killed.len(),
        2,
        "both attempts of the kill job ran in a worker that was then killed"
    );

    let expect = [
        ("panic", "WORKER_CRASHED", "panicked"),
        ("abort", "WORKER_CRASHED", "signal 6 (SIGABRT)"),
        ("alloc", "WORKER_OUT_OF_MEMORY", "engine.worker_memory_mib = 300"),
        ("hang", "TASK_TIMEOUT", "longer than 3 s"),
        ("kill", "WORKER_CRASHED", "signal 9 (SIGKILL)"),
    ];
    for (fault, code, words) in expect {
        let job = d.get(&format!("/v1/jobs/{}", ids[fault])).json;
        assert_eq!(job["status"], "FAILED", "{fault}: {job}");
        assert_eq!(job["error"]["code"], code, "{fault}: {job}");
        let message = job["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{fault}: {message}");
        // Two attempts: one retry with the same code, then the failure.
        assert_eq!(codes(&job), vec![code.to_owned(), code.to_owned()], "{fault}: {job}");
        let out = Path::new(job["out_dir"].as_str().unwrap());
        let left: Vec<String> = listing(out).into_iter().filter(|n| n.ends_with(".batchd-tmp")).collect();
        assert!(left.is_empty(), "{fault}: temp files left behind: {left:?}");
    }

    let job = d.get(&format!("/v1/jobs/{good_id}")).json;
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let out = Path::new(job["out_dir"].as_str().unwrap());
    inspect(out);
    unzip_test(out);
    assert_eq!(
        files_in(out),
        files_in(&env.path("reference")),
        "parts byte-identical to batchd split"
    );

    let metrics = d.get("/metrics").text;
    let crashed = metric(&metrics, "batchd_worker_processes_crashed_total");
    assert!(crashed >= 10.0, "ten attempts ended with their worker: {crashed}\n{metrics}");
    d.kill();
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn workers_are_recycled_and_parts_match_batchd_split() {
    let env = Env::new();
    let src = env.archive("zip", "twenty.zip", &numbered(200, 2000));
    env.split(&src, &env.path("reference"), &["-n", "10"]).ok();
    let d = Daemon::with(|c| c.engine.max_tasks_per_worker = 3);
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 10}));
    let job = d.wait_job(&id, Duration::from_secs(120));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["status_detail"]["tasks"]["PACK"]["DONE"], 20);
    let out = Path::new(job["out_dir"].as_str().unwrap());
    assert_eq!(
        files_in(out),
        files_in(&env.path("reference")),
        "parts byte-identical to batchd split"
    );
    // And right by an independent reader: every row once, every file's bytes.
    let seen = inspect(out);
    assert_eq!(seen.manifest_rows().len(), 200);
    let files: Vec<&(String, Vec<u8>)> = seen.parts.values().flat_map(|p| p.entries[1..].iter()).collect();
    assert_eq!(files.len(), 200);
    for (name, data) in files {
        let i: u64 = name.trim_start_matches('f').trim_end_matches(".bin").parse().unwrap();
        assert_eq!(*data, bytes(i, 2000), "{name} as Python's zipfile reads it");
    }
    // PLAN + 20 PACK tasks, 3 to a worker: at least 7 workers.
    let started = metric(&d.get("/metrics").text, "batchd_worker_processes_started_total");
    assert!(started >= 7.0, "{started} worker processes for 21 tasks at 3 each");
}

#[test]
fn thread_mode_runs_the_same_work() {
    let env = Env::new();
    let src = env.archive("tar.gz", "t.tar.gz", &numbered(50, 500));
    env.split(&src, &env.path("reference"), &["-n", "10"]).ok();
    let d = Daemon::with(|c| c.engine.isolation = batchd::config::Isolation::Thread);
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 10}));
    let job = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let out = Path::new(job["out_dir"].as_str().unwrap());
    assert_eq!(files_in(out), files_in(&env.path("reference")));
    // And right by an independent reader: every row once, every file's bytes.
    let seen = inspect(out);
    assert_eq!(seen.manifest_rows().len(), 50);
    let files: Vec<&(String, Vec<u8>)> = seen.parts.values().flat_map(|p| p.entries[1..].iter()).collect();
    assert_eq!(files.len(), 50);
    for (name, data) in files {
        let i: u64 = name.trim_start_matches('f').trim_end_matches(".bin").parse().unwrap();
        assert_eq!(*data, bytes(i, 500), "{name} as Python's zipfile reads it");
    }
    assert_eq!(metric(&d.get("/metrics").text, "batchd_worker_processes_started_total"), 0.0);
}

use std::process::Command;
