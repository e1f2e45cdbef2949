//! `/v1/jobs` and `/v1/events`: create (ingest jobs, and parent jobs for an
//! outside campaign runner), list, view (cached between writes), parts, add
//! sources to a draft, submit, cancel, and the long-polled event feed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tiny_http::Request;

use super::reply::{bounded, fail, internal, param, reject, reply, store_error, Reply};
use super::{Api, VIEW_TTL};
use crate::store::jobs::{self, NewJob, Reject};
use crate::store::model::JobStatus;
use crate::store::views;
use crate::store::StoreResult;
use crate::view::JobView;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    #[serde(default)]
    pub(super) sources: Vec<String>,
    /// kind "parent": the parent collection and the batch.
    pub(super) parent: Option<String>,
    pub(super) start_position: Option<i64>,
    pub(super) campaign_id: Option<String>,
    pub(super) campaign_total_children: Option<i64>,
    pub(super) pattern: Option<String>,
    pub(super) settings: Option<crate::config::SettingsOverride>,
    #[serde(default = "yes")]
    pub(super) submit: bool,
    #[serde(default)]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) priority: i64,
    pub(super) max_concurrency: Option<i64>,
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) labels: Option<std::collections::BTreeMap<String, String>>,
    pub(super) external_ref: Option<String>,
    pub(super) batch_size: Option<usize>,
    pub(super) max_part_bytes: Option<u64>,
    pub(super) compression: Option<crate::split::Compression>,
    pub(super) on_missing_file: Option<crate::split::OnMissing>,
    pub(super) manifest: Option<String>,
    pub(super) file_column: Option<String>,
    /// Plan every source and answer with the plan; record nothing.
    #[serde(default)]
    pub(super) dry_run: bool,
    /// For glob sources: a regular expression the full path must match.
    pub(super) regex_filter: Option<String>,
    /// For glob sources: the first N matches by name.
    pub(super) max_files: Option<usize>,
    /// Where the parts go (below an allowed root); default DATA_DIR/parts/{id}.
    pub(super) output_dir: Option<String>,
    /// The job's own webhook: a host in `webhooks.allowed_hosts`.
    pub(super) callback_url: Option<String>,
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourcesBody {
    sources: Vec<String>,
}

impl Api {
    pub(super) fn view(&self, id: &str) -> anyhow::Result<Option<JobView>> {
        let stall = self.config.engine.stall_seconds;
        Ok(self.store.read(|c| crate::view::job(c, id, stall))?)
    }

    /// `GET /v1/jobs/{id}/health`: whether the job is well, for monitors.
    pub(super) fn health_of(&self, id: &str) -> Result<Reply, Reply> {
        match self.view(id).map_err(internal)? {
            Some(v) => Ok(reply(200, serde_json::to_value(crate::view::JobHealth::from(v)).map_err(internal)?)),
            None => Err(fail(404, "NOT_FOUND", format!("no job {id}"))),
        }
    }

    pub(super) fn get(&self, id: &str) -> Result<Reply, Reply> {
        let generation = self.store.bell.generation();
        if let Some((g, at, body)) = self.views.lock().unwrap().get(id) {
            if *g == generation && at.elapsed() < VIEW_TTL {
                return Ok(Reply::text(200, body.to_string(), "application/json"));
            }
        }
        match self.view(id).map_err(internal)? {
            Some(v) => {
                let body = Arc::new(serde_json::to_string(&v).map_err(internal)?);
                let mut views = self.views.lock().unwrap();
                if views.len() > 4096 {
                    views.clear();
                }
                views.insert(id.to_owned(), (generation, std::time::Instant::now(), Arc::clone(&body)));
                Ok(Reply::text(200, body.to_string(), "application/json"))
            }
            None => Ok(reject(Reject::NotFound)),
        }
    }

    pub(super) fn parts(&self, id: &str) -> Result<Reply, Reply> {
        let id = id.to_owned();
        let (exists, parts) = self
            .store
            .read(|c| Ok((views::exists(c, &id)?, views::parts(c, &id)?)))
            .map_err(internal)?;
        if !exists {
            return Ok(reject(Reject::NotFound));
        }
        Ok(reply(200, json!({"parts": parts})))
    }

