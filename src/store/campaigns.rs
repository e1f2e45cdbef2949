//! The campaign tables (`campaigns`, `campaign_children`) and the campaign
//! side of `jobs`: starting a campaign, queueing a batch (a `parent` job),
//! stop/resume, retrying its failed children, and the facts its view is made
//! from. What the runner does when a batch is expanded or has ended is in
//! `campaign_batches`.

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
pub(super) fn live_jobs(c: &Connection, campaign_id: &str) -> StoreResult<i64> {
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
