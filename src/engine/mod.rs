//! The engine: a bounded pool of threads that claim tasks from the database
//! (by job priority, and in turn between jobs of the same priority, so a small
//! job never waits for a large one), run them, and record the outcome. PLAN
//! indexes a source and plans its parts; PACK makes parts (one task per part
//! for random-access sources, one for a whole TAR.GZ); FINISH closes the job.
//! PLAN and PACK run in worker processes (`pool.rs`, `worker.rs`) or, with
//! `engine.isolation = "thread"`, on the claiming thread; both run `exec.rs`.
//!
//! Bad input fails a job at once; transient errors (I/O, disk full, timeouts,
//! a crashed worker) are retried with exponential backoff and jitter up to
//! `max_attempts`. Cancelling a job and shutdown stop running tasks at the next
//! entry boundary; a task past its timeout is stopped the same way in thread
//! mode and has its worker killed in process mode. The engine never holds a
//! database connection: it goes through [`Store::write`] and [`Store::read`].
//! HOOK tasks run on their own threads (`hooks.workers`), so delivering parts
//! overlaps packing; the site programs are run from `hook_tasks`.

pub mod exec;
mod hook_tasks;
pub mod pool;
mod space;
mod supervise;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Config, Isolation};
use crate::ids::random_u64;
use crate::split::{self, PartHook, Progress, SplitOptions};
use crate::store::jobs::{self, Task};
use crate::store::model::{JobStatus, TaskKind};
use crate::store::parts;
use crate::store::queue::{self, Claim};
use crate::store::Store;
use crate::view::SpaceWait;
pub use exec::{Failure, TaskError};
use exec::{Outcome, PlanCache, Work};

struct Running {
    job_id: String,
    kind: TaskKind,
    progress: Arc<Progress>,
    started: Instant,
    timed_out: AtomicBool,
    /// The worker process running this task, in process mode.
    link: Mutex<Option<Arc<pool::Link>>>,
}

impl Running {
    /// Stops the task at the next entry boundary.
    fn stop(&self) {
        self.progress.cancel.store(true, Ordering::SeqCst);
        if let Some(link) = &*self.link.lock().unwrap() {
            link.cancel();
        }
    }
}

pub struct Engine {
    store: Store,
    config: Arc<Config>,
    stopping: AtomicBool,
    running: Mutex<HashMap<i64, Arc<Running>>>,
    /// Rung when a task starts, so the timeout supervisor can sleep while none runs.
    started: crate::signals::EventBell,
    /// Plans kept between PLAN and PACK in thread mode (workers keep their own).
    plans: PlanCache,
    /// Worker processes, in process mode.
    pool: Option<pool::Pool>,
    /// Rows packed by tasks that have ended; with the running tasks' own counts
    /// this gives the rate shown in systemd's STATUS line.
    rows_finished: AtomicU64,
    /// Set while tasks wait for disk space, with the jobs told so in their history.
    space: Mutex<Option<(SpaceWait, HashSet<String>)>>,
}

pub struct EngineHandle {
    pub engine: Arc<Engine>,
    threads: Vec<JoinHandle<()>>,
}

