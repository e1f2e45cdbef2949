//! Retention: finished jobs older than a cutoff leave the database with their
//! tasks, parts rows, sources and events, in batches so the writer is never held
//! for long. What keeps a file from being ingested twice stays: watch and
//! schedule identity rows lose only their job reference. Jobs of campaigns stay
//! with their campaign (its counts are read from them), and a watched file's job
//! stays until the watcher has moved the file out. Part files stay on disk
//! unless `delete_parts`.

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::rusqlite::params;
use serde::Serialize;
use serde_json::json;

use super::Store;
use super::{jobs, parts};
use crate::signals::Stop;

/// Jobs removed per transaction.
const BATCH: i64 = 500;

#[derive(Debug, Default, Serialize)]
pub struct Pruned {
    pub jobs: u64,
    pub events: u64,
    pub schedule_fires: u64,
    pub part_files: u64,
    pub cutoff: String,
    pub dry_run: bool,
}

/// Removes finished jobs that ended before `cutoff` (Unix seconds).
pub fn prune(store: &Store, cutoff: f64, delete_parts: bool, dry_run: bool) -> anyhow::Result<Pruned> {
    let mut out = Pruned {
        cutoff: crate::clock::rfc3339(cutoff),
        dry_run,
        ..Pruned::default()
    };
    const CANDIDATES: &str = "FROM jobs WHERE finished < ?1 AND status IN ('COMPLETED', 'FAILED', 'CANCELLED')
         AND kind = 'ingest' AND campaign_id IS NULL
         AND id NOT IN (SELECT job_id FROM watch_files WHERE state = 'QUEUED' AND job_id IS NOT NULL)";
    if dry_run {
        out.jobs = store.read(|c| Ok(c.query_row(&format!("SELECT COUNT(*) {CANDIDATES}"), [cutoff], |r| r.get::<_, i64>(0))?))? as u64;
        return Ok(out);
    }
    loop {
        let ids: Vec<String> = store.read(|c| {
            let mut st = c.prepare_cached(&format!("SELECT id {CANDIDATES} ORDER BY finished LIMIT ?2"))?;
            let v = st.query_map(params![cutoff, BATCH], |r| r.get(0))?.collect::<Result<_, _>>();
            Ok(v?)
        })?;
        if ids.is_empty() {
            break;
        }
        let paths: Vec<String> = if delete_parts {
            store.read(|c| {
                let mut v = Vec::new();
                for id in &ids {
                    v.extend(parts::part_paths(c, id)?);
                }
                Ok(v)
            })?
        } else {
            Vec::new()
        };
        let list = serde_json::to_string(&ids)?;
        let (n_jobs, n_events) = store.write_quiet(move |tx| {
            const IDS: &str = "(SELECT value FROM json_each(?1))";
            // A failed job's files may be taken again, so its identity rows go;
            // a completed job's stay, without the reference.
            tx.execute(
                &format!(
                    "DELETE FROM schedule_files WHERE job_id IN {IDS} AND job_id IN (SELECT id FROM jobs WHERE status != 'COMPLETED')"
                ),
                [&list],
            )?;
            tx.execute(&format!("UPDATE schedule_files SET job_id = NULL WHERE job_id IN {IDS}"), [&list])?;
            tx.execute(&format!("UPDATE schedule_fires SET job_id = NULL WHERE job_id IN {IDS}"), [&list])?;
            tx.execute(&format!("UPDATE watch_files SET job_id = NULL WHERE job_id IN {IDS}"), [&list])?;
            let events = tx.execute(&format!("DELETE FROM events WHERE job_id IN {IDS}"), [&list])?;
            let jobs = tx.execute(&format!("DELETE FROM jobs WHERE id IN {IDS}"), [&list])?;
            Ok((jobs as u64, events as u64))
        })?;
        out.jobs += n_jobs;
        out.events += n_events;
        for p in &paths {
            if std::fs::remove_file(p).is_ok() {
                out.part_files += 1;
            }
            // The job's own output dir, once empty.
            if let Some(dir) = Path::new(p).parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
    // Fires that queued nothing, and the daemon's own events, age out too.
    let (fires, events) = store.write_quiet(move |tx| {
        let fires = tx.execute(
            "DELETE FROM schedule_fires WHERE job_id IS NULL AND result != 'QUEUED' AND fired_at < ?1",
            [cutoff],
        )?;
        let events = tx.execute("DELETE FROM events WHERE job_id IS NULL AND at < ?1", [cutoff])?;
        Ok((fires as u64, events as u64))
    })?;
    out.schedule_fires = fires;
    out.events += events;
    if out.jobs > 0 || out.schedule_fires > 0 {
        let data = json!({"jobs": out.jobs, "events": out.events, "schedule_fires": out.schedule_fires, "part_files": out.part_files, "cutoff": out.cutoff});
        store.write(move |tx| jobs::event(tx, None, "retention.pruned", data))?;
    }
    Ok(out)
}

/// The daemon's retention loop: shortly after start, then hourly.
pub fn run(store: Store, keep_days: f64, delete_parts: bool, stop: &Stop) {
    if keep_days <= 0.0 {
        return;
    }
    stop.sleep(Duration::from_secs(60));
    while !stop.is_set() {
        let cutoff = crate::clock::now() - keep_days * 86_400.0;
        match prune(&store, cutoff, delete_parts, false) {
            Ok(p) if p.jobs > 0 => tracing::info!(
                jobs = p.jobs,
                events = p.events,
                "retention: pruned jobs finished before {}",
                p.cutoff
            ),
            Ok(_) => {}
            Err(e) => tracing::error!("retention: {e:#}"),
        }
        stop.sleep(Duration::from_secs(3600));
    }
}
