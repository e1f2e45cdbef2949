//! ZIP input: parses the central directory (with ZIP64) into [`Entry`] rows, checks
//! the layout against hostile archives (entries out of bounds, overlapping entries,
//! size and ratio caps), and copies an entry's compressed bytes unchanged while
//! verifying its CRC on the way.
//!
//! Why not the `zip` crate (measured 2026-12-02 with zip 9.8.2, default features
//! off, deflate on zlib-rs): on the compatibility corpus (`tests/compat`) it reads
//! every ZIP that batchd reads but one (it refuses an end record whose comment is cut short,
//! which unzip, bsdtar and Python read), but opening a 200,000-entry ZIP costs it
//! 43 MiB (about 220 bytes an entry, before any manifest or plan) and a
//! 2,000,000-entry one 436 MiB, where the whole split here stays at 55 MiB for
//! 200,000 entries; and its raw copy does not verify the CRC, which we would
//! still have to inflate for ourselves. So this reader stays: the end-record
//! search with fall-back, the layout checks, and the verified raw copy.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use flate2::{Decompress, FlushDecompress, Status};

use super::names::{self, DosTime, Name};
use super::source::{Entry, Limits, Loc};
use crate::error::{Error, Result};

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LFH_SIG: u32 = 0x0403_4b50;

pub(crate) fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub(crate) fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
pub(crate) fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], at: u64) -> Result<()> {
    file.read_exact_at(buf, at).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupt(None, format!("truncated: needed bytes at offset {at} beyond the end of the file"))
        } else {
            Error::io(path, "reading", e)
        }
    })
}

/// Reads pieces of a file through one buffer. Reading each 1 KB entry (and,
/// while indexing, each local header) with its own `pread` cost 400,000 system
/// calls for 200,000 entries, a fifth of a split; so when a piece starts close
/// after the last one (a dense run of small entries) the window is refilled with
/// `WINDOW` bytes and the next pieces come from memory. A piece far from the
/// last one is read alone, so scattered entries read nothing extra.
pub struct Window<'f> {
    file: &'f File,
    path: &'f Path,
    /// Never read past this offset (the end of the entries' area).
    limit: u64,
    buf: Vec<u8>,
    start: u64,
    last_end: u64,
}

const WINDOW: usize = 256 * 1024;
/// A piece this close after the previous one counts as part of a dense run.
const DENSE_GAP: u64 = 8 * 1024;

impl<'f> Window<'f> {
    pub fn new(file: &'f File, path: &'f Path, limit: u64) -> Self {
        Window {
            file,
            path,
            limit,
            buf: Vec::new(),
            start: 0,
            last_end: u64::MAX,
        }
    }

    /// A window over the whole file.
    pub fn whole(file: &'f File, path: &'f Path) -> Result<Self> {
        let len = file.metadata().map_err(|e| Error::io(path, "reading metadata of", e))?.len();
        Ok(Window::new(file, path, len))
    }

    /// The `n` bytes at `at` (`n` at most `WINDOW` to stay within the buffer's size).
    pub fn get(&mut self, at: u64, n: usize) -> Result<&[u8]> {
        let end = at + n as u64;
        let hit = at >= self.start && end <= self.start + self.buf.len() as u64;
        if !hit {
            let dense = at >= self.last_end && at - self.last_end < DENSE_GAP;
            let want = if dense {
                (n.max(WINDOW) as u64).min(self.limit.saturating_sub(at)).max(n as u64)
            } else {
                n as u64
            };
            self.buf.resize(want as usize, 0);
            self.start = at;
            if let Err(e) = read_exact_at(self.file, self.path, &mut self.buf, at) {
                self.buf.clear();
                return Err(e);
            }
        }
        self.last_end = end;
        let from = (at - self.start) as usize;
        Ok(&self.buf[from..from + n])
    }
}

/// The end-of-central-directory facts we need.
pub(crate) struct Directory {
    pub entries: u64,
    /// Where the central directory really starts in the file.
    pub cd_offset: u64,
    pub cd_size: u64,
    pub comment: Vec<u8>,
    /// Bytes in front of the archive that its recorded offsets do not count (a
    /// self-extractor's stub glued on without `zip -A`, padding): added to every
    /// recorded offset, as unzip, bsdtar and Python do.
    pub shift: u64,
}

