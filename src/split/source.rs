//! Sources: what kind of input a path is (decided by its content, not its name), and
//! its index — every regular file it holds, in source order, with where its bytes
//! are. The index is built once, checked for unsafe and duplicate names, and then
//! read by the planner and the packers.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::names::DosTime;
use super::sparse::{Expand, ExpandRead, SparseMap};
use super::tarread::Ignored;
use super::{tarheader, tarread, zipread};
use crate::error::{Error, Result};

/// Caps that keep hostile or accidental inputs from exhausting memory or disk.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Limits {
    /// Largest single entry, uncompressed.
    pub max_entry_bytes: u64,
    /// Largest source, uncompressed, all entries together.
    pub max_total_bytes: u64,
    /// Highest expansion ratio accepted for entries (and gzip streams) above `ratio_floor_bytes`.
    pub max_ratio: u64,
    pub ratio_floor_bytes: u64,
    /// Most entries a source may hold (bounds the memory of the index).
    pub max_entries: usize,
    /// Largest manifest read into memory.
    pub max_manifest_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_bytes: 64 << 30,
            max_total_bytes: 4 << 40,
            max_ratio: 200,
            ratio_floor_bytes: 1 << 20,
            max_entries: 4_000_000,
            max_manifest_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Zip,
    Tar,
    #[serde(rename = "tar.gz")]
    TarGz,
    Dir,
}

/// Where an entry's bytes are.
#[derive(Debug, Clone)]
pub enum Loc {
    /// Inside a ZIP: raw data at `data_start`, `csize` bytes, compressed with `method`.
    Zip { data_start: u64, csize: u64, method: u16 },
    /// Inside a plain tar: stored data at this offset, uncompressed; a sparse
    /// file's map says where those bytes go in the real file.
    Tar { data_start: u64, sparse: Option<Box<SparseMap>> },
    /// Inside a compressed tar: reachable only by streaming it again.
    Stream,
    /// A file of a directory source: at the source's path joined with the
    /// entry's name (kept once, not per entry).
    File,
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Normalised relative path.
    pub name: String,
    pub size: u64,
    pub time: DosTime,
    /// Known up front for ZIP and TAR.GZ entries.
    pub crc: Option<u32>,
    pub loc: Loc,
}

pub struct Source {
    pub path: PathBuf,
    pub kind: SourceKind,
    pub stem: String,
    pub entries: Vec<Entry>,
    captured: HashMap<String, Arc<[u8]>>,
    /// Metadata entries (volume labels, ACLs) skipped while indexing.
    pub ignored: Ignored,
}

/// Decides the kind of `path` from its first bytes.
pub fn detect(path: &Path) -> Result<SourceKind> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, "reading", e))?;
    if meta.is_dir() {
        return Ok(SourceKind::Dir);
    }
    if !meta.is_file() {
        return Err(Error::InvalidArgument(format!(
            "{} is neither a regular file nor a directory",
            path.display()
        )));
    }
    let mut head = [0u8; 512];
    let mut f = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]).map_err(|e| Error::io(path, "reading", e))? {
            0 => break,
            n => got += n,
        }
    }
    let head = &head[..got];
    if head.is_empty() {
        return Err(Error::corrupt(None, "the source is an empty file"));
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(SourceKind::Zip);
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(SourceKind::TarGz);
    }
    if head.len() == 512 && (&head[257..262] == b"ustar" || tarheader::checksum_ok(head)) {
        return Ok(SourceKind::Tar);
    }
    if let Some((format, tool)) = outer_compression(head) {
        return Err(Error::UnsupportedFormat {
            detail: format!("the source is compressed with {format}; batchd reads ZIP, TAR, TAR.GZ and directories: decompress it first ({tool}) or repack it as .tar.gz"),
        });
    }
    // Bytes before a ZIP (a self-extractor's stub, a zipapp's #! line, padding):
    // like unzip, bsdtar and Python, find the end record and work back from it.
    let len = meta.len();
    if zipread::find_directory(&f, path, len).is_ok() {
        return Ok(SourceKind::Zip);
    }
    Err(Error::corrupt(
        None,
        "not a ZIP, TAR or TAR.GZ archive (unrecognised first bytes, and no ZIP end record)",
    ))
}

