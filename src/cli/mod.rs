//! The command line: one file per subcommand. `run` is what `main` calls; it
//! returns errors for `main` to print once and map to an exit code.

mod campaign;
mod clean;
mod client;
mod drafts;
mod fetch;
mod jobs;
mod queue;
mod schedules;
mod serve;
mod split;
mod submit;

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
    Submit(submit::SubmitArgs),
    /// Show one job (with its parts), or the most recent jobs.
    Status(jobs::StatusArgs),
    /// List jobs.
    Jobs(jobs::JobsArgs),
    /// Cancel a job; running tasks stop at the next entry.
    Cancel(jobs::JobArgs),
    /// Run a FAILED or CANCELLED job again (as itself, or with --new-job as a new job).
    Retry(jobs::RetryArgs),
    /// Add sources to a draft job (made with `batchd submit --draft`).
    Add(drafts::AddArgs),
    /// Queue a draft job.
    SubmitDraft(drafts::SubmitDraftArgs),
    /// Follow a job until it ends, with a live progress bar.
    Follow(jobs::JobArgs),
    /// Download a job's finished parts over the API, each checked by its SHA-256.
    Fetch(fetch::FetchArgs),
    /// List cron schedules with their next and last fire, or run one now (--run NAME).
    Schedules(schedules::SchedulesArgs),
    /// Sequential, resumable campaigns over a parent collection: start, status, stop, resume, list.
    Campaign(campaign::CampaignArgs),
    /// Prune finished jobs older than the retention age (or --older-than-days).
    Clean(clean::CleanArgs),
    /// Pause the queue: no task is claimed until `batchd resume`; running tasks finish.
    Pause(queue::PauseArgs),
    /// Resume a paused queue.
    Resume(queue::ResumeArgs),
    /// A worker process of the daemon (started by `serve`; speaks on stdin/stdout).
    #[command(hide = true)]
    Worker,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    // A command's output may be piped into `head`; the daemon keeps Rust's
    // default (SIGPIPE ignored) so a client hanging up cannot kill it.
    if !matches!(cli.command, Command::Serve(_)) {
        crate::signals::default_sigpipe();
    }
    match cli.command {
        Command::Split(args) => split::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::CheckConfig(args) => serve::check_config(args),
        Command::Submit(args) => submit::submit(args),
        Command::Status(args) => jobs::status(args),
        Command::Jobs(args) => jobs::jobs(args),
        Command::Cancel(args) => jobs::cancel(args),
        Command::Retry(args) => jobs::retry(args),
        Command::Add(args) => drafts::add(args),
        Command::SubmitDraft(args) => drafts::submit_draft(args),
        Command::Follow(args) => jobs::follow(args),
        Command::Fetch(args) => fetch::fetch(args),
        Command::Schedules(args) => schedules::schedules(args),
        Command::Campaign(args) => campaign::campaign(args),
        Command::Clean(args) => clean::clean(args),
        Command::Pause(args) => queue::pause(args),
        Command::Resume(args) => queue::resume(args),
        Command::Worker => crate::engine::worker::main(),
    }
}
