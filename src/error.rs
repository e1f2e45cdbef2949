//! The library's error type. Every variant carries a stable code (`UNSAFE_PATH`,
//! `MANIFEST_RAGGED`, …) that scripts and the API can match on, names the entry,
//! manifest line or path involved, and where there is something to do, says what.
//! Callers match on variants; `anyhow` is only used at the edges (CLI, daemon).

use std::io;
use std::path::{Path, PathBuf};

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("UNSAFE_PATH: entry {} {reason}; batchd never writes outside its output directory, so repack the source without it", clip(.entry))]
    UnsafePath { entry: String, reason: String },

    #[error("UNSUPPORTED_ENTRY: entry {} is {kind}; only regular files and directories are accepted, so repack the source with the file itself", clip(.entry))]
    UnsupportedEntry { entry: String, kind: String },

    #[error("DUPLICATE_ENTRY: entry {} appears more than once in the source; repack it with one copy", clip(.entry))]
    DuplicateEntry { entry: String },

    #[error("NAME_COLLISION: entries {} and {} differ only in {reason}, so one would overwrite the other when a part is unpacked on macOS or Windows; rename one of them (and its manifest row) and repack the source", clip(.entry), clip(.other))]
    NameCollision {
        entry: String,
        other: String,
        reason: &'static str,
    },

    #[error("ARCHIVE_BOMB: {}{detail}; raise the limit only if you trust the source", entry_prefix(.entry))]
    ArchiveBomb { entry: Option<String>, detail: String },

    #[error("UNSUPPORTED_FORMAT: {detail}")]
    UnsupportedFormat { detail: String },

    #[error("ARCHIVE_CORRUPT: {}{detail}", entry_prefix(.entry))]
    ArchiveCorrupt { entry: Option<String>, detail: String },

    #[error("MANIFEST_MISSING: no {name:?} at the top of the source or under one top-level folder; check --manifest")]
    ManifestMissing { name: String },

    #[error("MANIFEST_AMBIGUOUS: the source holds more than one manifest ({}); pass the one to use with --manifest", .found.join(", "))]
    ManifestAmbiguous { found: Vec<String> },

    #[error("MANIFEST_MISSING_COLUMN: {manifest} has no column {column:?}; its headers are {}", quote_list(.headers))]
    ManifestMissingColumn {
        manifest: String,
        column: String,
        headers: Vec<String>,
    },

    #[error("MANIFEST_NO_FILE_COLUMN: no column of {manifest} names files of the source; its headers are {}; pass the right one with --file-column", quote_list(.headers))]
    ManifestNoFileColumn { manifest: String, headers: Vec<String> },

    #[error("MANIFEST_RAGGED: {manifest} line {line} has {found} fields where the header has {expected}; fix the row or quote fields that contain commas")]
    ManifestRagged {
        manifest: String,
        line: u64,
        expected: u64,
        found: u64,
    },

    #[error("MANIFEST_NOT_UTF8: {manifest} line {line} is not valid UTF-8; re-export the manifest as UTF-8")]
    ManifestNotUtf8 { manifest: String, line: u64 },

    #[error("MANIFEST_INVALID: {manifest} line {line}: {detail}")]
    ManifestInvalid { manifest: String, line: u64, detail: String },

    #[error("MANIFEST_EMPTY: {manifest} {detail}; there is nothing to split")]
    ManifestEmpty { manifest: String, detail: String },

    #[error("MISSING_FILE: {manifest} line {line} names {}, which is not in the source; add the file, or pass --on-missing-file skip to leave such rows out", clip(.value))]
    MissingFile { manifest: String, line: u64, value: String },

    #[error("AMBIGUOUS_FILE: {manifest} line {line} names {}, which matches several entries ({}); give its relative path instead", clip(.value), .candidates.join(", "))]
    AmbiguousFile {
        manifest: String,
        line: u64,
        value: String,
        candidates: Vec<String>,
    },

    #[error("DISK_FULL: no space left while {action} {}; free space there and run again (finished parts are kept)", .path.display())]
    DiskFull { path: PathBuf, action: String },

    #[error("IO_ERROR: {action} {}: {source}", .path.display())]
    Io { path: PathBuf, action: String, source: io::Error },

    #[error("OUTPUT_LOCKED: another batchd process is writing to {}; wait for it to finish", .dir.display())]
    OutputLocked { dir: PathBuf },

    #[error("CANCELLED: stopped on request; finished parts are kept and a rerun resumes")]
    Cancelled,

    #[error("INVALID_ARGUMENT: {0}")]
    InvalidArgument(String),

    #[error("HOOK_FAILED: {hook} hook {message}; the parts are kept: fix the hook, then resubmit or run it by hand")]
    Hook { hook: &'static str, message: String },

    #[error("DELIVERY_FAILED: {message}; the parts are kept: fix the storage or its settings, then retry the job")]
    Delivery { message: String },

    /// A daemon job the CLI followed ended FAILED; `code` is the job's own error code.
    #[error("job {id} failed: {message}")]
    JobFailed { id: String, code: String, message: String },
}

fn entry_prefix(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!("entry {}: ", clip(e)),
        None => String::new(),
    }
}

