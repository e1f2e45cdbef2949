//! `GET /v1/watches`: each watched inbox as an operator sees it: the files
//! waiting in it now (settling, or not yet whole), what it has taken, its
//! last file and its recent failures. The waiting files are read from the
//! inbox itself, the rest from `watch_files`.

use std::os::unix::fs::MetadataExt;

use serde_json::{json, Value};

use super::reply::{internal, reply, Reply};
use super::Api;
use crate::store::watch_files;

/// At most this many waiting files are listed per inbox (all are counted).
const LISTED: usize = 100;

impl Api {
    pub(super) fn watches(&self) -> Result<Reply, Reply> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut out = Vec::new();
        for w in self.config.watches() {
            let summary = self.store.read(|c| watch_files::summary(c, &w.name)).map_err(internal)?;
            let mut waiting: Vec<Value> = Vec::new();
            let mut count = 0;
            if let Ok(items) = std::fs::read_dir(&w.dir) {
                let mut items: Vec<_> = items.flatten().collect();
                items.sort_by_key(|i| i.file_name());
                for item in items {
                    let name = item.file_name().to_string_lossy().into_owned();
                    if crate::triggers::watch::is_temp_name(&name) || !crate::glob::glob_match(&w.pattern, &name) {
                        continue;
                    }
                    let Ok(meta) = item.metadata() else { continue };
                    count += 1;
                    if waiting.len() < LISTED {
                        waiting.push(json!({"name": name, "size": meta.len(), "age_seconds": (now - meta.mtime()).max(0)}));
                    }
                }
            }
            out.push(json!({
                "name": w.name, "dir": w.dir, "pattern": w.pattern, "settle_seconds": w.settle_seconds,
                "waiting_count": count, "waiting": waiting, "summary": summary,
            }));
        }
        Ok(reply(200, json!({"watches": out})))
    }
}
