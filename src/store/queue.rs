//! The queue: which task runs next (`claim`, fair between jobs), when the
//! next one becomes runnable, and the pause switch. The claim's rules are
//! written once here and checked against a model in `tests/it/lifecycle.rs`.

use r2d2_sqlite::rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use super::jobs::{event, Task};
use super::{StoreResult, Tx};
use crate::clock::now;

/// Which tasks a thread claims: the engine's workers take PLAN, PACK and
/// FINISH; the hook threads take HOOK, so delivering parts overlaps packing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Work,
    Hooks,
}

/// The next task to run, marked RUNNING, or none (nothing ready, or the queue
/// is paused). Jobs of a higher priority go first; between jobs of the same
/// priority, the one running fewest tasks now, then the oldest — so a small
/// job submitted behind a large one starts at the next free worker instead of
/// after every part of the large one. A job at its `max_concurrency` is passed over.
pub fn claim(tx: &Tx, claim: Claim) -> StoreResult<Option<Task>> {
    if queue_state(tx)?.paused {
        return Ok(None);
    }
    let t = now();
    // Each probe walks a partial index of jobs in claim order and looks into
    // each job for a READY task, instead of sorting every READY task of every
    // queued job. Returns the job's priority with the task.
    let probe = |index: &str, filter: &str, order: &str| -> StoreResult<Option<(i64, Task)>> {
        let sql = format!(
            "SELECT t.id, t.job_id, t.kind, t.source_n, t.part_n, t.attempts, j.priority FROM jobs j INDEXED BY {index}
             JOIN tasks t INDEXED BY tasks_ready_job ON t.job_id = j.id AND t.state = 'READY'
             WHERE t.not_before <= ?1 AND j.status IN ('QUEUED', 'PROCESSING') AND {filter}
             ORDER BY {order}, t.id LIMIT 1"
        );
        let found = tx.query_row(&sql, [t], claimed);
        Ok(found.optional()?)
    };
    let task = match claim {
        // Live jobs' parts first, then those of jobs cancelled with their
        // parts delivered (few: a cancel is rare, its hooks soon run).
        Claim::Hooks => match probe("jobs_runnable", "t.kind = 'HOOK'", "j.priority DESC, j.seq")? {
            Some(t) => Some(t),
            None => cancelled_hook(tx, t)?,
        },
        Claim::Work => {
            // The first idle job in (priority, age) order…
            let idle = probe(
                "jobs_runnable",
                "t.kind != 'HOOK' AND j.running = 0 AND (j.max_concurrency IS NULL OR j.max_concurrency > 0)",
                "j.priority DESC, j.seq",
            )?;
            // …unless a busy job (there are at most as many as workers) has a
            // higher priority: then the busy job running least.
            let busy = probe(
                "jobs_busy",
                "t.kind != 'HOOK' AND j.running > 0 AND (j.max_concurrency IS NULL OR j.running < j.max_concurrency)",
                "j.priority DESC, j.running, j.seq",
            )?;
            match (idle, busy) {
                (Some(i), Some(b)) if b.0 > i.0 => Some(b),
                (Some(i), _) => Some(i),
                (None, b) => b,
            }
        }
    };
    let Some((_, task)) = task else { return Ok(None) };
    tx.execute(
        "UPDATE tasks SET state = 'RUNNING', attempts = attempts + 1, started = ?2 WHERE id = ?1",
        params![task.id, t],
    )?;
    let changed = tx.execute(
        "UPDATE jobs SET status = 'PROCESSING', started = COALESCE(started, ?2), last_progress = COALESCE(last_progress, ?2), modified = ?2
         WHERE id = ?1 AND status = 'QUEUED'",
        params![task.job_id, t],
    )?;
    if changed > 0 {
        event(tx, Some(&task.job_id), "job.processing", json!({}))?;
    }
    Ok(Some(task))
}

