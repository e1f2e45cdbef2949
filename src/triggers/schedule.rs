//! Cron schedules. Each `[[schedule]]` sweeps a directory at its fire times and
//! queues one job with the matching files it has not ingested yet (identity:
//! path, size, mtime, inode), or records an empty fire.
//!
//! Fire times come from croner in the schedule's IANA time zone, always computed
//! from the last scheduled time stored in SQLite (the cursor), never from "now":
//! a slow tick or a restart cannot shift or repeat a fire. A fixed time that a
//! spring-forward change skips fires at the first instant after the gap; a time
//! that a fall-back change repeats fires once. Each fire is one transaction: the
//! fire row (unique on schedule + scheduled time), the job, the ingested-file
//! rows and the cursor (written by `store::schedules`), so a crash leaves either
//! all of it or none, and a restart never fires twice.
//!
//! Fires more than [`ON_TIME`] late were missed (the daemon was down or the
//! machine asleep); the `misfire` policy says what happens to them. Time comes
//! from a [`Clock`] so tests can move it instead of waiting for it.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::signals::Stop;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use r2d2_sqlite::rusqlite::Connection;
use serde_json::{json, Value};

use super::cron::Rule;
use crate::config::{Config, Misfire, Schedule};
use crate::store::jobs::NewJob;
use crate::store::schedules::{self, FireRequest, ScheduledFile};
pub use crate::store::schedules::{FireView, Fired};
use crate::store::Store;

/// A fire seen within this long after its time is on time; later, it was missed.
pub const ON_TIME: Duration = Duration::from_secs(60);
/// Fires handled per schedule per tick, so a long downtime with a per-second
/// cron cannot hold the scheduler (the next tick carries on from the cursor).
const FIRES_PER_TICK: usize = 1000;
const TICK: Duration = Duration::from_millis(250);

/// Where the scheduler reads the time: the system clock, or one a test sets.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    /// Unix milliseconds, moved by hand.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn manual(at: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(at.timestamp_millis())))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        if let Clock::Manual(ms) = self {
            ms.store(at.timestamp_millis(), Ordering::SeqCst);
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => DateTime::<Utc>::from(std::time::SystemTime::now()),
            Clock::Manual(ms) => Utc.timestamp_millis_opt(ms.load(Ordering::SeqCst)).single().unwrap_or_default(),
        }
    }
}

/// The time zone named by `$TZ`, else by the `/etc/localtime` link, else UTC.
/// What to do with one fire time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Run { late: bool },
    Missed,
}

/// Decides a fire at `t` seen at `now`. A late fire under `once` runs only when
/// it is the last fire due (so a downtime costs one catch-up run, not many) and
/// within the grace window.
pub fn decide(rule: &Rule, t: DateTime<Utc>, now: DateTime<Utc>, misfire: Misfire, grace: Duration) -> Decision {
    let late = (now - t).to_std().unwrap_or_default();
    if late <= ON_TIME {
        return Decision::Run { late: false };
    }
    match misfire {
        Misfire::All => Decision::Run { late: true },
        Misfire::Skip => Decision::Missed,
        Misfire::Once => {
            let last_due = rule.next_after(t).is_none_or(|n| n > now);
            if last_due && late <= grace {
                Decision::Run { late: true }
            } else {
                Decision::Missed
            }
        }
    }
}

