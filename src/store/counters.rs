//! Reads of the running totals behind `/metrics`: the `counters` table (kept
//! by SQL triggers and by the job functions as rows and bytes are done, so a
//! scrape costs the same at 100 jobs and at 100,000) and the files each
//! watched inbox has taken; and the per-minute series the dashboard charts.

use std::collections::BTreeMap;

use r2d2_sqlite::rusqlite::types::FromSql;
use r2d2_sqlite::rusqlite::Connection;

use super::StoreResult;

/// Every counter by name (`jobs:QUEUED`, `rows_processed`, `task_seconds_sum:PACK`, …).
pub fn all(c: &Connection) -> StoreResult<BTreeMap<String, f64>> {
    pairs(c, "SELECT name, value FROM counters")
}

/// Files taken from each watched inbox that has taken any.
pub fn watch_files_detected(c: &Connection) -> StoreResult<BTreeMap<String, i64>> {
    pairs(c, "SELECT watch, COUNT(*) FROM watch_files GROUP BY watch")
}

/// One minute of the recent past: rows packed into parts that finished in
/// it, and jobs that completed or failed in it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Minute {
    /// Start of the minute, Unix seconds.
    pub at: i64,
    pub rows: i64,
    pub jobs_completed: i64,
    pub jobs_failed: i64,
}

/// The last `minutes` whole minutes up to `now`, oldest first, every minute
/// present (zeros included), so a chart needs no gap-filling.
pub fn per_minute(c: &Connection, now: f64, minutes: i64) -> StoreResult<Vec<Minute>> {
    let end = (now / 60.0).floor() as i64 * 60 + 60;
    let start = end - minutes * 60;
    let mut out: Vec<Minute> = (0..minutes)
        .map(|i| Minute {
            at: start + i * 60,
            ..Minute::default()
        })
        .collect();
    let mut rows = c.prepare_cached(
        "SELECT CAST((finished - ?1) / 60 AS INTEGER), SUM(rows) FROM parts WHERE state = 'DONE' AND finished >= ?1 GROUP BY 1",
    )?;
    for r in rows.query_map([start as f64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
        let (slot, n) = r?;
        if let Some(m) = out.get_mut(slot as usize) {
            m.rows = n;
        }
    }
    let mut jobs = c.prepare_cached(
        "SELECT CAST((finished - ?1) / 60 AS INTEGER), SUM(status = 'COMPLETED'), SUM(status = 'FAILED') FROM jobs
         WHERE finished >= ?1 AND kind = 'ingest' AND status IN ('COMPLETED', 'FAILED') GROUP BY 1",
    )?;
    for r in jobs.query_map([start as f64], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })? {
        let (slot, completed, failed) = r?;
        if let Some(m) = out.get_mut(slot as usize) {
            (m.jobs_completed, m.jobs_failed) = (completed, failed);
        }
    }
    Ok(out)
}

/// A two-column query as a map from the first column to the second.
fn pairs<V: FromSql>(c: &Connection, sql: &str) -> StoreResult<BTreeMap<String, V>> {
    let v = c
        .prepare_cached(sql)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>();
    Ok(v?)
}
