//! The job lifecycle in the database: creating jobs and their tasks, claiming,
//! finishing, retrying and failing tasks, recording planned and finished parts,
//! and the events and counters that go with each step. Write functions take the
//! writer's transaction; the few reads the engine needs take a pooled read
//! connection. What the API shows of a job is built in `views`.

use std::path::Path;

use r2d2_sqlite::rusqlite::{self, params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::model::{JobStatus, TaskKind};
pub use super::Reject;
use super::{StoreError, StoreResult, Tx};
use crate::clock::now;
use crate::split::{Compression, OnMissing};

/// Settings of one job, stored as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub batch_size: usize,
    /// A part closes before its files would pass this many bytes; None for no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_part_bytes: Option<u64>,
    pub compression: Compression,
    pub on_missing_file: OnMissing,
    pub manifest: String,
    pub file_column: Option<String>,
    /// The job's own webhook (a host in `webhooks.allowed_hosts`), told of
    /// its end and its parts' delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

impl Settings {
    /// Split options for one source of a job with these settings, its parts
    /// going to `out`. The one place a job's settings become a split's.
    pub fn split_options(&self, source: &str, out: &str) -> crate::split::SplitOptions {
        let mut opts = crate::split::SplitOptions::new(source, out);
        opts.batch_size = self.batch_size;
        opts.max_part_bytes = self.max_part_bytes;
        opts.manifest = self.manifest.clone();
        opts.file_column = self.file_column.clone();
        opts.compression = self.compression;
        opts.on_missing_file = self.on_missing_file;
        opts
    }
}

/// What a client calls a job: a name, a description, labels and its own id
/// (a batch name, a download id), returned everywhere and passed to hooks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct About {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub external_ref: Option<String>,
}

impl About {
    /// Reads `name, description, labels, external_ref` from column `first` on.
    pub fn from_row(r: &rusqlite::Row, first: usize) -> rusqlite::Result<About> {
        Ok(About {
            name: r.get(first)?,
            description: r.get(first + 1)?,
            labels: serde_json::from_str(&r.get::<_, String>(first + 2)?).unwrap_or_default(),
            external_ref: r.get(first + 3)?,
        })
    }
}

pub struct NewJob {
    pub id: String,
    pub kind: String,
    pub sources: Vec<String>,
    pub settings: Settings,
    pub trigger: String,
    pub submit: bool,
    pub priority: i64,
    /// The most tasks of this job running at once (PLAN, PACK, FINISH); None for no cap.
    pub max_concurrency: Option<i64>,
    /// The client's own words and id for the job.
    pub about: About,
    pub out_dir: String,
    pub idempotency: Option<(String, String)>,
    /// Set for a campaign's parent batches and their child jobs.
    pub campaign: Option<CampaignLink>,
}

/// Where a job sits in a campaign.
#[derive(Debug, Clone)]
pub struct CampaignLink {
    pub campaign_id: String,
    /// The parent batch that queued this child job.
    pub parent_job_id: Option<String>,
    /// For a parent batch: its first position in the collection.
    pub start_position: Option<i64>,
}

impl NewJob {
    /// Where a job's parts go when the request names no directory.
    pub fn default_out_dir(data_dir: &Path, id: &str) -> std::path::PathBuf {
        data_dir.join("parts").join(id)
    }

    /// An ingest job, queued at once, whose parts go to `out_dir` or, by
    /// default, to `DATA_DIR/parts/{id}` ([`NewJob::default_out_dir`]).
    pub fn ingest(id: String, data_dir: &Path, out_dir: Option<&Path>, sources: Vec<String>, settings: Settings, trigger: &str) -> NewJob {
        let out_dir = out_dir.map_or_else(|| NewJob::default_out_dir(data_dir, &id), Path::to_path_buf);
        NewJob {
            out_dir: out_dir.to_string_lossy().into_owned(),
            id,
            kind: "ingest".into(),
            sources,
            settings,
            trigger: trigger.into(),
            submit: true,
            priority: 0,
            max_concurrency: None,
            about: About::default(),
            idempotency: None,
            campaign: None,
        }
    }
}

