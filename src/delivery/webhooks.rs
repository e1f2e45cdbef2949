//! The webhook dispatcher: one thread that turns events of the feed into
//! outbox rows (one per receiver: each `[[webhook]]` whose filter matches,
//! and the job's own `callback_url`), then POSTs what is due, signed, and
//! records every attempt. The outbox is in SQLite, so a delivery survives a
//! restart and is sent at least once; its `webhook-id` is the same on every
//! attempt, so a receiver can recognise a repeat. A receiver's answer is read
//! up to `webhooks.max_response_bytes` and no redirect is followed: batchd
//! only ever POSTs to the addresses the site configured.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::sign::{signature, Secret};
use crate::config::Config;
use crate::store::webhooks::{self as outbox, Attempt, Due, FeedEvent, NewDelivery};
use crate::store::{jobs, views, Store, StoreResult};

/// The shortest time between two looks at the feed and the outbox.
const MIN_CYCLE: Duration = Duration::from_millis(200);

/// The name deliveries to a job's own `callback_url` go by.
const CALLBACK: &str = "callback";

pub struct Dispatcher {
    store: Store,
    config: Arc<Config>,
    /// Signing keys by endpoint name (`callback` for job callbacks).
    secrets: HashMap<String, Secret>,
    agent: ureq::Agent,
}

