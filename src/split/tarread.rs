//! TAR and TAR.GZ input. We parse the 512-byte headers ourselves (ustar, GNU long
//! names, pax `path`/`size`/`mtime`) so that we see every entry type before deciding
//! anything, never unpack, and know exactly where each entry's data lies. A plain
//! `.tar` is indexed by seeking from header to header and then read with random
//! access like a ZIP; a `.tar.gz` can only be read front to back, so it is indexed
//! in one decoding pass (which also verifies the gzip trailer and computes each
//! entry's CRC) and later streamed once more to route entries into parts.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::names::{self, DosTime, Name};
use super::source::{Entry, Limits, Loc};
use super::zipread::check_size;
use crate::error::{Error, Result};

/// A byte source that can skip forward cheaply where it can.
pub trait TarInput: Read {
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

impl<T: TarInput + ?Sized> TarInput for Box<T> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        (**self).skip(n)
    }
}

impl TarInput for BufReader<File> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        self.seek_relative(n as i64)
    }
}

/// Counts compressed bytes consumed, for the ratio check.
pub struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.count += amt as u64;
        self.inner.consume(amt)
    }
}

/// A gzip stream with caps on what it may decode, so a bomb fails within seconds.
pub struct GzInput {
    dec: MultiGzDecoder<Counted<BufReader<File>>>,
    decoded: u64,
    max_total: u64,
    max_ratio: u64,
    ratio_floor: u64,
}

const BOMB_MARK: &str = "batchd-gzip-bomb";

impl Read for GzInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.dec.read(buf)?;
        self.decoded += n as u64;
        let compressed = self.dec.get_ref().count.max(1);
        if self.decoded > self.max_total || (self.decoded > self.ratio_floor && self.decoded / compressed > self.max_ratio) {
            return Err(io::Error::other(BOMB_MARK));
        }
        Ok(n)
    }
}

impl TarInput for GzInput {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut self.by_ref().take(n), &mut io::sink())?;
        if copied < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

pub fn open_input(path: &Path, gz: bool, limits: &Limits) -> Result<Box<dyn TarInput + Send>> {
    let file = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
    let reader = BufReader::with_capacity(256 * 1024, file);
    Ok(if gz {
        Box::new(GzInput {
            dec: MultiGzDecoder::new(Counted { inner: reader, count: 0 }),
            decoded: 0,
            max_total: limits.max_total_bytes.saturating_add(1 << 30),
            max_ratio: limits.max_ratio,
            ratio_floor: limits.ratio_floor_bytes.max(64 << 20),
        })
    } else {
        Box::new(reader)
    })
}

/// Maps a read error to the splitter's error: bombs, truncation and bad gzip data
/// are the source's fault; anything else is an I/O error on the source path.
pub fn read_error(path: &Path, entry: Option<&str>, e: io::Error) -> Error {
    if e.to_string() == BOMB_MARK {
        return Error::bomb(entry, "the gzip stream expands past the size or ratio limit");
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::corrupt(entry, "archive ends in the middle of an entry (truncated)"),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::Other => {
            Error::corrupt(entry, format!("bad gzip data: {e}"))
        }
        _ => Error::io(path, "reading", e),
    }
}

#[derive(Debug)]
pub enum TarKind {
    File,
    Dir,
}

#[derive(Debug)]
pub struct TarHeader {
    /// Normalised name.
    pub name: String,
    pub raw_name: String,
    pub kind: TarKind,
    pub size: u64,
    pub mtime: i64,
    /// Offset of the data in the (decoded) tar stream.
    pub data_start: u64,
}

/// Walks the headers of a tar stream. After `next` returns an entry, up to `size`
/// bytes of its data may be read with `read_data`; the rest is skipped by `next`.
pub struct TarStream<R: TarInput> {
    input: R,
    path: PathBuf,
    pos: u64,
    remaining: u64,
    padding: u64,
    current: Option<String>,
    ended: bool,
}

fn parse_num(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256 for values that don't fit in octal.
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let s = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| (b'0'..=b'7').contains(&b));
    let mut v: u64 = 0;
    let mut any = false;
    for &b in s {
        v = v.checked_mul(8)?.checked_add((b - b'0') as u64)?;
        any = true;
    }
    let rest_ok = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .skip_while(|&&b| (b'0'..=b'7').contains(&b))
        .all(|&b| b == 0 || b == b' ');
    (any || field.iter().all(|&b| b == 0 || b == b' ')).then_some(v).filter(|_| rest_ok)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// True when `block` is a plausible tar header (its checksum matches).
