//! The browser dashboard at /ui/, driven in Debian's headless Chromium by
//! playwright-core (tests/ui/dashboard.mjs): token handling, then a campaign
//! started from the runner form, watched in the monitor and stopped there. The
//! numbers the page showed are checked against the API; the screenshot lands
//! in target/ui-dashboard.png.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helper::daemon::{http, Api, Daemon};
use crate::helper::*;

const UI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui");

/// Runs `node tests/ui/SCRIPT BASE_URL TOKEN ARGS…` against the daemon and
/// returns the JSON it prints (what the page showed); fails with its output.
fn drive(script: &str, d: &Daemon, args: &[&std::ffi::OsStr], chromium: &str) -> Value {
    let out = Command::new("node")
        .arg(Path::new(UI).join(script))
        .arg(format!("http://{}", d.addr()))
        .arg(d.token())
        .args(args)
        .env("CHROMIUM", chromium)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One Chromium at a time: two starting at once on a 2-core machine under the
/// rest of the suite were seen to take over 10 s to show the first page.
static CHROMIUM: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn static_files_are_served_without_a_token_and_with_a_strict_policy() {
    let d = Daemon::start();
    let page = http(d.addr(), None, "GET", "/ui/", None, &[]);
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<script src=\"app.js\">"), "{}", page.text);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(page.header("content-type").unwrap_or_default().starts_with("text/html"));
    assert_eq!(http(d.addr(), None, "GET", "/ui/app.js", None, &[]).status, 200);
    let redirect = http(d.addr(), None, "GET", "/ui", None, &[]);
    assert_eq!((redirect.status, redirect.header("location").as_deref()), (301, Some("/ui/")));
    assert_eq!(http(d.addr(), None, "GET", "/ui/../token", None, &[]).status, 404);
    // Nothing outside: no http(s) URL in the page, script or style.
    for f in ["index.html", "app.js", "app.css"] {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ui").join(f)).unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{f} refers to an outside asset"
        );
    }
    // The data still needs the token.
    assert_eq!(http(d.addr(), None, "GET", "/v1/jobs", None, &[]).status, 401);
}

#[test]
fn dashboard_starts_watches_and_stops_a_campaign_in_chromium() {
    let _one = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        Path::new(UI).join("node_modules/playwright-core").exists(),
        "run `npm ci --prefix tests/ui` first (.ci/run does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "install Debian's chromium (apt-get install chromium; .ci/run does)"
    );
    let env = Env::new();
    // One worker, so the campaign runs long enough to be stopped midway.
    let d = Daemon::with(|c| c.engine.workers = 1);
    let parent = d.data_dir().join("export");
    std::fs::create_dir_all(&parent).unwrap();
    let child = env.archive("zip", "child.zip", &numbered(30, 20_000));
    for i in 0..60 {
        std::fs::copy(&child, parent.join(format!("box-{i:03}.zip"))).unwrap();
    }
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-dashboard.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let shown = drive("dashboard.mjs", &d, &[parent.as_os_str(), shot.as_os_str()], &chromium);
    let id = shown["id"].as_str().unwrap();
    assert!(
        shown["progress"].as_array().unwrap().len() >= 2,
        "the page showed progress as it happened: {shown}"
    );
    // What the page showed last is what the API says.
    let c = d.get(&format!("/v1/campaigns/{id}")).json;
    assert_eq!(c["status"], "STOPPED", "{c}");
    let f = &shown["final"];
    assert_eq!(f["status"], "STOPPED");
    assert_eq!(f["parent_batches"], c["parent_batches"], "{shown} vs {c}");
    assert_eq!(f["child_jobs"], c["child_jobs"]);
    assert_eq!(f["unique_children"], c["unique_children"]);
    assert_eq!(f["succeeded"], c["children"]["succeeded"]);
    assert_eq!(f["next_start_position"], c["next_start_position"].to_string());
    assert!(c["children"]["succeeded"].as_i64().unwrap() < 60, "stopped before the end: {c}");
    assert_eq!(shown["detail"], c["status_message"]);
    // The page paused the queue (with its reason) and resumed it.
    let paused = shown["queue_paused"].as_str().unwrap();
    assert!(
        paused.starts_with("PAUSED") && paused.contains("paused from the dashboard"),
        "{paused}"
    );
    assert_eq!(d.get("/v1/queue").json["paused"], false);
    // Read from the database: the feed's pages here are large enough that
    // tiny_http sends them chunked, which this test's raw client does not read.
    let c = r2d2_sqlite::rusqlite::Connection::open(d.data_dir().join("batchd.db")).unwrap();
    let mut st = c.prepare("SELECT kind FROM events WHERE kind LIKE 'queue.%' ORDER BY id").unwrap();
    let kinds: Vec<String> = st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(kinds, ["queue.paused", "queue.resumed"]);
    assert!(shot.metadata().is_ok_and(|m| m.len() > 10_000), "screenshot saved");
    // Resuming from the API finishes it: the stop lost nothing.
    assert_eq!(d.post(&format!("/v1/campaigns/{id}/resume"), &serde_json::json!({})).status, 200);
    assert!(wait_for(
        || d.get(&format!("/v1/campaigns/{id}")).json["status"] == "COMPLETED",
        Duration::from_secs(120)
    ));
    let c = d.get(&format!("/v1/campaigns/{id}")).json;
    assert_eq!(
        (c["unique_children"].as_i64(), c["children"]["succeeded"].as_i64()),
        (Some(60), Some(60)),
        "{c}"
    );
}

