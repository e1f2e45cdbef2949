//! Reads of the running totals behind `/metrics`: the `counters` table (kept
//! by SQL triggers and by the job functions as rows and bytes are done, so a
//! scrape costs the same at 100 jobs and at 100,000) and the files each
//! watched inbox has taken.

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

/// A two-column query as a map from the first column to the second.
fn pairs<V: FromSql>(c: &Connection, sql: &str) -> StoreResult<BTreeMap<String, V>> {
    let v = c
        .prepare_cached(sql)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>();
    Ok(v?)
}
