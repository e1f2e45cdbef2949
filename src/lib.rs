//! batchd turns large deliveries of files into small, resumable, trackable batches.
//!
//! # Layout
//!
//! - [`split`]: the splitting engine, a library that knows nothing of the
//!   daemon — source readers (ZIP, TAR, TAR.GZ, directories), the manifest, the
//!   planner and the part writer.
//! - [`store`]: the SQLite state — schema, migrations, the writer thread and
//!   read pool, `StoreError`; `jobs` and `parts` are the only writers of the
//!   jobs, tasks and parts tables, `views` builds what the API shows (typed
//!   `PartView`), `model` holds the lifecycle words (`JobStatus`, `TaskKind`,
//!   `PartState`), `queue` the fair claim and the pause switch, `retry`
//!   (a job run again), `delivery` (a part in the bucket), `webhooks` (the
//!   outbox), `watch_files`, `schedules` and `campaigns` (the
//!   triggers' and the campaign runner's tables), plus `counters` and
//!   `retention`. All SQL is here; it imports no caller.
//! - [`view`]: what a job looks like to people and programs (`JobView`: rate,
//!   ETA, health, the status message), made from the store's facts.
//! - [`engine`]: workers that claim and run PLAN/PACK/HOOK/FINISH tasks;
//!   PLAN and PACK run `engine::exec` in worker processes (`pool`, `worker`)
//!   or on the engine's threads; `space` holds tasks back while disk is short,
//!   `supervise` enforces timeouts and feeds systemd.
//! - [`campaign`]: the sequential, resumable campaign runner (lists the
//!   collection, drives `store::campaigns`).
//! - [`hooks`]: site programs run after each part and each job.
//! - [`delivery`]: what leaves the machine — parts uploaded to
//!   `[delivery.s3]` (run by HOOK tasks) and signed webhooks from a durable
//!   outbox (`store::webhooks`, a dispatcher thread); [`objects`]: `s3://`
//!   sources (checked, prefixes expanded, fetched to the spool); [`s3`]: the
//!   small blocking S3 client both use (a leaf).
//! - [`http`]: the JSON API — the server, one route table, token auth, one
//!   file per resource; [`daemon`] ties store, engine and API together.
//! - [`triggers`]: watched inboxes (with filesystem events as a wake-up hint)
//!   and cron schedules that turn files into jobs.
//! - [`config`]: the TOML configuration with embedded defaults.
//! - [`cli`]: the command line, one file per subcommand.
//! - [`error`]: the error type with stable codes shared by every interface.
//! - [`logging`], [`sdnotify`], [`failpoint`]: logs, systemd notifications,
//!   crash points for tests (`--features failpoints`).
//!
//! Leaf modules, used everywhere and depending on nothing of ours (`fsx` on the
//! error type only): [`text`] (numbers and durations for people), [`clock`]
//! (times as stored and shown), [`ids`] (job ids, random bits), [`fsx`] (file
//! hashes, directory fsync), [`glob`] (file-name globs, `regex_filter` and
//! `max_files`), [`signals`] (the
//! event bell, stop requests, process signals), [`mem`] (free heap returned to
//! the system). Apart from `split`'s readers
//! and their shared entry type, no two modules import each other.

pub mod campaign;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod fsx;
pub mod glob;
pub mod hooks;
pub mod http;
pub mod ids;
pub mod logging;
pub mod mem;
pub mod objects;
pub mod s3;
pub mod sdnotify;
pub mod signals;
pub mod split;
pub mod store;
pub mod text;
pub mod triggers;
pub mod view;

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
