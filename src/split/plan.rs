//! Planning: resolve every manifest row to a file of the source, pick the file
//! column when none is given, apply the missing-file policy, and cut the kept rows
//! into parts of `batch_size` rows, each with its manifest bytes, its files in
//! source order and a fingerprint that identifies the part's exact content.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

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
    pub manifest: Vec<u8>,
    /// Goes into the part's ZIP comment; a rerun keeps a part only if it matches.
    pub comment: String,
}

#[derive(Debug)]
pub struct Plan {
    pub manifest: Manifest,
    pub file_column: String,
    pub rows: usize,
    pub skipped: Vec<SkippedRow>,
    pub unreferenced: Vec<String>,
    pub parts: Vec<PartPlan>,
}

enum Miss {
    Missing,
    Ambiguous(Vec<usize>),
}

/// Looks manifest values up among the files below the manifest's folder.
struct Resolver<'a> {
    by_path: HashMap<&'a str, usize>,
    by_base: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Resolver<'a> {
    fn new(entries: &'a [Entry], root: &str, manifest_idx: Option<usize>) -> Self {
        let mut by_path = HashMap::with_capacity(entries.len());
        let mut by_base: HashMap<&str, Vec<usize>> = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            if Some(i) == manifest_idx {
                continue;
            }
            if let Some(rel) = e.name.strip_prefix(root) {
                by_path.insert(rel, i);
                by_base.entry(names::basename(rel)).or_default().push(i);
            }
        }
        Resolver { by_path, by_base }
    }

    fn resolve(&self, value: &[u8]) -> std::result::Result<usize, Miss> {
        let Some(key) = value_key(value) else { return Err(Miss::Missing) };
        if let Some(&i) = self.by_path.get(key.as_str()) {
            return Ok(i);
        }
        if key.contains('/') {
            return Err(Miss::Missing);
        }
        match self.by_base.get(key.as_str()).map(Vec::as_slice) {
            Some([one]) => Ok(*one),
            Some(many) if many.len() > 1 => Err(Miss::Ambiguous(many.to_vec())),
            _ => Err(Miss::Missing),
        }
    }
}

/// The lookup key of a manifest value: trimmed, backslashes as slashes, `./`
/// dropped; `None` for values that can never name a file of the source.
pub fn value_key(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?.trim().replace('\\', "/");
    match names::normalize(&value) {
        Ok(Name::File(key)) => Some(key),
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
            let counts: Vec<usize> = (0..manifest.headers.len())
                // An ambiguous bare name still shows that the column names files.
                .map(|c| {
                    manifest
                        .rows
                        .iter()
                        .filter(|r| r.fields.get(c).is_some_and(|v| !matches!(resolver.resolve(v), Err(Miss::Missing))))
                        .count()
                })
                .collect();
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
    let mut kept: Vec<(usize, usize)> = Vec::with_capacity(manifest.rows.len()); // (row, entry)
    let mut skipped = Vec::new();
    for (ri, row) in manifest.rows.iter().enumerate() {
        let value = row.fields.get(column).unwrap_or_default();
        match resolver.resolve(value) {
            Ok(e) => kept.push((ri, e)),
            Err(miss) => {
                let value = String::from_utf8_lossy(value).into_owned();
                if let Miss::Ambiguous(c) = miss {
                    return Err(Error::AmbiguousFile {
                        manifest: manifest.display.clone(),
                        line: row.line,
                        value,
                        candidates: c.iter().map(|&i| src.entries[i].name.clone()).collect(),
                    });
                }
                match opts.on_missing_file {
                    OnMissing::Fail => {
                        return Err(Error::MissingFile {
                            manifest: manifest.display.clone(),
                            line: row.line,
                            value,
                        })
                    }
                    OnMissing::Skip => skipped.push(SkippedRow { line: row.line, value }),
                }
            }
        }
    }
    if kept.is_empty() {
        return Err(Error::ManifestEmpty {
            manifest: manifest.display.clone(),
            detail: format!("has no row whose file is in the source ({} skipped)", skipped.len()),
        });
    }

    let mut referenced = vec![false; src.entries.len()];
    for &(_, e) in &kept {
        referenced[e] = true;
    }
    let unreferenced = src
        .entries
        .iter()
        .enumerate()
        .filter(|&(i, _)| !referenced[i] && Some(i) != manifest_idx)
        .map(|(_, e)| e.name.clone())
        .collect();

    let total_parts = kept.len().div_ceil(opts.batch_size);
    let mut parts = Vec::with_capacity(total_parts);
    for (k, chunk) in kept.chunks(opts.batch_size).enumerate() {
        let n = k + 1;
        let mut files: Vec<usize> = chunk.iter().map(|&(_, e)| e).collect();
        files.sort_unstable();
        files.dedup();
        let rows = chunk.iter().map(|&(r, _)| &manifest.rows[r]);
        let part_manifest = manifest.part_bytes(rows);
        let payload_bytes = files.iter().map(|&i| src.entries[i].size).sum();
        let comment = fingerprint(&src.entries, &manifest, opts.compression, n, total_parts, &part_manifest, &files);
        parts.push(PartPlan {
            n,
            file_name: format!("{}-part{n}.zip", src.stem),
            rows: chunk.len(),
            first_line: manifest.rows[chunk[0].0].line,
            last_line: manifest.rows[chunk[chunk.len() - 1].0].line,
            files,
            payload_bytes,
            manifest: part_manifest,
            comment,
        });
    }
    let file_column = manifest.headers.get(column).cloned().unwrap_or_default();
    Ok(Plan {
        rows: kept.len(),
        manifest,
        file_column,
        skipped,
        unreferenced,
        parts,
    })
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
    format!("batchd part {n}/{total} plan {}", &super::zipwrite::hex(&digest)[..32])
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
