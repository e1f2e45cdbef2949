//! The job lifecycle against a model. proptest generates sequences of create,
//! submit, cancel, claim, task outcomes (done; a part recorded and the task still
//! running; transient, bad-input and hook failures; a stop) and crash/restart.
//! Each sequence runs on the real store (a real SQLite file, closed without
//! ceremony and reopened with startup recovery at each crash, as a restarted
//! daemon does), through the functions the engine and the API call, with the
//! engine's own retry policy (`engine::retry_in`). After every step every job's
//! status and rows and every task's state and attempts must equal the model's;
//! claims must follow priority, then (for engine workers) the job running fewest
//! tasks, then age, then task order, and hook threads take only HOOK tasks
//! while workers take the rest; an ended job must owe
//! no work; the status counters must equal the table. After each sequence a
//! restart and a drain must leave no job stuck: every submitted job that was not
//! cancelled or failed completes.
//!
//! 2,000 sequences in the suite (about 40 s); the 10,000 with
//! `BATCHD_LIFECYCLE_CASES=10000` (figure in docs/reliability.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use batchd::config::Config;
use batchd::engine::{retry_in, Failure};
use batchd::split::{Compression, OnMissing};
use batchd::store::jobs::{self, NewJob, Reject, Settings, Task};
use batchd::store::parts::{self, PartRow};
use batchd::store::queue;
use batchd::store::{Store, StoreError, StoreResult, Tx};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::json;

const ROWS_PER_PART: i64 = 10;

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Done,
    /// PACK only: the part is published and recorded, and then the task is
    /// still running (the `part.recorded` failpoint's moment).
    PartRecorded,
    Transient,
    BadInput,
    HookFailed,
    /// Stopped by a cancel or a shutdown.
    Stopped,
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        sources: i64,
        parts: i64,
        submit: bool,
        priority: i64,
        hook: bool,
    },
    Submit(usize),
    /// Cancel, with the parts already published still delivered (true) or not.
    Cancel(usize, bool),
    /// A claim by an engine worker (false) or a hook thread (true).
    Claim(bool),
    Complete(usize, Outcome),
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        6 => Just(Outcome::Done),
        1 => Just(Outcome::PartRecorded),
        2 => Just(Outcome::Transient),
        1 => Just(Outcome::BadInput),
        1 => Just(Outcome::HookFailed),
        1 => Just(Outcome::Stopped),
    ];
    prop_oneof![
        2 => (1i64..=2, 1i64..=3, prop::bool::weighted(0.8), 0i64..=2, any::<bool>()).prop_map(
            |(sources, parts, submit, priority, hook)| Op::Create { sources, parts, submit, priority, hook }
        ),
        1 => any::<usize>().prop_map(Op::Submit),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, deliver)| Op::Cancel(i, deliver)),
        5 => prop::bool::weighted(0.25).prop_map(Op::Claim),
        5 => (any::<usize>(), outcome).prop_map(|(slot, o)| Op::Complete(slot, o)),
        1 => Just(Op::Crash),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    Waiting,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Ready => "READY",
            State::Waiting => "WAITING",
            State::Running => "RUNNING",
            State::Done => "DONE",
            State::Failed => "FAILED",
            State::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Debug)]
struct MTask {
    id: i64,
    job: String,
    kind: &'static str,
    source: Option<i64>,
    part: Option<i64>,
    state: State,
    attempts: i64,
}

#[derive(Debug)]
struct MJob {
    id: String,
    priority: i64,
    status: &'static str,
    sources: i64,
    parts: i64,
    hook: bool,
    done_parts: BTreeSet<(i64, i64)>,
    total_rows: i64,
    /// Cancelled with its published parts still delivered.
    deliver: bool,
}

fn ended(status: &str) -> bool {
    matches!(status, "COMPLETED" | "FAILED" | "CANCELLED")
}

/// What the lifecycle should be, written from the design's words, not from the SQL.
#[derive(Debug, Default)]
struct Model {
    /// In creation order, which is also claim age order.
    jobs: Vec<MJob>,
    tasks: Vec<MTask>,
}

impl Model {
    fn job(&mut self, id: &str) -> &mut MJob {
        self.jobs.iter_mut().find(|j| j.id == id).expect("model job")
    }

