//! Filesystem events as a wake-up hint for the watcher (the `notify` crate:
//! inotify on Linux). An event only says "look now": the reconciling scan
//! stays the truth, so a lost event, a queue overflow or a filesystem that
//! delivers none (NFS, some FUSE mounts) costs latency, never a file. Only
//! events that can make a file ready wake the scan — created, renamed in or
//! out, closed after writing, removed — not every write of a large upload.

use std::path::PathBuf;
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};

use crate::signals::Stop;

pub struct Hint {
    /// Kept alive for as long as events should come; None without events.
    watcher: Option<notify::RecommendedWatcher>,
}

impl Hint {
    /// Watches each inbox (not its subdirectories) and wakes `stop` on a
    /// relevant event. Where any inbox cannot be watched, none is: the
    /// watcher then scans every half second, as without events.
    pub fn start(dirs: &[PathBuf], stop: Arc<Stop>, wanted: bool) -> Hint {
        if !wanted {
            return Hint { watcher: None };
        }
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(e) if wakes(&e.kind) => stop.wake(),
            Ok(_) => {}
            // An overflow or a watch lost: look now, the scan finds what changed.
            Err(_) => stop.wake(),
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::info!("no filesystem events ({e}); inboxes are scanned every 0.5 s");
                return Hint { watcher: None };
            }
        };
        for d in dirs {
            if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
                tracing::info!("no filesystem events for {} ({e}); inboxes are scanned every 0.5 s", d.display());
                return Hint { watcher: None };
            }
        }
        Hint { watcher: Some(watcher) }
    }

    /// True when events come, so an idle inbox may be scanned less often.
    pub fn active(&self) -> bool {
        self.watcher.is_some()
    }
}

fn wakes(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Any
            | EventKind::Other
    )
}
