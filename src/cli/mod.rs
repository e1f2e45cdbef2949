//! The command line: one file per subcommand. `run` is what `main` calls; it
//! returns errors for `main` to print once and map to an exit code.

mod client;
mod serve;
mod split;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "batchd",
    version,
    about = "Turns large deliveries of files into small, resumable, trackable batches"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Split one archive or directory into part ZIPs by its CSV manifest (no daemon needed).
    Split(split::SplitArgs),
    /// Run the daemon: SQLite state, the engine and the JSON API.
    Serve(serve::ServeArgs),
    /// Validate a config file; exits non-zero naming the offending key.
    CheckConfig(serve::CheckConfigArgs),
    /// Submit sources to the running daemon as one job.
    Submit(client::SubmitArgs),
    /// Show one job (with its parts), or the most recent jobs.
    Status(client::StatusArgs),
    /// List jobs.
    Jobs(client::JobsArgs),
    /// Cancel a job; running tasks stop at the next entry.
    Cancel(client::JobArgs),
    /// Follow a job until it ends, with a live progress bar.
    Follow(client::JobArgs),
    /// List cron schedules with their next and last fire, or run one now (--run NAME).
    Schedules(client::SchedulesArgs),
    /// Sequential, resumable campaigns over a parent collection: start, status, stop, resume, list.
    Campaign(client::CampaignArgs),
    /// Prune finished jobs older than the retention age (or --older-than-days).
    Clean(client::CleanArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Split(args) => split::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::CheckConfig(args) => serve::check_config(args),
        Command::Submit(args) => client::submit(args),
        Command::Status(args) => client::status(args),
        Command::Jobs(args) => client::jobs(args),
        Command::Cancel(args) => client::cancel(args),
        Command::Follow(args) => client::follow(args),
        Command::Schedules(args) => client::schedules(args),
        Command::Campaign(args) => client::campaign(args),
        Command::Clean(args) => client::clean(args),
    }
}

/// 12345678 → "12,345,678".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units with one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Flips to true on SIGINT or SIGTERM; long-running commands poll it and stop at
/// a safe point instead of dying mid-write.
pub(crate) static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

pub(crate) fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}
