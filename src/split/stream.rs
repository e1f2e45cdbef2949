//! TAR.GZ packing. A compressed tar can only be read front to back, and decoding it
//! is the expensive part, so the common case is done in **one** decoding pass:
//! when the manifest comes before the files (as exports usually write it), every
//! entry is routed to its part as it is decoded, while the same pass builds the
//! index and checks every CRC and the gzip trailer. Decoding and writing run on two
//! threads joined by a bounded channel, so the two cores overlap.
//!
//! The routing in that pass is a guess made before the whole source is known (the
//! file column and bare-name matches could still change with later entries), so
//! parts are only sealed under temporary names; once the stream has ended the real
//! plan is built from the complete index, each sealed part is compared with it and
//! published only if it matches exactly. Anything that did not match — a manifest
//! stored last, rows skipped as missing, ambiguous names — is packed by a second
//! pass that routes by the real plan.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::handoff::{channels, discard_all, writer, Done, ManifestOf, Msg, Outbox, PartSpec, Pool};
use super::manifest::{self, Manifest};
use super::names::DosTime;
use super::pack::{changed, check_cancel, manifest_time};
use super::plan::{self, part_entry_name, PartPlan, Plan};
use super::route::Router;
use super::source::{Entry, Loc, Source, SourceKind};
use super::tarinput::{open_input, TarInput};
use super::tarread::{self, TarStream};
use super::zipread::check_size;
use super::zipwrite::Written;
use super::{Compression, OnMissing, Progress, SplitOptions};
use crate::error::{Error, Result};

/// Entries up to this size travel to the writer as one message with their CRC.
const WHOLE: u64 = 1 << 20;
const CHUNK: usize = 256 * 1024;
/// Data of entries seen before the manifest that we hold on to, hoping it follows.
const PENDING_MAX: u64 = 16 << 20;

/// Reads the current entry's data: sends it to `targets` (if any) and returns its CRC.
#[allow(clippy::too_many_arguments)]
fn forward<R: TarInput>(
    tar: &mut TarStream<R>,
    tx: &mut Outbox,
    pool: &Pool,
    targets: Vec<usize>,
    name: &str,
    time: DosTime,
    size: u64,
) -> Result<std::result::Result<u32, ()>> {
    let mut crc = crc32fast::Hasher::new();
    if targets.is_empty() {
        let mut buf = pool.take(CHUNK);
        loop {
            let n = tar.read_data(&mut buf)?;
            if n == 0 {
                return Ok(Ok(crc.finalize()));
            }
            crc.update(&buf[..n]);
        }
    }
    if size <= WHOLE {
        let data = read_whole(tar, pool.take(size as usize))?;
        crc.update(&data);
        let c = crc.finalize();
        let sent = tx
            .send(Msg::Whole {
                targets,
                name: name.to_owned(),
                time,
                crc: c,
                data,
            })
            .is_ok();
        return Ok(if sent { Ok(c) } else { Err(()) });
    }
    if tx
        .send(Msg::Begin {
            targets,
            name: name.to_owned(),
            time,
            crc: None,
            size,
        })
        .is_err()
    {
        return Ok(Err(()));
    }
    loop {
        let mut buf = pool.take(CHUNK);
        let n = tar.read_data(&mut buf)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        crc.update(&buf);
        if tx.send(Msg::Data(buf)).is_err() {
            return Ok(Err(()));
        }
    }
    Ok(if tx.send(Msg::End).is_ok() { Ok(crc.finalize()) } else { Err(()) })
}

fn read_whole<R: TarInput>(tar: &mut TarStream<R>, mut data: Vec<u8>) -> Result<Vec<u8>> {
    let mut got = 0;
    while got < data.len() {
        got += tar.read_data(&mut data[got..])?;
    }
    Ok(data)
}

enum Mode {
    /// No manifest yet: hold small early entries in memory.
    Probe {
        pending: Vec<(usize, Vec<u8>)>,
        bytes: u64,
    },
    Route(Box<Router>),
    /// Only index (manifest late or unusable); a second pass will pack.
    IndexOnly,
}

/// Result of the single pass.
pub struct SinglePass {
    pub source: Source,
    pub plan: Plan,
    /// Parts published in this pass, by part number.
    pub done: HashMap<usize, Written>,
}

