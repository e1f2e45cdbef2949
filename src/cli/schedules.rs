//! `batchd schedules`: each cron schedule with its next and last fire, or run one now.

use clap::Args;
use serde_json::{json, Value};

use super::client::Client;
use super::serve::DaemonArgs;

#[derive(Debug, Args)]
pub struct SchedulesArgs {
    /// Run this schedule now, outside its cron times.
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Lists schedules with their next and last fire, or runs one now.
pub fn schedules(args: SchedulesArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    if let Some(name) = &args.run {
        let fired = client.ok("POST", &format!("/v1/schedules/{name}/run"), Some(&json!({})))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&fired)?);
        } else {
            match fired["job_id"].as_str() {
                Some(job) => println!("{name}: queued job {job} with {} new file(s)", fired["files"]),
                None => println!("{name}: {} (no new files)", fired["result"].as_str().unwrap_or("")),
            }
        }
        return Ok(());
    }
    let list = client.ok("GET", "/v1/schedules", None)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let schedules = list["schedules"].as_array().cloned().unwrap_or_default();
    if schedules.is_empty() {
        println!("no schedules configured (add a [[schedule]] section to the config)");
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    for sc in schedules {
        let last = &sc["last_fire"];
        let result = if last.is_null() {
            "never fired".to_owned()
        } else {
            format!(
                "{} {}{}",
                s(&last["scheduled_at"]),
                s(&last["result"]),
                last["job_status"].as_str().map(|j| format!(" (job {j})")).unwrap_or_default()
            )
        };
        println!(
            "{:<16} {:<16} {:<18} next {}  last {}",
            s(&sc["name"]),
            s(&sc["cron"]),
            s(&sc["timezone"]),
            s(&sc["next_fire"]),
            result
        );
    }
    Ok(())
}
