//! `POST /v1/jobs/{id}/retry`: a FAILED or CANCELLED job runs again. As
//! itself by default: each finished part is kept only if its file still has
//! the bytes recorded for it (size, then SHA-256, read here, outside the
//! writer), the rest is made again. With `"new_job": true`, as a new job
//! with the same sources, settings and names, linked back by `retry_of`.

use std::path::Path;

use serde::Deserialize;

use super::reply::{internal, reject, reply, store_error, Reply};
use super::Api;
use crate::store::jobs::{NewJob, Reject, Settings};
use crate::store::retry::{self, FinishedPart};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    #[serde(default)]
    new_job: bool,
}

/// True when the part's file is still the one recorded: same size, same SHA-256.
fn intact(p: &FinishedPart) -> bool {
    let path = Path::new(&p.path);
    std::fs::metadata(path).is_ok_and(|m| m.len() == p.bytes as u64) && crate::fsx::hash_file(path).is_ok_and(|h| h == p.sha256)
}

impl Api {
    pub(super) fn retry(&self, id: &str, body: &[u8]) -> Result<Reply, Reply> {
        let b: RetryBody = Self::json(body)?;
        self.store.read(|c| retry::check_retryable(c, id)).map_err(store_error)?;
        if b.new_job {
            return self.retry_as_new(id);
        }
        let broken = self.broken_parts(id)?;
        let id2 = id.to_owned();
        self.store.write(move |tx| retry::retry(tx, &id2, &broken)).map_err(store_error)?;
        self.get(id)
    }

    /// The finished parts of a job whose file is gone or changed.
    pub(super) fn broken_parts(&self, id: &str) -> Result<Vec<(i64, i64)>, Reply> {
        let finished = self.store.read(|c| retry::finished_parts(c, id)).map_err(internal)?;
        Ok(finished.iter().filter(|p| !intact(p)).map(|p| (p.source_n, p.n)).collect())
    }

    fn retry_as_new(&self, id: &str) -> Result<Reply, Reply> {
        let old = self.view(id).map_err(internal)?.ok_or_else(|| reject(Reject::NotFound))?;
        let settings: Settings = serde_json::from_value(old.settings.clone()).map_err(internal)?;
        // The sources must still be there, and still allowed.
        let sources = old.sources.iter().map(|s| self.check_source(s)).collect::<Result<Vec<_>, _>>()?;
        let new_id = crate::ids::new_id();
        // Parts went to DATA_DIR/parts/{id} unless the job named a directory: a
        // new job gets its own default directory, or the same named one.
        let default_dir = NewJob::default_out_dir(&self.config.data_dir, id);
        let out_dir = (Path::new(&old.out_dir) != default_dir).then(|| Path::new(&old.out_dir).to_path_buf());
        let job = NewJob {
            priority: old.priority,
            max_concurrency: old.max_concurrency,
            about: old.about.clone(),
            ..NewJob::ingest(
                new_id.clone(),
                &self.config.data_dir,
                out_dir.as_deref(),
                sources,
                settings,
                &old.trigger,
            )
        };
        let old_id = id.to_owned();
        self.store
            .write(move |tx| retry::retry_as_new(tx, &old_id, &job))
            .map_err(store_error)?;
        let view = serde_json::to_value(self.view(&new_id).map_err(internal)?).map_err(internal)?;
        let mut r = reply(201, view);
        r.headers.push(("Location", format!("/v1/jobs/{new_id}")));
        Ok(r)
    }
}
