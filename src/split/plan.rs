//! Planning: resolve every manifest row to a file of the source, pick the file
//! column when none is given, apply the missing-file policy, and cut the kept rows
//! into parts of `batch_size` rows, each with its manifest bytes, its files in
//! source order and a fingerprint that identifies the part's exact content.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::lookup::{Filter, Found, NameTable};
use super::manifest::Manifest;
use super::names::{self, Name};
use super::source::{Entry, Source};
use super::{Compression, OnMissing, SplitOptions};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct SkippedRow {
    pub line: u64,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct PartPlan {
    pub n: usize,
    pub file_name: String,
    pub rows: usize,
    pub first_line: u64,
    pub last_line: u64,
    /// Entry indices, in source order, each once.
    pub files: Vec<usize>,
    /// Sum of the files' sizes.
    pub payload_bytes: u64,
    /// This part's rows: a range of [`Plan::kept`].
    pub kept: std::ops::Range<usize>,
    /// Goes into the part's ZIP comment; a rerun keeps a part only if it matches.
    pub comment: String,
}

#[derive(Debug)]
pub struct Plan {
    pub manifest: Manifest,
    pub file_column: String,
    pub rows: usize,
    /// The rows packed, in manifest order (row indices); parts are consecutive ranges of it.
    pub kept: Vec<u32>,
    pub skipped: Vec<SkippedRow>,
    pub unreferenced: Vec<String>,
    pub parts: Vec<PartPlan>,
    /// Parts (by number) over `max_part_bytes`: each is one file larger than the cap.
    pub oversized: Vec<usize>,
}

impl Plan {
    /// The bytes of `part`'s manifest, made when the part is written rather than
    /// kept for every part (they add up to the whole manifest again).
    pub fn part_manifest(&self, part: &PartPlan) -> Vec<u8> {
        self.manifest
            .part_bytes(self.kept[part.kept.clone()].iter().map(|&r| &self.manifest.rows[r as usize]))
    }
}

enum Miss {
    Missing,
    /// Several files have this bare name.
    Ambiguous(String),
}

/// Looks manifest values up among the files below the manifest's folder, by
/// relative path or by bare name (see [`super::lookup`] for why a table of our
/// own).
struct Resolver<'a> {
    entries: &'a [Entry],
    root: &'a str,
    by_path: NameTable,
    by_base: NameTable,
    /// Every key of both tables.
    known: Filter,
}

impl<'a> Resolver<'a> {
    fn new(entries: &'a [Entry], root: &'a str, manifest_idx: Option<usize>) -> Self {
        let mut r = Resolver {
            entries,
            root,
            by_path: NameTable::with_capacity(entries.len()),
            by_base: NameTable::with_capacity(entries.len()),
            known: Filter::with_capacity(entries.len() * 2),
        };
        let rel = |i: u32| relative(&entries[i as usize].name, root);
        for (i, e) in entries.iter().enumerate() {
            if Some(i) == manifest_idx || !e.name.starts_with(root) {
                continue;
            }
            let name = rel(i as u32);
            r.by_path.insert(name, i as u32, rel);
            r.by_base.insert(names::basename(name), i as u32, |j| names::basename(rel(j)));
            r.known.insert(name);
            r.known.insert(names::basename(name));
        }
        r
    }

    fn rel(&self, i: u32) -> &'a str {
        relative(&self.entries[i as usize].name, self.root)
    }

    fn resolve(&self, value: &[u8]) -> std::result::Result<usize, Miss> {
        let Some(key) = value_key(value) else { return Err(Miss::Missing) };
        let key = key.as_ref();
        if !self.known.may_contain(key) {
            return Err(Miss::Missing);
        }
        if let Some(Found::One(i) | Found::Shared(i)) = self.by_path.get(key, |i| self.rel(i)) {
            return Ok(i as usize);
        }
        if key.contains('/') {
            return Err(Miss::Missing);
        }
        match self.by_base.get(key, |i| names::basename(self.rel(i))) {
            None => Err(Miss::Missing),
            Some(Found::One(i)) => Ok(i as usize),
            Some(Found::Shared(_)) => Err(Miss::Ambiguous(key.to_owned())),
        }
    }

    /// Every entry whose bare name is `key` (for the error that lists them).
    fn sharing(&self, key: &str) -> Vec<String> {
        (0..self.entries.len() as u32)
            .filter(|&i| self.entries[i as usize].name.starts_with(self.root) && names::basename(self.rel(i)) == key)
            .map(|i| self.entries[i as usize].name.clone())
            .collect()
    }
}