/// Indexes a TAR.GZ and, where the manifest comes first, packs it in the same pass.
pub fn single_pass(opts: &SplitOptions, progress: &Progress) -> Result<SinglePass> {
    let path = &opts.source;
    let stem = super::source::stem(path);
    let deflate = opts.compression == Compression::Deflate;
    let mut entries: Vec<Entry> = Vec::new();
    let mut captured: HashMap<String, Arc<[u8]>> = HashMap::new();
    let mut mode = if opts.on_missing_file == OnMissing::Skip {
        Mode::IndexOnly
    } else {
        Mode::Probe {
            pending: Vec::new(),
            bytes: 0,
        }
    };
    let (tx, rx, back_tx, pool) = channels();
    let mut tx = Outbox::new(tx);
    let mut rx = Some((rx, back_tx));
    let mut total = 0u64;
    let mut ignored = tarread::Ignored::default();

    std::thread::scope(|scope| {
        let mut handle = None;
        let decoded = (|| -> Result<()> {
            let mut tar = TarStream::new(open_input(path, true, &opts.limits)?, path);
            while let Some(h) = tar.next_file(&mut ignored)? {
                check_cancel(progress)?;
                if entries.len() >= opts.limits.max_entries {
                    return Err(Error::bomb(None, format!("more than {} entries", opts.limits.max_entries)));
                }
                check_size(&h.raw_name, h.size, tarread::stored_size(&h), &opts.limits, &mut total)?;
                let idx = entries.len();
                let time = DosTime::from_unix(h.mtime);
                let crc;
                if manifest::is_candidate(&h.name, &opts.manifest) {
                    if h.size > opts.limits.max_manifest_bytes {
                        return Err(Error::ManifestInvalid {
                            manifest: h.name.clone(),
                            line: 1,
                            detail: format!(
                                "{} bytes is over the manifest limit of {} bytes",
                                h.size, opts.limits.max_manifest_bytes
                            ),
                        });
                    }
                    let data: Arc<[u8]> = read_whole(&mut tar, vec![0u8; h.size as usize])?.into();
                    crc = crc32fast::hash(&data);
                    captured.insert(h.name.clone(), Arc::clone(&data));
                    entries.push(streamed(&h, time, crc));
                    if let Mode::Probe { pending, .. } = &mut mode {
                        let pending = std::mem::take(pending);
                        mode = match Manifest::parse(&h.name, data).and_then(|m| Router::new(m, opts)) {
                            Ok(router) => {
                                let rows = router.manifest.rows.len();
                                progress.total_rows.store(rows as u64, Ordering::Relaxed);
                                // Most sources hold about one file a row: room for
                                // that, plus a sixteenth, instead of doubling past
                                // it (at 200,000 entries doubling left 4.5 MiB unused).
                                // Capped at the entry limit; untouched room costs no memory.
                                let room = (rows + rows / 16).min(opts.limits.max_entries);
                                entries.reserve_exact(room.saturating_sub(entries.len()));
                                progress.total_parts.store(router.parts as u64, Ordering::Relaxed);
                                Mode::Route(Box::new(router))
                            }
                            Err(_) => Mode::IndexOnly,
                        };
                        if let Mode::Route(router) = &mut mode {
                            let specs = router.specs(opts, &stem, time);
                            let (rx, back_tx) = rx.take().expect("writer starts once");
                            let (manifest, batch) = (Arc::clone(&router.manifest), router.batch);
                            let manifest_of: ManifestOf = Box::new(move |t| Router::part_manifest(&manifest, batch, t));
                            handle = Some(scope.spawn(move || writer(rx, back_tx, specs, manifest_of, deflate, progress)));
                            for (i, data) in pending {
                                let e = &entries[i];
                                let targets = router.route(i, &e.name);
                                if targets.is_empty() {
                                    continue;
                                }
                                let name = part_entry_name(e, &router.manifest.root).to_owned();
                                let msg = Msg::Whole {
                                    targets,
                                    name,
                                    time: e.time,
                                    crc: e.crc.expect("computed on read"),
                                    data,
                                };
                                if tx.send(msg).is_err() {
                                    return Ok(());
                                }
                            }
                            for (t, comment) in router.completed(&entries, opts.compression) {
                                let _ = tx.send(Msg::Finish {
                                    t,
                                    comment,
                                    publish: false,
                                });
                            }
                        }
                    }
                    continue;
                }
                match &mut mode {
                    Mode::Route(router) => {
                        let targets = router.route(idx, &h.name);
                        let rel = plan::relative(&h.name, &router.manifest.root).to_owned();
                        match forward(&mut tar, &mut tx, &pool, targets, &rel, time, h.size)? {
                            Ok(c) => crc = c,
                            Err(()) => return Ok(()), // writer failed; its error is reported below
                        }
                        entries.push(streamed(&h, time, crc));
                        progress.bytes_done.fetch_add(h.size, Ordering::Relaxed);
                        for (t, comment) in router.completed(&entries, opts.compression) {
                            if tx
                                .send(Msg::Finish {
                                    t,
                                    comment,
                                    publish: false,
                                })
                                .is_err()
                            {
                                return Ok(());
                            }
                        }
                    }
                    Mode::Probe { pending, bytes } if *bytes + h.size <= PENDING_MAX => {
                        let data = read_whole(&mut tar, vec![0u8; h.size as usize])?;
                        *bytes += h.size;
                        entries.push(streamed(&h, time, crc32fast::hash(&data)));
                        pending.push((idx, data));
                    }
                    _ => {
                        mode = Mode::IndexOnly;
                        let c = forward(&mut tar, &mut tx, &pool, Vec::new(), "", time, h.size)?.expect("nothing sent");
                        entries.push(streamed(&h, time, c));
                    }
                }
            }
            tar.finish()?;
            let _ = tx.flush(); // a writer that stopped reports its own error below
            Ok(())
        })();
        drop(tx);
        drop(pool); // its spare buffers (up to 4.5 MiB) are not needed for planning
        let written = match handle {
            Some(h) => h.join().expect("writer thread panicked"),
            None => Ok(Vec::new()),
        };
        // A writer error explains a decoder that stopped early; otherwise the decoder's.
        let sealed = match (decoded, written) {
            (Err(e), Ok(done)) => {
                discard_all(done);
                return Err(e);
            }
            (_, Err(e)) => return Err(e),
            (Ok(()), Ok(done)) => done,
        };
        // Only the guess is needed from here on: the router's index and its copy
        // of the manifest go before the real plan makes its own.
        let guess = match std::mem::replace(&mut mode, Mode::IndexOnly) {
            Mode::Route(r) => Some(r.into_guess()),
            _ => None,
        };
        // The decoder allocated each small entry's buffer and the writer thread
        // freed it: about 8 MiB of free heap at 200,000 entries, returned now
        // that both threads and the router are done, before planning.
        crate::mem::release_free_memory();
        let finish = (|| -> Result<SinglePass> {
            let mut source = Source::from_index(path, SourceKind::TarGz, std::mem::take(&mut entries), std::mem::take(&mut captured))?;
            source.ignored = std::mem::take(&mut ignored);
            let plan = plan::build(&source, opts)?;
            Ok(SinglePass {
                source,
                plan,
                done: HashMap::new(),
            })
        })();
        let mut result = match finish {
            Ok(r) => r,
            Err(e) => {
                discard_all(sealed);
                return Err(e);
            }
        };
        for (t, d) in sealed.into_iter().enumerate() {
            let Some(Done::Sealed(s)) = d else { continue };
            let router = guess.as_ref().expect("parts are only sealed while routing");
            let ok = result.plan.parts.len() == router.parts
                && !router.spoiled[t]
                && result.plan.parts[t].files == router.files[t]
                && result.plan.parts[t].comment == router.comments[t];
            if ok {
                let w = s.publish()?;
                progress.on_part.call(t + 1, &w);
                result.done.insert(t + 1, w);
                progress.rows_done.fetch_add(result.plan.parts[t].rows as u64, Ordering::Relaxed);
                progress.parts_done.fetch_add(1, Ordering::Relaxed);
            } else {
                s.discard();
            }
        }
        Ok(result)
    })
}

