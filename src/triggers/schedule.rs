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
//! rows and the cursor, so a crash leaves either all of it or none, and a
//! restart never fires twice.
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
use r2d2_sqlite::rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::cron::Rule;
use crate::config::{Config, Misfire, Schedule};
use crate::store::jobs::{self, NewJob};
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

/// A file in a schedule's directory, with the identity that says whether it
/// was ingested before.
struct Candidate {
    path: String,
    size: i64,
    mtime_ns: i64,
    inode: i64,
}

fn candidates(s: &Schedule) -> anyhow::Result<Vec<Candidate>> {
    let dir =
        std::fs::canonicalize(&s.dir).with_context(|| format!("reading schedule directory {}; create it or fix `dir`", s.dir.display()))?;
    let selection = crate::glob::Selection::new(s.regex_filter.as_deref(), None).map_err(|e| anyhow::anyhow!("regex_filter: {e}"))?;
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
        out.push(Candidate {
            path: path.to_string_lossy().into_owned(),
            size: meta.len() as i64,
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            inode: meta.ino() as i64,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// One fire: what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub scheduled_at: f64,
    /// QUEUED (a job), EMPTY (nothing new), ERROR (the directory could not be read), or DUPLICATE (this fire time was taken before).
    pub result: String,
    pub job_id: Option<String>,
    pub files: usize,
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
            let cursor: f64 = store.write_quiet(move |tx| {
                tx.execute(
                    "INSERT INTO schedules (name, cursor, created) VALUES (?1, ?2, ?2) ON CONFLICT (name) DO NOTHING",
                    params![name, now],
                )?;
                Ok(tx.query_row("SELECT cursor FROM schedules WHERE name = ?1", [&name], |r| r.get(0))?)
            })?;
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
                self.store.write(move |tx| {
                    tx.execute(
                        "UPDATE schedules SET cursor = MAX(cursor, ?2), missed = missed + ?3 WHERE name = ?1",
                        params![name, to, n as i64],
                    )?;
                    jobs::event(
                        tx,
                        None,
                        "schedule.missed",
                        json!({"schedule": name, "count": n, "first": crate::clock::rfc3339(first), "last": crate::clock::rfc3339(last_missed)}),
                    )
                })?;
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

/// One fire in one transaction: the fire row, the job and its files, and (for a
/// cron fire) the cursor.
fn fire(store: &Store, config: &Config, s: &Schedule, at: f64, manual: bool, late: bool, cursor: Option<f64>) -> anyhow::Result<Fired> {
    let listed = candidates(s);
    let error = listed.as_ref().err().map(|e| format!("{e:#}"));
    let files = listed.unwrap_or_default();
    let settings = config.defaults.settings(s.batch_size, s.max_part_bytes, s.file_column.as_ref());
    let name = s.name.clone();
    let (data_dir, output_dir, priority, max_files) = (config.data_dir.clone(), s.output_dir.clone(), s.priority, s.max_files);
    Ok(store.write(move |tx| {
        let taken = tx.execute(
            "INSERT INTO schedule_fires (schedule, scheduled_at, manual, fired_at, result, late) VALUES (?1, ?2, ?3, ?4, 'EMPTY', ?5)
             ON CONFLICT (schedule, scheduled_at, manual) DO NOTHING",
            params![name, at, manual, crate::clock::now(), late],
        )? == 1;
        if let Some(c) = cursor {
            tx.execute("UPDATE schedules SET cursor = MAX(cursor, ?2) WHERE name = ?1", params![name, c])?;
        }
        let mut fired = Fired {
            scheduled_at: at,
            result: "DUPLICATE".into(),
            job_id: None,
            files: 0,
        };
        if !taken {
            return Ok(fired);
        }
        let fire_id = tx.last_insert_rowid();
        if let Some(e) = error {
            tx.execute(
                "UPDATE schedule_fires SET result = 'ERROR', error = ?2 WHERE id = ?1",
                params![fire_id, e],
            )?;
            jobs::event(tx, None, "schedule.error", json!({"schedule": name, "error": e}))?;
            fired.result = "ERROR".into();
            return Ok(fired);
        }
        // Ingested before, by a job that did not fail: not again. A failed or
        // cancelled job's files are tried again (its parts were removed).
        let mut seen = tx.prepare_cached(
            "SELECT 1 FROM schedule_files f LEFT JOIN jobs j ON j.id = f.job_id
             WHERE f.schedule = ?1 AND f.path = ?2 AND f.size = ?3 AND f.mtime_ns = ?4 AND f.inode = ?5
             AND (f.job_id IS NULL OR j.status NOT IN ('FAILED', 'CANCELLED'))",
        )?;
        let mut new = Vec::new();
        for c in files {
            if seen.exists(params![name, c.path, c.size, c.mtime_ns, c.inode])? {
                continue;
            }
            new.push(c);
        }
        drop(seen);
        // The first max_files new files by name; the rest wait for the next fire.
        new.truncate(max_files.unwrap_or(usize::MAX));
        fired.files = new.len();
        if new.is_empty() {
            fired.result = "EMPTY".into();
            return Ok(fired);
        }
        let sources = new.iter().map(|c| c.path.clone()).collect();
        let job = NewJob {
            priority,
            ..NewJob::ingest(
                crate::ids::new_id(),
                &data_dir,
                output_dir.as_deref(),
                sources,
                settings,
                "schedule",
            )
        };
        jobs::create(tx, &job)?;
        for c in &new {
            tx.execute(
                "INSERT OR REPLACE INTO schedule_files (schedule, path, size, mtime_ns, inode, job_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, c.path, c.size, c.mtime_ns, c.inode, job.id],
            )?;
        }
        tx.execute(
            "UPDATE schedule_fires SET result = 'QUEUED', job_id = ?2, files = ?3 WHERE id = ?1",
            params![fire_id, job.id, new.len() as i64],
        )?;
        jobs::event(
            tx,
            Some(&job.id),
            "schedule.fired",
            json!({"schedule": name, "scheduled_at": crate::clock::rfc3339(at), "files": new.len(), "manual": manual, "late": late}),
        )?;
        fired.result = "QUEUED".into();
        fired.job_id = Some(job.id);
        Ok(fired)
    })?)
}

/// A fire row as the API shows it.
fn fire_json(r: &r2d2_sqlite::rusqlite::Row) -> r2d2_sqlite::rusqlite::Result<Value> {
    Ok(json!({
        "scheduled_at": crate::clock::rfc3339(r.get(0)?),
        "fired_at": crate::clock::rfc3339(r.get(1)?),
        "manual": r.get::<_, bool>(2)?,
        "late": r.get::<_, bool>(3)?,
        "result": r.get::<_, String>(4)?,
        "files": r.get::<_, i64>(5)?,
        "job_id": r.get::<_, Option<String>>(6)?,
        "job_status": r.get::<_, Option<String>>(7)?,
        "error": r.get::<_, Option<String>>(8)?,
    }))
}

const FIRE_COLUMNS: &str = "f.scheduled_at, f.fired_at, f.manual, f.late, f.result, f.files, f.job_id, j.status, f.error
     FROM schedule_fires f LEFT JOIN jobs j ON j.id = f.job_id";

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
        let row: Option<(f64, i64)> = conn
            .query_row("SELECT cursor, missed FROM schedules WHERE name = ?1", [&s.name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let next = row.and_then(|(c, _)| rule.next_after(to_utc(c)));
        let last: Option<Value> = conn
            .query_row(
                &format!("SELECT {FIRE_COLUMNS} WHERE f.schedule = ?1 ORDER BY f.fired_at DESC, f.id DESC LIMIT 1"),
                [&s.name],
                fire_json,
            )
            .optional()?;
        // Success: the fire found nothing new, or its job completed.
        let last_success: Option<f64> = conn.query_row(
            "SELECT MAX(COALESCE(j.finished, f.fired_at)) FROM schedule_fires f LEFT JOIN jobs j ON j.id = f.job_id
             WHERE f.schedule = ?1 AND (f.result = 'EMPTY' OR j.status = 'COMPLETED')",
            [&s.name],
            |r| r.get(0),
        )?;
        let fires: i64 = conn.query_row("SELECT COUNT(*) FROM schedule_fires WHERE schedule = ?1", [&s.name], |r| r.get(0))?;
        let json = json!({
            "name": s.name,
            "cron": s.cron,
            "timezone": rule.timezone(),
            "dir": s.dir,
            "pattern": s.pattern,
            "misfire": s.misfire,
            "next_fire": next.map(|t| crate::clock::rfc3339(secs(t))),
            "last_scheduled": row.map(|(c, _)| crate::clock::rfc3339(c)),
            "last_fire": last,
            "last_success": last_success.map(crate::clock::rfc3339),
            "fires": fires,
            "missed": row.map_or(0, |(_, m)| m),
        });
        out.push(State {
            name: s.name.clone(),
            next,
            last_success,
            json,
        });
    }
    Ok(out)
}

/// The last `limit` fires of one schedule, newest first.
pub fn history(conn: &Connection, name: &str, limit: i64) -> anyhow::Result<Vec<Value>> {
    let mut st = conn.prepare(&format!(
        "SELECT {FIRE_COLUMNS} WHERE f.schedule = ?1 ORDER BY f.fired_at DESC, f.id DESC LIMIT ?2"
    ))?;
    let v = st.query_map(params![name, limit], fire_json)?.collect::<Result<Vec<_>, _>>()?;
    Ok(v)
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
