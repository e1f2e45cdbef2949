//! What the rows say about jobs, read on a pooled read connection: a job's
//! facts (its row, task counts and recent errors; `crate::view` turns them
//! into what people see), job lists, a job's parts and the event feed.
//! Nothing here writes; the job functions in `jobs` do.

use std::collections::BTreeMap;

use r2d2_sqlite::rusqlite::{self, params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::jobs::{status_of, ERROR_KINDS};
use super::model::{JobStatus, PartState};
use super::StoreResult;
use crate::clock::{now, rfc3339};

/// Window for the recent rows a job's rate is computed from.
pub const RATE_WINDOW: f64 = 120.0;

/// One entry of a job's recent errors (skipped rows, retries, failures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEntry {
    pub at: String,
    pub kind: String,
    pub code: Value,
    pub entry: Value,
    pub line: Value,
    pub message: Value,
}

/// Everything the rows say about one job, read in one query for the job and
/// its aggregates, one for task counts, and one for errors only when it has
/// any. What it means for people (rate, ETA, health, the message) is
/// `crate::view`'s business, not the store's.
#[derive(Debug, Clone)]
pub struct JobFacts {
    /// When the facts were read (Unix seconds).
    pub at: f64,
    pub id: String,
    pub kind: String,
    pub status: JobStatus,
    pub trigger: String,
    pub settings: Value,
    pub out_dir: String,
    pub created: f64,
    pub modified: f64,
    pub started: Option<f64>,
    pub finished: Option<f64>,
    pub error: Option<Value>,
    pub total: i64,
    pub processed: i64,
    pub skipped: i64,
    pub last_progress: Option<f64>,
    pub campaign_id: Option<String>,
    pub parent_job_id: Option<String>,
    pub start_position: Option<i64>,
    pub next_start_position: Option<i64>,
    pub priority: i64,
    pub max_concurrency: Option<i64>,
    pub about: super::jobs::About,
    /// Times the job was run again as itself after it failed or was cancelled.
    pub retries: i64,
    /// The job a retry with `new_job` runs again.
    pub retry_of: Option<String>,
    /// For a job from a watched inbox: the file, and where it went.
    pub watched_file: Option<super::watch_files::WatchedFile>,
    pub sources: Vec<String>,
    /// Rows done within the last [`RATE_WINDOW`].
    pub recent_rows: Option<i64>,
    /// Task counts by kind, then state.
    pub tasks: BTreeMap<String, BTreeMap<String, i64>>,
    /// Tasks waiting to run again after an error.
    pub retrying: i64,
    /// Sources whose PLAN is done.
    pub planned_sources: i64,
    /// The last five error events, newest first.
    pub errors: Vec<ErrorEntry>,
}