/// Finds the end record the way unzip, bsdtar and Python do: the last signature
/// in the final 64 KiB that describes a real central directory. A candidate that
/// does not (a `PK\5\6` inside a comment, a `PK\6\7` inside a name) gives way
/// to an earlier one; a comment cut short is taken as far as it goes.
pub(crate) fn find_directory(file: &File, path: &Path, len: u64) -> Result<Directory> {
    if len < 22 {
        return Err(Error::corrupt(None, format!("{len} bytes is too short to be a ZIP archive")));
    }
    let tail_len = len.min(22 + 65_535 + 20) as usize;
    let mut tail = vec![0u8; tail_len];
    let base = len - tail_len as u64;
    read_exact_at(file, path, &mut tail, base)?;
    let mut first_err = None;
    for i in (0..=tail_len - 22).rev().filter(|&i| u32le(&tail, i) == EOCD_SIG) {
        match candidate(file, path, &tail, base, i) {
            Ok(d) => return Ok(d),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| Error::corrupt(None, "no end-of-central-directory record (truncated or not a ZIP)")))
}

fn candidate(file: &File, path: &Path, tail: &[u8], base: u64, i: usize) -> Result<Directory> {
    let eocd = &tail[i..];
    let eocd_at = base + i as u64;
    let clen = u16le(eocd, 20) as usize;
    let comment = eocd[22..(22 + clen).min(eocd.len())].to_vec();
    let (mut entries, mut cd_size, mut cd_offset) = (u16le(eocd, 10) as u64, u32le(eocd, 12) as u64, u32le(eocd, 16) as u64);
    let saturated = entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF;
    let mut multi_disk = u16le(eocd, 4) != 0 || u16le(eocd, 6) != 0;
    let mut cd_end = eocd_at;
    match zip64_record(file, path, tail, base, i)? {
        Some(z) => {
            // APPNOTE 4.4.1.4: with ZIP64, the classic fields (disks too) may be 0xFFFF.
            (entries, cd_size, cd_offset, cd_end, multi_disk) = (z.entries, z.cd_size, z.cd_offset, z.at, z.multi_disk);
        }
        None if saturated => {
            return Err(Error::corrupt(
                None,
                "the end record's fields are saturated but no ZIP64 end record precedes it",
            ));
        }
        None => {}
    }
    if multi_disk {
        return Err(Error::corrupt(None, "multi-disk (spanned) ZIP archives are not supported"));
    }
    let cd_start = cd_end
        .checked_sub(cd_size)
        .ok_or_else(|| Error::corrupt(None, "central directory lies outside the archive (truncated?)"))?;
    let shift = cd_start
        .checked_sub(cd_offset)
        .ok_or_else(|| Error::corrupt(None, "central directory lies outside the archive (truncated?)"))?;
    if entries > 0 {
        let mut sig = [0u8; 4];
        read_exact_at(file, path, &mut sig, cd_start)?;
        if u32le(&sig, 0) != CDH_SIG {
            return Err(Error::corrupt(None, "the end record does not point at a central directory"));
        }
    }
    Ok(Directory {
        entries,
        cd_offset: cd_start,
        cd_size,
        comment,
        shift,
    })
}

struct Zip64 {
    at: u64,
    entries: u64,
    cd_size: u64,
    cd_offset: u64,
    multi_disk: bool,
}

/// The ZIP64 end record, when the 20 bytes before the end record are a real
/// locator: one whose record carries its own signature, where the locator says
/// or (with bytes in front of the archive) right before the locator.
fn zip64_record(file: &File, path: &Path, tail: &[u8], base: u64, i: usize) -> Result<Option<Zip64>> {
    if i < 20 || u32le(tail, i - 20) != ZIP64_LOCATOR_SIG {
        return Ok(None);
    }
    let loc = &tail[i - 20..i];
    let loc_at = base + (i - 20) as u64;
    let mut rec = [0u8; 56];
    for at in [Some(u64le(loc, 8)), loc_at.checked_sub(56)].into_iter().flatten() {
        if at.checked_add(56).is_none_or(|e| e > loc_at) {
            continue;
        }
        read_exact_at(file, path, &mut rec, at)?;
        if u32le(&rec, 0) != ZIP64_EOCD_SIG {
            continue;
        }
        return Ok(Some(Zip64 {
            at,
            entries: u64le(&rec, 32),
            cd_size: u64le(&rec, 40),
            cd_offset: u64le(&rec, 48),
            multi_disk: u32le(loc, 4) != 0 || u32le(loc, 16) > 1 || u32le(&rec, 16) != 0 || u32le(&rec, 20) != 0,
        }));
    }
    Ok(None)
}

