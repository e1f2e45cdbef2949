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
    let out = Command::new("node")
        .arg(Path::new(UI).join("dashboard.mjs"))
        .arg(format!("http://{}", d.addr()))
        .arg(d.token())
        .arg(&parent)
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
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
