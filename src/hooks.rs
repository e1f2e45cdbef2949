//! Site hooks: the programs a site runs after each part (`on_part`, typically an
//! uploader) and after each job (`on_job`). A hook is an argv, never a shell
//! line, so a part name cannot inject a command. It gets the facts twice: as
//! `BATCHD_*` environment variables for shell scripts, and as one JSON object on
//! stdin for programs. It runs in its own process group, so a timeout or a
//! shutdown kills the whole tree it started, and its stderr tail is kept for the
//! job's events and error.
//!
//! Part hooks are tasks of kind HOOK (one per part), so they share the engine's
//! claim order, retries with backoff, crash recovery and shutdown handling; the
//! job's FINISH waits for them, and the job shows a HOOK stage meanwhile.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::Error;

/// How much of a hook's stderr is kept.
const TAIL: usize = 2048;

/// What a hook run did.
#[derive(Debug)]
pub struct Ran {
    pub exit_code: Option<i32>,
    pub seconds: f64,
    pub stderr_tail: String,
    pub timed_out: bool,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// The error for a failed run: exit code or timeout, and the last stderr line.
    pub fn error(&self, hook: &'static str, argv: &[String], attempt: u32, of: u32) -> Error {
        let what = if self.timed_out {
            format!("timed out after {:.0} s", self.seconds)
        } else {
            match self.exit_code {
                Some(c) => format!("exited {c}"),
                None => "was killed by a signal".into(),
            }
        };
        let last = self.stderr_tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        Error::Hook {
            hook,
            message: format!(
                "{:?} {what} (attempt {attempt} of {of}){}",
                argv[0],
                if last.is_empty() { String::new() } else { format!(": {last}") }
            ),
        }
    }
}

/// Runs `argv` with `env` and `input` on stdin; kills it (and its process group)
/// after `timeout` or when `cancel` is set. An argv that cannot be started is
/// an error naming the program.
pub fn run(
    hook: &'static str,
    argv: &[String],
    env: &[(String, String)],
    input: &Value,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Result<Ran, Error> {
    let started = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Hook {
            hook,
            message: format!("{:?} could not be started: {e}; check the path in [hooks]", argv[0]),
        })?;
    // Both pipes in their own threads: a hook that never reads stdin, or writes
    // more stderr than a pipe holds, must not block us or itself.
    let body = input.to_string().into_bytes();
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * TAIL {
                tail.drain(..tail.len() - TAIL);
            }
        }
        tail
    });
    let pgid = child.id() as i32;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        let cancelled = cancel.load(Ordering::SeqCst);
        if started.elapsed() >= timeout || cancelled {
            timed_out = !cancelled;
            // SAFETY: kill(2) on the process group we created for this child.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            if cancelled {
                let _ = writer.join();
                return Err(Error::Cancelled);
            }
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The hook may have left children holding stderr open; they die with the group.
    // SAFETY: as above; the group may already be gone (ESRCH), which is fine.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = writer.join();
    let tail = reader.join().unwrap_or_default();
    let tail = String::from_utf8_lossy(&tail[tail.len().saturating_sub(TAIL)..]).into_owned();
    Ok(Ran {
        exit_code: status.and_then(|s| s.code()),
        seconds: started.elapsed().as_secs_f64(),
        stderr_tail: tail,
        timed_out,
    })
}