/// A claim query's row: the task (its attempt about to be counted) and its
/// job's priority. Columns: t.id, t.job_id, t.kind, t.source_n, t.part_n,
/// t.attempts, j.priority.
fn claimed(r: &r2d2_sqlite::rusqlite::Row) -> r2d2_sqlite::rusqlite::Result<(i64, Task)> {
    let task = Task {
        id: r.get(0)?,
        job_id: r.get(1)?,
        kind: r.get(2)?,
        source_n: r.get(3)?,
        part_n: r.get(4)?,
        attempts: r.get::<_, i64>(5)? + 1,
    };
    Ok((r.get(6)?, task))
}

/// The oldest READY HOOK task of a job cancelled with its parts delivered.
fn cancelled_hook(tx: &Tx, t: f64) -> StoreResult<Option<(i64, Task)>> {
    let found = tx.query_row(
        "SELECT t.id, t.job_id, t.kind, t.source_n, t.part_n, t.attempts, j.priority FROM tasks t INDEXED BY tasks_ready_hooks
         JOIN jobs j ON j.id = t.job_id
         WHERE t.state = 'READY' AND t.kind = 'HOOK' AND t.not_before <= ?1 AND j.status = 'CANCELLED' AND j.deliver_after_cancel
         ORDER BY t.id LIMIT 1",
        [t],
        claimed,
    );
    Ok(found.optional()?)
}

/// The queue's pause switch.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct QueueState {
    pub paused: bool,
    /// When it was paused (Unix seconds).
    pub since: Option<f64>,
    pub reason: Option<String>,
}

pub fn queue_state(conn: &Connection) -> StoreResult<QueueState> {
    Ok(conn.query_row("SELECT paused, since, reason FROM queue WHERE id = 1", [], |r| {
        Ok(QueueState {
            paused: r.get(0)?,
            since: r.get(1)?,
            reason: r.get(2)?,
        })
    })?)
}

/// Pauses (`Some(reason)`) or resumes (`None`) the queue; a no-op when it is
/// already so. Recorded as an event either way it changes.
pub fn set_paused(tx: &Tx, pause: Option<&str>) -> StoreResult<QueueState> {
    let was = queue_state(tx)?;
    if was.paused != pause.is_some() {
        match pause {
            Some(reason) => {
                let reason = (!reason.is_empty()).then_some(reason);
                tx.execute(
                    "UPDATE queue SET paused = 1, since = ?1, reason = ?2 WHERE id = 1",
                    params![now(), reason],
                )?;
                event(tx, None, "queue.paused", json!({"reason": reason}))?;
            }
            None => {
                tx.execute("UPDATE queue SET paused = 0, since = NULL, reason = NULL WHERE id = 1", [])?;
                event(tx, None, "queue.resumed", json!({}))?;
            }
        }
    }
    queue_state(tx)
}

/// Seconds until the earliest READY task a `claim` thread could take becomes
/// runnable, if any is waiting. None while the queue is paused, and tasks of
/// a job at its `max_concurrency` do not count: a finished task's write wakes the
/// threads, so they need not poll for either.
pub fn next_ready_in(conn: &Connection, claim: Claim) -> StoreResult<Option<f64>> {
    if queue_state(conn)?.paused {
        return Ok(None);
    }
    let kind = match claim {
        Claim::Work => "t.kind != 'HOOK' AND (j.max_concurrency IS NULL OR j.running < j.max_concurrency)",
        Claim::Hooks => "t.kind = 'HOOK' AND (j.status != 'CANCELLED' OR j.deliver_after_cancel)",
    };
    conn.query_row(
        &format!("SELECT MIN(t.not_before) FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE t.state = 'READY' AND j.status IN ('QUEUED', 'PROCESSING', 'CANCELLED') AND {kind}"),
        [],
        |r| r.get::<_, Option<f64>>(0),
    )
    .map(|v| v.map(|nb| (nb - now()).max(0.0)))
    .map_err(Into::into)
}

/// Jobs QUEUED or PROCESSING (systemd's STATUS line).
pub fn jobs_waiting_or_running(c: &Connection) -> StoreResult<i64> {
    Ok(
        c.query_row("SELECT COUNT(*) FROM jobs WHERE status IN ('QUEUED', 'PROCESSING')", [], |r| {
            r.get(0)
        })?,
    )
}