    pub(super) fn list(&self, q: &BTreeMap<String, String>) -> Result<Reply, Reply> {
        let status = q
            .get("status")
            .map(|s| s.to_ascii_uppercase().parse::<JobStatus>())
            .transpose()
            .map_err(|e| fail(400, "BAD_REQUEST", format!("unknown status: {e}")))?;
        let limit = bounded(q, "limit", 50, 1, 500)?;
        let after = param::<i64>(q, "after", "after must be the `next` value of a previous page")?;
        let stall = self.config.engine.stall_seconds;
        let kind = q.get("kind").cloned();
        if kind.as_deref().is_some_and(|k| k != "ingest" && k != "parent") {
            return Err(fail(400, "BAD_REQUEST", "kind is \"ingest\" or \"parent\""));
        }
        let (label, external_ref) = about_filter(q)?;
        let label = label.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
        let trigger = q.get("trigger").map(String::as_str);
        if trigger.is_some_and(|t| !["api", "cli", "watch", "schedule", "campaign"].contains(&t)) {
            return Err(fail(400, "BAD_REQUEST", "trigger is one of api, cli, watch, schedule, campaign"));
        }
        let filter = views::Filter {
            status: status.map(JobStatus::as_str),
            campaign_id: q.get("campaign_id").map(|s| s.as_str()),
            kind: kind.as_deref(),
            trigger,
            label,
            external_ref: external_ref.as_deref(),
        };
        let (list, next) = self.store.read(|c| views::list(c, &filter, limit, after)).map_err(internal)?;
        let list: Vec<JobView> = list.into_iter().map(|f| JobView::new(f, stall)).collect();
        Ok(reply(200, json!({"jobs": list, "next": next})))
    }

    /// The event feed, or with `job` that job's history (404 for no such job),
    /// after an id and optionally long-polling.
    pub(super) fn events(&self, q: &BTreeMap<String, String>, job: Option<&str>) -> Result<Reply, Reply> {
        if let Some(id) = job {
            if !self.store.read(|c| views::exists(c, id)).map_err(internal)? {
                return Err(fail(404, "NOT_FOUND", format!("no job {id}")));
            }
        }
        let after = param::<i64>(q, "after", "after must be an event id")?.unwrap_or(0);
        let wait = param::<f64>(q, "wait", "wait must be seconds")?.unwrap_or(0.0);
        // NaN would panic in Duration; anything else is held to 0..=30 s.
        if wait.is_nan() {
            return Err(fail(400, "BAD_REQUEST", "wait must be seconds"));
        }
        let wait = wait.clamp(0.0, 30.0);
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(wait);
        loop {
            let generation = self.store.bell.generation();
            let events = self
                .store
                .read(|c| match job {
                    Some(id) => views::job_events(c, id, after, 500),
                    None => views::events(c, after, 500),
                })
                .map_err(internal)?;
            let now = std::time::Instant::now();
            if !events.is_empty() || now >= deadline {
                let next = events.last().and_then(|e| e["id"].as_i64()).unwrap_or(after);
                return Ok(reply(200, json!({"events": events, "next": next})));
            }
            self.store.bell.wait_since(generation, deadline - now);
        }
    }

