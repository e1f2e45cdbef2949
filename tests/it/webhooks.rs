//! Signed webhooks received by a real HTTP server whose signature check is
//! the reference `standardwebhooks` Python package: retried until the
//! receiver takes them, once more and no more, also across a daemon restart;
//! a job's `callback_url` only to an allowed host.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helper::daemon::{Api, Daemon};
use crate::helper::servers::Receiver;
use crate::helper::*;

/// `whsec_` + base64 of 32 bytes.
pub const WHSEC: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn subscribe(c: &mut batchd::config::Config, url: String, events: &[&str]) {
    c.webhook = vec![batchd::config::Webhook {
        name: "app".into(),
        url,
        secret: Some(WHSEC.into()),
        secret_file: None,
        events: events.iter().map(|e| e.to_string()).collect(),
    }];
    c.webhooks.backoff_seconds = 0.3;
}

/// The receiver's requests for the one message about `job`.
fn about(r: &Receiver, job: &str) -> Vec<Value> {
    r.requests()
        .into_iter()
        .filter(|q| q["event"]["data"]["job"]["id"] == job)
        .collect()
}

/// `GET /v1/webhooks/deliveries?job=ID` once the daemon has recorded the
/// delivery as taken (the receiver logs before it answers, the daemon
/// records after the answer).
fn deliveries_once_taken(d: &Daemon, job: &str) -> Value {
    let mut listed = Value::Null;
    wait_for(
        || {
            listed = d.get(&format!("/v1/webhooks/deliveries?job={job}")).json;
            listed["deliveries"][0]["state"] == "DELIVERED"
        },
        Duration::from_secs(10),
    );
    listed
}

fn statuses(reqs: &[Value]) -> Vec<u64> {
    reqs.iter().map(|q| q["status"].as_u64().unwrap()).collect()
}

#[test]
fn a_webhook_is_signed_and_retried_until_taken_once_also_across_a_restart() {
    let env = Env::new();
    let rcv = Receiver::start(WHSEC, 3);
    let url = rcv.url("/hook");
    let d = Daemon::with(|c| subscribe(c, url, &["job.*"]));
    let src = d.stage(&env.archive("zip", "s.zip", &numbered(12, 500)));
    let id = d.create(&json!({"sources": [src], "batch_size": 5, "name": "nightly", "external_ref": "dl-7"}));
    assert_eq!(d.wait_job(&id, Duration::from_secs(60))["status"], "COMPLETED");
    assert!(
        wait_for(|| statuses(&about(&rcv, &id)).contains(&200), Duration::from_secs(30)),
        "the receiver never took the event: {:?}",
        rcv.requests()
    );
    let reqs = about(&rcv, &id);
    // Three refusals, then taken: four attempts of one message, each verified.
    assert_eq!(statuses(&reqs), [500, 500, 500, 200]);
    assert!(reqs.iter().all(|q| q["verified"] == true && q["id"] == reqs[0]["id"]), "{reqs:?}");
    let event = &reqs[3]["event"];
    assert_eq!(event["type"], "job.completed");
    assert_eq!(event["data"]["job"]["name"], "nightly");
    assert_eq!(event["data"]["job"]["external_ref"], "dl-7");
    assert_eq!(
        event["data"]["parts"].as_array().unwrap().len(),
        3,
        "the list of parts made: {event}"
    );
    let listed = deliveries_once_taken(&d, &id);
    let del = &listed["deliveries"][0];
    assert_eq!(
        (del["state"].as_str(), del["attempts"].as_i64()),
        (Some("DELIVERED"), Some(4)),
        "{listed}"
    );
    let history: Vec<u64> = del["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(history, [500, 500, 500, 200]);
    assert_eq!(del["webhook_id"], reqs[0]["id"]);

    // Across a restart: the daemon stops after the first refusal; the
    // outbox carries the delivery on, and it is taken exactly once.
    let id2 = d.create(&json!({"sources": [src], "batch_size": 5, "output_dir": d.data_dir().join("again")}));
    assert_eq!(d.wait_job(&id2, Duration::from_secs(60))["status"], "COMPLETED");
    assert!(wait_for(|| !about(&rcv, &id2).is_empty(), Duration::from_secs(30)));
    let d = d.restart(|| {});
    assert!(
        wait_for(|| statuses(&about(&rcv, &id2)).contains(&200), Duration::from_secs(30)),
        "not delivered after the restart: {:?}",
        about(&rcv, &id2)
    );
    std::thread::sleep(Duration::from_millis(1500)); // room for a wrong repeat to show
    let reqs = about(&rcv, &id2);
    assert_eq!(statuses(&reqs), [500, 500, 500, 200], "{reqs:?}");
    assert!(reqs.iter().all(|q| q["id"] == reqs[0]["id"]));
    let listed = deliveries_once_taken(&d, &id2);
    assert_eq!(
        listed["deliveries"][0]["attempts"], 4,
        "attempts are kept across the restart: {listed}"
    );
    // Only job events were asked for: no part or campaign events came.
    assert!(rcv.requests().iter().all(|q| q["event"]["type"] == "job.completed"));
}

#[test]
fn a_callback_goes_only_to_an_allowed_host() {
    let env = Env::new();
    let rcv = Receiver::start(WHSEC, 0);
    let host = format!("127.0.0.1:{}", rcv.port);
    let d = Daemon::with(|c| {
        c.webhooks.allowed_hosts = vec![host];
        c.webhooks.callback_secret = Some(WHSEC.into());
    });
    let src = d.stage(&env.archive("zip", "s.zip", &numbered(4, 100)));
    let id = d.create(&json!({"sources": [src], "callback_url": rcv.url("/jobs/cb?ref=1")}));
    assert_eq!(d.wait_job(&id, Duration::from_secs(60))["status"], "COMPLETED");
    assert!(wait_for(|| !about(&rcv, &id).is_empty(), Duration::from_secs(30)), "no callback");
    let reqs = about(&rcv, &id);
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        (reqs[0]["verified"].as_bool(), reqs[0]["path"].as_str()),
        (Some(true), Some("/jobs/cb?ref=1"))
    );
    assert_eq!(reqs[0]["event"]["type"], "job.completed");
    for (url, code) in [
        ("http://example.org/hook", "CALLBACK_NOT_ALLOWED"),
        ("http://127.0.0.1:1/hook", "CALLBACK_NOT_ALLOWED"),
        ("ftp://127.0.0.1/x", "BAD_REQUEST"),
        ("http://user@127.0.0.1/x", "BAD_REQUEST"),
    ] {
        let r = d.post("/v1/jobs", &json!({"sources": [src], "callback_url": url}));
        assert_eq!((r.status, r.json["error"]["code"].as_str()), (400, Some(code)), "{url}: {}", r.text);
    }
    // With no allowed hosts, no job may ask for a callback.
    let d2 = Daemon::start();
    let r = d2.post("/v1/jobs", &json!({"sources": [d2.stage(&src)], "callback_url": rcv.url("/x")}));
    assert_eq!(r.json["error"]["code"], "CALLBACK_NOT_ALLOWED", "{}", r.text);
}
