//! `batchd add` and `batchd submit-draft`: a draft job (made with
//! `batchd submit --draft`) takes more sources, then is queued when it is whole.

use clap::Args;
use serde_json::json;

use super::client::Client;
use super::jobs::{print_brief, FollowArgs};
use super::serve::DaemonArgs;
use super::submit::absolute;

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The draft job.
    pub job: String,
    /// Archives or directories to add to it.
    #[arg(required = true)]
    pub sources: Vec<std::path::PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Debug, Args)]
pub struct SubmitDraftArgs {
    /// The draft job.
    pub job: String,
    #[command(flatten)]
    pub follow: FollowArgs,
}

pub fn add(args: AddArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let body = json!({"sources": absolute(&args.sources)?});
    let job = client.ok("POST", &format!("/v1/jobs/{}/sources", args.job), Some(&body))?;
    print_brief(&job, args.json)
}

pub fn submit_draft(args: SubmitDraftArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.follow.daemon)?;
    let job = client.ok("POST", &format!("/v1/jobs/{}/submit", args.job), Some(&json!({})))?;
    args.follow.finish(&client, &job)
}
