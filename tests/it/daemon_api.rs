//! The daemon over real HTTP on 127.0.0.1: job lifecycles from the API and the
//! CLI, drafts, cancel during PACK, a transient failure that retries, concurrent
//! idempotent submits, every error status, auth, events and metrics.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helper::daemon::{http, raw_request, Api, Daemon, DaemonProcess};
use crate::helper::*;

/// An export with `rows` rows of `size`-byte files, as a stored ZIP.
fn export(env: &Env, name: &str, rows: usize, size: usize) -> std::path::PathBuf {
    let mut m = String::from("id,file\n");
    let mut entries = Vec::new();
    for i in 0..rows {
        m.push_str(&format!("{i},img/{i}.bin\n"));
        entries.push(file(&format!("img/{i}.bin"), bytes(i as u64, size)));
    }
    entries.insert(0, file("manifest.csv", m));
    env.archive("zip", name, &entries)
}

fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    listing(dir)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect()
}

#[test]
fn job_lifecycle_via_api_matches_batchd_split() {
    let env = Env::new();
    let src = export(&env, "export.zip", 23, 3000);
    env.split(&src, &env.path("reference"), &["-n", "5"]).ok();

    let d = Daemon::start();
    let staged = d.stage(&src);
    let r = d.post("/v1/jobs", &json!({"sources": [staged], "batch_size": 5}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["kind"], "ingest");
    assert_eq!(r.json["trigger"], "api");
    assert!(matches!(r.json["status"].as_str(), Some("QUEUED" | "PROCESSING")));
    assert_eq!(
        r.header("Location").unwrap(),
        format!("/v1/jobs/{}", r.json["id"].as_str().unwrap())
    );
    let id = r.json["id"].as_str().unwrap().to_owned();

    let job = d.wait_job(&id, Duration::from_secs(30));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["health"], "healthy");
    assert_eq!(job["progress"]["processed"], 23);
    assert_eq!(job["progress"]["total"], 23);
    assert_eq!(job["progress"]["percent"], 100.0);
    assert_eq!(job["status_detail"]["tasks"]["PACK"]["DONE"], 5);
    assert_eq!(job["status_detail"]["tasks"]["PLAN"]["DONE"], 1);
    assert_eq!(job["status_detail"]["percent_complete"], 1.0);
    assert!(
        job["status_message"].as_str().unwrap().starts_with("Completed 23 rows"),
        "{}",
        job["status_message"]
    );
    assert_eq!(job["sources"], json!([std::fs::canonicalize(&staged).unwrap()]));

    let parts = d.get(&format!("/v1/jobs/{id}/parts"));
    assert_eq!(parts.status, 200);
    let list = parts.json["parts"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    for p in list {
        let path = p["path"].as_str().unwrap();
        let data = std::fs::read(path).unwrap();
        assert_eq!(p["bytes"], data.len());
        assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(p["state"], "DONE");
    }
    let out = Path::new(job["out_dir"].as_str().unwrap());
    assert!(out.starts_with(std::fs::canonicalize(d.data_dir()).unwrap().join("parts")));
    assert_eq!(
        files_in(out),
        files_in(&env.path("reference")),
        "daemon parts are byte-identical to batchd split"
    );

    let listed = d.get("/v1/jobs?status=COMPLETED");
    assert_eq!(listed.json["jobs"][0]["id"], id.as_str());
    assert_eq!(listed.json["jobs"][0]["sources"].as_array().unwrap().len(), 1);
    assert!(listed.json["next"].is_null());
}

#[test]
fn job_list_pages_with_next() {
    let env = Env::new();
    let src = export(&env, "e.zip", 2, 10);
    let d = Daemon::start();
    let staged = d.stage(&src);
    let ids: Vec<String> = (0..5).map(|_| d.create(&json!({"sources": [staged], "submit": false}))).collect();
    let page1 = d.get("/v1/jobs?limit=2");
    assert_eq!(page1.json["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(page1.json["jobs"][0]["id"], ids[4].as_str());
    let next = page1.json["next"].as_i64().unwrap();
    let page2 = d.get(&format!("/v1/jobs?limit=2&after={next}"));
    assert_eq!(page2.json["jobs"][0]["id"], ids[2].as_str());
    let page3 = d.get(&format!("/v1/jobs?limit=2&after={}", page2.json["next"].as_i64().unwrap()));
    assert_eq!(page3.json["jobs"].as_array().unwrap().len(), 1);
    assert!(page3.json["next"].is_null());
}

#[test]
fn draft_then_add_sources_then_submit() {
    let env = Env::new();
    let a = export(&env, "a.zip", 4, 100);
    let b = export(&env, "b.zip", 6, 100);
    let d = Daemon::start();
    let (a, b) = (d.stage(&a), d.stage(&b));
    let r = d.post("/v1/jobs", &json!({"submit": false, "batch_size": 3}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"], "DRAFT");
    let id = r.json["id"].as_str().unwrap().to_owned();
    let empty_submit = d.post(&format!("/v1/jobs/{id}/submit"), &json!({}));
    assert_eq!(empty_submit.status, 409, "a draft without sources cannot be submitted");
    assert_eq!(d.post(&format!("/v1/jobs/{id}/sources"), &json!({"sources": [a]})).status, 200);
    let r = d.post(&format!("/v1/jobs/{id}/sources"), &json!({"sources": [b]}));
    assert_eq!(r.json["sources"].as_array().unwrap().len(), 2);
    assert_eq!(
        d.post(&format!("/v1/jobs/{id}/sources"), &json!({"sources": [a]})).status,
        400,
        "same stem twice"
    );
    let r = d.post(&format!("/v1/jobs/{id}/submit"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let job = d.wait_job(&id, Duration::from_secs(30));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["progress"]["total"], 10);
    assert_eq!(d.get(&format!("/v1/jobs/{id}/parts")).json["parts"].as_array().unwrap().len(), 4);
    assert_eq!(d.post(&format!("/v1/jobs/{id}/submit"), &json!({})).status, 409);
    assert_eq!(d.post(&format!("/v1/jobs/{id}/sources"), &json!({"sources": [b]})).status, 409);
}

#[test]
fn cancel_during_pack_stops_and_cleans_up() {
    let env = Env::new();
    let src = export(&env, "big.zip", 400, 200_000);
    let d = Daemon::with(|c| c.engine.workers = 1);
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 10}));
    let mut job = Value::Null;
    assert!(wait_for(
        || {
            job = d.get(&format!("/v1/jobs/{id}")).json;
            job["progress"]["processed"].as_i64().unwrap_or(0) > 0
        },
        Duration::from_secs(30)
    ));
    assert_eq!(job["status"], "PROCESSING");
    assert_eq!(job["progress"]["current_stage"]["name"], "PACK");
    assert_eq!(job["progress"]["current_stage"]["index"], 2);
    let r = d.post(&format!("/v1/jobs/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "CANCELLED");
    let out = Path::new(job["out_dir"].as_str().unwrap()).to_owned();
    // The running PACK stops at its next entry and removes its temp file.
    assert!(
        wait_for(
            || !listing(&out).iter().any(|n| n.ends_with(".batchd-tmp")),
            Duration::from_secs(10)
        ),
        "{:?}",
        listing(&out)
    );
    let job = d.get(&format!("/v1/jobs/{id}")).json;
    assert!(job["progress"]["processed"].as_i64().unwrap() < 400);
    assert!(wait_for(
        || d.get(&format!("/v1/jobs/{id}")).json["status_detail"]["tasks"]["PACK"]
            .get("RUNNING")
            .is_none(),
        Duration::from_secs(10)
    ));
    assert_eq!(d.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).status, 409);
}

/// The source is missing when PLAN first runs (an I/O error, so transient): the
/// task is retried with backoff and succeeds once the file is back.
#[test]
fn transient_failure_retries_then_succeeds() {
    let env = Env::new();
    let src = export(&env, "flaky.zip", 6, 100);
    let d = Daemon::with(|c| c.engine.backoff_base_ms = 300);
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "submit": false, "batch_size": 2}));
    let away = staged.with_extension("away");
    std::fs::rename(&staged, &away).unwrap();
    assert_eq!(d.post(&format!("/v1/jobs/{id}/submit"), &json!({})).status, 200);
    let mut job = Value::Null;
    assert!(wait_for(
        || {
            job = d.get(&format!("/v1/jobs/{id}")).json;
            job["errors"].as_array().is_some_and(|e| !e.is_empty())
        },
        Duration::from_secs(10)
    ));
    assert_eq!(job["errors"][0]["kind"], "task.retry");
    assert_eq!(job["errors"][0]["code"], "IO_ERROR");
    assert_eq!(job["health"], "degraded");
    std::fs::rename(&away, &staged).unwrap();
    let job = d.wait_job(&id, Duration::from_secs(30));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["progress"]["processed"], 6);
    let events = d.get("/v1/events?after=0").json;
    let retries: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "task.retry")
        .collect();
    assert!(!retries.is_empty());
    assert!(retries[0]["data"]["attempt"].as_i64().unwrap() >= 1);
}

