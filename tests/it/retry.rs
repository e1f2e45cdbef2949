//! Retrying over real HTTP: a FAILED job whose manifest is fixed in place runs
//! again as itself; a CANCELLED job keeps its finished parts (the same files,
//! not rewritten); a retry as a new job links back; a campaign's failed
//! children, and only they, run again. Parts are read back by Python's zipfile
//! and `unzip -t`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helper::daemon::{Api, Daemon};
use crate::helper::*;

fn kinds(d: &impl Api, id: &str) -> Vec<String> {
    let r = d.get(&format!("/v1/jobs/{id}/events"));
    r.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// Every row of `rows` once across the parts in `dir`, each file with the
/// bytes `numbered` gave it (read by Python's zipfile), and `unzip -t` clean.
fn check_parts(dir: &Path, rows: u64, size: usize) {
    let parts = inspect(dir);
    assert!(parts.others.is_empty(), "{:?}", parts.others);
    let want: Vec<String> = (0..rows).map(|i| format!("f{i}.bin")).collect();
    let mut rows = parts.manifest_rows();
    rows.sort_by_key(|r| r.trim_start_matches('f').trim_end_matches(".bin").parse::<u64>().unwrap());
    assert_eq!(rows, want);
    for p in parts.parts.values() {
        for (name, data) in &p.entries[1..] {
            let i: u64 = name.trim_start_matches('f').trim_end_matches(".bin").parse().unwrap();
            assert_eq!(data, &bytes(i, size), "{name}");
        }
    }
    unzip_test(dir);
}

#[test]
fn a_failed_job_runs_again_as_itself_once_its_manifest_is_fixed() {
    let env = Env::new();
    let mut entries = numbered(10, 50);
    entries.retain(|e| e.name != "f7.bin");
    let src = env.archive("dir", "src", &entries);
    let d = Daemon::start();
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 3}));
    let job = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "FAILED");
    assert_eq!(job["error"]["code"], "MISSING_FILE");
    assert_eq!(job["error"]["line"], 9);

    // Not yet: a retry of the same broken source fails the same way, as the same job.
    assert_eq!(d.post(&format!("/v1/jobs/{id}/retry"), &json!({})).status, 200);
    let again = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!((again["status"].as_str(), again["retries"].as_i64()), (Some("FAILED"), Some(1)));

    std::fs::write(staged.join("f7.bin"), bytes(7, 50)).unwrap();
    let r = d.post(&format!("/v1/jobs/{id}/retry"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["id"], id.as_str());
    assert_eq!(r.json["retries"], 2);
    assert!(r.json["error"].is_null());
    let job = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    check_parts(Path::new(job["out_dir"].as_str().unwrap()), 10, 50);
    let k = kinds(&d, &id);
    let at = |kind: &str| k.iter().rposition(|x| x == kind).unwrap_or_else(|| panic!("{kind} in {k:?}"));
    assert!(
        at("job.failed") < at("job.retried") && at("job.retried") < at("job.completed"),
        "{k:?}"
    );
    assert_eq!(k.iter().filter(|x| *x == "job.retried").count(), 2);

    // Only FAILED or CANCELLED jobs, only real ones, only a well-formed body.
    let done = d.post(&format!("/v1/jobs/{id}/retry"), &json!({}));
    assert_eq!(done.status, 409, "{}", done.text);
    assert!(done.text.contains("only a FAILED or CANCELLED job"), "{}", done.text);
    assert_eq!(d.post("/v1/jobs/nope/retry", &json!({})).status, 404);
    assert_eq!(d.post(&format!("/v1/jobs/{id}/retry"), &json!({"new_job": "yes"})).status, 400);
    assert_eq!(d.post(&format!("/v1/jobs/{id}/retry"), &json!({"extra": 1})).status, 400);
}

fn done_parts(d: &impl Api, id: &str) -> Vec<Value> {
    let r = d.get(&format!("/v1/jobs/{id}/parts"));
    r.json["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "DONE")
        .cloned()
        .collect()
}

#[test]
fn a_cancelled_job_keeps_its_finished_parts_when_it_runs_again() {
    let env = Env::new();
    let (rows, size) = (40, 200_000);
    let src = env.archive("zip", "big.zip", &numbered(rows, size));
    let d = Daemon::start();
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 4, "max_concurrency": 1}));
    assert!(wait_for(|| !done_parts(&d, &id).is_empty(), Duration::from_secs(60)));
    // Paused, nothing more starts: the cancel leaves finished and unfinished parts.
    assert_eq!(d.post("/v1/queue/pause", &json!({})).status, 200);
    let r = d.post(&format!("/v1/jobs/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(d.wait_job(&id, Duration::from_secs(30))["status"], "CANCELLED");
    assert_eq!(d.post("/v1/queue/resume", &json!({})).status, 200);
    let kept = done_parts(&d, &id);
    assert!(!kept.is_empty() && kept.len() < 10, "{} parts done", kept.len());
    let before: Vec<(String, u64, i64)> = kept
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p["path"].as_str().unwrap()).unwrap();
            (p["path"].as_str().unwrap().to_owned(), m.ino(), m.mtime_nsec())
        })
        .collect();

    let r = d.post(&format!("/v1/jobs/{id}/retry"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let job = d.wait_job(&id, Duration::from_secs(120));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    for (path, ino, mtime) in &before {
        let m = std::fs::metadata(path).unwrap();
        assert_eq!((m.ino(), m.mtime_nsec()), (*ino, *mtime), "{path} was rewritten");
    }
    let events = d.get(&format!("/v1/jobs/{id}/events")).json;
    let retried = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "job.retried")
        .unwrap()
        .clone();
    assert_eq!(retried["data"]["parts_kept"], before.len() as i64, "{retried}");
    assert_eq!(retried["data"]["previous_status"], "CANCELLED");
    check_parts(Path::new(job["out_dir"].as_str().unwrap()), rows, size);
}

