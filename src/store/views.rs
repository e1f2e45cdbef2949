//! What the API and the CLI show of jobs, read from the rows on a pooled read
//! connection: the full job view (progress, rate, ETA, health, the one-line
//! status message), job lists, a job's parts and the event feed. Nothing here
//! writes; the job functions in `jobs` do.

use std::collections::BTreeMap;

use r2d2_sqlite::rusqlite::{self, params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::jobs::{status_of, ERROR_KINDS};
use super::model::PartState;
use super::StoreResult;
use crate::clock::{now, rfc3339};
use crate::text::human_duration;

fn ts(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

/// Window for `items_per_second`.
const RATE_WINDOW: f64 = 120.0;
const STAGES: [&str; 3] = ["PLAN", "PACK", "FINISH"];
/// With part hooks configured, the job has a HOOK stage between PACK and FINISH.
const HOOK_STAGES: [&str; 4] = ["PLAN", "PACK", "HOOK", "FINISH"];

/// The full status of a job as the API returns it: one query for the job and its
/// aggregates, one for task counts, and one for errors only when it has any.
pub fn view(conn: &Connection, job_id: &str, stall_seconds: u64) -> StoreResult<Option<Value>> {
    let t = now();
    let row = conn
        .prepare_cached(
            "SELECT id, kind, status, trigger, settings, out_dir, created, modified, started, finished, error, total_rows, processed_rows,
                    skipped_rows, last_progress, campaign_id, parent_job_id, start_position, next_start_position, priority, error_events,
                    (SELECT json_group_array(path) FROM (SELECT path FROM sources WHERE job_id = ?1 ORDER BY n)),
                    (SELECT SUM(rows) FROM parts WHERE job_id = ?1 AND state = 'DONE' AND finished >= ?2),
                    (SELECT MIN(finished) FROM parts WHERE job_id = ?1 AND state = 'DONE' AND finished >= ?2)
             FROM jobs WHERE id = ?1",
        )?
        .query_row(params![job_id, t - RATE_WINDOW], |r: &Row| {
            Ok(json!({
                "id": r.get::<_, String>(0)?, "kind": r.get::<_, String>(1)?, "status": r.get::<_, String>(2)?,
                "trigger": r.get::<_, String>(3)?, "settings": serde_json::from_str::<Value>(&r.get::<_, String>(4)?).unwrap_or(Value::Null),
                "out_dir": r.get::<_, String>(5)?, "created": r.get::<_, f64>(6)?, "modified": r.get::<_, f64>(7)?,
                "started": r.get::<_, Option<f64>>(8)?, "finished": r.get::<_, Option<f64>>(9)?,
                "error": r.get::<_, Option<String>>(10)?.and_then(|e| serde_json::from_str::<Value>(&e).ok()),
                "total": r.get::<_, i64>(11)?, "processed": r.get::<_, i64>(12)?, "skipped": r.get::<_, i64>(13)?,
                "last_progress": r.get::<_, Option<f64>>(14)?, "campaign_id": r.get::<_, Option<String>>(15)?,
                "parent_job_id": r.get::<_, Option<String>>(16)?, "start_position": r.get::<_, Option<i64>>(17)?,
                "next_start_position": r.get::<_, Option<i64>>(18)?, "priority": r.get::<_, i64>(19)?,
                "error_events": r.get::<_, i64>(20)?,
                "sources": serde_json::from_str::<Value>(&r.get::<_, String>(21)?).unwrap_or(Value::Null),
                "recent_rows": r.get::<_, Option<i64>>(22)?, "recent_since": r.get::<_, Option<f64>>(23)?,
            }))
        })
        .optional()?;
    let Some(j) = row else { return Ok(None) };

    let mut tasks: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut retrying = 0i64;
    let mut planned_sources = 0i64;
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
                planned_sources = n;
            }
            retrying += retry.unwrap_or(0);
            tasks.entry(kind).or_default().insert(state, n);
        }
    }
    let mut errors: Vec<Value> = Vec::new();
    if j["error_events"].as_i64().unwrap_or(0) > 0 {
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
            errors.push(json!({"at": rfc3339(at), "kind": kind, "code": e["code"], "entry": e["entry"], "line": e["line"], "message": e["message"]}));
        }
    }

    let status = j["status"].as_str().unwrap_or_default().to_owned();
    let total = j["total"].as_i64().unwrap_or(0);
    let processed = j["processed"].as_i64().unwrap_or(0);
    let skipped = j["skipped"].as_i64().unwrap_or(0);
    let source_count = j["sources"].as_array().map_or(0, |a| a.len() as i64);
    let estimated = planned_sources < source_count;
    let fraction = if total > 0 {
        processed as f64 / total as f64
    } else if status == "COMPLETED" {
        1.0
    } else {
        0.0
    };
    let started = j["started"].as_f64();
    // Rows per second over the recent window (or since the start, if shorter).
    let rate = match (j["recent_rows"].as_i64(), started) {
        (Some(rows), Some(s)) if rows > 0 => {
            let span = (t - s.max(t - RATE_WINDOW)).clamp(1.0, RATE_WINDOW);
            rows as f64 / span
        }
        _ => 0.0,
    };
    let active = matches!(status.as_str(), "QUEUED" | "PROCESSING");
    let eta = (active && rate > 0.0 && total > 0 && !estimated).then(|| ((total - processed).max(0) as f64 / rate).round());
    let stages: &[&str] = if tasks.contains_key("HOOK") { &HOOK_STAGES } else { &STAGES };
    let stage_idx = stages.iter().position(|s| {
        tasks
            .get(*s)
            .is_some_and(|m| m.keys().any(|k| k != "DONE" && k != "CANCELLED" && k != "FAILED"))
    });
    let current_stage = match (active, stage_idx) {
        (true, Some(i)) => json!({"name": stages[i], "index": i + 1, "total": stages.len()}),
        (true, None) => json!({"name": "PLAN", "index": 1, "total": stages.len()}),
        _ => Value::Null,
    };
    let stalled = status == "PROCESSING" && j["last_progress"].as_f64().is_some_and(|lp| t - lp > stall_seconds as f64);
    let health = if status == "FAILED" || stalled {
        "unhealthy"
    } else if skipped > 0 || retrying > 0 {
        "degraded"
    } else {
        "healthy"
    };
    let error_count = skipped + retrying + i64::from(status == "FAILED");
    let mut message = status_message(&status, processed, total, fraction, rate, eta, &j, estimated);
    if j["kind"] == "parent" && status == "COMPLETED" {
        // A parent job's "rows" are the children of its batch.
        let skipped = j["skipped"].as_i64().unwrap_or(0);
        message = format!(
            "Batch from position {}: {} child jobs queued, {} skipped (already ingested); next_start_position {}",
            j["start_position"],
            processed - skipped,
            skipped,
            j["next_start_position"]
                .as_i64()
                .map_or("none (collection exhausted)".into(), |n| n.to_string())
        );
    }
    let sources = j["sources"].clone();

    Ok(Some(json!({
        "id": j["id"], "kind": j["kind"], "status": status, "trigger": j["trigger"], "priority": j["priority"],
        "sources": sources, "settings": j["settings"], "out_dir": j["out_dir"],
        "created": ts(j["created"].as_f64()), "modified": ts(j["modified"].as_f64()),
        "started": ts(started), "finished": ts(j["finished"].as_f64()),
        "progress": {
            "processed": processed, "total": total, "percent": (fraction * 1000.0).round() / 10.0,
            "items_per_second": (rate * 100.0).round() / 100.0, "eta_seconds": eta,
            "current_stage": current_stage, "errors": error_count, "skipped": skipped,
        },
        "status_message": message,
        "health": health,
        "estimated_completion": eta.map(|e| rfc3339(t + e)),
        "status_detail": {"tasks": tasks, "estimated": estimated, "percent_complete": (fraction * 10000.0).round() / 10000.0},
        "errors": errors,
        "error": j["error"],
        "campaign_id": j["campaign_id"], "parent_job_id": j["parent_job_id"],
        "start_position": j["start_position"], "next_start_position": j["next_start_position"],
    })))
}