/// Compressions and archive formats batchd does not read, by their magic bytes,
/// so the refusal says what the file is instead of "unrecognised".
fn outer_compression(head: &[u8]) -> Option<(&'static str, &'static str)> {
    const KNOWN: &[(&[u8], &str, &str)] = &[
        (b"BZh", "bzip2", "bunzip2"),
        (b"\xFD7zXZ\x00", "xz", "unxz"),
        (b"\x28\xB5\x2F\xFD", "zstd", "unzstd"),
        (b"\x1F\x9D", "Unix compress (.Z)", "uncompress"),
        (b"\x1F\xA0", "LZH compress", "gzip -d"),
        (b"LZIP", "lzip", "lzip -d"),
        (b"\x04\x22\x4D\x18", "LZ4", "unlz4"),
        (b"\x89LZO", "lzop", "lzop -d"),
        (b"7z\xBC\xAF\x27\x1C", "7-Zip (.7z)", "7z x"),
        (b"Rar!\x1A\x07", "RAR", "unrar x"),
    ];
    KNOWN.iter().find(|(magic, _, _)| head.starts_with(magic)).map(|&(_, f, t)| (f, t))
}

/// The file-name endings of archive sources, longest first.
pub const ARCHIVE_SUFFIXES: [&str; 4] = [".tar.gz", ".tgz", ".tar", ".zip"];

/// The part-name stem: the file name without its archive extensions.
pub fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "source".into());
    let lower = name.to_ascii_lowercase();
    for ext in ARCHIVE_SUFFIXES {
        if lower.ends_with(ext) && lower.len() > ext.len() {
            return name[..name.len() - ext.len()].to_owned();
        }
    }
    name
}

impl Source {
    /// Indexes `path`. `capture` names entries whose content the caller will want
    /// (manifest candidates), so a stream is never decoded just to fetch them.
    /// `exclude` keeps the output directory out of a directory source.
    pub fn open(path: &Path, limits: &Limits, capture: &dyn Fn(&str) -> bool, exclude: Option<&Path>) -> Result<Source> {
        let kind = detect(path)?;
        let mut ignored = Ignored::default();
        let (entries, captured) = match kind {
            SourceKind::Zip => (zipread::index(path, limits)?, HashMap::new()),
            SourceKind::Tar | SourceKind::TarGz => {
                let idx = tarread::index(path, kind == SourceKind::TarGz, limits, capture)?;
                ignored = idx.ignored;
                (idx.entries, idx.captured)
            }
            SourceKind::Dir => (index_dir(path, limits, exclude)?, HashMap::new()),
        };
        let mut src = Source::from_index(path, kind, entries, captured)?;
        src.ignored = ignored;
        Ok(src)
    }