#[test]
fn bad_input_fails_the_job_and_the_daemon_keeps_serving() {
    let env = Env::new();
    let evil = env.archive(
        "zip",
        "evil.zip",
        &[
            file("manifest.csv", "file\na.txt\n"),
            file("a.txt", "a"),
            file("../escape.txt", "x"),
        ],
    );
    let good = export(&env, "good.zip", 3, 10);
    let d = Daemon::start();
    let (evil, good) = (d.stage(&evil), d.stage(&good));
    let id = d.create(&json!({"sources": [evil]}));
    let job = d.wait_job(&id, Duration::from_secs(20));
    assert_eq!(job["status"], "FAILED");
    assert_eq!(job["error"]["code"], "UNSAFE_PATH");
    assert_eq!(job["error"]["entry"], "../escape.txt");
    assert_eq!(job["health"], "unhealthy");
    assert!(job["status_message"].as_str().unwrap().contains("UNSAFE_PATH"));
    assert_eq!(
        job["status_detail"]["tasks"]["PLAN"]["FAILED"], 1,
        "bad input is not retried: {job}"
    );
    assert!(listing(Path::new(job["out_dir"].as_str().unwrap())).is_empty());
    assert!(!d.data_dir().join("escape.txt").exists());
    let ok = d.create(&json!({"sources": [good]}));
    assert_eq!(d.wait_job(&ok, Duration::from_secs(20))["status"], "COMPLETED");
}