#[allow(clippy::too_many_arguments)]
fn status_message(
    status: &str,
    processed: i64,
    total: i64,
    fraction: f64,
    rate: f64,
    eta: Option<f64>,
    j: &Value,
    estimated: bool,
) -> String {
    let n = |v: i64| crate::text::thousands(v.max(0) as u64);
    match status {
        "DRAFT" => "Draft: add sources, then submit".into(),
        "QUEUED" => "Queued".into(),
        "PROCESSING" if total == 0 || estimated => format!("Planning · {} rows so far", n(total)),
        "PROCESSING" => {
            let mut m = format!("Processing {}/{} rows ({:.1}%)", n(processed), n(total), fraction * 100.0);
            if rate > 0.0 {
                m.push_str(&format!(
                    " · {} rows/sec",
                    if rate >= 10.0 { format!("{rate:.0}") } else { format!("{rate:.1}") }
                ));
            }
            if let Some(e) = eta {
                m.push_str(&format!(" · ~{} remaining", human_duration(e)));
            }
            m
        }
        "COMPLETED" => {
            let took = match (j["started"].as_f64(), j["finished"].as_f64()) {
                (Some(s), Some(f)) => format!(" in {}", human_duration(f - s)),
                _ => String::new(),
            };
            let skipped = j["skipped"].as_i64().unwrap_or(0);
            let skip = if skipped > 0 {
                format!(", {} skipped", n(skipped))
            } else {
                String::new()
            };
            format!("Completed {} rows{skip}{took}", n(processed))
        }
        "FAILED" => format!("Failed: {}", j["error"]["message"].as_str().unwrap_or("unknown error")),
        "CANCELLED" => format!("Cancelled after {}/{} rows", n(processed), n(total)),
        other => other.to_owned(),
    }
}

