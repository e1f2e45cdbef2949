//! The byte sources a tar is read from: a plain file (which can skip forward by
//! seeking) and a gzip stream (which must decode what it skips), with the caps
//! that make a gzip bomb fail within seconds, and the mapping of their read
//! errors to the splitter's codes. Kept apart from the header parsing in
//! `tarread` so that each can be read on its own.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::source::Limits;
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
