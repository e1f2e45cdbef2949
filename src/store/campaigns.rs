//! The campaign tables (`campaigns`, `campaign_children`) and the campaign
//! side of `jobs`: starting a campaign, queueing a batch (a `parent` job),
//! expanding a batch into its child jobs in one transaction, moving a
//! campaign on when its batch has ended, stop/resume, retrying its failed
//! children, and the facts its view is made from. `crate::campaign` lists the
//! collection and runs the loop; every row it reads or writes goes through here.

use std::path::Path;

use r2d2_sqlite::rusqlite::{self, params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::jobs::{self, About, CampaignLink, NewJob, Settings};
use super::model::CampaignStatus;
use super::{Reject, StoreError, StoreResult, Tx};

/// One batch to queue.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub campaign_id: String,
    /// Canonical path of the parent collection.
    pub parent: String,
    pub pattern: String,
    pub start_position: i64,
    pub batch_size: i64,
    pub total_children: Option<i64>,
    pub max_failed: Option<i64>,
    pub settings: Settings,
    /// Given to the batch jobs and their child jobs.
    pub priority: i64,
    /// The daemon's runner queues the following batches.
    pub managed: bool,
    pub trigger: String,
}

/// Jobs of the campaign still queued or running (parents and children).
fn live_jobs(c: &Connection, campaign_id: &str) -> StoreResult<i64> {
    Ok(c.query_row(
        "SELECT COUNT(*) FROM jobs WHERE campaign_id = ?1 AND status IN ('DRAFT', 'QUEUED', 'PROCESSING')",
        [campaign_id],
        |r| r.get(0),
    )?)
}

/// Starts a new campaign with its first batch and what the client calls it;
/// refuses an id already taken.
pub fn start(tx: &Tx, b: &NewBatch, about: &About) -> StoreResult<String> {
    let id = &b.campaign_id;
    let exists: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = ?1)", [id], |r| r.get(0))?;
    if exists {
        return Err(StoreError::Refused(Reject::Conflict(format!(
            "campaign {id} exists; POST /v1/campaigns/{id}/resume continues it"
        ))));
    }
    let job = queue_batch(tx, b)?;
    tx.execute(
        "UPDATE campaigns SET name = ?2, description = ?3, labels = ?4, external_ref = ?5 WHERE id = ?1",
        params![
            id,
            about.name,
            about.description,
            serde_json::to_string(&about.labels)?,
            about.external_ref
        ],
    )?;
    Ok(job)
}

/// A campaign's FAILED child jobs, for a retry.
pub fn failed_children(c: &Connection, id: &str) -> StoreResult<Vec<String>> {
    let exists: bool = c.query_row("SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = ?1)", [id], |r| r.get(0))?;
    if !exists {
        return Err(StoreError::Refused(Reject::NotFound));
    }
    let mut st = c.prepare("SELECT id FROM jobs WHERE campaign_id = ?1 AND kind = 'ingest' AND status = 'FAILED' ORDER BY seq")?;
    let v = st.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(v)
}

/// Runs the given failed children of a campaign again, each as itself
/// (`broken`: per job, the finished parts whose file is not whole). A
/// campaign that had ended (COMPLETED, or FAILED for too many failures) runs
/// again until they end, then ends as its runner decides; one that is
/// stopping or stopped stays so.
pub fn retry_failed(tx: &Tx, id: &str, children: &[(String, Vec<(i64, i64)>)]) -> StoreResult<()> {
    let status: Option<CampaignStatus> = tx
        .query_row("SELECT status FROM campaigns WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    let Some(status) = status else {
        return Err(StoreError::Refused(Reject::NotFound));
    };
    if children.is_empty() {
        return Err(StoreError::Refused(Reject::Conflict(format!(
            "campaign {id} has no failed child jobs"
        ))));
    }
    for (job, broken) in children {
        super::retry::retry(tx, job, broken)?;
    }
    if matches!(status, CampaignStatus::Completed | CampaignStatus::Failed) {
        tx.execute(
            "UPDATE campaigns SET status = 'RUNNING', error = NULL, finished = NULL, modified = ?2 WHERE id = ?1",
            params![id, crate::clock::now()],
        )?;
        jobs::event(tx, None, "campaign.status", json!({"campaign_id": id, "status": "RUNNING"}))?;
    }
    jobs::event(
        tx,
        None,
        "campaign.retry_failed",
        json!({"campaign_id": id, "jobs": children.len()}),
    )
}

