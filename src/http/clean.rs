//! `POST /v1/clean`: prune finished jobs now, as retention does on its timer.

use super::reply::{fail, internal, reply, Reply};
use super::Api;

impl Api {
    /// Prunes finished jobs now: `older_than_days` (default: the configured
    /// `retention.keep_days`), `delete_parts`, `dry_run` (count only).
    pub(super) fn clean(&self, body: &[u8]) -> Result<Reply, Reply> {
        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields, default)]
        struct CleanBody {
            older_than_days: Option<f64>,
            delete_parts: Option<bool>,
            dry_run: bool,
        }
        // An empty body means "the configured retention".
        let b: CleanBody = if body.iter().all(u8::is_ascii_whitespace) {
            CleanBody::default()
        } else {
            Self::json(body)?
        };
        let days = b.older_than_days.unwrap_or(self.config.retention.keep_days);
        if !(0.0..=crate::config::MAX_KEEP_DAYS).contains(&days) {
            return Err(fail(
                400,
                "BAD_REQUEST",
                format!("older_than_days must be from 0 to {}", crate::config::MAX_KEEP_DAYS),
            ));
        }
        let delete_parts = b.delete_parts.unwrap_or(self.config.retention.delete_parts);
        let cutoff = crate::clock::now() - days * 86_400.0;
        let pruned = crate::store::retention::prune(&self.store, cutoff, delete_parts, b.dry_run).map_err(internal)?;
        Ok(reply(200, serde_json::to_value(pruned).map_err(internal)?))
    }
}
