//! Configuration: TOML, every key with a default, unknown keys rejected, so an
//! edge machine runs on the embedded defaults with no file at all and a typo in a
//! file is an error that names the key instead of a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::split::{Compression, OnMissing};

mod remote;
pub use remote::{matches_event, secret, url_host, Delivery, DeliveryS3, Webhook, Webhooks, EVENT_TYPES, KEY_FIELDS, S3};

/// A century: beyond it a cutoff is before any job, and far enough beyond it
/// is not a date at all.
pub const MAX_KEEP_DAYS: f64 = 36_500.0;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Database, token, inbox and parts live here.
    pub data_dir: PathBuf,
    pub http: Http,
    pub engine: Engine,
    /// Job settings used unless a request says otherwise.
    pub defaults: JobDefaults,
    /// Watched drop directories. With none configured, `DATA_DIR/inbox` is watched.
    #[serde(default)]
    pub watch: Vec<Watch>,
    /// Cron schedules that sweep a directory for files not ingested yet.
    #[serde(default)]
    pub schedule: Vec<Schedule>,
    /// Programs run after each part and each finished job (e.g. an uploader).
    pub hooks: Hooks,
    /// How long finished jobs are kept.
    pub retention: Retention,
    /// The S3-compatible endpoint sources are read from and parts delivered to.
    pub s3: S3,
    /// Where published parts are delivered (`[delivery.s3]`).
    pub delivery: Delivery,
    /// What every webhook delivery shares; the hosts a job's callback may name.
    pub webhooks: Webhooks,
    /// Webhook subscriptions: signed POSTs of job, part and campaign events.
    #[serde(default)]
    pub webhook: Vec<Webhook>,
}

/// Commands (argv, no shell) run with the facts in `BATCHD_*` environment
/// variables and as JSON on stdin. A hook that exits non-zero, or runs past
/// `timeout_seconds`, is retried with backoff; after `max_attempts` the job is
/// FAILED `HOOK_FAILED` and its parts are kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Hooks {
    /// Run once per part, as soon as the part is published.
    pub on_part: Vec<String>,
    /// Run once per job when it ends (COMPLETED after its part hooks, FAILED, or CANCELLED).
    pub on_job: Vec<String>,
    pub timeout_seconds: f64,
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles with each further one.
    pub backoff_seconds: f64,
    /// Part hooks run at once, on their own threads, so delivering parts
    /// overlaps packing the rest.
    pub workers: usize,
    /// What happens to the parts a cancelled job had already published:
    /// `deliver` (their on_part hooks still run) or `drop`.
    pub on_cancel: OnCancel,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnCancel {
    #[default]
    Deliver,
    Drop,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            on_part: Vec::new(),
            on_job: Vec::new(),
            timeout_seconds: 300.0,
            max_attempts: 3,
            backoff_seconds: 5.0,
            workers: 2,
            on_cancel: OnCancel::Deliver,
        }
    }
}

/// Finished jobs (COMPLETED, FAILED, CANCELLED) older than `keep_days` are
/// removed from the database with their tasks, parts rows and events, once an
/// hour and by `batchd clean`. Part files stay on disk unless `delete_parts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// 0 keeps every job forever.
    pub keep_days: f64,
    pub delete_parts: bool,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_days: 30.0,
            delete_parts: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    /// 5 fields (minute hour day month weekday) or 6 (seconds first).
    pub cron: String,
    /// IANA name; default: `$TZ`, else the system's `/etc/localtime`, else UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    pub dir: PathBuf,
    #[serde(default = "default_pattern")]
    pub pattern: String,
    /// What happens to fire times missed while the daemon was down.
    #[serde(default)]
    pub misfire: Misfire,
    /// With `misfire = "once"`: a missed fire older than this is not caught up.
    #[serde(default = "default_grace")]
    pub grace_seconds: u64,
    #[serde(default)]
    pub output_dir: Option<PathBuf>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub max_part_bytes: Option<u64>,
    #[serde(default)]
    pub file_column: Option<String>,
    /// A regular expression the file's full path must match (besides `pattern`).
    #[serde(default)]
    pub regex_filter: Option<String>,
    /// At most this many files taken at once (per scan of a watch, per fire
    /// of a schedule), the first by name; the rest wait for the next.
    #[serde(default)]
    pub max_files: Option<usize>,
    /// Priority of the jobs this schedule queues (higher runs first).
    #[serde(default)]
    pub priority: i64,
}

/// What a schedule does with fire times that passed while the daemon was down.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Misfire {
    /// Missed fires are recorded as missed and not run.
    Skip,
    /// The latest missed fire runs once, if it is within `grace_seconds`.
    #[default]
    Once,
    /// Every missed fire runs, oldest first.
    All,
}

