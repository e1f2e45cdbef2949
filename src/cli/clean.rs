//! `batchd clean`: prune finished jobs now (or count what would go).

use clap::Args;
use serde_json::json;

use super::client::Client;
use super::serve::DaemonArgs;

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Prune jobs that finished more than this many days ago (default: the
    /// daemon's retention.keep_days; 0 prunes every finished job).
    #[arg(long, value_name = "DAYS")]
    pub older_than_days: Option<f64>,
    /// Also delete the pruned jobs' part files.
    #[arg(long)]
    pub delete_parts: bool,
    /// Only count what would be pruned.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Prunes finished jobs (and their events) through the daemon.
pub fn clean(args: CleanArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let mut body = json!({"dry_run": args.dry_run});
    if let Some(d) = args.older_than_days {
        body["older_than_days"] = json!(d);
    }
    if args.delete_parts {
        body["delete_parts"] = json!(true);
    }
    let r = client.ok("POST", "/v1/clean", Some(&body))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if args.dry_run {
        println!(
            "{} finished job(s) ended before {} and would be pruned",
            r["jobs"],
            r["cutoff"].as_str().unwrap_or("")
        );
    } else {
        println!(
            "pruned {} job(s), {} event(s), {} schedule fire(s); {} part file(s) deleted (cutoff {})",
            r["jobs"],
            r["events"],
            r["schedule_fires"],
            r["part_files"],
            r["cutoff"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
