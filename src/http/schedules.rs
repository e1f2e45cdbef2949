//! `/v1/schedules`: each cron schedule with its next and last fires, one
//! schedule's recent fires, and running one now.

use std::collections::BTreeMap;

use serde_json::json;

use super::reply::{bounded, fail, internal, reply, Reply};
use super::Api;
use crate::store::StoreError;
use crate::triggers::schedule;

impl Api {
    pub(super) fn schedules(&self) -> Result<Reply, Reply> {
        let states = self
            .store
            .read(|c| schedule::states(c, &self.config).map_err(StoreError::Other))
            .map_err(internal)?;
        Ok(reply(
            200,
            json!({"schedules": states.into_iter().map(|s| s.json).collect::<Vec<_>>()}),
        ))
    }

    /// One schedule with its recent fires (`?limit=`, default 20).
    pub(super) fn schedule(&self, name: &str, query: &BTreeMap<String, String>) -> Result<Reply, Reply> {
        let limit = bounded(query, "limit", 20, 1, 1000)?;
        let states = self
            .store
            .read(|c| schedule::states(c, &self.config).map_err(StoreError::Other))
            .map_err(internal)?;
        let Some(state) = states.into_iter().find(|s| s.name == name) else {
            return Ok(fail(
                404,
                "NOT_FOUND",
                format!("no schedule named {name:?}; GET /v1/schedules lists them"),
            ));
        };
        let fires = self
            .store
            .read(|c| schedule::history(c, name, limit).map_err(StoreError::Other))
            .map_err(internal)?;
        let mut body = state.json;
        body["fires_recent"] = json!(fires);
        Ok(reply(200, body))
    }

    pub(super) fn run_schedule(&self, name: &str) -> Result<Reply, Reply> {
        match schedule::run_now(&self.store, &self.config, name, &self.clock) {
            Err(e) => Err(internal(e)),
            Ok(None) => Ok(fail(
                404,
                "NOT_FOUND",
                format!("no schedule named {name:?}; GET /v1/schedules lists them"),
            )),
            Ok(Some(f)) if f.result == "DUPLICATE" => Ok(fail(409, "CONFLICT", "this schedule was just run; try again in a moment")),
            Ok(Some(f)) => Ok(reply(
                201,
                json!({"schedule": name, "scheduled_at": crate::clock::rfc3339(f.scheduled_at), "result": f.result, "files": f.files, "job_id": f.job_id}),
            )),
        }
    }
}