    /// Builds a source from an index made elsewhere (the TAR.GZ single pass),
    /// applying the same checks as [`Source::open`].
    pub fn from_index(path: &Path, kind: SourceKind, entries: Vec<Entry>, captured: HashMap<String, Arc<[u8]>>) -> Result<Source> {
        super::names::check_unique(entries.len(), |i| entries[i].name.as_str())?;
        let stem = if kind == SourceKind::Dir {
            let canon = fs::canonicalize(path).map_err(|e| Error::io(path, "resolving", e))?;
            canon
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "source".into())
        } else {
            stem(path)
        };
        Ok(Source {
            path: path.to_owned(),
            kind,
            stem,
            entries,
            captured,
            ignored: Ignored::default(),
        })
    }

    /// Whether entries can be read in any order (ZIP, TAR, directory) or only by
    /// streaming the source front to back (TAR.GZ).
    pub fn random_access(&self) -> bool {
        self.kind != SourceKind::TarGz
    }

    /// Reads a small entry (a manifest) whole.
    pub fn read_small(&self, idx: usize, max: u64) -> Result<Arc<[u8]>> {
        let e = &self.entries[idx];
        let too_big = || Error::ManifestInvalid {
            manifest: e.name.clone(),
            line: 1,
            detail: format!("{} bytes is over the manifest limit of {max} bytes", e.size),
        };
        if e.size > max {
            return Err(too_big());
        }
        match &e.loc {
            Loc::Zip { .. } => zipread::read_entry(&self.path, e, max).map(Into::into),
            Loc::Stream => self
                .captured
                .get(&e.name)
                .cloned()
                .ok_or_else(|| Error::corrupt(Some(&e.name), "entry content was not captured while indexing")),
            Loc::Tar { data_start, sparse } => {
                let f = File::open(&self.path).map_err(|err| Error::io(&self.path, "opening", err))?;
                let mut buf = vec![0u8; e.size as usize];
                let stored = sparse.as_ref().map_or(e.size, |m| m.stored());
                let at = tar_data(&f, *data_start, stored);
                let read = match sparse {
                    None => {
                        let mut r = at;
                        r.read_exact(&mut buf)
                    }
                    Some(m) => ExpandRead {
                        expand: Expand::new((**m).clone()),
                        stored: at,
                    }
                    .read_exact(&mut buf),
                };
                read.map_err(|err| Error::io(&self.path, "reading", err))?;
                Ok(buf.into())
            }
            Loc::File => {
                let p = &self.path.join(&e.name);
                let data = fs::read(p).map_err(|err| Error::io(p, "reading", err))?;
                if data.len() as u64 > max {
                    return Err(too_big());
                }
                Ok(data.into())
            }
        }
    }
}

/// Reads the stored bytes `[data_start, data_start + stored)` of a plain tar with
/// positioned reads, so parallel packers share nothing.
pub fn tar_data(file: &File, data_start: u64, stored: u64) -> AtReader<'_> {
    AtReader {
        file,
        pos: data_start,
        end: data_start + stored,
    }
}

pub struct AtReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for AtReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = ((self.end - self.pos) as usize).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Walks a directory source in name order; regular files only.
fn index_dir(root: &Path, limits: &Limits, exclude: Option<&Path>) -> Result<Vec<Entry>> {
    let exclude = exclude.and_then(|p| fs::canonicalize(p).ok());
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        if exclude.as_deref().is_some_and(|ex| fs::canonicalize(&dir).is_ok_and(|c| c == ex)) {
            continue;
        }
        let mut items: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, "listing", e))?
            .map(|r| r.map_err(|e| Error::io(&dir, "listing", e)))
            .collect::<Result<_>>()?;
        items.sort_by_key(|d| d.file_name());
        let mut subdirs = Vec::new();
        for item in items {
            let os_name = item.file_name();
            let Some(name) = os_name.to_str() else {
                return Err(Error::UnsafePath {
                    entry: format!("{prefix}{}", os_name.to_string_lossy()),
                    reason: "is not valid UTF-8".into(),
                });
            };
            let rel = format!("{prefix}{name}");
            let meta = fs::symlink_metadata(item.path()).map_err(|e| Error::io(item.path(), "reading metadata of", e))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                return Err(Error::UnsupportedEntry {
                    entry: rel,
                    kind: "a symbolic link".into(),
                });
            } else if ft.is_dir() {
                subdirs.push((item.path(), format!("{rel}/")));
            } else if ft.is_file() {
                if out.len() >= limits.max_entries {
                    return Err(Error::bomb(None, format!("more than {} files", limits.max_entries)));
                }
                zipread::check_size(&rel, meta.len(), meta.len(), limits, &mut total)?;
                out.push(Entry {
                    name: rel,
                    size: meta.len(),
                    time: DosTime::from_unix(meta.mtime()),
                    crc: None,
                    loc: Loc::File,
                });
            } else {
                return Err(Error::UnsupportedEntry {
                    entry: rel,
                    kind: "a special file (device, fifo or socket)".into(),
                });
            }
        }
        // Depth-first in name order: push in reverse so the smallest name pops first.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}
