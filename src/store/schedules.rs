//! The schedule tables: `schedules` (each schedule's cursor, the last cron time
//! handled, and its count of missed fires), `schedule_fires` (one row per fire
//! time, unique, so a time cannot run twice) and `schedule_files` (what each
//! schedule ingested, by identity). `triggers::schedule` decides when to fire
//! and lists the directory; everything it records goes through here.

use r2d2_sqlite::rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::jobs::{self, NewJob};
use super::model::JobStatus;
use super::{StoreResult, Tx};
use crate::clock::{now, rfc3339};

/// A file in a schedule's directory, with the identity that says whether it
/// was ingested before (a file rewritten in place is new).
#[derive(Debug, Clone)]
pub struct ScheduledFile {
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
    pub inode: i64,
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

/// A fire as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FireView {
    /// The cron time (or the request time of a manual run).
    pub scheduled_at: String,
    pub fired_at: String,
    pub manual: bool,
    /// A catch-up run after downtime.
    pub late: bool,
    pub result: String,
    pub files: i64,
    pub job_id: Option<String>,
    pub job_status: Option<JobStatus>,
    pub error: Option<String>,
}

/// What the tables hold for one schedule.
pub struct Stored {
    /// The last scheduled time handled, and the fires missed while down; None
    /// for a schedule the daemon has not started yet.
    pub cursor: Option<(f64, i64)>,
    pub last_fire: Option<FireView>,
    /// When a fire last found nothing new or its job completed.
    pub last_success: Option<f64>,
    pub fires: i64,
}

/// A fire to record: when, how, the directory's listing (or why it could not
/// be listed), and the job its new files go to (`job.sources` is filled here).
pub struct FireRequest {
    pub name: String,
    pub at: f64,
    pub manual: bool,
    pub late: bool,
    /// For a cron fire: the cursor moves to this time in the same transaction.
    pub cursor: Option<f64>,
    pub listing: Result<Vec<ScheduledFile>, String>,
    pub max_files: Option<usize>,
    pub job: NewJob,
}

/// The schedule's cursor, starting it at `start` the first time it is seen
/// (a new schedule does not fire for times before it existed).
pub fn cursor(tx: &Tx, name: &str, start: f64) -> StoreResult<f64> {
    tx.execute(
        "INSERT INTO schedules (name, cursor, created) VALUES (?1, ?2, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, start],
    )?;
    Ok(tx.query_row("SELECT cursor FROM schedules WHERE name = ?1", [name], |r| r.get(0))?)
}

/// Fire times missed while the daemon was down and not run (per misfire): the
/// cursor moves past them, counted, with an event.
pub fn missed(tx: &Tx, name: &str, to: f64, count: usize, first: f64, last: f64) -> StoreResult<()> {
    tx.execute(
        "UPDATE schedules SET cursor = MAX(cursor, ?2), missed = missed + ?3 WHERE name = ?1",
        params![name, to, count as i64],
    )?;
    jobs::event(
        tx,
        None,
        "schedule.missed",
        json!({"schedule": name, "count": count, "first": rfc3339(first), "last": rfc3339(last)}),
    )
}