/// A name or manifest value, quoted, and cut short when it is long: a hostile
/// source can hold a 64 KiB entry name or a 20 MB manifest field, and every
/// error message is stored, logged and sent to clients.
pub fn clip(s: &str) -> String {
    const KEEP: usize = 160;
    if s.len() <= KEEP + 40 {
        return format!("{s:?}");
    }
    let mut end = KEEP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes in all)", &s[..end], s.len())
}

fn quote_list(items: &[String]) -> String {
    items.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ")
}

impl Error {
    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnsafePath { .. } => "UNSAFE_PATH",
            Error::UnsupportedEntry { .. } => "UNSUPPORTED_ENTRY",
            Error::DuplicateEntry { .. } => "DUPLICATE_ENTRY",
            Error::NameCollision { .. } => "NAME_COLLISION",
            Error::ArchiveBomb { .. } => "ARCHIVE_BOMB",
            Error::ArchiveCorrupt { .. } => "ARCHIVE_CORRUPT",
            Error::UnsupportedFormat { .. } => "UNSUPPORTED_FORMAT",
            Error::ManifestMissing { .. } => "MANIFEST_MISSING",
            Error::ManifestAmbiguous { .. } => "MANIFEST_AMBIGUOUS",
            Error::ManifestMissingColumn { .. } => "MANIFEST_MISSING_COLUMN",
            Error::ManifestNoFileColumn { .. } => "MANIFEST_NO_FILE_COLUMN",
            Error::ManifestRagged { .. } => "MANIFEST_RAGGED",
            Error::ManifestNotUtf8 { .. } => "MANIFEST_NOT_UTF8",
            Error::ManifestInvalid { .. } => "MANIFEST_INVALID",
            Error::ManifestEmpty { .. } => "MANIFEST_EMPTY",
            Error::MissingFile { .. } => "MISSING_FILE",
            Error::AmbiguousFile { .. } => "AMBIGUOUS_FILE",
            Error::DiskFull { .. } => "DISK_FULL",
            Error::Io { .. } => "IO_ERROR",
            Error::OutputLocked { .. } => "OUTPUT_LOCKED",
            Error::Cancelled => "CANCELLED",
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::JobFailed { .. } => "JOB_FAILED",
            Error::Hook { .. } => "HOOK_FAILED",
            Error::Delivery { .. } => "DELIVERY_FAILED",
        }
    }

    /// The archive entry the error is about, if any.
    pub fn entry(&self) -> Option<&str> {
        match self {
            Error::UnsafePath { entry, .. }
            | Error::UnsupportedEntry { entry, .. }
            | Error::DuplicateEntry { entry }
            | Error::NameCollision { entry, .. } => Some(entry),
            Error::ArchiveBomb { entry, .. } | Error::ArchiveCorrupt { entry, .. } => entry.as_deref(),
            _ => None,
        }
    }

    /// The manifest line the error is about, if any (1-based; the header is line 1).
    pub fn line(&self) -> Option<u64> {
        match self {
            Error::ManifestRagged { line, .. }
            | Error::ManifestNotUtf8 { line, .. }
            | Error::ManifestInvalid { line, .. }
            | Error::MissingFile { line, .. }
            | Error::AmbiguousFile { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// True when the source itself is at fault: retrying cannot help.
    pub fn is_bad_input(&self) -> bool {
        if let Error::JobFailed { code, .. } = self {
            return !matches!(
                code.as_str(),
                "IO_ERROR" | "DISK_FULL" | "TASK_TIMEOUT" | "INTERNAL" | "CANCELLED" | "HOOK_FAILED" | "DELIVERY_FAILED"
            );
        }
        !matches!(
            self,
            Error::DiskFull { .. }
                | Error::Io { .. }
                | Error::OutputLocked { .. }
                | Error::Cancelled
                | Error::InvalidArgument(_)
                | Error::Hook { .. }
                | Error::Delivery { .. }
        )
    }

    /// Wraps an I/O error with the path and the action, turning "no space left" into
    /// [`Error::DiskFull`] so callers can retry or tell the operator.
    pub fn io(path: impl AsRef<Path>, action: impl Into<String>, source: io::Error) -> Error {
        // An `Error` that travelled through an `io::Write` adapter comes back as itself.
        if source.get_ref().is_some_and(|e| e.is::<Error>()) {
            if let Ok(inner) = source.into_inner().expect("checked above").downcast::<Error>() {
                return *inner;
            }
            unreachable!("checked above");
        }
        let path = path.as_ref().to_path_buf();
        let action = action.into();
        if is_disk_full(&source) {
            Error::DiskFull { path, action }
        } else {
            Error::Io { path, action, source }
        }
    }

    pub(crate) fn corrupt(entry: Option<&str>, detail: impl Into<String>) -> Error {
        Error::ArchiveCorrupt {
            entry: entry.map(str::to_owned),
            detail: detail.into(),
        }
    }

    pub(crate) fn bomb(entry: Option<&str>, detail: impl Into<String>) -> Error {
        Error::ArchiveBomb {
            entry: entry.map(str::to_owned),
            detail: detail.into(),
        }
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