/// Event kinds listed under a job's "errors".
pub(super) const ERROR_KINDS: [&str; 4] = ["row.skipped", "task.retry", "job.failed", "hook.failed"];

pub fn event(tx: &Tx, job_id: Option<&str>, kind: &str, data: Value) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO events (job_id, at, kind, data) VALUES (?1, ?2, ?3, ?4)",
        params![job_id, now(), kind, data.to_string()],
    )?;
    if ERROR_KINDS.contains(&kind) {
        // Lets the status view skip the events query for the (usual) job without errors.
        tx.execute("UPDATE jobs SET error_events = error_events + 1 WHERE id = ?1", [job_id])?;
    }
    Ok(())
}

/// Creates a job (or returns the one an idempotency key already made).
/// `Ok((id, created))`: `created` is false for an idempotent replay.
pub fn create(tx: &Tx, job: &NewJob) -> StoreResult<(String, bool)> {
    if let Some((key, hash)) = &job.idempotency {
        let existing: Option<(String, String)> = tx
            .query_row("SELECT body_hash, job_id FROM idempotency WHERE key = ?1", [key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((h, id)) = existing {
            return if &h == hash {
                Ok((id, false))
            } else {
                Err(StoreError::Refused(Reject::KeyReused))
            };
        }
    }
    let t = now();
    let seq: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs", [], |r| r.get(0))?;
    let status = if job.submit { "QUEUED" } else { "DRAFT" };
    let link = job.campaign.as_ref();
    tx.execute(
        "INSERT INTO jobs (id, seq, kind, status, trigger, priority, settings, out_dir, created, modified,
                           campaign_id, parent_job_id, start_position, max_concurrency, name, description, labels, external_ref)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        params![
            job.id,
            seq,
            job.kind,
            status,
            job.trigger,
            job.priority,
            serde_json::to_string(&job.settings).unwrap(),
            job.out_dir,
            t,
            link.map(|l| &l.campaign_id),
            link.and_then(|l| l.parent_job_id.as_ref()),
            link.and_then(|l| l.start_position),
            job.max_concurrency,
            job.about.name,
            job.about.description,
            serde_json::to_string(&job.about.labels).unwrap(),
            job.about.external_ref,
        ],
    )?;
    for (n, path) in job.sources.iter().enumerate() {
        tx.execute(
            "INSERT INTO sources (job_id, n, path) VALUES (?1, ?2, ?3)",
            params![job.id, n as i64 + 1, path],
        )?;
    }
    if let Some((key, hash)) = &job.idempotency {
        tx.execute(
            "INSERT INTO idempotency (key, body_hash, job_id, created) VALUES (?1, ?2, ?3, ?4)",
            params![key, hash, job.id, t],
        )?;
    }
    // A parent batch has no tasks: the campaign runner expands it into child
    // jobs, and records that as its own event.
    if job.kind == "parent" {
        return Ok((job.id.clone(), true));
    }
    event(
        tx,
        Some(&job.id),
        "job.created",
        json!({"status": status, "sources": job.sources.len(), "trigger": job.trigger}),
    )?;
    if job.submit {
        queue_tasks(tx, &job.id)?;
    }
    Ok((job.id.clone(), true))
}

/// A campaign's parent batch could not list its collection: the batch fails.
pub fn parent_failed(tx: &Tx, job_id: &str, error: &Value) -> StoreResult<()> {
    let t = now();
    tx.execute(
        "UPDATE jobs SET status = 'FAILED', error = ?2, started = ?3, finished = ?3, modified = ?3 WHERE id = ?1",
        params![job_id, error.to_string(), t],
    )?;
    event(tx, Some(job_id), "job.failed", json!({"error": error}))
}

/// A campaign's parent batch has queued its children (`queued`) and skipped
/// those ingested before (`skipped`); `next` is where the next batch starts.
pub fn parent_expanded(tx: &Tx, job_id: &str, queued: i64, skipped: i64, next: Option<i64>) -> StoreResult<()> {
    let t = now();
    tx.execute(
        "UPDATE jobs SET status = 'COMPLETED', started = ?2, finished = ?2, modified = ?2, total_rows = ?3, processed_rows = ?3,
         skipped_rows = ?4, next_start_position = ?5 WHERE id = ?1",
        params![job_id, t, queued + skipped, skipped, next],
    )?;
    Ok(())
}

/// PLAN per source, and a FINISH that waits for everything else.
pub(super) fn queue_tasks(tx: &Tx, job_id: &str) -> StoreResult<()> {
    let t = now();
    tx.execute(
        "INSERT INTO tasks (job_id, kind, source_n, state, created) SELECT job_id, 'PLAN', n, 'READY', ?2 FROM sources WHERE job_id = ?1 ORDER BY n",
        params![job_id, t],
    )?;
    tx.execute(
        "INSERT INTO tasks (job_id, kind, state, created) VALUES (?1, 'FINISH', 'WAITING', ?2)",
        params![job_id, t],
    )?;
    Ok(())
}

pub(super) fn status_of(tx: &Connection, job_id: &str) -> StoreResult<Option<String>> {
    Ok(tx
        .query_row("SELECT status FROM jobs WHERE id = ?1", [job_id], |r| r.get(0))
        .optional()?)
}

pub fn add_sources(tx: &Tx, job_id: &str, paths: &[String]) -> StoreResult<()> {
    match status_of(tx, job_id)?.as_deref() {
        None => return Err(StoreError::Refused(Reject::NotFound)),
        Some("DRAFT") => {}
        Some(s) => {
            return Err(StoreError::Refused(Reject::Conflict(format!(
                "job is {s}; sources can only be added to a DRAFT job"
            ))))
        }
    }
    let next: i64 = tx.query_row("SELECT COALESCE(MAX(n), 0) + 1 FROM sources WHERE job_id = ?1", [job_id], |r| {
        r.get(0)
    })?;
    for (i, p) in paths.iter().enumerate() {
        tx.execute(
            "INSERT INTO sources (job_id, n, path) VALUES (?1, ?2, ?3)",
            params![job_id, next + i as i64, p],
        )?;
    }
    tx.execute("UPDATE jobs SET modified = ?2 WHERE id = ?1", params![job_id, now()])?;
    event(tx, Some(job_id), "job.sources_added", json!({"added": paths.len()}))?;
    Ok(())
}

pub fn submit(tx: &Tx, job_id: &str) -> StoreResult<()> {
    match status_of(tx, job_id)?.as_deref() {
        None => return Err(StoreError::Refused(Reject::NotFound)),
        Some("DRAFT") => {}
        Some(s) => {
            return Err(StoreError::Refused(Reject::Conflict(format!(
                "job is {s}; only a DRAFT job can be submitted"
            ))))
        }
    }
    let sources: i64 = tx.query_row("SELECT COUNT(*) FROM sources WHERE job_id = ?1", [job_id], |r| r.get(0))?;
    if sources == 0 {
        return Err(StoreError::Refused(Reject::Conflict(
            "job has no sources; add some before submitting".into(),
        )));
    }
    tx.execute(
        "UPDATE jobs SET status = 'QUEUED', modified = ?2 WHERE id = ?1",
        params![job_id, now()],
    )?;
    queue_tasks(tx, job_id)?;
    event(tx, Some(job_id), "job.queued", json!({}))?;
    Ok(())
}

/// Cancels a job: its queued work is dropped, except, with `deliver_parts`,
/// the HOOK tasks of parts already published (and of parts a running PACK
/// still publishes), which are delivered as if the job went on.
pub fn cancel(tx: &Tx, job_id: &str, deliver_parts: bool) -> StoreResult<()> {
    match status_of(tx, job_id)?.as_deref() {
        None => return Err(StoreError::Refused(Reject::NotFound)),
        Some("DRAFT" | "QUEUED" | "PROCESSING") => {}
        Some(s) => return Err(StoreError::Refused(Reject::Conflict(format!("job is already {s}")))),
    }
    let t = now();
    tx.execute(
        "UPDATE jobs SET status = 'CANCELLED', modified = ?2, finished = ?2, deliver_after_cancel = ?3 WHERE id = ?1",
        params![job_id, t, deliver_parts],
    )?;
    settle_if_ended(tx, job_id)?;
    event(tx, Some(job_id), "job.cancelled", json!({"parts_delivered": deliver_parts}))?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: i64,
    pub job_id: String,
    pub kind: TaskKind,
    pub source_n: Option<i64>,
    pub part_n: Option<i64>,
    pub attempts: i64,
}

/// Buckets (upper bounds, seconds) of `batchd_task_duration_seconds`; the
/// counters are named after them, so changing this list starts new series.
pub const TASK_SECONDS_BUCKETS: [f64; 8] = [0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0];

/// Adds `by` to the running total `name` (see the `counters` table).
pub fn count(tx: &Tx, name: &str, by: f64) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = value + ?2",
        params![name, by],
    )?;
    Ok(())
}