/// One fire in one transaction: the fire row (DUPLICATE when this time was
/// taken before), the job with the files not ingested before (the first
/// `max_files`; the rest wait for the next fire), and for a cron fire the
/// cursor. A file ingested before by a job that did not fail is not taken
/// again; a failed or cancelled job's files are (its parts were removed).
pub fn fire(tx: &Tx, req: FireRequest) -> StoreResult<Fired> {
    let FireRequest {
        name,
        at,
        manual,
        late,
        cursor,
        listing,
        max_files,
        mut job,
    } = req;
    let taken = tx.execute(
        "INSERT INTO schedule_fires (schedule, scheduled_at, manual, fired_at, result, late) VALUES (?1, ?2, ?3, ?4, 'EMPTY', ?5)
         ON CONFLICT (schedule, scheduled_at, manual) DO NOTHING",
        params![name, at, manual, now(), late],
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
    let files = match listing {
        Ok(files) => files,
        Err(e) => {
            tx.execute(
                "UPDATE schedule_fires SET result = 'ERROR', error = ?2 WHERE id = ?1",
                params![fire_id, e],
            )?;
            jobs::event(tx, None, "schedule.error", json!({"schedule": name, "error": e}))?;
            fired.result = "ERROR".into();
            return Ok(fired);
        }
    };
    let mut seen = tx.prepare_cached(
        "SELECT 1 FROM schedule_files f LEFT JOIN jobs j ON j.id = f.job_id
         WHERE f.schedule = ?1 AND f.path = ?2 AND f.size = ?3 AND f.mtime_ns = ?4 AND f.inode = ?5
         AND (f.job_id IS NULL OR j.status NOT IN ('FAILED', 'CANCELLED'))",
    )?;
    let mut new = Vec::new();
    for c in files {
        if !seen.exists(params![name, c.path, c.size, c.mtime_ns, c.inode])? {
            new.push(c);
        }
    }
    drop(seen);
    new.truncate(max_files.unwrap_or(usize::MAX));
    fired.files = new.len();
    if new.is_empty() {
        fired.result = "EMPTY".into();
        return Ok(fired);
    }
    job.sources = new.iter().map(|c| c.path.clone()).collect();
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
        json!({"schedule": name, "scheduled_at": rfc3339(at), "files": new.len(), "manual": manual, "late": late}),
    )?;
    fired.result = "QUEUED".into();
    fired.job_id = Some(job.id);
    Ok(fired)
}

const FIRE_COLUMNS: &str = "f.scheduled_at, f.fired_at, f.manual, f.late, f.result, f.files, f.job_id, j.status, f.error
     FROM schedule_fires f LEFT JOIN jobs j ON j.id = f.job_id";

fn fire_view(r: &Row) -> r2d2_sqlite::rusqlite::Result<FireView> {
    Ok(FireView {
        scheduled_at: rfc3339(r.get(0)?),
        fired_at: rfc3339(r.get(1)?),
        manual: r.get(2)?,
        late: r.get(3)?,
        result: r.get(4)?,
        files: r.get(5)?,
        job_id: r.get(6)?,
        job_status: r.get(7)?,
        error: r.get(8)?,
    })
}

/// What the tables hold for schedule `name`.
pub fn stored(conn: &Connection, name: &str) -> StoreResult<Stored> {
    let cursor = conn
        .query_row("SELECT cursor, missed FROM schedules WHERE name = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let last_fire = conn
        .query_row(
            &format!("SELECT {FIRE_COLUMNS} WHERE f.schedule = ?1 ORDER BY f.fired_at DESC, f.id DESC LIMIT 1"),
            [name],
            fire_view,
        )
        .optional()?;
    let last_success = conn.query_row(
        "SELECT MAX(COALESCE(j.finished, f.fired_at)) FROM schedule_fires f LEFT JOIN jobs j ON j.id = f.job_id
         WHERE f.schedule = ?1 AND (f.result = 'EMPTY' OR j.status = 'COMPLETED')",
        [name],
        |r| r.get(0),
    )?;
    let fires = conn.query_row("SELECT COUNT(*) FROM schedule_fires WHERE schedule = ?1", [name], |r| r.get(0))?;
    Ok(Stored {
        cursor,
        last_fire,
        last_success,
        fires,
    })
}

/// The last `limit` fires of one schedule, newest first.
pub fn history(conn: &Connection, name: &str, limit: i64) -> StoreResult<Vec<FireView>> {
    let mut st = conn.prepare(&format!(
        "SELECT {FIRE_COLUMNS} WHERE f.schedule = ?1 ORDER BY f.fired_at DESC, f.id DESC LIMIT ?2"
    ))?;
    let v = st.query_map(params![name, limit], fire_view)?.collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}