/// The lookup key of a manifest value: trimmed, backslashes as slashes, `./`
/// dropped; `None` for values that can never name a file of the source. Values
/// already in that form (nearly all) are borrowed, not copied.
pub fn value_key(value: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let value = std::str::from_utf8(value).ok()?.trim();
    if names::is_canonical(value) {
        return Some(std::borrow::Cow::Borrowed(value));
    }
    match names::normalize(&value.replace('\\', "/")) {
        Ok(Name::File(key)) => Some(std::borrow::Cow::Owned(key)),
        _ => None,
    }
}

const FILE_HEADERS: &[&str] = &[
    "file",
    "filename",
    "file_name",
    "path",
    "filepath",
    "file_path",
    "image",
    "imagename",
    "image_name",
];

pub fn build(src: &Source, opts: &SplitOptions) -> Result<Plan> {
    let manifest_idx = super::manifest::locate(&src.entries, &opts.manifest)?;
    let explicit_manifest = opts.manifest != super::DEFAULT_MANIFEST;
    let manifest = match manifest_idx {
        Some(i) => Manifest::parse(&src.entries[i].name, src.read_small(i, opts.limits.max_manifest_bytes)?)?,
        None if explicit_manifest => {
            return Err(Error::ManifestMissing {
                name: opts.manifest.clone(),
            })
        }
        None => Manifest::synthesise(&src.entries.iter().collect::<Vec<_>>())?,
    };
    let resolver = Resolver::new(&src.entries, &manifest.root, manifest_idx);

    let column = match (&opts.file_column, manifest.entry.is_some()) {
        (Some(c), _) => manifest.column(c)?,
        (None, false) => 0,
        (None, true) => {
            // An ambiguous bare name still shows that the column names files.
            let mut counts = vec![0usize; manifest.headers.len()];
            manifest.each_record(|_, rec| {
                for (c, v) in rec.iter().enumerate() {
                    if !matches!(resolver.resolve(v), Err(Miss::Missing)) {
                        counts[c] += 1;
                    }
                }
            });
            let best = (0..counts.len())
                .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
                .filter(|&c| counts[c] > 0);
            // When no value matches, a column plainly named for files is still the
            // file column: the user then hears which rows name missing files.
            let named = || {
                let norm = |h: &str| h.to_ascii_lowercase().replace([' ', '-'], "_");
                manifest.headers.iter().position(|h| FILE_HEADERS.contains(&norm(h).as_str()))
            };
            best.or_else(named).ok_or_else(|| Error::ManifestNoFileColumn {
                manifest: manifest.display.clone(),
                headers: manifest.headers.clone(),
            })?
        }
    };

    // Resolve every row; decide what happens to rows whose file is absent.
    let mut kept: Vec<u32> = Vec::with_capacity(manifest.rows.len());
    let mut files_of: Vec<u32> = Vec::with_capacity(manifest.rows.len());
    let mut skipped = Vec::new();
    let mut failure: Option<Error> = None;
    manifest.each_record(|ri, rec| {
        if failure.is_some() {
            return;
        }
        let value = rec.get(column).unwrap_or_default();
        let line = manifest.rows[ri].line;
        match resolver.resolve(value) {
            Ok(e) => {
                kept.push(ri as u32);
                files_of.push(e as u32);
            }
            Err(miss) => {
                let value = String::from_utf8_lossy(value).into_owned();
                if let Miss::Ambiguous(key) = miss {
                    failure = Some(Error::AmbiguousFile {
                        manifest: manifest.display.clone(),
                        line,
                        value,
                        candidates: resolver.sharing(&key),
                    });
                    return;
                }
                match opts.on_missing_file {
                    OnMissing::Fail => {
                        failure = Some(Error::MissingFile {
                            manifest: manifest.display.clone(),
                            line,
                            value,
                        })
                    }
                    OnMissing::Skip => skipped.push(SkippedRow { line, value }),
                }
            }
        }
    });
    if let Some(err) = failure {
        return Err(err);
    }
    if kept.is_empty() {
        return Err(Error::ManifestEmpty {
            manifest: manifest.display.clone(),
            detail: format!("has no row whose file is in the source ({} skipped)", skipped.len()),
        });
    }

    let mut referenced = vec![false; src.entries.len()];
    for &e in &files_of {
        referenced[e as usize] = true;
    }
    let unreferenced = src
        .entries
        .iter()
        .enumerate()
        .filter(|&(i, _)| !referenced[i] && Some(i) != manifest_idx)
        .map(|(_, e)| e.name.clone())
        .collect();

    let ranges = cut(&files_of, |e| src.entries[e as usize].size, opts.batch_size, opts.max_part_bytes);
    let total_parts = ranges.len();
    let mut parts = Vec::with_capacity(total_parts);
    let mut oversized = Vec::new();
    for (k, range) in ranges.into_iter().enumerate() {
        let n = k + 1;
        let mut files: Vec<usize> = files_of[range.clone()].iter().map(|&e| e as usize).collect();
        files.sort_unstable();
        files.dedup();
        let part_manifest = manifest.part_bytes(kept[range.clone()].iter().map(|&r| &manifest.rows[r as usize]));
        let payload_bytes = files.iter().map(|&i| src.entries[i].size).sum();
        if opts.max_part_bytes.is_some_and(|cap| payload_bytes > cap) {
            oversized.push(n);
        }
        let comment = fingerprint(&src.entries, &manifest, opts.compression, n, total_parts, &part_manifest, &files);
        parts.push(PartPlan {
            n,
            file_name: format!("{}-part{n}.zip", src.stem),
            rows: range.len(),
            first_line: manifest.rows[kept[range.start] as usize].line,
            last_line: manifest.rows[kept[range.end - 1] as usize].line,
            files,
            payload_bytes,
            kept: range,
            comment,
        });
    }
    let file_column = manifest.headers.get(column).cloned().unwrap_or_default();
    Ok(Plan {
        rows: kept.len(),
        manifest,
        file_column,
        kept,
        skipped,
        unreferenced,
        parts,
        oversized,
    })
}

