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
/// `@N`, this is its Nth hit). A daemon and its worker processes count hits
/// together, and a worker that reaches the point takes the daemon down with
/// it: the test models a machine that stops, not one process.
#[inline(always)]
pub fn hit(_name: &str) {
    #[cfg(feature = "failpoints")]
    {
        static ARMED: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
        let armed = ARMED.get_or_init(|| {
            let v = std::env::var("BATCHD_FAILPOINT").ok()?;
            Some(match v.split_once('@') {
                Some((name, n)) => (name.to_owned(), n.parse().expect("BATCHD_FAILPOINT=NAME@N takes a number")),
                None => (v, 1),
            })
        });
        if let Some((name, nth)) = armed {
            if name == _name && shared::count() == *nth {
                eprintln!("batchd: failpoint {_name} reached (hit {nth}); aborting");
                if let Ok(owner) = std::env::var(shared::OWNER) {
                    // SAFETY: kill(2) on the daemon that started this worker.
                    unsafe {
                        libc::kill(owner.split('-').next().and_then(|p| p.parse().ok()).unwrap_or(0), libc::SIGKILL);
                    }
                }
                std::process::abort();
            }
        }
    }
}

/// Starts a fresh hit count for this daemon and its workers (engine start).
pub fn reset() {
    #[cfg(feature = "failpoints")]
    let _ = std::fs::remove_file(shared::path());
}

/// Environment a worker process needs to count hits with its daemon.
pub fn worker_env() -> Option<(&'static str, String)> {
    #[cfg(feature = "failpoints")]
    return Some((shared::OWNER, shared::key()));
    #[cfg(not(feature = "failpoints"))]
    None
}

#[cfg(feature = "failpoints")]
mod shared {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;

    pub const OWNER: &str = "BATCHD_FAILPOINT_OWNER";

    /// This process's pid and start time: a pid alone is reused, and a
    /// counter file left by an aborted run must not count for a new one.
    pub fn key() -> String {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let start = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(19))
            .unwrap_or("0");
        format!("{}-{start}", std::process::id())
    }

    /// One counter file per daemon (or CLI run), shared with its workers.
    pub fn path() -> std::path::PathBuf {
        let owner = std::env::var(OWNER).unwrap_or_else(|_| key());
        std::env::temp_dir().join(format!("batchd-failpoint-{owner}"))
    }

    /// Adds one hit under an exclusive lock and returns the new count.
    pub fn count() -> u64 {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path())
            .expect("failpoint counter file");
        // SAFETY: flock on a descriptor we own; released when `f` closes.
        unsafe {
            libc::flock(f.as_raw_fd(), libc::LOCK_EX);
        }
        let mut text = String::new();
        f.read_to_string(&mut text).expect("failpoint counter");
        let n = text.trim().parse::<u64>().unwrap_or(0) + 1;
        f.rewind().expect("failpoint counter");
        f.set_len(0).expect("failpoint counter");
        write!(f, "{n}").expect("failpoint counter");
        n
    }
}

/// Misbehaving tasks, for the worker-isolation tests: with
/// `BATCHD_TASK_FAULT=KIND:MARKER[,KIND:MARKER…]`, a PACK task whose source
/// path contains MARKER does what KIND says — `panic`, `abort`, `alloc`
/// (allocates and touches memory until an allocation fails) or `hang` (and
/// leaves `SOURCE.PID.hanging` beside the source, naming the process) — so
/// one daemon can run a faulty job beside a healthy one.
#[inline(always)]
pub fn task_fault(_source: &std::path::Path) {
    #[cfg(feature = "failpoints")]
    {
        let Ok(spec) = std::env::var("BATCHD_TASK_FAULT") else { return };
        let source = _source.to_string_lossy();
        for rule in spec.split(',') {
            let Some((kind, marker)) = rule.split_once(':') else { continue };
            if marker.is_empty() || !source.contains(marker) {
                continue;
            }
            match kind {
                "panic" => panic!("task fault: panic in a PACK of {source}"),
                "abort" => std::process::abort(),
                "alloc" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 16 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                "hang" => {
                    // Tells a test which process to kill from outside.
                    let _ = std::fs::write(format!("{source}.{}.hanging", std::process::id()), "");
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    }
                }
                other => panic!("BATCHD_TASK_FAULT: unknown kind {other:?}"),
            }
        }
    }
}
