//! Part output: a small ZIP writer that produces byte-identical files for identical
//! input (timestamps and order come from the source), writes under a temporary name
//! in the output directory, hashes what it writes (SHA-256) on the way, and only
//! renames the file to its final name after it has been fsynced; the directory is
//! fsynced after the rename so the name survives a power cut.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::names::DosTime;
use crate::error::{Error, Result};
use crate::fsx::{hash_file, hex, sync_dir};

const VERSION_MADE_BY: u16 = (3 << 8) | 45; // Unix, spec 4.5
const FILE_ATTR: u32 = 0o100644 << 16;

/// Writeback is started every this many bytes (see [`Sink::write`]).
const WRITEBACK_STEP: u64 = 8 << 20;

/// Writes through to the file while hashing and counting.
struct Sink {
    out: BufWriter<File>,
    sha: Sha256,
    written: u64,
    /// Bytes already handed to the kernel's writeback.
    kicked: u64,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.sha.update(&buf[..n]);
        self.written += n as u64;
        if self.written - self.kicked >= WRITEBACK_STEP {
            // Start writing the finished range to disk now instead of at fsync, so
            // the disk works while we read and hash (the final fsync then has
            // little left). Only a hint: errors surface at fsync.
            self.out.flush()?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(self.out.get_ref());
            // SAFETY: plain syscall on a file descriptor we own.
            unsafe {
                libc::sync_file_range(
                    fd,
                    self.kicked as i64,
                    (self.written - self.kicked) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.kicked = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

struct Central {
    name: String,
    time: DosTime,
    method: u16,
    crc: u32,
    csize: u64,
    size: u64,
    offset: u64,
}

/// The temporary name a part is written under: hidden, and clearly not a part.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let name = final_path.file_name().expect("part paths have a file name").to_string_lossy();
    final_path.with_file_name(format!(".{name}.batchd-tmp"))
}

pub struct PartWriter {
    sink: Sink,
    tmp: PathBuf,
    final_path: PathBuf,
    entries: Vec<Central>,
    /// Set when a header was patched after its data: the running hash is then stale.
    patched: bool,
    /// The entry being written by begin/data/end.
    open: Option<OpenEntry>,
}

/// How an entry's bytes are encoded in the part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Already encoded with `method` (copied from a ZIP source): written as given.
    Raw {
        method: u16,
        csize: u64,
    },
    Store,
    Deflate,
}

struct OpenEntry {
    central: Central,
    data_start: u64,
    zip64: bool,
    /// Computes the CRC when it was not given up front.
    crc: Option<crc32fast::Hasher>,
    deflate: Option<flate2::Compress>,
    fed: u64,
    raw: bool,
}

/// `Write` into the open entry, for code that copies with `io::Write`.
struct EntryWrite<'a>(&'a mut PartWriter);

impl Write for EntryWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.data(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn deflate_into(z: &mut flate2::Compress, mut input: &[u8], flush: flate2::FlushCompress, out: &mut Sink, path: &Path) -> Result<()> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let (before_in, before_out) = (z.total_in(), z.total_out());
        let status = z.compress(input, &mut buf, flush).expect("deflate never fails on valid state");
        let used = (z.total_in() - before_in) as usize;
        let made = (z.total_out() - before_out) as usize;
        input = &input[used..];
        out.write_all(&buf[..made]).map_err(|e| Error::io(path, "writing", e))?;
        let finishing = flush == flate2::FlushCompress::Finish;
        if (finishing && status == flate2::Status::StreamEnd) || (!finishing && input.is_empty() && made < buf.len()) {
            return Ok(());
        }
    }
}

/// What a finished part looks like.
#[derive(Debug, Clone)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
}