pub fn checksum_ok(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let Some(stored) = parse_num(&block[148..156]) else { return false };
    let unsigned: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u64 })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as i8 as i64 })
        .sum();
    stored == unsigned || stored as i64 == signed
}

fn utf8_name(raw: &[u8], at: u64) -> Result<String> {
    String::from_utf8(raw.to_vec()).map_err(|_| Error::UnsafePath {
        entry: String::from_utf8_lossy(raw).into_owned(),
        reason: format!("(header at offset {at}) is not valid UTF-8"),
    })
}

impl<R: TarInput> TarStream<R> {
    pub fn new(input: R, path: &Path) -> Self {
        TarStream {
            input,
            path: path.to_owned(),
            pos: 0,
            remaining: 0,
            padding: 0,
            current: None,
            ended: false,
        }
    }

    fn err(&self, e: io::Error) -> Error {
        read_error(&self.path, self.current.as_deref(), e)
    }

    fn read_block(&mut self, block: &mut [u8; 512]) -> Result<bool> {
        let mut got = 0;
        while got < 512 {
            match self.input.read(&mut block[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        self.pos += got as u64;
        match got {
            0 => Ok(false),
            512 => Ok(true),
            _ => Err(Error::corrupt(
                None,
                format!("archive ends inside a header at offset {} (truncated)", self.pos),
            )),
        }
    }

    fn read_meta(&mut self, size: u64) -> Result<Vec<u8>> {
        if size > 1 << 20 {
            return Err(Error::corrupt(
                None,
                format!("extended header at offset {} is {size} bytes, over 1 MiB", self.pos),
            ));
        }
        let mut data = vec![0u8; size as usize];
        self.input.read_exact(&mut data).map_err(|e| self.err(e))?;
        let pad = (512 - size % 512) % 512;
        self.input.skip(pad).map_err(|e| self.err(e))?;
        self.pos += size + pad;
        Ok(data)
    }

    /// Skips what is left of the current entry and returns the next one, or `None`
    /// at the end-of-archive marker.
    pub fn next_entry(&mut self) -> Result<Option<TarHeader>> {
        let skip = self.remaining + self.padding;
        if skip > 0 {
            self.input.skip(skip).map_err(|e| self.err(e))?;
            self.pos += skip;
            self.remaining = 0;
            self.padding = 0;
        }
        self.current = None;
        if self.ended {
            return Ok(None);
        }
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax: HashMap<String, Vec<u8>> = HashMap::new();
        let mut block = [0u8; 512];
        loop {
            let at = self.pos;
            if !self.read_block(&mut block)? {
                return Err(Error::corrupt(None, "archive ends without its end-of-archive blocks (truncated)"));
            }
            if block.iter().all(|&b| b == 0) {
                self.ended = true;
                return Ok(None);
            }
            if !checksum_ok(&block) {
                return Err(Error::corrupt(
                    None,
                    format!("header at offset {at} has a bad checksum (corrupt or not a tar)"),
                ));
            }
            let size_field =
                parse_num(&block[124..136]).ok_or_else(|| Error::corrupt(None, format!("header at offset {at} has an unreadable size")))?;
            let typeflag = block[156];
            match typeflag {
                b'L' => {
                    long_name = Some(cstr(&self.read_meta(size_field)?).to_vec());
                    continue;
                }
                b'K' | b'g' => {
                    self.read_meta(size_field)?;
                    continue;
                }
                b'x' | b'X' => {
                    let data = self.read_meta(size_field)?;
                    parse_pax(&data, &mut pax).ok_or_else(|| Error::corrupt(None, format!("pax header at offset {at} is malformed")))?;
                    continue;
                }
                _ => {}
            }
            let raw = if let Some(p) = pax.remove("path") {
                p
            } else if let Some(l) = long_name.take() {
                l
            } else {
                let name = cstr(&block[0..100]);
                let prefix = if &block[257..263] == b"ustar\0" {
                    cstr(&block[345..500])
                } else {
                    &[][..]
                };
                if prefix.is_empty() {
                    name.to_vec()
                } else {
                    [prefix, b"/", name].concat()
                }
            };
            let raw_name = utf8_name(&raw, at)?;
            let size = match pax.remove("size") {
                Some(s) => std::str::from_utf8(&s)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Error::corrupt(Some(&raw_name), "pax size is not a number"))?,
                None => size_field,
            };
            let mtime = match pax.remove("mtime") {
                Some(s) => std::str::from_utf8(&s)
                    .ok()
                    .and_then(|s| s.split('.').next()?.parse().ok())
                    .unwrap_or(0),
                None => parse_num(&block[136..148]).unwrap_or(0) as i64,
            };
            self.current = Some(raw_name.clone());
            let unsupported = |kind: &str| {
                Err(Error::UnsupportedEntry {
                    entry: raw_name.clone(),
                    kind: kind.to_owned(),
                })
            };
            let kind = match typeflag {
                b'0' | b'\0' | b'7' => TarKind::File,
                b'5' => TarKind::Dir,
                b'1' => return unsupported("a hard link"),
                b'2' => return unsupported("a symbolic link"),
                b'3' => return unsupported("a character device"),
                b'4' => return unsupported("a block device"),
                b'6' => return unsupported("a fifo"),
                b'S' => return unsupported("a GNU sparse file"),
                other => return unsupported(&format!("a tar entry of type {:?}", other as char)),
            };
            let name = match (names::normalize(&raw_name)?, &kind) {
                (Name::File(n), TarKind::File) | (Name::Dir(n), TarKind::Dir) | (Name::File(n), TarKind::Dir) => n,
                (Name::Dir(_), TarKind::File) => return Err(Error::corrupt(Some(&raw_name), "a regular file whose name ends with '/'")),
                (Name::Root, _) => String::new(),
            };
            // Directories in some tars carry a size; it is data we skip.
            self.remaining = size;
            self.padding = (512 - size % 512) % 512;
            return Ok(Some(TarHeader {
                name,
                raw_name,
                kind,
                size,
                mtime,
                data_start: self.pos,
            }));
        }
    }

    /// Reads data of the current entry; returns 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.remaining) as usize;
        let n = loop {
            match self.input.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(e)),
            }
        };
        if n == 0 {
            return Err(Error::corrupt(
                self.current.as_deref(),
                "archive ends in the middle of this entry (truncated)",
            ));
        }
        self.remaining -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }

    /// After the end marker: reads to the end of the input, so a gzip trailer is
    /// verified and trailing garbage inside the compressed stream is noticed.
    pub fn finish(&mut self) -> Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match self.input.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.err(e)),
            };
            if n == 0 {
                return Ok(());
            }
            if buf[..n].iter().any(|&b| b != 0) {
                // Padding after the end marker is zeros; anything else is a second
                // archive glued on, which we refuse rather than half-read.
                return Err(Error::corrupt(None, "data after the end-of-archive marker"));
            }
        }
    }
}