/// The index row of a TAR.GZ entry (its data is reachable only by streaming).
fn streamed(h: &tarread::TarHeader, time: DosTime, crc: u32) -> Entry {
    Entry {
        name: h.name.clone(),
        size: h.size,
        time,
        crc: Some(crc),
        loc: Loc::Stream,
    }
}

/// Which of the parts to pack each entry goes to, as one flat list (8 bytes an
/// entry): a `Vec` of parts per entry cost about 56 bytes an entry, 11 MB of a
/// 200,000-entry job's PACK.
struct Targets {
    /// Entry `k`'s parts are `parts[start[k]..start[k + 1]]`.
    start: Vec<u32>,
    parts: Vec<u32>,
}

impl Targets {
    fn new(entries: usize, todo: &[&PartPlan]) -> Targets {
        let mut start = vec![0u32; entries + 1];
        for p in todo {
            for &f in &p.files {
                start[f + 1] += 1;
            }
        }
        for k in 0..entries {
            start[k + 1] += start[k];
        }
        let mut fill = start.clone();
        let mut parts = vec![0u32; start[entries] as usize];
        for (t, p) in todo.iter().enumerate() {
            for &f in &p.files {
                parts[fill[f] as usize] = t as u32;
                fill[f] += 1;
            }
        }
        Targets { start, parts }
    }

