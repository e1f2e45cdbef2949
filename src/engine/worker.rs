//! The worker process: `batchd worker` (hidden), started by the daemon's
//! [`super::pool`] with its stdin and stdout as a pipe. It runs one unit of
//! source work at a time with [`exec::execute`] — the same function thread
//! mode runs — and owns no database connection: the daemon stays the one
//! writer. A panic, an abort or a failed allocation ends this process, and the
//! daemon fails that one attempt and carries on.
//!
//! The pipe carries one JSON object per line (an edge, like the API): the
//! daemon sends [`ToWorker`], the worker answers with a [`FromWorker::Part`]
//! per published part and one [`FromWorker::Finished`]. Stdout carries nothing
//! else; logs go to stderr, which the daemon relays into its own log.

use std::io::{BufRead, Write};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::exec::{self, Outcome, PlanCache, TaskError, Work};
use crate::split::{PartHook, Progress};

#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    Run(Box<Work>),
    /// Stop the running work at the next entry boundary (job cancelled, shutdown).
    Cancel,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// A part was published (renamed and fsynced).
    Part {
        n: usize,
        bytes: u64,
        sha256: String,
        rows_done: u64,
    },
    Finished(Result<Outcome, TaskError>),
}

/// Plans a worker keeps: the one it is packing and the one before, so
/// alternating between two jobs' PACK tasks does not index either again.
const PLANS_KEPT: usize = 2;

/// Serves work from stdin until the daemon closes it.
pub fn main() -> anyhow::Result<()> {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let current: Arc<Mutex<Option<Arc<Progress>>>> = Arc::default();
    let (tx, rx) = mpsc::channel::<(Work, Arc<Progress>)>();
    // The reader makes each task's Progress itself, so a Cancel that follows
    // a Run at once always finds the task it is meant for.
    let reader = {
        let (out, current) = (Arc::clone(&out), Arc::clone(&current));
        std::thread::Builder::new().name("batchd-worker-stdin".into()).spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<ToWorker>(&line) {
                    Ok(ToWorker::Run(work)) => {
                        let progress = Arc::new_cyclic(|me| Progress {
                            on_part: part_reporter(Arc::clone(&out), me.clone()),
                            ..Progress::default()
                        });
                        *current.lock().unwrap() = Some(Arc::clone(&progress));
                        if tx.send((*work, progress)).is_err() {
                            break;
                        }
                    }
                    Ok(ToWorker::Cancel) => cancel(&current),
                    Err(e) => {
                        tracing::error!("worker: unreadable request ({e}); exiting");
                        break;
                    }
                }
            }
            // The daemon is gone or done with us: stop what runs, take no more.
            cancel(&current);
        })?
    };
    let cache = PlanCache::new(PLANS_KEPT);
    for (work, progress) in rx {
        let result = exec::execute(&work, &cache, &progress).map_err(TaskError::from);
        // Tell a second Run apart from this one: a late Cancel must not stop it.
        current.lock().unwrap().take_if(|p| Arc::ptr_eq(p, &progress));
        send(&out, &FromWorker::Finished(result))?;
        crate::mem::release_free_memory();
    }
    drop(reader);
    Ok(())
}

fn cancel(current: &Mutex<Option<Arc<Progress>>>) {
    if let Some(p) = &*current.lock().unwrap() {
        p.cancel.store(true, Ordering::SeqCst);
    }
}

fn part_reporter(out: Arc<Mutex<std::io::Stdout>>, progress: std::sync::Weak<Progress>) -> PartHook {
    PartHook(Some(Arc::new(move |n, w| {
        let msg = FromWorker::Part {
            n,
            bytes: w.bytes,
            sha256: w.sha256.clone(),
            rows_done: progress.upgrade().map_or(0, |p| p.rows_done.load(Ordering::Relaxed)),
        };
        // A daemon that cannot hear of a published part will find it again
        // (verified) when the part's task runs once more.
        if let Err(e) = send(&out, &msg) {
            tracing::error!("worker: reporting part {n}: {e:#}");
        }
    })))
}

fn send(out: &Mutex<std::io::Stdout>, msg: &FromWorker) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    let mut out = out.lock().unwrap();
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}
