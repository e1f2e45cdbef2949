//! Every endpoint and status the API returns, checked against docs/openapi.yaml
//! (JSON Schema 2020-12 via Python's jsonschema): nothing undocumented, no schema
//! violation, so the published description stays true.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helper::daemon::{http, raw_request, Api, Daemon, Resp};
use crate::helper::*;

struct Recorder(Vec<Value>);

impl Recorder {
    fn add(&mut self, method: &str, path: &str, r: Resp) -> Resp {
        self.0
            .push(json!({"method": method, "path": path, "status": r.status, "body": r.json}));
        r
    }
}

#[test]
fn responses_match_openapi() {
    let env = Env::new();
    let good = env.archive(
        "zip",
        "good.zip",
        &[
            file("manifest.csv", "file\na\nb\nc\n"),
            file("a", "1"),
            file("b", "2"),
            file("c", "3"),
        ],
    );
    let skip = env.archive("zip", "skip.zip", &[file("manifest.csv", "file\na\ngone\n"), file("a", "1")]);
    let evil = env.archive(
        "zip",
        "evil.zip",
        &[file("manifest.csv", "file\na\n"), file("a", "1"), file("../x", "2")],
    );
    let exports = env.path("exports");
    std::fs::create_dir_all(&exports).unwrap();
    std::fs::copy(&good, exports.join("good.zip")).unwrap();
    let d = Daemon::with(|c| {
        // A receiver that is not there: its delivery shows failed attempts.
        c.webhook = vec![batchd::config::Webhook {
            name: "nobody".into(),
            url: "http://127.0.0.1:1/hook".into(),
            secret: Some(crate::webhooks::WHSEC.into()),
            secret_file: None,
            events: vec!["job.*".into()],
        }];
        c.webhooks.backoff_seconds = 60.0;
        c.schedule = vec![batchd::config::Schedule {
            name: "nightly".into(),
            cron: "0 2 * * *".into(),
            timezone: Some("Europe/Oslo".into()),
            dir: exports.clone(),
            pattern: "*.zip".into(),
            misfire: batchd::config::Misfire::Once,
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
    let (good, skip, evil) = (d.stage(&good), d.stage(&skip), d.stage(&evil));
    let mut rec = Recorder(Vec::new());
    let t = d.token.clone();
    let a = d.addr;

    rec.add("GET", "/healthz", http(a, None, "GET", "/healthz", None, &[]));
    let created = rec.add("POST", "/v1/jobs", d.post("/v1/jobs", &json!({"sources": [good], "batch_size": 2})));
    let id = created.json["id"].as_str().unwrap().to_owned();
    rec.add("GET", "/v1/jobs/x", d.get(&format!("/v1/jobs/{id}")));
    d.wait_job(&id, Duration::from_secs(20));
    rec.add("GET", "/v1/jobs/x", d.get(&format!("/v1/jobs/{id}")));
    rec.add("GET", "/v1/jobs/x/parts", d.get(&format!("/v1/jobs/{id}/parts")));
    rec.add("GET", "/v1/jobs/x/events", d.get(&format!("/v1/jobs/{id}/events")));
    rec.add("GET", "/v1/jobs/x/health", d.get(&format!("/v1/jobs/{id}/health")));
    rec.add("GET", "/v1/queue", d.get("/v1/queue"));
    assert!(wait_for(
        || d.get(&format!("/v1/webhooks/deliveries?job={id}")).json["deliveries"][0]["attempts"] == 1,
        Duration::from_secs(20)
    ));
    rec.add(
        "GET",
        "/v1/webhooks/deliveries",
        d.get(&format!("/v1/webhooks/deliveries?job={id}")),
    );
    rec.add(
        "GET",
        "/v1/webhooks/deliveries",
        d.get("/v1/webhooks/deliveries?state=failed&limit=1"),
    );
    rec.add("GET", "/v1/webhooks/deliveries", d.get("/v1/webhooks/deliveries?state=lost"));
    rec.add("POST", "/v1/queue/pause", d.post("/v1/queue/pause", &json!({"reason": "openapi"})));
    rec.add("POST", "/v1/queue/resume", d.post("/v1/queue/resume", &json!({})));
    rec.add("POST", "/v1/queue/resume", d.post("/v1/queue/resume", &json!({"reason": "no"})));
    rec.add("GET", "/v1/jobs", d.get("/v1/jobs?limit=1"));
    rec.add("GET", "/v1/events", d.get("/v1/events?after=0"));
    rec.add("GET", "/metrics", d.get("/metrics"));
    rec.add("GET", "/v1/schedules", d.get("/v1/schedules"));
    rec.add("GET", "/v1/schedules/x", d.get("/v1/schedules/nightly"));
    let fired = rec.add("POST", "/v1/schedules/x/run", d.post("/v1/schedules/nightly/run", &json!({})));
    d.wait_job(fired.json["job_id"].as_str().unwrap(), Duration::from_secs(20));
    rec.add("GET", "/v1/schedules", d.get("/v1/schedules"));
    rec.add("GET", "/v1/schedules/x", d.get("/v1/schedules/nightly?limit=5"));
    rec.add("GET", "/v1/schedules/x", d.get("/v1/schedules/nightly?limit=x"));
    rec.add("GET", "/v1/schedules/x", d.get("/v1/schedules/nope"));
    let coll = d.data_dir().join("coll");
    std::fs::create_dir_all(&coll).unwrap();
    std::fs::copy(&good, coll.join("a.zip")).unwrap();
    std::fs::copy(&good, coll.join("b.zip")).unwrap();
    let c = rec.add(
        "POST",
        "/v1/campaigns",
        d.post(
            "/v1/campaigns",
            &json!({"parent": coll, "batch_size": 1, "campaign_id": "spec", "settings": {"batch_size": 2}}),
        ),
    );
    assert_eq!(c.status, 201, "{}", c.text);
    rec.add("GET", "/v1/campaigns/x", d.get("/v1/campaigns/spec"));
    rec.add("POST", "/v1/campaigns/x/stop", d.post("/v1/campaigns/spec/stop", &json!({})));
    assert!(wait_for(
        || d.get("/v1/campaigns/spec").json["status"] == "STOPPED",
        Duration::from_secs(20)
    ));
    rec.add("GET", "/v1/campaigns/x", d.get("/v1/campaigns/spec"));
    rec.add("POST", "/v1/campaigns/x/resume", d.post("/v1/campaigns/spec/resume", &json!({})));
    assert!(wait_for(
        || d.get("/v1/campaigns/spec").json["status"] == "COMPLETED",
        Duration::from_secs(20)
    ));
    rec.add("GET", "/v1/campaigns", d.get("/v1/campaigns"));
    rec.add("POST", "/v1/campaigns/x/resume", d.post("/v1/campaigns/spec/resume", &json!({})));
    rec.add(
        "POST",
        "/v1/campaigns",
        d.post("/v1/campaigns", &json!({"parent": coll, "batch_size": 0})),
    );
    rec.add(
        "POST",
        "/v1/campaigns",
        d.post("/v1/campaigns", &json!({"parent": "/etc", "batch_size": 1})),
    );
    rec.add("GET", "/v1/campaigns/x", d.get("/v1/campaigns/nope"));
    let p = rec.add(
        "POST",
        "/v1/jobs",
        d.post(
            "/v1/jobs",
            &json!({"kind": "parent", "parent": coll, "batch_size": 5, "campaign_id": "outside"}),
        ),
    );
    assert_eq!(p.status, 201, "{}", p.text);
    d.wait_job(p.json["id"].as_str().unwrap(), Duration::from_secs(20));
    rec.add("GET", "/v1/jobs/x", d.get(&format!("/v1/jobs/{}", p.json["id"].as_str().unwrap())));
    rec.add("GET", "/v1/jobs", d.get("/v1/jobs?campaign_id=outside&kind=ingest"));
    rec.add("POST", "/v1/schedules/x/run", d.post("/v1/schedules/nope/run", &json!({})));

    let skipped = d.create(&json!({"sources": [skip], "on_missing_file": "skip"}));
    d.wait_job(&skipped, Duration::from_secs(20));
    let s = rec.add("GET", "/v1/jobs/x", d.get(&format!("/v1/jobs/{skipped}")));
    assert_eq!(s.json["health"], "degraded");
    let failed = d.create(&json!({"sources": [evil]}));
    d.wait_job(&failed, Duration::from_secs(20));
    rec.add("GET", "/v1/jobs/x", d.get(&format!("/v1/jobs/{failed}")));
    rec.add(
        "POST",
        "/v1/jobs/x/retry",
        d.post(&format!("/v1/jobs/{failed}/retry"), &json!({"new_job": true})),
    );
    rec.add("POST", "/v1/jobs/x/retry", d.post(&format!("/v1/jobs/{failed}/retry"), &json!({})));
    rec.add("POST", "/v1/jobs/x/retry", d.post(&format!("/v1/jobs/{id}/retry"), &json!({})));
    rec.add("POST", "/v1/jobs/x/retry", d.post("/v1/jobs/nope/retry", &json!({})));
    rec.add(
        "POST",
        "/v1/jobs/x/retry",
        d.post(&format!("/v1/jobs/{failed}/retry"), &json!({"new_job": 1})),
    );
    let content = format!("/v1/jobs/{id}/parts/1/content");
    rec.add("GET", &content, d.get(&content));
    rec.add("GET", &content, http(a, Some(&t), "GET", &content, None, &[("Range", "bytes=0-9")]));
    rec.add(
        "GET",
        &content,
        http(a, Some(&t), "GET", &content, None, &[("Range", "bytes=99999999-")]),
    );
    rec.add("GET", &content, d.get(&format!("/v1/jobs/{id}/parts/99/content")));
    rec.add("GET", &content, d.get(&format!("/v1/jobs/{id}/parts/x/content")));
    rec.add("HEAD", &content, http(a, Some(&t), "HEAD", &content, None, &[]));
    rec.add(
        "POST",
        "/v1/jobs",
        d.post("/v1/jobs", &json!({"sources": [skip, good], "dry_run": true})),
    );
    rec.add(
        "POST",
        "/v1/campaigns/x/retry-failed",
        d.post("/v1/campaigns/spec/retry-failed", &json!({})),
    );
    rec.add(
        "POST",
        "/v1/campaigns/x/retry-failed",
        d.post("/v1/campaigns/nope/retry-failed", &json!({})),
    );

    let draft = rec.add("POST", "/v1/jobs", d.post("/v1/jobs", &json!({"submit": false})));
    let draft = draft.json["id"].as_str().unwrap().to_owned();
    rec.add(
        "POST",
        "/v1/jobs/x/sources",
        d.post(&format!("/v1/jobs/{draft}/sources"), &json!({"sources": [good]})),
    );
    rec.add("POST", "/v1/jobs/x/submit", d.post(&format!("/v1/jobs/{draft}/submit"), &json!({})));
    rec.add("POST", "/v1/jobs/x/submit", d.post(&format!("/v1/jobs/{draft}/submit"), &json!({})));
    rec.add("POST", "/v1/jobs/x/cancel", d.post(&format!("/v1/jobs/{draft}/cancel"), &json!({})));
    rec.add("POST", "/v1/jobs/x/cancel", d.post(&format!("/v1/jobs/{id}/cancel"), &json!({})));
    rec.add(
        "POST",
        "/v1/jobs/x/sources",
        d.post(&format!("/v1/jobs/{id}/sources"), &json!({"sources": [good]})),
    );

    rec.add(
        "POST",
        "/v1/clean",
        d.post("/v1/clean", &json!({"older_than_days": 1, "dry_run": true})),
    );
    rec.add("POST", "/v1/clean", d.post("/v1/clean", &json!({"older_than_days": 365})));
    rec.add("POST", "/v1/clean", d.post("/v1/clean", &json!({"older_than_days": -1})));
    rec.add("GET", "/v1/jobs/x", d.get("/v1/jobs/nope"));
    rec.add("GET", "/v1/jobs/x/parts", d.get("/v1/jobs/nope/parts"));
    rec.add("GET", "/v1/jobs/x/events", d.get("/v1/jobs/nope/events"));
    rec.add("GET", "/v1/jobs/x/health", d.get("/v1/jobs/nope/health"));
    rec.add("GET", "/v1/jobs", http(a, None, "GET", "/v1/jobs", None, &[]));
    rec.add("GET", "/v1/jobs", d.get("/v1/jobs?status=NOPE"));
    rec.add("POST", "/v1/jobs", d.post("/v1/jobs", &json!({"sources": [env.path("good.zip")]})));
    rec.add("POST", "/v1/jobs", d.post("/v1/jobs", &json!({"sources": ["/nonexistent/x.zip"]})));
    rec.add("POST", "/v1/jobs", d.post("/v1/jobs", &json!({"nope": 1})));
    let k = [("Idempotency-Key", "spec")];
    rec.add(
        "POST",
        "/v1/jobs",
        http(a, Some(&t), "POST", "/v1/jobs", Some(&json!({"sources": [good]})), &k),
    );
    rec.add(
        "POST",
        "/v1/jobs",
        http(a, Some(&t), "POST", "/v1/jobs", Some(&json!({"sources": [good]})), &k),
    );
    rec.add(
        "POST",
        "/v1/jobs",
        http(
            a,
            Some(&t),
            "POST",
            "/v1/jobs",
            Some(&json!({"sources": [good], "batch_size": 9})),
            &k,
        ),
    );
    let big = format!("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 9999999\r\n\r\n");
    rec.add("POST", "/v1/jobs", raw_request(a, big.as_bytes()));
    let nolen = format!("POST /v1/jobs/{id}/cancel HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n");
    rec.add("POST", "/v1/jobs/x/cancel", raw_request(a, nolen.as_bytes()));
    let bad = format!("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 1\r\nConnection: close\r\n\r\n{{");
    rec.add("POST", "/v1/jobs", raw_request(a, bad.as_bytes()));

    let statuses: std::collections::BTreeSet<u64> = rec.0.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    for s in [200, 201, 206, 400, 401, 403, 404, 409, 411, 413, 416, 422] {
        assert!(statuses.contains(&s), "status {s} exercised");
    }
    let mut child = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helper/openapi_check.py"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for r in &rec.0 {
        writeln!(stdin, "{r}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "responses do not match docs/openapi.yaml:\n{report}");
    assert!(
        report.contains(&format!("{} responses checked, 0 violations", rec.0.len())),
        "{report}"
    );
}
