//! Cron schedules with the real daemon, real files and a clock the test moves:
//! each misfire policy after a downtime, daylight-saving days in Europe/Oslo and
//! America/New_York, no second fire for one time across a restart, and only
//! files not ingested before in each job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use batchd::config::{Misfire, Schedule};
use batchd::triggers::cron::Rule;
use batchd::triggers::schedule::Clock;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::helper::daemon::{Api, Daemon};
use crate::helper::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn schedule(dir: &Path, cron: &str, tz: &str, misfire: Misfire) -> Schedule {
    Schedule {
        name: "nightly".into(),
        cron: cron.into(),
        timezone: Some(tz.into()),
        dir: dir.to_owned(),
        pattern: "*.{zip,tar,tar.gz,tgz}".into(),
        misfire,
        grace_seconds: 86_400,
        output_dir: None,
        batch_size: Some(2),
        file_column: None,
        priority: 0,
        max_part_bytes: None,
        regex_filter: None,
        max_files: None,
    }
}

fn exports(env: &Env, files: &[&str]) -> PathBuf {
    let dir = env.path("exports");
    std::fs::create_dir_all(&dir).unwrap();
    for f in files {
        drop_zip(env, &dir, f);
    }
    dir
}

fn drop_zip(env: &Env, dir: &Path, name: &str) {
    let built = env.archive("zip", &format!("build-{name}"), &numbered(3, 50));
    std::fs::rename(built, dir.join(name)).unwrap();
}

fn state(d: &impl Api) -> Value {
    let r = d.get("/v1/schedules/nightly?limit=100");
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

/// The fires recorded so far, oldest first, as (scheduled_at, result, files, late).
fn fires(d: &impl Api) -> Vec<(String, String, i64, bool)> {
    let mut v: Vec<_> = state(d)["fires_recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["scheduled_at"].as_str().unwrap().to_owned(),
                f["result"].as_str().unwrap().to_owned(),
                f["files"].as_i64().unwrap(),
                f["late"].as_bool().unwrap(),
            )
        })
        .collect();
    v.reverse();
    v
}

fn wait_fires(d: &impl Api, n: usize) -> Vec<(String, String, i64, bool)> {
    assert!(
        wait_for(|| fires(d).len() >= n, Duration::from_secs(10)),
        "expected {n} fires: {:?}",
        fires(d)
    );
    // A tick handles every due fire at once; a short pause shows no extra one follows.
    std::thread::sleep(Duration::from_millis(600));
    fires(d)
}

fn fire(at: &str, result: &str, files: i64, late: bool) -> (String, String, i64, bool) {
    (at.into(), result.into(), files, late)
}

/// The daemon runs on 1 March, is down for three nightly fires (2, 3 and 4
/// March, 02:00 in Oslo = 01:00 UTC), and comes back at noon on the 4th.
fn after_downtime(misfire: Misfire) -> (Daemon, Env) {
    let env = Env::new();
    let dir = exports(&env, &["a.zip"]);
    let clock = Clock::manual(utc("2026-03-01T12:00:00Z"));
    let d = Daemon::with_clock(clock.clone(), |c| {
        c.schedule = vec![schedule(&dir, "0 2 * * *", "Europe/Oslo", misfire)];
    });
    assert_eq!(state(&d)["next_fire"], "2026-03-02T01:00:00.000Z");
    (d.restart(|| clock.set(utc("2026-03-04T12:00:00Z"))), env)
}

#[test]
fn misfire_skip_records_missed_fires_and_runs_none() {
    let (d, _env) = after_downtime(Misfire::Skip);
    assert!(wait_for(|| state(&d)["missed"] == 3, Duration::from_secs(10)), "{}", state(&d));
    assert_eq!(fires(&d), vec![]);
    assert_eq!(state(&d)["next_fire"], "2026-03-05T01:00:00.000Z");
    // The next fire runs on time, from the cursor, and finds the file as new.
    d.clock.set(utc("2026-03-05T01:00:02Z"));
    assert_eq!(wait_fires(&d, 1), vec![fire("2026-03-05T01:00:00.000Z", "QUEUED", 1, false)]);
}