    fn task(&mut self, id: i64) -> &mut MTask {
        self.tasks.iter_mut().find(|t| t.id == id).expect("model task")
    }

    /// SQLite gives a new row the largest id so far plus one.
    fn add(&mut self, job: &str, kind: &'static str, source: Option<i64>, part: Option<i64>, state: State) {
        let id = self.tasks.iter().map(|t| t.id).max().unwrap_or(0) + 1;
        self.tasks.push(MTask {
            id,
            job: job.to_owned(),
            kind,
            source,
            part,
            state,
            attempts: 0,
        });
    }

    fn queue(&mut self, job: &str) {
        for n in 1..=self.job(job).sources {
            self.add(job, "PLAN", Some(n), None, State::Ready);
        }
        self.add(job, "FINISH", None, None, State::Waiting);
    }

    /// A task is done; FINISH is released once nothing else of the job is open.
    fn task_done(&mut self, id: i64) {
        let t = self.task(id);
        if t.state == State::Running {
            t.state = State::Done;
        }
        let job = t.job.clone();
        let open = self
            .tasks
            .iter()
            .any(|t| t.job == job && t.kind != "FINISH" && matches!(t.state, State::Ready | State::Running | State::Waiting));
        if !open {
            for t in self
                .tasks
                .iter_mut()
                .filter(|t| t.job == job && t.kind == "FINISH" && t.state == State::Waiting)
            {
                t.state = State::Ready;
            }
        }
    }

    /// An ended job owes no work, but the deliveries of a job cancelled with
    /// its parts delivered.
    fn settle(&mut self, job: &str) {
        let j = self.job(job);
        if !ended(j.status) {
            return;
        }
        let keep_hooks = j.status == "CANCELLED" && j.deliver;
        for t in self
            .tasks
            .iter_mut()
            .filter(|t| t.job == job && matches!(t.state, State::Ready | State::Waiting))
        {
            if !(keep_hooks && t.kind == "HOOK") {
                t.state = State::Cancelled;
            }
        }
    }

    /// A delivery a job cancelled with its parts delivered still owes.
    fn delivery_owed(&self, t: &MTask) -> bool {
        t.kind == "HOOK" && self.jobs.iter().any(|j| j.id == t.job && j.status == "CANCELLED" && j.deliver)
    }

    fn cancel_open(&mut self, job: &str) {
        for t in self
            .tasks
            .iter_mut()
            .filter(|t| t.job == job && matches!(t.state, State::Ready | State::Waiting))
        {
            t.state = State::Cancelled;
        }
    }

    /// The next task to run: highest priority, then (for engine workers) the
    /// job with the fewest PLAN/PACK/FINISH tasks running, then the oldest job,
    /// then task order. Hook threads take HOOK tasks, workers everything else.
    fn claim(&mut self, hooks: bool) -> Option<i64> {
        let (jobs, tasks) = (&self.jobs, &self.tasks);
        let busy = |job: &str| {
            tasks
                .iter()
                .filter(|t| t.job == job && t.state == State::Running && t.kind != "HOOK")
                .count()
        };
        // Live jobs first; then, for hook threads, deliveries of cancelled
        // jobs, oldest task first.
        let rank = |t: &MTask| {
            let (pos, j) = jobs.iter().enumerate().find(|(_, j)| j.id == t.job).unwrap();
            if j.status == "CANCELLED" {
                (1, 0, 0, 0, t.id)
            } else {
                (0, -j.priority, if hooks { 0 } else { busy(&j.id) }, pos, t.id)
            }
        };
        let runnable = |t: &&MTask| {
            t.state == State::Ready
                && (t.kind == "HOOK") == hooks
                && jobs.iter().any(|j| {
                    j.id == t.job && (matches!(j.status, "QUEUED" | "PROCESSING") || (hooks && j.status == "CANCELLED" && j.deliver))
                })
        };
        let id = self.tasks.iter().filter(runnable).min_by_key(|t| rank(t))?.id;
        let t = self.task(id);
        t.state = State::Running;
        t.attempts += 1;
        let job = t.job.clone();
        let j = self.job(&job);
        if j.status == "QUEUED" {
            j.status = "PROCESSING";
        }
        Some(id)
    }

