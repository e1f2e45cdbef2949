//! Test fixtures: a temp workspace, archive factories (Python's zipfile/tarfile,
//! independent of batchd), running the real `batchd` binary, inspecting parts with
//! Python's zipfile, snapshots to prove nothing was written outside the output
//! directory, and `wait_for` instead of sleeps.

#![allow(dead_code)]

pub mod daemon;
pub mod servers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_batchd");

fn helper(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helper").join(name)
}

/// One archive entry for a factory.
#[derive(Clone, Debug)]
pub struct E {
    pub name: String,
    pub data: Vec<u8>,
    pub kind: &'static str,
    pub link: String,
    pub deflate: bool,
}

pub fn file(name: &str, data: impl Into<Vec<u8>>) -> E {
    E {
        name: name.into(),
        data: data.into(),
        kind: "file",
        link: String::new(),
        deflate: false,
    }
}

pub fn special(name: &str, kind: &'static str, link: &str) -> E {
    E {
        name: name.into(),
        data: Vec::new(),
        kind,
        link: link.into(),
        deflate: false,
    }
}

/// `manifest.csv` (column `file`) naming `f0.bin … f{rows-1}.bin`, then those
/// files with `size` bytes each.
pub fn numbered(rows: u64, size: usize) -> Vec<E> {
    let mut m = String::from("file\n");
    let mut entries = Vec::new();
    for i in 0..rows {
        m.push_str(&format!("f{i}.bin\n"));
        entries.push(file(&format!("f{i}.bin"), bytes(i, size)));
    }
    entries.insert(0, file("manifest.csv", m));
    entries
}

/// Deterministic, incompressible-looking bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
}

impl Run {
    fn from(out: Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Run {
            code: out.status.code().unwrap_or(-1),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "batchd failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    pub fn error_code(&self) -> &str {
        self.json["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no JSON error in {:?} / {}", self.stdout, self.stderr))
    }
}

/// A part as Python's zipfile sees it.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Part {
    pub entries: Vec<(String, Vec<u8>)>,
    pub comment: String,
}

#[derive(Debug)]
pub struct Inspect {
    pub parts: BTreeMap<String, Part>,
    /// Files in the directory that are not part ZIPs (temp files would show here).
    pub others: Vec<String>,
}

/// Reads every part in `dir` with Python's zipfile (CRCs verified).
pub fn inspect(dir: &Path) -> Inspect {
    let out = Command::new("python3")
        .arg(helper("inspect_parts.py"))
        .arg(dir)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "zipfile rejected a part: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = v["parts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, p)| {
            let entries = p["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["name"].as_str().unwrap().to_owned(), unhex(e["hex"].as_str().unwrap())))
                .collect();
            (
                k.clone(),
                Part {
                    entries,
                    comment: p["comment"].as_str().unwrap().to_owned(),
                },
            )
        })
        .collect();
    let others = v["others"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    Inspect { parts, others }
}

