//! What jobs and campaigns look like to people and programs: the [`JobView`]
//! that the API serializes, the CLI deserializes and the engine hands to
//! `on_job`, made from the store's [`JobFacts`], and the [`CampaignView`] made
//! from `campaign::CampaignFacts`. The policy lives here, not next to the SQL:
//! rates over their windows, ETAs, the current stage, health, and the
//! one-line status messages.

use std::collections::BTreeMap;

use r2d2_sqlite::rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::campaign::{self, CampaignFacts};
use crate::clock::rfc3339;
use crate::store::model::{CampaignStatus, JobStatus, TaskState};
use crate::store::views::{self, ErrorEntry, JobFacts, RATE_WINDOW};
use crate::store::StoreResult;
use crate::text::{human_duration, thousands};

const STAGES: [&str; 3] = ["PLAN", "PACK", "FINISH"];
/// With part hooks configured, the job has a HOOK stage between PACK and FINISH.
const HOOK_STAGES: [&str; 4] = ["PLAN", "PACK", "HOOK", "FINISH"];

/// The full status of a job as `GET /v1/jobs/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    /// `ingest` or `parent` (a campaign batch).
    pub kind: String,
    pub status: JobStatus,
    pub trigger: String,
    pub priority: i64,
    /// The job's own cap on its tasks running at once; null for none.
    pub max_concurrency: Option<i64>,
    /// The client's name, description, labels and own id for the job.
    #[serde(flatten)]
    pub about: crate::store::jobs::About,
    /// Times the job was run again as itself after it failed or was cancelled.
    pub retries: i64,
    /// The job this one runs again (a retry with `new_job`).
    pub retry_of: Option<String>,
    /// For a job from a watched inbox: the file, and where it went when the job ended.
    pub watched_file: Option<crate::store::watch_files::WatchedFile>,
    pub sources: Vec<String>,
    pub settings: Value,
    pub out_dir: String,
    pub created: String,
    pub modified: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// From the first task's start to the end (or to now while it runs), ms.
    pub duration_ms: Option<i64>,
    pub progress: JobProgress,
    pub status_message: String,
    /// `healthy`, `degraded` (rows skipped, tasks retrying) or `unhealthy` (failed, stalled).
    pub health: String,
    pub estimated_completion: Option<String>,
    pub status_detail: StatusDetail,
    pub errors: Vec<ErrorEntry>,
    /// `{code, message, entry, line}` of a failed job.
    pub error: Option<Value>,
    pub campaign_id: Option<String>,
    pub parent_job_id: Option<String>,
    pub start_position: Option<i64>,
    pub next_start_position: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    pub processed: i64,
    pub total: i64,
    pub percent: f64,
    pub items_per_second: f64,
    pub eta_seconds: Option<f64>,
    pub current_stage: Option<Stage>,
    pub errors: i64,
    pub skipped: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub index: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDetail {
    /// Task counts by kind, then state.
    pub tasks: BTreeMap<String, BTreeMap<String, i64>>,
    /// True while some sources are not planned yet (the total is a floor).
    pub estimated: bool,
    pub percent_complete: f64,
}

/// The view of job `id`, or `None` when there is no such job.
pub fn job(conn: &Connection, id: &str, stall_seconds: u64) -> StoreResult<Option<JobView>> {
    Ok(views::job_facts(conn, id)?.map(|f| JobView::new(f, stall_seconds)))
}