#[test]
fn misfire_once_runs_the_latest_missed_fire_once() {
    let (d, _env) = after_downtime(Misfire::Once);
    let f = wait_fires(&d, 1);
    assert_eq!(f, vec![fire("2026-03-04T01:00:00.000Z", "QUEUED", 1, true)]);
    assert_eq!(state(&d)["missed"], 2);
    let job = state(&d)["last_fire"]["job_id"].as_str().unwrap().to_owned();
    assert_eq!(d.wait_job(&job, Duration::from_secs(30))["status"], "COMPLETED");
    // A restart at the same moment fires nothing again.
    let d = d.restart(|| {});
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(fires(&d).len(), 1);
    assert_eq!(d.get("/v1/jobs").json["jobs"].as_array().unwrap().len(), 1);
}

#[test]
fn misfire_once_beyond_grace_runs_nothing() {
    let env = Env::new();
    let dir = exports(&env, &["a.zip"]);
    let clock = Clock::manual(utc("2026-03-01T12:00:00Z"));
    let d = Daemon::with_clock(clock.clone(), |c| {
        let mut s = schedule(&dir, "0 2 * * *", "Europe/Oslo", Misfire::Once);
        s.grace_seconds = 3600;
        c.schedule = vec![s];
    });
    let d = d.restart(|| clock.set(utc("2026-03-04T12:00:00Z")));
    assert!(wait_for(|| state(&d)["missed"] == 3, Duration::from_secs(10)), "{}", state(&d));
    assert_eq!(fires(&d), vec![]);
}

#[test]
fn misfire_all_runs_every_missed_fire_and_only_the_first_finds_the_file() {
    let (d, _env) = after_downtime(Misfire::All);
    assert_eq!(
        wait_fires(&d, 3),
        vec![
            fire("2026-03-02T01:00:00.000Z", "QUEUED", 1, true),
            fire("2026-03-03T01:00:00.000Z", "EMPTY", 0, true),
            fire("2026-03-04T01:00:00.000Z", "EMPTY", 0, true),
        ]
    );
    assert_eq!(state(&d)["missed"], 0);
}

#[test]
fn each_fire_takes_only_files_it_has_not_ingested() {
    let env = Env::new();
    let dir = exports(&env, &["a.zip"]);
    let clock = Clock::manual(utc("2026-06-01T10:00:00Z"));
    let d = Daemon::with_clock(clock.clone(), |c| {
        c.schedule = vec![schedule(&dir, "0 * * * *", "UTC", Misfire::Once)];
    });
    clock.set(utc("2026-06-01T11:00:01Z"));
    assert_eq!(wait_fires(&d, 1)[0], fire("2026-06-01T11:00:00.000Z", "QUEUED", 1, false));
    drop_zip(&env, &dir, "b.zip");
    // A file still being written (no ZIP end record yet) waits for a later fire.
    std::fs::write(dir.join("c.zip"), b"PK\x03\x04 half a zip").unwrap();
    clock.set(utc("2026-06-01T12:00:01Z"));
    assert_eq!(wait_fires(&d, 2)[1], fire("2026-06-01T12:00:00.000Z", "QUEUED", 1, false));
    let job = state(&d)["last_fire"]["job_id"].as_str().unwrap().to_owned();
    let view = d.wait_job(&job, Duration::from_secs(30));
    assert_eq!(view["status"], "COMPLETED", "{view}");
    assert_eq!(view["progress"]["total"], 3, "only b.zip's 3 rows: {view}");
    // a.zip rewritten (new mtime and size) is new content; c.zip finished now.
    std::fs::remove_file(dir.join("c.zip")).unwrap();
    drop_zip(&env, &dir, "c.zip");
    let a = env.archive("zip", "a2.zip", &numbered(4, 60));
    std::fs::rename(a, dir.join("a.zip")).unwrap();
    clock.set(utc("2026-06-01T13:00:01Z"));
    assert_eq!(wait_fires(&d, 3)[2], fire("2026-06-01T13:00:00.000Z", "QUEUED", 2, false));
    clock.set(utc("2026-06-01T14:00:01Z"));
    assert_eq!(wait_fires(&d, 4)[3], fire("2026-06-01T14:00:00.000Z", "EMPTY", 0, false));
    // An empty fire is a success too; both times are exported as metrics.
    assert!(state(&d)["last_success"].is_string(), "{}", state(&d));
    let metrics = d.get("/metrics").text;
    assert!(
        metrics.contains("batchd_schedule_next_run_timestamp_seconds{schedule=\"nightly\"} 1780326000"),
        "{metrics}"
    );
    assert!(
        metrics.contains("batchd_schedule_last_success_timestamp_seconds{schedule=\"nightly\"}"),
        "{metrics}"
    );
}

