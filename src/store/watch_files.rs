//! The `watch_files` table: one row per file a watched inbox took, from the
//! claim (CLAIMING) through its job (QUEUED) to where the file went when the
//! job ended (DONE, with its disposition and final path). The watcher in
//! `triggers::watch` moves the files; every row it reads or writes goes
//! through here, and so does the job's record of where its source now lives.

use r2d2_sqlite::rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::jobs::{self, NewJob};
pub use super::model::Disposition;
use super::model::JobStatus;
use super::{StoreResult, Tx};
use crate::clock::now;

/// A claim a crash may have interrupted between its steps.
pub struct Claiming {
    pub row: i64,
    pub watch: String,
    pub name: String,
    pub processing: String,
}

/// A file whose job has ended and which has not been moved on yet.
pub struct Ended {
    pub row: i64,
    pub watch: String,
    pub name: String,
    pub job_id: String,
    /// Where the file is now: `processing/`, or `failed/` for a retried job.
    pub path: String,
    pub status: JobStatus,
    pub error: Option<String>,
}

/// What a job's view says of the watched file it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedFile {
    pub watch: String,
    pub name: String,
    pub sha256: Option<String>,
    /// Where the file went, once its job has ended; None while it is processed.
    pub disposition: Option<Disposition>,
    /// Its path there; None while it is processed and when it was deleted.
    pub path: Option<String>,
}

/// What step 3 of a claim did.
pub enum Taken {
    Job,
    /// The same content was taken before, by this job from this file name.
    Duplicate {
        job_id: String,
        name: String,
    },
}

