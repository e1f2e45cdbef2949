//! Crash points for tests. Built with `--features failpoints`, the process
//! aborts (no destructors, no flush of its own buffers, as SIGKILL leaves it) when it
//! reaches the point named by `BATCHD_FAILPOINT`, so a test can stop the daemon
//! between exactly two steps of a claim or a commit and check what a restart
//! makes of it. `NAME@N` aborts on the Nth time the point is reached, so a crash
//! can land in the middle of a job rather than at its first part. Without the
//! feature, `hit` compiles to nothing.
//!
//! The `fail` crate was weighed and not taken: its actions (panic, return, sleep)
//! unwind or continue, and a panic on a rayon worker is caught and becomes a task
//! error, so it cannot model a machine that stops between two syscalls.

/// Aborts the process here when `BATCHD_FAILPOINT` names this point (and, with
/// `@N`, this is its Nth hit).
#[inline(always)]
pub fn hit(_name: &str) {
    #[cfg(feature = "failpoints")]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static ARMED: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
        static HITS: AtomicU64 = AtomicU64::new(0);
        let armed = ARMED.get_or_init(|| {
            let v = std::env::var("BATCHD_FAILPOINT").ok()?;
            Some(match v.split_once('@') {
                Some((name, n)) => (name.to_owned(), n.parse().expect("BATCHD_FAILPOINT=NAME@N takes a number")),
                None => (v, 1),
            })
        });
        if let Some((name, nth)) = armed {
            if name == _name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
                eprintln!("batchd: failpoint {_name} reached (hit {nth}); aborting");
                std::process::abort();
            }
        }
    }
}
