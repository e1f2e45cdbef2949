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
use std::hash::{BuildHasher, BuildHasherDefault, RandomState};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::manifest::{self, Manifest};
use super::names::{self, DosTime};
use super::pack::{changed, check_cancel, manifest_time};
use super::plan::{self, part_entry_name, PartPlan, Plan};
use super::source::{Entry, Loc, Source, SourceKind};
use super::tarread::{self, TarKind, TarStream};
use super::zipread::check_size;
use super::zipwrite::{Body, PartWriter, Sealed, Written};
use super::{Compression, OnMissing, Progress, SplitOptions};
use crate::error::{Error, Result};

/// Entries up to this size travel to the writer as one message with their CRC.
const WHOLE: u64 = 1 << 20;
const CHUNK: usize = 256 * 1024;
/// Data of entries seen before the manifest that we hold on to, hoping it follows.
const PENDING_MAX: u64 = 16 << 20;
/// Messages in flight between the decoder and the writer (bounds memory).
const CHANNEL: usize = 16;
/// Small whole entries travel in batches of up to this many bytes or entries.
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_ENTRIES: usize = 512;

/// What the decoder tells the writer thread.
enum Msg {
    Begin {
        targets: Vec<usize>,
        name: String,
        time: DosTime,
        crc: Option<u32>,
        size: u64,
    },
    Data(Vec<u8>),
    End,
    /// Begin, Data and End of a small entry in one message.
    Whole {
        targets: Vec<usize>,
        name: String,
        time: DosTime,
        crc: u32,
        data: Vec<u8>,
    },
    /// Several `Whole` messages (see [`Outbox`]).
    Batch(Vec<Msg>),
    /// Seal part `t`; publish it right away when `publish` is set.
    Finish {
        t: usize,
        comment: String,
        publish: bool,
    },
}

/// What the writer needs to open part `t` (its manifest bytes come from the
/// writer's `manifest_of`, made when the part is opened).
struct PartSpec {
    n: usize,
    path: std::path::PathBuf,
    manifest_name: String,
    time: DosTime,
    rows: usize,
}

/// Makes the manifest bytes of part `t` when the writer opens it.
type ManifestOf<'a> = Box<dyn Fn(usize) -> Vec<u8> + Send + 'a>;

enum Done {
    Sealed(Sealed),
    Published(Written),
}

/// Owns the part files; runs until the channel closes or an error occurs.
fn writer(
    rx: Receiver<Msg>,
    recycle: SyncSender<Vec<u8>>,
    specs: Vec<PartSpec>,
    manifest_of: ManifestOf,
    deflate: bool,
    progress: &Progress,
) -> Result<Vec<Option<Done>>> {
    let mut writers: Vec<Option<PartWriter>> = specs.iter().map(|_| None).collect();
    let mut done: Vec<Option<Done>> = specs.iter().map(|_| None).collect();
    let mut current: Vec<usize> = Vec::new();
    let body = if deflate { Body::Deflate } else { Body::Store };
    let result = (|| -> Result<()> {
        let mut step = |msg: Msg| -> Result<()> {
            match msg {
                Msg::Begin {
                    targets,
                    name,
                    time,
                    crc,
                    size,
                } => {
                    for &t in &targets {
                        open_part(&mut writers, &specs, &manifest_of, t, deflate)?.begin(&name, time, body, crc, size)?;
                    }
                    current = targets;
                }
                Msg::Data(d) => {
                    for &t in &current {
                        writers[t].as_mut().expect("opened").data(&d)?;
                    }
                    // Hand the buffer back: fresh allocations cost a page fault per 4 KiB.
                    let _ = recycle.try_send(d);
                }
                Msg::End => {
                    for &t in &current {
                        writers[t].as_mut().expect("opened").end()?;
                    }
                }
                Msg::Whole {
                    targets,
                    name,
                    time,
                    crc,
                    data,
                } => {
                    for &t in &targets {
                        open_part(&mut writers, &specs, &manifest_of, t, deflate)?.begin(
                            &name,
                            time,
                            body,
                            Some(crc),
                            data.len() as u64,
                        )?;
                        let w = writers[t].as_mut().expect("opened");
                        w.data(&data)?;
                        w.end()?;
                    }
                    let _ = recycle.try_send(data);
                }
                Msg::Finish { t, comment, publish } => {
                    let w = writers[t].take().expect("a part is opened by its first file");
                    let sealed = w.seal(&comment)?;
                    done[t] = Some(if publish {
                        progress.rows_done.fetch_add(specs[t].rows as u64, Ordering::Relaxed);
                        progress.parts_done.fetch_add(1, Ordering::Relaxed);
                        let w = sealed.publish()?;
                        progress.on_part.call(specs[t].n, &w);
                        Done::Published(w)
                    } else {
                        Done::Sealed(sealed)
                    });
                }
                Msg::Batch(_) => unreachable!("a batch holds only whole entries"),
            }
            Ok(())
        };
        for msg in rx {
            match msg {
                Msg::Batch(msgs) => msgs.into_iter().try_for_each(&mut step)?,
                msg => step(msg)?,
            }
        }
        Ok(())
    })();
    for w in writers.into_iter().flatten() {
        w.abandon();
    }
    match result {
        Ok(()) => Ok(done),
        Err(e) => {
            discard_all(done);
            Err(e)
        }
    }
}