impl Dispatcher {
    /// Reads and checks every secret now, so a bad one stops the daemon at
    /// start with its name rather than failing deliveries later.
    pub fn new(store: Store, config: Arc<Config>) -> anyhow::Result<Dispatcher> {
        let mut secrets = HashMap::new();
        let w = &config.webhooks;
        if let Some(s) = crate::config::secret(&w.callback_secret, &w.callback_secret_file, "webhooks.callback_secret")? {
            secrets.insert(
                CALLBACK.to_owned(),
                Secret::parse(&s).map_err(|e| anyhow::anyhow!("webhooks.callback_secret: {e}"))?,
            );
        }
        for h in &config.webhook {
            let s = crate::config::secret(&h.secret, &h.secret_file, &format!("webhook {:?} secret", h.name))?
                .ok_or_else(|| anyhow::anyhow!("webhook {:?} has no secret", h.name))?;
            secrets.insert(
                h.name.clone(),
                Secret::parse(&s).map_err(|e| anyhow::anyhow!("webhook {:?} secret: {e}", h.name))?,
            );
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs_f64(w.timeout_seconds)))
            .user_agent(concat!("batchd/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Dispatcher {
            store,
            config,
            secrets,
            agent,
        })
    }

    pub fn run(self, stop: &crate::signals::Stop) {
        let mut last = Instant::now() - MIN_CYCLE;
        let mut busy = false;
        while !stop.is_set() {
            // The bell rings on every write, many a second while parts are
            // packed; when idle, looking at most this often keeps the feed
            // reads bounded. A backlog is sent without pause.
            if !busy {
                stop.sleep(MIN_CYCLE.saturating_sub(last.elapsed()));
            }
            last = Instant::now();
            let seen = self.store.bell.generation();
            if let Err(e) = self.enqueue() {
                tracing::error!("webhooks: queueing events: {e:#}");
            }
            let mut sent = 0;
            match self.store.read(|c| outbox::due(c, 20)) {
                Ok(due) => {
                    for d in due {
                        if stop.is_set() {
                            break;
                        }
                        self.send(d);
                        sent += 1;
                    }
                }
                Err(e) => tracing::error!("webhooks: reading the outbox: {e:#}"),
            }
            busy = sent > 0;
            if busy {
                continue;
            }
            let wait = self
                .store
                .read(outbox::next_due_in)
                .ok()
                .flatten()
                .map_or(5.0, |s| s.clamp(0.05, 5.0));
            self.store.bell.wait_since(seen, Duration::from_secs_f64(wait));
        }
    }

    /// Turns new events into outbox rows and moves the cursor past them.
    fn enqueue(&self) -> anyhow::Result<()> {
        loop {
            let stall = self.config.engine.stall_seconds;
            let (rows, last, cursor) = self.store.read(|c| {
                let cursor = outbox::cursor(c)?;
                let (events, last) = outbox::events_after(c, cursor, 500)?;
                let mut rows = Vec::new();
                for ev in &events {
                    rows.extend(self.deliveries(c, ev, stall)?);
                }
                Ok((rows, last, cursor))
            })?;
            if last == cursor {
                return Ok(());
            }
            let queued = self.store.write(move |tx| outbox::enqueue(tx, &rows, last))?;
            if queued > 0 {
                tracing::debug!("webhooks: {queued} deliveries queued");
            }
        }
    }

    /// The outbox rows one event makes.
    fn deliveries(&self, c: &r2d2_sqlite::rusqlite::Connection, ev: &FeedEvent, stall: u64) -> StoreResult<Vec<NewDelivery>> {
        // The job is read once: for its callback (when callbacks are
        // possible) and for what a part.delivered payload says of it.
        let job = match &ev.job_id {
            Some(id) if ev.kind == "part.delivered" || !self.config.webhooks.allowed_hosts.is_empty() => jobs::job_for_task(c, id)?,
            _ => None,
        };
        let callback = job.as_ref().and_then(|j| j.settings.callback_url.clone());
        let event_type = match ev.kind.as_str() {
            "campaign.status" => format!("campaign.{}", ev.data["status"].as_str().unwrap_or("").to_ascii_lowercase()),
            k => k.to_owned(),
        };
        let mut to: Vec<(String, String)> = self
            .config
            .webhook
            .iter()
            .filter(|w| w.wants(&event_type))
            .map(|w| (w.name.clone(), w.url.clone()))
            .collect();
        if let Some(url) = callback {
            to.push((CALLBACK.to_owned(), url));
        }
        if to.is_empty() {
            return Ok(Vec::new());
        }
        let data = match ev.kind.as_str() {
            "campaign.status" => {
                let id = ev.data["campaign_id"].as_str().unwrap_or_default();
                json!({"campaign": crate::view::campaign(c, id)?})
            }
            "part.delivered" => {
                let id = ev.job_id.clone().unwrap_or_default();
                let (source, n) = (ev.data["source"].as_i64().unwrap_or(1), ev.data["part"].as_i64().unwrap_or(0));
                json!({"job_id": id, "part": views::part(c, &id, source, n)?,
                       "name": job.as_ref().and_then(|j| j.about.name.clone()),
                       "external_ref": job.as_ref().and_then(|j| j.about.external_ref.clone()),
                       "labels": job.as_ref().map(|j| j.about.labels.clone()).unwrap_or_default()})
            }
            _ => {
                let id = ev.job_id.clone().unwrap_or_default();
                let parts: Vec<_> = views::parts(c, &id)?
                    .into_iter()
                    .filter(|p| p.state == crate::store::model::PartState::Done)
                    .collect();
                json!({"job": crate::view::job(c, &id, stall)?, "parts": parts})
            }
        };
        let payload = json!({"type": event_type, "timestamp": crate::clock::rfc3339(ev.at), "data": data}).to_string();
        Ok(to
            .into_iter()
            .map(|(endpoint, url)| NewDelivery {
                endpoint,
                url,
                event_id: ev.id,
                event_type: event_type.clone(),
                job_id: ev.job_id.clone(),
                payload: payload.clone(),
            })
            .collect())
    }

    /// One attempt at one delivery, recorded.
    fn send(&self, d: Due) {
        let w = &self.config.webhooks;
        let at = crate::clock::now();
        let started = Instant::now();
        let (status, error) = match self.secrets.get(&d.endpoint) {
            None => (
                None,
                Some(format!(
                    "no webhook named {:?} is configured any more (or it has no secret); the delivery cannot be signed",
                    d.endpoint
                )),
            ),
            Some(secret) => self.post(&d, secret, at as i64),
        };
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        let n = d.attempts as u32 + 1;
        let retry_in = (!delivered && n < w.max_attempts && self.secrets.contains_key(&d.endpoint))
            .then(|| (w.backoff_seconds * 2f64.powi(n.saturating_sub(1).min(20) as i32)).min(3600.0));
        if !delivered {
            tracing::warn!(url = %d.url, attempt = n, "webhook delivery failed: {}", error.as_deref().unwrap_or("no 2xx"));
        }
        let attempt = Attempt {
            status,
            error,
            ms: started.elapsed().as_secs_f64() * 1000.0,
            at,
        };
        if let Err(e) = self
            .store
            .write(move |tx| outbox::attempted(tx, d.id, &attempt, delivered, retry_in))
        {
            tracing::error!("webhooks: recording an attempt: {e:#}");
        }
    }

    /// POSTs a delivery: the receiver's status (if it answered) and what went wrong.
    fn post(&self, d: &Due, secret: &Secret, timestamp: i64) -> (Option<u16>, Option<String>) {
        let cap = self.config.webhooks.max_response_bytes;
        let result = self
            .agent
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(secret, &d.msg_id, timestamp, &d.payload))
            .send(d.payload.as_bytes());
        match result {
            Err(e) => (None, Some(e.to_string())),
            Ok(mut r) => {
                let status = r.status().as_u16();
                let mut answer = Vec::new();
                let _ = r
                    .body_mut()
                    .with_config()
                    .limit(u64::MAX)
                    .reader()
                    .take(cap)
                    .read_to_end(&mut answer);
                let ok = (200..300).contains(&status);
                let error = (!ok).then(|| {
                    let text = String::from_utf8_lossy(&answer);
                    let clip: String = text.chars().take(300).collect();
                    format!(
                        "HTTP {status}{}",
                        if clip.trim().is_empty() {
                            String::new()
                        } else {
                            format!(": {}", clip.trim())
                        }
                    )
                });
                (Some(status), error)
            }
        }
    }
}