/// Creates the campaign (when new) and queues one parent job. Refuses a batch
/// while another batch of the campaign is still running.
pub fn queue_batch(tx: &Tx, b: &NewBatch) -> StoreResult<String> {
    let t = crate::clock::now();
    let existing: Option<String> = tx
        .query_row("SELECT parent FROM campaigns WHERE id = ?1", [&b.campaign_id], |r| r.get(0))
        .optional()?;
    match existing {
        Some(p) if p != b.parent => {
            return Err(StoreError::Refused(Reject::Conflict(format!(
                "campaign {} runs over {p}, not {}; use another campaign_id",
                b.campaign_id, b.parent
            ))))
        }
        Some(_) => {
            tx.execute(
                "UPDATE campaigns SET total_children = COALESCE(?2, total_children), modified = ?3,
                 status = CASE WHEN status IN ('COMPLETED', 'STOPPED', 'FAILED') AND managed = 0 THEN 'RUNNING' ELSE status END
                 WHERE id = ?1",
                params![b.campaign_id, b.total_children, t],
            )?;
        }
        None => {
            tx.execute(
                "INSERT INTO campaigns (id, parent, pattern, batch_size, total_children, max_failed, settings, managed, status, created, modified, priority)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'RUNNING', ?9, ?9, ?10)",
                params![
                    b.campaign_id,
                    b.parent,
                    b.pattern,
                    b.batch_size,
                    b.total_children,
                    b.max_failed,
                    serde_json::to_string(&b.settings).expect("settings serialize"),
                    b.managed,
                    t,
                    b.priority
                ],
            )?;
        }
    }
    if live_jobs(tx, &b.campaign_id)? > 0 {
        return Err(StoreError::Refused(Reject::Conflict(format!(
            "a batch of campaign {} is still running; queue the next one when it and its child jobs have ended",
            b.campaign_id
        ))));
    }
    let taken: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE campaign_id = ?1 AND kind = 'parent' AND start_position = ?2 AND status != 'FAILED')",
        params![b.campaign_id, b.start_position],
        |r| r.get(0),
    )?;
    if taken {
        return Err(StoreError::Refused(Reject::Conflict(format!(
            "campaign {} already has a batch at start_position {}",
            b.campaign_id, b.start_position
        ))));
    }
    // The batch's one source is the collection, which is also where it "writes".
    let batch = NewJob {
        id: crate::ids::new_id(),
        kind: "parent".into(),
        sources: vec![b.parent.clone()],
        settings: b.settings.clone(),
        trigger: b.trigger.clone(),
        submit: true,
        priority: b.priority,
        max_concurrency: None,
        about: Default::default(),
        out_dir: b.parent.clone(),
        idempotency: None,
        campaign: Some(CampaignLink {
            campaign_id: b.campaign_id.clone(),
            parent_job_id: None,
            start_position: Some(b.start_position),
        }),
    };
    let (id, _) = jobs::create(tx, &batch)?;
    jobs::event(
        tx,
        Some(&id),
        "campaign.batch",
        json!({"campaign_id": b.campaign_id, "start_position": b.start_position, "batch_size": b.batch_size}),
    )?;
    Ok(id)
}

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
    let still_queued: bool = tx.query_row("SELECT status = 'QUEUED' FROM jobs WHERE id = ?1", [&job_id], |r| r.get(0))?;
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
            return jobs::parent_failed(tx, &job_id, &err);
        }
    };
    let known = cap.map_or(all.len() as i64, |c| c.min(all.len() as i64));
    let end = (start + batch_size).min(known + 1); // exclusive
    let (settings, priority, labels, external_ref): (String, i64, String, Option<String>) = tx.query_row(
        "SELECT settings, priority, labels, external_ref FROM campaigns WHERE id = ?1",
        [&campaign],
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
    jobs::parent_expanded(tx, &job_id, queued, skipped, next)?;
    tx.execute(
        "UPDATE campaigns SET known_children = ?2, modified = ?3 WHERE id = ?1",
        params![campaign, known, t],
    )?;
    jobs::event(
        tx,
        Some(&job_id),
        "campaign.expanded",
        json!({"campaign_id": campaign, "start_position": start, "queued": queued, "skipped": skipped, "next_start_position": next}),
    )
}

