//! Daemon fixtures: `Daemon` runs the real daemon in-process on 127.0.0.1:0 with
//! a temp data dir; `DaemonProcess` runs `batchd serve` as a child process (for
//! SIGKILL and SIGTERM tests). `http` speaks raw HTTP/1.1 so tests can also send
//! requests no well-behaved client would.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use batchd::config::Config;
use batchd::triggers::schedule::Clock;
use serde_json::Value;

use super::{wait_for, BIN};

pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub json: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Sends `raw` (a whole request) and reads one response: up to its
/// Content-Length, or to EOF when it has none.
pub fn raw_request(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("daemon listening");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        if let Some(split) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()));
            if len.is_some_and(|n| out.len() >= split + 4 + n) {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let headers = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    let text = String::from_utf8_lossy(&out[split + 4..]).into_owned();
    Resp {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
        text,
    }
}

pub fn http(addr: SocketAddr, token: Option<&str>, method: &str, path: &str, body: Option<&Value>, extra: &[(&str, &str)]) -> Resp {
    let body = body.map(|b| b.to_string());
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.as_ref().map_or(0, |b| b.len())
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.as_deref().unwrap_or(""));
    raw_request(addr, req.as_bytes())
}

pub trait Api {
    fn addr(&self) -> SocketAddr;
    fn token(&self) -> String;
    fn data_dir(&self) -> PathBuf;

    fn get(&self, path: &str) -> Resp {
        http(self.addr(), Some(&self.token()), "GET", path, None, &[])
    }

    fn post(&self, path: &str, body: &Value) -> Resp {
        http(self.addr(), Some(&self.token()), "POST", path, Some(body), &[])
    }

    /// `POST /v1/jobs`, expecting 201; returns the new job's id.
    fn create(&self, body: &Value) -> String {
        let r = self.post("/v1/jobs", body);
        assert_eq!(r.status, 201, "creating a job: {}", r.text);
        r.json["id"].as_str().expect("a job id").to_owned()
    }

    /// Waits until the job is COMPLETED, FAILED or CANCELLED and returns it.
    fn wait_job(&self, id: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let done = wait_for(
            || {
                last = self.get(&format!("/v1/jobs/{id}")).json;
                matches!(last["status"].as_str(), Some("COMPLETED" | "FAILED" | "CANCELLED"))
            },
            timeout,
        );
        assert!(done, "job {id} did not end: {last}");
        last
    }

    /// Copies `path` into the data dir (the only allowed root by default).
    fn stage(&self, path: &Path) -> PathBuf {
        let dst = self.data_dir().join("in").join(path.file_name().unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        if path.is_dir() {
            assert!(Command::new("cp").arg("-r").arg(path).arg(&dst).status().unwrap().success());
        } else {
            std::fs::copy(path, &dst).unwrap();
        }
        dst
    }
}

/// The daemon in this process, as `batchd serve` runs it.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub token: String,
    pub clock: Clock,
    config: Config,
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::with(|_| {})
    }

    pub fn with(edit: impl FnOnce(&mut Config)) -> Daemon {
        Daemon::with_clock(Clock::System, edit)
    }

    /// A daemon whose schedules read the time from `clock`.
    pub fn with_clock(clock: Clock, edit: impl FnOnce(&mut Config)) -> Daemon {
        let dir = tempfile::Builder::new().prefix("batchd-daemon-").tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.engine.backoff_base_ms = 50;
        // Workers are this test binary otherwise.
        config.engine.worker_program = Some(BIN.into());
        // Tests share a disk that may be nearly full (seen: 287 MiB free);
        // the one test of the space wait sets its own threshold.
        config.engine.min_free_bytes = 0;
        edit(&mut config);
        Daemon::boot(dir, config, clock)
    }

    fn boot(dir: tempfile::TempDir, config: Config, clock: Clock) -> Daemon {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&shutdown);
        let (c, k) = (config.clone(), clock.clone());
        let thread = std::thread::spawn(move || batchd::daemon::run_with(listener, c, &flag, k));
        let data = dir.path().join("data");
        assert!(
            wait_for(
                || data.join("daemon.json").exists() || thread.is_finished(),
                Duration::from_secs(10)
            ),
            "daemon did not start"
        );
        assert!(!thread.is_finished(), "daemon exited at start: {:?}", thread.join().unwrap());
        let token = std::fs::read_to_string(data.join("token")).unwrap().trim().to_owned();
        Daemon {
            dir,
            addr,
            token,
            clock,
            config,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Stops the daemon the way SIGTERM does and returns its result.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }

    /// Stops the daemon as SIGTERM does, runs `meanwhile` (the downtime), and
    /// starts it again on the same data dir, config and clock.
    pub fn restart(mut self, meanwhile: impl FnOnce()) -> Daemon {
        self.shutdown.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap().expect("daemon stopped cleanly");
        meanwhile();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Daemon::boot(dir, self.config.clone(), self.clock.clone())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Api for Daemon {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn token(&self) -> String {
        self.token.clone()
    }
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// `batchd serve` as a child process.
pub struct DaemonProcess {
    pub data_dir: PathBuf,
    pub child: Child,
    pub addr: SocketAddr,
    pub token: String,
}

impl DaemonProcess {
    pub fn start(data_dir: &Path) -> DaemonProcess {
        DaemonProcess::start_with(data_dir, None)
    }

    /// Starts with `--config FILE` as well (the data dir still comes from the flag).
    pub fn start_with(data_dir: &Path, config: Option<&Path>) -> DaemonProcess {
        DaemonProcess::start_env(data_dir, config, &[])
    }

    /// Starts with extra environment variables (e.g. `BATCHD_FAILPOINT`).
    pub fn start_env(data_dir: &Path, config: Option<&Path>, env: &[(&str, &str)]) -> DaemonProcess {
        let _ = std::fs::remove_file(data_dir.join("daemon.json"));
        let mut cmd = Command::new(BIN);
        if let Some(c) = config {
            cmd.arg("serve")
                .arg("--config")
                .arg(c)
                .args(["--listen", "127.0.0.1:0", "--data-dir"]);
        } else {
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]);
        }
        let child = cmd
            .arg(data_dir)
            .envs(env.iter().copied())
            .env("BATCHD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let json = data_dir.join("daemon.json");
        assert!(wait_for(|| json.exists(), Duration::from_secs(10)), "daemon process did not start");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let addr = v["listen"].as_str().unwrap().parse().unwrap();
        let token = std::fs::read_to_string(data_dir.join("token")).unwrap().trim().to_owned();
        DaemonProcess {
            data_dir: data_dir.to_owned(),
            child,
            addr,
            token,
        }
    }

    /// Waits for the process to end on its own (a failpoint); true if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        wait_for(|| matches!(self.child.try_wait(), Ok(Some(_))), timeout)
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM; returns the exit code and how long the exit took.
    pub fn terminate(mut self) -> (Option<i32>, Duration) {
        let started = std::time::Instant::now();
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let status = self.child.wait().unwrap();
        (status.code(), started.elapsed())
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api for DaemonProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn token(&self) -> String {
        self.token.clone()
    }
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
