//! Ways one thread tells others to wake or stop: [`EventBell`] (something was
//! committed), [`Stop`] (a shutdown that loops can sleep on), and the process
//! signals a command reacts to (SIGINT/SIGTERM set [`INTERRUPTED`]; SIGPIPE is
//! put back to its default so `batchd status | head -1` ends quietly). A leaf:
//! depends on nothing of ours.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Tells long-pollers that new events exist.
#[derive(Default)]
pub struct EventBell {
    seq: Mutex<u64>,
    cv: Condvar,
}

impl EventBell {
    pub fn ring(&self) {
        *self.seq.lock().unwrap() += 1;
        self.cv.notify_all();
    }

    /// Changes with every committed write: a cheap "has anything changed?" check.
    pub fn generation(&self) -> u64 {
        *self.seq.lock().unwrap()
    }

    /// Waits until rung or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let start = self.generation();
        self.wait_since(start, timeout);
    }

    /// Waits until the generation differs from `seen` (at once if it already does)
    /// or `timeout` passes.
    pub fn wait_since(&self, seen: u64, timeout: Duration) {
        let guard = self.seq.lock().unwrap();
        let _ = self.cv.wait_timeout_while(guard, timeout, |s| *s == seen);
    }
}

/// A stop request that background loops can sleep on: `sleep` returns early
/// once `set` is called, so shutdown does not wait out a scan interval.
#[derive(Default)]
pub struct Stop {
    flag: std::sync::atomic::AtomicBool,
    bell: EventBell,
}

impl Stop {
    pub fn set(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        self.bell.ring();
    }

    /// Ends a `sleep` early without asking for a stop (something to look at).
    pub fn wake(&self) {
        self.bell.ring();
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sleeps for `d`, or less if a stop is requested meanwhile.
    pub fn sleep(&self, d: Duration) {
        let seen = self.bell.generation();
        if !self.is_set() {
            self.bell.wait_since(seen, d);
        }
    }
}

/// Flips to true on SIGINT or SIGTERM; long-running commands poll it and stop at
/// a safe point instead of dying mid-write.
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

pub fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Lets a command whose reader went away (`batchd jobs | head -1`) end as Unix
/// tools do, killed by SIGPIPE, instead of panicking on a failed print (Rust
/// ignores SIGPIPE by default, turning it into an error that `println!` panics on).
pub fn default_sigpipe() {
    // SAFETY: restoring a signal's default disposition has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
