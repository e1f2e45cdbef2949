//! The hand-off between the two threads of a TAR.GZ split: what the decoding
//! thread sends ([`Msg`], batched by [`Outbox`]), the writing thread that owns
//! the part files ([`writer`]), and the pool that sends data buffers back for
//! reuse. Kept apart from `stream`, which decides what goes where.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::names::DosTime;
use super::zipwrite::{Body, PartWriter, Sealed, Written};
use super::Progress;
use crate::error::Result;

/// Messages in flight between the decoder and the writer (bounds memory).
pub(super) const CHANNEL: usize = 16;
/// Small whole entries travel in batches of up to this many bytes or entries.
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_ENTRIES: usize = 512;

/// What the decoder tells the writer thread.
pub(super) enum Msg {
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
pub(super) struct PartSpec {
    pub(super) n: usize,
    pub(super) path: std::path::PathBuf,
    pub(super) manifest_name: String,
    pub(super) time: DosTime,
    pub(super) rows: usize,
}

/// Makes the manifest bytes of part `t` when the writer opens it.
pub(super) type ManifestOf<'a> = Box<dyn Fn(usize) -> Vec<u8> + Send + 'a>;

pub(super) enum Done {
    Sealed(Sealed),
    Published(Written),
}

/// Owns the part files; runs until the channel closes or an error occurs.
pub(super) fn writer(
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

pub(super) fn discard_all(done: Vec<Option<Done>>) {
    for d in done.into_iter().flatten() {
        if let Done::Sealed(s) = d {
            s.discard();
        }
    }
}

/// Buffers coming back from the writer, reused for the next entries.
pub(super) struct Pool(Receiver<Vec<u8>>);

impl Pool {
    pub(super) fn take(&self, len: usize) -> Vec<u8> {
        let mut v = self.0.try_recv().unwrap_or_default();
        v.resize(len, 0);
        v
    }
}

pub(super) fn channels() -> (SyncSender<Msg>, Receiver<Msg>, SyncSender<Vec<u8>>, Pool) {
    let (tx, rx) = sync_channel::<Msg>(CHANNEL);
    let (back_tx, back_rx) = sync_channel::<Vec<u8>>(CHANNEL + 2);
    (tx, rx, back_tx, Pool(back_rx))
}

/// The decoder's end of the channel. Small whole entries are gathered into one
/// message: one message per 1 KB entry woke the writer 200,000 times and spent
/// about a sixth of a TAR.GZ split switching between the two threads.
pub(super) struct Outbox {
    tx: SyncSender<Msg>,
    batch: Vec<Msg>,
    bytes: usize,
}

impl Outbox {
    pub(super) fn new(tx: SyncSender<Msg>) -> Self {
        Outbox {
            tx,
            batch: Vec::new(),
            bytes: 0,
        }
    }

    /// Sends `msg` after whatever is batched; `Err` when the writer has stopped.
    pub(super) fn send(&mut self, msg: Msg) -> std::result::Result<(), ()> {
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

    pub(super) fn flush(&mut self) -> std::result::Result<(), ()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        self.tx.send(Msg::Batch(std::mem::take(&mut self.batch))).map_err(drop)
    }
}
