//! The splitter: turns one source (ZIP, TAR, TAR.GZ or directory) into part ZIPs of
//! at most `batch_size` manifest rows each. This module owns the order of things —
//! index, plan, keep verified parts from an earlier run, pack the rest, and on
//! failure leave no part behind — so the CLI and the daemon share one behaviour.
//!
//! Guarantees: parts appear under their final name only when complete (temp name,
//! fsync, rename, directory fsync); identical input and settings give
//! byte-identical parts; nothing is written outside the output directory.

mod handoff;
mod lookup;
pub mod manifest;
pub mod names;
mod pack;
pub mod plan;
mod route;
pub mod source;
pub mod sparse;
mod stream;
pub mod tarheader;
pub mod tarinput;
pub mod tarread;
pub mod zipread;
pub mod zipwrite;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

pub use plan::{Plan, SkippedRow};
pub use source::{Limits, Source, SourceKind};

use crate::error::{Error, Result};

pub const DEFAULT_MANIFEST: &str = "manifest.csv";
pub const DEFAULT_BATCH_SIZE: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// New entries are stored as they are (images are already compressed).
    #[default]
    Stored,
    /// New entries are deflated; entries of a ZIP source keep their own method.
    Deflate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// A row naming a file that is not in the source fails the split.
    #[default]
    Fail,
    /// Such rows are left out of the parts and counted.
    Skip,
}

/// Everything a split needs; serializable so the daemon can hand it to a
/// worker process.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SplitOptions {
    pub source: PathBuf,
    pub out: PathBuf,
    pub batch_size: usize,
    /// A part closes before its files would pass this many bytes (a single
    /// larger file gets a part of its own).
    #[serde(default)]
    pub max_part_bytes: Option<u64>,
    pub manifest: String,
    pub file_column: Option<String>,
    pub compression: Compression,
    pub on_missing_file: OnMissing,
    pub jobs: usize,
    pub dry_run: bool,
    pub limits: Limits,
}

impl SplitOptions {
    pub fn new(source: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        SplitOptions {
            source: source.into(),
            out: out.into(),
            batch_size: DEFAULT_BATCH_SIZE,
            max_part_bytes: None,
            manifest: DEFAULT_MANIFEST.into(),
            file_column: None,
            compression: Compression::Stored,
            on_missing_file: OnMissing::Fail,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            dry_run: false,
            limits: Limits::default(),
        }
    }
}

/// Called with a part's number as soon as the part is published (renamed and its
/// directory fsynced), so a caller can record it as done.
#[derive(Default, Clone)]
pub struct PartHook(pub Option<std::sync::Arc<OnPart>>);

pub type OnPart = dyn Fn(usize, &zipwrite::Written) + Send + Sync;

impl PartHook {
    pub fn call(&self, n: usize, w: &zipwrite::Written) {
        if let Some(f) = &self.0 {
            f(n, w);
        }
    }
}

impl std::fmt::Debug for PartHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "PartHook(set)" } else { "PartHook(none)" })
    }
}

