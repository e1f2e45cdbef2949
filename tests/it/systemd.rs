//! Life under systemd, with the real binary: sd_notify READY / STATUS /
//! WATCHDOG / STOPPING on a real notify socket, journald-friendly and JSON logs
//! on stdout, and SIGTERM at random moments under load.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helper::*;

/// `batchd serve` on port 0 with `data`, stdout to `stdout`, and `env`.
fn serve(data: &std::path::Path, stdout: Stdio, env: &[(&str, String)]) -> std::process::Child {
    Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("BATCHD_LOG")
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigterm(child: &mut std::process::Child) -> Option<i32> {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap().code()
}

/// Datagrams received on `sock` until `want` returns true or `timeout`.
fn receive_until(sock: &UnixDatagram, got: &mut Vec<String>, timeout: Duration, want: impl Fn(&[String]) -> bool) -> bool {
    let end = Instant::now() + timeout;
    let mut buf = vec![0u8; 4096];
    while !want(got) {
        if Instant::now() > end {
            return false;
        }
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    true
}

#[test]
fn notifies_systemd_ready_status_watchdog_and_stopping() {
    let env = Env::new();
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut child = serve(
        &env.path("data"),
        Stdio::null(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_string_lossy().into_owned()),
            // Pings every 0.5 s (half the interval); WATCHDOG_PID unset means "us".
            ("WATCHDOG_USEC", "1000000".into()),
        ],
    );
    let mut got = Vec::new();
    assert!(
        receive_until(&sock, &mut got, Duration::from_secs(10), |g| g
            .iter()
            .any(|m| m.contains("READY=1"))),
        "{got:?}"
    );
    assert!(env.path("data/daemon.json").exists(), "READY before the API was listening");
    // Three pings, each with a STATUS line, within a few seconds.
    let pings = |g: &[String]| g.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        receive_until(&sock, &mut got, Duration::from_secs(10), |g| pings(g) >= 3),
        "{got:?}"
    );
    let status = got.iter().find(|m| m.contains("WATCHDOG=1")).unwrap();
    assert!(
        status.contains("STATUS=0 tasks running, 0 jobs queued or processing, 0 rows/s"),
        "{status}"
    );
    assert_eq!(sigterm(&mut child), Some(0));
    assert!(receive_until(&sock, &mut got, Duration::from_secs(2), |g| g
        .iter()
        .any(|m| m.contains("STOPPING=1"))));

    // A watchdog meant for another process (WATCHDOG_PID) is not ours to ping.
    let mut child = serve(
        &env.path("data"),
        Stdio::null(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_string_lossy().into_owned()),
            ("WATCHDOG_USEC", "1000000".into()),
            ("WATCHDOG_PID", "1".into()),
        ],
    );
    let mut got = Vec::new();
    assert!(receive_until(&sock, &mut got, Duration::from_secs(10), |g| g
        .iter()
        .any(|m| m.contains("READY=1"))));
    std::thread::sleep(Duration::from_millis(1500));
    receive_until(&sock, &mut got, Duration::from_millis(300), |_| false);
    assert_eq!(pings(&got), 0, "{got:?}");
    assert_eq!(sigterm(&mut child), Some(0));
}

