//! The parts' delivery to object storage: a part is marked DELIVERED (with the
//! object's URL) in the transaction that records its `part.delivered` event,
//! so the job view, the event feed and the webhooks agree on what is in the
//! bucket.

use r2d2_sqlite::rusqlite::params;
use serde_json::json;

use super::jobs::event;
use super::{StoreResult, Tx};
use crate::clock::now;

/// Where one delivered part went.
pub struct Delivered<'a> {
    pub job_id: &'a str,
    pub source_n: i64,
    pub n: i64,
    pub bucket: &'a str,
    pub key: &'a str,
    pub url: &'a str,
    /// True when the object was already there with the same bytes (a repeat
    /// after a crash), so nothing was sent.
    pub already_there: bool,
}

pub fn part_delivered(tx: &Tx, d: &Delivered) -> StoreResult<()> {
    let changed = tx.execute(
        "UPDATE parts SET delivery = 'DELIVERED', object_url = ?4, delivered = ?5
         WHERE job_id = ?1 AND source_n = ?2 AND n = ?3 AND delivery IS NOT 'DELIVERED'",
        params![d.job_id, d.source_n, d.n, d.url, now()],
    )?;
    if changed > 0 {
        let (bytes, sha256): (Option<i64>, Option<String>) = tx.query_row(
            "SELECT bytes, sha256 FROM parts WHERE job_id = ?1 AND source_n = ?2 AND n = ?3",
            params![d.job_id, d.source_n, d.n],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        event(
            tx,
            Some(d.job_id),
            "part.delivered",
            json!({"source": d.source_n, "part": d.n, "bucket": d.bucket, "key": d.key, "url": d.url,
                   "bytes": bytes, "sha256": sha256, "already_there": d.already_there}),
        )?;
    }
    Ok(())
}
