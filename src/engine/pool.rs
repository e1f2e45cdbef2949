//! Worker processes, seen from the daemon (`engine.isolation = "process"`).
//! Each engine thread borrows one idle worker (or starts one) for a PLAN or
//! PACK, writes the work down its stdin and reads the answer from its stdout;
//! the worker is retired after `engine.max_tasks_per_worker` tasks. A worker
//! that dies mid-task — a panic, an abort, a failed allocation under
//! `engine.worker_memory_mib`, a SIGKILL — fails only that attempt, with a
//! code that names the signal or the limit, and the next task gets a fresh one.
//!
//! Workers are the daemon's own binary (`/proc/self/exe`, so an upgrade that
//! replaces the file on disk cannot pair a new worker with an old daemon),
//! started with `PR_SET_PDEATHSIG` so none outlives a daemon that was killed:
//! a restarted daemon re-runs the task and must be its only writer.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::exec::{Failure, Outcome, TaskError, Work};
use super::worker::{FromWorker, ToWorker};
use crate::split::{zipwrite::Written, Progress};

/// Lines of a worker's stderr kept to explain its death (a panic message, an
/// allocation failure).
const TAIL_LINES: usize = 20;

pub struct Pool {
    program: std::path::PathBuf,
    max_tasks: u32,
    memory_mib: u64,
    idle: Mutex<Vec<Proc>>,
    /// Worker processes started since the daemon started (for `/metrics`).
    pub started: AtomicU64,
    /// Worker processes that died during a task.
    pub crashed: AtomicU64,
}

struct Proc {
    child: Child,
    link: Arc<Link>,
    stdout: BufReader<ChildStdout>,
    /// Relays the worker's stderr to our log; ends (with the last lines)
    /// when the worker has exited.
    log: std::thread::JoinHandle<VecDeque<String>>,
    tasks: u32,
}

/// What other threads may do to a worker while it runs a task: ask it to stop
/// at the next entry (cancel, shutdown), or kill it (timeout).
pub struct Link {
    pub pid: u32,
    stdin: Mutex<Option<ChildStdin>>,
    killed: AtomicBool,
}

impl Link {
    pub fn cancel(&self) {
        if let Some(stdin) = &mut *self.stdin.lock().unwrap() {
            // A worker that has died cannot be told; its end is seen on stdout.
            let _ = write_msg(stdin, &ToWorker::Cancel);
        }
    }

    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        // SAFETY: kill(2) on our own child's pid; it is reaped only by the
        // thread that owns the Proc, after this Link stops being reachable.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

fn write_msg(w: &mut impl Write, msg: &ToWorker) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

impl Pool {
    pub fn new(program: Option<std::path::PathBuf>, max_tasks: u32, memory_mib: u64) -> Pool {
        Pool {
            program: program.unwrap_or_else(|| "/proc/self/exe".into()),
            max_tasks,
            memory_mib,
            idle: Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
            crashed: AtomicU64::new(0),
        }
    }

    /// Runs `work` in a worker. Published parts go to `progress.on_part` as the
    /// worker reports them; `attach` is given the worker's [`Link`] before the
    /// work is sent.
    pub fn run(&self, work: &Work, progress: &Progress, attach: impl FnOnce(Arc<Link>)) -> Result<Outcome, TaskError> {
        let mut proc = self.take()?;
        attach(Arc::clone(&proc.link));
        let sent = proc
            .link
            .stdin
            .lock()
            .unwrap()
            .as_mut()
            .map(|stdin| write_msg(stdin, &ToWorker::Run(Box::new(work.clone()))));
        if !matches!(sent, Some(Ok(()))) {
            // It died while idle (killed from outside): the reply loop below
            // sees the end of its stdout and says how it died.
            tracing::warn!(pid = proc.link.pid, "could not hand work to a worker process");
        }
        let mut line = String::new();
        loop {
            line.clear();
            let read = proc.stdout.read_line(&mut line);
            if !matches!(read, Ok(n) if n > 0) {
                return Err(self.reap(proc, "its pipe closed mid-task"));
            }
            match serde_json::from_str::<FromWorker>(&line) {
                Ok(FromWorker::Part {
                    n,
                    bytes,
                    sha256,
                    rows_done,
                }) => {
                    progress.rows_done.store(rows_done, Ordering::Relaxed);
                    progress.on_part.call(n, &Written { bytes, sha256 });
                }
                Ok(FromWorker::Finished(result)) => {
                    proc.tasks += 1;
                    self.give_back(proc);
                    return result;
                }
                Err(e) => {
                    proc.link.kill();
                    return Err(self.reap(proc, &format!("it sent an unreadable reply ({e})")));
                }
            }
        }
    }

    fn take(&self) -> Result<Proc, TaskError> {
        if let Some(p) = self.idle.lock().unwrap().pop() {
            return Ok(p);
        }
        self.spawn().map_err(|e| {
            TaskError::new(
                "WORKER_CRASHED",
                format!("WORKER_CRASHED: could not start a worker process: {e}; the task will be retried"),
                Failure::Transient,
            )
        })
    }