/// The dashboard acts where it shows (tests/ui/actions.mjs in headless
/// Chromium): charts of the last hour, paging and filters, retry and cancel
/// from a job's row, a part downloaded (compared here byte for byte with the
/// file on disk), and a watched inbox with a file still settling.
#[test]
fn dashboard_retries_cancels_downloads_filters_and_pages_in_chromium() {
    let _one = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(UI).join("node_modules/playwright-core").exists(),
        "run `npm ci --prefix tests/ui` first"
    );
    let env = Env::new();
    let d = Daemon::with(|c| {
        let mut w = batchd::config::Watch::new("inbox", c.data_dir.join("inbox"));
        w.settle_seconds = 3600.0;
        c.watch = vec![w];
    });
    let mut broken = numbered(6, 50);
    broken.retain(|e| e.name != "f3.bin");
    let broken = d.stage(&env.archive("dir", "broken", &broken));
    let failed = d.create(&serde_json::json!({"sources": [broken], "name": "broken", "labels": {"lab": "herbarium"}}));
    assert_eq!(d.wait_job(&failed, Duration::from_secs(30))["status"], "FAILED");
    std::fs::write(broken.join("f3.bin"), bytes(3, 50)).unwrap();
    let small = d.stage(&env.archive("zip", "small.zip", &numbered(4, 100)));
    let many: Vec<String> = (0..24).map(|_| d.create(&serde_json::json!({"sources": [small]}))).collect();
    let big = d.stage(&env.archive("zip", "parts.zip", &numbered(6, 30_000)));
    let r = http(
        d.addr(),
        Some(&d.token()),
        "POST",
        "/v1/jobs",
        Some(&serde_json::json!({"sources": [big], "batch_size": 3})),
        &[("X-Batchd-Trigger", "cli")],
    );
    let done = r.json["id"].as_str().unwrap().to_owned();
    for id in many.iter().chain([&done]) {
        assert_eq!(d.wait_job(id, Duration::from_secs(60))["status"], "COMPLETED");
    }
    // A campaign with one failed child, fixed in place before the page retries it.
    let coll = d.data_dir().join("coll");
    std::fs::create_dir_all(&coll).unwrap();
    let mut bad = numbered(3, 40);
    bad.retain(|e| e.name != "f1.bin");
    std::fs::copy(env.archive("zip", "bad.zip", &bad), coll.join("c1.zip")).unwrap();
    let r = d.post(
        "/v1/campaigns",
        &serde_json::json!({"parent": coll, "batch_size": 5, "campaign_id": "ui-camp"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(wait_for(
        || d.get("/v1/campaigns/ui-camp").json["status"] == "COMPLETED",
        Duration::from_secs(30)
    ));
    std::fs::copy(&small, coll.join("c1.zip")).unwrap();
    let draft = d.create(&serde_json::json!({"submit": false}));
    std::fs::copy(&small, d.data_dir().join("inbox/waiting.zip")).unwrap();

    let saved = env.path("downloaded.zip");
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-dashboard-actions.png");
    let ids = [failed.as_str(), draft.as_str(), done.as_str()].map(std::ffi::OsStr::new);
    let shown = drive(
        "actions.mjs",
        &d,
        &[ids[0], ids[1], ids[2], saved.as_os_str(), shot.as_os_str()],
        &chromium,
    );
    assert_eq!((shown["page1"].as_i64(), shown["page2"].as_i64()), (Some(20), Some(9)), "{shown}");
    assert_eq!(shown["failed_rows"], 2, "the failed job and the campaign's failed child: {shown}");
    assert_eq!(shown["label_rows"], serde_json::json!([failed]), "{shown}");
    assert!(
        shown["chart_rows"].as_i64().unwrap() >= 1 && shown["chart_ok"].as_i64().unwrap() >= 1,
        "{shown}"
    );
    assert!(shown["chart_bad"].as_i64().unwrap() >= 1, "the failure shows in the chart: {shown}");
    assert!(shown["waiting"].as_str().unwrap().contains("waiting.zip"), "{shown}");
    // What the page did, as the API sees it.
    let f = d.get(&format!("/v1/jobs/{failed}")).json;
    assert_eq!((f["status"].as_str(), f["retries"].as_i64()), (Some("COMPLETED"), Some(1)), "{f}");
    assert_eq!(d.get(&format!("/v1/jobs/{draft}")).json["status"], "CANCELLED");
    assert!(wait_for(
        || {
            let c = d.get("/v1/campaigns/ui-camp").json;
            c["status"] == "COMPLETED" && c["children"]["failed"] == 0 && c["children"]["succeeded"] == 1
        },
        Duration::from_secs(30)
    ));
    let part = &d.get(&format!("/v1/jobs/{done}/parts")).json["parts"][0];
    let on_disk = std::fs::read(part["path"].as_str().unwrap()).unwrap();
    assert_eq!(std::fs::read(&saved).unwrap(), on_disk, "the download is the part on disk");
    assert_eq!(shown["download_name"], "parts-part1.zip");
    assert!(shot.metadata().is_ok_and(|m| m.len() > 10_000), "screenshot saved");
}