impl Inspect {
    /// The manifest rows of every part (each part's first entry is its
    /// manifest; its header line is left out), in part order.
    pub fn manifest_rows(&self) -> Vec<String> {
        self.parts
            .values()
            .flat_map(|p| {
                String::from_utf8_lossy(&p.entries[0].1)
                    .lines()
                    .skip(1)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Also checks every part with Info-ZIP's `unzip -t`, a second independent reader.
pub fn unzip_test(dir: &Path) {
    for item in std::fs::read_dir(dir).unwrap().flatten() {
        let p = item.path();
        if p.extension().is_some_and(|e| e == "zip") {
            let out = Command::new("unzip")
                .arg("-tqq")
                .arg(&p)
                .output()
                .expect("unzip is installed (apt-get install unzip)");
            assert!(
                out.status.success(),
                "unzip -t {}: {}{}",
                p.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `split SOURCE --out OUT --json ARGS…`
fn split_args(source: &Path, out: &Path, args: &[&str]) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec!["split".into(), source.into(), "--out".into(), out.into(), "--json".into()];
    v.extend(args.iter().map(Into::into));
    v
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::Builder::new().prefix("batchd-it-").tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Builds `name` in `format` ("zip", "tar", "tar.gz", "dir") from `entries`.
    pub fn archive(&self, format: &str, name: &str, entries: &[E]) -> PathBuf {
        let path = self.path(name);
        let spec = json!({
            "format": format,
            "path": path,
            "entries": entries.iter().map(|e| json!({
                "name": e.name, "hex": hex(&e.data), "type": e.kind, "link": e.link, "deflate": e.deflate
            })).collect::<Vec<_>>(),
        });
        self.python_factory(&spec);
        path
    }

    pub fn python_factory(&self, spec: &Value) {
        let mut child = Command::new("python3")
            .arg(helper("make_archive.py"))
            .stdin(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        serde_json::to_writer(child.stdin.take().unwrap(), spec).unwrap();
        assert!(child.wait().unwrap().success(), "archive factory failed");
    }

    /// [`Env::split`] under GNU time: also the wall seconds and the peak RSS in MiB.
    pub fn split_measured(&self, source: &Path, out: &Path, args: &[&str]) -> (Run, f64, f64) {
        // Outside this Env: the caller snapshots everything in it.
        let stats_file = tempfile::NamedTempFile::new().unwrap();
        let stats = stats_file.path().to_owned();
        let mut cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "%e %M", "-o"])
            .arg(&stats)
            .arg(BIN)
            .args(split_args(source, out, args));
        let run = Run::from(cmd.output().expect("/usr/bin/time runs (apt-get install time)"));
        let text = std::fs::read_to_string(&stats).unwrap();
        let last = text.lines().last().unwrap_or_default();
        let (secs, kib) = last.split_once(' ').unwrap_or_else(|| panic!("GNU time said {text:?}"));
        (run, secs.parse().unwrap(), kib.trim().parse::<f64>().unwrap() / 1024.0)
    }

    /// Runs `batchd split SOURCE --out OUT --json ARGS…`.
    pub fn split(&self, source: &Path, out: &Path, args: &[&str]) -> Run {
        Run::from(Command::new(BIN).args(split_args(source, out, args)).output().unwrap())
    }

    /// Every file below the workspace except under `except`, with its size.
    pub fn snapshot(&self, except: &Path) -> BTreeMap<PathBuf, u64> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            if d == except {
                continue;
            }
            for item in std::fs::read_dir(&d).unwrap().flatten() {
                let meta = std::fs::symlink_metadata(item.path()).unwrap();
                if meta.is_dir() {
                    stack.push(item.path());
                } else {
                    out.insert(item.path(), meta.len());
                }
            }
        }
        out
    }
}

/// How many threads this process has now.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

const ALONE: &str = "BATCHD_IT_ALONE";

/// Runs one `#[ignore]`d test of this binary in a process of its own, for checks
/// that count the process's threads, which the tests running beside them would
/// disturb. Panics with the child's output if it failed; returns that output.
pub fn run_alone(test: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--ignored", "--nocapture", "--test-threads", "1"])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test}, run alone, failed:\n{text}");
    assert!(text.contains("1 passed"), "{test} did not run:\n{text}");
    text
}

/// Asserts that this test was started by [`run_alone`].
pub fn assert_alone() {
    assert!(
        std::env::var_os(ALONE).is_some(),
        "this test is run in a process of its own by another test, not by hand"
    );
}

/// Waits up to 5 s for this process's thread count to fall back to `before`
/// (threads of things just dropped may still be exiting); panics naming `what`
/// if it does not. Returns the count then.
pub fn threads_settle(before: usize, what: &str) -> usize {
    let settled = wait_for(|| threads() <= before, Duration::from_secs(5));
    let after = threads();
    assert!(settled, "{what} left {} threads behind", after.saturating_sub(before));
    after
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_for(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Names of the files in `dir` (empty if it does not exist).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|i| i.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}