#[test]
fn run_now_list_and_errors_over_the_api() {
    let env = Env::new();
    let dir = exports(&env, &["a.zip"]);
    let d = Daemon::with(|c| {
        c.schedule = vec![schedule(&dir, "0 2 * * *", "America/New_York", Misfire::Once)];
        let mut missing = schedule(&env.path("nowhere"), "0 3 * * *", "UTC", Misfire::Once);
        missing.name = "broken".into();
        c.schedule.push(missing);
    });
    let list = d.get("/v1/schedules").json;
    let names: Vec<&str> = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nightly", "broken"]);
    assert_eq!(list["schedules"][0]["timezone"], "America/New_York");
    assert!(list["schedules"][0]["last_fire"].is_null());

    let r = d.post("/v1/schedules/nightly/run", &serde_json::json!({}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["result"], "QUEUED");
    assert_eq!(r.json["files"], 1);
    let job = d.wait_job(r.json["job_id"].as_str().unwrap(), Duration::from_secs(30));
    assert_eq!(job["trigger"], "schedule");
    assert_eq!(job["status"], "COMPLETED");
    std::thread::sleep(Duration::from_millis(5)); // a manual fire is keyed by its millisecond
    let again = d.post("/v1/schedules/nightly/run", &serde_json::json!({}));
    assert_eq!(again.json["result"], "EMPTY", "{}", again.text);

    let broken = d.post("/v1/schedules/broken/run", &serde_json::json!({}));
    assert_eq!(broken.status, 201);
    assert_eq!(broken.json["result"], "ERROR");
    let last = &d.get("/v1/schedules/broken").json["last_fire"];
    assert!(last["error"].as_str().unwrap().contains("nowhere"), "{last}");

    assert_eq!(d.post("/v1/schedules/nope/run", &serde_json::json!({})).status, 404);
    assert_eq!(d.get("/v1/schedules/nope").status, 404);
    assert_eq!(d.get("/v1/schedules/nightly/run").status, 405);
}

#[test]
fn the_cli_lists_and_runs_schedules() {
    let env = Env::new();
    let dir = exports(&env, &["a.zip"]);
    let d = Daemon::with(|c| c.schedule = vec![schedule(&dir, "0 2 * * *", "Europe/Oslo", Misfire::Once)]);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(d.data_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let list = cli(&["schedules"]);
    assert!(
        list.contains("nightly") && list.contains("Europe/Oslo") && list.contains("never fired"),
        "{list}"
    );
    let run = cli(&["schedules", "--run", "nightly"]);
    assert!(run.contains("queued job") && run.contains("1 new file"), "{run}");
    let list = cli(&["schedules"]);
    assert!(list.contains("QUEUED"), "{list}");
}

/// Fire times (UTC) of a daily or hourly rule over a range, from the library.
fn between(cron: &str, tz: &str, from: &str, to: &str) -> Vec<String> {
    let rule = Rule::parse(cron, tz).unwrap();
    rule.fires_between(utc(from), utc(to), 1000)
        .iter()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect()
}

#[test]
fn daylight_saving_days_in_oslo_and_new_york() {
    // Oslo springs forward 2026-03-29 02:00 → 03:00: 02:30 does not exist that
    // day and fires at 03:00 CEST, once.
    assert_eq!(
        between("30 2 * * *", "Europe/Oslo", "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z"),
        ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
    );
    // Oslo falls back 2026-10-25 03:00 → 02:00: 02:30 happens twice, fires once.
    assert_eq!(
        between("30 2 * * *", "Europe/Oslo", "2026-10-23T12:00:00Z", "2026-10-26T12:00:00Z"),
        ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    // New York springs forward 2026-03-08 02:00 → 03:00.
    assert_eq!(
        between("30 2 * * *", "America/New_York", "2026-03-06T12:00:00Z", "2026-03-09T12:00:00Z"),
        ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    );
    // New York falls back 2026-11-01 02:00 → 01:00: 01:30 fires once (EDT).
    assert_eq!(
        between("30 1 * * *", "America/New_York", "2026-10-30T12:00:00Z", "2026-11-02T12:00:00Z"),
        ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
    // An hourly rule follows real hours: 23 on the spring day, 25 on the fall day.
    let day = |from: &str, to: &str| between("0 * * * *", "America/New_York", from, to).len();
    assert_eq!(day("2026-03-08T04:59:59Z", "2026-03-09T03:59:59Z"), 23);
    assert_eq!(day("2026-11-01T03:59:59Z", "2026-11-02T04:59:59Z"), 25);
    // A fire time is never repeated: the next fire after each fire is later.
    let f = between("*/30 * * * *", "Europe/Oslo", "2026-10-24T22:00:00Z", "2026-10-25T03:00:00Z");
    assert!(f.windows(2).all(|w| w[0] < w[1]), "{f:?}");
    assert_eq!(f.len(), 10);
}

#[test]
fn the_daemon_fires_once_through_a_fall_back_night() {
    let env = Env::new();
    let dir = exports(&env, &["a.zip"]);
    let clock = Clock::manual(utc("2026-10-24T23:00:00Z"));
    let d = Daemon::with_clock(clock.clone(), |c| {
        c.schedule = vec![schedule(&dir, "30 2 * * *", "Europe/Oslo", Misfire::Once)];
    });
    assert_eq!(state(&d)["next_fire"], "2026-10-25T00:30:00.000Z");
    clock.set(utc("2026-10-25T00:30:01Z")); // 02:30 CEST
    assert_eq!(wait_fires(&d, 1), vec![fire("2026-10-25T00:30:00.000Z", "QUEUED", 1, false)]);
    clock.set(utc("2026-10-25T01:30:01Z")); // 02:30 CET, the same wall time again
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(fires(&d).len(), 1);
    assert_eq!(state(&d)["next_fire"], "2026-10-26T01:30:00.000Z");
    // Across a restart in the repeated hour, still no second fire.
    let d = d.restart(|| {});
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(fires(&d).len(), 1);
    clock.set(utc("2026-10-26T01:30:01Z"));
    assert_eq!(wait_fires(&d, 2)[1], fire("2026-10-26T01:30:00.000Z", "EMPTY", 0, false));
}

#[test]
fn the_daemon_fires_after_the_gap_on_a_spring_forward_night() {
    let env = Env::new();
    let dir = exports(&env, &["a.zip"]);
    let clock = Clock::manual(utc("2026-03-08T06:00:00Z")); // 01:00 EST
    let d = Daemon::with_clock(clock.clone(), |c| {
        c.schedule = vec![schedule(&dir, "30 2 * * *", "America/New_York", Misfire::Skip)];
    });
    assert_eq!(state(&d)["next_fire"], "2026-03-08T07:00:00.000Z"); // 03:00 EDT
    clock.set(utc("2026-03-08T07:00:01Z"));
    assert_eq!(wait_fires(&d, 1), vec![fire("2026-03-08T07:00:00.000Z", "QUEUED", 1, false)]);
}

/// `regex_filter` and `max_files` on a schedule: each fire takes the first N
/// new files by name that the expression admits; the rest wait for the next.
#[test]
fn a_fire_takes_at_most_max_files_through_regex_filter() {
    let env = Env::new();
    let dir = exports(&env, &["e.zip", "c.zip", "a.zip", "skip-b.zip", "d.zip"]);
    let d = Daemon::with(|c| {
        c.schedule = vec![Schedule {
            regex_filter: Some("/[a-e]\\.zip$".into()),
            max_files: Some(2),
            batch_size: Some(2),
            ..Schedule::new("nightly", "0 2 * * *", dir.clone())
        }]
    });
    let mut taken = Vec::new();
    for want in [2, 2, 0] {
        let r = d.post("/v1/schedules/nightly/run", &serde_json::json!({}));
        assert_eq!(r.json["files"], want, "{}", r.text);
        if let Some(id) = r.json["job_id"].as_str() {
            let job = d.wait_job(id, Duration::from_secs(30));
            taken.extend(
                job["sources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().rsplit('/').next().unwrap().to_owned()),
            );
        }
    }
    assert_eq!(taken, ["a.zip", "c.zip", "d.zip", "e.zip"]);
    let bad = batchd::config::Config::parse("[[schedule]]\nname = \"x\"\ncron = \"0 2 * * *\"\ndir = \"/tmp\"\nregex_filter = \"(\"\n");
    assert!(format!("{:#}", bad.unwrap_err()).contains("regex_filter"));
}