#[test]
fn fifty_concurrent_submits_with_one_idempotency_key_make_one_job() {
    let env = Env::new();
    let src = export(&env, "e.zip", 3, 10);
    let d = Daemon::start();
    let staged = d.stage(&src);
    let body = json!({"sources": [staged], "batch_size": 2});
    let results: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    let r = http(
                        d.addr,
                        Some(&d.token),
                        "POST",
                        "/v1/jobs",
                        Some(&body),
                        &[("Idempotency-Key", "k-123")],
                    );
                    (r.status, r.json["id"].as_str().unwrap_or("").to_owned())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = &results[0].1;
    assert!(
        results.iter().all(|(st, id)| (*st == 201 || *st == 200) && id == first),
        "{results:?}"
    );
    assert_eq!(results.iter().filter(|r| r.0 == 201).count(), 1, "exactly one creation");
    assert_eq!(d.get("/v1/jobs").json["jobs"].as_array().unwrap().len(), 1);
    let other = http(
        d.addr,
        Some(&d.token),
        "POST",
        "/v1/jobs",
        Some(&json!({"sources": [staged], "batch_size": 3})),
        &[("Idempotency-Key", "k-123")],
    );
    assert_eq!(other.status, 422);
    assert_eq!(other.json["error"]["code"], "IDEMPOTENCY_KEY_REUSED");
}