fn candidates(s: &Schedule) -> anyhow::Result<Vec<ScheduledFile>> {
    let dir =
        std::fs::canonicalize(&s.dir).with_context(|| format!("reading schedule directory {}; create it or fix `dir`", s.dir.display()))?;
    // Only the expression here: max_files counts new files, after the store
    // has left out those ingested before.
    let selection = s.selection()?;
    let mut out = Vec::new();
    for item in std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
    {
        let name = item.file_name().to_string_lossy().into_owned();
        if super::watch::is_temp_name(&name) || !crate::glob::glob_match(&s.pattern, &name) {
            continue;
        }
        let path = item.path();
        if !selection.admits(&path) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        // Still being written: left for the next fire.
        if !meta.file_type().is_file() || !super::watch::looks_complete(&path, meta.len()) {
            continue;
        }
        out.push(ScheduledFile {
            path: path.to_string_lossy().into_owned(),
            size: meta.len() as i64,
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            inode: meta.ino() as i64,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

pub struct Scheduler {
    store: Store,
    config: Arc<Config>,
    clock: Clock,
    rules: Vec<(Schedule, Rule)>,
    cursors: HashMap<String, DateTime<Utc>>,
}

fn to_utc(t: f64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt((t * 1000.0).round() as i64).single().unwrap_or_default()
}

fn secs(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

impl Scheduler {
    /// Loads each schedule's cursor; a schedule seen for the first time starts
    /// from now (it does not fire for times before it existed).
    pub fn new(store: Store, config: Arc<Config>, clock: Clock) -> anyhow::Result<Scheduler> {
        let mut rules = Vec::new();
        let mut cursors = HashMap::new();
        for s in &config.schedule {
            let rule = Rule::new(&s.cron, s.timezone.as_deref()).map_err(|e| anyhow::anyhow!("schedule {:?}: {e}", s.name))?;
            let (name, now) = (s.name.clone(), secs(clock.now()));
            let cursor = store.write_quiet(move |tx| schedules::cursor(tx, &name, now))?;
            cursors.insert(s.name.clone(), to_utc(cursor));
            rules.push((s.clone(), rule));
        }
        Ok(Scheduler {
            store,
            config,
            clock,
            rules,
            cursors,
        })
    }

    pub fn run(mut self, stop: &Stop) {
        while !stop.is_set() {
            if let Err(e) = self.tick() {
                tracing::error!("schedules: {e:#}");
            }
            stop.sleep(TICK);
        }
    }

    /// Handles every fire due by now, per schedule, oldest first.
    pub fn tick(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now();
        for (s, rule) in &self.rules {
            let cursor = self.cursors[&s.name];
            let due = rule.fires_between(cursor, now, FIRES_PER_TICK);
            let Some(&last) = due.last() else { continue };
            let mut missed = Vec::new();
            for &t in &due {
                match decide(rule, t, now, s.misfire, Duration::from_secs(s.grace_seconds)) {
                    Decision::Run { late } => {
                        let f = fire(&self.store, &self.config, s, secs(t), false, late, Some(secs(t)))?;
                        tracing::info!(schedule = %s.name, at = %t, result = %f.result, files = f.files, job = ?f.job_id, late, "schedule fired");
                    }
                    Decision::Missed => missed.push(t),
                }
            }
            if !missed.is_empty() {
                tracing::warn!(schedule = %s.name, count = missed.len(), first = %missed[0], "fires missed while the daemon was down (misfire = {:?})", s.misfire);
                let (name, n, first, last_missed, to) = (
                    s.name.clone(),
                    missed.len(),
                    secs(missed[0]),
                    secs(*missed.last().unwrap()),
                    secs(last),
                );
                self.store
                    .write(move |tx| schedules::missed(tx, &name, to, n, first, last_missed))?;
            }
            self.cursors.insert(s.name.clone(), last);
        }
        Ok(())
    }
}

/// Runs a schedule now, outside its cron times (`POST /v1/schedules/{name}/run`).
pub fn run_now(store: &Store, config: &Config, name: &str, clock: &Clock) -> anyhow::Result<Option<Fired>> {
    let Some(s) = config.schedule.iter().find(|s| s.name == name) else {
        return Ok(None);
    };
    fire(store, config, s, secs(clock.now()), true, false, None).map(Some)
}

/// One fire: the directory listed here, recorded (fire row, job, files,
/// cursor) in one transaction by the store.
fn fire(store: &Store, config: &Config, s: &Schedule, at: f64, manual: bool, late: bool, cursor: Option<f64>) -> anyhow::Result<Fired> {
    let settings = config.defaults.settings(s.batch_size, s.max_part_bytes, s.file_column.as_ref());
    let job = NewJob {
        priority: s.priority,
        ..NewJob::ingest(
            crate::ids::new_id(),
            &config.data_dir,
            s.output_dir.as_deref(),
            Vec::new(),
            settings,
            "schedule",
        )
    };
    let req = FireRequest {
        name: s.name.clone(),
        at,
        manual,
        late,
        cursor,
        listing: candidates(s).map_err(|e| format!("{e:#}")),
        max_files: s.max_files,
        job,
    };
    Ok(store.write(move |tx| schedules::fire(tx, req))?)
}

/// A schedule's state: next and last fire, last result and last success.
pub struct State {
    pub name: String,
    pub next: Option<DateTime<Utc>>,
    pub last_success: Option<f64>,
    pub json: Value,
}

/// Every configured schedule's state, computed from its stored cursor.
pub fn states(conn: &Connection, config: &Config) -> anyhow::Result<Vec<State>> {
    let mut out = Vec::new();
    for s in &config.schedule {
        let rule = Rule::new(&s.cron, s.timezone.as_deref()).map_err(|e| anyhow::anyhow!("schedule {:?}: {e}", s.name))?;
        let stored = schedules::stored(conn, &s.name)?;
        let next = stored.cursor.and_then(|(c, _)| rule.next_after(to_utc(c)));
        let json = json!({
            "name": s.name,
            "cron": s.cron,
            "timezone": rule.timezone(),
            "dir": s.dir,
            "pattern": s.pattern,
            "misfire": s.misfire,
            "next_fire": next.map(|t| crate::clock::rfc3339(secs(t))),
            "last_scheduled": stored.cursor.map(|(c, _)| crate::clock::rfc3339(c)),
            "last_fire": stored.last_fire,
            "last_success": stored.last_success.map(crate::clock::rfc3339),
            "fires": stored.fires,
            "missed": stored.cursor.map_or(0, |(_, m)| m),
        });
        out.push(State {
            name: s.name.clone(),
            next,
            last_success: stored.last_success,
            json,
        });
    }
    Ok(out)
}

/// The last `limit` fires of one schedule, newest first.
pub fn history(conn: &Connection, name: &str, limit: i64) -> anyhow::Result<Vec<FireView>> {
    Ok(schedules::history(conn, name, limit)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn once_runs_only_the_last_missed_fire_within_grace() {
        let rule = Rule::parse("0 2 * * *", "UTC").unwrap();
        let now = utc("2026-03-04T12:00:00Z");
        let fires = rule.fires_between(utc("2026-03-01T12:00:00Z"), now, 100);
        assert_eq!(fires.len(), 3);
        let day = Duration::from_secs(86_400);
        let d: Vec<Decision> = fires.iter().map(|&t| decide(&rule, t, now, Misfire::Once, day)).collect();
        assert_eq!(d, [Decision::Missed, Decision::Missed, Decision::Run { late: true }]);
        assert_eq!(
            decide(&rule, fires[2], now, Misfire::Once, Duration::from_secs(3600)),
            Decision::Missed
        );
        assert!(fires.iter().all(|&t| decide(&rule, t, now, Misfire::Skip, day) == Decision::Missed));
        assert!(fires
            .iter()
            .all(|&t| decide(&rule, t, now, Misfire::All, day) == Decision::Run { late: true }));
        // Seen on time, every policy runs it.
        let t = utc("2026-03-05T02:00:00Z");
        for m in [Misfire::Skip, Misfire::Once, Misfire::All] {
            assert_eq!(
                decide(&rule, t, t + chrono::Duration::seconds(5), m, day),
                Decision::Run { late: false }
            );
        }
    }

    #[test]
    fn bad_cron_and_timezone_are_named() {
        assert!(Rule::parse("0 2 * *", "UTC").unwrap_err().contains("4 fields"));
        assert!(Rule::parse("0 25 * * *", "UTC").unwrap_err().contains("cron"));
        assert!(Rule::parse("0 2 * * *", "Europe/Osl").unwrap_err().contains("IANA"));
    }
}
