//! The campaign runner's rows: which parent jobs wait to be expanded and
//! which campaigns have finished their batch, expanding a batch into its child
//! jobs in one transaction, and moving a campaign on (next batch, STOPPED,
//! COMPLETED or FAILED). `crate::campaign` lists the collection and calls these.

use std::path::Path;

use r2d2_sqlite::rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use super::campaigns::{live_jobs, queue_batch, NewBatch};
use super::jobs::{self, About, CampaignLink, NewJob, Settings};
use super::{StoreResult, Tx};

/// A child of the collection with the identity that says whether it was ingested.
#[derive(Debug, Clone)]
pub struct Child {
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
}

/// Parent jobs waiting to be expanded, oldest first.
pub fn queued_batches(c: &Connection) -> StoreResult<Vec<String>> {
    let mut st = c.prepare_cached("SELECT id FROM jobs WHERE kind = 'parent' AND status = 'QUEUED' ORDER BY seq")?;
    let v = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>();
    Ok(v?)
}

/// Running or stopping campaigns whose current batch has ended (nothing of
/// theirs queued or running).
pub fn idle(c: &Connection) -> StoreResult<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT c.id FROM campaigns c WHERE c.status IN ('RUNNING', 'STOPPING')
         AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.campaign_id = c.id AND j.status IN ('DRAFT', 'QUEUED', 'PROCESSING'))",
    )?;
    let v = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>();
    Ok(v?)
}

/// A queued batch to expand: its campaign, collection, first position, size,
/// cap on positions and pattern.
pub struct Batch {
    pub campaign: String,
    pub parent: String,
    pub start: i64,
    pub batch_size: i64,
    pub cap: Option<i64>,
    pub pattern: String,
}

/// The batch of parent job `parent_job`, while it is still queued.
pub fn batch(c: &Connection, parent_job: &str) -> StoreResult<Option<Batch>> {
    Ok(c.query_row(
        "SELECT c.id, c.parent, j.start_position, c.batch_size, c.total_children, c.pattern
         FROM jobs j JOIN campaigns c ON c.id = j.campaign_id WHERE j.id = ?1 AND j.status = 'QUEUED'",
        [parent_job],
        |r| {
            Ok(Batch {
                campaign: r.get(0)?,
                parent: r.get(1)?,
                start: r.get(2)?,
                batch_size: r.get(3)?,
                cap: r.get(4)?,
                pattern: r.get(5)?,
            })
        },
    )
    .optional()?)
}

