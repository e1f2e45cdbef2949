//! ZIP input: parses the central directory (with ZIP64) into [`Entry`] rows, checks
//! the layout against hostile archives (entries out of bounds, overlapping entries,
//! size and ratio caps), and copies an entry's compressed bytes unchanged while
//! verifying its CRC on the way. We parse ZIP ourselves rather than through the
//! `zip` crate because the splitter needs exactly these checks and a raw copy that
//! inflates only to verify, and because a few hundred lines here are steadier than
//! a dependency whose releases churn.

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

/// The end-of-central-directory facts we need.
pub(crate) struct Directory {
    pub entries: u64,
    pub cd_offset: u64,
    pub cd_size: u64,
    pub comment: Vec<u8>,
}

pub(crate) fn find_directory(file: &File, path: &Path, len: u64) -> Result<Directory> {
    if len < 22 {
        return Err(Error::corrupt(None, format!("{len} bytes is too short to be a ZIP archive")));
    }
    let tail_len = len.min(22 + 65_535 + 20) as usize;
    let mut tail = vec![0u8; tail_len];
    read_exact_at(file, path, &mut tail, len - tail_len as u64)?;
    let pos = (0..=tail_len - 22)
        .rev()
        .find(|&i| u32le(&tail, i) == EOCD_SIG && i + 22 + u16le(&tail, i + 20) as usize <= tail_len)
        .ok_or_else(|| Error::corrupt(None, "no end-of-central-directory record (truncated or not a ZIP)"))?;
    let eocd = &tail[pos..];
    let eocd_at = len - (tail_len - pos) as u64;
    let comment = eocd[22..22 + u16le(eocd, 20) as usize].to_vec();
    let (mut entries, mut cd_size, mut cd_offset) = (u16le(eocd, 10) as u64, u32le(eocd, 12) as u64, u32le(eocd, 16) as u64);
    if u16le(eocd, 4) != 0 || u16le(eocd, 6) != 0 {
        return Err(Error::corrupt(None, "multi-disk (spanned) ZIP archives are not supported"));
    }
    if pos >= 20 && u32le(&tail, pos - 20) == ZIP64_LOCATOR_SIG {
        let rec_at = u64le(&tail, pos - 20 + 8);
        if rec_at + 56 > eocd_at {
            return Err(Error::corrupt(None, "ZIP64 end record points past the end of the archive"));
        }
        let mut rec = [0u8; 56];
        read_exact_at(file, path, &mut rec, rec_at)?;
        if u32le(&rec, 0) != ZIP64_EOCD_SIG {
            return Err(Error::corrupt(None, "bad ZIP64 end-of-central-directory signature"));
        }
        entries = u64le(&rec, 32);
        cd_size = u64le(&rec, 40);
        cd_offset = u64le(&rec, 48);
    }
    if cd_offset.checked_add(cd_size).is_none_or(|end| end > eocd_at) {
        return Err(Error::corrupt(None, "central directory lies outside the archive (truncated?)"));
    }
    Ok(Directory {
        entries,
        cd_offset,
        cd_size,
        comment,
    })
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
        let time = DosTime {
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
        if method == 0 && csize != usize_ {
            return Err(Error::corrupt(
                Some(&name),
                "stored entry has different compressed and uncompressed sizes",
            ));
        }
        // Local header: its name and extra lengths decide where the data starts.
        let mut lfh = [0u8; 30];
        if lho.checked_add(30).is_none_or(|e| e > dir.cd_offset) {
            return Err(Error::corrupt(Some(&name), "local header lies outside the archive"));
        }
        read_exact_at(&file, path, &mut lfh, lho)?;
        if u32le(&lfh, 0) != LFH_SIG {
            return Err(Error::corrupt(Some(&name), "bad local header signature"));
        }
        let data_start = lho + 30 + u16le(&lfh, 26) as u64 + u16le(&lfh, 28) as u64;
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
    file: &File,
    path: &Path,
    entry: &Entry,
    data_start: u64,
    csize: u64,
    method: u16,
    buf: &mut Vec<u8>,
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
    buf.resize(256 * 1024, 0);
    while done < csize {
        let n = ((csize - done) as usize).min(buf.len());
        read_exact_at(file, path, &mut buf[..n], data_start + done).map_err(|e| match e {
            Error::ArchiveCorrupt { detail, .. } => Error::corrupt(name, detail),
            other => other,
        })?;
        let chunk = &buf[..n];
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
    let mut buf = Vec::new();
    copy_raw_verified(&file, path, entry, data_start, csize, method, &mut buf, &mut raw, path)?;
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