    pub(super) fn create(&self, req: &Request, body: &[u8]) -> Result<Reply, Reply> {
        let parsed: Value = Self::json(body)?;
        let b: CreateBody = serde_json::from_value(parsed.clone()).map_err(|e| fail(400, "BAD_REQUEST", e.to_string()))?;
        match b.kind.as_deref() {
            // A field of the other kind would be ignored; a client that sent it
            // meant something, so it is refused rather than dropped.
            None | Some("ingest") => {
                if b.parent.is_some()
                    || b.start_position.is_some()
                    || b.campaign_id.is_some()
                    || b.campaign_total_children.is_some()
                    || b.pattern.is_some()
                    || b.settings.is_some()
                {
                    return Err(fail(
                        400,
                        "BAD_REQUEST",
                        "parent, start_position, campaign_id, campaign_total_children, pattern and settings belong to \"kind\": \"parent\"",
                    ));
                }
            }
            Some("parent") => {
                if b.max_concurrency.is_some()
                    || b.dry_run
                    || b.regex_filter.is_some()
                    || b.max_files.is_some()
                    || b.output_dir.is_some()
                    || b.name.is_some()
                    || b.description.is_some()
                    || b.labels.is_some()
                    || b.external_ref.is_some()
                    || b.callback_url.is_some()
                {
                    return Err(fail(
                        400,
                        "BAD_REQUEST",
                        "max_concurrency, dry_run, regex_filter, max_files, output_dir, name, description, labels, external_ref and callback_url belong to ingest jobs",
                    ));
                }
                if b.compression.is_some()
                    || b.on_missing_file.is_some()
                    || b.manifest.is_some()
                    || b.file_column.is_some()
                    || b.max_part_bytes.is_some()
                {
                    return Err(fail(
                        400,
                        "BAD_REQUEST",
                        "a parent job's children take compression, on_missing_file, manifest, file_column and max_part_bytes in \"settings\"",
                    ));
                }
                return self.create_parent(b);
            }
            Some(k) => return Err(fail(400, "BAD_REQUEST", format!("kind {k:?} is not one of \"ingest\", \"parent\""))),
        }
        if b.sources.is_empty() && (b.submit || b.dry_run) {
            return Err(fail(
                400,
                "BAD_REQUEST",
                "a submitted job needs at least one source (or send \"submit\": false for a draft)",
            ));
        }
        let mut settings = self.config.defaults.resolve(crate::config::SettingsOverride {
            batch_size: b.batch_size,
            max_part_bytes: b.max_part_bytes,
            compression: b.compression,
            on_missing_file: b.on_missing_file,
            manifest: b.manifest.clone(),
            file_column: b.file_column.clone(),
        });
        settings.callback_url = b.callback_url.as_deref().map(|u| self.check_callback(u)).transpose()?;
        if settings.batch_size == 0 {
            return Err(fail(400, "BAD_REQUEST", "batch_size must be at least 1"));
        }
        if settings.max_part_bytes == Some(0) {
            return Err(fail(
                400,
                "BAD_REQUEST",
                "max_part_bytes must be at least 1 (or left out for no cap)",
            ));
        }
        if b.max_concurrency.is_some_and(|n| n < 1) {
            return Err(fail(400, "BAD_REQUEST", "max_concurrency must be at least 1 (or null for no cap)"));
        }
        let about = jobs::About {
            name: b.name.clone(),
            description: b.description.clone(),
            labels: b.labels.clone().unwrap_or_default(),
            external_ref: b.external_ref.clone(),
        };
        check_about(&about)?;
        let (sources, expanded) = self.expand_sources(&b.sources, b.regex_filter.as_deref(), b.max_files)?;
        let sources = self.check_sources(&sources, &[])?;
        let out_dir = b.output_dir.as_deref().map(|d| self.check_output_dir(d)).transpose()?;
        let id = crate::ids::new_id();
        if b.dry_run {
            let dir = out_dir
                .clone()
                .unwrap_or_else(|| NewJob::default_out_dir(&self.config.data_dir, &id));
            let mut r = self.dry_run(&sources, &settings, &dir);
            if !expanded.is_empty() {
                let mut v: Value = serde_json::from_str(&r.body).map_err(internal)?;
                v["expanded"] = json!(expanded);
                r.body = v.to_string();
            }
            return Ok(r);
        }
        let key = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("Idempotency-Key"))
            .map(|h| h.value.as_str().to_owned());
        let trigger = req.headers().iter().find(|h| h.field.equiv("X-Batchd-Trigger")).map_or("api", |h| {
            if h.value.as_str() == "cli" {
                "cli"
            } else {
                "api"
            }
        });
        let job = NewJob {
            submit: b.submit,
            priority: b.priority,
            max_concurrency: b.max_concurrency,
            about,
            idempotency: key.map(|k| (k, crate::fsx::hex(&Sha256::digest(parsed.to_string().as_bytes())))),
            ..NewJob::ingest(id, &self.config.data_dir, out_dir.as_deref(), sources, settings, trigger)
        };
        let (id, created) = self
            .store
            .write(move |tx| {
                let (id, created) = jobs::create(tx, &job)?;
                if created && !expanded.is_empty() {
                    jobs::event(tx, Some(&id), "sources.expanded", json!({"globs": expanded}))?;
                }
                Ok((id, created))
            })
            .map_err(store_error)?;
        let view = serde_json::to_value(self.view(&id).map_err(internal)?).map_err(internal)?;
        let mut r = reply(if created { 201 } else { 200 }, view);
        r.headers.push(("Location", format!("/v1/jobs/{id}")));
        if !created {
            r.headers.push(("Idempotent-Replayed", "true".into()));
        }
        Ok(r)
    }

    /// A job's callback may only go to a host the site allowed: an API
    /// client must not make batchd POST to arbitrary addresses.
    fn check_callback(&self, url: &str) -> Result<String, Reply> {
        let host = crate::config::url_host(url).map_err(|e| fail(400, "BAD_REQUEST", format!("callback_url: {e}")))?;
        let allowed = &self.config.webhooks.allowed_hosts;
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&host)) {
            return Err(fail(
                400,
                "CALLBACK_NOT_ALLOWED",
                format!(
                    "callback_url host {host:?} is not in webhooks.allowed_hosts ({}); ask the operator to allow it",
                    if allowed.is_empty() {
                        "empty: callbacks are off".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ),
            ));
        }
        Ok(url.to_owned())
    }

    pub(super) fn add_sources(&self, id: &str, body: &[u8]) -> Result<Reply, Reply> {
        let b: SourcesBody = Self::json(body)?;
        let job = self
            .store
            .read(|c| jobs::job_for_task(c, id))
            .map_err(internal)?
            .ok_or_else(|| reject(Reject::NotFound))?;
        if job.status != JobStatus::Draft {
            return Err(reject(Reject::Conflict(format!(
                "job is {}; sources can only be added to a DRAFT job",
                job.status
            ))));
        }
        let existing = job.sources;
        let (sources, _) = self.expand_sources(&b.sources, None, None)?;
        let sources = self.check_sources(&sources, &existing)?;
        let id2 = id.to_owned();
        self.store
            .write(move |tx| jobs::add_sources(tx, &id2, &sources))
            .map_err(store_error)?;
        self.get(id)
    }

    pub(super) fn act(&self, id: &str, f: impl FnOnce(&crate::store::Tx, &str) -> StoreResult<()> + Send + 'static) -> Reply {
        let id2 = id.to_owned();
        match self.store.write(move |tx| f(tx, &id2)) {
            Err(e) => store_error(e),
            Ok(()) => self.get(id).unwrap_or_else(|e| e),
        }
    }
}

