//! Packing parts of random-access sources (ZIP, plain TAR, directories): each part
//! is packed on its own rayon worker with its own file handle, reading only that
//! part's entries. TAR.GZ sources are packed by [`super::stream`].

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::names::DosTime;
use super::plan::{part_entry_name, PartPlan, Plan};
use super::source::{tar_data, Entry, Loc, Source};
use super::sparse::{Expand, ExpandRead};
use super::zipwrite::{Body, PartWriter, Written};
use super::{zipread, Compression, Progress, SplitOptions};
use crate::error::{Error, Result};

/// Entries up to this size are read into memory once, so their CRC is known before
/// the header is written and the part's hash is computed on the way.
const SMALL: u64 = 8 << 20;

/// Timestamp of a part's manifest: the source manifest's own, or the newest file's
/// when the manifest was synthesised, so it never depends on the clock.
pub fn manifest_time(entries: &[Entry], plan_manifest: Option<&str>, files: &[usize]) -> DosTime {
    if let Some(name) = plan_manifest {
        if let Some(e) = entries.iter().find(|e| e.name == name) {
            return e.time;
        }
    }
    files
        .iter()
        .map(|&i| entries[i].time)
        .max_by_key(|t| (t.date, t.time))
        .unwrap_or(DosTime::EPOCH)
}

pub fn check_cancel(progress: &Progress) -> Result<()> {
    if progress.cancel.load(Ordering::Relaxed) {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

/// Packs the given parts in parallel. Returns each part's result in `todo` order;
/// after the first error the other workers stop at their next entry.
pub fn pack_random(src: &Source, plan: &Plan, todo: &[&PartPlan], opts: &SplitOptions, progress: &Progress) -> Vec<Result<Written>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .expect("building the worker pool");
    pool.install(|| {
        todo.par_iter()
            .map(|part| {
                let r = pack_one(src, plan, part, opts, progress);
                if r.is_err() {
                    progress.cancel.store(true, Ordering::Relaxed);
                }
                r
            })
            .collect()
    })
}

fn pack_one(src: &Source, plan: &Plan, part: &PartPlan, opts: &SplitOptions, progress: &Progress) -> Result<Written> {
    check_cancel(progress)?;
    let mut w = PartWriter::create(&part.path(&opts.out))?;
    match fill(&mut w, src, plan, part, opts, progress) {
        Ok(()) => {
            let written = w.finish(&part.comment)?;
            progress.on_part.call(part.n, &written);
            progress.rows_done.fetch_add(part.rows as u64, Ordering::Relaxed);
            progress.parts_done.fetch_add(1, Ordering::Relaxed);
            Ok(written)
        }
        Err(e) => {
            w.abandon();
            Err(e)
        }
    }
}

fn fill(w: &mut PartWriter, src: &Source, plan: &Plan, part: &PartPlan, opts: &SplitOptions, progress: &Progress) -> Result<()> {
    let deflate = opts.compression == Compression::Deflate;
    let time = manifest_time(&src.entries, plan.manifest.entry.as_deref(), &part.files);
    w.add_bytes(plan.manifest.part_name(), time, deflate, &plan.part_manifest(part))?;
    let archive = match src.kind {
        super::SourceKind::Zip | super::SourceKind::Tar => Some(File::open(&src.path).map_err(|e| Error::io(&src.path, "opening", e))?),
        _ => None,
    };
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut zip_window = match (&archive, src.kind) {
        (Some(f), super::SourceKind::Zip) => Some(zipread::Window::whole(f, &src.path)?),
        _ => None,
    };
    for &i in &part.files {
        check_cancel(progress)?;
        let e = &src.entries[i];
        let name = part_entry_name(e, &plan.manifest.root);
        match &e.loc {
            Loc::Zip { data_start, csize, method } => {
                w.add_raw(
                    name,
                    e.time,
                    *method,
                    e.crc.expect("ZIP entries carry a CRC"),
                    *csize,
                    e.size,
                    |out, out_path| {
                        zipread::copy_raw_verified(
                            zip_window.as_mut().expect("ZIP is open"),
                            e,
                            *data_start,
                            *csize,
                            *method,
                            out,
                            out_path,
                        )
                    },
                )?;
            }
            Loc::Tar { data_start, sparse } => {
                let f = archive.as_ref().expect("TAR is open");
                match sparse {
                    None => add_plain(w, name, e, deflate, &src.path, &mut tar_data(f, *data_start, e.size), &mut buf)?,
                    Some(m) => {
                        let mut r = ExpandRead {
                            expand: Expand::new((**m).clone()),
                            stored: tar_data(f, *data_start, m.stored()),
                        };
                        add_plain(w, name, e, deflate, &src.path, &mut r, &mut buf)?;
                    }
                }
            }
            Loc::File => {
                let p = &src.path.join(&e.name);
                // One byte past the size, so a file that grew is noticed.
                let mut r = File::open(p).map_err(|err| Error::io(p, "opening", err))?.take(e.size + 1);
                add_plain(w, name, e, deflate, p, &mut r, &mut buf)?;
            }
            Loc::Stream => unreachable!("TAR.GZ sources are packed by split::stream"),
        }
        progress.bytes_done.fetch_add(e.size, Ordering::Relaxed);
    }
    Ok(())
}

/// Fills `buf` as far as the reader goes; returns how much it got.
fn read_full(r: &mut dyn Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, "reading", e)),
        }
    }
    Ok(got)
}

pub fn changed(name: &str) -> Error {
    Error::corrupt(
        Some(name),
        "the file changed size or content while it was being read; run again once it is stable",
    )
}

/// Adds an entry whose CRC is not known up front (TAR, directory).
fn add_plain(w: &mut PartWriter, name: &str, e: &Entry, deflate: bool, path: &Path, r: &mut dyn Read, buf: &mut Vec<u8>) -> Result<()> {
    if e.size <= SMALL {
        buf.resize(e.size as usize + 1, 0);
        let got = read_full(r, buf, path)?;
        if got != e.size as usize {
            return Err(changed(name));
        }
        return w.add_bytes(name, e.time, deflate, &buf[..got]);
    }
    w.begin(name, e.time, if deflate { Body::Deflate } else { Body::Store }, None, e.size)?;
    buf.resize(256 * 1024, 0);
    loop {
        let n = read_full(r, buf, path)?;
        w.data(&buf[..n])?;
        if n < buf.len() {
            break;
        }
    }
    w.end()
        .map_err(|err| if err.code() == "ARCHIVE_CORRUPT" { changed(name) } else { err })
}
