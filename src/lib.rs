//! batchd turns large deliveries of files into small, resumable, trackable batches.
//!
//! # Layout
//!
//! - [`split`]: the splitting engine — source readers (ZIP, TAR, TAR.GZ,
//!   directories), the manifest, the planner and the part writer.
//! - [`store`]: the SQLite state (schema, writer thread, read pool, queries).
//! - [`engine`]: workers that claim and run PLAN/PACK/FINISH tasks.
//! - [`campaign`]: parent jobs and the sequential, resumable campaign runner.
//! - [`hooks`]: site programs run after each part and each job.
//! - [`http`]: the JSON API; [`daemon`] ties store, engine and API together.
//! - [`triggers`]: watched inboxes and cron schedules that turn files into jobs.
//! - [`logging`]: log format and destination (stdout for the daemon, journald-aware).
//! - [`sdnotify`]: systemd readiness, status and watchdog notifications.
//! - [`failpoint`]: crash points for tests (`--features failpoints`).
//! - [`config`]: the TOML configuration with embedded defaults.
//! - [`cli`]: the command line, one file per subcommand.
//! - [`error`]: the error type with stable codes shared by every interface.

pub mod campaign;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod hooks;
pub mod http;
pub mod logging;
pub mod sdnotify;
pub mod split;
pub mod store;
pub mod triggers;

pub use cli::{run, Cli};
pub use error::{Error, Result};

/// Documented process exit codes.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// An I/O or internal failure; retrying may help.
    pub const FAILURE: i32 = 1;
    /// The command line or configuration is wrong.
    pub const USAGE: i32 = 2;
    /// The source is bad (unsafe names, corrupt archive, manifest problems, …).
    pub const BAD_INPUT: i32 = 3;
    /// The output filesystem is full.
    pub const DISK_FULL: i32 = 4;
    /// Stopped by SIGINT/SIGTERM; finished parts are kept.
    pub const INTERRUPTED: i32 = 130;
}

/// Maps an error to its documented exit code.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    match err.downcast_ref::<Error>() {
        Some(Error::DiskFull { .. }) => exit::DISK_FULL,
        Some(Error::Cancelled) => exit::INTERRUPTED,
        Some(Error::InvalidArgument(_)) => exit::USAGE,
        Some(e) if e.is_bad_input() => exit::BAD_INPUT,
        _ => exit::FAILURE,
    }
}