/// The writer of part `t`, opened (with its manifest) on first use.
fn open_part<'w>(
    writers: &'w mut [Option<PartWriter>],
    specs: &[PartSpec],
    manifest_of: &ManifestOf,
    t: usize,
    deflate: bool,
) -> Result<&'w mut PartWriter> {
    if writers[t].is_none() {
        let spec = &specs[t];
        let mut w = PartWriter::create(&spec.path)?;
        w.add_bytes(&spec.manifest_name, spec.time, deflate, &manifest_of(t))?;
        writers[t] = Some(w);
    }
    Ok(writers[t].as_mut().expect("opened above"))
}

fn discard_all(done: Vec<Option<Done>>) {
    for d in done.into_iter().flatten() {
        if let Done::Sealed(s) = d {
            s.discard();
        }
    }
}

/// Buffers coming back from the writer, reused for the next entries.
struct Pool(Receiver<Vec<u8>>);

impl Pool {
    fn take(&self, len: usize) -> Vec<u8> {
        let mut v = self.0.try_recv().unwrap_or_default();
        v.resize(len, 0);
        v
    }
}

fn channels() -> (SyncSender<Msg>, Receiver<Msg>, SyncSender<Vec<u8>>, Pool) {
    let (tx, rx) = sync_channel::<Msg>(CHANNEL);
    let (back_tx, back_rx) = sync_channel::<Vec<u8>>(CHANNEL + 2);
    (tx, rx, back_tx, Pool(back_rx))
}

/// The decoder's end of the channel. Small whole entries are gathered into one
/// message: one message per 1 KB entry woke the writer 200,000 times and spent
/// about a sixth of a TAR.GZ split switching between the two threads.
struct Outbox {
    tx: SyncSender<Msg>,
    batch: Vec<Msg>,
    bytes: usize,
}

impl Outbox {
    fn new(tx: SyncSender<Msg>) -> Self {
        Outbox {
            tx,
            batch: Vec::new(),
            bytes: 0,
        }
    }

    /// Sends `msg` after whatever is batched; `Err` when the writer has stopped.
    fn send(&mut self, msg: Msg) -> std::result::Result<(), ()> {
        if let Msg::Whole { data, name, .. } = &msg {
            if data.len() < BATCH_BYTES {
                self.bytes += data.len() + name.len();
                self.batch.push(msg);
                if self.bytes >= BATCH_BYTES || self.batch.len() >= BATCH_ENTRIES {
                    self.flush()?;
                }
                return Ok(());
            }
        }
        self.flush()?;
        self.tx.send(msg).map_err(drop)
    }

    fn flush(&mut self) -> std::result::Result<(), ()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        self.tx.send(Msg::Batch(std::mem::take(&mut self.batch))).map_err(drop)
    }
}

/// Reads the current entry's data: sends it to `targets` (if any) and returns its CRC.
#[allow(clippy::too_many_arguments)]
fn forward<R: tarread::TarInput>(
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

fn read_whole<R: tarread::TarInput>(tar: &mut TarStream<R>, mut data: Vec<u8>) -> Result<Vec<u8>> {
    let mut got = 0;
    while got < data.len() {
        got += tar.read_data(&mut data[got..])?;
    }
    Ok(data)
}

/// One candidate file column: each row's value key as a keyed 64-bit hash
/// (16 bytes a row, no strings), sorted so a name's rows are one run. Routing
/// here is only a guess that the real plan checks before any part is published,
/// so a hash stands in for the value; the key is random per process, so a
/// hostile manifest cannot aim collisions at it.
struct Column {
    keys: Vec<(u64, u32)>,
    /// For the chosen column: hash → its run in `keys`, one probe per entry
    /// (bisecting `keys` for each of 200,000 entries cost 2 s of cache misses).
    runs: HashMap<u64, (u32, u32), BuildHasherDefault<Prehashed>>,
}

/// The keys of [`Column::runs`] are keyed hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl Column {
    fn build(manifest: &Manifest, col: usize, hasher: &RandomState) -> Column {
        let mut keys = Vec::with_capacity(manifest.rows.len());
        manifest.each_record(|r, rec| {
            if let Some(k) = rec.get(col).and_then(plan::value_key) {
                keys.push((hasher.hash_one(k.as_ref()), r as u32));
            }
        });
        keys.sort_unstable();
        Column {
            keys,
            runs: HashMap::default(),
        }
    }

    /// Indexes the runs, once the column is chosen.
    fn index_runs(&mut self) {
        let mut at = 0;
        while at < self.keys.len() {
            let h = self.keys[at].0;
            let end = at + self.keys[at..].partition_point(|&(k, _)| k == h);
            self.runs.insert(h, (at as u32, (end - at) as u32));
            at = end;
        }
    }

    /// Positions in `keys` of the rows whose value is `name`.
    fn run(&self, hasher: &RandomState, name: &str) -> std::ops::Range<usize> {
        let h = hasher.hash_one(name);
        if !self.runs.is_empty() {
            return self.runs.get(&h).map_or(0..0, |&(at, n)| at as usize..(at + n) as usize);
        }
        let from = self.keys.partition_point(|&(k, _)| k < h);
        from..from + self.keys[from..].partition_point(|&(k, _)| k == h)
    }
}

