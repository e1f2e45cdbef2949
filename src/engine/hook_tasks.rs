//! The engine's hook tasks: a HOOK task runs `on_part` for one published part,
//! and FINISH runs `on_job` before the job's end is recorded (so a failing
//! hook can still fail it). Each run is recorded as a `hook.ran` event, and a
//! failed run becomes the error the retry policy judges. The hook variables
//! and input come from typed rows (`JobRow`, `PartView`).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::{json, Value};

use super::Engine;
use crate::split::Progress;
use crate::store::jobs::{self, Task};
use crate::store::model::PartState;
use crate::store::views::{self, PartView};

impl Engine {
    /// Runs `hook` once for `task`, records the run as an event, and turns a
    /// failed run into the error the retry logic judges.
    pub(super) fn run_hook(
        &self,
        task: &Task,
        hook: &'static str,
        argv: &[String],
        env: Vec<(String, String)>,
        input: Value,
        cancel: &AtomicBool,
    ) -> anyhow::Result<()> {
        let h = &self.config.hooks;
        let attempt = task.attempts as u32;
        let mut env = env;
        env.extend([
            ("BATCHD_HOOK".to_owned(), hook.to_owned()),
            ("BATCHD_JOB_ID".to_owned(), task.job_id.clone()),
            ("BATCHD_ATTEMPT".to_owned(), attempt.to_string()),
        ]);
        let ran = crate::hooks::run(
            hook,
            argv,
            &env,
            &input,
            Duration::from_secs_f64(h.timeout_seconds.max(0.001)),
            cancel,
        )?;
        let (job_id, part) = (task.job_id.clone(), task.part_n);
        let data = json!({"hook": hook, "part": part, "attempt": attempt, "exit_code": ran.exit_code, "timed_out": ran.timed_out,
                          "seconds": (ran.seconds * 1000.0).round() / 1000.0, "stderr_tail": ran.stderr_tail});
        self.store.write(move |tx| jobs::event(tx, Some(&job_id), "hook.ran", data))?;
        if ran.ok() {
            Ok(())
        } else {
            Err(ran.error(hook, argv, attempt, h.max_attempts).into())
        }
    }

    /// A HOOK task: the part delivered to `[delivery.s3]`, then `on_part` run.
    pub(super) fn part_hook_task(&self, task: &Task, progress: &Progress) -> anyhow::Result<()> {
        let argv = &self.config.hooks.on_part;
        let (source_n, n) = (task.source_n.unwrap_or(1), task.part_n.unwrap_or(0));
        let part = self
            .store
            .read(|c| views::part(c, &task.job_id, source_n, n))?
            .ok_or_else(|| anyhow::anyhow!("part {n} of job {} is not recorded", task.job_id))?;
        let job = self.job(&task.job_id)?;
        crate::delivery::s3::deliver(&self.store, &self.config, &job, &part)?;
        if !argv.is_empty() {
            // As delivered: with its object URL.
            let part = self
                .store
                .read(|c| views::part(c, &task.job_id, source_n, n))?
                .unwrap_or_else(|| part.clone());
            let about = &job.about;
            // As the API writes a part that is not there yet: `null`.
            let or_null = |v: Option<String>| v.unwrap_or_else(|| "null".to_owned());
            let mut env = about_env(about);
            env.extend([
                ("BATCHD_JOB_STATUS".to_owned(), job.status.to_string()),
                ("BATCHD_OUT_DIR".to_owned(), job.out_dir.clone()),
                (
                    "BATCHD_SOURCE".to_owned(),
                    job.sources.get(source_n as usize - 1).cloned().unwrap_or_default(),
                ),
                ("BATCHD_PART_PATH".to_owned(), part.path.clone()),
                ("BATCHD_PART_NUMBER".to_owned(), n.to_string()),
                ("BATCHD_PART_ROWS".to_owned(), part.rows.to_string()),
                ("BATCHD_PART_BYTES".to_owned(), or_null(part.bytes.map(|b| b.to_string()))),
                ("BATCHD_PART_SHA256".to_owned(), or_null(part.sha256.clone())),
            ]);
            let input = json!({"hook": "on_part", "job_id": task.job_id, "job_status": job.status, "attempt": task.attempts,
                               "out_dir": job.out_dir, "source": job.sources.get(source_n as usize - 1), "part": part,
                               "name": about.name, "labels": about.labels, "external_ref": about.external_ref});
            self.run_hook(task, "on_part", argv, env, input, &progress.cancel)?;
        }
        let t = task.clone();
        self.store.write(move |tx| jobs::task_done(tx, t.id, &t.job_id))?;
        if self.config.delivery.s3.as_ref().is_some_and(|d| !d.keep_local) {
            // Only once the part is delivered and `on_part` has had it: a crash
            // before this leaves a delivered part on disk, never a hook
            // without its part.
            let _ = std::fs::remove_file(&part.path);
        }
        Ok(())
    }

    /// `on_job` for a job ending with `status` (before COMPLETED is recorded,
    /// so a failing hook can still fail the job).
    pub(super) fn job_hook(&self, task: &Task, status: &str, progress: &Progress) -> anyhow::Result<()> {
        let argv = &self.config.hooks.on_job;
        if argv.is_empty() {
            return Ok(());
        }
        let stall = self.config.engine.stall_seconds;
        let (view, parts) = self
            .store
            .read(|c| Ok((crate::view::job(c, &task.job_id, stall)?, views::parts(c, &task.job_id)?)))?;
        let done: Vec<&PartView> = parts.iter().filter(|p| p.state == PartState::Done).collect();
        let v = view.as_ref();
        let mut env = v.map(|v| about_env(&v.about)).unwrap_or_default();
        env.extend([
            ("BATCHD_JOB_STATUS".to_owned(), status.to_owned()),
            ("BATCHD_OUT_DIR".to_owned(), v.map_or_else(String::new, |v| v.out_dir.clone())),
            ("BATCHD_JOB_PARTS".to_owned(), done.len().to_string()),
            (
                "BATCHD_JOB_ROWS".to_owned(),
                v.map_or_else(|| "null".to_owned(), |v| v.progress.processed.to_string()),
            ),
            (
                "BATCHD_JOB_ERROR".to_owned(),
                v.and_then(|v| v.error.as_ref())
                    .and_then(|e| e["code"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            ),
        ]);
        let input =
            json!({"hook": "on_job", "job_id": task.job_id, "job_status": status, "attempt": task.attempts, "job": view, "parts": done});
        // For a job that already failed there is no retry: one attempt, recorded.
        self.run_hook(task, "on_job", argv, env, input, &progress.cancel)
    }
}

/// What the client calls the job, for every hook: `BATCHD_JOB_NAME`,
/// `BATCHD_JOB_EXTERNAL_REF` (empty when unset) and `BATCHD_JOB_LABELS` (JSON).
fn about_env(a: &crate::store::jobs::About) -> Vec<(String, String)> {
    vec![
        ("BATCHD_JOB_NAME".to_owned(), a.name.clone().unwrap_or_default()),
        ("BATCHD_JOB_EXTERNAL_REF".to_owned(), a.external_ref.clone().unwrap_or_default()),
        ("BATCHD_JOB_LABELS".to_owned(), serde_json::to_string(&a.labels).unwrap_or_default()),
    ]
}