#[test]
fn logs_go_to_stdout_plain_under_journald_and_as_json_on_request() {
    let env = Env::new();
    // Under journald: JOURNAL_STREAM names stdout's device and inode.
    let log = std::fs::File::create(env.path("journal.log")).unwrap();
    let meta = log.metadata().unwrap();
    let mut child = serve(
        &env.path("data"),
        Stdio::from(log),
        &[("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))],
    );
    assert!(wait_for(|| env.path("data/daemon.json").exists(), Duration::from_secs(10)));
    assert_eq!(sigterm(&mut child), Some(0));
    let text = std::fs::read_to_string(env.path("journal.log")).unwrap();
    let first = text
        .lines()
        .find(|l| l.contains("batchd serving"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        first.starts_with(" INFO") || first.starts_with("INFO"),
        "no timestamp under journald: {first}"
    );
    assert!(!text.contains('\x1b'), "no colour under journald");

    // The same stdout without JOURNAL_STREAM: timestamps.
    let log = std::fs::File::create(env.path("plain.log")).unwrap();
    let mut child = serve(&env.path("data"), Stdio::from(log), &[]);
    assert!(wait_for(|| env.path("data/daemon.json").exists(), Duration::from_secs(10)));
    assert_eq!(sigterm(&mut child), Some(0));
    let text = std::fs::read_to_string(env.path("plain.log")).unwrap();
    let first = text.lines().find(|l| l.contains("batchd serving")).unwrap();
    assert!(first.starts_with("20"), "an RFC 3339 timestamp first: {first}");

    // JSON: one object per line.
    let log = std::fs::File::create(env.path("json.log")).unwrap();
    let mut child = serve(&env.path("data"), Stdio::from(log), &[("BATCHD_LOG_FORMAT", "json".into())]);
    assert!(wait_for(|| env.path("data/daemon.json").exists(), Duration::from_secs(10)));
    assert_eq!(sigterm(&mut child), Some(0));
    let text = std::fs::read_to_string(env.path("json.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "batchd serving" && l["level"] == "INFO"),
        "{text}"
    );
}

/// 100 SIGTERMs at random moments while jobs run: each exits 0 well within the
/// unit's `TimeoutStopSec` (30 s; we require 10 s), and after the last restart
/// every job completes with every part whole (Python's zipfile reads each
/// entry with its CRC) and every row exactly once.
#[test]
fn a_hundred_sigterms_during_work() {
    use crate::helper::daemon::{Api, DaemonProcess};
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(data.join("in")).unwrap();
    // 600 rows of 40 kB in 60 parts: a few seconds of work per job.
    let src = env.archive("zip", "src.zip", &numbered(600, 40_000));
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut jobs: Vec<String> = Vec::new();
    let (mut slowest, mut mid_task) = (Duration::ZERO, 0);
    let busy = |d: &DaemonProcess| !d.get("/metrics").text.contains("batchd_tasks_running 0\n");
    for i in 0..100 {
        let d = DaemonProcess::start(&data);
        // Keep work in flight: a new job whenever fewer than two are open.
        let open = |id: &&String| d.get(&format!("/v1/jobs/{id}")).json["status"] != "COMPLETED";
        if jobs.iter().filter(open).count() < 2 {
            let path = data.join(format!("in/{i}.zip"));
            std::fs::copy(&src, &path).unwrap();
            jobs.push(d.create(&serde_json::json!({"sources": [path], "batch_size": 10})));
        }
        // A random moment once tasks are running (or soon after start).
        wait_for(|| busy(&d), Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(next() % 250));
        mid_task += usize::from(busy(&d));
        let (code, took) = d.terminate();
        assert_eq!(code, Some(0), "SIGTERM {i} did not exit 0");
        assert!(took < Duration::from_secs(10), "SIGTERM {i} took {took:?}");
        slowest = slowest.max(took);
    }
    let d = DaemonProcess::start(&data);
    for id in &jobs {
        let job = d.wait_job(id, Duration::from_secs(120));
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!(job["progress"]["processed"], 600, "{job}");
        let out = std::path::Path::new(job["out_dir"].as_str().unwrap()).to_owned();
        let got = inspect(&out);
        assert!(got.others.is_empty(), "temp or stray files: {:?}", got.others);
        assert_eq!(got.parts.len(), 60);
        let mut rows = got.manifest_rows();
        assert_eq!(rows.len(), 600, "no row twice");
        rows.sort();
        rows.dedup();
        assert_eq!(rows.len(), 600, "every row once");
    }
    eprintln!(
        "100 SIGTERMs: {} jobs, {mid_task} stops with tasks running, slowest exit {slowest:?}",
        jobs.len()
    );
    assert!(mid_task >= 50, "too few SIGTERMs landed during work ({mid_task})");
}