/// Reads a ZIP's entries: regular files in central-directory order.
pub fn index(path: &Path, limits: &Limits) -> Result<Vec<Entry>> {
    let file = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
    let len = file.metadata().map_err(|e| Error::io(path, "reading metadata of", e))?.len();
    let dir = find_directory(&file, path, len)?;
    if dir.entries > limits.max_entries as u64 {
        return Err(Error::bomb(
            None,
            format!("{} entries exceed the limit of {}", dir.entries, limits.max_entries),
        ));
    }
    if dir.cd_size > dir.entries.saturating_mul(46 + 65_535 * 3).max(1 << 20) {
        return Err(Error::corrupt(None, "central directory size does not match its entry count"));
    }
    let mut cd = vec![0u8; dir.cd_size as usize];
    read_exact_at(&file, path, &mut cd, dir.cd_offset)?;

    let mut headers = Window::new(&file, path, dir.cd_offset);
    let mut out = Vec::with_capacity(dir.entries as usize);
    // (local header offset, end of data, name) for the overlap check.
    let mut spans: Vec<(u64, u64, usize)> = Vec::with_capacity(dir.entries as usize);
    let mut total: u64 = 0;
    let mut at = 0usize;
    for i in 0..dir.entries {
        if at + 46 > cd.len() || u32le(&cd, at) != CDH_SIG {
            return Err(Error::corrupt(None, format!("central directory entry {i} is damaged")));
        }
        let h = &cd[at..];
        let made_by_host = (u16le(h, 4) >> 8) as u8;
        let flags = u16le(h, 8);
        let method = u16le(h, 10);
        let mut time = DosTime {
            time: u16le(h, 12),
            date: u16le(h, 14),
        };
        let crc = u32le(h, 16);
        let mut csize = u32le(h, 20) as u64;
        let mut usize_ = u32le(h, 24) as u64;
        let (nlen, xlen, clen) = (u16le(h, 28) as usize, u16le(h, 30) as usize, u16le(h, 32) as usize);
        let ext_attr = u32le(h, 38);
        let mut lho = u32le(h, 42) as u64;
        if at + 46 + nlen + xlen + clen > cd.len() {
            return Err(Error::corrupt(None, format!("central directory entry {i} runs past the directory")));
        }
        let raw_name = &h[46..46 + nlen];
        let extra = &h[46 + nlen..46 + nlen + xlen];
        at += 46 + nlen + xlen + clen;

        let name = decode_name(raw_name, flags);
        // ZIP64 extended information: only the fields whose 32-bit value is saturated.
        let mut x = 0;
        while x + 4 <= extra.len() {
            let (id, sz) = (u16le(extra, x), u16le(extra, x + 2) as usize);
            let body = &extra[x + 4..(x + 4 + sz).min(extra.len())];
            if let Some(secs) = exact_time(id, body) {
                // The exact time, when the writer kept it, decides under the one rule
                // every source kind follows (see DosTime::from_unix).
                time = DosTime::from_unix(secs);
            }
            if id == 0x0001 {
                let mut p = 0;
                let mut take = |v: &mut u64| -> Result<()> {
                    if *v == 0xFFFF_FFFF {
                        if p + 8 > body.len() {
                            return Err(Error::corrupt(Some(&name), "ZIP64 extra field is too short"));
                        }
                        *v = u64le(body, p);
                        p += 8;
                    }
                    Ok(())
                };
                take(&mut usize_)?;
                take(&mut csize)?;
                take(&mut lho)?;
            }
            x += 4 + sz;
        }

        lho = lho
            .checked_add(dir.shift)
            .ok_or_else(|| Error::corrupt(Some(&name), "local header offset overflows"))?;
        let norm = names::normalize(&name)?;
        let file_type = if made_by_host == 3 { (ext_attr >> 16) & 0o170000 } else { 0 };
        match file_type {
            0 | 0o100000 | 0o040000 => {}
            0o120000 => {
                return Err(Error::UnsupportedEntry {
                    entry: name,
                    kind: "a symbolic link".into(),
                })
            }
            _ => {
                return Err(Error::UnsupportedEntry {
                    entry: name,
                    kind: "a special file (device, fifo or socket)".into(),
                })
            }
        }
        let is_dir = matches!(norm, Name::Dir(_) | Name::Root) || file_type == 0o040000;
        if flags & 1 != 0 {
            return Err(Error::UnsupportedEntry {
                entry: name,
                kind: "encrypted".into(),
            });
        }
        if method != 0 && method != 8 {
            return Err(Error::UnsupportedEntry {
                entry: name,
                kind: format!("compressed with method {method} (only stored and deflate are supported)"),
            });
        }
        // Some writers leave the low 32 bits in one classic size field and the
        // real value in the ZIP64 extra only for the other: a stored entry's two
        // sizes are one size, and the CRC check on copy proves the bytes.
        if method == 0 && csize != usize_ && csize & 0xFFFF_FFFF == usize_ & 0xFFFF_FFFF {
            csize = csize.max(usize_);
            usize_ = csize;
        }
        if method == 0 && csize != usize_ {
            return Err(Error::corrupt(
                Some(&name),
                "stored entry has different compressed and uncompressed sizes",
            ));
        }
        // Local header: its name and extra lengths decide where the data starts.
        if lho.checked_add(30).is_none_or(|e| e > dir.cd_offset) {
            return Err(Error::corrupt(Some(&name), "local header lies outside the archive"));
        }
        let lfh = headers.get(lho, 30)?;
        if u32le(lfh, 0) != LFH_SIG {
            return Err(Error::corrupt(Some(&name), "bad local header signature"));
        }
        let data_start = lho + 30 + u16le(lfh, 26) as u64 + u16le(lfh, 28) as u64;
        let data_end = data_start
            .checked_add(csize)
            .filter(|&e| e <= dir.cd_offset)
            .ok_or_else(|| Error::corrupt(Some(&name), "entry data runs past the central directory (truncated?)"))?;
        spans.push((lho, data_end, out.len()));
        check_size(&name, usize_, csize, limits, &mut total)?;
        if is_dir {
            // Directories carry no data; keep them out of the entry list but inside the overlap check.
            spans.last_mut().unwrap().2 = usize::MAX;
            continue;
        }
        let Name::File(norm) = norm else {
            unreachable!("directories handled above")
        };
        out.push(Entry {
            name: norm,
            size: usize_,
            time,
            crc: Some(crc),
            loc: Loc::Zip { data_start, csize, method },
        });
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            let which = |i: usize| out.get(i).map(|e| e.name.clone());
            return Err(Error::bomb(
                which(w[1].2).or(which(w[0].2)).as_deref(),
                "entries overlap each other (a zip bomb layout)",
            ));
        }
    }
    Ok(out)
}

