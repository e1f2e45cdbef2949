//! The work that reads sources — PLAN and PACK — as one function both
//! isolation modes run: on an engine thread (`engine.isolation = "thread"`)
//! or inside a worker process (`worker.rs`). It touches no database: a plan
//! comes back as [`Planned`], and each published part goes out through the
//! `Progress::on_part` hook, which the daemon turns into a store write (thread
//! mode) or the worker turns into a message on its pipe (process mode). So
//! the two modes cannot drift apart: they share everything but the transport.
//!
//! Also here: [`TaskError`], the one shape a failed attempt takes whether it
//! came from the library, a hook, or a worker process that died.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::split::{self, Plan, Progress, Source, SplitOptions};
use crate::store::parts::PartRow;

/// Which source of which job a plan belongs to.
pub type PlanKey = (String, i64);

/// One unit of source work, as the daemon hands it out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Work {
    /// Index the source, read and check its manifest, plan its parts.
    Plan { key: PlanKey, opts: SplitOptions },
    /// Make these parts (all pending parts, for a streamed source).
    Pack {
        key: PlanKey,
        opts: SplitOptions,
        parts: Vec<usize>,
    },
}

impl Work {
    pub fn opts(&self) -> &SplitOptions {
        match self {
            Work::Plan { opts, .. } | Work::Pack { opts, .. } => opts,
        }
    }
}

/// What PLAN found: the rows the store records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Planned {
    pub parts: Vec<PartRow>,
    pub skipped: Vec<(u64, String)>,
    /// True when each part gets its own PACK task (random-access sources).
    pub per_part: bool,
    pub rows: i64,
    /// Parts a TAR.GZ's planning pass already published: (number, bytes, sha256).
    pub published: Vec<(usize, u64, String)>,
    /// Parts over `max_part_bytes`: each one file larger than the cap.
    #[serde(default)]
    pub oversized: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outcome {
    Planned(Planned),
    Packed,
}

/// A planned source, kept between PLAN and its PACK tasks so they need not
/// index the source again.
pub type PlanEntry = Arc<(Source, Plan, SplitOptions)>;

/// The most recently used plans, newest last. Bounded: an index of 200,000
/// entries is tens of MiB, and a worker process or an idle daemon should not
/// keep every job's.
pub struct PlanCache {
    entries: Mutex<VecDeque<(PlanKey, PlanEntry)>>,
    cap: usize,
}

impl PlanCache {
    pub fn new(cap: usize) -> PlanCache {
        PlanCache {
            entries: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
        }
    }

    fn get(&self, key: &PlanKey) -> Option<PlanEntry> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, e)| Arc::clone(e))
    }

    fn put(&self, key: PlanKey, entry: PlanEntry) {
        let mut entries = self.entries.lock().unwrap();
        entries.retain(|(k, _)| *k != key);
        entries.push_back((key, entry));
        while entries.len() > self.cap {
            entries.pop_front();
        }
    }

    /// Drops the plans of a job that has ended (or is planned again).
    pub fn forget(&self, job_id: &str) {
        self.entries.lock().unwrap().retain(|(k, _)| k.0 != job_id);
    }

    fn planned(&self, key: &PlanKey, opts: &SplitOptions) -> Result<PlanEntry, Error> {
        if let Some(e) = self.get(key) {
            return Ok(e);
        }
        let (src, plan) = split::plan(opts)?;
        let entry = Arc::new((src, plan, opts.clone()));
        self.put(key.clone(), Arc::clone(&entry));
        Ok(entry)
    }
}

/// Runs one unit of source work. Parts are reported through `progress.on_part`
/// as each is published.
pub fn execute(work: &Work, cache: &PlanCache, progress: &Progress) -> Result<Outcome, Error> {
    match work {
        Work::Plan { key, opts } => {
            cache.forget(&key.0);
            let (src, plan, done) = split::plan_and_pack_stream(opts, progress)?;
            let entry = Arc::new((src, plan, opts.clone()));
            cache.put(key.clone(), Arc::clone(&entry));
            let mut p = planned(key.1, &entry);
            p.published = done.into_iter().map(|(n, w)| (n, w.bytes, w.sha256)).collect();
            Ok(Outcome::Planned(p))
        }
        Work::Pack { key, opts, parts } => {
            crate::failpoint::task_fault(&opts.source);
            let entry = cache.planned(key, opts)?;
            let (src, plan, opts) = &*entry;
            split::pack_parts(src, plan, parts, opts, progress)?;
            Ok(Outcome::Packed)
        }
    }
}

fn planned(source_n: i64, entry: &PlanEntry) -> Planned {
    let (src, plan, opts) = &**entry;
    Planned {
        parts: plan
            .parts
            .iter()
            .map(|p| PartRow {
                source_n,
                n: p.n as i64,
                path: p.path(&opts.out).to_string_lossy().into_owned(),
                rows: p.rows as i64,
                first_line: p.first_line as i64,
                last_line: p.last_line as i64,
                files: p.files.len() as i64,
                payload_bytes: p.payload_bytes as i64,
                comment: p.comment.clone(),
            })
            .collect(),
        skipped: plan.skipped.iter().map(|s| (s.line, s.value.clone())).collect(),
        per_part: src.random_access(),
        oversized: plan.oversized.clone(),
        rows: plan.rows as i64,
        published: Vec::new(),
    }
}

/// What kind of failure a task attempt ended in, as the retry policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// I/O, disk full, a timeout, a crashed worker: worth another attempt.
    Transient,
    /// The source itself is at fault: another attempt cannot help.
    BadInput,
    /// A hook exited non-zero or timed out: retried on the hooks' own schedule.
    Hook,
    /// A part could not be delivered to object storage: retried on the
    /// delivery's own schedule (`delivery.s3.max_attempts`).
    Delivery,
    /// Stopped on request (cancel, shutdown): not a failure at all.
    Cancelled,
}

/// A failed attempt, as recorded on the task and the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskError {
    pub code: String,
    pub message: String,
    pub entry: Option<String>,
    pub line: Option<u64>,
    pub failure: Failure,
}

impl TaskError {
    pub fn new(code: &str, message: String, failure: Failure) -> TaskError {
        TaskError {
            code: code.into(),
            message,
            entry: None,
            line: None,
            failure,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"code": self.code, "message": self.message, "entry": self.entry, "line": self.line})
    }
}

impl From<&Error> for TaskError {
    fn from(e: &Error) -> TaskError {
        let failure = match e {
            Error::Cancelled => Failure::Cancelled,
            Error::Hook { .. } => Failure::Hook,
            Error::Delivery { .. } => Failure::Delivery,
            e if e.is_bad_input() => Failure::BadInput,
            _ => Failure::Transient,
        };
        TaskError {
            code: e.code().into(),
            message: e.to_string(),
            entry: e.entry().map(str::to_owned),
            line: e.line(),
            failure,
        }
    }
}

impl From<anyhow::Error> for TaskError {
    fn from(e: anyhow::Error) -> TaskError {
        match e.downcast_ref::<Error>() {
            Some(lib) => TaskError::from(lib),
            None => TaskError::new("INTERNAL", format!("{e:#}"), Failure::Transient),
        }
    }
}

impl From<Error> for TaskError {
    fn from(e: Error) -> TaskError {
        TaskError::from(&e)
    }
}

/// The message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