/// Bucket counter names use the bound as SQLite prints a REAL (0.01, 1.0, 600.0).
pub fn bucket_name(kind: &str, le: f64) -> String {
    format!("task_seconds_bucket:{kind}:{le:?}")
}

/// Marks a task done and releases the job's FINISH when nothing else is left.
pub fn task_done(tx: &Tx, task_id: i64, job_id: &str) -> StoreResult<()> {
    let t = now();
    let done = tx.execute(
        "UPDATE tasks SET state = 'DONE', finished = ?2 WHERE id = ?1 AND state = 'RUNNING'",
        params![task_id, t],
    )?;
    if done > 0 {
        let (kind, seconds): (String, Option<f64>) =
            tx.query_row("SELECT kind, ?2 - started FROM tasks WHERE id = ?1", params![task_id, t], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if let Some(d) = seconds {
            for le in TASK_SECONDS_BUCKETS.iter().filter(|&&le| d <= le) {
                count(tx, &bucket_name(&kind, *le), 1.0)?;
            }
            count(tx, &format!("task_seconds_count:{kind}"), 1.0)?;
            count(tx, &format!("task_seconds_sum:{kind}"), d)?;
        }
    }
    release_finish(tx, job_id)
}

/// Makes the job's FINISH task READY once nothing else of the job is left to run.
pub(super) fn release_finish(tx: &Tx, job_id: &str) -> StoreResult<()> {
    let open: i64 = tx.query_row(
        "SELECT COUNT(*) FROM tasks WHERE job_id = ?1 AND kind != 'FINISH' AND state IN ('READY', 'RUNNING', 'WAITING')",
        [job_id],
        |r| r.get(0),
    )?;
    if open == 0 {
        tx.execute(
            "UPDATE tasks SET state = 'READY' WHERE job_id = ?1 AND kind = 'FINISH' AND state = 'WAITING'",
            [job_id],
        )?;
    }
    Ok(())
}

/// Puts a task back to READY without judging it (shutdown, or a crash found at start).
pub fn requeue(tx: &Tx, task_id: i64) -> StoreResult<()> {
    tx.execute(
        "UPDATE tasks SET state = 'READY', started = NULL WHERE id = ?1 AND state = 'RUNNING'",
        [task_id],
    )?;
    Ok(())
}

/// A job that has ended owes no work. Work can be queued for it after it ended:
/// a PLAN or PACK that was running when the job was cancelled still records its
/// PACK or HOOK tasks, and a failed attempt of such a task is still judged worth
/// a retry. Those tasks are CANCELLED at once rather than left READY for ever
/// (found by the lifecycle model test).
pub(super) fn settle_if_ended(tx: &Tx, job_id: &str) -> StoreResult<()> {
    tx.execute(
        &format!(
            "UPDATE tasks SET state = 'CANCELLED', finished = ?2 WHERE job_id = ?1 AND state IN ('READY', 'WAITING')
             AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND status IN ('COMPLETED', 'FAILED', 'CANCELLED')) AND NOT {DELIVERY_OWED}"
        ),
        params![job_id, now()],
    )?;
    Ok(())
}