    fn spawn(&self) -> std::io::Result<Proc> {
        let mut cmd = Command::new(&self.program);
        cmd.arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((k, v)) = crate::failpoint::worker_env() {
            cmd.env(k, v);
        }
        let limit = self.memory_mib.saturating_mul(1 << 20);
        // SAFETY: between fork and exec only async-signal-safe calls: prctl,
        // setrlimit and getppid are plain system calls.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The daemon died before the prctl took effect: nobody will read us.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("the daemon has exited"));
                }
                if limit > 0 {
                    let rl = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_DATA, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let stderr = child.stderr.take().expect("piped");
        let log = std::thread::Builder::new()
            .name(format!("batchd-worker-{pid}-log"))
            .spawn(move || relay_stderr(pid, stderr))?;
        self.started.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pid, "worker process started");
        Ok(Proc {
            child,
            link: Arc::new(Link {
                pid,
                stdin: Mutex::new(Some(stdin)),
                killed: AtomicBool::new(false),
            }),
            stdout,
            log,
            tasks: 0,
        })
    }

    /// Keeps a worker for the next task, or retires it after its quota.
    fn give_back(&self, proc: Proc) {
        if self.max_tasks > 0 && proc.tasks >= self.max_tasks {
            retire(proc);
        } else {
            self.idle.lock().unwrap().push(proc);
        }
    }

    /// Waits for a worker that ended mid-task and says how it ended.
    fn reap(&self, mut proc: Proc, why: &str) -> TaskError {
        self.crashed.fetch_add(1, Ordering::Relaxed);
        proc.link.stdin.lock().unwrap().take();
        let status = proc.child.wait();
        // Its stderr ends with it (a worker starts no processes of its own).
        let tail: Vec<String> = proc.log.join().map(Vec::from).unwrap_or_default();
        let pid = proc.link.pid;
        match status {
            Ok(status) => died(pid, status, &tail, self.memory_mib, proc.link.killed.load(Ordering::SeqCst)),
            Err(e) => TaskError::new(
                "WORKER_CRASHED",
                format!("WORKER_CRASHED: worker process {pid}: {why}, and waiting for it failed: {e}; the task will be retried"),
                Failure::Transient,
            ),
        }
    }

    /// Ends the idle workers (at shutdown).
    pub fn shutdown(&self) {
        for p in self.idle.lock().unwrap().drain(..) {
            retire(p);
        }
    }
}

/// Closes a worker's stdin; it exits when it reads the end, and is reaped here.
fn retire(mut proc: Proc) {
    proc.link.stdin.lock().unwrap().take();
    let _ = proc.child.wait();
    let _ = proc.log.join();
    tracing::debug!(pid = proc.link.pid, tasks = proc.tasks, "worker process retired");
}

/// Copies a worker's stderr into the daemon's log until it ends, and returns
/// the last lines.
fn relay_stderr(pid: u32, stderr: std::process::ChildStderr) -> VecDeque<String> {
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.is_empty() {
            continue;
        }
        tracing::info!(worker = pid, "{line}");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail
}

/// The error for a worker that ended without finishing its task.
fn died(pid: u32, status: ExitStatus, tail: &[String], memory_mib: u64, killed_by_us: bool) -> TaskError {
    let transient = |code: &str, message: String| TaskError::new(code, message, Failure::Transient);
    if let Some(line) = tail.iter().rev().find(|l| l.contains("memory allocation of")) {
        return transient(
            "WORKER_OUT_OF_MEMORY",
            format!(
                "WORKER_OUT_OF_MEMORY: worker process {pid} reached its memory limit (engine.worker_memory_mib = {memory_mib}): {line}; raise the limit if this source needs more"
            ),
        );
    }
    if let Some(at) = tail.iter().position(|l| l.contains("panicked at")) {
        let message = tail[at..].join(" ");
        return transient(
            "WORKER_CRASHED",
            format!("WORKER_CRASHED: worker process {pid} panicked: {message}"),
        );
    }
    let last = tail.last().map(|l| format!("; its last words: {l}")).unwrap_or_default();
    match status.signal() {
        Some(sig) => {
            let name = signal_name(sig);
            let hint = if sig == libc::SIGKILL && !killed_by_us {
                " (by an operator, or by the kernel's OOM killer when memory ran out)"
            } else {
                ""
            };
            transient(
                "WORKER_CRASHED",
                format!("WORKER_CRASHED: worker process {pid} was killed by signal {sig} ({name}){hint}{last}"),
            )
        }
        None => transient(
            "WORKER_CRASHED",
            format!(
                "WORKER_CRASHED: worker process {pid} exited (code {}) before finishing its task{last}",
                status.code().unwrap_or(-1)
            ),
        ),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        _ => "a signal",
    }
}
