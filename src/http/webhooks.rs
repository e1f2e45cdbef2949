//! `GET /v1/webhooks/deliveries`: the webhook outbox, newest first, each
//! delivery with every attempt (when, the receiver's status, the error), so
//! an operator can see why a receiver did not hear of a job. Filters: `job`,
//! `state` (PENDING, DELIVERED, FAILED); pages with `limit` and `before`.

use std::collections::BTreeMap;

use serde_json::json;

use super::reply::{bounded, fail, internal, param, reply, Reply};
use super::Api;
use crate::store::webhooks;

impl Api {
    pub(super) fn webhook_deliveries(&self, q: &BTreeMap<String, String>) -> Result<Reply, Reply> {
        let limit = bounded(q, "limit", 50, 1, 500)?;
        let before = param::<i64>(q, "before", "before must be the `next` value of a previous page")?;
        let state = q.get("state").map(|s| s.to_ascii_uppercase());
        if state.as_deref().is_some_and(|s| !matches!(s, "PENDING" | "DELIVERED" | "FAILED")) {
            return Err(fail(400, "BAD_REQUEST", "state is PENDING, DELIVERED or FAILED"));
        }
        let job = q.get("job").cloned();
        let (deliveries, next) = self
            .store
            .read(|c| webhooks::list(c, job.as_deref(), state.as_deref(), before, limit))
            .map_err(internal)?;
        Ok(reply(200, json!({"deliveries": deliveries, "next": next})))
    }
}