/// Expands batch `b` of parent job `job_id` in one transaction, from the
/// collection's listing (or why it could not be listed): one child job per
/// child not ingested before, every position recorded, the parent job done
/// with its `next_start_position`.
pub fn expand(tx: &Tx, job_id: &str, b: &Batch, listed: Result<Vec<Child>, String>, data_dir: &Path) -> StoreResult<()> {
    let Batch {
        campaign,
        parent,
        start,
        batch_size,
        cap,
        ..
    } = b;
    let (start, batch_size, cap) = (*start, *batch_size, *cap);
    let t = crate::clock::now();
    let still_queued: bool = tx.query_row("SELECT status = 'QUEUED' FROM jobs WHERE id = ?1", [job_id], |r| r.get(0))?;
    if !still_queued {
        return Ok(());
    }
    let all = match listed {
        Ok(all) => all,
        Err(e) => {
            let err = json!({"code": "PARENT_UNREADABLE", "message": e, "entry": parent, "line": null});
            tx.execute(
                "UPDATE campaigns SET status = 'FAILED', error = ?2, modified = ?3, finished = ?3 WHERE id = ?1",
                params![campaign, e, t],
            )?;
            return jobs::parent_failed(tx, job_id, &err);
        }
    };
    let known = cap.map_or(all.len() as i64, |c| c.min(all.len() as i64));
    let end = (start + batch_size).min(known + 1); // exclusive
    let (settings, priority, labels, external_ref): (String, i64, String, Option<String>) = tx.query_row(
        "SELECT settings, priority, labels, external_ref FROM campaigns WHERE id = ?1",
        [campaign],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let settings: Settings = serde_json::from_str(&settings)?;
    // Child jobs carry the campaign's labels and reference, so hooks and
    // filters tie each part back to it.
    let about = About {
        labels: serde_json::from_str(&labels)?,
        external_ref,
        ..About::default()
    };
    let (mut queued, mut skipped) = (0i64, 0i64);
    for pos in start..end.max(start) {
        let c = &all[(pos - 1) as usize];
        // Ingested (or being ingested) before, by any campaign: skipped.
        let earlier: Option<String> = tx
            .query_row(
                "SELECT cc.job_id FROM campaign_children cc JOIN jobs j ON j.id = cc.job_id
                 WHERE cc.path = ?1 AND cc.size = ?2 AND cc.mtime_ns = ?3 AND j.status IN ('QUEUED', 'PROCESSING', 'COMPLETED')
                 LIMIT 1",
                params![c.path, c.size, c.mtime_ns],
                |r| r.get(0),
            )
            .optional()?;
        let child_id = if earlier.is_some() {
            skipped += 1;
            None
        } else {
            let mut job = NewJob::ingest(
                crate::ids::new_id(),
                data_dir,
                None,
                vec![c.path.clone()],
                settings.clone(),
                "campaign",
            );
            job.priority = priority;
            job.about = about.clone();
            job.campaign = Some(CampaignLink {
                campaign_id: campaign.clone(),
                parent_job_id: Some(job_id.to_owned()),
                start_position: None,
            });
            jobs::create(tx, &job)?;
            queued += 1;
            Some(job.id)
        };
        tx.execute(
            "INSERT INTO campaign_children (campaign_id, parent_job_id, position, path, size, mtime_ns, job_id, skipped_for)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![campaign, job_id, pos, c.path, c.size, c.mtime_ns, child_id, earlier],
        )?;
    }
    let next = (end <= known).then_some(end);
    jobs::parent_expanded(tx, job_id, queued, skipped, next)?;
    tx.execute(
        "UPDATE campaigns SET known_children = ?2, modified = ?3 WHERE id = ?1",
        params![campaign, known, t],
    )?;
    jobs::event(
        tx,
        Some(job_id),
        "campaign.expanded",
        json!({"campaign_id": campaign, "start_position": start, "queued": queued, "skipped": skipped, "next_start_position": next}),
    )
}

/// Moves a campaign on when its current batch has ended: the next batch,
/// STOPPED, COMPLETED or FAILED (too many failed children). Returns true when
/// it queued a batch.
pub fn advance(tx: &Tx, campaign: &str) -> StoreResult<bool> {
    let t = crate::clock::now();
    if live_jobs(tx, campaign)? > 0 {
        return Ok(false);
    }
    let (status, managed, max_failed, parent, pattern, batch_size, total, settings): (
        String,
        bool,
        Option<i64>,
        String,
        String,
        i64,
        Option<i64>,
        String,
    ) = tx.query_row(
        "SELECT status, managed, max_failed, parent, pattern, batch_size, total_children, settings FROM campaigns WHERE id = ?1",
        [campaign],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        },
    )?;
    let priority: i64 = tx.query_row("SELECT priority FROM campaigns WHERE id = ?1", [campaign], |r| r.get(0))?;
    let failed: i64 = tx.query_row(
        "SELECT COUNT(*) FROM jobs WHERE campaign_id = ?1 AND kind = 'ingest' AND status IN ('FAILED', 'CANCELLED')",
        [campaign],
        |r| r.get(0),
    )?;
    let set = |status: &str, error: Option<String>| -> StoreResult<bool> {
        tx.execute(
            "UPDATE campaigns SET status = ?2, error = ?3, modified = ?4,
             finished = CASE WHEN ?2 IN ('COMPLETED', 'FAILED', 'STOPPED') THEN ?4 ELSE NULL END WHERE id = ?1",
            params![campaign, status, error, t],
        )?;
        jobs::event(
            tx,
            None,
            "campaign.status",
            json!({"campaign_id": campaign, "status": status, "error": error}),
        )?;
        Ok(false)
    };
    if let Some(max) = max_failed.filter(|&m| failed > m) {
        return set(
            "FAILED",
            Some(format!(
                "{failed} child jobs failed, more than max_failed_children = {max}; fix them and resume"
            )),
        );
    }
    let last: Option<(Option<i64>, String, i64)> = tx
        .query_row(
            "SELECT next_start_position, status, start_position FROM jobs WHERE campaign_id = ?1 AND kind = 'parent' ORDER BY seq DESC LIMIT 1",
            [campaign],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let next = match &last {
        None => Some(1),
        // The batch itself failed (its collection was unreadable): a resumed campaign tries it again.
        Some((_, s, start)) if s == "FAILED" || s == "CANCELLED" => Some(*start),
        Some((next, _, _)) => *next,
    };
    let Some(next) = next else {
        return set("COMPLETED", None);
    };
    if status == "STOPPING" {
        return set("STOPPED", None);
    }
    if !managed {
        return Ok(false);
    }
    let settings: Settings = serde_json::from_str(&settings)?;
    let batch = NewBatch {
        campaign_id: campaign.to_owned(),
        parent,
        pattern,
        start_position: next,
        batch_size,
        total_children: total,
        max_failed,
        settings,
        priority,
        managed,
        trigger: "campaign".into(),
    };
    queue_batch(tx, &batch).map(|_| true)
}