    fn planned(&mut self, task: &Task) {
        let (job, source) = (task.job_id.as_str(), task.source_n.unwrap());
        self.tasks
            .retain(|t| !(t.job == job && t.kind == "PACK" && t.source == Some(source) && t.state != State::Done));
        let j = self.job(job);
        let (parts, done) = (j.parts, j.done_parts.clone());
        j.total_rows += parts * ROWS_PER_PART;
        for n in 1..=parts {
            if !done.contains(&(source, n)) {
                self.add(job, "PACK", Some(source), Some(n), State::Ready);
            }
        }
        self.task_done(task.id);
        self.settle(job);
    }

    fn part_done(&mut self, task: &Task) {
        let (job, key) = (task.job_id.as_str(), (task.source_n.unwrap(), task.part_n.unwrap()));
        let j = self.job(job);
        if j.done_parts.insert(key) && j.hook {
            self.add(job, "HOOK", Some(key.0), Some(key.1), State::Ready);
            self.settle(job);
        }
    }

    fn finish(&mut self, task: &Task) {
        let j = self.job(&task.job_id);
        if j.status == "PROCESSING" {
            j.status = "COMPLETED";
        }
        self.task_done(task.id);
    }

    fn failed(&mut self, task: &Task, retry: bool) {
        let job = task.job_id.as_str();
        if retry {
            self.task(task.id).state = State::Ready;
            self.settle(job);
            return;
        }
        self.task(task.id).state = State::Failed;
        self.cancel_open(job);
        let j = self.job(job);
        if matches!(j.status, "QUEUED" | "PROCESSING") {
            j.status = "FAILED";
        }
    }

    fn stopped(&mut self, task: &Task) {
        let owed = self.tasks.iter().find(|t| t.id == task.id).is_some_and(|t| self.delivery_owed(t));
        let over = ended(self.job(&task.job_id).status) && !owed;
        let t = self.task(task.id);
        if over {
            t.state = State::Cancelled;
        } else {
            t.attempts = (t.attempts - 1).max(0);
            t.state = State::Ready;
        }
    }

    /// Tasks a crash left running run again, unless their job has ended.
    fn restart(&mut self) {
        let ended_jobs: Vec<String> = self.jobs.iter().filter(|j| ended(j.status)).map(|j| j.id.clone()).collect();
        let owed: Vec<i64> = self.tasks.iter().filter(|t| self.delivery_owed(t)).map(|t| t.id).collect();
        for t in self.tasks.iter_mut().filter(|t| t.state == State::Running) {
            t.state = if ended_jobs.contains(&t.job) && !owed.contains(&t.id) {
                State::Cancelled
            } else {
                State::Ready
            };
        }
    }
}

/// The real store, driven the way the engine and the API drive it.
struct Driver {
    path: PathBuf,
    store: Option<Store>,
    config: Config,
    /// Tasks claimed and not yet finished (the engine's running set).
    held: Vec<Task>,
    model: Model,
    seq: usize,
}

type Check = Result<(), TestCaseError>;

/// A failure of the test's own footing (a write refused, a file not copied),
/// told apart from a disagreement with the model.
fn infra(what: impl std::fmt::Display, e: impl std::fmt::Debug) -> TestCaseError {
    TestCaseError::fail(format!("{what} failed: {e:?}"))
}

impl Driver {
    fn new(template: &Path, dir: &Path) -> Result<Driver, TestCaseError> {
        let path = dir.join("case.db");
        std::fs::copy(template, &path).map_err(|e| infra(format!("copying the template database to {}", path.display()), e))?;
        let mut config = Config::default();
        config.engine.max_attempts = 3;
        config.engine.backoff_base_ms = 0;
        config.hooks.max_attempts = 2;
        config.hooks.backoff_seconds = 0.0;
        Ok(Driver {
            store: Some(Store::open(&path, 1).map_err(|e| infra(format!("opening {}", path.display()), e))?),
            path,
            config,
            held: Vec::new(),
            model: Model::default(),
            seq: 0,
        })
    }