impl JobView {
    pub fn new(j: JobFacts, stall_seconds: u64) -> JobView {
        let t = j.at;
        let status = j.status;
        let estimated = j.planned_sources < j.sources.len() as i64;
        let fraction = if j.total > 0 {
            j.processed as f64 / j.total as f64
        } else if status == JobStatus::Completed {
            1.0
        } else {
            0.0
        };
        // Rows per second over the recent window (or since the start, if shorter).
        let rate = match (j.recent_rows, j.started) {
            (Some(rows), Some(s)) if rows > 0 => {
                let span = (t - s.max(t - RATE_WINDOW)).clamp(1.0, RATE_WINDOW);
                rows as f64 / span
            }
            _ => 0.0,
        };
        let active = matches!(status, JobStatus::Queued | JobStatus::Processing);
        let eta = (active && rate > 0.0 && j.total > 0 && !estimated).then(|| ((j.total - j.processed).max(0) as f64 / rate).round());
        let stages: &[&str] = if j.tasks.contains_key("HOOK") { &HOOK_STAGES } else { &STAGES };
        let stage_idx = stages.iter().position(|s| {
            j.tasks
                .get(*s)
                .is_some_and(|m| m.keys().any(|k| k.parse::<TaskState>().is_ok_and(|t| !t.is_final())))
        });
        let stage = |i: usize| Stage {
            name: stages[i].to_owned(),
            index: i + 1,
            total: stages.len(),
        };
        let current_stage = active.then(|| stage(stage_idx.unwrap_or(0)));
        let stalled = status == JobStatus::Processing && j.last_progress.is_some_and(|lp| t - lp > stall_seconds as f64);
        let health = if status == JobStatus::Failed || stalled {
            "unhealthy"
        } else if j.skipped > 0 || j.retrying > 0 {
            "degraded"
        } else {
            "healthy"
        };
        let error_count = j.skipped + j.retrying + i64::from(status == JobStatus::Failed);
        let status_message = message(&j, fraction, rate, eta, estimated);
        JobView {
            progress: JobProgress {
                processed: j.processed,
                total: j.total,
                percent: (fraction * 1000.0).round() / 10.0,
                items_per_second: (rate * 100.0).round() / 100.0,
                eta_seconds: eta,
                current_stage,
                errors: error_count,
                skipped: j.skipped,
            },
            status_message,
            health: health.to_owned(),
            estimated_completion: eta.map(|e| rfc3339(t + e)),
            status_detail: StatusDetail {
                tasks: j.tasks,
                estimated,
                percent_complete: (fraction * 10000.0).round() / 10000.0,
            },
            id: j.id,
            kind: j.kind,
            status,
            trigger: j.trigger,
            priority: j.priority,
            max_concurrency: j.max_concurrency,
            about: j.about,
            retries: j.retries,
            retry_of: j.retry_of,
            watched_file: j.watched_file,
            sources: j.sources,
            settings: j.settings,
            out_dir: j.out_dir,
            created: rfc3339(j.created),
            modified: rfc3339(j.modified),
            started: j.started.map(rfc3339),
            finished: j.finished.map(rfc3339),
            duration_ms: j.started.map(|s| ((j.finished.unwrap_or(t) - s).max(0.0) * 1000.0).round() as i64),
            errors: j.errors,
            error: j.error,
            campaign_id: j.campaign_id,
            parent_job_id: j.parent_job_id,
            start_position: j.start_position,
            next_start_position: j.next_start_position,
        }
    }
}