/// Of a task row (`tasks`, unaliased): a part delivery a job cancelled with
/// `hooks.on_cancel = "deliver"` still owes, though the job has ended.
const DELIVERY_OWED: &str = "(tasks.kind = 'HOOK' AND EXISTS (SELECT 1 FROM jobs d WHERE d.id = tasks.job_id AND d.status = 'CANCELLED' AND d.deliver_after_cancel))";

/// True when a stopped task should run again: its job goes on, or it is a
/// delivery its cancelled job still owes.
fn still_owed(tx: &Tx, task_id: i64) -> StoreResult<bool> {
    Ok(tx.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM jobs j WHERE j.id = tasks.job_id AND j.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')) OR {DELIVERY_OWED}
             FROM tasks WHERE id = ?1"
        ),
        [task_id],
        |r| r.get(0),
    )
    .optional()?
    .unwrap_or(false))
}

/// A task stopped before it finished (by a cancel, a sibling task failing the
/// job, or a shutdown). Its job's status, read in this transaction, decides: an
/// ended (or vanished) job's task is CANCELLED; otherwise the task runs again and
/// the attempt is not held against it.
pub fn stopped(tx: &Tx, task_id: i64, job_id: &str) -> StoreResult<()> {
    if !still_owed(tx, task_id)? {
        tx.execute(
            "UPDATE tasks SET state = 'CANCELLED', finished = ?2 WHERE id = ?1",
            params![task_id, now()],
        )?;
        event(tx, Some(job_id), "task.cancelled", json!({"task": task_id}))
    } else {
        tx.execute("UPDATE tasks SET attempts = MAX(attempts - 1, 0) WHERE id = ?1", [task_id])?;
        requeue(tx, task_id)
    }
}

