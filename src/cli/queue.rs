//! `batchd pause` and `batchd resume`: the queue's pause switch. Paused, no
//! task is claimed; running tasks finish; watches and schedules still record
//! arrivals. Useful while a disk is swapped or an upstream is down.

use clap::Args;
use serde_json::json;

use super::client::Client;
use super::serve::DaemonArgs;
use crate::view::QueueView;

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Shown in /v1/queue, the dashboard and systemd's status line.
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

pub fn pause(args: PauseArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let body = json!({"reason": args.reason});
    let v = client.ok("POST", "/v1/queue/pause", Some(&body))?;
    show(v, args.json)
}

pub fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let v = client.ok("POST", "/v1/queue/resume", Some(&json!({})))?;
    show(v, args.json)
}

fn show(v: serde_json::Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let q: QueueView = serde_json::from_value(v)?;
    if let Some(w) = &q.waiting_for_space {
        println!("{}", w.message());
    }
    if q.paused {
        let why = q.reason.map(|r| format!(" ({r})")).unwrap_or_default();
        println!(
            "queue paused since {}{why}; {} task(s) still running will finish",
            q.since.unwrap_or_default(),
            q.running_tasks
        );
    } else {
        println!("queue running; {} task(s) running", q.running_tasks);
    }
    Ok(())
}