/// Live counters, read by a progress bar or the daemon while a split runs; setting
/// `cancel` stops packing at the next entry boundary.
#[derive(Debug, Default)]
pub struct Progress {
    pub on_part: PartHook,
    pub total_rows: AtomicU64,
    pub total_bytes: AtomicU64,
    pub rows_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub parts_done: AtomicU64,
    pub total_parts: AtomicU64,
    pub cancel: AtomicBool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartSummary {
    pub n: usize,
    pub path: PathBuf,
    pub rows: usize,
    pub files: usize,
    /// Manifest lines of the first and last row in this part.
    pub lines: [u64; 2],
    /// Size of the part file (for a dry run: the files' bytes it will hold).
    pub bytes: u64,
    pub sha256: Option<String>,
    /// True when a complete, matching part from an earlier run was kept.
    pub kept: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub source: PathBuf,
    pub kind: SourceKind,
    pub out: PathBuf,
    pub manifest: String,
    pub file_column: String,
    pub batch_size: usize,
    pub max_part_bytes: Option<u64>,
    /// Parts (by number) over `max_part_bytes`: each holds one file larger than the cap.
    pub oversized_parts: Vec<usize>,
    pub dry_run: bool,
    pub rows: usize,
    pub skipped_rows: usize,
    pub skipped: Vec<SkippedRow>,
    pub unreferenced_files: usize,
    /// The first few files no row names (they are not packed).
    pub unreferenced: Vec<String>,
    pub parts: Vec<PartSummary>,
    pub bytes: u64,
    pub seconds: f64,
    /// Metadata entries that hold no file (volume labels, ACLs), skipped.
    pub ignored_entries: tarread::Ignored,
}

/// Indexes the source and plans its parts without writing anything.
pub fn plan(opts: &SplitOptions) -> Result<(Source, Plan)> {
    if opts.batch_size == 0 {
        return Err(Error::InvalidArgument("--batch-size must be at least 1".into()));
    }
    if opts.max_part_bytes == Some(0) {
        return Err(Error::InvalidArgument("--max-part-bytes must be at least 1".into()));
    }
    let manifest_name = opts.manifest.clone();
    let capture = move |name: &str| manifest::is_candidate(name, &manifest_name);
    let src = Source::open(&opts.source, &opts.limits, &capture, Some(&opts.out))?;
    let plan = plan::build(&src, opts)?;
    Ok((src, plan))
}

/// Parts already published, by number.
pub type Published = Vec<(usize, zipwrite::Written)>;

/// A TAR.GZ with no parts from an earlier run is indexed and packed in one
/// decoding pass; anything else is planned first (and a TAR.GZ with parts,
/// so that they are verified and kept).
/// Not with `max_part_bytes`: where a part ends then depends on the sizes of
/// files the stream has not reached yet.
fn one_pass(kind: SourceKind, opts: &SplitOptions, stem: &str) -> bool {
    kind == SourceKind::TarGz && opts.max_part_bytes.is_none() && !has_parts(&opts.out, stem)
}

/// The daemon's PLAN: plans the source and, for a TAR.GZ with no parts in the
/// output directory yet, packs it in the same decoding pass as `split` does
/// (decoding is the expensive part of a TAR.GZ). Returns the parts that pass
/// published, by number; the rest are left to PACK. A second run (after a
/// crash) finds those parts on disk and only plans: PACK keeps them once
/// verified.
pub fn plan_and_pack_stream(opts: &SplitOptions, progress: &Progress) -> Result<(Source, Plan, Published)> {
    if opts.batch_size == 0 {
        return Err(Error::InvalidArgument("--batch-size must be at least 1".into()));
    }
    let stem = source::stem(&opts.source);
    if !one_pass(source::detect(&opts.source)?, opts, &stem) {
        let (src, plan) = plan(opts)?;
        return Ok((src, plan, Vec::new()));
    }
    fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, "creating the output directory", e))?;
    match stream::single_pass(opts, progress) {
        Ok(r) => {
            let mut done: Published = r.done.into_iter().collect();
            done.sort_by_key(|(n, _)| *n);
            Ok((r.source, r.plan, done))
        }
        Err(e) => {
            remove_temps(&opts.out, &stem);
            Err(e)
        }
    }
}

/// Splits `opts.source` into parts in `opts.out`.
pub fn split(opts: &SplitOptions, progress: &Progress) -> Result<Summary> {
    let started = Instant::now();
    if opts.dry_run {
        let (src, plan) = plan(opts)?;
        let parts = part_summaries(&plan, opts);
        return Ok(summary(opts, &src, &plan, parts, started));
    }
    if opts.batch_size == 0 {
        return Err(Error::InvalidArgument("--batch-size must be at least 1".into()));
    }
    let created = !opts.out.exists();
    fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, "creating the output directory", e))?;
    let result = split_into(opts, progress, started);
    if result.is_err() && created {
        // Only an empty directory goes: a cancelled split keeps its parts there.
        let _ = fs::remove_dir(&opts.out);
    }
    result
}