/// A task that did not start for want of disk space: READY again after
/// `delay` seconds, the attempt not held against it. `told` records the wait
/// in the job's history (once per wait, not every few seconds).
pub fn postponed(tx: &Tx, task_id: i64, job_id: &str, delay: f64, told: Option<&Value>) -> StoreResult<()> {
    tx.execute(
        "UPDATE tasks SET state = 'READY', started = NULL, attempts = MAX(attempts - 1, 0), not_before = ?2
         WHERE id = ?1 AND state = 'RUNNING'",
        params![task_id, now() + delay],
    )?;
    if let Some(data) = told {
        event(tx, Some(job_id), "task.waiting_for_space", data.clone())?;
    }
    settle_if_ended(tx, job_id)
}

/// A failed attempt: retried after `retry_in` seconds, or the job fails.
pub fn task_failed(tx: &Tx, task: &Task, error: &Value, retry_in: Option<f64>) -> StoreResult<bool> {
    let t = now();
    if let Some(delay) = retry_in {
        tx.execute(
            "UPDATE tasks SET state = 'READY', not_before = ?2, error = ?3 WHERE id = ?1",
            params![task.id, t + delay, error.to_string()],
        )?;
        event(
            tx,
            Some(&task.job_id),
            "task.retry",
            json!({"task": task.kind, "part": task.part_n, "attempt": task.attempts, "in_seconds": delay, "error": error}),
        )?;
        settle_if_ended(tx, &task.job_id)?;
        return Ok(false);
    }
    tx.execute(
        "UPDATE tasks SET state = 'FAILED', finished = ?2, error = ?3 WHERE id = ?1",
        params![task.id, t, error.to_string()],
    )?;
    tx.execute(
        "UPDATE tasks SET state = 'CANCELLED', finished = ?2 WHERE job_id = ?1 AND state IN ('READY', 'WAITING')",
        params![task.job_id, t],
    )?;
    let changed = tx.execute(
        "UPDATE jobs SET status = 'FAILED', error = ?2, finished = ?3, modified = ?3 WHERE id = ?1 AND status IN ('QUEUED', 'PROCESSING')",
        params![task.job_id, error.to_string(), t],
    )?;
    if changed > 0 {
        event(tx, Some(&task.job_id), "job.failed", json!({"error": error}))?;
    }
    Ok(true)
}

