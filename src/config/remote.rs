//! The settings for what leaves the machine or comes from outside it: the S3
//! endpoint (`[s3]`) that sources are read from and parts are delivered to
//! (`[delivery.s3]`), and webhooks (`[webhooks]` for what every delivery
//! shares and a job's `callback_url` may name, `[[webhook]]` per
//! subscription). Secrets come from files readable only by batchd, or from
//! the environment, never from the world-readable config file alone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One S3-compatible endpoint and who batchd is there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3 {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:3900`, …; empty: no S3.
    pub endpoint: String,
    pub region: String,
    /// `endpoint/bucket/key` (self-hosted servers) rather than `bucket.endpoint/key` (AWS).
    pub path_style: bool,
    /// An AWS-style credentials file (`aws_access_key_id = …`,
    /// `aws_secret_access_key = …`) readable by batchd alone; without it,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` from the environment.
    pub credentials_file: Option<PathBuf>,
    /// Buckets that job sources (`s3://bucket/key`) may be read from, as
    /// `http.allowed_roots` is for paths. Empty: none.
    pub allowed_buckets: Vec<String>,
}

impl Default for S3 {
    fn default() -> Self {
        S3 {
            endpoint: String::new(),
            region: "us-east-1".into(),
            path_style: true,
            credentials_file: None,
            allowed_buckets: Vec::new(),
        }
    }
}

impl S3 {
    pub fn configured(&self) -> bool {
        !self.endpoint.is_empty()
    }

    /// A client for `bucket`, with the credentials read now.
    pub fn client(&self, bucket: &str) -> anyhow::Result<crate::s3::Client> {
        let (access_key, secret_key) = self.credentials()?;
        crate::s3::Client::new(crate::s3::Target {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            bucket: bucket.to_owned(),
            path_style: self.path_style,
            access_key,
            secret_key,
        })
        .map_err(|e| anyhow::anyhow!("s3.endpoint: {e}"))
    }

    fn credentials(&self) -> anyhow::Result<(String, String)> {
        if let Some(path) = &self.credentials_file {
            let text = read_secret_file(path, "s3.credentials_file")?;
            let get = |name: &str| {
                text.lines()
                    .filter_map(|l| l.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_owned())
            };
            return match (get("aws_access_key_id"), get("aws_secret_access_key")) {
                (Some(a), Some(s)) => Ok((a, s)),
                _ => Err(anyhow::anyhow!(
                    "s3.credentials_file {} lacks aws_access_key_id or aws_secret_access_key",
                    path.display()
                )),
            };
        }
        match (std::env::var("AWS_ACCESS_KEY_ID"), std::env::var("AWS_SECRET_ACCESS_KEY")) {
            (Ok(a), Ok(s)) if !a.is_empty() && !s.is_empty() => Ok((a, s)),
            _ => Err(anyhow::anyhow!(
                "no S3 credentials: set s3.credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in batchd's environment"
            )),
        }
    }
}

/// Where parts go once published.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    pub s3: Option<DeliveryS3>,
}

/// Every published part is uploaded to `bucket` under `key` (on `[s3]`'s
/// endpoint); the job completes only when all its parts are there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryS3 {
    pub bucket: String,
    /// The object key: `{job}` (job id), `{file}` (the part's file name),
    /// `{stem}` (its source's name without extension), `{n}` (part number),
    /// `{source}` (source number), `{name}` and `{external_ref}` (the
    /// client's, or the job id when unset).
    pub key: String,
    /// Parts larger than this go up in several requests of `part_size_mib`.
    pub multipart_threshold_mib: u64,
    pub part_size_mib: u64,
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles with each further one.
    pub backoff_seconds: f64,
    /// Keep the local part once it is delivered (false: remove it).
    pub keep_local: bool,
}

impl Default for DeliveryS3 {
    fn default() -> Self {
        DeliveryS3 {
            bucket: String::new(),
            key: "{job}/{file}".into(),
            multipart_threshold_mib: 64,
            part_size_mib: 16,
            max_attempts: 8,
            backoff_seconds: 5.0,
            keep_local: true,
        }
    }
}

pub const KEY_FIELDS: [&str; 7] = ["job", "file", "stem", "n", "source", "name", "external_ref"];

/// What every webhook delivery shares, and what a job's `callback_url` may name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    /// Hosts (`host` or `host:port`) a job's `callback_url` may point at;
    /// empty: no job may ask for a callback.
    pub allowed_hosts: Vec<String>,
    /// Signs callbacks (`whsec_…`, Standard Webhooks); or `callback_secret_file`.
    pub callback_secret: Option<String>,
    pub callback_secret_file: Option<PathBuf>,
    pub timeout_seconds: f64,
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles with each further one, up to an hour.
    pub backoff_seconds: f64,
    /// Of a receiver's answer, at most this much is read (and kept, clipped).
    pub max_response_bytes: u64,
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            allowed_hosts: Vec::new(),
            callback_secret: None,
            callback_secret_file: None,
            timeout_seconds: 10.0,
            max_attempts: 10,
            backoff_seconds: 5.0,
            max_response_bytes: 64 * 1024,
        }
    }
}