fn parse_pax(data: &[u8], out: &mut HashMap<String, Vec<u8>>) -> Option<()> {
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > rest.len() {
            return None;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n")?;
        let eq = record.iter().position(|&b| b == b'=')?;
        let key = std::str::from_utf8(&record[..eq]).ok()?;
        out.insert(key.to_owned(), record[eq + 1..].to_vec());
        rest = &rest[len..];
    }
    Some(())
}

/// The result of indexing a tar: its regular files in order, and the content of
/// those entries the caller asked to capture (manifest candidates).
pub struct TarIndex {
    pub entries: Vec<Entry>,
    pub captured: HashMap<String, Vec<u8>>,
}

/// Indexes a tar stream. For gzip input every byte is decoded anyway, so each
/// entry's CRC is computed on the way; a plain tar is indexed by seeking.
pub fn index(path: &Path, gz: bool, limits: &Limits, capture: &dyn Fn(&str) -> bool) -> Result<TarIndex> {
    let mut tar = TarStream::new(open_input(path, gz, limits)?, path);
    let mut entries = Vec::new();
    let mut captured = HashMap::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    while let Some(h) = tar.next_entry()? {
        if !matches!(h.kind, TarKind::File) {
            continue;
        }
        if entries.len() >= limits.max_entries {
            return Err(Error::bomb(None, format!("more than {} entries", limits.max_entries)));
        }
        check_size(&h.raw_name, h.size, h.size, limits, &mut total)?;
        let want = capture(&h.name);
        if want && h.size > limits.max_manifest_bytes {
            return Err(Error::ManifestInvalid {
                manifest: h.name.clone(),
                line: 1,
                detail: format!("{} bytes is over the manifest limit of {} bytes", h.size, limits.max_manifest_bytes),
            });
        }
        let crc = if gz || want {
            let mut hasher = crc32fast::Hasher::new();
            let mut content = Vec::new();
            loop {
                let n = tar.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                if want {
                    content.extend_from_slice(&buf[..n]);
                }
            }
            if want {
                captured.insert(h.name.clone(), content);
            }
            gz.then(|| hasher.finalize())
        } else {
            None
        };
        let loc = if gz { Loc::Stream } else { Loc::Tar { data_start: h.data_start } };
        entries.push(Entry {
            name: h.name,
            size: h.size,
            time: DosTime::from_unix(h.mtime),
            crc,
            loc,
        });
    }
    tar.finish()?;
    Ok(TarIndex { entries, captured })
}