/// The exact modification time from an extra field: the extended timestamp
/// (0x5455, Info-ZIP and bsdtar) or NTFS times (0x000A, 7-Zip and Windows).
fn exact_time(id: u16, body: &[u8]) -> Option<i64> {
    match id {
        0x5455 if body.len() >= 5 && body[0] & 1 != 0 => Some(u32le(body, 1) as i32 as i64),
        0x000A if body.len() >= 32 && u16le(body, 4) == 1 && u16le(body, 6) >= 24 => {
            let ticks = u64le(body, 8) as i128;
            i64::try_from(ticks.div_euclid(10_000_000) - 11_644_473_600).ok()
        }
        _ => None,
    }
}

/// Applies the per-entry, total and ratio caps to declared sizes.
pub(crate) fn check_size(name: &str, size: u64, csize: u64, limits: &Limits, total: &mut u64) -> Result<()> {
    if size > limits.max_entry_bytes {
        return Err(Error::bomb(
            Some(name),
            format!("declares {size} bytes, over the per-entry limit of {}", limits.max_entry_bytes),
        ));
    }
    *total = total.saturating_add(size);
    if *total > limits.max_total_bytes {
        return Err(Error::bomb(
            Some(name),
            format!("total size passes the limit of {} bytes", limits.max_total_bytes),
        ));
    }
    if size > limits.ratio_floor_bytes && size / csize.max(1) > limits.max_ratio {
        return Err(Error::bomb(
            Some(name),
            format!(
                "expands {}x ({csize} to {size} bytes), over the ratio limit of {}x",
                size / csize.max(1),
                limits.max_ratio
            ),
        ));
    }
    Ok(())
}

/// ZIP names are UTF-8 when flagged; many tools write UTF-8 without the flag, so
/// valid UTF-8 wins, and anything else is IBM code page 437 as the spec says.
fn decode_name(raw: &[u8], flags: u16) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) if flags & 0x0800 != 0 => String::from_utf8_lossy(raw).into_owned(),
        Err(_) => raw
            .iter()
            .map(|&b| if b < 0x80 { b as char } else { CP437_HIGH[(b - 0x80) as usize] })
            .collect(),
    }
}