#[test]
fn a_retry_as_a_new_job_links_back_and_a_cancelled_draft_can_run() {
    let env = Env::new();
    let src = env.archive("zip", "d.zip", &numbered(6, 30));
    let d = Daemon::start();
    let staged = d.stage(&src);
    let draft = d.create(&json!({"sources": [staged], "submit": false, "name": "first try", "labels": {"lab": "a"}}));
    assert_eq!(d.post(&format!("/v1/jobs/{draft}/cancel"), &json!({})).status, 200);

    let r = d.post(&format!("/v1/jobs/{draft}/retry"), &json!({"new_job": true}));
    assert_eq!(r.status, 201, "{}", r.text);
    let new = r.json["id"].as_str().unwrap().to_owned();
    assert_ne!(new, draft);
    assert_eq!(r.header("Location").unwrap(), format!("/v1/jobs/{new}"));
    assert_eq!(r.json["retry_of"], draft.as_str());
    assert_eq!(
        (r.json["name"].as_str(), r.json["labels"]["lab"].as_str()),
        (Some("first try"), Some("a"))
    );
    let job = d.wait_job(&new, Duration::from_secs(60));
    assert_eq!(job["status"], "COMPLETED");
    assert!(job["out_dir"].as_str().unwrap().ends_with(&new), "{}", job["out_dir"]);
    check_parts(Path::new(job["out_dir"].as_str().unwrap()), 6, 30);
    assert_eq!(d.get(&format!("/v1/jobs/{draft}")).json["status"], "CANCELLED");
    assert!(kinds(&d, &draft).contains(&"job.retried_as".to_owned()));

    // The cancelled draft itself never had tasks; as itself it gets them now.
    assert_eq!(d.post(&format!("/v1/jobs/{draft}/retry"), &json!({})).status, 200);
    assert_eq!(d.wait_job(&draft, Duration::from_secs(60))["status"], "COMPLETED");
}

#[test]
fn a_campaign_retries_only_its_failed_children() {
    let env = Env::new();
    let d = Daemon::start();
    let coll = d.data_dir().join("coll");
    std::fs::create_dir_all(&coll).unwrap();
    let good = env.archive("zip", "good.zip", &numbered(3, 40));
    let mut broken = numbered(3, 40);
    broken.retain(|e| e.name != "f1.bin");
    let bad = env.archive("zip", "bad.zip", &broken);
    for (name, from) in [("c1.zip", &good), ("c2.zip", &bad), ("c3.zip", &good)] {
        std::fs::copy(from, coll.join(name)).unwrap();
    }
    let r = d.post(
        "/v1/campaigns",
        &json!({"parent": coll, "batch_size": 10, "name": "backlog", "external_ref": "B-7", "labels": {"lab": "herb"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        (r.json["name"].as_str(), r.json["external_ref"].as_str()),
        (Some("backlog"), Some("B-7"))
    );
    let cid = r.json["campaign_id"].as_str().unwrap().to_owned();
    let finished = |want: &str| {
        let mut last = Value::Null;
        let ok = wait_for(
            || {
                last = d.get(&format!("/v1/campaigns/{cid}")).json;
                last["status"] == want && last["children"]["running"] == 0
            },
            Duration::from_secs(60),
        );
        assert!(ok, "{last}");
        last
    };
    let c = finished("COMPLETED");
    assert_eq!(
        (c["children"]["succeeded"].as_i64(), c["children"]["failed"].as_i64()),
        (Some(2), Some(1)),
        "{c}"
    );
    let children = |status: &str| -> Vec<Value> {
        d.get(&format!("/v1/jobs?campaign_id={cid}&kind=ingest&status={status}")).json["jobs"]
            .as_array()
            .unwrap()
            .clone()
    };
    let failed = children("failed");
    let ok_before = children("completed");
    assert_eq!((failed.len(), ok_before.len()), (1, 2));
    // Child jobs carry the campaign's labels and reference; campaigns filter by them.
    assert!(
        ok_before.iter().all(|j| j["external_ref"] == "B-7" && j["labels"]["lab"] == "herb"),
        "{ok_before:?}"
    );
    let listed = |q: &str| d.get(&format!("/v1/campaigns?{q}")).json["campaigns"].as_array().unwrap().len();
    assert_eq!(
        (listed("external_ref=B-7"), listed("label=lab:herb"), listed("external_ref=nope")),
        (1, 1, 0)
    );
    assert_eq!(d.get("/v1/campaigns?label=nocolon").status, 400);

    std::fs::copy(&good, coll.join("c2.zip")).unwrap();
    let r = d.post(&format!("/v1/campaigns/{cid}/retry-failed"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let c = finished("COMPLETED");
    assert_eq!(
        (c["children"]["succeeded"].as_i64(), c["children"]["failed"].as_i64()),
        (Some(3), Some(0)),
        "{c}"
    );
    let retried = d.get(&format!("/v1/jobs/{}", failed[0]["id"].as_str().unwrap())).json;
    assert_eq!(
        (retried["status"].as_str(), retried["retries"].as_i64()),
        (Some("COMPLETED"), Some(1))
    );
    for before in &ok_before {
        let now = d.get(&format!("/v1/jobs/{}", before["id"].as_str().unwrap())).json;
        assert_eq!((&now["retries"], &now["finished"]), (&json!(0), &before["finished"]), "{now}");
    }
    let none = d.post(&format!("/v1/campaigns/{cid}/retry-failed"), &json!({}));
    assert_eq!(none.status, 409, "{}", none.text);
    assert_eq!(d.post("/v1/campaigns/nope/retry-failed", &json!({})).status, 404);
}
