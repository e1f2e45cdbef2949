//! Parts delivered to a real S3-compatible server (Garage, started here on
//! 127.0.0.1) and sources read from it; every object checked with boto3, an
//! independent client: its bytes' SHA-256 against the local part, the
//! `sha256` metadata, and no multipart upload left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helper::daemon::{Api, Daemon, DaemonProcess};
use crate::helper::servers::{Garage, Receiver, KEY_ID, SECRET};
use crate::helper::*;

/// A directory source of 100 rows: the first 15 files 1.3 MB (so parts 1-3
/// of 5 rows go up in several requests), the rest 30 KB.
fn delivery_source(dir: &Path) -> PathBuf {
    let src = dir.join("delivery");
    std::fs::create_dir_all(&src).unwrap();
    let mut manifest = String::from("file\n");
    for i in 0..100u64 {
        let name = format!("f{i:03}.bin");
        std::fs::write(src.join(&name), bytes(i, if i < 15 { 1_300_000 } else { 30_000 })).unwrap();
        manifest.push_str(&name);
        manifest.push('\n');
    }
    std::fs::write(src.join("manifest.csv"), manifest).unwrap();
    src
}

/// The job's parts, checked against what boto3 reads from the bucket:
/// one object per part, the same bytes, the SHA-256 in its metadata, and
/// no unfinished multipart upload.
fn assert_delivered(g: &Garage, job: &Value, prefix: &str) {
    let listed = g.list("parts", prefix).expect("boto3 lists the bucket");
    let objects: BTreeMap<String, Value> = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["key"].as_str().unwrap().to_owned(), o.clone()))
        .collect();
    let parts = job["parts"].as_array().expect("the job lists its parts");
    assert_eq!(objects.len(), parts.len(), "one object per part: {listed}");
    for p in parts {
        let file = Path::new(p["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap();
        let key = format!("{prefix}{file}");
        let o = objects.get(&key).unwrap_or_else(|| panic!("no object {key}: {listed}"));
        let local = std::fs::read(p["path"].as_str().unwrap()).unwrap();
        assert_eq!(o["size"].as_u64().unwrap(), local.len() as u64, "{key}");
        assert_eq!(
            o["sha256"].as_str().unwrap(),
            sha256_hex(&local),
            "{key}: bytes differ from the local part"
        );
        assert_eq!(o["meta_sha256"], p["sha256"], "{key}: metadata");
        assert_eq!(p["delivery"], "DELIVERED", "{p}");
        assert!(p["object_url"].as_str().unwrap().ends_with(&format!("/parts/{key}")), "{p}");
    }
    assert_eq!(listed["multipart_uploads"], json!([]), "multipart uploads left behind");
}

fn sha256_hex(data: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

/// A Garage server, with its key in this process's environment, where the
/// in-process daemon reads its credentials.
fn garage() -> Garage {
    std::env::set_var("AWS_ACCESS_KEY_ID", KEY_ID);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
    Garage::start()
}

fn with_garage(c: &mut batchd::config::Config, g: &Garage, key: &str) {
    let parsed = batchd::config::Config::parse(&g.toml(&format!(
        "key = \"{key}\"\nmultipart_threshold_mib = 5\npart_size_mib = 5\nbackoff_seconds = 0.2\nmax_attempts = 9"
    )))
    .unwrap();
    c.s3 = parsed.s3;
    c.delivery = parsed.delivery;
}

fn job_with_parts(d: &impl Api, id: &str) -> Value {
    let mut job = d.get(&format!("/v1/jobs/{id}")).json;
    job["parts"] = d.get(&format!("/v1/jobs/{id}/parts")).json["parts"].clone();
    job
}

#[test]
fn a_jobs_twenty_parts_are_delivered_with_their_checksums() {
    let g = garage();
    let rcv = Receiver::start(crate::webhooks::WHSEC, 0);
    let url = rcv.url("/parts");
    let d = Daemon::with(|c| {
        with_garage(c, &g, "batch/{stem}-part{n}.zip");
        c.webhook = vec![batchd::config::Webhook {
            name: "app".into(),
            url,
            secret: Some(crate::webhooks::WHSEC.into()),
            secret_file: None,
            events: vec!["part.delivered".into()],
        }];
    });
    let src = delivery_source(&d.data_dir().join("in"));
    let id = d.create(&json!({"sources": [src], "batch_size": 5}));
    let job = d.wait_job(&id, Duration::from_secs(180));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let job = job_with_parts(&d, &id);
    assert_eq!(job["parts"].as_array().unwrap().len(), 20);
    assert_delivered(&g, &job, "batch/");
    // The parts themselves are sound, read by Python's zipfile and unzip -t.
    let parts = inspect(&d.data_dir().join("parts").join(&id));
    assert_eq!(parts.manifest_rows().len(), 100);
    unzip_test(&d.data_dir().join("parts").join(&id));
    // Each part's delivery is in the job's history once.
    let events = d.get(&format!("/v1/jobs/{id}/events?limit=500")).json;
    let delivered: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "part.delivered")
        .collect();
    assert_eq!(delivered.len(), 20, "{events}");
    // And a webhook told of each, signed, with the object's URL.
    assert!(
        wait_for(|| rcv.requests().len() >= 20, Duration::from_secs(30)),
        "{:?}",
        rcv.requests()
    );
    std::thread::sleep(Duration::from_millis(500));
    let reqs = rcv.requests();
    let mut told: Vec<i64> = reqs
        .iter()
        .inspect(|q| assert!(q["verified"] == true && q["event"]["type"] == "part.delivered", "{q}"))
        .map(|q| q["event"]["data"]["part"]["n"].as_i64().unwrap())
        .collect();
    told.sort();
    assert_eq!(told, (1..=20).collect::<Vec<i64>>(), "one webhook per part");
    assert!(reqs.iter().all(|q| q["event"]["data"]["part"]["object_url"]
        .as_str()
        .is_some_and(|u| u.contains("/parts/batch/"))));
}

#[test]
fn a_daemon_killed_mid_upload_delivers_every_part_exactly_once() {
    let g = Garage::start();
    let env = Env::new();
    let data = env.path("data");
    let config = env.path("batchd.toml");
    std::fs::write(
        &config,
        format!(
            "[engine]\nbackoff_base_ms = 50\nmin_free_bytes = 0\n\n[http]\nallowed_roots = [\"{}\"]\n\n{}",
            env.path("").display(),
            g.toml("key = \"{job}/{file}\"\nmultipart_threshold_mib = 5\npart_size_mib = 5\nbackoff_seconds = 0.2")
        ),
    )
    .unwrap();
    let creds = [("AWS_ACCESS_KEY_ID", KEY_ID), ("AWS_SECRET_ACCESS_KEY", SECRET)];
    let src = delivery_source(&env.path("in"));
    // Killed after the second request of a multipart upload, before it completes.
    let mut fp: Vec<(&str, &str)> = creds.to_vec();
    fp.push(("BATCHD_FAILPOINT", "delivery.chunk@2"));
    let mut d = DaemonProcess::start_env(&data, Some(&config), &fp);
    let id = d.create(&json!({"sources": [src], "batch_size": 5}));
    assert!(d.wait_exit(Duration::from_secs(120)), "the failpoint did not stop the daemon");
    let half = g.list("parts", &format!("{id}/")).unwrap();
    assert!(
        !half["multipart_uploads"].as_array().unwrap().is_empty(),
        "the crash came mid-upload, so an unfinished upload is on the server: {half}"
    );
    let d = DaemonProcess::start_env(&data, Some(&config), &creds);
    let job = d.wait_job(&id, Duration::from_secs(180));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let job = job_with_parts(&d, &id);
    assert_eq!(job["parts"].as_array().unwrap().len(), 20);
    assert_delivered(&g, &job, &format!("{id}/"));
}

#[test]
fn deliveries_wait_out_a_stopped_server_and_finish_when_it_is_back() {
    let mut g = garage();
    let d = Daemon::with(|c| with_garage(c, &g, "{job}/{file}"));
    let src = delivery_source(&d.data_dir().join("in"));
    g.stop();
    let id = d.create(&json!({"sources": [src], "batch_size": 5}));
    // Deliveries fail while the server is down, and are retried.
    assert!(
        wait_for(
            || {
                let ev = d.get(&format!("/v1/jobs/{id}/events?limit=500")).json;
                ev["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["kind"] == "task.retry" && e["data"]["error"]["code"] == "DELIVERY_FAILED")
            },
            Duration::from_secs(60)
        ),
        "no delivery was retried"
    );
    assert_eq!(d.get(&format!("/v1/jobs/{id}")).json["status"], "PROCESSING");
    g.resume();
    let job = d.wait_job(&id, Duration::from_secs(180));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_delivered(&g, &job_with_parts(&d, &id), &format!("{id}/"));
}

#[test]
fn an_s3_source_splits_like_the_same_file_on_disk() {
    let g = garage();
    let env = Env::new();
    let zip = env.archive("zip", "export.zip", &numbered(30, 2000));
    let tgz = env.archive("tar.gz", "other.tar.gz", &numbered(12, 500));
    g.put("sources", "in/export.zip", &zip);
    g.put("sources", "in/other.tar.gz", &tgz);
    g.put("sources", "in/notes.txt", &env.path("export.zip"));
    let d = Daemon::with(|c| {
        let parsed = batchd::config::Config::parse(&g.toml("")).unwrap();
        c.s3 = parsed.s3;
    });
    // One object by key: parts byte-identical to splitting the same file locally.
    let id = d.create(&json!({"sources": ["s3://sources/in/export.zip"], "batch_size": 7}));
    let job = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let local = env.path("local");
    env.split(&zip, &local, &["--batch-size", "7"]).ok();
    let from_s3 = d.data_dir().join("parts").join(&id);
    assert_eq!(listing(&from_s3), listing(&local));
    for name in listing(&local) {
        assert_eq!(
            std::fs::read(from_s3.join(&name)).unwrap(),
            std::fs::read(local.join(&name)).unwrap(),
            "{name} differs from the local split"
        );
    }
    assert!(
        !d.data_dir().join("spool").join(&id).exists(),
        "the fetched copy is removed when the job ends"
    );
    // A prefix, narrowed by regex_filter: only the ZIP (notes.txt is no archive).
    let r = d.post(
        "/v1/jobs",
        &json!({"sources": ["s3://sources/in/"], "regex_filter": "\\.zip$", "batch_size": 10}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["sources"], json!(["s3://sources/in/export.zip"]), "{}", r.text);
    let job = d.wait_job(r.json["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["progress"]["processed"], 30);
    // max_files takes the first keys by name.
    let r = d.post(
        "/v1/jobs",
        &json!({"sources": ["s3://sources/in/"], "max_files": 1, "submit": false}),
    );
    assert_eq!(r.json["sources"], json!(["s3://sources/in/export.zip"]), "{}", r.text);
    // The CLI names an object as it is.
    let out = std::process::Command::new(BIN)
        .args(["submit", "s3://sources/in/other.tar.gz", "--wait", "--json", "--data-dir"])
        .arg(d.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (job["status"].as_str(), job["progress"]["processed"].as_i64()),
        (Some("COMPLETED"), Some(12)),
        "{job}"
    );
    // Refusals: a bucket not allowed, a key that is not there.
    let r = d.post("/v1/jobs", &json!({"sources": ["s3://other/x.zip"]}));
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("SOURCE_NOT_FOUND")),
        "{}",
        r.text
    );
    assert!(r.text.contains("allowed_buckets"), "{}", r.text);
    let r = d.post("/v1/jobs", &json!({"sources": ["s3://sources/in/missing.zip"]}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("no such object"), "{}", r.text);
}

#[test]
fn with_keep_local_off_a_delivered_part_leaves_only_the_object() {
    let g = garage();
    let env = Env::new();
    let d = Daemon::with(|c| {
        with_garage(c, &g, "{job}/{file}");
        c.delivery.s3.as_mut().unwrap().keep_local = false;
    });
    let src = d.stage(&env.archive("zip", "k.zip", &numbered(9, 3000)));
    let id = d.create(&json!({"sources": [src], "batch_size": 4}));
    assert_eq!(d.wait_job(&id, Duration::from_secs(60))["status"], "COMPLETED");
    let parts = d.get(&format!("/v1/jobs/{id}/parts")).json["parts"].clone();
    let listed = g.list("parts", &format!("{id}/")).unwrap();
    assert_eq!(listed["objects"].as_array().unwrap().len(), 3, "{listed}");
    for p in parts.as_array().unwrap() {
        assert_eq!(p["delivery"], "DELIVERED");
        assert!(
            !Path::new(p["path"].as_str().unwrap()).exists(),
            "the local part is removed once delivered: {p}"
        );
        let key = format!(
            "{id}/{}",
            Path::new(p["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap()
        );
        let o = listed["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["key"] == key.as_str())
            .unwrap();
        assert_eq!(o["sha256"], p["sha256"], "the object holds the part's bytes");
    }
}