fn default_grace() -> u64 {
    86_400
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    pub name: String,
    pub dir: PathBuf,
    /// Glob on the file name; `{a,b}` alternatives, `*` and `?`.
    #[serde(default = "default_pattern")]
    pub pattern: String,
    /// A file is taken once its size, mtime and inode have not changed for this long.
    #[serde(default = "default_settle")]
    pub settle_seconds: f64,
    /// Take a file only once `NAME.done` exists beside it (the writer's signal
    /// that it is complete; no settle wait), and remove the marker after.
    #[serde(default)]
    pub marker: bool,
    /// Also take directories dropped into the inbox (whose name matches
    /// `directory_pattern`), each as one directory source. A directory is ready
    /// when nothing in its tree has changed for the settle time (or, with
    /// `marker`, when `NAME.done` appears). Off by default: many tools create a
    /// directory first and fill it slowly.
    #[serde(default)]
    pub directories: bool,
    /// Glob on a dropped directory's name; only with `directories = true`.
    #[serde(default = "default_directory_pattern")]
    pub directory_pattern: String,
    /// Where parts go; default `DATA_DIR/parts/<job id>/`.
    #[serde(default)]
    pub output_dir: Option<PathBuf>,
    /// What happens to a source whose job completed: move (to `.batchd/done/`), delete, keep (stays in `.batchd/processing/`).
    #[serde(default)]
    pub on_success: OnSuccess,
    /// Content already taken from this inbox (same SHA-256, job not failed)
    /// dropped again: skip (to `.batchd/duplicates/`) or ingest again.
    #[serde(default)]
    pub duplicates: Duplicates,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub max_part_bytes: Option<u64>,
    #[serde(default)]
    pub file_column: Option<String>,
    /// A regular expression the file's full path must match (besides `pattern`).
    #[serde(default)]
    pub regex_filter: Option<String>,
    /// At most this many files taken at once (per scan of a watch, per fire
    /// of a schedule), the first by name; the rest wait for the next.
    #[serde(default)]
    pub max_files: Option<usize>,
    /// Priority of the jobs this watch queues (higher runs first).
    #[serde(default)]
    pub priority: i64,
    /// Use filesystem events as a wake-up hint (the scan stays the truth).
    /// Off: the inbox is scanned every 0.5 s, events or not.
    #[serde(default = "yes")]
    pub events: bool,
}

fn yes() -> bool {
    true
}

/// A trigger's `regex_filter` and `max_files`, checked; the error names the key.
fn selection(regex_filter: Option<&str>, max_files: Option<usize>) -> anyhow::Result<crate::glob::Selection> {
    if max_files == Some(0) {
        anyhow::bail!("invalid value for `max_files`: must be at least 1");
    }
    crate::glob::Selection::new(regex_filter, max_files).map_err(|e| anyhow::anyhow!("invalid value for `regex_filter`: {e}"))
}

impl Schedule {
    /// Its `regex_filter` and `max_files`, checked.
    pub fn selection(&self) -> anyhow::Result<crate::glob::Selection> {
        selection(self.regex_filter.as_deref(), self.max_files)
    }

    /// A schedule firing on `cron` (in UTC) over `dir`, every other key at its default.
    pub fn new(name: &str, cron: &str, dir: PathBuf) -> Schedule {
        Schedule {
            name: name.into(),
            cron: cron.into(),
            timezone: Some("UTC".into()),
            dir,
            pattern: default_pattern(),
            misfire: Misfire::default(),
            grace_seconds: default_grace(),
            output_dir: None,
            batch_size: None,
            max_part_bytes: None,
            file_column: None,
            regex_filter: None,
            max_files: None,
            priority: 0,
        }
    }
}

impl Watch {
    /// Its `regex_filter` and `max_files`, checked.
    pub fn selection(&self) -> anyhow::Result<crate::glob::Selection> {
        selection(self.regex_filter.as_deref(), self.max_files)
    }

