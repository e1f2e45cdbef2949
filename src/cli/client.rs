//! The CLI client of a running daemon: `submit`, `status`, `jobs`, `cancel`,
//! `follow`. It finds the daemon and its token through the data directory and says
//! how to start the daemon when none answers. HTTP is spoken over a plain
//! `TcpStream` (one request per connection) to keep the binary lean.

use std::io::{IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::serve::DaemonArgs;
use crate::split::{Compression, OnMissing};

pub struct Client {
    addr: SocketAddr,
    token: String,
    data_dir: PathBuf,
}

impl Client {
    pub fn connect(args: &DaemonArgs) -> anyhow::Result<Client> {
        let config = args.load()?;
        let data_dir = config.data_dir.clone();
        let addr = std::fs::read_to_string(crate::daemon::address_path(&data_dir))
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["listen"].as_str().and_then(|a| a.parse().ok()))
            .unwrap_or(config.http.listen);
        let token = std::fs::read_to_string(crate::daemon::token_path(&data_dir))
            .map(|t| t.trim().to_owned())
            .map_err(|_| {
                anyhow!(
                    "no token at {}: is the daemon running with this data dir? Start it with `batchd serve --data-dir {}`",
                    crate::daemon::token_path(&data_dir).display(),
                    data_dir.display()
                )
            })?;
        Ok(Client { addr, token, data_dir })
    }

    /// One request; returns the status and the JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(3)).map_err(|e| {
            anyhow!(
                "the daemon is not running at {} ({e}); start it with `batchd serve --data-dir {}`",
                self.addr,
                self.data_dir.display()
            )
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nX-Batchd-Trigger: cli\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        stream.write_all(req.as_bytes()).context("sending the request")?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).context("reading the response")?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| anyhow!("malformed response from the daemon"))?;
        let head = String::from_utf8_lossy(&raw[..split]);
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("malformed status line"))?;
        let chunked = head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
        let mut payload = raw[split + 4..].to_vec();
        if chunked {
            payload = dechunk(&payload);
        }
        let v = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// Like `call`, but a non-2xx answer becomes an error with the daemon's message.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, v) = self.call(method, path, body)?;
        if !(200..300).contains(&status) {
            let code = v["error"]["code"].as_str().unwrap_or("HTTP_ERROR");
            let msg = v["error"]["message"].as_str().unwrap_or("");
            bail!("{code}: {msg} (HTTP {status})");
        }
        Ok(v)
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || eol + 2 + size > b.len() {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Archives or directories to ingest (one job).
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
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
    /// Follow the job until it ends, with a live progress bar.
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

pub fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let sources: Vec<String> = args
        .sources
        .iter()
        .map(|s| {
            std::fs::canonicalize(s)
                .map(|p| p.to_string_lossy().into_owned())
                .with_context(|| format!("source {}", s.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut body = json!({"sources": sources});
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
    let job = client.ok("POST", "/v1/jobs", Some(&body))?;
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    if args.wait {
        if !args.json {
            eprintln!("job {id} submitted");
        }
        return follow_job(&client, &id, args.json);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        println!(
            "{id}  {}  {}",
            job["status"].as_str().unwrap_or(""),
            job["status_message"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

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
    let job = client.ok("GET", &format!("/v1/jobs/{id}"), None)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
        return Ok(());
    }
    print_job(&job);
    let parts = client.ok("GET", &format!("/v1/jobs/{id}/parts"), None)?;
    for p in parts["parts"].as_array().into_iter().flatten() {
        println!(
            "  part {:>4}  {:>7} rows  {:<7}  {}",
            p["n"].as_i64().unwrap_or(0),
            p["rows"].as_i64().unwrap_or(0),
            p["state"].as_str().unwrap_or(""),
            p["path"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

fn print_job(job: &Value) {
    println!("job      {}", job["id"].as_str().unwrap_or(""));
    println!(
        "status   {} ({})",
        job["status"].as_str().unwrap_or(""),
        job["health"].as_str().unwrap_or("")
    );
    println!("message  {}", job["status_message"].as_str().unwrap_or(""));
    for s in job["sources"].as_array().into_iter().flatten() {
        println!("source   {}", s.as_str().unwrap_or(""));
    }
    println!("parts in {}", job["out_dir"].as_str().unwrap_or(""));
    for e in job["errors"].as_array().into_iter().flatten() {
        println!(
            "error    {} {}",
            e["code"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        );
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
    let jobs = list["jobs"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        println!("no jobs");
    }
    for j in jobs {
        println!(
            "{}  {:<10}  {:>5.1}%  {}",
            j["id"].as_str().unwrap_or(""),
            j["status"].as_str().unwrap_or(""),
            j["progress"]["percent"].as_f64().unwrap_or(0.0),
            j["status_message"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub fn cancel(args: JobArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let job = client.ok("POST", &format!("/v1/jobs/{}/cancel", args.job), Some(&json!({})))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        println!("{}  {}", job["id"].as_str().unwrap_or(""), job["status"].as_str().unwrap_or(""));
    }
    Ok(())
}

pub fn follow(args: JobArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    follow_job(&client, &args.job, args.json)
}

/// Shows a live bar and status message until the job ends; the exit status says
/// how it ended (0 completed, 3 failed on bad input, 1 otherwise).
fn follow_job(client: &Client, id: &str, json_out: bool) -> anyhow::Result<()> {
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
    let job = loop {
        let job = client.ok("GET", &format!("/v1/jobs/{id}"), None)?;
        let msg = job["status_message"].as_str().unwrap_or("").to_owned();
        match &bar {
            Some(b) => {
                b.set_position((job["status_detail"]["percent_complete"].as_f64().unwrap_or(0.0) * 1000.0) as u64);
                b.set_message(msg.clone());
            }
            None if !json_out && msg != last_message => eprintln!("{msg}"),
            None => {}
        }
        last_message = msg;
        if matches!(job["status"].as_str(), Some("COMPLETED" | "FAILED" | "CANCELLED")) {
            break job;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        print_job(&job);
    }
    match job["status"].as_str() {
        Some("COMPLETED") => Ok(()),
        Some("FAILED") => Err(crate::Error::JobFailed {
            id: id.to_owned(),
            code: job["error"]["code"].as_str().unwrap_or("INTERNAL").to_owned(),
            message: job["error"]["message"].as_str().unwrap_or("unknown error").to_owned(),
        }
        .into()),
        _ => bail!("job {id} was cancelled"),
    }
}

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

fn print_campaign(c: &Value) {
    let ch = &c["children"];
    println!(
        "{}  {:<9} batches {}  children: {} succeeded, {} failed, {} running, {} skipped  next_start_position {}",
        c["campaign_id"].as_str().unwrap_or(""),
        c["status"].as_str().unwrap_or(""),
        c["parent_batches"],
        ch["succeeded"],
        ch["failed"],
        ch["running"],
        ch["skipped"],
        c["next_start_position"]
    );
    println!("  {}", c["status_message"].as_str().unwrap_or(""));
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
            follow,
        } => {
            let parent = std::fs::canonicalize(&parent).with_context(|| format!("resolving {}", parent.display()))?;
            let mut body = json!({"parent": parent, "batch_size": batch_size, "total_children": total,
                "campaign_id": id, "pattern": pattern, "max_failed_children": max_failed, "settings": {}});
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
        CampaignCommand::List => {
            let list = client.ok("GET", "/v1/campaigns", None)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let all = list["campaigns"].as_array().cloned().unwrap_or_default();
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
            print_campaign(&c);
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
