//! A job's own history and health over real HTTP: `GET /v1/jobs/{id}/events`
//! (only that job's events, `after` and `wait` like the feed), a recovery
//! after the daemon died mid-job recorded in it, `batchd status JOB
//! --history`, `GET /v1/jobs/{id}/health` and `duration_ms`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helper::daemon::{Api, Daemon, DaemonProcess};
use crate::helper::*;

fn kinds(events: &Value) -> Vec<String> {
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_job_has_its_own_history_health_and_duration() {
    let env = Env::new();
    let src = env.archive("zip", "h.zip", &numbered(30, 100));
    let d = Daemon::start();
    let staged = d.stage(&src);
    let draft = d.create(&json!({"sources": [staged], "submit": false}));
    assert!(d.get(&format!("/v1/jobs/{draft}")).json["duration_ms"].is_null());
    let id = d.create(&json!({"sources": [staged], "batch_size": 10}));
    let job = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "COMPLETED");
    assert!(job["duration_ms"].as_i64().unwrap() >= 0, "{job}");

    let r = d.get(&format!("/v1/jobs/{id}/events"));
    assert_eq!(r.status, 200, "{}", r.text);
    let k = kinds(&r.json);
    for want in ["job.created", "job.processing", "source.planned", "part.done", "job.completed"] {
        assert!(k.contains(&want.to_owned()), "{want} in {k:?}");
    }
    assert_eq!(k.iter().filter(|k| *k == "part.done").count(), 3);
    assert!(r.json["events"].as_array().unwrap().iter().all(|e| e["job_id"] == id.as_str()));
    // The draft's events are not in this job's history, and paging works.
    let first = r.json["events"][0]["id"].as_i64().unwrap();
    let rest = d.get(&format!("/v1/jobs/{id}/events?after={first}")).json;
    assert_eq!(kinds(&rest).len(), k.len() - 1);
    // Long-poll: nothing new arrives, so the wait runs out with an empty page.
    let next = r.json["next"].as_i64().unwrap();
    let t = Instant::now();
    let empty = d.get(&format!("/v1/jobs/{id}/events?after={next}&wait=0.5")).json;
    assert!(kinds(&empty).is_empty() && t.elapsed() >= Duration::from_millis(400));
    assert_eq!(d.get("/v1/jobs/nope/events").status, 404);

    let h = d.get(&format!("/v1/jobs/{id}/health"));
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.json["health"], "healthy");
    assert_eq!(h.json["status"], "COMPLETED");
    assert_eq!(h.json["error_count"], 0);
    assert_eq!(h.json["duration_ms"], job["duration_ms"]);
    assert_eq!(d.get("/v1/jobs/nope/health").status, 404);
}

/// The daemon dies mid-job (a failpoint aborts it after the 3rd part is
/// recorded); after a restart the job completes and its history says it was
/// recovered, also through `batchd status JOB --history`.
#[cfg(feature = "failpoints")]
#[test]
fn a_recovery_after_a_crash_is_in_the_jobs_history() {
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(data.join("in")).unwrap();
    let src = env.archive("zip", "r.zip", &numbered(100, 2000));
    let staged = data.join("in").join("r.zip");
    std::fs::copy(&src, &staged).unwrap();
    let mut d = DaemonProcess::start_env(&data, None, &[("BATCHD_FAILPOINT", "part.recorded@3")]);
    let id = d.create(&json!({"sources": [staged], "batch_size": 10}));
    assert!(d.wait_exit(Duration::from_secs(60)), "the failpoint was not reached");
    drop(d);
    let d = DaemonProcess::start(&data);
    let job = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let k = kinds(&d.get(&format!("/v1/jobs/{id}/events")).json);
    let recovered = k.iter().position(|k| k == "job.recovered").expect("job.recovered in the history");
    let completed = k.iter().position(|k| k == "job.completed").unwrap();
    assert!(recovered < completed, "{k:?}");
    let out = Command::new(BIN)
        .args(["status", &id, "--history", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("history") && text.contains("job.recovered") && text.contains("job.completed"),
        "{text}"
    );
    d.kill();
}

/// A client's name, description, labels and own id: accepted on create,
/// returned everywhere, filterable, passed to hooks; bad ones refused.
#[test]
fn jobs_carry_a_name_labels_and_an_external_ref() {
    let env = Env::new();
    let src = env.archive("zip", "n.zip", &numbered(10, 100));
    let log = env.path("hook.env");
    let d = Daemon::with(|c| {
        c.hooks.on_part = vec![
            "sh".into(),
            "-c".into(),
            format!(
                "echo \"$BATCHD_JOB_NAME|$BATCHD_JOB_EXTERNAL_REF|$BATCHD_JOB_LABELS\" >> {}",
                log.display()
            ),
        ];
    });
    let staged = d.stage(&src);
    let about = json!({"name": "Herbarium box 12", "description": "second scan", "labels": {"project": "herb", "site": "oslo"},
                       "external_ref": "dl-7781"});
    let mut body = about.clone();
    body["sources"] = json!([staged]);
    let id = d.create(&body);
    let other = d.create(&json!({"sources": [staged], "labels": {"project": "other"}}));
    let job = d.wait_job(&id, Duration::from_secs(60));
    for k in ["name", "description", "labels", "external_ref"] {
        assert_eq!(job[k], about[k], "{k}: {job}");
    }
    let list = |q: &str| -> Vec<String> {
        d.get(&format!("/v1/jobs?{q}")).json["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(list("label=project:herb"), [id.as_str()]);
    assert_eq!(list("label=project:other"), [other.as_str()]);
    assert_eq!(list("external_ref=dl-7781"), [id.as_str()]);
    assert!(list("label=site:bergen").is_empty());
    assert_eq!(d.get("/v1/jobs?label=nocolon").status, 400);
    assert!(wait_for(
        || std::fs::read_to_string(&log).is_ok_and(|s| !s.is_empty()),
        Duration::from_secs(20)
    ));
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(
        line.lines()
            .any(|l| l == r#"Herbarium box 12|dl-7781|{"project":"herb","site":"oslo"}"#),
        "{line}"
    );
    for bad in [
        json!({"sources": [staged], "labels": {"bad key": "x"}}),
        json!({"sources": [staged], "name": "x".repeat(201)}),
        json!({"kind": "parent", "parent": d.data_dir(), "name": "x"}),
    ] {
        assert_eq!(d.post("/v1/jobs", &bad).status, 400, "{bad}");
    }
    let out = Command::new(BIN)
        .args(["status", &id, "--data-dir"])
        .arg(d.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("name     Herbarium box 12") && text.contains("ref      dl-7781") && text.contains("label    site=oslo"),
        "{text}"
    );
}
