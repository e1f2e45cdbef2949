//! The parts table: parts recorded when a source is planned (with their PACK
//! and HOOK tasks), marked done as each is published (with the running totals
//! and events that go with it), reopened when a finished part's file is gone,
//! and the reads the engine and retention need. What the API shows of a part
//! is `views::PartView`.

use r2d2_sqlite::rusqlite::{params, Connection};
use serde_json::json;

use super::jobs::{count, event, settle_if_ended, task_done, Task};
use super::{StoreResult, Tx};
use crate::clock::now;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PartRow {
    pub source_n: i64,
    pub n: i64,
    pub path: String,
    pub rows: i64,
    pub first_line: i64,
    pub last_line: i64,
    pub files: i64,
    pub payload_bytes: i64,
    pub comment: String,
}

/// The outcome of PLAN for one source: its parts and the PACK tasks that
/// make them. `oversized` are parts over the job's `max_part_bytes` (each one
/// file larger than the cap), said in the `source.planned` event.
pub fn planned(
    tx: &Tx,
    task: &Task,
    parts: &[PartRow],
    one_task_per_part: bool,
    rows: i64,
    skipped: &[(u64, String)],
    oversized: &[usize],
) -> StoreResult<()> {
    let t = now();
    let source_n = task.source_n.expect("PLAN has a source");
    // A PLAN run again (after a crash) replaces the PACK tasks it queued before.
    tx.execute(
        "DELETE FROM tasks WHERE job_id = ?1 AND kind = 'PACK' AND source_n = ?2 AND state != 'DONE'",
        params![task.job_id, source_n],
    )?;
    for p in parts {
        tx.execute(
            "INSERT OR IGNORE INTO parts (job_id, source_n, n, path, rows, first_line, last_line, files, payload_bytes, comment, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'PENDING')",
            params![
                task.job_id,
                p.source_n,
                p.n,
                p.path,
                p.rows,
                p.first_line,
                p.last_line,
                p.files,
                p.payload_bytes,
                p.comment
            ],
        )?;
        if one_task_per_part {
            tx.execute(
                "INSERT INTO tasks (job_id, kind, source_n, part_n, state, created)
                 SELECT ?1, 'PACK', ?2, ?3, 'READY', ?4 WHERE NOT EXISTS
                 (SELECT 1 FROM parts WHERE job_id = ?1 AND source_n = ?2 AND n = ?3 AND state = 'DONE')",
                params![task.job_id, source_n, p.n, t],
            )?;
        }
    }
    if !one_task_per_part {
        tx.execute(
            "INSERT INTO tasks (job_id, kind, source_n, state, created) VALUES (?1, 'PACK', ?2, 'READY', ?3)",
            params![task.job_id, source_n, t],
        )?;
    }
    let already: i64 = tx.query_row("SELECT COUNT(*) FROM tasks WHERE id = ?1 AND state = 'DONE'", [task.id], |r| {
        r.get(0)
    })?;
    if already == 0 {
        tx.execute(
            "UPDATE jobs SET total_rows = total_rows + ?2, skipped_rows = skipped_rows + ?3, modified = ?4 WHERE id = ?1",
            params![task.job_id, rows, skipped.len() as i64, t],
        )?;
        for (line, value) in skipped.iter().take(20) {
            event(
                tx,
                Some(&task.job_id),
                "row.skipped",
                json!({"code": "MISSING_FILE", "line": line, "entry": crate::error::clip(value).trim_matches('"'), "message": format!("line {line} names {}, which is not in the source; the row was left out", crate::error::clip(value))}),
            )?;
        }
        event(
            tx,
            Some(&task.job_id),
            "source.planned",
            json!({"source": source_n, "rows": rows, "parts": parts.len(), "skipped_rows": skipped.len(), "oversized_parts": oversized}),
        )?;
    }
    task_done(tx, task.id, &task.job_id)?;
    settle_if_ended(tx, &task.job_id)
}

