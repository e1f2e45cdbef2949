//! Campaigns: a big backlog ingested as strictly sequential, resumable batches.
//!
//! A campaign runs over one parent collection, a directory whose children are
//! the entries matching a pattern, sorted by name bytes so positions are stable.
//! Each batch is a `parent` job covering `[start_position, start_position +
//! batch_size)`: the runner lists the children and, in one transaction, queues
//! one `ingest` child job per child, records each position (queued or skipped),
//! completes the parent job and sets its `next_start_position`. A child whose
//! identity (path, size, mtime) is already ingested, or being ingested, by any
//! campaign is skipped, so no child is ingested twice.
//!
//! The daemon's own runner (`POST /v1/campaigns`) queues the next batch only
//! when the previous parent job and every child it queued are terminal; a
//! partial unique index on (campaign, start position) makes a second copy of a
//! batch impossible even across crashes. An outside runner drives the same
//! pattern with `POST /v1/jobs {"kind": "parent", …}`. Everything is in SQLite,
//! so after a restart the runner carries on from where the rows say.
//! This module lists the collection and runs the loop; the rows are written
//! by `store::campaigns`.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::store::campaign_batches::{self as campaigns, Child};
pub use crate::store::campaigns::{
    facts, failed_children, list, queue_batch, retry_failed, set_running, start, CampaignFacts, NewBatch, RATE_WINDOW,
};
use crate::store::Store;

/// The children of `parent`: entries matching `pattern` (not dotfiles or temp
/// names; regular files and directories), sorted by name bytes.
fn children(parent: &str, pattern: &str) -> anyhow::Result<Vec<Child>> {
    use anyhow::Context;
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(parent)
        .with_context(|| format!("listing the parent collection {parent}"))?
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| {
            let s = n.to_string_lossy();
            !crate::triggers::watch::is_temp_name(&s) && crate::glob::glob_match(pattern, &s)
        })
        .collect();
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let path = std::path::Path::new(parent).join(&n);
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if !(meta.is_file() || meta.is_dir()) {
            continue;
        }
        out.push(Child {
            path: path.to_string_lossy().into_owned(),
            size: if meta.is_dir() { 0 } else { meta.len() as i64 },
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        });
    }
    Ok(out)
}

/// The campaign runner: expands queued parent jobs and, for campaigns the
/// daemon drives, queues each next batch when the last one has ended.
pub struct Runner {
    store: Store,
    config: Arc<Config>,
}

impl Runner {
    pub fn new(store: Store, config: Arc<Config>) -> Runner {
        Runner { store, config }
    }

    /// Ticks after every write by someone else (a job ending is a write) and
    /// at least once a second; its own writes do not wake it again.
    pub fn run(self, stop: &crate::signals::Stop) {
        while !stop.is_set() {
            if let Err(e) = self.tick() {
                tracing::error!("campaigns: {e:#}");
            }
            let seen = self.store.bell.generation();
            self.store.bell.wait_since(seen, Duration::from_secs(1));
        }
    }

    pub fn tick(&self) -> anyhow::Result<()> {
        loop {
            for id in self.store.read(campaigns::queued_batches)? {
                self.expand(&id)?;
            }
            let mut queued_any = false;
            for id in self.store.read(campaigns::idle)? {
                queued_any |= self.store.write(move |tx| campaigns::advance(tx, &id))?;
            }
            if !queued_any {
                return Ok(());
            }
        }
    }

    /// Lists one parent job's children and queues them, in one transaction.
    fn expand(&self, parent_job: &str) -> anyhow::Result<()> {
        let Some(b) = self.store.read(|c| campaigns::batch(c, parent_job))? else {
            return Ok(());
        };
        let listed = children(&b.parent, &b.pattern).map_err(|e| format!("{e:#}"));
        let data_dir = self.config.data_dir.clone();
        let job_id = parent_job.to_owned();
        self.store.write(move |tx| campaigns::expand(tx, &job_id, &b, listed, &data_dir))?;
        Ok(())
    }
}

/// A new campaign id: `c-` and the job-id clock-and-random form.
pub fn new_id() -> String {
    format!("c-{}", crate::ids::new_id())
}