pub fn job_facts(conn: &Connection, job_id: &str) -> StoreResult<Option<JobFacts>> {
    let t = now();
    let row = conn
        .prepare_cached(
            "SELECT id, kind, status, trigger, settings, out_dir, created, modified, started, finished, error, total_rows, processed_rows,
                    skipped_rows, last_progress, campaign_id, parent_job_id, start_position, next_start_position, priority, error_events,
                    (SELECT json_group_array(path) FROM (SELECT path FROM sources WHERE job_id = ?1 ORDER BY n)),
                    (SELECT SUM(rows) FROM parts WHERE job_id = ?1 AND state = 'DONE' AND finished >= ?2), max_concurrency,
                    name, description, labels, external_ref, retries, retry_of
             FROM jobs WHERE id = ?1",
        )?
        .query_row(params![job_id, t - RATE_WINDOW], |r: &Row| {
            let json = |s: Option<String>| s.and_then(|e| serde_json::from_str::<Value>(&e).ok());
            Ok((
                JobFacts {
                    at: t,
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    status: r.get(2)?,
                    trigger: r.get(3)?,
                    settings: json(r.get(4)?).unwrap_or(Value::Null),
                    out_dir: r.get(5)?,
                    created: r.get(6)?,
                    modified: r.get(7)?,
                    started: r.get(8)?,
                    finished: r.get(9)?,
                    error: json(r.get(10)?),
                    total: r.get(11)?,
                    processed: r.get(12)?,
                    skipped: r.get(13)?,
                    last_progress: r.get(14)?,
                    campaign_id: r.get(15)?,
                    parent_job_id: r.get(16)?,
                    start_position: r.get(17)?,
                    next_start_position: r.get(18)?,
                    priority: r.get(19)?,
                    max_concurrency: r.get(23)?,
                    about: super::jobs::About::from_row(r, 24)?,
                    retries: r.get(28)?,
                    retry_of: r.get(29)?,
                    watched_file: None,
                    sources: serde_json::from_str(&r.get::<_, String>(21)?).unwrap_or_default(),
                    recent_rows: r.get(22)?,
                    tasks: BTreeMap::new(),
                    retrying: 0,
                    planned_sources: 0,
                    errors: Vec::new(),
                },
                r.get::<_, i64>(20)?,
            ))
        })
        .optional()?;
    let Some((mut j, error_events)) = row else { return Ok(None) };
    if j.trigger == "watch" {
        j.watched_file = super::watch_files::for_job(conn, job_id)?;
    }
    {
        let mut st = conn.prepare_cached("SELECT kind, state, COUNT(*), SUM(error IS NOT NULL AND state IN ('READY', 'RUNNING')) FROM tasks WHERE job_id = ?1 GROUP BY kind, state")?;
        let rows = st.query_map([job_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        for r in rows {
            let (kind, state, n, retry) = r?;
            if kind == "PLAN" && state == "DONE" {
                j.planned_sources = n;
            }
            j.retrying += retry.unwrap_or(0);
            j.tasks.entry(kind).or_default().insert(state, n);
        }
    }
    if error_events > 0 {
        let mut st = conn.prepare_cached(
            "SELECT at, kind, data FROM events WHERE job_id = ?1 AND kind IN (SELECT value FROM json_each(?2)) ORDER BY id DESC LIMIT 5",
        )?;
        let kinds = serde_json::to_string(&ERROR_KINDS).expect("a static list");
        let rows = st.query_map(params![job_id, kinds], |r| {
            Ok((r.get::<_, f64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })?;
        for r in rows {
            let (at, kind, data) = r?;
            let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            let e = if kind == "row.skipped" { data } else { data["error"].clone() };
            j.errors.push(ErrorEntry {
                at: rfc3339(at),
                kind,
                code: e["code"].clone(),
                entry: e["entry"].clone(),
                line: e["line"].clone(),
                message: e["message"].clone(),
            });
        }
    }
    Ok(Some(j))
}

/// Which jobs a list shows; `None` is no filter.
#[derive(Default)]
pub struct Filter<'a> {
    pub status: Option<&'a str>,
    pub campaign_id: Option<&'a str>,
    pub kind: Option<&'a str>,
    /// api, cli, watch, schedule or campaign.
    pub trigger: Option<&'a str>,
    /// A label the job carries, key and value.
    pub label: Option<(&'a str, &'a str)>,
    pub external_ref: Option<&'a str>,
}

/// Jobs, newest first, after the cursor `after` (a seq), with their sources.
pub fn list(conn: &Connection, f: &Filter, limit: i64, after: Option<i64>) -> StoreResult<(Vec<JobFacts>, Option<i64>)> {
    // Only the filters given, so SQLite can walk jobs_status (status, seq) or
    // jobs_campaign instead of scanning every job: with a large backlog of
    // QUEUED jobs, "the latest 50 COMPLETED" must not read them all.
    let mut sql = String::from("SELECT id, seq FROM jobs WHERE 1");
    let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
    if let Some(s) = &f.status {
        sql.push_str(" AND status = ?");
        args.push(s);
    }
    if let Some(a) = &after {
        sql.push_str(" AND seq < ?");
        args.push(a);
    }
    if let Some(c) = &f.campaign_id {
        sql.push_str(" AND campaign_id = ?");
        args.push(c);
    }
    if let Some(k) = &f.kind {
        sql.push_str(" AND kind = ?");
        args.push(k);
    }
    if let Some(t) = &f.trigger {
        sql.push_str(" AND trigger = ?");
        args.push(t);
    }
    if let Some((k, v)) = &f.label {
        // Label keys are checked at the API: letters, digits, `._-/:` only.
        sql.push_str(" AND json_extract(labels, '$.\"' || ? || '\"') = ?");
        args.push(k);
        args.push(v);
    }
    if let Some(r) = &f.external_ref {
        sql.push_str(" AND external_ref = ?");
        args.push(r);
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    let lim = limit + 1;
    args.push(&lim);
    let mut st = conn.prepare_cached(&sql)?;
    let ids: Vec<(String, i64)> = st
        .query_map(args.as_slice(), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let more = ids.len() as i64 > limit;
    let mut jobs = Vec::new();
    let mut last = None;
    for (id, seq) in ids.into_iter().take(limit as usize) {
        if let Some(v) = job_facts(conn, &id)? {
            jobs.push(v);
        }
        last = Some(seq);
    }
    Ok((jobs, if more { last } else { None }))
}

/// One part as the API shows it, the CLI prints it and a hook receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartView {
    /// The job's source it comes from (1-based).
    pub source: i64,
    pub n: i64,
    pub path: String,
    pub rows: i64,
    /// The first and last manifest line of its rows.
    pub lines: [i64; 2],
    pub files: i64,
    /// Set once the part is written.
    pub bytes: Option<i64>,
    pub sha256: Option<String>,
    pub state: PartState,
    /// RFC 3339, once written.
    pub finished: Option<String>,
    /// With `[delivery.s3]`: `DELIVERED` once the part is in the bucket, else null.
    #[serde(default)]
    pub delivery: Option<String>,
    /// Where the part was delivered (the object's URL).
    #[serde(default)]
    pub object_url: Option<String>,
    /// RFC 3339, once delivered.
    #[serde(default)]
    pub delivered: Option<String>,
}

const PART_COLUMNS: &str =
    "source_n, n, path, rows, first_line, last_line, files, bytes, sha256, state, finished, delivery, object_url, delivered";

fn part_view(r: &Row) -> rusqlite::Result<PartView> {
    Ok(PartView {
        source: r.get(0)?,
        n: r.get(1)?,
        path: r.get(2)?,
        rows: r.get(3)?,
        lines: [r.get(4)?, r.get(5)?],
        files: r.get(6)?,
        bytes: r.get(7)?,
        sha256: r.get(8)?,
        state: r.get(9)?,
        finished: r.get::<_, Option<f64>>(10)?.map(rfc3339),
        delivery: r.get(11)?,
        object_url: r.get(12)?,
        delivered: r.get::<_, Option<f64>>(13)?.map(rfc3339),
    })
}

pub fn parts(conn: &Connection, job_id: &str) -> StoreResult<Vec<PartView>> {
    let mut st = conn.prepare_cached(&format!("SELECT {PART_COLUMNS} FROM parts WHERE job_id = ?1 ORDER BY source_n, n"))?;
    let v = st.query_map([job_id], part_view)?.collect::<Result<_, _>>();
    Ok(v?)
}

/// Part `n` of source `source` of a job.
pub fn part(conn: &Connection, job_id: &str, source: i64, n: i64) -> StoreResult<Option<PartView>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {PART_COLUMNS} FROM parts WHERE job_id = ?1 AND source_n = ?2 AND n = ?3"
    ))?;
    Ok(st.query_row(params![job_id, source, n], part_view).optional()?)
}

pub fn events(conn: &Connection, after: i64, limit: i64) -> StoreResult<Vec<Value>> {
    let mut st = conn.prepare_cached("SELECT id, job_id, at, kind, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let v = st.query_map(params![after, limit], event_json)?.collect::<Result<_, _>>();
    Ok(v?)
}

/// One job's history: its events after `after`, oldest first.
pub fn job_events(conn: &Connection, job_id: &str, after: i64, limit: i64) -> StoreResult<Vec<Value>> {
    let mut st = conn.prepare_cached("SELECT id, job_id, at, kind, data FROM events WHERE job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3")?;
    let v = st.query_map(params![job_id, after, limit], event_json)?.collect::<Result<_, _>>();
    Ok(v?)
}

fn event_json(r: &Row) -> r2d2_sqlite::rusqlite::Result<Value> {
    Ok(json!({
        "id": r.get::<_, i64>(0)?, "job_id": r.get::<_, Option<String>>(1)?, "at": rfc3339(r.get(2)?),
        "kind": r.get::<_, String>(3)?, "data": serde_json::from_str::<Value>(&r.get::<_, String>(4)?).unwrap_or(Value::Null),
    }))
}

pub fn exists(conn: &Connection, job_id: &str) -> StoreResult<bool> {
    Ok(status_of(conn, job_id)?.is_some())
}