/// Moves a campaign on when its current batch has ended: the next batch,
/// STOPPED, COMPLETED or FAILED (too many failed children). Returns true when
/// it queued a batch.
pub fn advance(tx: &Tx, campaign: &str) -> StoreResult<bool> {
    let t = crate::clock::now();
    if live_jobs(tx, &campaign)? > 0 {
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
        [&campaign],
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
    let priority: i64 = tx.query_row("SELECT priority FROM campaigns WHERE id = ?1", [&campaign], |r| r.get(0))?;
    let failed: i64 = tx.query_row(
        "SELECT COUNT(*) FROM jobs WHERE campaign_id = ?1 AND kind = 'ingest' AND status IN ('FAILED', 'CANCELLED')",
        [&campaign],
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
            [&campaign],
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

/// Why a stop or resume was refused.
pub fn set_running(tx: &Tx, id: &str, stop: bool) -> StoreResult<()> {
    let row: Option<(String, bool)> = tx
        .query_row("SELECT status, managed FROM campaigns WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((status, managed)) = row else {
        return Err(StoreError::Refused(Reject::NotFound));
    };
    if !managed {
        return Err(StoreError::Refused(Reject::Conflict(
            "this campaign is driven by an outside runner (POST /v1/jobs kind parent); stop that runner instead".into(),
        )));
    }
    let to = match (stop, status.as_str()) {
        (true, "RUNNING") => "STOPPING",
        (true, "STOPPING" | "STOPPED") => return Ok(()),
        (false, "STOPPING" | "STOPPED" | "FAILED") => "RUNNING",
        (false, "RUNNING") => return Ok(()),
        (_, s) => return Err(StoreError::Refused(Reject::Conflict(format!("the campaign is {s}")))),
    };
    tx.execute(
        "UPDATE campaigns SET status = ?2, error = NULL, finished = NULL, modified = ?3 WHERE id = ?1",
        params![id, to, crate::clock::now()],
    )?;
    jobs::event(tx, None, "campaign.status", json!({"campaign_id": id, "status": to}))?;
    Ok(())
}

/// Everything the rows say about one campaign; `crate::view::CampaignView`
/// makes what people see of it (progress, rate, ETA, the message).
#[derive(Debug, Clone)]
pub struct CampaignFacts {
    /// When the facts were read (Unix seconds).
    pub at: f64,
    pub id: String,
    pub parent: String,
    pub pattern: String,
    pub batch_size: i64,
    pub total_children: Option<i64>,
    pub max_failed: Option<i64>,
    pub managed: bool,
    pub status: CampaignStatus,
    /// Children in the collection (up to the cap) at the last listing.
    pub known: Option<i64>,
    pub error: Option<String>,
    pub created: f64,
    pub modified: f64,
    pub finished: Option<f64>,
    pub settings: Value,
    /// The client's name, description, labels and own id for the campaign.
    pub about: About,
    pub parent_batches: i64,
    pub child_jobs: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub running: i64,
    /// Child jobs finished within the last [`RATE_WINDOW`].
    pub recent: i64,
    pub unique_children: i64,
    pub skipped: i64,
    /// The latest batch: (next_start_position, start_position, job id).
    pub last_batch: Option<(Option<i64>, Option<i64>, String)>,
}

/// Children finished within this window set the campaign's rate.
pub const RATE_WINDOW: f64 = 600.0;

pub fn facts(c: &Connection, id: &str) -> StoreResult<Option<CampaignFacts>> {
    let t = crate::clock::now();
    let row = c
        .query_row(
            "SELECT id, parent, pattern, batch_size, total_children, max_failed, managed, status, known_children, error, created, modified, finished, settings,
                    name, description, labels, external_ref
             FROM campaigns WHERE id = ?1",
            [id],
            |r| {
                Ok(CampaignFacts {
                    at: t,
                    id: r.get(0)?,
                    parent: r.get(1)?,
                    pattern: r.get(2)?,
                    batch_size: r.get(3)?,
                    total_children: r.get(4)?,
                    max_failed: r.get(5)?,
                    managed: r.get(6)?,
                    status: r.get(7)?,
                    known: r.get(8)?,
                    error: r.get(9)?,
                    created: r.get(10)?,
                    modified: r.get(11)?,
                    finished: r.get(12)?,
                    settings: serde_json::from_str::<Value>(&r.get::<_, String>(13)?).unwrap_or(Value::Null),
                    about: About::from_row(r, 14)?,
                    parent_batches: 0,
                    child_jobs: 0,
                    succeeded: 0,
                    failed: 0,
                    running: 0,
                    recent: 0,
                    unique_children: 0,
                    skipped: 0,
                    last_batch: None,
                })
            },
        )
        .optional()?;
    let Some(mut f) = row else { return Ok(None) };
    (f.parent_batches, f.child_jobs, f.succeeded, f.failed, f.running, f.recent) = c.query_row(
        "SELECT COALESCE(SUM(kind = 'parent'), 0), COALESCE(SUM(kind = 'ingest'), 0),
                COALESCE(SUM(kind = 'ingest' AND status = 'COMPLETED'), 0),
                COALESCE(SUM(kind = 'ingest' AND status IN ('FAILED', 'CANCELLED')), 0),
                COALESCE(SUM(kind = 'ingest' AND status IN ('QUEUED', 'PROCESSING', 'DRAFT')), 0),
                COALESCE(SUM(kind = 'ingest' AND finished >= ?2), 0)
         FROM jobs WHERE campaign_id = ?1",
        params![id, t - RATE_WINDOW],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
    )?;
    (f.unique_children, f.skipped) = c.query_row(
        "SELECT COUNT(DISTINCT path) FILTER (WHERE job_id IS NOT NULL), COUNT(*) FILTER (WHERE job_id IS NULL)
         FROM campaign_children WHERE campaign_id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    f.last_batch = c
        .query_row(
            "SELECT next_start_position, start_position, id FROM jobs WHERE campaign_id = ?1 AND kind = 'parent' ORDER BY seq DESC LIMIT 1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(Some(f))
}

/// Campaigns, newest first; with `label` (key, value) or `external_ref`, only
/// those carrying it.
pub fn list(c: &Connection, limit: i64, label: Option<(&str, &str)>, external_ref: Option<&str>) -> StoreResult<Vec<CampaignFacts>> {
    let ids: Vec<String> = {
        let mut st = c.prepare(
            "SELECT id FROM campaigns WHERE (?2 IS NULL OR json_extract(labels, '$.\"' || ?2 || '\"') = ?3)
             AND (?4 IS NULL OR external_ref = ?4) ORDER BY created DESC, id LIMIT ?1",
        )?;
        let (k, v) = (label.map(|l| l.0), label.map(|l| l.1));
        let v = st
            .query_map(params![limit, k, v, external_ref], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        v
    };
    let mut out = Vec::new();
    for id in ids {
        if let Some(f) = facts(c, &id)? {
            out.push(f);
        }
    }
    Ok(out)
}