/// Step 1 of a claim: the row, before the file is moved.
pub fn record_claim(tx: &Tx, watch: &str, name: &str, size: u64, inode: u64, processing: &str) -> StoreResult<i64> {
    tx.execute(
        "INSERT INTO watch_files (watch, name, size, inode, state, processing_path, detected) VALUES (?1, ?2, ?3, ?4, 'CLAIMING', ?5, ?6)",
        params![watch, name, size as i64, inode as i64, processing, now()],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Step 3 of a claim, in one transaction: the file's job and its row QUEUED;
/// or, when `skip_duplicates` and this inbox took the same content before for
/// a job that did not fail, the row DONE as a duplicate. Checked in the
/// transaction that records the hash, so two copies claimed back to back
/// cannot both pass. A job pruned by retention leaves its row with job_id NULL
/// and its outcome.
pub fn take(tx: &Tx, row: i64, watch: &str, sha256: &str, skip_duplicates: bool, job: &NewJob) -> StoreResult<Taken> {
    let earlier: Option<(String, String)> = tx
        .query_row(
            "SELECT COALESCE(f.job_id, '(pruned)'), f.name FROM watch_files f LEFT JOIN jobs j ON j.id = f.job_id
             WHERE f.watch = ?1 AND f.sha256 = ?2 AND f.id != ?3
             AND ((j.id IS NOT NULL AND j.status NOT IN ('FAILED', 'CANCELLED')) OR (f.job_id IS NULL AND f.outcome = 'COMPLETED'))
             ORDER BY f.id LIMIT 1",
            params![watch, sha256, row],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let (true, Some((job_id, name))) = (skip_duplicates, &earlier) {
        tx.execute(
            "UPDATE watch_files SET state = 'DONE', sha256 = ?2, outcome = 'DUPLICATE', finished = ?3 WHERE id = ?1",
            params![row, sha256, now()],
        )?;
        jobs::event(
            tx,
            Some(job_id),
            "watch.duplicate",
            json!({"watch": watch, "source": job.sources[0], "sha256": sha256, "skipped": true}),
        )?;
        return Ok(Taken::Duplicate {
            job_id: job_id.clone(),
            name: name.clone(),
        });
    }
    jobs::create(tx, job)?;
    tx.execute(
        "UPDATE watch_files SET state = 'QUEUED', job_id = ?2, sha256 = ?3 WHERE id = ?1",
        params![row, job.id, sha256],
    )?;
    jobs::event(
        tx,
        Some(&job.id),
        "watch.claimed",
        json!({"watch": watch, "source": job.sources[0], "sha256": sha256, "same_content_as": earlier.map(|(j, _)| j)}),
    )?;
    Ok(Taken::Job)
}

/// Claims left between steps 1 and 3.
pub fn claiming(c: &Connection) -> StoreResult<Vec<Claiming>> {
    let mut st = c.prepare("SELECT id, watch, name, processing_path FROM watch_files WHERE state = 'CLAIMING'")?;
    let v = st
        .query_map([], |r| {
            Ok(Claiming {
                row: r.get(0)?,
                watch: r.get(1)?,
                name: r.get(2)?,
                processing: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>();
    Ok(v?)
}

/// A claim whose file was never moved: the file is still in the inbox and is
/// detected again.
pub fn forget(tx: &Tx, row: i64) -> StoreResult<()> {
    tx.execute("DELETE FROM watch_files WHERE id = ?1", [row])?;
    Ok(())
}

/// Skipped duplicates, as (watch, path in `processing/`): the ones a crash
/// left there are moved on at start.
pub fn duplicates(c: &Connection) -> StoreResult<Vec<(String, String)>> {
    let mut st = c.prepare("SELECT watch, processing_path FROM watch_files WHERE outcome = 'DUPLICATE' AND final_path IS NULL")?;
    let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>();
    Ok(v?)
}

/// Records where a skipped duplicate went.
pub fn duplicate_moved(tx: &Tx, processing: &str, to: &str) -> StoreResult<()> {
    tx.execute(
        "UPDATE watch_files SET disposition = ?3, final_path = ?2 WHERE processing_path = ?1 AND outcome = 'DUPLICATE'",
        params![processing, to, Disposition::Duplicates],
    )?;
    Ok(())
}

/// Files whose job has ended and that are still to be moved on.
pub fn ended(c: &Connection) -> StoreResult<Vec<Ended>> {
    let mut st = c.prepare_cached(
        "SELECT f.id, f.watch, f.name, f.job_id, s.path, j.status, j.error FROM watch_files f
         JOIN jobs j ON j.id = f.job_id JOIN sources s ON s.job_id = f.job_id AND s.n = 1
         WHERE f.state = 'QUEUED' AND j.status IN ('COMPLETED', 'FAILED', 'CANCELLED')",
    )?;
    let v = st
        .query_map([], |r| {
            Ok(Ended {
                row: r.get(0)?,
                watch: r.get(1)?,
                name: r.get(2)?,
                job_id: r.get(3)?,
                path: r.get(4)?,
                status: r.get(5)?,
                error: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>();
    Ok(v?)
}

/// True while some taken file's job has not ended: the watcher then looks
/// often, so the file moves on soon after its job ends.
pub fn any_in_progress(c: &Connection) -> StoreResult<bool> {
    Ok(c.query_row("SELECT EXISTS (SELECT 1 FROM watch_files WHERE state = 'QUEUED')", [], |r| r.get(0))?)
}

/// The file of an ended job has been moved on: the row is DONE with where it
/// went, and the job's source points there (so a retry reads it from there),
/// with an event saying so.
pub fn finished(tx: &Tx, f: &Ended, disposition: Disposition, path: Option<&str>) -> StoreResult<()> {
    tx.execute(
        "UPDATE watch_files SET state = 'DONE', finished = ?2, outcome = ?3, disposition = ?4, final_path = ?5 WHERE id = ?1",
        params![f.row, now(), f.status, disposition, path],
    )?;
    if let Some(p) = path {
        tx.execute("UPDATE sources SET path = ?2 WHERE job_id = ?1 AND n = 1", params![f.job_id, p])?;
    }
    jobs::event(
        tx,
        Some(&f.job_id),
        "watch.file_moved",
        json!({"watch": f.watch, "from": f.path, "disposition": disposition, "path": path}),
    )
}

/// A retried job's file is taken up again: moved on once more when the retry ends.
pub fn reopen_for_retry(tx: &Tx, job_id: &str) -> StoreResult<()> {
    tx.execute(
        "UPDATE watch_files SET state = 'QUEUED', finished = NULL, outcome = NULL WHERE job_id = ?1 AND state = 'DONE'
         AND disposition IN ('failed', 'kept')",
        [job_id],
    )?;
    Ok(())
}

/// The watched file a job came from, if it came from one.
pub fn for_job(c: &Connection, job_id: &str) -> StoreResult<Option<WatchedFile>> {
    let mut st = c.prepare_cached(
        "SELECT watch, name, sha256, disposition, final_path FROM watch_files WHERE job_id = ?1 ORDER BY id DESC LIMIT 1",
    )?;
    Ok(st
        .query_row([job_id], |r| {
            Ok(WatchedFile {
                watch: r.get(0)?,
                name: r.get(1)?,
                sha256: r.get(2)?,
                disposition: r.get(3)?,
                path: r.get(4)?,
            })
        })
        .optional()?)
}

/// What a watched inbox has taken, for the dashboard and `GET /v1/watches`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchSummary {
    /// Files taken (claimed) in all.
    pub taken: i64,
    /// Taken files whose job has not ended.
    pub in_progress: i64,
    /// Taken files whose job failed or was cancelled.
    pub failed: i64,
    /// Files skipped as duplicates of content taken before.
    pub duplicates: i64,
    pub last_taken: Option<TakenFile>,
    /// The last few failures, newest first.
    pub recent_failures: Vec<TakenFile>,
}

/// One taken file: its name, its job, when, and where it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakenFile {
    pub name: String,
    pub job_id: Option<String>,
    /// When it was detected (last_taken) or its job ended (failures), RFC 3339.
    pub at: String,
    pub path: Option<String>,
}

pub fn summary(c: &Connection, watch: &str) -> StoreResult<WatchSummary> {
    let (taken, in_progress, failed, duplicates) = c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(state = 'QUEUED'), 0), COALESCE(SUM(outcome IN ('FAILED', 'CANCELLED')), 0),
                COALESCE(SUM(outcome = 'DUPLICATE'), 0) FROM watch_files WHERE watch = ?1",
        [watch],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let one = |r: &r2d2_sqlite::rusqlite::Row| -> r2d2_sqlite::rusqlite::Result<TakenFile> {
        Ok(TakenFile {
            name: r.get(0)?,
            job_id: r.get(1)?,
            at: crate::clock::rfc3339(r.get(2)?),
            path: r.get(3)?,
        })
    };
    let last_taken = c
        .prepare_cached("SELECT name, job_id, detected, COALESCE(final_path, processing_path) FROM watch_files WHERE watch = ?1 ORDER BY id DESC LIMIT 1")?
        .query_row([watch], one)
        .optional()?;
    let recent_failures = c
        .prepare_cached(
            "SELECT name, job_id, finished, final_path FROM watch_files WHERE watch = ?1 AND outcome IN ('FAILED', 'CANCELLED')
             ORDER BY finished DESC LIMIT 5",
        )?
        .query_map([watch], one)?
        .collect::<Result<_, _>>()?;
    Ok(WatchSummary {
        taken,
        in_progress,
        failed,
        duplicates,
        last_taken,
        recent_failures,
    })
}