    fn of(&self, k: usize) -> Vec<usize> {
        self.parts[self.start[k] as usize..self.start[k + 1] as usize]
            .iter()
            .map(|&t| t as usize)
            .collect()
    }
}

/// Packs `todo` by the real plan, decoding the source once more.
pub fn second_pass(src: &Source, plan: &Plan, todo: &[&PartPlan], opts: &SplitOptions, progress: &Progress) -> Result<Vec<Written>> {
    let deflate = opts.compression == Compression::Deflate;
    let specs: Vec<PartSpec> = todo
        .iter()
        .map(|p| PartSpec {
            n: p.n,
            path: p.path(&opts.out),
            manifest_name: plan.manifest.part_name().to_owned(),
            time: manifest_time(&src.entries, plan.manifest.entry.as_deref(), &p.files),
            rows: p.rows,
        })
        .collect();
    let targets = Targets::new(src.entries.len(), todo);
    let mut remaining: Vec<usize> = todo.iter().map(|p| p.files.len()).collect();
    let (tx, rx, back_tx, pool) = channels();
    let mut tx = Outbox::new(tx);
    std::thread::scope(|scope| {
        let manifest_of: ManifestOf = Box::new(|t| plan.part_manifest(todo[t]));
        let handle = scope.spawn(|| writer(rx, back_tx, specs, manifest_of, deflate, progress));
        let decoded = (|| -> Result<()> {
            let mut tar = TarStream::new(open_input(&src.path, true, &opts.limits)?, &src.path);
            let mut k = 0usize;
            let mut left = todo.len();
            while left > 0 {
                let Some(h) = tar.next_file(&mut tarread::Ignored::default())? else {
                    break;
                };
                let e = src
                    .entries
                    .get(k)
                    .filter(|e| e.name == h.name && e.size == h.size)
                    .ok_or_else(|| changed(&h.name))?;
                let ts = targets.of(k);
                k += 1;
                if ts.is_empty() {
                    continue;
                }
                check_cancel(progress)?;
                let name = part_entry_name(e, &plan.manifest.root).to_owned();
                let Ok(crc) = forward(&mut tar, &mut tx, &pool, ts.clone(), &name, e.time, e.size)? else {
                    return Ok(());
                };
                if Some(crc) != e.crc {
                    return Err(changed(&e.name));
                }
                progress.bytes_done.fetch_add(e.size, Ordering::Relaxed);
                for t in ts {
                    remaining[t] -= 1;
                    if remaining[t] == 0 {
                        left -= 1;
                        if tx
                            .send(Msg::Finish {
                                t,
                                comment: todo[t].comment.clone(),
                                publish: true,
                            })
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                }
            }
            if left > 0 {
                return Err(Error::corrupt(
                    None,
                    "the archive holds fewer entries than when it was indexed (it changed while being split)",
                ));
            }
            let _ = tx.flush(); // a writer that stopped reports its own error below
            Ok(())
        })();
        drop(tx);
        let written = handle.join().expect("writer thread panicked");
        match (decoded, written) {
            (Err(e), Ok(done)) => {
                discard_all(done);
                Err(e)
            }
            (_, Err(e)) => Err(e),
            (Ok(()), Ok(done)) => Ok(done
                .into_iter()
                .map(|d| match d {
                    Some(Done::Published(w)) => w,
                    _ => unreachable!("every part of the plan is published by the second pass"),
                })
                .collect()),
        }
    })
}