/// Records a published part; with `hook`, queues its HOOK task in the same
/// transaction, so a part is never done without its hook being owed.
pub fn part_done(tx: &Tx, job_id: &str, source_n: i64, n: i64, bytes: u64, sha256: &str, hook: bool) -> StoreResult<()> {
    let t = now();
    let changed = tx.execute(
        "UPDATE parts SET state = 'DONE', bytes = ?4, sha256 = ?5, finished = ?6 WHERE job_id = ?1 AND source_n = ?2 AND n = ?3 AND state != 'DONE'",
        params![job_id, source_n, n, bytes as i64, sha256, t],
    )?;
    if changed > 0 {
        let rows: i64 = tx.query_row(
            "SELECT rows FROM parts WHERE job_id = ?1 AND source_n = ?2 AND n = ?3",
            params![job_id, source_n, n],
            |r| r.get(0),
        )?;
        count(tx, "rows_processed", rows as f64)?;
        count(tx, "part_bytes", bytes as f64)?;
        tx.execute(
            "UPDATE jobs SET processed_rows = processed_rows + (SELECT rows FROM parts WHERE job_id = ?1 AND source_n = ?2 AND n = ?3),
             last_progress = ?4, modified = ?4 WHERE id = ?1",
            params![job_id, source_n, n, t],
        )?;
        event(
            tx,
            Some(job_id),
            "part.done",
            json!({"source": source_n, "part": n, "bytes": bytes, "sha256": sha256}),
        )?;
        if hook {
            tx.execute(
                "INSERT INTO tasks (job_id, kind, source_n, part_n, state, created) VALUES (?1, 'HOOK', ?2, ?3, 'READY', ?4)",
                params![job_id, source_n, n, t],
            )?;
            settle_if_ended(tx, job_id)?;
        }
    }
    Ok(())
}

/// Paths of every part planned for a job, done or not.
pub fn part_paths(conn: &Connection, job_id: &str) -> StoreResult<Vec<String>> {
    let mut st = conn.prepare_cached("SELECT path FROM parts WHERE job_id = ?1")?;
    let v = st.query_map([job_id], |r| r.get(0))?.collect::<Result<_, _>>();
    Ok(v?)
}

/// Where part `n` of a source goes, if it is planned.
pub fn part_path(conn: &Connection, job_id: &str, source_n: i64, n: i64) -> StoreResult<Option<String>> {
    use r2d2_sqlite::rusqlite::OptionalExtension;
    let mut st = conn.prepare_cached("SELECT path FROM parts WHERE job_id = ?1 AND source_n = ?2 AND n = ?3")?;
    Ok(st.query_row(params![job_id, source_n, n], |r| r.get(0)).optional()?)
}

pub fn pending_parts(conn: &Connection, job_id: &str, source_n: i64) -> StoreResult<Vec<i64>> {
    let mut st = conn.prepare_cached("SELECT n FROM parts WHERE job_id = ?1 AND source_n = ?2 AND state != 'DONE' ORDER BY n")?;
    let v = st.query_map(params![job_id, source_n], |r| r.get(0))?.collect::<Result<_, _>>();
    Ok(v?)
}

pub struct DonePart {
    pub job_id: String,
    pub source_n: i64,
    pub n: i64,
    pub path: String,
    pub bytes: i64,
}

/// Parts recorded DONE, for the startup check that their files are still there.
pub fn done_parts(conn: &Connection) -> StoreResult<Vec<DonePart>> {
    let mut st = conn.prepare(
        "SELECT p.job_id, p.source_n, p.n, p.path, p.bytes FROM parts p JOIN jobs j ON j.id = p.job_id
         WHERE p.state = 'DONE' AND j.status IN ('QUEUED', 'PROCESSING')",
    )?;
    let v = st
        .query_map([], |r| {
            Ok(DonePart {
                job_id: r.get(0)?,
                source_n: r.get(1)?,
                n: r.get(2)?,
                path: r.get(3)?,
                bytes: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>();
    Ok(v?)
}

/// A DONE part whose file went missing is made again.
pub fn reopen_part(tx: &Tx, job_id: &str, source_n: i64, n: i64) -> StoreResult<()> {
    tx.execute(
        "UPDATE parts SET state = 'PENDING', bytes = NULL, sha256 = NULL, finished = NULL,
         delivery = NULL, object_url = NULL, delivered = NULL WHERE job_id = ?1 AND source_n = ?2 AND n = ?3",
        params![job_id, source_n, n],
    )?;
    tx.execute(
        "UPDATE jobs SET processed_rows = processed_rows - (SELECT rows FROM parts WHERE job_id = ?1 AND source_n = ?2 AND n = ?3) WHERE id = ?1",
        params![job_id, source_n, n],
    )?;
    tx.execute(
        "INSERT INTO tasks (job_id, kind, source_n, part_n, state, created) VALUES (?1, 'PACK', ?2, ?3, 'READY', ?4)",
        params![job_id, source_n, n, now()],
    )?;
    tx.execute(
        "UPDATE tasks SET state = 'WAITING' WHERE job_id = ?1 AND kind = 'FINISH' AND state = 'READY'",
        [job_id],
    )?;
    Ok(())
}