    /// A write that fails (a constraint, a full disk) fails the case with its
    /// reason rather than panicking, so the shrunk sequence and the reason are
    /// what the failure prints. A refusal is the write's answer, for the model
    /// to check: `Ok(Err(reject))`.
    fn try_write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Tx) -> StoreResult<R> + Send + 'static,
    ) -> Result<Result<R, Reject>, TestCaseError> {
        let store = self.store.as_ref().expect("the driver always holds a store between steps");
        match store.write(f) {
            Ok(v) => Ok(Ok(v)),
            Err(StoreError::Refused(r)) => Ok(Err(r)),
            Err(e) => Err(infra("a store write", e)),
        }
    }

    /// A write that must not be refused.
    fn write<R: Send + 'static>(&self, f: impl FnOnce(&Tx) -> StoreResult<R> + Send + 'static) -> Result<R, TestCaseError> {
        let store = self.store.as_ref().expect("the driver always holds a store between steps");
        store.write(f).map_err(|e| infra("a store write", e))
    }

    fn apply(&mut self, op: &Op) -> Check {
        match *op {
            Op::Create {
                sources,
                parts,
                submit,
                priority,
                hook,
            } => {
                self.seq += 1;
                let id = format!("j{}", self.seq);
                let job = NewJob {
                    id: id.clone(),
                    kind: "ingest".into(),
                    sources: (1..=sources).map(|n| format!("/in/{id}-{n}.zip")).collect(),
                    settings: Settings {
                        batch_size: ROWS_PER_PART as usize,
                        max_part_bytes: None,
                        compression: Compression::Stored,
                        on_missing_file: OnMissing::Fail,
                        manifest: "manifest.csv".into(),
                        file_column: None,
                        callback_url: None,
                    },
                    trigger: "api".into(),
                    submit,
                    priority,
                    max_concurrency: None,
                    about: Default::default(),
                    out_dir: format!("/out/{id}"),
                    idempotency: None,
                    campaign: None,
                };
                let got = self.try_write(move |tx| jobs::create(tx, &job))?;
                prop_assert_eq!(got, Ok((id.clone(), true)));
                self.model.jobs.push(MJob {
                    id: id.clone(),
                    priority,
                    status: if submit { "QUEUED" } else { "DRAFT" },
                    sources,
                    parts,
                    hook,
                    done_parts: BTreeSet::new(),
                    total_rows: 0,
                    deliver: false,
                });
                if submit {
                    self.model.queue(&id);
                }
            }
            Op::Submit(i) => {
                let Some(j) = self.pick(i) else { return Ok(()) };
                let id = j.id.clone();
                let draft = j.status == "DRAFT";
                let got = self.try_write({
                    let id = id.clone();
                    move |tx| jobs::submit(tx, &id)
                })?;
                prop_assert_eq!(got.is_ok(), draft, "submit {} -> {:?}", id, got);
                if draft {
                    self.model.job(&id).status = "QUEUED";
                    self.model.queue(&id);
                } else {
                    prop_assert!(matches!(got, Err(Reject::Conflict(_))));
                }
            }
            Op::Cancel(i, deliver) => {
                let Some(j) = self.pick(i) else { return Ok(()) };
                let id = j.id.clone();
                let open = !ended(j.status);
                let got = self.try_write({
                    let id = id.clone();
                    move |tx| jobs::cancel(tx, &id, deliver)
                })?;
                prop_assert_eq!(got.is_ok(), open, "cancel {} -> {:?}", id, got);
                if open {
                    let j = self.model.job(&id);
                    j.status = "CANCELLED";
                    j.deliver = deliver;
                    self.model.settle(&id);
                }
            }
            Op::Claim(hooks) => {
                let claim = if hooks { queue::Claim::Hooks } else { queue::Claim::Work };
                let got = self.write(move |tx| queue::claim(tx, claim))?;
                let want = self.model.claim(hooks);
                prop_assert_eq!(got.as_ref().map(|t| t.id), want, "claim order");
                if let Some(t) = got {
                    prop_assert_eq!(t.attempts, self.model.task(t.id).attempts);
                    self.held.push(t);
                }
            }
            Op::Complete(slot, outcome) => {
                if self.held.is_empty() {
                    return Ok(());
                }
                let task = self.held.remove(slot % self.held.len());
                self.complete(task, outcome)?;
            }
            Op::Crash => self.restart()?,
        }
        Ok(())
    }

    fn pick(&self, i: usize) -> Option<&MJob> {
        (!self.model.jobs.is_empty()).then(|| &self.model.jobs[i % self.model.jobs.len()])
    }

    fn complete(&mut self, task: Task, outcome: Outcome) -> Check {
        let failure = match outcome {
            Outcome::Transient => Some(Failure::Transient),
            Outcome::BadInput => Some(Failure::BadInput),
            Outcome::HookFailed => Some(Failure::Hook),
            _ => None,
        };
        if let Some(failure) = failure {
            let retry = retry_in(&self.config, failure, task.attempts as u32);
            let t = task.clone();
            let error = json!({"code": "TEST", "message": format!("{failure:?}")});
            self.write(move |tx| jobs::task_failed(tx, &t, &error, retry))?;
            self.model.failed(&task, retry.is_some());
            return Ok(());
        }
        if let Outcome::Stopped = outcome {
            let (id, job) = (task.id, task.job_id.clone());
            self.write(move |tx| jobs::stopped(tx, id, &job))?;
            self.model.stopped(&task);
            return Ok(());
        }
        let t = task.clone();
        match task.kind.as_str() {
            "PLAN" => {
                let (source, parts, id) = (task.source_n.unwrap(), self.model.job(&task.job_id).parts, task.job_id.clone());
                let rows: Vec<PartRow> = (1..=parts)
                    .map(|n| PartRow {
                        source_n: source,
                        n,
                        path: format!("/out/{id}/s{source}-part{n:04}.zip"),
                        rows: ROWS_PER_PART,
                        first_line: 2 + (n - 1) * ROWS_PER_PART,
                        last_line: 1 + n * ROWS_PER_PART,
                        files: ROWS_PER_PART,
                        payload_bytes: 100,
                        comment: String::new(),
                    })
                    .collect();
                self.write(move |tx| parts::planned(tx, &t, &rows, true, parts * ROWS_PER_PART, &[], &[]))?;
                self.model.planned(&task);
            }
            "PACK" => {
                let hook = self.model.job(&task.job_id).hook;
                let record_only = matches!(outcome, Outcome::PartRecorded);
                self.write(move |tx| {
                    parts::part_done(tx, &t.job_id, t.source_n.unwrap(), t.part_n.unwrap(), 100, "00", hook)?;
                    if !record_only {
                        jobs::task_done(tx, t.id, &t.job_id)?;
                    }
                    Ok(())
                })?;
                self.model.part_done(&task);
                if record_only {
                    self.held.push(task);
                } else {
                    self.model.task_done(task.id);
                }
            }
            "HOOK" => {
                self.write(move |tx| jobs::task_done(tx, t.id, &t.job_id))?;
                self.model.task_done(task.id);
            }
            "FINISH" => {
                self.write(move |tx| jobs::finish(tx, &t))?;
                self.model.finish(&task);
            }
            other => return Err(TestCaseError::fail(format!("the store handed out a task of unknown kind {other}"))),
        }
        Ok(())
    }

    /// A crash: the store is dropped with tasks still RUNNING and reopened, and
    /// startup recovery runs, as `batchd serve` does.
    fn restart(&mut self) -> Check {
        self.held.clear();
        drop(self.store.take());
        let store = Store::open(&self.path, 1).map_err(|e| infra(format!("reopening {}", self.path.display()), e))?;
        self.store = Some(store);
        self.write(jobs::recover)?;
        self.model.restart();
        Ok(())
    }

    /// Everything the database holds equals the model, and the invariants hold.
    fn check(&self) -> Check {
        let store = self.store.as_ref().expect("the driver always holds a store between steps");
        let (db_jobs, db_tasks, counters, owed) = store
            .read(|c| {
                let mut s = c.prepare("SELECT id, status, processed_rows, total_rows FROM jobs ORDER BY seq")?;
                let db_jobs = s
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut s = c.prepare("SELECT id, job_id, kind, source_n, part_n, state, attempts FROM tasks ORDER BY id")?;
                let db_tasks = s
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                            r.get::<_, Option<i64>>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, i64>(6)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut s = c.prepare(
                    "SELECT substr(name, 6), CAST(value AS INTEGER) FROM counters WHERE name LIKE 'jobs:%' AND value != 0 ORDER BY 1",
                )?;
                let counters = s
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                let owed: i64 = c.query_row(
                    "SELECT COUNT(*) FROM tasks t JOIN jobs j ON j.id = t.job_id
                     WHERE j.status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND t.state IN ('READY', 'WAITING')
                       AND NOT (t.kind = 'HOOK' AND j.status = 'CANCELLED' AND j.deliver_after_cancel)",
                    [],
                    |r| r.get(0),
                )?;
                Ok((db_jobs, db_tasks, counters, owed))
            })
            .map_err(|e| infra("reading the store back", e))?;
        let m = &self.model;
        let want_jobs: Vec<_> = m
            .jobs
            .iter()
            .map(|j| {
                (
                    j.id.clone(),
                    j.status.to_owned(),
                    j.done_parts.len() as i64 * ROWS_PER_PART,
                    j.total_rows,
                )
            })
            .collect();
        let shown = format!("{db_jobs:?} {db_tasks:?}");
        prop_assert_eq!(db_jobs, want_jobs, "jobs (id, status, processed, total)");
        let want_tasks: Vec<_> = m
            .tasks
            .iter()
            .map(|t| {
                (
                    t.id,
                    t.job.clone(),
                    t.kind.to_owned(),
                    t.source,
                    t.part,
                    t.state.name().to_owned(),
                    t.attempts,
                )
            })
            .collect();
        prop_assert_eq!(db_tasks, want_tasks, "tasks (id, job, kind, source, part, state, attempts)");
        let mut by_status = std::collections::BTreeMap::new();
        for j in &m.jobs {
            *by_status.entry(j.status.to_owned()).or_insert(0i64) += 1;
        }
        prop_assert_eq!(counters, by_status.into_iter().collect::<Vec<_>>(), "jobs:STATUS counters");
        prop_assert_eq!(owed, 0, "an ended job owes no work: {}", shown);
        for j in m.jobs.iter().filter(|j| j.status == "COMPLETED") {
            prop_assert_eq!(
                j.done_parts.len() as i64,
                j.sources * j.parts,
                "{} completed with parts missing",
                &j.id
            );
        }
        Ok(())
    }

    /// Restart, then run everything to the end: nothing may be stuck.
    fn drain(&mut self) -> Check {
        self.restart()?;
        for _ in 0..10_000 {
            self.apply(&Op::Claim(false))?;
            if self.held.is_empty() {
                self.apply(&Op::Claim(true))?;
            }
            let Some(task) = self.held.pop() else { break };
            self.complete(task, Outcome::Done)?;
            self.check()?;
        }
        for j in &self.model.jobs {
            prop_assert!(ended(j.status) || j.status == "DRAFT", "job {} stuck {}", &j.id, j.status);
        }
        Ok(())
    }
}

