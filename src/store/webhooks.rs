//! The webhook outbox. Events that webhooks carry are turned into one
//! delivery row per receiver in the transaction that moves the cursor past
//! them, so no event is skipped and none is queued twice, across crashes
//! (the unique key on receiver and event guards a repeat). Each attempt is
//! recorded; a delivery ends DELIVERED (a 2xx) or FAILED (attempts used up).

use r2d2_sqlite::rusqlite::{self, params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{StoreResult, Tx};
use crate::clock::{now, rfc3339};

/// The event kinds webhooks may carry.
const KINDS: &str = "'job.completed', 'job.failed', 'job.cancelled', 'part.delivered', 'campaign.status'";

/// An event from the feed, as the dispatcher reads it.
pub struct FeedEvent {
    pub id: i64,
    pub job_id: Option<String>,
    pub kind: String,
    pub data: serde_json::Value,
    pub at: f64,
}

pub fn cursor(c: &Connection) -> StoreResult<i64> {
    Ok(c.query_row("SELECT event_id FROM webhook_cursor WHERE id = 1", [], |r| r.get(0))?)
}

/// Events after `cursor` that webhooks may carry, oldest first, and the id
/// of the last event looked at (which may be of another kind).
pub fn events_after(c: &Connection, cursor: i64, limit: i64) -> StoreResult<(Vec<FeedEvent>, i64)> {
    let last: Option<i64> = c.query_row(
        "SELECT MAX(id) FROM (SELECT id FROM events WHERE id > ?1 ORDER BY id LIMIT ?2)",
        params![cursor, limit],
        |r| r.get(0),
    )?;
    let Some(last) = last else { return Ok((Vec::new(), cursor)) };
    let mut st = c.prepare_cached(&format!(
        "SELECT id, job_id, kind, data, at FROM events WHERE id > ?1 AND id <= ?2 AND kind IN ({KINDS}) ORDER BY id"
    ))?;
    let v = st
        .query_map(params![cursor, last], |r| {
            Ok(FeedEvent {
                id: r.get(0)?,
                job_id: r.get(1)?,
                kind: r.get(2)?,
                data: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                at: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((v, last))
}

/// One delivery to queue.
pub struct NewDelivery {
    pub endpoint: String,
    pub url: String,
    pub event_id: i64,
    pub event_type: String,
    pub job_id: Option<String>,
    pub payload: String,
}

/// Queues `rows` and moves the cursor to `cursor`, in one transaction.
pub fn enqueue(tx: &Tx, rows: &[NewDelivery], cursor: i64) -> StoreResult<usize> {
    let t = now();
    let mut n = 0;
    for d in rows {
        n += tx.execute(
            "INSERT OR IGNORE INTO webhook_deliveries (endpoint, url, event_id, event_type, job_id, msg_id, payload, state, next_at, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'PENDING', ?8, ?8)",
            params![
                d.endpoint,
                d.url,
                d.event_id,
                d.event_type,
                d.job_id,
                format!("msg_{}_{}", d.event_id, d.endpoint),
                d.payload,
                t
            ],
        )?;
    }
    tx.execute("UPDATE webhook_cursor SET event_id = ?1 WHERE id = 1 AND event_id < ?1", [cursor])?;
    Ok(n)
}

/// A delivery the dispatcher is to send now.
pub struct Due {
    pub id: i64,
    pub endpoint: String,
    pub url: String,
    pub msg_id: String,
    pub payload: String,
    pub attempts: i64,
}

pub fn due(c: &Connection, limit: i64) -> StoreResult<Vec<Due>> {
    let mut st = c.prepare_cached(
        "SELECT id, endpoint, url, msg_id, payload, attempts FROM webhook_deliveries
         WHERE state = 'PENDING' AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
    )?;
    let v = st
        .query_map(params![now(), limit], |r| {
            Ok(Due {
                id: r.get(0)?,
                endpoint: r.get(1)?,
                url: r.get(2)?,
                msg_id: r.get(3)?,
                payload: r.get(4)?,
                attempts: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Seconds until the next pending delivery is due, if any is pending.
pub fn next_due_in(c: &Connection) -> StoreResult<Option<f64>> {
    let at: Option<f64> = c
        .query_row("SELECT MIN(next_at) FROM webhook_deliveries WHERE state = 'PENDING'", [], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    Ok(at.map(|a| (a - now()).max(0.0)))
}

/// What one attempt got.
pub struct Attempt {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub ms: f64,
    pub at: f64,
}

/// Records an attempt: DELIVERED on a 2xx, else PENDING again in `retry_in`
/// seconds, or FAILED when `retry_in` is None.
pub fn attempted(tx: &Tx, id: i64, a: &Attempt, delivered: bool, retry_in: Option<f64>) -> StoreResult<()> {
    let n: i64 = tx.query_row("SELECT attempts + 1 FROM webhook_deliveries WHERE id = ?1", [id], |r| r.get(0))?;
    tx.execute(
        "INSERT OR REPLACE INTO webhook_attempts (delivery_id, n, at, status, error, ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, n, a.at, a.status, a.error, a.ms],
    )?;
    let (state, next_at, finished) = match (delivered, retry_in) {
        (true, _) => ("DELIVERED", a.at, Some(now())),
        (false, Some(s)) => ("PENDING", now() + s, None),
        (false, None) => ("FAILED", a.at, Some(now())),
    };
    tx.execute(
        "UPDATE webhook_deliveries SET attempts = ?2, state = ?3, next_at = ?4, finished = ?5, last_status = ?6, last_error = ?7 WHERE id = ?1",
        params![id, n, state, next_at, finished, a.status, a.error],
    )?;
    Ok(())
}

/// One attempt, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptView {
    pub n: i64,
    pub at: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub ms: f64,
}

/// One delivery, as `GET /v1/webhooks/deliveries` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryView {
    pub id: i64,
    /// The `[[webhook]]` name, or `callback` for a job's `callback_url`.
    pub endpoint: String,
    pub url: String,
    pub event_id: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub job_id: Option<String>,
    /// The `webhook-id` header, the same on every attempt.
    pub webhook_id: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt: Option<String>,
    pub created: String,
    pub finished: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub history: Vec<AttemptView>,
}

/// Deliveries, newest first, optionally of one job or in one state; `before`
/// pages on (the `next` of the previous page).
pub fn list(
    c: &Connection,
    job: Option<&str>,
    state: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> StoreResult<(Vec<DeliveryView>, Option<i64>)> {
    let mut st = c.prepare_cached(
        "SELECT id, endpoint, url, event_id, event_type, job_id, msg_id, state, attempts, next_at, created, finished, last_status, last_error
         FROM webhook_deliveries
         WHERE (?1 IS NULL OR job_id = ?1) AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let mut v = st
        .query_map(params![job, state, before, limit + 1], |r| {
            let state: String = r.get(7)?;
            Ok(DeliveryView {
                id: r.get(0)?,
                endpoint: r.get(1)?,
                url: r.get(2)?,
                event_id: r.get(3)?,
                event_type: r.get(4)?,
                job_id: r.get(5)?,
                webhook_id: r.get(6)?,
                next_attempt: (state == "PENDING").then(|| r.get::<_, f64>(9).map(rfc3339)).transpose()?,
                state,
                attempts: r.get(8)?,
                created: rfc3339(r.get(10)?),
                finished: r.get::<_, Option<f64>>(11)?.map(rfc3339),
                last_status: r.get(12)?,
                last_error: r.get(13)?,
                history: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, rusqlite::Error>>()?;
    let next = (v.len() as i64 > limit).then(|| {
        v.truncate(limit as usize);
        v.last().map(|d| d.id)
    });
    let mut at = c.prepare_cached("SELECT n, at, status, error, ms FROM webhook_attempts WHERE delivery_id = ?1 ORDER BY n")?;
    for d in &mut v {
        d.history = at
            .query_map([d.id], |r| {
                Ok(AttemptView {
                    n: r.get(0)?,
                    at: rfc3339(r.get(1)?),
                    status: r.get(2)?,
                    error: r.get(3)?,
                    ms: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok((v, next.flatten()))
}
