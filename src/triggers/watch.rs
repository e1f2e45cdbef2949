//! Watched inboxes. A reconciling scan (twice a second) is the truth: it needs no
//! filesystem events, so it also works on filesystems that deliver none and after
//! an event queue overflow. A file is taken when it is a regular file whose name
//! matches the pattern and is not a temp name, its size, mtime and inode have not
//! changed for the settle time (monotonic clock), and it is structurally complete
//! (a ZIP has its end record, a tar its end blocks); a file that stays incomplete
//! is taken anyway after four settle times, so a truncated upload fails visibly.
//!
//! Claiming is crash-safe: (1) a `watch_files` row is written (CLAIMING), (2) the
//! file is renamed into `.batchd/processing/<job>/` on the same filesystem, (3) the
//! job is created and the row marked QUEUED in one transaction. Startup resolves a
//! row left between steps. When the job ends, the file moves to `.batchd/done/`
//! (or is deleted or kept, per `on_success`); a failed job's file moves to
//! `.batchd/failed/` with `<name>.error.json` beside it.
//!
//! Step 3 also hashes the file (SHA-256): content this inbox took before, for a
//! job that did not fail, is a duplicate and goes to `.batchd/duplicates/` with
//! `<name>.duplicate.json` (or is ingested again with `duplicates = "ingest"`).
//! With `directories = true`, a directory is a source too: its settle wait
//! watches the whole tree, and its hash covers every entry's path and bytes.
//!
//! Identity is never the inode alone: an inode freed by a finished file and
//! reused by a new one is just a new file.

use crate::glob::glob_match;
use crate::signals::Stop;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::config::{Config, Duplicates, OnSuccess, Watch};
use crate::store::jobs::NewJob;
use crate::store::model::JobStatus;
use crate::store::watch_files::{self, Disposition, Taken};
use crate::store::Store;

const SCAN_EVERY: Duration = Duration::from_millis(500);
/// The reconciling scan of an idle inbox whose directory delivers events.
const SCAN_IDLE_WITH_EVENTS: Duration = Duration::from_secs(5);

