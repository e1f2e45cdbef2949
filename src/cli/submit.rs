//! `batchd submit`: one job from sources, optionally waiting for it to end.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::client::Client;
use super::jobs::{print_brief, FollowArgs};
use crate::split::{Compression, OnMissing};

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Archives or directories to ingest (one job).
    #[arg(required_unless_present = "draft")]
    pub sources: Vec<PathBuf>,
    /// Make a DRAFT job: add sources with `batchd add`, queue it with `batchd submit-draft`.
    #[arg(long)]
    pub draft: bool,
    /// A part closes before its payload would pass this many bytes (a single
    /// larger file gets a part of its own); with --batch-size, whichever comes first.
    #[arg(long)]
    pub max_part_bytes: Option<u64>,
    #[arg(long, short = 'n')]
    pub batch_size: Option<usize>,
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,
    #[arg(long, value_enum)]
    pub on_missing_file: Option<OnMissing>,
    #[arg(long)]
    pub file_column: Option<String>,
    #[arg(long)]
    pub priority: Option<i64>,
    /// The most tasks of this job run at once (default: no cap).
    #[arg(long)]
    pub max_concurrency: Option<i64>,
    /// What you call the job (shown everywhere, passed to hooks).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// A label KEY=VALUE; repeat for more (the API filters with ?label=KEY:VALUE).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Your own id for the job (e.g. a download or batch id).
    #[arg(long)]
    pub external_ref: Option<String>,
    /// POST the job's end (and its parts' delivery) here, signed; the host
    /// must be in the daemon's webhooks.allowed_hosts.
    #[arg(long)]
    pub callback_url: Option<String>,
    #[command(flatten)]
    pub follow: FollowArgs,
}

pub fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.follow.daemon)?;
    let sources = absolute(&args.sources)?;
    let mut body = json!({"sources": sources, "submit": !args.draft});
    if let Some(n) = args.max_part_bytes {
        body["max_part_bytes"] = json!(n);
    }
    if let Some(n) = args.batch_size {
        body["batch_size"] = json!(n);
    }
    if let Some(c) = args.compression {
        body["compression"] = json!(c);
    }
    if let Some(m) = args.on_missing_file {
        body["on_missing_file"] = json!(m);
    }
    if let Some(f) = &args.file_column {
        body["file_column"] = json!(f);
    }
    if let Some(p) = args.priority {
        body["priority"] = json!(p);
    }
    if let Some(n) = args.max_concurrency {
        body["max_concurrency"] = json!(n);
    }
    for (key, value) in [
        ("name", &args.name),
        ("description", &args.description),
        ("external_ref", &args.external_ref),
        ("callback_url", &args.callback_url),
    ] {
        if let Some(v) = value {
            body[key] = json!(v);
        }
    }
    if !args.labels.is_empty() {
        let mut labels = serde_json::Map::new();
        for l in &args.labels {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--label {l:?}: write it as KEY=VALUE"))?;
            labels.insert(k.to_owned(), json!(v));
        }
        body["labels"] = serde_json::Value::Object(labels);
    }
    let job = client.ok("POST", "/v1/jobs", Some(&body))?;
    if args.follow.wait && !args.draft {
        if !args.follow.json {
            eprintln!("job {} submitted", job["id"].as_str().unwrap_or_default());
        }
        return args.follow.finish(&client, &job);
    }
    print_brief(&job, args.follow.json)
}

/// Sources as absolute paths: the daemon resolves them in its own directory.
pub(super) fn absolute(sources: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    sources
        .iter()
        .map(|s| {
            // An object in a bucket is named as it is; the daemon checks it.
            if s.to_str().is_some_and(crate::objects::is_s3) {
                return Ok(s.to_string_lossy().into_owned());
            }
            std::fs::canonicalize(s)
                .map(|p| p.to_string_lossy().into_owned())
                .with_context(|| format!("source {}", s.display()))
        })
        .collect()
}