/// Cuts the kept rows (given as the entry each names) into consecutive parts:
/// a part closes before it would pass `batch` rows or, with `max_bytes`,
/// before its files (each counted once) would pass that many bytes. A file
/// larger than `max_bytes` on its own gets a part of its own, never split.
fn cut(files_of: &[u32], size: impl Fn(u32) -> u64, batch: usize, max_bytes: Option<u64>) -> Vec<std::ops::Range<usize>> {
    let Some(cap) = max_bytes else {
        return (0..files_of.len().div_ceil(batch))
            .map(|k| k * batch..((k + 1) * batch).min(files_of.len()))
            .collect();
    };
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    let mut in_part = std::collections::HashSet::new();
    for (i, &e) in files_of.iter().enumerate() {
        let add = if in_part.contains(&e) { 0 } else { size(e) };
        if i > start && (i - start == batch || bytes.saturating_add(add) > cap) {
            ranges.push(start..i);
            (start, bytes) = (i, 0);
            in_part.clear();
        }
        let add = if in_part.insert(e) { size(e) } else { 0 };
        bytes = bytes.saturating_add(add);
    }
    if start < files_of.len() {
        ranges.push(start..files_of.len());
    }
    ranges
}

pub fn fingerprint(
    entries: &[Entry],
    manifest: &Manifest,
    compression: Compression,
    n: usize,
    total: usize,
    part_manifest: &[u8],
    files: &[usize],
) -> String {
    let mut h = Sha256::new();
    h.update(b"batchd-part-v1\0");
    h.update([compression as u8]);
    h.update(manifest.part_name().as_bytes());
    h.update((part_manifest.len() as u64).to_le_bytes());
    h.update(part_manifest);
    for &i in files {
        let e = &entries[i];
        h.update(part_entry_name(e, &manifest.root).as_bytes());
        h.update([0]);
        h.update(e.size.to_le_bytes());
        h.update(e.crc.unwrap_or(0).to_le_bytes());
        h.update(e.time.time.to_le_bytes());
        h.update(e.time.date.to_le_bytes());
    }
    let digest = h.finalize();
    format!("batchd part {n}/{total} plan {}", &crate::fsx::hex(&digest)[..32])
}

/// The name an entry gets inside a part: its path below the manifest's folder.
pub fn part_entry_name<'a>(e: &'a Entry, root: &str) -> &'a str {
    relative(&e.name, root)
}

/// `name` below the manifest's folder `root`.
pub fn relative<'a>(name: &'a str, root: &str) -> &'a str {
    name.strip_prefix(root).unwrap_or(name)
}

impl PartPlan {
    pub fn path(&self, out: &Path) -> std::path::PathBuf {
        out.join(&self.file_name)
    }
}
