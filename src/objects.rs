//! Sources in object storage: `s3://bucket/key.zip` (one object) and
//! `s3://bucket/prefix/` (every archive under the prefix, narrowed by
//! `regex_filter` and `max_files`), read from `[s3]`'s endpoint in the
//! buckets `s3.allowed_buckets` names. A prefix is expanded once, at submit
//! time, into the keys it held, so a job's sources never change under it.
//!
//! An object is fetched whole to the spool (`DATA_DIR/spool/{job}/{n}/`)
//! before it is planned, and the local copy is split like any file, then
//! removed when the job ends. Ranged reads were weighed: every byte of a
//! source goes into some part anyway, so ranged GETs save no transfer, and
//! they cost one request per entry (200,000 for a 200,000-file ZIP) where
//! one streamed GET runs at the link's speed.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::glob::Selection;

/// `s3://bucket/key` split into its bucket and key.
pub fn parse(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, key))
}

pub fn is_s3(source: &str) -> bool {
    source.starts_with("s3://")
}

/// A prefix (ends with `/`, or is the whole bucket) rather than one object.
pub fn is_prefix(source: &str) -> bool {
    parse(source).is_some_and(|(_, key)| key.is_empty() || key.ends_with('/'))
}

fn is_archive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    crate::split::source::ARCHIVE_SUFFIXES.iter().any(|e| k.ends_with(e))
}

fn client(config: &Config, bucket: &str) -> Result<crate::s3::Client, String> {
    if !config.s3.configured() {
        return Err("s3:// sources need [s3] with an endpoint in the configuration".into());
    }
    if !config.s3.allowed_buckets.iter().any(|b| b == bucket) {
        return Err(format!(
            "bucket {bucket:?} is not in s3.allowed_buckets ({}); ask the operator to allow it",
            if config.s3.allowed_buckets.is_empty() {
                "empty".to_owned()
            } else {
                config.s3.allowed_buckets.join(", ")
            }
        ));
    }
    config.s3.client(bucket).map_err(|e| format!("{e:#}"))
}

/// Checks that one object source is allowed and there.
pub fn check(config: &Config, source: &str) -> Result<(), String> {
    let (bucket, key) = parse(source).ok_or_else(|| format!("{source:?} is not s3://bucket/key"))?;
    let c = client(config, bucket)?;
    match c.head(key) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{source}: no such object")),
        Err(e) => Err(format!("{source}: {e}")),
    }
}

/// The archives under a prefix source, by key, narrowed by `selection`.
pub fn expand(config: &Config, source: &str, selection: &Selection) -> Result<Vec<String>, String> {
    let (bucket, prefix) = parse(source).ok_or_else(|| format!("{source:?} is not s3://bucket/prefix/"))?;
    let c = client(config, bucket)?;
    let objects = c.list(prefix).map_err(|e| format!("{source}: {e}"))?;
    let urls: Vec<PathBuf> = objects
        .iter()
        .filter(|o| is_archive(&o.key))
        .map(|o| PathBuf::from(format!("s3://{bucket}/{}", o.key)))
        .collect();
    Ok(selection
        .apply(urls)
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect())
}

/// The local copy of source `n` of a job, fetched now unless it is there
/// (fetched to a temp name, renamed when whole).
pub fn local_copy(config: &Config, job_id: &str, n: i64, source: &str) -> Result<PathBuf, crate::error::Error> {
    let io = |path: &Path, action: &str, e: std::io::Error| crate::error::Error::io(path, action, e);
    let (bucket, key) = parse(source).ok_or_else(|| crate::error::Error::InvalidArgument(format!("{source:?} is not s3://bucket/key")))?;
    let name = key.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("source");
    let dir = spool(config, job_id).join(n.to_string());
    let path = dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, "creating the spool directory", e))?;
    let temp = dir.join(format!(".{name}.partial"));
    let c = client(config, bucket).map_err(|e| io(&temp, "fetching", std::io::Error::other(e)))?;
    c.download(key, &temp).map_err(|e| crate::error::Error::Io {
        path: temp.clone(),
        action: format!("fetching {source}"),
        source: std::io::Error::other(e.to_string()),
    })?;
    std::fs::rename(&temp, &path).map_err(|e| io(&path, "renaming the fetched source", e))?;
    Ok(path)
}

/// Where a job's fetched sources are kept while it runs.
pub fn spool(config: &Config, job_id: &str) -> PathBuf {
    config.data_dir.join("spool").join(job_id)
}
