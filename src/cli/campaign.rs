//! `batchd campaign`: start, status, stop, resume, retry-failed and list campaigns.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::Client;
use super::serve::DaemonArgs;
use crate::view::CampaignView;

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Start a campaign over PARENT (a directory; its entries, sorted by name, are the children).
    Start {
        parent: std::path::PathBuf,
        /// Children per batch.
        #[arg(long, default_value_t = 40)]
        batch_size: i64,
        /// Stop after this many children (positions 1..=N).
        #[arg(long)]
        total: Option<i64>,
        /// Campaign id (generated when absent).
        #[arg(long)]
        id: Option<String>,
        /// Glob on child names.
        #[arg(long)]
        pattern: Option<String>,
        /// Rows per part ZIP in each child job.
        #[arg(long)]
        rows_per_part: Option<usize>,
        /// The campaign fails once more child jobs than this have failed.
        #[arg(long)]
        max_failed: Option<i64>,
        /// What you call the campaign.
        #[arg(long)]
        name: Option<String>,
        /// Your own id for it.
        #[arg(long)]
        external_ref: Option<String>,
        /// Follow it until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// Show a campaign; --follow keeps a live view until it ends.
    Status {
        id: String,
        #[arg(long)]
        follow: bool,
    },
    /// Let the current batch finish and queue no more.
    Stop { id: String },
    /// Continue a stopped (or failed) campaign from next_start_position.
    Resume { id: String },
    /// Run the campaign's FAILED child jobs again (each as itself).
    RetryFailed { id: String },
    /// List campaigns.
    List,
}

#[derive(Debug, Args)]
pub struct CampaignArgs {
    #[command(subcommand)]
    pub command: CampaignCommand,
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// The daemon's answer as a typed campaign view.
fn campaign_view(v: &Value) -> anyhow::Result<CampaignView> {
    serde_json::from_value(v.clone()).context("reading the daemon's campaign view (is the daemon a different batchd version?)")
}

fn print_campaign(c: &CampaignView) {
    let ch = &c.children;
    println!(
        "{}  {:<9} batches {}  children: {} succeeded, {} failed, {} running, {} skipped  next_start_position {}",
        c.campaign_id,
        c.status.as_str(),
        c.parent_batches,
        ch.succeeded,
        ch.failed,
        ch.running,
        ch.skipped,
        c.next_start_position.map_or_else(|| "null".to_owned(), |n| n.to_string())
    );
    if let Some(name) = &c.about.name {
        println!("  name {name}");
    }
    println!("  {}", c.status_message);
}

pub fn campaign(args: CampaignArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let (id, follow) = match args.command {
        CampaignCommand::Start {
            parent,
            batch_size,
            total,
            id,
            pattern,
            rows_per_part,
            max_failed,
            name,
            external_ref,
            follow,
        } => {
            let parent = std::fs::canonicalize(&parent).with_context(|| format!("resolving {}", parent.display()))?;
            let mut body = json!({"parent": parent, "batch_size": batch_size, "total_children": total,
                "campaign_id": id, "pattern": pattern, "max_failed_children": max_failed, "settings": {},
                "name": name, "external_ref": external_ref});
            if let Some(r) = rows_per_part {
                body["settings"]["batch_size"] = json!(r);
            }
            let c = client.ok("POST", "/v1/campaigns", Some(&body))?;
            (c["campaign_id"].as_str().unwrap_or("").to_owned(), follow)
        }
        CampaignCommand::Status { id, follow } => (id, follow),
        CampaignCommand::Stop { id } => (
            client.ok("POST", &format!("/v1/campaigns/{id}/stop"), Some(&json!({})))?["campaign_id"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            false,
        ),
        CampaignCommand::Resume { id } => (
            client.ok("POST", &format!("/v1/campaigns/{id}/resume"), Some(&json!({})))?["campaign_id"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            false,
        ),
        CampaignCommand::RetryFailed { id } => (
            client.ok("POST", &format!("/v1/campaigns/{id}/retry-failed"), Some(&json!({})))?["campaign_id"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            false,
        ),
        CampaignCommand::List => {
            let list = client.ok("GET", "/v1/campaigns", None)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let all: Vec<CampaignView> =
                    serde_json::from_value(list["campaigns"].clone()).context("reading the daemon's campaign list")?;
                if all.is_empty() {
                    println!("no campaigns");
                }
                all.iter().for_each(print_campaign);
            }
            return Ok(());
        }
    };
    crate::signals::install_interrupt_handler();
    loop {
        let c = client.ok("GET", &format!("/v1/campaigns/{id}"), None)?;
        if args.json {
            println!("{}", serde_json::to_string(&c)?);
        } else {
            print_campaign(&campaign_view(&c)?);
        }
        let ended = matches!(c["status"].as_str(), Some("COMPLETED" | "STOPPED" | "FAILED"));
        if !follow || ended {
            if c["status"] == "FAILED" {
                anyhow::bail!("campaign {id} failed: {}", c["error"].as_str().unwrap_or("unknown error"));
            }
            return Ok(());
        }
        for _ in 0..10 {
            if crate::signals::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
                println!("(stopped following; the campaign goes on in the daemon)");
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
