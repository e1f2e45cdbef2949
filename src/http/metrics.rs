//! `GET /healthz`: alive, the version and whether the queue is paused (no
//! token, so it says nothing about jobs).
//! `GET /metrics`: Prometheus text from the running totals the store keeps
//! (constant cost however many jobs there are), the engine's running tasks,
//! watched inboxes and schedules.

use std::collections::BTreeMap;

use super::reply::{internal, Reply};
use super::Api;
use crate::store::{counters, jobs, queue};
use crate::triggers::schedule;

impl Api {
    pub(super) fn health(&self) -> Result<Reply, Reply> {
        let queue = self.store.read(queue::queue_state).map_err(internal)?;
        Ok(super::reply::reply(
            200,
            serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "queue": {"paused": queue.paused}}),
        ))
    }

    pub(super) fn metrics(&self) -> Result<Reply, Reply> {
        let running = self.engine.running_tasks();
        let (workers_started, workers_crashed) = self.engine.worker_counts();
        let (counters, watched, states, queue) = self
            .store
            .read(|c| {
                Ok((
                    counters::all(c)?,
                    counters::watch_files_detected(c)?,
                    schedule::states(c, &self.config)?,
                    queue::queue_state(c)?,
                ))
            })
            .map_err(internal)?;
        let text = {
            let mut out = String::new();
            out.push_str("# HELP batchd_build_info Build information.\n# TYPE batchd_build_info gauge\n");
            out.push_str(&format!("batchd_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION")));
            out.push_str("# HELP batchd_jobs Jobs by status.\n# TYPE batchd_jobs gauge\n");
            // Running totals and trigger-kept counts (the `counters` table):
            // constant cost however many jobs are kept.
            let counter = |name: &str| counters.get(name).copied().unwrap_or(0.0);
            for s in crate::store::model::JobStatus::ALL {
                out.push_str(&format!("batchd_jobs{{status=\"{s}\"}} {}\n", counter(&format!("jobs:{s}")) as i64));
            }
            let (rows, bytes) = (counter("rows_processed") as i64, counter("part_bytes") as i64);
            out.push_str(&format!("# HELP batchd_rows_processed_total Manifest rows packed into parts.\n# TYPE batchd_rows_processed_total counter\nbatchd_rows_processed_total {rows}\n"));
            out.push_str(&format!("# HELP batchd_part_bytes_total Bytes of parts written.\n# TYPE batchd_part_bytes_total counter\nbatchd_part_bytes_total {bytes}\n"));
            out.push_str(&format!(
                "# HELP batchd_tasks_running Tasks running now.\n# TYPE batchd_tasks_running gauge\nbatchd_tasks_running {running}\n"
            ));
            out.push_str(&format!(
                "# HELP batchd_queue_paused 1 while the queue is paused (no task is claimed).\n# TYPE batchd_queue_paused gauge\nbatchd_queue_paused {}\n",
                u8::from(queue.paused)
            ));
            out.push_str(&format!(
                "# HELP batchd_waiting_for_space 1 while tasks wait for engine.min_free_bytes of disk space.\n# TYPE batchd_waiting_for_space gauge\nbatchd_waiting_for_space {}\n",
                u8::from(self.engine.waiting_for_space().is_some())
            ));
            out.push_str(&format!(
                "# HELP batchd_worker_processes_started_total Worker processes started (engine.isolation = \"process\").\n# TYPE batchd_worker_processes_started_total counter\nbatchd_worker_processes_started_total {workers_started}\n"
            ));
            out.push_str(&format!(
                "# HELP batchd_worker_processes_crashed_total Worker processes that ended during a task (panic, abort, out of memory, killed, timed out).\n# TYPE batchd_worker_processes_crashed_total counter\nbatchd_worker_processes_crashed_total {workers_crashed}\n"
            ));
            out.push_str(
                "# HELP batchd_task_duration_seconds Duration of finished tasks.\n# TYPE batchd_task_duration_seconds histogram\n",
            );
            for kind in crate::store::model::TaskKind::ALL {
                for b in jobs::TASK_SECONDS_BUCKETS {
                    let n = counter(&jobs::bucket_name(kind.as_str(), b));
                    out.push_str(&format!("batchd_task_duration_seconds_bucket{{kind=\"{kind}\",le=\"{b}\"}} {n}\n"));
                }
                let n = counter(&format!("task_seconds_count:{kind}"));
                out.push_str(&format!("batchd_task_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {n}\n"));
                out.push_str(&format!(
                    "batchd_task_duration_seconds_sum{{kind=\"{kind}\"}} {}\n",
                    counter(&format!("task_seconds_sum:{kind}"))
                ));
                out.push_str(&format!("batchd_task_duration_seconds_count{{kind=\"{kind}\"}} {n}\n"));
            }
            out.push_str("# HELP batchd_watch_files_detected_total Files taken from each watched inbox.\n# TYPE batchd_watch_files_detected_total counter\n");
            let mut detected: BTreeMap<String, i64> = self.config.watches().into_iter().map(|w| (w.name, 0)).collect();
            detected.extend(watched);
            for (w, n) in detected {
                out.push_str(&format!("batchd_watch_files_detected_total{{watch=\"{}\"}} {n}\n", label(&w)));
            }
            out.push_str("# HELP batchd_schedule_next_run_timestamp_seconds When each schedule fires next.\n# TYPE batchd_schedule_next_run_timestamp_seconds gauge\n");
            for s in &states {
                if let Some(t) = s.next {
                    out.push_str(&format!(
                        "batchd_schedule_next_run_timestamp_seconds{{schedule=\"{}\"}} {}\n",
                        label(&s.name),
                        t.timestamp()
                    ));
                }
            }
            out.push_str("# HELP batchd_schedule_last_success_timestamp_seconds When each schedule last succeeded (nothing new, or its job completed).\n# TYPE batchd_schedule_last_success_timestamp_seconds gauge\n");
            for s in &states {
                if let Some(t) = s.last_success {
                    out.push_str(&format!(
                        "batchd_schedule_last_success_timestamp_seconds{{schedule=\"{}\"}} {t}\n",
                        label(&s.name)
                    ));
                }
            }
            out
        };
        Ok(Reply::text(200, text, "text/plain; version=0.0.4"))
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
