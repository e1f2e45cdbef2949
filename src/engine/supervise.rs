//! The supervisor thread: enforces the per-task timeout (a worker process is
//! killed, a thread-mode task stopped at its next entry) and keeps systemd's
//! watchdog and STATUS line fed, with the queue's state and the packing rate.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Engine;
use crate::store::queue;

impl Engine {
    /// Rows packed since the daemon started, counting tasks still running.
    fn rows_packed(&self) -> u64 {
        let running: u64 = self
            .running
            .lock()
            .unwrap()
            .values()
            .map(|r| r.progress.rows_done.load(Ordering::Relaxed))
            .sum();
        self.rows_finished.load(Ordering::Relaxed) + running
    }

    /// Pings systemd's watchdog and refreshes its STATUS line, after a round
    /// trip through the database writer: if the writer is stuck, so is this
    /// loop, the pings stop and systemd restarts us.
    fn notify_systemd(&self, last: &mut (Instant, u64)) {
        let alive = self.store.write_quiet(|_| Ok(())).is_ok();
        let (queued, paused) = self
            .store
            .read(|c| {
                let queued = queue::jobs_waiting_or_running(c)?;
                Ok((queued, queue::queue_state(c)?.paused))
            })
            .unwrap_or((-1, false));
        let rows = self.rows_packed();
        let rate = rows.saturating_sub(last.1) as f64 / last.0.elapsed().as_secs_f64().max(0.001);
        *last = (Instant::now(), rows);
        let space = self.waiting_for_space().map(|w| format!("{}, ", w.message())).unwrap_or_default();
        let status = format!(
            "STATUS={}{space}{} tasks running, {queued} jobs queued or processing, {} rows/s",
            if paused { "queue PAUSED, " } else { "" },
            self.running_tasks(),
            crate::text::thousands(rate.round() as u64)
        );
        crate::sdnotify::notify(&if alive { format!("WATCHDOG=1\n{status}") } else { status });
    }

    /// Enforces the per-task timeout, and keeps systemd informed.
    pub(super) fn supervise(&self) {
        let limit = Duration::from_secs(self.config.engine.task_timeout_seconds.max(1));
        // Not under systemd: no pings, and an idle supervisor sleeps 30 s at a time.
        let notify_every = crate::sdnotify::enabled()
            .then(|| crate::sdnotify::watchdog_interval().map_or(Duration::from_secs(5), |w| w.min(Duration::from_secs(5))));
        let mut last_notify = (Instant::now(), 0);
        while !self.stopping.load(Ordering::SeqCst) {
            if notify_every.is_some_and(|every| last_notify.0.elapsed() >= every) {
                self.notify_systemd(&mut last_notify);
            }
            // Read before looking, so a task that starts in between still wakes us.
            let generation = self.started.generation();
            let running = self.running.lock().unwrap();
            for r in running.values() {
                if r.started.elapsed() > limit && !r.timed_out.swap(true, Ordering::SeqCst) {
                    // A worker process is killed: a task stuck in a system call
                    // or a loop never reaches an entry boundary.
                    match &*r.link.lock().unwrap() {
                        Some(link) => link.kill(),
                        None => r.stop(),
                    }
                }
            }
            // Nothing running, nothing to time out: sleep until a task starts.
            let idle = running.is_empty();
            drop(running);
            let wait = match (idle, notify_every) {
                (false, _) => Duration::from_millis(500),
                (true, Some(every)) => every,
                (true, None) => Duration::from_secs(30),
            };
            self.started.wait_since(generation, wait);
        }
    }
}
