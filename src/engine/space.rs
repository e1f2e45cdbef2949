//! Disk-space backpressure: below `engine.min_free_bytes` free where a job
//! writes its parts, its PLAN and PACK tasks are put back (not an attempt) to
//! look again in a few seconds, instead of failing the job with DISK_FULL;
//! the engine remembers why, for `/v1/queue`, `/metrics` and systemd.

use std::collections::HashSet;
use std::path::Path;

use super::Engine;
use crate::store::jobs::{self, Task};
use crate::view::SpaceWait;

/// How often a task waiting for disk space looks again.
const SPACE_RETRY_SECONDS: f64 = 5.0;

impl Engine {
    /// Why tasks wait for disk space, while they do.
    pub fn waiting_for_space(&self) -> Option<SpaceWait> {
        self.space.lock().unwrap().as_ref().map(|(w, _)| w.clone())
    }

    /// True when the file system of `out_dir` has less than
    /// `engine.min_free_bytes` free: the task is put back (not an attempt)
    /// to look again in a few seconds, instead of failing with DISK_FULL.
    pub(super) fn wait_for_space(&self, task: &Task, out_dir: &str) -> anyhow::Result<bool> {
        let min = self.config.engine.min_free_bytes;
        if min == 0 {
            return Ok(false);
        }
        let free = match crate::fsx::free_bytes(Path::new(out_dir)) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("free space of {out_dir}: {e}; not waiting for it");
                return Ok(false);
            }
        };
        let mut space = self.space.lock().unwrap();
        if free >= min {
            if let Some((w, _)) = space.take_if(|(w, _)| w.dir == out_dir) {
                tracing::info!("disk space returned in {}: {} MiB free; tasks go on", w.dir, free >> 20);
            }
            return Ok(false);
        }
        let (wait, told) = space.get_or_insert_with(|| {
            let w = SpaceWait {
                dir: out_dir.to_owned(),
                free_bytes: free,
                min_free_bytes: min,
                since: crate::clock::rfc3339(crate::clock::now()),
            };
            tracing::warn!("{}; PLAN and PACK tasks wait", w.message());
            (w, HashSet::new())
        });
        wait.dir = out_dir.to_owned();
        wait.free_bytes = free;
        let tell = told
            .insert(task.job_id.clone())
            .then(|| serde_json::json!({"dir": out_dir, "free_bytes": free, "min_free_bytes": min}));
        drop(space);
        let (id, job_id) = (task.id, task.job_id.clone());
        self.store
            .write(move |tx| jobs::postponed(tx, id, &job_id, SPACE_RETRY_SECONDS, tell.as_ref()))?;
        Ok(true)
    }
}
