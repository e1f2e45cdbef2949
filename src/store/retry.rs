//! Running a FAILED or CANCELLED job again: as itself (its history, attempt
//! count and finished parts kept; only the work that did not finish is queued
//! again), or as a new job that links back to it. A finished part is kept only
//! if the caller found its file whole (`broken` lists the ones it did not):
//! the store cannot read files, and must not, inside the writer's transaction.

use r2d2_sqlite::rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use super::jobs::{self, NewJob, Reject};
use super::{StoreError, StoreResult, Tx};
use crate::clock::now;

/// A finished part as the caller verifies it before a retry.
pub struct FinishedPart {
    pub source_n: i64,
    pub n: i64,
    pub path: String,
    pub bytes: i64,
    pub sha256: String,
}

/// The parts of a job recorded as finished.
pub fn finished_parts(c: &Connection, job_id: &str) -> StoreResult<Vec<FinishedPart>> {
    let mut st =
        c.prepare_cached("SELECT source_n, n, path, bytes, sha256 FROM parts WHERE job_id = ?1 AND state = 'DONE' ORDER BY source_n, n")?;
    let v = st
        .query_map([job_id], |r| {
            Ok(FinishedPart {
                source_n: r.get(0)?,
                n: r.get(1)?,
                path: r.get(2)?,
                bytes: r.get(3)?,
                sha256: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>();
    Ok(v?)
}

/// Refuses a retry of anything but an ended ingest job that did not complete.
pub fn check_retryable(c: &Connection, job_id: &str) -> StoreResult<()> {
    let row: Option<(String, String)> = c
        .query_row("SELECT kind, status FROM jobs WHERE id = ?1", [job_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match row {
        None => Err(StoreError::Refused(Reject::NotFound)),
        Some((kind, _)) if kind == "parent" => Err(StoreError::Refused(Reject::Conflict(
            "a campaign batch is not retried itself; retry its failed children with POST /v1/campaigns/{id}/retry-failed".into(),
        ))),
        Some((_, s)) if s == "FAILED" || s == "CANCELLED" => Ok(()),
        Some((_, s)) => Err(StoreError::Refused(Reject::Conflict(format!(
            "job is {s}; only a FAILED or CANCELLED job can be retried"
        )))),
    }
}

/// Runs the job again as itself. `broken` are finished parts whose file is
/// gone or changed: they are made again, with every task that did not finish;
/// the rest stay as they are. Returns how many parts were kept.
pub fn retry(tx: &Tx, job_id: &str, broken: &[(i64, i64)]) -> StoreResult<i64> {
    check_retryable(tx, job_id)?;
    let (previous, error, retries): (String, Option<String>, i64) =
        tx.query_row("SELECT status, error, retries FROM jobs WHERE id = ?1", [job_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let t = now();
    // Everything that did not finish runs again, its attempts counted afresh;
    // FINISH waits for the rest. A part hook a cancel dropped is owed again too.
    tx.execute(
        "UPDATE tasks SET state = CASE kind WHEN 'FINISH' THEN 'WAITING' ELSE 'READY' END, attempts = 0, error = NULL,
         not_before = 0, started = NULL, finished = NULL WHERE job_id = ?1 AND state IN ('FAILED', 'CANCELLED')",
        [job_id],
    )?;
    for (source_n, n) in broken {
        super::parts::reopen_part(tx, job_id, *source_n, *n)?;
    }
    let tasks: i64 = tx.query_row("SELECT COUNT(*) FROM tasks WHERE job_id = ?1", [job_id], |r| r.get(0))?;
    if tasks == 0 {
        // Cancelled as a draft: it never had tasks.
        jobs::queue_tasks(tx, job_id)?;
    }
    jobs::release_finish(tx, job_id)?;
    tx.execute(
        "UPDATE jobs SET status = 'QUEUED', error = NULL, finished = NULL, deliver_after_cancel = 0, retries = retries + 1,
         modified = ?2 WHERE id = ?1",
        params![job_id, t],
    )?;
    let kept: i64 = tx.query_row("SELECT COUNT(*) FROM parts WHERE job_id = ?1 AND state = 'DONE'", [job_id], |r| {
        r.get(0)
    })?;
    let error = error.and_then(|e| serde_json::from_str::<serde_json::Value>(&e).ok());
    jobs::event(
        tx,
        Some(job_id),
        "job.retried",
        json!({"retry": retries + 1, "previous_status": previous, "previous_error": error, "parts_kept": kept, "parts_remade": broken.len()}),
    )?;
    super::watch_files::reopen_for_retry(tx, job_id)?;
    Ok(kept)
}

/// Runs the job again as a new job (`job`, made by the caller from the old
/// one), linked back to it; the old job stays as it ended.
pub fn retry_as_new(tx: &Tx, old: &str, job: &NewJob) -> StoreResult<()> {
    check_retryable(tx, old)?;
    jobs::create(tx, job)?;
    tx.execute("UPDATE jobs SET retry_of = ?2 WHERE id = ?1", params![job.id, old])?;
    jobs::event(tx, Some(old), "job.retried_as", json!({"job_id": job.id}))?;
    jobs::event(tx, Some(&job.id), "job.retry_of", json!({"job_id": old}))
}