/// Names that are still being written by common tools.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with("~syncthing~")
        || [".partial", ".tmp", ".filepart", ".crdownload", ".part"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// True when the archive looks whole: a ZIP end record, tar end blocks. Other
/// content (gzip, anything else) is judged by the split itself.
pub(crate) fn looks_complete(path: &Path, len: u64) -> bool {
    let Ok(f) = fs::File::open(path) else { return false };
    let mut head = [0u8; 4];
    use std::os::unix::fs::FileExt;
    if f.read_exact_at(&mut head, 0).is_err() {
        return true; // empty or unreadable: let the job say what is wrong
    }
    if &head == b"PK\x03\x04" {
        return crate::split::zipread::find_directory(&f, path, len).is_ok();
    }
    let mut first = [0u8; 512];
    if f.read_exact_at(&mut first, 0).is_ok() && crate::split::tarheader::checksum_ok(&first) {
        // A plain tar ends with two zero blocks.
        let mut tail = [0u8; 1024];
        return len.is_multiple_of(512) && len >= 1536 && f.read_exact_at(&mut tail, len - 1024).is_ok() && tail.iter().all(|&b| b == 0);
    }
    true
}

struct Seen {
    sig: (u64, i64, i64, u64),
    since: Instant,
}

pub struct Watcher {
    store: Store,
    config: Arc<Config>,
    watches: Vec<Watch>,
    /// Each watch's `regex_filter` and `max_files`, by watch name.
    selections: HashMap<String, crate::glob::Selection>,
}

/// processing, done, failed, duplicates: all under `DIR/.batchd/`.
fn dirs(w: &Watch) -> [PathBuf; 4] {
    let meta = w.dir.join(".batchd");
    [
        meta.join("processing"),
        meta.join("done"),
        meta.join("failed"),
        meta.join("duplicates"),
    ]
}

impl Watcher {
    pub fn new(store: Store, config: Arc<Config>) -> anyhow::Result<Watcher> {
        let watches = config.watches();
        for w in &watches {
            for d in std::iter::once(w.dir.clone()).chain(dirs(w)) {
                fs::create_dir_all(&d).with_context(|| format!("creating watched directory {}", d.display()))?;
            }
            // Claiming renames within one filesystem, so a claim is atomic.
            let (a, b) = (fs::metadata(&w.dir)?.dev(), fs::metadata(&dirs(w)[0])?.dev());
            anyhow::ensure!(
                a == b,
                "watch {}: {} is not on the same filesystem as the inbox",
                w.name,
                dirs(w)[0].display()
            );
        }
        let selections = watches
            .iter()
            .map(|w| Ok((w.name.clone(), w.selection()?)))
            .collect::<anyhow::Result<_>>()?;
        let watcher = Watcher {
            store,
            config,
            watches,
            selections,
        };
        watcher.recover()?;
        Ok(watcher)
    }

    /// Runs scans until `stop` is set. Where the inboxes deliver filesystem
    /// events, an idle inbox is scanned every [`SCAN_IDLE_WITH_EVENTS`] and an
    /// event (a file created, renamed in, closed after writing) wakes the scan
    /// at once; a file still settling, or an inbox without events, is scanned
    /// every [`SCAN_EVERY`] as before. The scan stays the truth either way.
    pub fn run(self, stop: Arc<Stop>) {
        let dirs: Vec<PathBuf> = self.watches.iter().map(|w| w.dir.clone()).collect();
        let events = self.watches.iter().all(|w| w.events);
        let hint = super::hint::Hint::start(if events { &dirs } else { &[] }, Arc::clone(&stop), events);
        let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
        let mut reported: HashSet<PathBuf> = HashSet::new();
        let mut finalized_at = None;
        while !stop.is_set() {
            for w in &self.watches {
                if let Err(e) = self.scan(w, &mut seen, &mut reported) {
                    tracing::error!(watch = %w.name, "scanning {}: {e:#}", w.dir.display());
                }
            }
            // A job can only have ended if something was written since last time.
            let generation = self.store.bell.generation();
            if finalized_at != Some(generation) {
                match self.finalize() {
                    Ok(()) => finalized_at = Some(generation),
                    Err(e) => tracing::error!("finishing watched files: {e:#}"),
                }
            }
            // A job's end is a database write, not a filesystem event: while a
            // taken file's job runs, look often, so the file moves on soon after.
            let waiting_for_jobs = self.store.read(watch_files::any_in_progress).unwrap_or(true);
            let idle = seen.is_empty() && reported.is_empty() && !waiting_for_jobs;
            stop.sleep(if idle && hint.active() { SCAN_IDLE_WITH_EVENTS } else { SCAN_EVERY });
        }
    }

    fn scan(&self, w: &Watch, seen: &mut HashMap<PathBuf, Seen>, reported: &mut HashSet<PathBuf>) -> anyhow::Result<()> {
        let mut present = HashSet::new();
        let selection = &self.selections[&w.name];
        let mut items: Vec<fs::DirEntry> = fs::read_dir(&w.dir)?.flatten().collect();
        // By name, so max_files takes the first files by name.
        items.sort_by_key(|i| i.file_name());
        let mut claimed = 0;
        for item in items {
            let name = item.file_name().to_string_lossy().into_owned();
            if is_temp_name(&name) {
                continue;
            }
            let path = item.path();
            if !selection.admits(&path) {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            let is_source_dir = w.directories && meta.is_dir() && glob_match(&w.directory_pattern, &name);
            if !is_source_dir && !glob_match(&w.pattern, &name) {
                continue;
            }
            if !meta.file_type().is_file() && !is_source_dir {
                if reported.insert(path.clone()) {
                    let kind = if meta.file_type().is_symlink() {
                        "a symbolic link"
                    } else if meta.is_dir() {
                        "a directory"
                    } else {
                        "not a regular file"
                    };
                    let hint = if w.directories {
                        "drop regular files, or directories matching directory_pattern"
                    } else {
                        "drop regular files only, or set directories = true on this watch"
                    };
                    tracing::warn!(watch = %w.name, "ignoring {}: it is {kind}; {hint}", path.display());
                }
                continue;
            }
            present.insert(path.clone());
            let sig = if is_source_dir {
                match tree_signature(&path) {
                    Ok(sig) => sig,
                    Err(_) => continue, // changing under us: look again next scan
                }
            } else {
                (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())
            };
            let entry = seen.entry(path.clone()).or_insert(Seen {
                sig,
                since: Instant::now(),
            });
            if entry.sig != sig {
                *entry = Seen {
                    sig,
                    since: Instant::now(),
                };
                continue;
            }
            let marker = w.dir.join(format!("{name}.done"));
            if w.marker {
                // The writer says when it is done; no settle wait.
                if !marker.exists() {
                    continue;
                }
            } else {
                let settle = Duration::from_secs_f64(w.settle_seconds);
                let waited = entry.since.elapsed();
                if waited < settle {
                    continue;
                }
                if !is_source_dir && !looks_complete(&path, meta.len()) && waited < (settle * 4).max(settle + Duration::from_secs(5)) {
                    continue;
                }
            }
            if selection.max_files.is_some_and(|n| claimed >= n) {
                continue; // the next scan takes it
            }
            seen.remove(&path);
            self.claim(w, &name, meta.len(), meta.ino())?;
            claimed += 1;
            if w.marker {
                let _ = fs::remove_file(&marker);
            }
        }
        seen.retain(|p, _| !p.starts_with(&w.dir) || present.contains(p));
        reported.retain(|p| !p.starts_with(&w.dir) || p.symlink_metadata().is_ok());
        Ok(())
    }

    fn claim(&self, w: &Watch, name: &str, size: u64, inode: u64) -> anyhow::Result<()> {
        let id = crate::ids::new_id();
        let processing = dirs(w)[0].join(&id).join(name);
        let (watch, n, p) = (w.name.clone(), name.to_owned(), processing.to_string_lossy().into_owned());
        let row = self
            .store
            .write(move |tx| watch_files::record_claim(tx, &watch, &n, size, inode, &p))?;
        crate::failpoint::hit("watch.claim.recorded");
        fs::create_dir_all(processing.parent().expect("has a parent"))?;
        fs::rename(w.dir.join(name), &processing).with_context(|| format!("claiming {}", w.dir.join(name).display()))?;
        crate::failpoint::hit("watch.claim.renamed");
        crate::fsx::sync_dir(&w.dir)?;
        crate::failpoint::hit("watch.claim.synced");
        self.queue(w, row, &id, &processing)?;
        crate::failpoint::hit("watch.claim.queued");
        Ok(())
    }

    /// Step 3 of a claim: the job and the row QUEUED in one transaction; or,
    /// for content taken before, the row DONE as a duplicate and the file
    /// moved to `duplicates/` (per `w.duplicates`).
    fn queue(&self, w: &Watch, row: i64, id: &str, processing: &Path) -> anyhow::Result<()> {
        let sha = content_hash(processing)?;
        let job = NewJob {
            priority: w.priority,
            ..NewJob::ingest(
                id.to_owned(),
                &self.config.data_dir,
                w.output_dir.as_deref(),
                vec![processing.to_string_lossy().into_owned()],
                self.config
                    .defaults
                    .settings(w.batch_size, w.max_part_bytes, w.file_column.as_ref()),
                "watch",
            )
        };
        let (watch, skip, sha2) = (w.name.clone(), w.duplicates == Duplicates::Skip, sha.clone());
        let taken = self.store.write(move |tx| watch_files::take(tx, row, &watch, &sha2, skip, &job))?;
        match taken {
            Taken::Job => tracing::info!(watch = %w.name, job = id, "queued {}", processing.display()),
            Taken::Duplicate { job_id, name } => {
                let report = json!({"sha256": sha, "duplicate_of": {"job_id": job_id, "name": name},
                    "hint": "the same content was taken before; set duplicates = \"ingest\" on this watch to ingest it again"});
                let dst = self.move_duplicate(w, processing, Some(&report))?;
                tracing::warn!(watch = %w.name, "{} has the same content as {name} (job {job_id}); moved to {}", processing.display(), dst.display());
            }
        }
        Ok(())
    }

    /// Moves a skipped duplicate from `processing/` to `duplicates/` (its
    /// report beside it first, when there is one) and records where.
    fn move_duplicate(&self, w: &Watch, processing: &Path, report: Option<&serde_json::Value>) -> anyhow::Result<PathBuf> {
        let file = processing.file_name().unwrap_or_default().to_owned();
        let dst = move_unique(processing, &dirs(w)[3].join(file), report.map(|r| (".duplicate.json", r)))?;
        let _ = fs::remove_dir(processing.parent().expect("has a parent"));
        let (from, to) = (processing.to_string_lossy().into_owned(), dst.to_string_lossy().into_owned());
        self.store.write(move |tx| watch_files::duplicate_moved(tx, &from, &to))?;
        Ok(dst)
    }

    /// Resolves claims a crash interrupted.
    fn recover(&self) -> anyhow::Result<()> {
        for c in self.store.read(watch_files::claiming)? {
            let processing = PathBuf::from(&c.processing);
            let Some(w) = self.watches.iter().find(|w| w.name == c.watch) else {
                continue;
            };
            if processing.exists() {
                let id = processing
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                tracing::info!(watch = c.watch, "recovery: finishing the claim of {}", c.name);
                self.queue(w, c.row, &id, &processing)?;
            } else {
                // Not moved yet: the file is still in the inbox and is detected again.
                self.store.write(move |tx| watch_files::forget(tx, c.row))?;
            }
        }
        // A duplicate recorded but not yet moved out of processing/.
        for (watch, processing) in self.store.read(watch_files::duplicates)? {
            let processing = PathBuf::from(processing);
            if let (Some(w), true) = (self.watches.iter().find(|w| w.name == watch), processing.exists()) {
                self.move_duplicate(w, &processing, None)?;
            }
        }
        Ok(())
    }

    /// Moves the sources of ended jobs out of `processing/` (or, for a retried
    /// job, out of `failed/`), and records where each went.
    fn finalize(&self) -> anyhow::Result<()> {
        for f in self.store.read(watch_files::ended)? {
            let Some(w) = self.watches.iter().find(|w| w.name == f.watch) else {
                continue;
            };
            let from = PathBuf::from(&f.path);
            let [processing_dir, done, failed, _] = dirs(w);
            let was_failed = from.starts_with(&failed);
            let went = if !from.exists() {
                // Moved (or deleted) before a crash; only the row is left to
                // update, with where the file would have gone under its name.
                let (d, dir) = if f.status == JobStatus::Completed {
                    (Disposition::Done, &done)
                } else {
                    (Disposition::Failed, &failed)
                };
                let guess = dir.join(&f.name);
                if guess.exists() {
                    (d, Some(guess))
                } else {
                    (Disposition::Deleted, None)
                }
            } else if f.status == JobStatus::Completed {
                match w.on_success {
                    OnSuccess::Move => (Disposition::Done, Some(move_unique(&from, &done.join(&f.name), None)?)),
                    OnSuccess::Delete if from.is_dir() => {
                        fs::remove_dir_all(&from).with_context(|| format!("deleting {}", from.display()))?;
                        (Disposition::Deleted, None)
                    }
                    OnSuccess::Delete => {
                        let _ = fs::remove_file(&from);
                        (Disposition::Deleted, None)
                    }
                    OnSuccess::Keep => (Disposition::Kept, Some(from.clone())),
                }
            } else if was_failed {
                (Disposition::Failed, Some(from.clone()))
            } else {
                let error = f.error.as_deref().and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok());
                let report = json!({"status": f.status, "error": error});
                let dst = move_unique(&from, &failed.join(&f.name), Some((".error.json", &report)))?;
                (Disposition::Failed, Some(dst))
            };
            crate::failpoint::hit("watch.finalize.moved");
            if was_failed && went.0 != Disposition::Failed {
                // A retry succeeded: the old failure report goes with the file's failure.
                let mut report = from.clone().into_os_string();
                report.push(".error.json");
                let _ = fs::remove_file(report);
            }
            if from.starts_with(&processing_dir) && went.0 != Disposition::Kept {
                let _ = fs::remove_dir(from.parent().expect("has a parent"));
            }
            let (disposition, path) = (went.0, went.1.map(|p| p.to_string_lossy().into_owned()));
            self.store
                .write(move |tx| watch_files::finished(tx, &f, disposition, path.as_deref()))?;
        }
        Ok(())
    }
}

/// Every entry under `dir` (symlinks not followed), sorted by path, as
/// (path relative to `dir`, metadata).
fn walk(dir: &Path) -> std::io::Result<Vec<(PathBuf, fs::Metadata)>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for item in fs::read_dir(dir.join(&rel))? {
            let item = item?;
            let rel = rel.join(item.file_name());
            let meta = fs::symlink_metadata(dir.join(&rel))?;
            if meta.is_dir() {
                stack.push(rel.clone());
            }
            out.push((rel, meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What the settle wait watches for a directory source: its total size, the
/// newest mtime in the tree, and a digest of every entry's name, size, mtime
/// and inode, so a file added, removed, renamed or rewritten restarts the wait.
fn tree_signature(dir: &Path) -> std::io::Result<(u64, i64, i64, u64)> {
    use std::hash::{Hash, Hasher};
    let top = fs::symlink_metadata(dir)?;
    let (mut total, mut newest) = (0u64, (top.mtime(), top.mtime_nsec()));
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    top.ino().hash(&mut digest);
    for (rel, meta) in walk(dir)? {
        total += meta.len();
        newest = newest.max((meta.mtime(), meta.mtime_nsec()));
        (rel, meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()).hash(&mut digest);
    }
    Ok((total, newest.0, newest.1, digest.finish()))
}

/// SHA-256 of a file's bytes; for a directory, of every entry's relative path,
/// kind and (for files) the SHA-256 of its bytes, in path order, so the same
/// tree dropped twice is recognised whatever its mtimes.
fn content_hash(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    if !path.is_dir() {
        return Ok(crate::fsx::hash_file(path)?);
    }
    let mut sha = Sha256::new();
    for (rel, meta) in walk(path).with_context(|| format!("reading directory {}", path.display()))? {
        sha.update(rel.as_os_str().as_encoded_bytes());
        sha.update([0]);
        if meta.is_file() {
            sha.update(b"f");
            sha.update(crate::fsx::hash_file(&path.join(&rel))?.as_bytes());
        } else if meta.is_dir() {
            sha.update(b"d");
        } else {
            sha.update(b"o"); // links and the like: the split rejects or skips them
        }
        sha.update([0]);
    }
    Ok(crate::fsx::hex(&sha.finalize()))
}

/// Writes `report` as pretty JSON beside `file`, named `file` + `suffix`.
fn write_report(file: &Path, suffix: &str, report: &serde_json::Value) -> anyhow::Result<()> {
    let mut path = file.as_os_str().to_owned();
    path.push(suffix);
    fs::write(&path, serde_json::to_string_pretty(report)?).with_context(|| format!("writing {}", Path::new(&path).display()))
}

/// Renames `from` to `to`, or to `to` with a `-N` suffix when that name is
/// taken. A report (suffix, body) is written beside the destination first, so
/// whoever sees the file there finds its report too.
fn move_unique(from: &Path, to: &Path, report: Option<(&str, &serde_json::Value)>) -> anyhow::Result<PathBuf> {
    let mut dst = to.to_path_buf();
    let mut n = 1;
    while dst.symlink_metadata().is_ok() {
        n += 1;
        dst = to.with_file_name(format!("{}-{n}", to.file_name().unwrap_or_default().to_string_lossy()));
    }
    if let Some((suffix, body)) = report {
        write_report(&dst, suffix, body)?;
    }
    if from.exists() {
        fs::rename(from, &dst).with_context(|| format!("moving {} to {}", from.display(), dst.display()))?;
    }
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        for t in [
            ".hidden.zip",
            "x.zip.partial",
            "x.zip.tmp",
            "x.zip.filepart",
            "x.zip.crdownload",
            "~syncthing~x.zip.tmp",
            ".x.zip.Ab12Cd",
        ] {
            assert!(is_temp_name(t), "{t}");
        }
        assert!(!is_temp_name("x.zip"));
    }
}