/// The provisional routing of the single pass, made from the manifest alone and
/// the entries seen so far.
struct Router {
    manifest: Arc<Manifest>,
    batch: usize,
    parts: usize,
    hasher: RandomState,
    /// Candidate columns; once a file matches one, only that one is kept.
    columns: Vec<Column>,
    chosen: bool,
    /// Per position in the chosen column: whether the value starting a run there
    /// has already been matched by a file.
    matched: Vec<bool>,
    remaining: Vec<usize>,
    files: Vec<Vec<usize>>,
    finished: Vec<bool>,
    /// Set when the guess went wrong for a part (a second file matched one value).
    spoiled: Vec<bool>,
    comments: Vec<String>,
}

impl Router {
    fn new(manifest: Manifest, opts: &SplitOptions) -> Result<Router> {
        let cols: Vec<usize> = match &opts.file_column {
            Some(c) => vec![manifest.column(c)?],
            None => (0..manifest.headers.len()).collect(),
        };
        let hasher = RandomState::new();
        let columns = cols.into_iter().map(|c| Column::build(&manifest, c, &hasher)).collect();
        let parts = manifest.rows.len().div_ceil(opts.batch_size);
        Ok(Router {
            manifest: Arc::new(manifest),
            batch: opts.batch_size,
            parts,
            hasher,
            columns,
            chosen: false,
            matched: Vec::new(),
            remaining: vec![0; parts],
            files: vec![Vec::new(); parts],
            finished: vec![false; parts],
            spoiled: vec![false; parts],
            comments: vec![String::new(); parts],
        })
    }

    fn specs(&self, opts: &SplitOptions, stem: &str, time: DosTime) -> Vec<PartSpec> {
        (0..self.parts)
            .map(|p| {
                let rows = ((p + 1) * self.batch).min(self.manifest.rows.len()) - p * self.batch;
                PartSpec {
                    n: p + 1,
                    path: opts.out.join(format!("{stem}-part{}.zip", p + 1)),
                    manifest_name: self.manifest.part_name().to_owned(),
                    time,
                    rows,
                }
            })
            .collect()
    }

    /// The manifest bytes of part `p` (all rows: the single pass skips none).
    fn part_manifest(manifest: &Manifest, batch: usize, p: usize) -> Vec<u8> {
        let rows = &manifest.rows[p * batch..((p + 1) * batch).min(manifest.rows.len())];
        manifest.part_bytes(rows.iter())
    }

    /// Runs of `column` whose value is `rel` or, for a nested file, its bare name.
    fn hits(&self, column: &Column, rel: &str) -> Vec<std::ops::Range<usize>> {
        let mut keys = vec![rel];
        if rel.contains('/') {
            keys.push(names::basename(rel));
        }
        keys.into_iter()
            .map(|k| column.run(&self.hasher, k))
            .filter(|r| !r.is_empty())
            .collect()
    }

    /// The parts of the rows at `run` of the chosen column.
    fn parts_of(&self, run: std::ops::Range<usize>) -> Vec<usize> {
        let mut parts: Vec<usize> = self.columns[0].keys[run].iter().map(|&(_, r)| r as usize / self.batch).collect();
        parts.dedup();
        parts
    }