/// One subscription: events matching `events` are POSTed to `url`, signed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// `job.completed`, `job.failed`, `job.cancelled`, `part.delivered`,
    /// `campaign.completed`, … or a prefix with `*` (`campaign.*`). Default: all.
    #[serde(default = "all_events")]
    pub events: Vec<String>,
}

fn all_events() -> Vec<String> {
    vec!["*".into()]
}

/// The event types a webhook can carry.
pub const EVENT_TYPES: [&str; 9] = [
    "job.completed",
    "job.failed",
    "job.cancelled",
    "part.delivered",
    "campaign.running",
    "campaign.stopping",
    "campaign.stopped",
    "campaign.completed",
    "campaign.failed",
];

impl Webhook {
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|p| matches_event(p, event_type))
    }
}

pub fn matches_event(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// A secret from the config or from a file only batchd can read.
pub fn secret(inline: &Option<String>, file: &Option<PathBuf>, key: &str) -> anyhow::Result<Option<String>> {
    match (inline, file) {
        (Some(s), None) => Ok(Some(s.trim().to_owned())),
        (None, Some(p)) => Ok(Some(read_secret_file(p, key)?.trim().to_owned())),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(anyhow::anyhow!("{key}: give the secret or its file, not both")),
    }
}

/// Reads a secret file, refusing one that others may read.
fn read_secret_file(path: &Path, key: &str) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{key} {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(anyhow::anyhow!(
            "{key} {} may be read by others (mode {:o}); run chmod 600 on it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{key} {}: reading: {e}", path.display()))
}

/// `host` or `host:port` of an http(s) URL, lower-cased, or why it is not one.
pub fn url_host(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') || host.chars().any(|c| c.is_whitespace()) {
        return Err(format!("{url:?} has no usable host"));
    }
    Ok(host.to_ascii_lowercase())
}

/// Checks the remote settings, naming the key at fault.
pub fn validate(s3: &S3, delivery: &Delivery, hooks: &Webhooks, subs: &[Webhook]) -> anyhow::Result<()> {
    let bad = |key: &str, why: String| Err(anyhow::anyhow!("invalid value for `{key}`: {why}"));
    if s3.configured() {
        if let Err(e) = crate::s3::parse_endpoint(&s3.endpoint) {
            return bad("s3.endpoint", e);
        }
    }
    if let Some(d) = &delivery.s3 {
        if !s3.configured() {
            return bad("delivery.s3", "needs [s3] with an endpoint".into());
        }
        if d.bucket.is_empty() {
            return bad("delivery.s3.bucket", "must name a bucket".into());
        }
        crate::text::fill(&d.key, &KEY_FIELDS, |_| "x".into()).map_err(|e| anyhow::anyhow!("invalid value for `delivery.s3.key`: {e}"))?;
        if d.part_size_mib < 5 {
            return bad("delivery.s3.part_size_mib", "must be at least 5 (S3's smallest part)".into());
        }
        if d.max_attempts == 0 {
            return bad("delivery.s3.max_attempts", "must be at least 1".into());
        }
    }
    if !hooks.allowed_hosts.is_empty() && hooks.callback_secret.is_none() && hooks.callback_secret_file.is_none() {
        return bad(
            "webhooks.allowed_hosts",
            "callbacks are signed: set webhooks.callback_secret or webhooks.callback_secret_file".into(),
        );
    }
    if hooks.max_attempts == 0 {
        return bad("webhooks.max_attempts", "must be at least 1".into());
    }
    if hooks.timeout_seconds.is_nan() || hooks.timeout_seconds <= 0.0 {
        return bad("webhooks.timeout_seconds", "must be more than 0".into());
    }
    let mut names = std::collections::HashSet::new();
    for w in subs {
        if !names.insert(&w.name) || w.name == "callback" {
            return bad(
                "webhook.name",
                format!("{:?} is used twice (or is the reserved \"callback\")", w.name),
            );
        }
        if let Err(e) = url_host(&w.url) {
            return bad("webhook.url", e);
        }
        if w.secret.is_none() && w.secret_file.is_none() {
            return bad(
                "webhook.secret",
                format!("webhook {:?} needs a secret (whsec_…) or secret_file", w.name),
            );
        }
        for p in &w.events {
            if !EVENT_TYPES.iter().any(|t| matches_event(p, t)) {
                return bad("webhook.events", format!("{p:?} matches none of {}", EVENT_TYPES.join(", ")));
            }
        }
    }
    Ok(())
}