/// `?label=KEY:VALUE` and `?external_ref=` of a job or campaign list, decoded and checked.
pub(super) type AboutFilter = (Option<(String, String)>, Option<String>);

pub(super) fn about_filter(q: &BTreeMap<String, String>) -> Result<AboutFilter, Reply> {
    let label = match q.get("label").map(|l| crate::text::percent_decode(l)) {
        None => None,
        Some(l) => match l.split_once(':') {
            Some((k, v)) if label_key_ok(k) => Some((k.to_owned(), v.to_owned())),
            _ => return Err(fail(400, "BAD_REQUEST", "label is KEY:VALUE, the key of letters, digits and ._-/")),
        },
    };
    Ok((label, q.get("external_ref").map(|r| crate::text::percent_decode(r))))
}

/// A label key: what a filter `label=KEY:VALUE` can name unambiguously.
fn label_key_ok(k: &str) -> bool {
    !k.is_empty() && k.len() <= 100 && k.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-/".contains(&c))
}

/// Bounds on what a client may call a job: these are stored, listed and
/// passed to every hook.
pub(super) fn check_about(a: &jobs::About) -> Result<(), Reply> {
    let long = |v: &Option<String>, max: usize| v.as_ref().is_some_and(|s| s.chars().count() > max);
    if long(&a.name, 200) || long(&a.external_ref, 200) {
        return Err(fail(400, "BAD_REQUEST", "name and external_ref: at most 200 characters"));
    }
    if long(&a.description, 2000) {
        return Err(fail(400, "BAD_REQUEST", "description: at most 2000 characters"));
    }
    if a.labels.len() > 50 {
        return Err(fail(400, "BAD_REQUEST", "labels: at most 50"));
    }
    for (k, v) in &a.labels {
        if !label_key_ok(k) {
            return Err(fail(
                400,
                "BAD_REQUEST",
                format!("label key {k:?}: 1 to 100 letters, digits or ._-/"),
            ));
        }
        if v.chars().count() > 500 {
            return Err(fail(400, "BAD_REQUEST", format!("label {k:?}: the value is over 500 characters")));
        }
    }
    Ok(())
}