fn split_into(opts: &SplitOptions, progress: &Progress, started: Instant) -> Result<Summary> {
    let _lock = lock_dir(&opts.out)?;
    let kind = source::detect(&opts.source)?;
    let stem = source::stem(&opts.source);
    remove_temps(&opts.out, &stem);

    let mut published: Published = Vec::new();
    let (src, plan) = if one_pass(kind, opts, &stem) {
        match stream::single_pass(opts, progress) {
            Ok(r) => {
                published.extend(r.done);
                (r.source, r.plan)
            }
            Err(err) => return Err(fail(opts, &stem, None, err)),
        }
    } else {
        plan(opts)?
    };
    let total_payload: u64 = plan.parts.iter().map(|p| p.payload_bytes).sum();
    progress.total_rows.store(plan.rows as u64, Ordering::Relaxed);
    progress.total_parts.store(plan.parts.len() as u64, Ordering::Relaxed);
    progress.total_bytes.store(total_payload, Ordering::Relaxed);
    remove_stale(&opts.out, &src.stem, plan.parts.len())?;

    let mut parts = part_summaries(&plan, opts);
    let mut todo = Vec::new();
    for (p, s) in plan.parts.iter().zip(parts.iter_mut()) {
        if published.iter().any(|(n, _)| *n == p.n) {
            continue;
        }
        match verify_existing(&s.path, &p.comment) {
            Some(w) => {
                s.bytes = w.bytes;
                s.sha256 = Some(w.sha256);
                s.kept = true;
                progress.rows_done.fetch_add(p.rows as u64, Ordering::Relaxed);
                progress.parts_done.fetch_add(1, Ordering::Relaxed);
            }
            None => todo.push(p),
        }
    }
    let todo_bytes: u64 = todo.iter().map(|p| p.payload_bytes).sum();
    progress.bytes_done.store(total_payload - todo_bytes, Ordering::Relaxed);
    let results: Vec<Result<zipwrite::Written>> = if todo.is_empty() {
        Vec::new()
    } else if src.random_access() {
        pack::pack_random(&src, &plan, &todo, opts, progress)
    } else {
        match stream::second_pass(&src, &plan, &todo, opts, progress) {
            Ok(w) => w.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        }
    };
    // The first real error by part order is the one reported, so reports are stable.
    let mut first_err: Option<Error> = None;
    for (p, r) in todo
        .iter()
        .zip(results.into_iter().chain(std::iter::repeat_with(|| Err(Error::Cancelled))))
    {
        match r {
            Ok(w) => published.push((p.n, w)),
            Err(e) => {
                if first_err
                    .as_ref()
                    .is_none_or(|f| matches!(f, Error::Cancelled) && !matches!(e, Error::Cancelled))
                {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(err) = first_err {
        return Err(fail(opts, &stem, Some(&parts), err));
    }
    for (n, w) in published {
        let s = &mut parts[n - 1];
        s.bytes = w.bytes;
        s.sha256 = Some(w.sha256);
    }
    Ok(summary(opts, &src, &plan, parts, started))
}

/// Makes the parts numbered `numbers` of a planned source: a part already on disk
/// with this plan's fingerprint and good CRCs is kept, the others are packed. Each
/// part is reported through `progress.on_part` once published. This is what the
/// daemon's PACK tasks call; it never removes parts on failure (the caller decides).
pub fn pack_parts(
    src: &Source,
    plan: &Plan,
    numbers: &[usize],
    opts: &SplitOptions,
    progress: &Progress,
) -> Result<Vec<(usize, zipwrite::Written)>> {
    fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, "creating the output directory", e))?;
    let mut done = Vec::new();
    let mut todo = Vec::new();
    for &n in numbers {
        let p = plan
            .parts
            .get(n.wrapping_sub(1))
            .ok_or_else(|| Error::InvalidArgument(format!("part {n} is not in the plan")))?;
        match verify_existing(&p.path(&opts.out), &p.comment) {
            Some(w) => {
                progress.on_part.call(n, &w);
                done.push((n, w));
            }
            None => todo.push(p),
        }
    }
    if todo.is_empty() {
        return Ok(done);
    }
    if src.random_access() {
        for (p, r) in todo.iter().zip(pack::pack_random(src, plan, &todo, opts, progress)) {
            done.push((p.n, r?));
        }
    } else {
        for (p, w) in todo.iter().zip(stream::second_pass(src, plan, &todo, opts, progress)?) {
            done.push((p.n, w));
        }
    }
    Ok(done)
}

/// Cleans up after a failed split: temp files always; parts too unless the split
/// was cancelled (a rerun resumes from them), because a failed delivery must not
/// leave anything that looks like a finished part.
fn fail(opts: &SplitOptions, stem: &str, parts: Option<&[PartSummary]>, err: Error) -> Error {
    remove_temps(&opts.out, stem);
    if !matches!(err, Error::Cancelled) {
        match parts {
            Some(parts) => {
                for s in parts {
                    let _ = fs::remove_file(&s.path);
                }
            }
            None => remove_parts(&opts.out, stem),
        }
        let _ = crate::fsx::sync_dir(&opts.out);
    }
    err
}

fn part_summaries(plan: &Plan, opts: &SplitOptions) -> Vec<PartSummary> {
    plan.parts
        .iter()
        .map(|p| PartSummary {
            n: p.n,
            path: p.path(&opts.out),
            rows: p.rows,
            files: p.files.len(),
            lines: [p.first_line, p.last_line],
            bytes: p.payload_bytes,
            sha256: None,
            kept: false,
        })
        .collect()
}

fn summary(opts: &SplitOptions, src: &Source, plan: &Plan, parts: Vec<PartSummary>, started: Instant) -> Summary {
    Summary {
        source: opts.source.clone(),
        kind: src.kind,
        out: opts.out.clone(),
        manifest: plan.manifest.display.clone(),
        file_column: plan.file_column.clone(),
        batch_size: opts.batch_size,
        max_part_bytes: opts.max_part_bytes,
        oversized_parts: plan.oversized.clone(),
        dry_run: opts.dry_run,
        rows: plan.rows,
        skipped_rows: plan.skipped.len(),
        skipped: plan.skipped.iter().take(100).cloned().collect(),
        unreferenced_files: plan.unreferenced.len(),
        unreferenced: plan.unreferenced.iter().take(20).cloned().collect(),
        bytes: parts.iter().map(|p| p.bytes).sum(),
        parts,
        seconds: started.elapsed().as_secs_f64(),
        ignored_entries: src.ignored.clone(),
    }
}

fn has_parts(out: &Path, stem: &str) -> bool {
    fs::read_dir(out).is_ok_and(|items| {
        items
            .flatten()
            .any(|i| part_number(&i.file_name().to_string_lossy(), stem).is_some())
    })
}

/// Removes every part of `stem` that we wrote (it carries our ZIP comment).
fn remove_parts(out: &Path, stem: &str) {
    let Ok(items) = fs::read_dir(out) else { return };
    for item in items.flatten() {
        if part_number(&item.file_name().to_string_lossy(), stem).is_some()
            && read_comment(&item.path()).is_some_and(|c| c.starts_with("batchd part "))
        {
            let _ = fs::remove_file(item.path());
        }
    }
}

/// Takes an exclusive lock on the output directory for the life of the split, so
/// two splitters never write the same parts.
fn lock_dir(dir: &Path) -> Result<File> {
    let f = File::open(dir).map_err(|e| Error::io(dir, "opening the output directory", e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(Error::OutputLocked { dir: dir.to_owned() }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(dir, "locking the output directory", e)),
    }
}

fn part_number(file_name: &str, stem: &str) -> Option<usize> {
    file_name
        .strip_prefix(stem)?
        .strip_prefix("-part")?
        .strip_suffix(".zip")?
        .parse()
        .ok()
}

/// Removes temp files of earlier interrupted runs, and parts of an earlier run with
/// other settings that lie beyond this plan's last part (only files we wrote: they
/// carry our ZIP comment).
fn remove_stale(out: &Path, stem: &str, parts: usize) -> Result<()> {
    remove_temps(out, stem);
    for item in fs::read_dir(out).map_err(|e| Error::io(out, "listing", e))?.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        if part_number(&name, stem).is_some_and(|n| n > parts) && read_comment(&item.path()).is_some_and(|c| c.starts_with("batchd part "))
        {
            fs::remove_file(item.path()).map_err(|e| Error::io(item.path(), "removing the stale part", e))?;
        }
    }
    Ok(())
}

fn remove_temps(out: &Path, stem: &str) {
    let Ok(items) = fs::read_dir(out) else { return };
    for item in items.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        if let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".batchd-tmp")) {
            if part_number(inner, stem).is_some() {
                let _ = fs::remove_file(item.path());
            }
        }
    }
}

fn read_comment(path: &Path) -> Option<String> {
    let f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let dir = zipread::find_directory(&f, path, len).ok()?;
    String::from_utf8(dir.comment).ok()
}

/// A part left by an earlier run is kept only if it carries this plan's fingerprint
/// and every entry reads back with a matching CRC.
fn verify_existing(path: &Path, comment: &str) -> Option<zipwrite::Written> {
    if read_comment(path)? != comment {
        return None;
    }
    let entries = zipread::index(path, &Limits::default()).ok()?;
    let f = File::open(path).ok()?;
    let mut win = zipread::Window::whole(&f, path).ok()?;
    for e in &entries {
        let source::Loc::Zip { data_start, csize, method } = e.loc else {
            return None;
        };
        zipread::copy_raw_verified(&mut win, e, data_start, csize, method, &mut io::sink(), path).ok()?;
    }
    let bytes = f.metadata().ok()?.len();
    Some(zipwrite::Written {
        bytes,
        sha256: crate::fsx::hash_file(path).ok()?,
    })
}
