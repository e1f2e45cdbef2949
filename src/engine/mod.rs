//! The engine: a bounded pool of worker threads that claim tasks from the
//! database (job priority, then FIFO), run them, and record the outcome. PLAN
//! indexes a source and plans its parts; PACK makes parts (one task per part for
//! random-access sources, one for a whole TAR.GZ); FINISH closes the job.
//!
//! Bad input fails a job at once; transient errors (I/O, disk full, timeouts) are
//! retried with exponential backoff and jitter up to `max_attempts`. Cancelling a
//! job, a task timeout and shutdown all stop running tasks at the next entry
//! boundary through the task's `Progress::cancel` flag. Workers never hold a
//! database connection: they go through [`Store::write`] and [`Store::read`].
//! The HOOK and FINISH tasks' site programs are run from `hook_tasks`.

mod hook_tasks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::Config;
use crate::error::Error;
use crate::ids::random_u64;
use crate::split::{self, PartHook, Plan, Progress, Source, SplitOptions};
use crate::store::jobs::{self, Task};
use crate::store::model::{JobStatus, TaskKind};
use crate::store::parts::{self, PartRow};
use crate::store::Store;

struct Running {
    job_id: String,
    progress: Arc<Progress>,
    started: Instant,
    timed_out: Arc<AtomicBool>,
}

/// A planned source, kept between PLAN and its PACK tasks so they need not index
/// the source again (after a restart they do, once).
type PlanEntry = Arc<(Source, Plan, SplitOptions)>;

pub struct Engine {
    store: Store,
    config: Arc<Config>,
    stopping: AtomicBool,
    running: Mutex<HashMap<i64, Running>>,
    /// Rung when a task starts, so the timeout supervisor can sleep while none runs.
    started: crate::signals::EventBell,
    plans: Mutex<HashMap<(String, i64), PlanEntry>>,
    /// Rows packed by tasks that have ended; with the running tasks' own counts
    /// this gives the rate shown in systemd's STATUS line.
    rows_finished: std::sync::atomic::AtomicU64,
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
            r.progress.cancel.store(true, Ordering::SeqCst);
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
    }
}

/// What kind of failure a task attempt ended in, as the retry policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// I/O, disk full, a timeout, an internal error: worth another attempt.
    Transient,
    /// The source itself is at fault: another attempt cannot help.
    BadInput,
    /// A hook exited non-zero or timed out: retried on the hooks' own schedule.
    Hook,
}

/// The retry policy: seconds until a task that failed its `attempts`th attempt
/// runs again, or `None` when the job fails now. Backoff is base · 2^(attempt-1),
/// capped, with ±50 % jitter so retries of many tasks spread out; hooks back off
/// by `hooks.backoff_seconds`, doubling, without jitter.
pub fn retry_in(config: &Config, failure: Failure, attempts: u32) -> Option<f64> {
    let doubling = |base: f64| base * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    match failure {
        Failure::BadInput => None,
        Failure::Hook => (attempts < config.hooks.max_attempts).then(|| doubling(config.hooks.backoff_seconds)),
        Failure::Transient => (attempts < config.engine.max_attempts).then(|| {
            let e = &config.engine;
            let raw = doubling(e.backoff_base_ms as f64 / 1000.0).min(e.backoff_max_seconds as f64);
            raw * (0.5 + (random_u64() % 1000) as f64 / 1000.0)
        }),
    }
}

pub fn error_json(e: &Error) -> Value {
    json!({"code": e.code(), "message": e.to_string(), "entry": e.entry(), "line": e.line()})
}

