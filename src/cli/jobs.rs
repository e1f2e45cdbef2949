//! `batchd status`, `jobs`, `cancel`, `retry` and `follow`: one job or the
//! latest, a list, a cancel, a retry, and a live progress bar until a job ends.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use super::client::Client;
use super::serve::DaemonArgs;
use crate::store::model::JobStatus;
use crate::store::views::PartView;
use crate::view::JobView;

#[derive(Debug, Args)]
pub struct JobArgs {
    pub job: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A job id; without one, the most recent jobs.
    pub job: Option<String>,
    /// Also print the job's history: every state change, retry, recovery
    /// after a crash and hook run.
    #[arg(long, requires = "job")]
    pub history: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let Some(id) = args.job else {
        return jobs(JobsArgs {
            status: None,
            limit: 20,
            json: args.json,
            daemon: args.daemon,
        });
    };
    let mut job = client.ok("GET", &format!("/v1/jobs/{id}"), None)?;
    let history = if args.history { Some(history(&client, &id)?) } else { None };
    if args.json {
        if let Some(h) = &history {
            job["history"] = serde_json::to_value(h)?;
        }
        println!("{}", serde_json::to_string_pretty(&job)?);
        return Ok(());
    }
    print_job(&job_view(job)?);
    let mut parts = client.ok("GET", &format!("/v1/jobs/{id}/parts"), None)?;
    let parts: Vec<PartView> = serde_json::from_value(parts["parts"].take()).context("reading the daemon's list of parts")?;
    for p in parts {
        println!("  part {:>4}  {:>7} rows  {:<7}  {}", p.n, p.rows, p.state.as_str(), p.path);
    }
    if let Some(h) = history {
        println!("history");
        for e in h {
            let data = if e.data.as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else {
                e.data.to_string()
            };
            println!("  {}  {:<24} {data}", e.at, e.kind);
        }
    }
    Ok(())
}

/// Every event of a job, oldest first, page by page.
fn history(client: &Client, id: &str) -> anyhow::Result<Vec<crate::view::EventView>> {
    let (mut all, mut after) = (Vec::new(), 0);
    loop {
        let mut page = client.ok("GET", &format!("/v1/jobs/{id}/events?after={after}"), None)?;
        let events: Vec<crate::view::EventView> = serde_json::from_value(page["events"].take()).context("reading the job's history")?;
        let Some(last) = events.last() else { break };
        after = last.id;
        all.extend(events);
    }
    Ok(all)
}

/// The daemon's answer as a typed job view.
fn job_view(v: Value) -> anyhow::Result<JobView> {
    serde_json::from_value(v).context("reading the daemon's job view (is the daemon a different batchd version?)")
}

fn print_job(job: &JobView) {
    println!("job      {}", job.id);
    if let Some(n) = &job.about.name {
        println!("name     {n}");
    }
    if let Some(r) = &job.about.external_ref {
        println!("ref      {r}");
    }
    for (k, v) in &job.about.labels {
        println!("label    {k}={v}");
    }
    println!("status   {} ({})", job.status, job.health);
    println!("message  {}", job.status_message);
    for s in &job.sources {
        println!("source   {s}");
    }
    println!("parts in {}", job.out_dir);
    for e in &job.errors {
        println!("error    {} {}", e.code.as_str().unwrap_or(""), e.message.as_str().unwrap_or(""));
    }
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs with this status (QUEUED, PROCESSING, COMPLETED, …).
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

pub fn jobs(args: JobsArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let mut path = format!("/v1/jobs?limit={}", args.limit);
    if let Some(s) = &args.status {
        path.push_str(&format!("&status={s}"));
    }
    let list = client.ok("GET", &path, None)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let jobs: Vec<JobView> = serde_json::from_value(list["jobs"].clone()).context("reading the daemon's job list")?;
    if jobs.is_empty() {
        println!("no jobs");
    }
    for j in jobs {
        println!(
            "{}  {:<10}  {:>5.1}%  {}",
            j.id,
            j.status.as_str(),
            j.progress.percent,
            j.status_message
        );
    }
    Ok(())
}

pub fn cancel(args: JobArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let job = client.ok("POST", &format!("/v1/jobs/{}/cancel", args.job), Some(&json!({})))?;
    print_brief(&job, args.json)
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// A FAILED or CANCELLED job.
    pub job: String,
    /// Run it as a new job that links back (`retry_of`), leaving this one as it ended.
    #[arg(long)]
    pub new_job: bool,
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// Runs a FAILED or CANCELLED job again: as itself (finished parts that are
/// still whole are kept), or with `--new-job` as a new job.
pub fn retry(args: RetryArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.follow.daemon)?;
    let job = client.ok(
        "POST",
        &format!("/v1/jobs/{}/retry", args.job),
        Some(&json!({"new_job": args.new_job})),
    )?;
    args.follow.finish(&client, &job)
}

/// `--wait`, `--json` and which daemon: what the commands that queue a job take.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// Follow the job until it ends, with a live progress bar.
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

impl FollowArgs {
    /// With `--wait`, follows `job` until it ends; else prints its line (or
    /// its view with `--json`).
    pub(super) fn finish(&self, client: &Client, job: &Value) -> anyhow::Result<()> {
        if self.wait {
            return follow_job(client, job["id"].as_str().unwrap_or_default(), self.json);
        }
        print_brief(job, self.json)
    }
}

/// One line for a job a command changed (or the whole view with `--json`).
pub(super) fn print_brief(job: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(job)?);
    } else {
        println!(
            "{}  {}  {}",
            job["id"].as_str().unwrap_or(""),
            job["status"].as_str().unwrap_or(""),
            job["status_message"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub fn follow(args: JobArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    follow_job(&client, &args.job, args.json)
}

/// Shows a live bar and status message until the job ends; the exit status says
/// how it ended (0 completed, 3 failed on bad input, 1 otherwise).
pub(super) fn follow_job(client: &Client, id: &str, json_out: bool) -> anyhow::Result<()> {
    let bar = (!json_out && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(1000);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b
    });
    let mut last_message = String::new();
    // The raw answer is kept for --json, which prints what the daemon sent.
    let (raw, job) = loop {
        let raw = client.ok("GET", &format!("/v1/jobs/{id}"), None)?;
        let job = job_view(raw.clone())?;
        let msg = job.status_message.clone();
        match &bar {
            Some(b) => {
                b.set_position((job.status_detail.percent_complete * 1000.0) as u64);
                b.set_message(msg.clone());
            }
            None if !json_out && msg != last_message => eprintln!("{msg}"),
            None => {}
        }
        last_message = msg;
        if job.status.is_final() {
            break (raw, job);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else {
        print_job(&job);
    }
    let field = |k: &str| job.error.as_ref().and_then(|e| e[k].as_str()).map(str::to_owned);
    match job.status {
        JobStatus::Completed => Ok(()),
        JobStatus::Failed => Err(crate::Error::JobFailed {
            id: id.to_owned(),
            code: field("code").unwrap_or_else(|| "INTERNAL".to_owned()),
            message: field("message").unwrap_or_else(|| "unknown error".to_owned()),
        }
        .into()),
        _ => bail!("job {id} was cancelled"),
    }
}
