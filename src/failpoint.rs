//! Crash points for tests. Built with `--features failpoints`, the process
//! aborts (no destructors, no flush: as SIGKILL or a power cut leaves it) when it
//! reaches the point named by `BATCHD_FAILPOINT`, so a test can stop the daemon
//! between exactly two steps of a claim or a commit and check what a restart
//! makes of it. Without the feature, `hit` compiles to nothing.

/// Aborts the process here when `BATCHD_FAILPOINT` names this point.
#[inline(always)]
pub fn hit(_name: &str) {
    #[cfg(feature = "failpoints")]
    {
        static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        if ARMED.get_or_init(|| std::env::var("BATCHD_FAILPOINT").ok()).as_deref() == Some(_name) {
            eprintln!("batchd: failpoint {_name} reached; aborting");
            std::process::abort();
        }
    }
}