impl PartWriter {
    pub fn create(final_path: &Path) -> Result<PartWriter> {
        let tmp = temp_path(final_path);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, "creating", e))?;
        Ok(PartWriter {
            // Small: headers are gathered, while entry data (usually larger) bypasses the
            // buffer instead of being copied through it.
            sink: Sink {
                out: BufWriter::with_capacity(32 * 1024, file),
                sha: Sha256::new(),
                written: 0,
                kicked: 0,
            },
            tmp,
            final_path: final_path.to_owned(),
            entries: Vec::new(),
            patched: false,
            open: None,
        })
    }

    pub fn temp(&self) -> &Path {
        &self.tmp
    }

    fn io(&self, e: io::Error) -> Error {
        Error::io(&self.tmp, "writing", e)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_local_header(
        &mut self,
        name: &str,
        time: DosTime,
        method: u16,
        crc: u32,
        csize: u64,
        size: u64,
        force64: bool,
    ) -> Result<bool> {
        let zip64 = force64 || size >= 0xFFFF_FFFF || csize >= 0xFFFF_FFFF;
        let mut h = Vec::with_capacity(30 + name.len() + 20);
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&(if zip64 { 45u16 } else { 20u16 }).to_le_bytes());
        h.extend_from_slice(&flags(name).to_le_bytes());
        h.extend_from_slice(&method.to_le_bytes());
        h.extend_from_slice(&time.time.to_le_bytes());
        h.extend_from_slice(&time.date.to_le_bytes());
        h.extend_from_slice(&crc.to_le_bytes());
        if zip64 {
            h.extend_from_slice(&u32::MAX.to_le_bytes());
            h.extend_from_slice(&u32::MAX.to_le_bytes());
        } else {
            h.extend_from_slice(&(csize as u32).to_le_bytes());
            h.extend_from_slice(&(size as u32).to_le_bytes());
        }
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(if zip64 { 20u16 } else { 0 }).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        if zip64 {
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
            h.extend_from_slice(&csize.to_le_bytes());
        }
        self.sink.write_all(&h).map_err(|e| self.io(e))?;
        Ok(zip64)
    }

    /// Adds an entry whose bytes are copied as they are (a ZIP source's entry, with
    /// its method, CRC and sizes); `data` writes exactly `csize` bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn add_raw(
        &mut self,
        name: &str,
        time: DosTime,
        method: u16,
        crc: u32,
        csize: u64,
        size: u64,
        data: impl FnOnce(&mut dyn Write, &Path) -> Result<()>,
    ) -> Result<()> {
        self.begin(name, time, Body::Raw { method, csize }, Some(crc), size)?;
        let tmp = self.tmp.clone();
        data(&mut EntryWrite(self), &tmp)?;
        self.end()
    }

    /// Adds an in-memory entry, stored or deflated.
    pub fn add_bytes(&mut self, name: &str, time: DosTime, deflate: bool, bytes: &[u8]) -> Result<()> {
        let body = if deflate { Body::Deflate } else { Body::Store };
        self.begin(name, time, body, Some(crc32fast::hash(bytes)), bytes.len() as u64)?;
        self.data(bytes)?;
        self.end()
    }

    /// Starts an entry of `size` uncompressed bytes; feed it with [`Self::data`] and
    /// close it with [`Self::end`]. A CRC or compressed size not known up front is
    /// patched into the local header afterwards (and the part re-hashed at the end).
    pub fn begin(&mut self, name: &str, time: DosTime, body: Body, crc: Option<u32>, size: u64) -> Result<()> {
        check_name(name)?;
        let offset = self.sink.written;
        let (method, csize) = match body {
            Body::Raw { method, csize } => (method, csize),
            Body::Store => (0, size),
            Body::Deflate => (8, 0),
        };
        // Deflate can grow incompressible data a little: leave room for that.
        let force64 = body == Body::Deflate && size >= 0xF000_0000;
        let zip64 = self.write_local_header(name, time, method, crc.unwrap_or(0), csize, size, force64)?;
        self.open = Some(OpenEntry {
            central: Central {
                name: name.to_owned(),
                time,
                method,
                crc: crc.unwrap_or(0),
                csize,
                size,
                offset,
            },
            data_start: self.sink.written,
            zip64,
            crc: if crc.is_none() { Some(crc32fast::Hasher::new()) } else { None },
            deflate: (body == Body::Deflate).then(|| flate2::Compress::new(flate2::Compression::default(), false)),
            fed: 0,
            raw: matches!(body, Body::Raw { .. }),
        });
        Ok(())
    }

    pub fn data(&mut self, chunk: &[u8]) -> Result<()> {
        let open = self.open.as_mut().expect("data() follows begin()");
        open.fed += chunk.len() as u64;
        if let Some(h) = open.crc.as_mut() {
            h.update(chunk);
        }
        match open.deflate.as_mut() {
            None => self.sink.write_all(chunk).map_err(|e| Error::io(&self.tmp, "writing", e)),
            Some(z) => deflate_into(z, chunk, flate2::FlushCompress::None, &mut self.sink, &self.tmp),
        }
    }

    pub fn end(&mut self) -> Result<()> {
        let mut open = self.open.take().expect("end() follows begin()");
        let name = open.central.name.clone();
        if let Some(z) = open.deflate.as_mut() {
            deflate_into(z, &[], flate2::FlushCompress::Finish, &mut self.sink, &self.tmp)?;
            open.central.csize = self.sink.written - open.data_start;
        }
        let wrote = self.sink.written - open.data_start;
        let fed_ok = open.raw || open.fed == open.central.size;
        if wrote != open.central.csize || !fed_ok {
            return Err(Error::corrupt(
                Some(&name),
                format!(
                    "got {} bytes where {} were expected (the source changed while reading?)",
                    open.fed, open.central.size
                ),
            ));
        }
        if open.deflate.is_some() && !open.zip64 && open.central.csize >= 0xFFFF_FFFF {
            return Err(Error::InvalidArgument(format!(
                "entry {name:?} grew past 4 GiB when deflated; use --compression stored"
            )));
        }
        let crc_patch = open.crc.take().map(|h| h.finalize());
        if crc_patch.is_some() || open.deflate.is_some() {
            self.sink.out.flush().map_err(|e| self.io(e))?;
            let file = self.sink.out.get_ref();
            let at = open.central.offset;
            if let Some(crc) = crc_patch {
                open.central.crc = crc;
                file.write_all_at(&crc.to_le_bytes(), at + 14)
                    .map_err(|e| Error::io(&self.tmp, "writing", e))?;
            }
            if open.deflate.is_some() {
                let csize = open.central.csize;
                if open.zip64 {
                    // The ZIP64 extra holds size then compressed size, after the name.
                    file.write_all_at(&csize.to_le_bytes(), at + 30 + name.len() as u64 + 4 + 8)
                        .map_err(|e| Error::io(&self.tmp, "writing", e))?;
                } else {
                    file.write_all_at(&(csize as u32).to_le_bytes(), at + 18)
                        .map_err(|e| Error::io(&self.tmp, "writing", e))?;
                }
            }
            self.patched = true;
        }
        self.entries.push(open.central);
        Ok(())
    }

    /// Writes the central directory (ZIP64 where needed) with `comment`, fsyncs,
    /// renames to the final name and fsyncs the directory.
    pub fn finish(self, comment: &str) -> Result<Written> {
        self.seal(comment)?.publish()
    }

    /// Completes and fsyncs the part under its temporary name; [`Sealed::publish`]
    /// gives it its final name.
    pub fn seal(mut self, comment: &str) -> Result<Sealed> {
        let cd_start = self.sink.written;
        let mut cd = Vec::with_capacity(self.entries.len() * 80);
        for e in &self.entries {
            let need64 = e.size >= 0xFFFF_FFFF || e.csize >= 0xFFFF_FFFF || e.offset >= 0xFFFF_FFFF;
            let mut extra = Vec::new();
            if need64 {
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&24u16.to_le_bytes());
                extra.extend_from_slice(&e.size.to_le_bytes());
                extra.extend_from_slice(&e.csize.to_le_bytes());
                extra.extend_from_slice(&e.offset.to_le_bytes());
            }
            cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            cd.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
            cd.extend_from_slice(&(if need64 { 45u16 } else { 20 }).to_le_bytes());
            cd.extend_from_slice(&flags(&e.name).to_le_bytes());
            cd.extend_from_slice(&e.method.to_le_bytes());
            cd.extend_from_slice(&e.time.time.to_le_bytes());
            cd.extend_from_slice(&e.time.date.to_le_bytes());
            cd.extend_from_slice(&e.crc.to_le_bytes());
            for v in [e.csize, e.size] {
                cd.extend_from_slice(&(if need64 { u32::MAX } else { v as u32 }).to_le_bytes());
            }
            cd.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            cd.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            cd.extend_from_slice(&0u16.to_le_bytes()); // comment
            cd.extend_from_slice(&0u16.to_le_bytes()); // disk
            cd.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            cd.extend_from_slice(&FILE_ATTR.to_le_bytes());
            cd.extend_from_slice(&(if need64 { u32::MAX } else { e.offset as u32 }).to_le_bytes());
            cd.extend_from_slice(e.name.as_bytes());
            cd.extend_from_slice(&extra);
        }
        let cd_size = cd.len() as u64;
        let count = self.entries.len() as u64;
        let need64 = count >= 0xFFFF || cd_start >= 0xFFFF_FFFF || cd_size >= 0xFFFF_FFFF;
        if need64 {
            let rec_at = cd_start + cd_size;
            cd.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            cd.extend_from_slice(&44u64.to_le_bytes());
            cd.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
            cd.extend_from_slice(&45u16.to_le_bytes());
            cd.extend_from_slice(&0u32.to_le_bytes());
            cd.extend_from_slice(&0u32.to_le_bytes());
            cd.extend_from_slice(&count.to_le_bytes());
            cd.extend_from_slice(&count.to_le_bytes());
            cd.extend_from_slice(&cd_size.to_le_bytes());
            cd.extend_from_slice(&cd_start.to_le_bytes());
            cd.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            cd.extend_from_slice(&0u32.to_le_bytes());
            cd.extend_from_slice(&rec_at.to_le_bytes());
            cd.extend_from_slice(&1u32.to_le_bytes());
        }
        let comment = &comment.as_bytes()[..comment.len().min(0xFFFF)];
        cd.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        cd.extend_from_slice(&0u32.to_le_bytes());
        let c16 = if need64 { 0xFFFF } else { count as u16 };
        cd.extend_from_slice(&c16.to_le_bytes());
        cd.extend_from_slice(&c16.to_le_bytes());
        cd.extend_from_slice(&(if need64 { u32::MAX } else { cd_size as u32 }).to_le_bytes());
        cd.extend_from_slice(&(if need64 { u32::MAX } else { cd_start as u32 }).to_le_bytes());
        cd.extend_from_slice(&(comment.len() as u16).to_le_bytes());
        cd.extend_from_slice(comment);
        self.sink.write_all(&cd).map_err(|e| self.io(e))?;
        self.sink.out.flush().map_err(|e| self.io(e))?;
        let bytes = self.sink.written;
        let file = self.sink.out.get_ref();
        file.sync_all().map_err(|e| Error::io(&self.tmp, "syncing", e))?;
        crate::failpoint::hit("part.sealed");
        let sha256 = if self.patched {
            hash_file(&self.tmp)?
        } else {
            hex(&self.sink.sha.clone().finalize())
        };
        Ok(Sealed {
            tmp: self.tmp.clone(),
            final_path: self.final_path.clone(),
            written: Written { bytes, sha256 },
        })
    }

    /// Drops the temporary file (on error or cancel).
    pub fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self);
        let _ = fs::remove_file(tmp);
    }
}

/// A complete, fsynced part still under its temporary name.
#[derive(Debug)]
pub struct Sealed {
    pub tmp: PathBuf,
    pub final_path: PathBuf,
    pub written: Written,
}

impl Sealed {
    pub fn publish(self) -> Result<Written> {
        fs::rename(&self.tmp, &self.final_path).map_err(|e| Error::io(&self.final_path, "renaming the finished part to", e))?;
        crate::failpoint::hit("part.renamed");
        sync_dir(self.final_path.parent().unwrap_or(Path::new(".")))?;
        crate::failpoint::hit("part.published");
        Ok(self.written)
    }

    pub fn discard(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

fn flags(name: &str) -> u16 {
    if name.is_ascii() {
        0
    } else {
        0x0800
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.len() > 0xFFFF {
        return Err(Error::UnsafePath {
            entry: name.chars().take(80).collect(),
            reason: "is longer than a ZIP name can be".into(),
        });
    }
    Ok(())
}