impl EngineHandle {
    /// Stops claiming, stops running tasks at the next entry (they are put back to
    /// READY, not failed) and waits for the workers.
    pub fn shutdown(self, deadline: Duration) {
        self.engine.stopping.store(true, Ordering::SeqCst);
        for r in self.engine.running.lock().unwrap().values() {
            r.stop();
        }
        self.engine.store.bell.ring();
        self.engine.started.ring();
        let end = Instant::now() + deadline;
        for t in self.threads {
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        if let Some(pool) = &self.engine.pool {
            pool.shutdown();
        }
    }
}

/// The retry policy: seconds until a task that failed its `attempts`th attempt
/// runs again, or `None` when the job fails now. Backoff is base · 2^(attempt-1),
/// capped, with ±50 % jitter so retries of many tasks spread out; hooks back off
/// by `hooks.backoff_seconds`, doubling, without jitter.
pub fn retry_in(config: &Config, failure: Failure, attempts: u32) -> Option<f64> {
    let doubling = |base: f64| base * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    match failure {
        Failure::BadInput | Failure::Cancelled => None,
        Failure::Hook => (attempts < config.hooks.max_attempts).then(|| doubling(config.hooks.backoff_seconds)),
        Failure::Delivery => {
            let (max, backoff) = config
                .delivery
                .s3
                .as_ref()
                .map_or((1, 0.0), |d| (d.max_attempts, d.backoff_seconds));
            (attempts < max).then(|| doubling(backoff).min(3600.0))
        }
        Failure::Transient => (attempts < config.engine.max_attempts).then(|| {
            let e = &config.engine;
            let raw = doubling(e.backoff_base_ms as f64 / 1000.0).min(e.backoff_max_seconds as f64);
            raw * (0.5 + (random_u64() % 1000) as f64 / 1000.0)
        }),
    }
}

impl Engine {
    pub fn start(store: Store, config: Arc<Config>) -> anyhow::Result<EngineHandle> {
        recover(&store)?;
        crate::failpoint::reset();
        let workers = config.engine_workers();
        let pool = (config.engine.isolation == Isolation::Process).then(|| {
            let e = &config.engine;
            pool::Pool::new(e.worker_program.clone(), e.max_tasks_per_worker, e.worker_memory_mib)
        });
        let engine = Arc::new(Engine {
            store,
            stopping: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            started: crate::signals::EventBell::default(),
            plans: PlanCache::new(2 * workers + 2),
            pool,
            rows_finished: AtomicU64::new(0),
            space: Mutex::new(None),
            config,
        });
        let mut threads = Vec::new();
        let pools = [
            (Claim::Work, workers, "worker"),
            (Claim::Hooks, engine.config.hooks.workers, "hook"),
        ];
        for (claim, n, name) in pools {
            for i in 0..n {
                let e = Arc::clone(&engine);
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("batchd-{name}-{i}"))
                        .spawn(move || e.worker(claim))?,
                );
            }
        }
        let e = Arc::clone(&engine);
        threads.push(
            std::thread::Builder::new()
                .name("batchd-supervisor".into())
                .spawn(move || e.supervise())?,
        );
        Ok(EngineHandle { engine, threads })
    }

    /// Stops the running tasks of a job (after it ended in the database).
    pub fn cancel_job(&self, job_id: &str) {
        self.stop_job(job_id, false);
    }

    /// Stops a job's running tasks, but its part deliveries with `keep_hooks`.
    fn stop_job(&self, job_id: &str, keep_hooks: bool) {
        for r in self.running.lock().unwrap().values() {
            if r.job_id == job_id && !(keep_hooks && r.kind == TaskKind::Hook) {
                r.stop();
            }
        }
        self.forget(job_id);
    }

    /// A job was cancelled on request: its running tasks stop, and `on_job`
    /// is told CANCELLED (on a thread of its own: the request that cancelled
    /// does not wait for the site's program).
    pub fn job_cancelled(self: &Arc<Self>, job_id: &str) {
        // Deliveries already running go on when the parts are still delivered.
        self.stop_job(job_id, self.delivers_cancelled());
        if self.config.hooks.on_job.is_empty() {
            return;
        }
        let (engine, job_id) = (Arc::clone(self), job_id.to_owned());
        let spawned = std::thread::Builder::new()
            .name("batchd-on-job".into())
            .spawn(move || engine.tell_on_job(&job_id, "CANCELLED"));
        if let Err(e) = spawned {
            tracing::error!("starting the on_job hook of a cancelled job: {e}");
        }
    }

    /// `on_job` for a job that ended outside its FINISH task (failed,
    /// cancelled): one attempt, recorded, never retried.
    fn tell_on_job(&self, job_id: &str, status: &str) {
        let once = Task {
            id: 0,
            job_id: job_id.to_owned(),
            kind: TaskKind::Finish,
            source_n: None,
            part_n: None,
            attempts: 1,
        };
        if let Err(e) = self.job_hook(&once, status, &Progress::default()) {
            tracing::warn!(job = %job_id, "on_job hook for a {status} job: {e:#}");
        }
    }

    fn delivers_cancelled(&self) -> bool {
        self.config.hooks.on_cancel == crate::config::OnCancel::Deliver
    }

    /// Drops what is kept in memory for a job that has ended, and gives freed
    /// memory back to the system: an edge daemon sits idle most of the time.
    fn forget(&self, job_id: &str) {
        self.plans.forget(job_id);
        let spool = crate::objects::spool(&self.config, job_id);
        if spool.exists() {
            let _ = std::fs::remove_dir_all(&spool);
        }
        crate::mem::release_free_memory();
    }

    pub fn running_tasks(&self) -> usize {
        self.running.lock().unwrap().len()
    }

    /// Worker processes started and crashed since the daemon started (zero in thread mode).
    pub fn worker_counts(&self) -> (u64, u64) {
        self.pool
            .as_ref()
            .map_or((0, 0), |p| (p.started.load(Ordering::Relaxed), p.crashed.load(Ordering::Relaxed)))
    }

    fn worker(&self, claim: Claim) {
        while !self.stopping.load(Ordering::SeqCst) {
            // Read before claiming, so a submit that lands in between still wakes us.
            let generation = self.store.bell.generation();
            match self.store.write_quiet(move |tx| queue::claim(tx, claim)) {
                Ok(Some(task)) => {
                    self.store.bell.ring();
                    self.run(task)
                }
                Ok(None) => {
                    // Sleep until something is written (a submit, a finished task)
                    // or the earliest backoff ends; never poll in a loop.
                    let wait = self
                        .store
                        .read(move |c| queue::next_ready_in(c, claim))
                        .ok()
                        .flatten()
                        .map_or(30.0, |s| s.clamp(0.01, 30.0));
                    self.store.bell.wait_since(generation, Duration::from_secs_f64(wait));
                }
                Err(e) => {
                    tracing::error!("claiming a task: {e:#}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn run(&self, task: Task) {
        let running = Arc::new(Running {
            job_id: task.job_id.clone(),
            kind: task.kind,
            progress: Arc::new(Progress {
                on_part: self.part_hook(&task),
                ..Progress::default()
            }),
            started: Instant::now(),
            timed_out: AtomicBool::new(false),
            link: Mutex::new(None),
        });
        self.running.lock().unwrap().insert(task.id, Arc::clone(&running));
        self.started.ring();
        // A job cancelled between the claim and now is stopped right away
        // (but its part deliveries go on, with hooks.on_cancel = "deliver").
        if !(task.kind == TaskKind::Hook && self.delivers_cancelled())
            && self
                .store
                .read(|c| jobs::job_for_task(c, &task.job_id))
                .ok()
                .flatten()
                .is_some_and(|j| j.status == JobStatus::Cancelled)
        {
            running.stop();
        }
        let started = Instant::now();
        let progress = &running.progress;
        // A panic (on this thread, in thread mode) fails the attempt like any
        // other error: no task is left RUNNING by a live daemon.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| match task.kind {
            TaskKind::Plan | TaskKind::Pack => self.source_task(&task, &running),
            TaskKind::Hook => self.part_hook_task(&task, progress).map_err(TaskError::from),
            TaskKind::Finish => self.finish_task(&task, progress).map_err(TaskError::from),
        }))
        .unwrap_or_else(|panic| {
            let msg = exec::panic_message(&*panic);
            Err(TaskError::new(
                "WORKER_CRASHED",
                format!("WORKER_CRASHED: the {} task panicked on an engine thread: {msg}", task.kind),
                Failure::Transient,
            ))
        });
        self.running.lock().unwrap().remove(&task.id);
        self.rows_finished
            .fetch_add(progress.rows_done.load(Ordering::Relaxed), Ordering::Relaxed);
        tracing::debug!(task = task.id, kind = %task.kind, seconds = started.elapsed().as_secs_f64(), ok = result.is_ok(), "task finished");
        if let Err(err) = result {
            self.failed(&task, err, running.timed_out.load(Ordering::SeqCst));
        }
        if matches!(task.kind, TaskKind::Plan | TaskKind::Pack) {
            // Planning and packing a large source leave megabytes of free
            // heap in this worker's arena; the next task may run elsewhere.
            crate::mem::release_free_memory();
        }
        if task.kind == TaskKind::Pack {
            // A PACK task can publish a part just after another task failed
            // the job and removed its parts (found by the disk-full torture
            // test): once this task has stopped, they are removed again.
            self.remove_parts_if_failed(&task.job_id);
        }
    }

    fn finish_task(&self, task: &Task, progress: &Progress) -> anyhow::Result<()> {
        self.job_hook(task, "COMPLETED", progress)?;
        let r = self.store.write({
            let task = task.clone();
            move |tx| jobs::finish(tx, &task)
        });
        crate::failpoint::hit("job.finished");
        self.forget(&task.job_id);
        Ok(r?)
    }

    /// Removes a FAILED job's parts: a failed delivery must not leave anything
    /// that looks like a finished part. Parts of a job whose hook failed are
    /// kept: they are good, only their delivery failed, and the site may
    /// deliver them by hand.
    fn remove_parts_if_failed(&self, job_id: &str) {
        if let Ok(Some((status, code))) = self.store.read(|c| jobs::status_and_code(c, job_id)) {
            if status == JobStatus::Failed && !matches!(code.as_deref(), Some("HOOK_FAILED" | "DELIVERY_FAILED")) {
                match self.store.read(|c| parts::part_paths(c, job_id)) {
                    Ok(paths) => remove_parts(&paths),
                    Err(e) => tracing::error!("listing the parts of failed job {job_id}: {e:#}"),
                }
            }
        }
    }

    fn failed(&self, task: &Task, err: TaskError, timed_out: bool) {
        if err.failure == Failure::Cancelled && !timed_out {
            let (id, job_id) = (task.id, task.job_id.clone());
            if let Err(e) = self.store.write(move |tx| jobs::stopped(tx, id, &job_id)) {
                tracing::error!("recording a stopped task: {e:#}");
            }
            return;
        }
        let err = if timed_out {
            let limit = self.config.engine.task_timeout_seconds;
            TaskError::new(
                "TASK_TIMEOUT",
                format!("TASK_TIMEOUT: the task ran longer than {limit} s (engine.task_timeout_seconds) and was stopped"),
                Failure::Transient,
            )
        } else {
            err
        };
        let error = err.json();
        let attempts = task.attempts as u32;
        let retry_in = retry_in(&self.config, err.failure, attempts);
        tracing::warn!(job = %task.job_id, task = %task.kind, attempt = attempts, "task failed: {}", err.message);
        let t = task.clone();
        match self.store.write(move |tx| jobs::task_failed(tx, &t, &error, retry_in)) {
            Ok(true) => {
                self.cancel_job(&task.job_id);
                self.remove_parts_if_failed(&task.job_id);
                // on_job hears of the failure too, unless on_job itself failed.
                if !(err.failure == Failure::Hook && task.kind == TaskKind::Finish) {
                    self.tell_on_job(&task.job_id, "FAILED");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::error!("recording a failed task: {e:#}"),
        }
    }

    fn options(&self, job: &jobs::JobRow, source_n: i64) -> anyhow::Result<SplitOptions> {
        let source = job
            .sources
            .get(source_n as usize - 1)
            .ok_or_else(|| anyhow::anyhow!("job {} has no source {source_n}", job.id))?;
        // An object in a bucket is split from its local copy in the spool.
        let local;
        let source = if crate::objects::is_s3(source) {
            local = crate::objects::local_copy(&self.config, &job.id, source_n, source)?;
            local.to_str().unwrap_or_default()
        } else {
            source
        };
        let mut opts = job.settings.split_options(source, &job.out_dir);
        opts.jobs = 1; // parallelism comes from the engine's workers
        Ok(opts)
    }

    fn job(&self, job_id: &str) -> anyhow::Result<jobs::JobRow> {
        self.store
            .read(|c| jobs::job_for_task(c, job_id))?
            .ok_or_else(|| anyhow::anyhow!("job {job_id} vanished"))
    }

    /// PLAN or PACK: the work is described here, run on this thread or in a
    /// worker process, and its outcome recorded here.
    fn source_task(&self, task: &Task, running: &Running) -> Result<(), TaskError> {
        let job = self.job(&task.job_id)?;
        if self.wait_for_space(task, &job.out_dir)? {
            return Ok(());
        }
        let source_n = task.source_n.expect("PLAN and PACK have a source");
        let key = (job.id.clone(), source_n);
        let opts = self.options(&job, source_n)?;
        let work = match task.kind {
            TaskKind::Plan => Work::Plan { key, opts },
            _ => {
                let parts = match task.part_n {
                    Some(n) => vec![n as usize],
                    None => self
                        .store
                        .read(|c| parts::pending_parts(c, &job.id, source_n))
                        .map_err(anyhow::Error::from)?
                        .into_iter()
                        .map(|n| n as usize)
                        .collect(),
                };
                if parts.is_empty() {
                    // Everything was packed by the planning pass (a TAR.GZ).
                    let t = task.clone();
                    self.store
                        .write(move |tx| jobs::task_done(tx, t.id, &t.job_id))
                        .map_err(anyhow::Error::from)?;
                    crate::failpoint::hit("pack.done");
                    return Ok(());
                }
                Work::Pack { key, opts, parts }
            }
        };
        let outcome = match &self.pool {
            None => exec::execute(&work, &self.plans, &running.progress).map_err(TaskError::from),
            Some(pool) => {
                let outcome = pool.run(&work, &running.progress, |link| *running.link.lock().unwrap() = Some(link));
                running.link.lock().unwrap().take();
                if let (Err(e), Work::Pack { parts, .. }) = (&outcome, &work) {
                    if e.code.starts_with("WORKER_") || running.timed_out.load(Ordering::SeqCst) {
                        // A dead worker could not remove its temp files.
                        self.remove_temps(&job.id, source_n, parts);
                    }
                }
                outcome
            }
        }?;
        let t = task.clone();
        match outcome {
            Outcome::Planned(p) => {
                let hook = self.config.parts_are_handed_on();
                let published = p.published.len();
                self.store
                    .write(move |tx| {
                        parts::planned(tx, &t, &p.parts, p.per_part, p.rows, &p.skipped, &p.oversized)?;
                        // A TAR.GZ packed while it was planned: its parts are done.
                        for (n, bytes, sha) in &p.published {
                            parts::part_done(tx, &t.job_id, source_n, *n as i64, *bytes, sha, hook)?;
                        }
                        Ok(())
                    })
                    .map_err(anyhow::Error::from)?;
                for _ in 0..published {
                    crate::failpoint::hit("part.recorded");
                }
            }
            Outcome::Packed => {
                self.store
                    .write(move |tx| jobs::task_done(tx, t.id, &t.job_id))
                    .map_err(anyhow::Error::from)?;
                crate::failpoint::hit("pack.done");
            }
        }
        Ok(())
    }

    fn remove_temps(&self, job_id: &str, source_n: i64, numbers: &[usize]) {
        let paths = self.store.read(|c| {
            numbers
                .iter()
                .filter_map(|&n| parts::part_path(c, job_id, source_n, n as i64).transpose())
                .collect::<crate::store::StoreResult<Vec<String>>>()
        });
        match paths {
            Ok(paths) => {
                for p in paths {
                    let _ = std::fs::remove_file(split::zipwrite::temp_path(Path::new(&p)));
                }
            }
            Err(e) => tracing::error!("finding the parts of job {job_id}: {e:#}"),
        }
    }

    /// For PACK tasks: records each part the moment it is published (renamed and
    /// fsynced), not when the whole task ends.
    fn part_hook(&self, task: &Task) -> PartHook {
        if task.kind != TaskKind::Pack {
            return PartHook::default();
        }
        let store = self.store.clone();
        let job_id = task.job_id.clone();
        let source_n = task.source_n.unwrap_or(1);
        let hook = self.config.parts_are_handed_on();
        PartHook(Some(Arc::new(move |n, w| {
            let (job_id, sha, bytes) = (job_id.clone(), w.sha256.clone(), w.bytes);
            if let Err(e) = store.write(move |tx| parts::part_done(tx, &job_id, source_n, n as i64, bytes, &sha, hook)) {
                tracing::error!("recording part {n}: {e:#}");
            }
            crate::failpoint::hit("part.recorded");
        })))
    }
}

/// Removes a failed job's parts and their temp files: a failed delivery must not
/// leave anything that looks like a finished part. Only the job's own files, as
/// recorded in the database: an output directory may be shared (a watch's
/// `output_dir`). Running tasks, stopped by the cancel, remove their own temps.
fn remove_parts(paths: &[String]) {
    for p in paths {
        let path = Path::new(p);
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(split::zipwrite::temp_path(path));
    }
}

/// Startup recovery: tasks left RUNNING run again, and parts recorded DONE whose
/// file is gone or has another size are made again.
fn recover(store: &Store) -> anyhow::Result<()> {
    let requeued = store.write(jobs::recover)?;
    if requeued > 0 {
        tracing::info!("recovery: {requeued} task(s) left running by a crash will run again");
    }
    for p in store.read(parts::done_parts)? {
        let ok = std::fs::metadata(PathBuf::from(&p.path)).is_ok_and(|m| m.len() as i64 == p.bytes);
        if !ok {
            tracing::warn!("recovery: part {} is missing or changed; it will be made again", p.path);
            store.write(move |tx| parts::reopen_part(tx, &p.job_id, p.source_n, p.n))?;
        }
    }
    Ok(())
}