#[test]
fn error_statuses_and_auth() {
    let env = Env::new();
    let src = export(&env, "e.zip", 1, 10);
    let d = Daemon::start();
    let staged = d.stage(&src);
    let a = d.addr;

    assert_eq!(http(a, None, "GET", "/healthz", None, &[]).status, 200);
    let r = http(a, None, "GET", "/v1/jobs", None, &[]);
    assert_eq!(r.status, 401);
    assert!(r.header("WWW-Authenticate").unwrap().starts_with("Bearer"));
    assert_eq!(http(a, Some("wrong-token"), "GET", "/v1/jobs", None, &[]).status, 401);
    let almost = format!("{}x", &d.token[..d.token.len() - 1]);
    assert_eq!(http(a, Some(&almost), "GET", "/v1/jobs", None, &[]).status, 401);
    assert_eq!(http(a, None, "GET", "/metrics", None, &[]).status, 401);

    assert_eq!(d.get("/v1/jobs/nope").status, 404);
    assert_eq!(d.get("/v1/jobs/nope/parts").status, 404);
    assert_eq!(d.post("/v1/jobs/nope/cancel", &json!({})).status, 404);
    assert_eq!(d.get("/v1/nothing").status, 404);
    let r = http(a, Some(&d.token), "DELETE", "/v1/jobs", None, &[]);
    assert_eq!((r.status, r.header("Allow").as_deref()), (405, Some("GET, POST")));
    // Found by schemathesis: every known path refuses a method it does not
    // take, /healthz and the dashboard too, with or without the token.
    for (method, path, allow) in [
        ("TRACE", "/healthz", "GET"),
        ("POST", "/ui/", "GET"),
        ("PUT", "/v1/jobs/x/cancel", "POST"),
        ("DELETE", "/v1/campaigns/x", "GET"),
    ] {
        let r = http(a, None, method, path, None, &[]);
        assert_eq!((r.status, r.header("Allow").as_deref()), (405, Some(allow)), "{method} {path}");
        assert_eq!(r.json["error"]["code"], "METHOD_NOT_ALLOWED");
    }
    // Query values outside their documented range are refused, not clamped.
    for path in [
        "/v1/jobs?limit=501",
        "/v1/jobs?limit=0",
        "/v1/campaigns?limit=501",
        "/v1/events?wait=nan",
    ] {
        let r = http(a, Some(&d.token), "GET", path, None, &[]);
        assert_eq!(
            (r.status, r.json["error"]["code"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{path}: {}",
            r.text
        );
    }
    // serde takes a struct from an array of its fields; the API does not.
    for path in ["/v1/clean", "/v1/jobs", "/v1/campaigns"] {
        let r = http(a, Some(&d.token), "POST", path, Some(&serde_json::json!([null, null])), &[]);
        assert_eq!(
            (r.status, r.json["error"]["code"].as_str()),
            (400, Some("MALFORMED_JSON")),
            "{path}: {}",
            r.text
        );
    }
    let r = http(
        a,
        Some(&d.token),
        "POST",
        "/v1/clean",
        Some(&serde_json::json!({"older_than_days": 2.1e36})),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json["error"]["message"].as_str().unwrap().contains("36500"), "{}", r.text);
    assert_eq!(d.get("/v1/jobs?status=BOGUS").status, 400);

    let big = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 2097152\r\n\r\n",
        d.token
    );
    let started = std::time::Instant::now();
    let r = raw_request(a, big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "413 before reading the body: {:?}",
        started.elapsed()
    );
    let nolen = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        d.token
    );
    assert_eq!(raw_request(a, nolen.as_bytes()).status, 411);

    let bad = format!("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{{\"sources\": [}}", d.token);
    let r = raw_request(a, bad.as_bytes());
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"]["code"], "MALFORMED_JSON");
    assert!(
        r.json["error"]["message"].as_str().unwrap().contains("line 1, column"),
        "{}",
        r.text
    );
    let r = d.post("/v1/jobs", &json!({"sources": [staged], "bogus": 1}));
    assert_eq!(r.status, 400);
    assert!(r.text.contains("bogus"));

    let outside = env.path("e.zip");
    let r = d.post("/v1/jobs", &json!({"sources": [outside]}));
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "FORBIDDEN_PATH");
    let link = d.data_dir().join("in/link.zip");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    assert_eq!(
        d.post("/v1/jobs", &json!({"sources": [link]})).status,
        403,
        "a symlink out of the root is resolved first"
    );
    let r = d.post("/v1/jobs", &json!({"sources": [d.data_dir().join("in/none.zip")]}));
    assert_eq!((r.status, r.json["error"]["code"].as_str()), (400, Some("SOURCE_NOT_FOUND")));
    assert_eq!(d.post("/v1/jobs", &json!({"sources": []})).status, 400);

    let id = d.create(&json!({"sources": [staged]}));
    d.wait_job(&id, Duration::from_secs(20));
    let r = d.post(&format!("/v1/jobs/{id}/cancel"), &json!({}));
    assert_eq!((r.status, r.json["error"]["code"].as_str()), (409, Some("CONFLICT")));
}

