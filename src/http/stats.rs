//! `GET /v1/stats`: the recent past minute by minute (rows packed, jobs
//! ended), the series the dashboard charts.

use serde_json::json;

use super::reply::{bounded, internal, reply, Reply};
use super::Api;

impl Api {
    /// `GET /v1/stats?minutes=N` (1..=1440, default 60): rows packed and jobs
    /// ended per minute, oldest first, for the dashboard's chart.
    pub(super) fn stats(&self, q: &std::collections::BTreeMap<String, String>) -> Result<Reply, Reply> {
        let minutes = bounded(q, "minutes", 60, 1, 1440)?;
        let series = self
            .store
            .read(|c| crate::store::counters::per_minute(c, crate::clock::now(), minutes))
            .map_err(internal)?;
        Ok(reply(200, json!({"minutes": series})))
    }
}