/// Startup recovery: tasks a crash left RUNNING run again (their attempt
/// counted), unless their job ended meanwhile (cancelled while they ran): those
/// are CANCELLED, as a stop would have left them.
pub fn recover(tx: &Tx) -> StoreResult<usize> {
    tx.execute(
        &format!(
            "UPDATE tasks SET state = 'CANCELLED', finished = ?1 WHERE state = 'RUNNING'
             AND job_id IN (SELECT id FROM jobs WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')) AND NOT {DELIVERY_OWED}"
        ),
        [now()],
    )?;
    // Each job's history says it was recovered, and how many tasks run again.
    let mut st = tx.prepare("SELECT job_id, COUNT(*) FROM tasks WHERE state = 'RUNNING' GROUP BY job_id")?;
    let per_job: Vec<(String, i64)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    drop(st);
    for (job_id, n) in per_job {
        event(tx, Some(&job_id), "job.recovered", json!({"tasks_requeued": n}))?;
    }
    let n = tx.execute("UPDATE tasks SET state = 'READY', started = NULL WHERE state = 'RUNNING'", [])?;
    if n > 0 {
        event(tx, None, "daemon.recovered", json!({"tasks_requeued": n}))?;
    }
    Ok(n)
}

pub fn finish(tx: &Tx, task: &Task) -> StoreResult<()> {
    let t = now();
    let changed = tx.execute(
        "UPDATE jobs SET status = 'COMPLETED', finished = ?2, modified = ?2 WHERE id = ?1 AND status = 'PROCESSING'",
        params![task.job_id, t],
    )?;
    if changed > 0 {
        event(tx, Some(&task.job_id), "job.completed", json!({}))?;
    }
    task_done(tx, task.id, &task.job_id)
}

// ----- reads -------------------------------------------------------------------

pub struct JobRow {
    pub id: String,
    pub status: JobStatus,
    pub settings: Settings,
    pub out_dir: String,
    pub sources: Vec<String>,
    pub about: About,
}

pub fn job_for_task(conn: &Connection, job_id: &str) -> StoreResult<Option<JobRow>> {
    let row = conn
        .query_row(
            "SELECT id, status, settings, out_dir, name, description, labels, external_ref FROM jobs WHERE id = ?1",
            [job_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, JobStatus>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    About::from_row(r, 4)?,
                ))
            },
        )
        .optional()?;
    let Some((id, status, settings, out_dir, about)) = row else {
        return Ok(None);
    };
    let settings = serde_json::from_str(&settings)?;
    Ok(Some(JobRow {
        sources: sources(conn, &id)?,
        id,
        status,
        settings,
        out_dir,
        about,
    }))
}

/// A job's status and, when it failed, its error code.
pub fn status_and_code(conn: &Connection, job_id: &str) -> StoreResult<Option<(JobStatus, Option<String>)>> {
    Ok(conn
        .query_row(
            "SELECT status, json_extract(error, '$.code') FROM jobs WHERE id = ?1",
            [job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

fn sources(conn: &Connection, job_id: &str) -> StoreResult<Vec<String>> {
    let mut st = conn.prepare_cached("SELECT path FROM sources WHERE job_id = ?1 ORDER BY n")?;
    let v = st.query_map([job_id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>();
    Ok(v?)
}