    /// A watch on `dir` with every other key at its default.
    pub fn new(name: &str, dir: PathBuf) -> Watch {
        Watch {
            name: name.into(),
            dir,
            pattern: default_pattern(),
            settle_seconds: default_settle(),
            marker: false,
            directories: false,
            directory_pattern: default_directory_pattern(),
            output_dir: None,
            on_success: OnSuccess::default(),
            duplicates: Duplicates::default(),
            batch_size: None,
            max_part_bytes: None,
            file_column: None,
            regex_filter: None,
            max_files: None,
            priority: 0,
            events: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Duplicates {
    #[default]
    Skip,
    Ingest,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnSuccess {
    #[default]
    Move,
    Delete,
    Keep,
}

fn default_pattern() -> String {
    "*.{zip,tar,tar.gz,tgz}".into()
}

fn default_directory_pattern() -> String {
    "*".into()
}

fn default_settle() -> f64 {
    30.0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: SocketAddr,
    /// Sources submitted over the API must lie below one of these (after
    /// resolving symlinks). Empty means: the data directory only.
    pub allowed_roots: Vec<PathBuf>,
    /// Requests handled at once.
    pub workers: usize,
    pub max_body_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Engine {
    /// Tasks run at once (0: number of cores).
    pub workers: usize,
    /// Attempts for a task that fails with a transient error (I/O, disk full).
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_seconds: u64,
    /// A task running longer than this is stopped and retried.
    pub task_timeout_seconds: u64,
    /// A processing job without progress for this long is reported unhealthy.
    pub stall_seconds: u64,
    /// Where PLAN and PACK run: in worker processes (a panic, an abort or a
    /// runaway allocation ends that worker, not the daemon) or on the
    /// daemon's own threads.
    pub isolation: Isolation,
    /// A worker process is replaced after this many tasks (0: never), so a
    /// slow leak or a fragmented heap cannot build up.
    pub max_tasks_per_worker: u32,
    /// Hard cap on a worker's data segment (RLIMIT_DATA), MiB; 0 for none.
    pub worker_memory_mib: u64,
    /// Below this many free bytes where a job writes its parts, PLAN and PACK
    /// tasks wait (checked again every few seconds) instead of failing the
    /// job with DISK_FULL; 0 turns the check off.
    pub min_free_bytes: u64,
    /// The program started as a worker (with the argument `worker`): by
    /// default this daemon's own binary. Only for a daemon embedded in
    /// another program (the test suite), which must name a batchd binary.
    pub worker_program: Option<PathBuf>,
}

/// Where the engine runs tasks that read sources.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    #[default]
    Process,
    Thread,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobDefaults {
    pub batch_size: usize,
    /// A part closes before its files would pass this many bytes; None for no cap.
    pub max_part_bytes: Option<u64>,
    pub compression: Compression,
    pub on_missing_file: OnMissing,
    pub manifest: String,
    pub file_column: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // systemd's StateDirectory= sets STATE_DIRECTORY (/var/lib/batchd), so the
            // packaged unit needs no --data-dir and the config file keeps the defaults.
            data_dir: std::env::var_os("STATE_DIRECTORY")
                .filter(|d| !d.is_empty())
                .map_or_else(|| PathBuf::from("./batchd-data"), PathBuf::from),
            http: Http::default(),
            engine: Engine::default(),
            defaults: JobDefaults::default(),
            watch: Vec::new(),
            schedule: Vec::new(),
            hooks: Hooks::default(),
            retention: Retention::default(),
            s3: S3::default(),
            delivery: Delivery::default(),
            webhooks: Webhooks::default(),
            webhook: Vec::new(),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "127.0.0.1:8787".parse().expect("valid address"),
            allowed_roots: Vec::new(),
            workers: 8,
            max_body_bytes: 1 << 20,
        }
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            workers: 0,
            max_attempts: 5,
            backoff_base_ms: 500,
            backoff_max_seconds: 300,
            task_timeout_seconds: 3600,
            stall_seconds: 600,
            isolation: Isolation::Process,
            max_tasks_per_worker: 100,
            worker_memory_mib: 4096,
            worker_program: None,
            min_free_bytes: 256 << 20,
        }
    }
}

impl Default for JobDefaults {
    fn default() -> Self {
        JobDefaults {
            batch_size: crate::split::DEFAULT_BATCH_SIZE,
            max_part_bytes: None,
            compression: Compression::Stored,
            on_missing_file: OnMissing::Fail,
            manifest: crate::split::DEFAULT_MANIFEST.into(),
            file_column: None,
        }
    }
}

/// Job settings a request or a trigger may set; what it leaves unset comes
/// from `[defaults]` ([`JobDefaults::resolve`], the one place that fills them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsOverride {
    pub batch_size: Option<usize>,
    pub max_part_bytes: Option<u64>,
    pub compression: Option<Compression>,
    pub on_missing_file: Option<OnMissing>,
    pub manifest: Option<String>,
    pub file_column: Option<String>,
}

impl JobDefaults {
    /// A job's settings: what `o` sets, these defaults for the rest.
    pub fn resolve(&self, o: SettingsOverride) -> crate::store::jobs::Settings {
        crate::store::jobs::Settings {
            batch_size: o.batch_size.unwrap_or(self.batch_size),
            max_part_bytes: o.max_part_bytes.or(self.max_part_bytes),
            compression: o.compression.unwrap_or(self.compression),
            on_missing_file: o.on_missing_file.unwrap_or(self.on_missing_file),
            manifest: o.manifest.unwrap_or_else(|| self.manifest.clone()),
            file_column: o.file_column.or_else(|| self.file_column.clone()),
            callback_url: None,
        }
    }