const CP437_HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', 'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü',
    '¢', '£', '¥', '₧', 'ƒ', 'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»', '░', '▒', '▓', '│', '┤', '╡',
    '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐', '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧', '╨',
    '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀', 'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ',
    '∞', 'φ', 'ε', '∩', '≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u{a0}',
];

/// Copies an entry's stored bytes (compressed or not) to `out` unchanged, inflating
/// on the side only to check that the data matches the declared size and CRC.
/// `cancelled` is polled between chunks so a cancel stops within one buffer.
#[allow(clippy::too_many_arguments)]
pub fn copy_raw_verified(
    win: &mut Window,
    entry: &Entry,
    data_start: u64,
    csize: u64,
    method: u16,
    out: &mut dyn Write,
    out_path: &Path,
) -> Result<()> {
    let name = Some(entry.name.as_str());
    let expected_crc = entry.crc.expect("ZIP entries carry a CRC");
    let mut crc = crc32fast::Hasher::new();
    let mut inflater = (method == 8).then(|| Decompress::new(false));
    let mut scratch = if method == 8 { vec![0u8; 256 * 1024] } else { Vec::new() };
    let mut produced: u64 = 0;
    let mut done: u64 = 0;
    let mut ended = method != 8;
    while done < csize {
        let n = ((csize - done) as usize).min(WINDOW);
        let chunk = win.get(data_start + done, n).map_err(|e| match e {
            Error::ArchiveCorrupt { detail, .. } => Error::corrupt(name, detail),
            other => other,
        })?;
        done += n as u64;
        match inflater.as_mut() {
            None => {
                crc.update(chunk);
                produced += n as u64;
            }
            Some(z) => {
                let mut input = chunk;
                loop {
                    let (before_in, before_out) = (z.total_in(), z.total_out());
                    let status = z
                        .decompress(input, &mut scratch, FlushDecompress::None)
                        .map_err(|e| Error::corrupt(name, format!("deflate data is corrupt: {e}")))?;
                    let used = (z.total_in() - before_in) as usize;
                    let made = (z.total_out() - before_out) as usize;
                    input = &input[used..];
                    crc.update(&scratch[..made]);
                    produced += made as u64;
                    if produced > entry.size {
                        return Err(Error::corrupt(
                            name,
                            format!("inflates past its declared size of {} bytes (damaged, or a zip bomb)", entry.size),
                        ));
                    }
                    if status == Status::StreamEnd {
                        ended = true;
                        break;
                    }
                    if made == scratch.len() {
                        continue;
                    }
                    if input.is_empty() {
                        break;
                    }
                    if used == 0 && made == 0 {
                        return Err(Error::corrupt(name, "deflate data is corrupt: decoder made no progress"));
                    }
                }
            }
        }
        out.write_all(chunk).map_err(|e| Error::io(out_path, "writing", e))?;
    }
    if !ended {
        return Err(Error::corrupt(name, "deflate data ends before the end of its stream (truncated)"));
    }
    if produced != entry.size {
        return Err(Error::corrupt(
            name,
            format!("holds {produced} bytes where the directory declares {}", entry.size),
        ));
    }
    if crc.finalize() != expected_crc {
        return Err(Error::corrupt(name, "CRC-32 mismatch: the entry's data is damaged"));
    }
    Ok(())
}

/// Reads a whole entry into memory (used for the manifest), verifying it.
pub fn read_entry(path: &Path, entry: &Entry, max: u64) -> Result<Vec<u8>> {
    let Loc::Zip { data_start, csize, method } = entry.loc else {
        unreachable!("not a ZIP entry")
    };
    if entry.size > max {
        return Err(Error::ManifestInvalid {
            manifest: entry.name.clone(),
            line: 1,
            detail: format!("{} bytes is over the manifest limit of {max} bytes", entry.size),
        });
    }
    let file = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
    let mut raw = Vec::new();
    copy_raw_verified(&mut Window::whole(&file, path)?, entry, data_start, csize, method, &mut raw, path)?;
    if method == 0 {
        return Ok(raw);
    }
    // One spare byte: decompress_vec fills only spare capacity.
    let mut out = Vec::with_capacity(entry.size as usize + 1);
    let mut z = Decompress::new(false);
    z.decompress_vec(&raw, &mut out, FlushDecompress::Finish)
        .map_err(|e| Error::corrupt(Some(&entry.name), format!("deflate data is corrupt: {e}")))?;
    Ok(out)
}