/// The one-line status message.
fn message(j: &JobFacts, fraction: f64, rate: f64, eta: Option<f64>, estimated: bool) -> String {
    let n = |v: i64| thousands(v.max(0) as u64);
    let (processed, total) = (j.processed, j.total);
    if j.kind == "parent" && j.status == JobStatus::Completed {
        // A parent job's "rows" are the children of its batch.
        let or_null = |v: Option<i64>| v.map_or_else(|| "null".to_owned(), |v| v.to_string());
        return format!(
            "Batch from position {}: {} child jobs queued, {} skipped (already ingested); next_start_position {}",
            or_null(j.start_position),
            processed - j.skipped,
            j.skipped,
            j.next_start_position
                .map_or("none (collection exhausted)".into(), |n| n.to_string())
        );
    }
    match j.status {
        JobStatus::Draft => "Draft: add sources, then submit".into(),
        JobStatus::Queued => "Queued".into(),
        JobStatus::Processing if total == 0 || estimated => format!("Planning · {} rows so far", n(total)),
        JobStatus::Processing => {
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
        JobStatus::Completed => {
            let took = match (j.started, j.finished) {
                (Some(s), Some(f)) => format!(" in {}", human_duration(f - s)),
                _ => String::new(),
            };
            let skip = if j.skipped > 0 {
                format!(", {} skipped", n(j.skipped))
            } else {
                String::new()
            };
            format!("Completed {} rows{skip}{took}", n(processed))
        }
        JobStatus::Failed => format!(
            "Failed: {}",
            j.error.as_ref().and_then(|e| e["message"].as_str()).unwrap_or("unknown error")
        ),
        JobStatus::Cancelled => format!("Cancelled after {}/{} rows", n(processed), n(total)),
    }
}

/// A campaign as `GET /v1/campaigns/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignView {
    pub campaign_id: String,
    /// The client's name, description, labels and own id for the campaign.
    #[serde(flatten)]
    pub about: crate::store::jobs::About,
    pub parent: String,
    pub pattern: String,
    pub batch_size: i64,
    pub total_children: Option<i64>,
    pub max_failed_children: Option<i64>,
    /// True when the daemon queues the batches; false for an outside runner.
    pub managed: bool,
    pub status: CampaignStatus,
    pub error: Option<String>,
    pub created: String,
    pub modified: String,
    pub finished: Option<String>,
    pub settings: Value,
    pub parent_batches: i64,
    pub child_jobs: i64,
    pub unique_children: i64,
    pub children: ChildCounts,
    pub next_start_position: Option<i64>,
    pub current_batch: Option<CurrentBatch>,
    pub progress: CampaignProgress,
    pub status_message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildCounts {
    pub succeeded: i64,
    pub failed: i64,
    pub running: i64,
    pub skipped: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentBatch {
    pub job_id: String,
    pub start_position: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignProgress {
    pub processed: i64,
    pub total: Option<i64>,
    pub percent: Option<f64>,
    pub items_per_second: f64,
    pub eta_seconds: Option<f64>,
}

/// The view of campaign `id`, or `None` when there is no such campaign.
pub fn campaign(conn: &Connection, id: &str) -> StoreResult<Option<CampaignView>> {
    Ok(campaign::facts(conn, id)?.map(CampaignView::new))
}

impl CampaignView {
    pub fn new(f: CampaignFacts) -> CampaignView {
        let processed = f.succeeded + f.failed + f.skipped;
        let total = f.known;
        let window = (f.at - f.created).clamp(1.0, campaign::RATE_WINDOW);
        let rate = f.recent as f64 / window;
        let remaining = total.map(|n| (n - processed).max(0));
        let eta = match (remaining, rate > 0.0) {
            (Some(r), true) => Some((r as f64 / rate).round()),
            _ => None,
        };
        let percent = total
            .filter(|&n| n > 0)
            .map(|n| (processed as f64 * 1000.0 / n as f64).round() / 10.0);
        let n = |x: i64| thousands(x.max(0) as u64);
        let of = total.map_or("?".into(), n);
        let mut message = match f.status {
            CampaignStatus::Completed => format!(
                "Completed: {} children ingested, {} skipped, {} failed",
                n(f.succeeded),
                n(f.skipped),
                n(f.failed)
            ),
            CampaignStatus::Failed => format!("Failed: {}", f.error.as_deref().unwrap_or("unknown error")),
            CampaignStatus::Stopped => format!("Stopped at {}/{of} children; resume to continue", n(processed)),
            CampaignStatus::Running | CampaignStatus::Stopping => {
                let mut m = format!(
                    "{} {}/{of} children",
                    if f.status == CampaignStatus::Stopping {
                        "Stopping after this batch:"
                    } else {
                        "Running:"
                    },
                    n(processed)
                );
                if let Some(p) = percent {
                    m.push_str(&format!(" ({p:.1}%)"));
                }
                if rate > 0.0 {
                    m.push_str(&format!(" · {rate:.1} children/sec"));
                }
                if let Some(e) = eta {
                    m.push_str(&format!(" · ~{} remaining", human_duration(e)));
                }
                m.push_str(&format!(" · batch {}", f.parent_batches));
                m
            }
        };
        if f.failed > 0 && !matches!(f.status, CampaignStatus::Failed | CampaignStatus::Completed) {
            message.push_str(&format!(" · {} failed", n(f.failed)));
        }
        CampaignView {
            campaign_id: f.id,
            about: f.about,
            parent: f.parent,
            pattern: f.pattern,
            batch_size: f.batch_size,
            total_children: f.total_children,
            max_failed_children: f.max_failed,
            managed: f.managed,
            status: f.status,
            error: f.error,
            created: rfc3339(f.created),
            modified: rfc3339(f.modified),
            finished: f.finished.map(rfc3339),
            settings: f.settings,
            parent_batches: f.parent_batches,
            child_jobs: f.child_jobs,
            unique_children: f.unique_children,
            children: ChildCounts {
                succeeded: f.succeeded,
                failed: f.failed,
                running: f.running,
                skipped: f.skipped,
            },
            next_start_position: f.last_batch.as_ref().and_then(|l| l.0),
            current_batch: f.last_batch.map(|(_, start, job_id)| CurrentBatch {
                job_id,
                start_position: start,
            }),
            progress: CampaignProgress {
                processed,
                total,
                percent,
                items_per_second: (rate * 100.0).round() / 100.0,
                eta_seconds: eta,
            },
            status_message: message,
        }
    }
}

/// One event of the feed or of a job's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub id: i64,
    pub job_id: Option<String>,
    pub at: String,
    pub kind: String,
    pub data: Value,
}

/// `GET /v1/jobs/{id}/health`: the part of a job's view that says whether
/// it is well, for a monitor to poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobHealth {
    pub id: String,
    pub status: JobStatus,
    /// `healthy`, `degraded` or `unhealthy`, as in the job's view.
    pub health: String,
    pub status_message: String,
    /// Rows skipped, tasks retrying, and 1 for a failed job.
    pub error_count: i64,
    /// The last five error events, newest first.
    pub errors: Vec<ErrorEntry>,
    pub error: Option<Value>,
    pub duration_ms: Option<i64>,
}

impl From<JobView> for JobHealth {
    fn from(v: JobView) -> JobHealth {
        JobHealth {
            id: v.id,
            status: v.status,
            health: v.health,
            status_message: v.status_message,
            error_count: v.progress.errors,
            errors: v.errors,
            error: v.error,
            duration_ms: v.duration_ms,
        }
    }
}

/// The queue as `GET /v1/queue` returns it: the pause switch, and whether
/// work waits for disk space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    pub paused: bool,
    pub since: Option<String>,
    pub reason: Option<String>,
    /// Tasks still running (a pause lets them finish).
    pub running_tasks: usize,
    /// Set while PLAN and PACK tasks wait for `engine.min_free_bytes`.
    pub waiting_for_space: Option<SpaceWait>,
}

/// Tasks wait: the file system holding `dir` has less than `min_free_bytes` free.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceWait {
    pub dir: String,
    pub free_bytes: u64,
    pub min_free_bytes: u64,
    pub since: String,
}

impl SpaceWait {
    pub fn message(&self) -> String {
        format!(
            "waiting for disk space in {}: {} MiB free, engine.min_free_bytes is {} MiB",
            self.dir,
            self.free_bytes >> 20,
            self.min_free_bytes >> 20
        )
    }
}

impl QueueView {
    pub fn new(q: &crate::store::queue::QueueState, running_tasks: usize, waiting_for_space: Option<SpaceWait>) -> QueueView {
        QueueView {
            paused: q.paused,
            since: q.since.map(rfc3339),
            reason: q.reason.clone(),
            running_tasks,
            waiting_for_space,
        }
    }
}