    /// Job settings for a trigger: its own batch size, byte cap and file
    /// column where set, these defaults for the rest.
    pub fn settings(
        &self,
        batch_size: Option<usize>,
        max_part_bytes: Option<u64>,
        file_column: Option<&String>,
    ) -> crate::store::jobs::Settings {
        self.resolve(SettingsOverride {
            batch_size,
            max_part_bytes,
            file_column: file_column.cloned(),
            ..Default::default()
        })
    }
}

impl Config {
    /// Reads and validates a TOML file. Errors name the file, the key and the line.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let bad = |key: &str, why: &str| Err(anyhow::anyhow!("invalid value for `{key}`: {why}"));
        if self.defaults.batch_size == 0 {
            return bad("defaults.batch_size", "must be at least 1");
        }
        if self.defaults.max_part_bytes == Some(0) {
            return bad("defaults.max_part_bytes", "must be at least 1 (leave it out for no cap)");
        }
        if self.http.workers == 0 {
            return bad("http.workers", "must be at least 1");
        }
        if self.hooks.workers == 0 {
            return bad("hooks.workers", "must be at least 1");
        }
        if self.engine.max_attempts == 0 {
            return bad("engine.max_attempts", "must be at least 1");
        }
        let mut names = std::collections::HashSet::new();
        for w in &self.watch {
            if !names.insert(&w.name) {
                return bad("watch.name", &format!("{:?} is used twice", w.name));
            }
            if w.settle_seconds.is_nan() || w.settle_seconds < 0.0 {
                return bad("watch.settle_seconds", "must be 0 or more");
            }
            if w.batch_size == Some(0) {
                return bad("watch.batch_size", "must be at least 1");
            }
            if w.max_part_bytes == Some(0) {
                return bad("watch.max_part_bytes", "must be at least 1 (leave it out for no cap)");
            }
            if let Err(e) = w.selection() {
                return Err(anyhow::anyhow!("watch {:?}: {e}", w.name));
            }
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.schedule {
            if !names.insert(&s.name) {
                return bad("schedule.name", &format!("{:?} is used twice", s.name));
            }
            if let Err(e) = crate::triggers::cron::Rule::new(&s.cron, s.timezone.as_deref()) {
                return Err(anyhow::anyhow!("schedule {:?}: {e}", s.name));
            }
            if s.batch_size == Some(0) {
                return bad("schedule.batch_size", "must be at least 1");
            }
            if s.max_part_bytes == Some(0) {
                return bad("schedule.max_part_bytes", "must be at least 1 (leave it out for no cap)");
            }
            if let Err(e) = s.selection() {
                return Err(anyhow::anyhow!("schedule {:?}: {e}", s.name));
            }
        }
        if self.http.max_body_bytes < 1024 {
            return bad("http.max_body_bytes", "must be at least 1024");
        }
        if !(0.0..=MAX_KEEP_DAYS).contains(&self.retention.keep_days) {
            return bad("retention.keep_days", &format!("must be from 0 to {MAX_KEEP_DAYS}"));
        }
        remote::validate(&self.s3, &self.delivery, &self.webhooks, &self.webhook)
    }

    /// True when each published part gets a HOOK task: an `on_part` program
    /// to run or a bucket to deliver it to.
    pub fn parts_are_handed_on(&self) -> bool {
        !self.hooks.on_part.is_empty() || self.delivery.s3.is_some()
    }

    pub fn engine_workers(&self) -> usize {
        if self.engine.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.engine.workers
        }
    }

    /// The watched inboxes: as configured, or `DATA_DIR/inbox` on the defaults.
    pub fn watches(&self) -> Vec<Watch> {
        if !self.watch.is_empty() {
            return self.watch.clone();
        }
        vec![Watch::new("inbox", self.data_dir.join("inbox"))]
    }

    pub fn allowed_roots(&self) -> Vec<PathBuf> {
        if self.http.allowed_roots.is_empty() {
            vec![self.data_dir.clone()]
        } else {
            self.http.allowed_roots.clone()
        }
    }
}