/// Which jobs a list shows; `None` is no filter.
#[derive(Default)]
pub struct Filter<'a> {
    pub status: Option<&'a str>,
    pub campaign_id: Option<&'a str>,
    pub kind: Option<&'a str>,
}

/// Jobs, newest first, after the cursor `after` (a seq), with their sources.
pub fn list(conn: &Connection, f: &Filter, limit: i64, after: Option<i64>, stall: u64) -> StoreResult<(Vec<Value>, Option<i64>)> {
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
        if let Some(v) = view(conn, &id, stall)? {
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
}

pub fn parts(conn: &Connection, job_id: &str) -> StoreResult<Vec<PartView>> {
    let mut st = conn.prepare_cached(
        "SELECT source_n, n, path, rows, first_line, last_line, files, bytes, sha256, state, finished FROM parts WHERE job_id = ?1 ORDER BY source_n, n",
    )?;
    let v = st
        .query_map([job_id], |r| {
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
            })
        })?
        .collect::<Result<_, _>>();
    Ok(v?)
}

pub fn events(conn: &Connection, after: i64, limit: i64) -> StoreResult<Vec<Value>> {
    let mut st = conn.prepare_cached("SELECT id, job_id, at, kind, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let v = st
        .query_map(params![after, limit], |r| {
            Ok(json!({
                "id": r.get::<_, i64>(0)?, "job_id": r.get::<_, Option<String>>(1)?, "at": rfc3339(r.get(2)?),
                "kind": r.get::<_, String>(3)?, "data": serde_json::from_str::<Value>(&r.get::<_, String>(4)?).unwrap_or(Value::Null),
            }))
        })?
        .collect::<Result<_, _>>();
    Ok(v?)
}

pub fn exists(conn: &Connection, job_id: &str) -> StoreResult<bool> {
    Ok(status_of(conn, job_id)?.is_some())
}