impl Engine {
    pub fn start(store: Store, config: Arc<Config>) -> anyhow::Result<EngineHandle> {
        recover(&store)?;
        let engine = Arc::new(Engine {
            store,
            config,
            stopping: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            started: crate::signals::EventBell::default(),
            plans: Mutex::new(HashMap::new()),
            rows_finished: std::sync::atomic::AtomicU64::new(0),
        });
        let mut threads = Vec::new();
        for i in 0..engine.config.engine_workers() {
            let e = Arc::clone(&engine);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("batchd-worker-{i}"))
                    .spawn(move || e.worker())?,
            );
        }
        let e = Arc::clone(&engine);
        threads.push(
            std::thread::Builder::new()
                .name("batchd-supervisor".into())
                .spawn(move || e.supervise())?,
        );
        Ok(EngineHandle { engine, threads })
    }

    /// Stops the running tasks of a job (after it was cancelled in the database).
    pub fn cancel_job(&self, job_id: &str) {
        for r in self.running.lock().unwrap().values() {
            if r.job_id == job_id {
                r.progress.cancel.store(true, Ordering::SeqCst);
            }
        }
        self.forget(job_id);
    }

    /// Drops what is kept in memory for a job that has ended, and gives freed
    /// memory back to the system: an edge daemon sits idle most of the time.
    fn forget(&self, job_id: &str) {
        self.plans.lock().unwrap().retain(|k, _| k.0 != job_id);
        // SAFETY: malloc_trim only releases free heap pages.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    pub fn running_tasks(&self) -> usize {
        self.running.lock().unwrap().len()
    }

    fn worker(&self) {
        while !self.stopping.load(Ordering::SeqCst) {
            // Read before claiming, so a submit that lands in between still wakes us.
            let generation = self.store.bell.generation();
            match self.store.write_quiet(jobs::claim) {
                Ok(Some(task)) => {
                    self.store.bell.ring();
                    self.run(task)
                }
                Ok(None) => {
                    // Sleep until something is written (a submit, a finished task)
                    // or the earliest backoff ends; never poll in a loop.
                    let wait = self
                        .store
                        .read(jobs::next_ready_in)
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

    /// Rows packed since the daemon started, counting tasks still running.
    fn rows_packed(&self) -> u64 {
        let running: u64 = self
            .running
            .lock()
            .unwrap()
            .values()
            .map(|r| r.progress.rows_done.load(Ordering::Relaxed))
            .sum();
        self.rows_finished.load(Ordering::Relaxed) + running
    }

    /// Pings systemd's watchdog and refreshes its STATUS line, after a round
    /// trip through the database writer: if the writer is stuck, so is this
    /// loop, the pings stop and systemd restarts us.
    fn notify_systemd(&self, last: &mut (Instant, u64)) {
        let alive = self.store.write_quiet(|_| Ok(())).is_ok();
        let queued = self
            .store
            .read(|c| {
                Ok(
                    c.query_row("SELECT COUNT(*) FROM jobs WHERE status IN ('QUEUED', 'PROCESSING')", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
            .unwrap_or(-1);
        let rows = self.rows_packed();
        let rate = rows.saturating_sub(last.1) as f64 / last.0.elapsed().as_secs_f64().max(0.001);
        *last = (Instant::now(), rows);
        let status = format!(
            "STATUS={} tasks running, {queued} jobs queued or processing, {} rows/s",
            self.running_tasks(),
            crate::text::thousands(rate.round() as u64)
        );
        crate::sdnotify::notify(&if alive { format!("WATCHDOG=1\n{status}") } else { status });
    }

    /// Enforces the per-task timeout, and keeps systemd informed.
    fn supervise(&self) {
        let limit = Duration::from_secs(self.config.engine.task_timeout_seconds.max(1));
        // Not under systemd: no pings, and an idle supervisor sleeps 30 s at a time.
        let notify_every = crate::sdnotify::enabled()
            .then(|| crate::sdnotify::watchdog_interval().map_or(Duration::from_secs(5), |w| w.min(Duration::from_secs(5))));
        let mut last_notify = (Instant::now(), 0);
        while !self.stopping.load(Ordering::SeqCst) {
            if notify_every.is_some_and(|every| last_notify.0.elapsed() >= every) {
                self.notify_systemd(&mut last_notify);
            }
            // Read before looking, so a task that starts in between still wakes us.
            let generation = self.started.generation();
            let running = self.running.lock().unwrap();
            for r in running.values() {
                if r.started.elapsed() > limit && !r.timed_out.swap(true, Ordering::SeqCst) {
                    r.progress.cancel.store(true, Ordering::SeqCst);
                }
            }
            // Nothing running, nothing to time out: sleep until a task starts.
            let idle = running.is_empty();
            drop(running);
            let wait = match (idle, notify_every) {
                (false, _) => Duration::from_millis(500),
                (true, Some(every)) => every,
                (true, None) => Duration::from_secs(30),
            };
            self.started.wait_since(generation, wait);
        }
    }

    fn run(&self, task: Task) {
        let progress = Arc::new(Progress {
            on_part: self.part_hook(&task),
            ..Progress::default()
        });
        let timed_out = Arc::new(AtomicBool::new(false));
        self.running.lock().unwrap().insert(
            task.id,
            Running {
                job_id: task.job_id.clone(),
                progress: Arc::clone(&progress),
                started: Instant::now(),
                timed_out: Arc::clone(&timed_out),
            },
        );
        self.started.ring();
        // A job cancelled between the claim and now is stopped right away.
        if self
            .store
            .read(|c| jobs::job_for_task(c, &task.job_id))
            .ok()
            .flatten()
            .is_some_and(|j| j.status == JobStatus::Cancelled)
        {
            progress.cancel.store(true, Ordering::SeqCst);
        }
        let started = Instant::now();
        let result = match task.kind {
            TaskKind::Plan => self.plan(&task),
            TaskKind::Pack => self.pack(&task, &progress),
            TaskKind::Hook => self.part_hook_task(&task, &progress),
            TaskKind::Finish => self.job_hook(&task, "COMPLETED", &progress).and_then(|()| {
                let r = self.store.write({
                    let task = task.clone();
                    move |tx| jobs::finish(tx, &task)
                });
                crate::failpoint::hit("job.finished");
                self.forget(&task.job_id);
                Ok(r?)
            }),
        };
        self.running.lock().unwrap().remove(&task.id);
        self.rows_finished
            .fetch_add(progress.rows_done.load(Ordering::Relaxed), Ordering::Relaxed);
        tracing::debug!(task = task.id, kind = %task.kind, seconds = started.elapsed().as_secs_f64(), ok = result.is_ok(), "task finished");
        if let Err(err) = result {
            self.failed(&task, err, timed_out.load(Ordering::SeqCst));
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

    /// Removes a FAILED job's parts: a failed delivery must not leave anything
    /// that looks like a finished part. Parts of a job whose hook failed are
    /// kept: they are good, only their delivery failed, and the site may
    /// deliver them by hand.
    fn remove_parts_if_failed(&self, job_id: &str) {
        let state = self.store.read(|c| {
            Ok(c.query_row(
                "SELECT status, json_extract(error, '$.code') FROM jobs WHERE id = ?1",
                [job_id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
            )?)
        });
        if let Ok((status, code)) = state {
            if status == "FAILED" && code.as_deref() != Some("HOOK_FAILED") {
                match self.store.read(|c| parts::part_paths(c, job_id)) {
                    Ok(paths) => remove_parts(&paths),
                    Err(e) => tracing::error!("listing the parts of failed job {job_id}: {e:#}"),
                }
            }
        }
    }

    fn failed(&self, task: &Task, err: anyhow::Error, timed_out: bool) {
        let lib = err.downcast_ref::<Error>();
        let cancelled = matches!(lib, Some(Error::Cancelled));
        if cancelled && !timed_out {
            let (id, job_id) = (task.id, task.job_id.clone());
            if let Err(e) = self.store.write(move |tx| jobs::stopped(tx, id, &job_id)) {
                tracing::error!("recording a stopped task: {e:#}");
            }
            return;
        }
        let error = match (lib, timed_out) {
            (_, true) => {
                json!({"code": "TASK_TIMEOUT", "message": format!("TASK_TIMEOUT: the task ran longer than {} s", self.config.engine.task_timeout_seconds), "entry": null, "line": null})
            }
            (Some(e), _) => error_json(e),
            (None, _) => json!({"code": "INTERNAL", "message": format!("{err:#}"), "entry": null, "line": null}),
        };
        let hook_failed = matches!(lib, Some(Error::Hook { .. }));
        let failure = if hook_failed {
            Failure::Hook
        } else if timed_out || lib.is_none_or(|e| !e.is_bad_input()) {
            Failure::Transient
        } else {
            Failure::BadInput
        };
        let attempts = task.attempts as u32;
        let retry_in = retry_in(&self.config, failure, attempts);
        tracing::warn!(job = %task.job_id, task = %task.kind, attempt = attempts, "task failed: {err:#}");
        let t = task.clone();
        match self.store.write(move |tx| jobs::task_failed(tx, &t, &error, retry_in)) {
            Ok(true) => {
                self.cancel_job(&task.job_id);
                self.remove_parts_if_failed(&task.job_id);
                // on_job hears of the failure too, unless on_job itself failed.
                if !(hook_failed && task.kind == TaskKind::Finish) {
                    let once = Task {
                        attempts: 1,
                        part_n: None,
                        ..task.clone()
                    };
                    if let Err(e) = self.job_hook(&once, "FAILED", &Progress::default()) {
                        tracing::warn!(job = %task.job_id, "on_job hook for a failed job: {e:#}");
                    }
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
        let mut opts = SplitOptions::new(source, &job.out_dir);
        opts.batch_size = job.settings.batch_size;
        opts.manifest = job.settings.manifest.clone();
        opts.file_column = job.settings.file_column.clone();
        opts.compression = job.settings.compression;
        opts.on_missing_file = job.settings.on_missing_file;
        opts.jobs = 1; // parallelism comes from the engine's workers
        Ok(opts)
    }

    fn job(&self, job_id: &str) -> anyhow::Result<jobs::JobRow> {
        self.store
            .read(|c| jobs::job_for_task(c, job_id))?
            .ok_or_else(|| anyhow::anyhow!("job {job_id} vanished"))
    }

    fn planned(&self, job: &jobs::JobRow, source_n: i64) -> anyhow::Result<PlanEntry> {
        let key = (job.id.clone(), source_n);
        if let Some(p) = self.plans.lock().unwrap().get(&key) {
            return Ok(Arc::clone(p));
        }
        let opts = self.options(job, source_n)?;
        let (src, plan) = split::plan(&opts)?;
        let entry = Arc::new((src, plan, opts));
        self.plans.lock().unwrap().insert(key, Arc::clone(&entry));
        Ok(entry)
    }

    fn plan(&self, task: &Task) -> anyhow::Result<()> {
        let job = self.job(&task.job_id)?;
        let source_n = task.source_n.expect("PLAN has a source");
        self.plans.lock().unwrap().remove(&(job.id.clone(), source_n));
        let entry = self.planned(&job, source_n)?;
        let (src, plan, opts) = &*entry;
        let parts: Vec<PartRow> = plan
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
            .collect();
        let skipped: Vec<(u64, String)> = plan.skipped.iter().map(|s| (s.line, s.value.clone())).collect();
        let per_part = src.random_access();
        let rows = plan.rows as i64;
        let t = task.clone();
        self.store
            .write(move |tx| parts::planned(tx, &t, &parts, per_part, rows, &skipped))?;
        Ok(())
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
        let hook = !self.config.hooks.on_part.is_empty();
        PartHook(Some(Arc::new(move |n, w| {
            let (job_id, sha, bytes) = (job_id.clone(), w.sha256.clone(), w.bytes);
            if let Err(e) = store.write(move |tx| parts::part_done(tx, &job_id, source_n, n as i64, bytes, &sha, hook)) {
                tracing::error!("recording part {n}: {e:#}");
            }
            crate::failpoint::hit("part.recorded");
        })))
    }

    fn pack(&self, task: &Task, progress: &Progress) -> anyhow::Result<()> {
        let job = self.job(&task.job_id)?;
        let source_n = task.source_n.expect("PACK has a source");
        let entry = self.planned(&job, source_n)?;
        let (src, plan, opts) = &*entry;
        let numbers: Vec<usize> = match task.part_n {
            Some(n) => vec![n as usize],
            None => self
                .store
                .read(|c| parts::pending_parts(c, &job.id, source_n))?
                .into_iter()
                .map(|n| n as usize)
                .collect(),
        };
        split::pack_parts(src, plan, &numbers, opts, progress)?;
        let t = task.clone();
        self.store.write(move |tx| jobs::task_done(tx, t.id, &t.job_id))?;
        crate::failpoint::hit("pack.done");
        Ok(())
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