#[test]
fn event_feed_long_poll_and_metrics() {
    let env = Env::new();
    let src = export(&env, "e.zip", 4, 10);
    let d = Daemon::start();
    let staged = d.stage(&src);
    let start = d.get("/v1/events?after=0").json["next"].as_i64().unwrap();
    let started = std::time::Instant::now();
    let r = std::thread::scope(|s| {
        let poll = s.spawn(|| d.get(&format!("/v1/events?after={start}&wait=10")));
        std::thread::sleep(Duration::from_millis(300));
        d.post("/v1/jobs", &json!({"sources": [staged], "batch_size": 2}));
        poll.join().unwrap()
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the long poll returned on the new event"
    );
    assert_eq!(r.json["events"][0]["kind"], "job.created");
    let id = r.json["events"][0]["job_id"].as_str().unwrap().to_owned();
    d.wait_job(&id, Duration::from_secs(20));
    let all = d.get(&format!("/v1/events?after={start}")).json;
    let kinds: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in ["job.created", "job.processing", "source.planned", "part.done", "job.completed"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let m = d.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.text.contains("batchd_jobs{status=\"COMPLETED\"} 1"), "{}", m.text);
    assert!(m.text.contains("batchd_rows_processed_total 4"));
    assert!(m.text.contains("batchd_task_duration_seconds_count{kind=\"PACK\"} 2"));
    assert!(m.text.contains("batchd_build_info{version="));
}

/// The CLI against a daemon running as its own process.
#[test]
fn cli_submit_wait_status_jobs_cancel() {
    let env = Env::new();
    let src = export(&env, "e.zip", 7, 100);
    let data = env.path("data");
    std::fs::create_dir_all(data.join("in")).unwrap();
    std::fs::copy(&src, data.join("in/e.zip")).unwrap();
    let d = DaemonProcess::start(&data);
    let cli = |args: &[&str]| Command::new(BIN).args(args).arg("--data-dir").arg(&data).output().unwrap();

    let out = cli(&["submit", data.join("in/e.zip").to_str().unwrap(), "-n", "3", "--wait", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "COMPLETED");
    assert_eq!(job["trigger"], "cli");
    let id = job["id"].as_str().unwrap();

    let out = cli(&["status", id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("COMPLETED") && text.contains("part    3"),
        "{text}"
    );
    let out = cli(&["jobs"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(id));
    let out = cli(&["cancel", id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CONFLICT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = env.archive("zip", "bad.zip", &[file("manifest.csv", "file\nmissing.txt\n")]);
    std::fs::copy(&bad, data.join("in/bad.zip")).unwrap();
    let out = cli(&["submit", data.join("in/bad.zip").to_str().unwrap(), "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "bad input exits 3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("MISSING_FILE"));
    drop(d);

    let out = cli(&["jobs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("batchd serve --data-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_daemons_cannot_share_a_data_dir() {
    let env = Env::new();
    let data = env.path("data");
    let _first = DaemonProcess::start(&data);
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_names_the_bad_key() {
    let env = Env::new();
    let good = env.path("good.toml");
    std::fs::write(
        &good,
        "data_dir = \"/var/lib/batchd\"\n[http]\nlisten = \"127.0.0.1:9000\"\n[defaults]\nbatch_size = 500\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["check-config", "--config"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("batch_size = 500"));
    for (text, needle) in [
        ("[http]\nlisen = \"x\"\n", "lisen"),
        ("[defaults]\nbatch_size = 0\n", "defaults.batch_size"),
        ("[engine]\nmax_attempts = \"x\"\n", "max_attempts"),
    ] {
        let bad = env.path("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let out = Command::new(BIN).args(["check-config", "--config"]).arg(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{needle}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn stopping_the_daemon_returns_ok() {
    let d = Daemon::start();
    assert!(d.stop().is_ok());
}

/// A daemon that stops leaves nothing running: the HTTP, engine, trigger and
/// database threads all end, so `run` can be called again in the same process
/// (as these tests and an embedding program do) without threads piling up.
#[test]
fn a_stopped_daemon_leaves_no_threads_behind() {
    let out = run_alone("daemon_api::start_stop_alone");
    assert!(out.contains("start_stop_alone: 10 daemons"), "{out}");
}

#[test]
#[ignore = "run in a process of its own by a_stopped_daemon_leaves_no_threads_behind"]
fn start_stop_alone() {
    assert_alone();
    let env = Env::new();
    let src = export(&env, "export.zip", 12, 100);
    let before = threads();
    let mut during = 0;
    for _ in 0..10 {
        let d = Daemon::start();
        let staged = d.stage(&src);
        let id = d.create(&json!({"sources": [staged], "batch_size": 5}));
        assert_eq!(d.wait_job(&id, Duration::from_secs(30))["status"], "COMPLETED");
        during = during.max(threads());
        d.stop().expect("the daemon stops cleanly");
    }
    assert!(during > before, "the count saw no daemon threads at all: {during}");
    let after = threads_settle(before, "10 daemons");
    eprintln!("start_stop_alone: 10 daemons, each ran a job; threads {before} before, up to {during} while running, {after} after");
}

/// A task over `engine.task_timeout_seconds` is stopped at an entry boundary and
/// retried; when every attempt times out the job fails with TASK_TIMEOUT.
#[test]
fn task_timeout_stops_and_retries_then_fails() {
    let env = Env::new();
    // Deflating 120 MB of random bytes takes well over a second. Written by
    // Python directly: through the JSON factory it would be slow.
    let src = env.path("slow.tar");
    let script = format!(
        r#"
import io, os, tarfile
with tarfile.open({src:?}, "w") as t:
    names = [f"f{{i}}" for i in range(60)]
    for name, data in [("manifest.csv", ("file\n" + "".join(n + "\n" for n in names)).encode())] + [(n, os.urandom(2_000_000)) for n in names]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
"#,
        src = src.to_str().unwrap()
    );
    assert!(Command::new("python3").arg("-c").arg(&script).status().unwrap().success());
    let d = Daemon::with(|c| {
        c.engine.task_timeout_seconds = 1;
        c.engine.max_attempts = 2;
    });
    let staged = d.stage(&src);
    let id = d.create(&json!({"sources": [staged], "batch_size": 100, "compression": "deflate"}));
    let job = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "FAILED", "{job}");
    assert_eq!(job["error"]["code"], "TASK_TIMEOUT");
    assert_eq!(job["status_detail"]["tasks"]["PACK"]["FAILED"], 1);
    let events = d.get("/v1/events?after=0").json;
    let retries = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "task.retry" && e["data"]["error"]["code"] == "TASK_TIMEOUT")
        .count();
    assert_eq!(retries, 1, "one retry, then the second attempt fails the job");
    let out = Path::new(job["out_dir"].as_str().unwrap());
    assert!(listing(out).is_empty(), "no part and no temp file: {:?}", listing(out));
}

/// Clients that stop sending in the middle of a large body, with or without a
/// token, or over the size limit, do not stop anyone else being served (each
/// such request waits on a thread of its own, not in the bounded handler pool).
#[test]
fn stalled_bodies_do_not_starve_other_clients() {
    use std::io::Write;
    let d = Daemon::start();
    let mut stalled = Vec::new();
    for i in 0..60 {
        let mut s = std::net::TcpStream::connect(d.addr).unwrap();
        let (auth, len) = match i % 3 {
            0 => (format!("Authorization: Bearer {}\r\n", d.token), 100_000),
            1 => (String::new(), 100_000),
            _ => (String::new(), 5_000_000),
        };
        write!(s, "POST /v1/jobs HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len}\r\n\r\n{{").unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let started = std::time::Instant::now();
        assert_eq!(d.get("/v1/jobs").status, 200);
        assert!(started.elapsed() < Duration::from_secs(1), "GET waited {:?}", started.elapsed());
    }
    let started = std::time::Instant::now();
    assert_eq!(d.post("/v1/jobs", &json!({"submit": false})).status, 201);
    assert!(started.elapsed() < Duration::from_secs(1));
    // And once more after the daemon has been holding them for a while.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.get("/v1/jobs").status, 200);
    drop(stalled);
}

/// No busy polling: an idle daemon process (with its default inbox watched) uses
/// almost no CPU. A spinning loop costs a whole core, ~100x the bound here.
#[test]
fn idle_daemon_does_not_poll_busily() {
    let env = Env::new();
    let d = DaemonProcess::start(&env.path("data"));
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.child.id())).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu();
    std::thread::sleep(Duration::from_secs(3));
    let ticks = cpu() - before;
    assert!(ticks <= 10, "idle daemon used {ticks} clock ticks of CPU in 3 s");
}