    /// The parts that want entry `idx` named `name`.
    fn route(&mut self, idx: usize, name: &str) -> Vec<usize> {
        let root = &self.manifest.root;
        let Some(rel) = name.strip_prefix(root.as_str()) else {
            return Vec::new();
        };
        if Some(name) == self.manifest.entry.as_deref() {
            return Vec::new();
        }
        if !self.chosen {
            let Some(slot) = (0..self.columns.len()).find(|&s| !self.hits(&self.columns[s], rel).is_empty()) else {
                return Vec::new();
            };
            let mut column = self.columns.swap_remove(slot);
            column.index_runs();
            self.columns = vec![column];
            self.chosen = true;
            self.matched = vec![false; self.columns[0].keys.len()];
            // Each part waits for one file per distinct value among its rows.
            let runs: Vec<(u32, u32)> = self.columns[0].runs.values().copied().collect();
            for (at, n) in runs {
                for p in self.parts_of(at as usize..(at + n) as usize) {
                    self.remaining[p] += 1;
                }
            }
        }
        let hits: Vec<(usize, Vec<usize>)> = self
            .hits(&self.columns[0], rel)
            .into_iter()
            .map(|run| (run.start, self.parts_of(run)))
            .collect();
        let mut targets = Vec::new();
        for (start, parts) in hits {
            let first = !std::mem::replace(&mut self.matched[start], true);
            for p in parts {
                if first {
                    self.remaining[p] -= 1;
                } else {
                    self.spoiled[p] = true;
                }
                if self.finished[p] {
                    self.spoiled[p] = true;
                } else if !targets.contains(&p) {
                    targets.push(p);
                }
            }
        }
        for &p in &targets {
            self.files[p].push(idx);
        }
        targets
    }

    /// Parts whose last file has just been routed.
    fn completed(&mut self, entries: &[Entry], compression: Compression) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for p in 0..self.parts {
            if !self.finished[p] && self.chosen && self.remaining[p] == 0 && !self.files[p].is_empty() {
                self.finished[p] = true;
                let comment = plan::fingerprint(
                    entries,
                    &self.manifest,
                    compression,
                    p + 1,
                    self.parts,
                    &Self::part_manifest(&self.manifest, self.batch, p),
                    &self.files[p],
                );
                self.comments[p] = comment.clone();
                out.push((p, comment));
            }
        }
        out
    }
}

/// What the single pass guessed for each part, kept to compare with the plan.
struct Guess {
    parts: usize,
    spoiled: Vec<bool>,
    files: Vec<Vec<usize>>,
    comments: Vec<String>,
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
    let mut captured: HashMap<String, Vec<u8>> = HashMap::new();
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
            let mut tar = TarStream::new(tarread::open_input(path, true, &opts.limits)?, path);
            while let Some(h) = tar.next_entry()? {
                match h.kind {
                    TarKind::File => {}
                    TarKind::Dir => continue,
                    TarKind::Ignored(what) => {
                        ignored.add(&h.raw_name, what);
                        continue;
                    }
                }
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
                    let data = read_whole(&mut tar, vec![0u8; h.size as usize])?;
                    crc = crc32fast::hash(&data);
                    captured.insert(h.name.clone(), data.clone());
                    entries.push(streamed(&h, time, crc));
                    if let Mode::Probe { pending, .. } = &mut mode {
                        let pending = std::mem::take(pending);
                        mode = match Manifest::parse(&h.name, data).and_then(|m| Router::new(m, opts)) {
                            Ok(router) => {
                                progress.total_rows.store(router.manifest.rows.len() as u64, Ordering::Relaxed);
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
            Mode::Route(r) => Some(Guess {
                parts: r.parts,
                spoiled: r.spoiled,
                files: r.files,
                comments: r.comments,
            }),
            _ => None,
        };
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
    let mut targets: Vec<Vec<usize>> = vec![Vec::new(); src.entries.len()];
    for (t, p) in todo.iter().enumerate() {
        for &f in &p.files {
            targets[f].push(t);
        }
    }
    let mut remaining: Vec<usize> = todo.iter().map(|p| p.files.len()).collect();
    let (tx, rx, back_tx, pool) = channels();
    let mut tx = Outbox::new(tx);
    std::thread::scope(|scope| {
        let manifest_of: ManifestOf = Box::new(|t| plan.part_manifest(todo[t]));
        let handle = scope.spawn(|| writer(rx, back_tx, specs, manifest_of, deflate, progress));
        let decoded = (|| -> Result<()> {
            let mut tar = TarStream::new(tarread::open_input(&src.path, true, &opts.limits)?, &src.path);
            let mut k = 0usize;
            let mut left = todo.len();
            while left > 0 {
                let Some(h) = tar.next_entry()? else { break };
                if !matches!(h.kind, TarKind::File) {
                    continue;
                }
                let e = src
                    .entries
                    .get(k)
                    .filter(|e| e.name == h.name && e.size == h.size)
                    .ok_or_else(|| changed(&h.name))?;
                let ts = std::mem::take(&mut targets[k]);
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