/// tmpfs where there is one: each commit is fsynced, and this is about logic,
/// not disks (on a disk the suite's 2,000 cases take about twice as long).
fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

#[test]
fn lifecycle_agrees_with_its_model() {
    let cases: u32 = std::env::var("BATCHD_LIFECYCLE_CASES")
        .ok()
        .map_or(2_000, |v| v.parse().expect("BATCHD_LIFECYCLE_CASES is a number"));
    let base = scratch_dir();
    eprintln!("lifecycle model: scratch databases under {}", base.display());
    let dir = tempfile::tempdir_in(base).unwrap();
    let template = dir.path().join("template.db");
    drop(Store::open(&template, 1).unwrap());
    let started = std::time::Instant::now();
    let steps = std::sync::atomic::AtomicU64::new(0);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        let case = tempfile::tempdir_in(dir.path()).map_err(|e| infra("making a case directory", e))?;
        let mut d = Driver::new(&template, case.path())?;
        for op in &ops {
            d.apply(op)?;
            d.check()?;
        }
        d.drain()?;
        steps.fetch_add(ops.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("the lifecycle model test failed (a disagreement, or a store failure named as such): {e}");
    }
    eprintln!(
        "lifecycle model: {cases} sequences, {} steps, agree ({:.1} s)",
        steps.into_inner(),
        started.elapsed().as_secs_f64()
    );
}
