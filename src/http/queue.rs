//! `GET /v1/queue`, `POST /v1/queue/pause` and `POST /v1/queue/resume`: the
//! queue's pause switch. Paused, no task is claimed (queued work waits),
//! running tasks finish, and watches and schedules still record arrivals; the
//! switch is kept in the database, so a paused queue stays paused across a
//! restart until someone resumes it.

use super::reply::{fail, internal, reply, store_error, Reply};
use super::Api;
use crate::store::queue::{self, QueueState};
use crate::view::QueueView;

impl Api {
    pub(super) fn queue(&self) -> Result<Reply, Reply> {
        let state = self.store.read(queue::queue_state).map_err(internal)?;
        Ok(self.queue_reply(&state))
    }

    /// Pauses (with an optional `{"reason": "…"}`) or resumes the queue.
    pub(super) fn set_queue(&self, pause: bool, body: &[u8]) -> Result<Reply, Reply> {
        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields, default)]
        struct PauseBody {
            reason: Option<String>,
        }
        let b: PauseBody = if body.iter().all(u8::is_ascii_whitespace) {
            PauseBody::default()
        } else {
            Self::json(body)?
        };
        if !pause && b.reason.is_some() {
            return Err(fail(400, "BAD_REQUEST", "resume takes no reason"));
        }
        let reason = b.reason.unwrap_or_default();
        if reason.chars().count() > 500 {
            return Err(fail(400, "BAD_REQUEST", "reason: at most 500 characters"));
        }
        let state = self
            .store
            .write(move |tx| queue::set_paused(tx, pause.then_some(reason.as_str())))
            .map_err(store_error)?;
        Ok(self.queue_reply(&state))
    }

    fn queue_reply(&self, q: &QueueState) -> Reply {
        let view = QueueView::new(q, self.engine.running_tasks(), self.engine.waiting_for_space());
        reply(200, serde_json::to_value(view).expect("a queue view serializes"))
    }
}
