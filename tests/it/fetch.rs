//! Parts leave the daemon over HTTP: `GET`/`HEAD …/parts/{n}/content` with
//! `ETag`, `Range` (reassembled byte-identical to the file on disk),
//! `If-None-Match`, `If-Range` and a 416; `batchd fetch` downloads and checks
//! every part and resumes a partial file. Also what a request can ask of a
//! job's shape: a dry run that writes nothing, glob sources with
//! `regex_filter` and `max_files`, `max_part_bytes` (checked part by part with
//! Python's zipfile, and byte-identical to `batchd split`), `output_dir`, and
//! drafts from the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helper::daemon::{http, Api, Daemon, Resp};
use crate::helper::*;

fn get_with(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> Resp {
    http(d.addr(), Some(&d.token()), "GET", path, None, headers)
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(data))
}

fn run(args: &[&str], data: &Path) -> (bool, String) {
    let out = Command::new(BIN).args(args).arg("--data-dir").arg(data).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn parts_download_whole_in_ranges_and_with_batchd_fetch() {
    let env = Env::new();
    let src = env.archive("zip", "dl.zip", &numbered(12, 30_000));
    let d = Daemon::start();
    let id = d.create(&json!({"sources": [d.stage(&src)], "batch_size": 5}));
    assert_eq!(d.wait_job(&id, Duration::from_secs(60))["status"], "COMPLETED");
    let parts = d.get(&format!("/v1/jobs/{id}/parts")).json["parts"].as_array().unwrap().clone();
    assert_eq!(parts.len(), 3);
    let p = &parts[1];
    let path = PathBuf::from(p["path"].as_str().unwrap());
    let disk = std::fs::read(&path).unwrap();
    let sha = p["sha256"].as_str().unwrap();
    let url = format!("/v1/jobs/{id}/parts/2/content");

    let whole = get_with(&d, &url, &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("Content-Length").unwrap(), disk.len().to_string());
    assert_eq!(whole.header("ETag").unwrap(), format!("\"{sha}\""));
    assert_eq!(whole.header("Content-Type").unwrap(), "application/zip");
    assert_eq!(whole.header("Accept-Ranges").unwrap(), "bytes");
    let body = raw_get(&d, &url, &[]).2;
    assert_eq!(sha256_hex(&body), sha);
    assert_eq!(body, disk);

    // Three ranges of every form, put back together, are the file on disk.
    let n = disk.len();
    let (a, b) = (n / 3, 2 * n / 3);
    let mut joined = Vec::new();
    for (range, want) in [
        (format!("bytes=0-{}", a - 1), 0..a),
        (format!("bytes={a}-{}", b - 1), a..b),
        (format!("bytes=-{}", n - b), b..n),
    ] {
        let r = raw_get(&d, &url, &[("Range", &range)]);
        assert_eq!(r.0, 206, "{range}");
        assert!(
            r.1.contains(&format!("content-range: bytes {}-{}/{n}", want.start, want.end - 1)),
            "{}",
            r.1
        );
        assert_eq!(r.2.len(), want.len());
        joined.extend(r.2);
    }
    assert_eq!(joined, disk);
    assert_eq!(raw_get(&d, &url, &[("Range", &format!("bytes={}-", n - 10))]).2, disk[n - 10..]);

    let head = http(d.addr(), Some(&d.token()), "HEAD", &url, None, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length").unwrap(), n.to_string());
    assert!(head.text.is_empty());
    let etag = format!("\"{sha}\"");
    assert_eq!(get_with(&d, &url, &[("If-None-Match", &etag)]).status, 304);
    // A range over an older representation is the whole new one.
    let stale = raw_get(&d, &url, &[("Range", "bytes=0-9"), ("If-Range", "\"old\"")]);
    assert_eq!((stale.0, stale.2.len()), (200, n));
    let bad = get_with(&d, &url, &[("Range", &format!("bytes={n}-"))]);
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("Content-Range").unwrap(), format!("bytes */{n}"));
    assert_eq!(get_with(&d, &format!("/v1/jobs/{id}/parts/9/content"), &[]).status, 404);
    assert_eq!(get_with(&d, &format!("/v1/jobs/{id}/parts/x/content"), &[]).status, 400);
    assert_eq!(get_with(&d, "/v1/jobs/nope/parts/1/content", &[]).status, 404);
    assert_eq!(http(d.addr(), None, "GET", &url, None, &[]).status, 401);

    // The connection stays usable after a download: a second request on it is answered.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(d.addr()).unwrap();
        let auth = format!("Authorization: Bearer {}", d.token());
        let two = format!(
            "GET {url} HTTP/1.1\r\nHost: x\r\n{auth}\r\nRange: bytes=0-9\r\n\r\nGET /v1/jobs/{id} HTTP/1.1\r\nHost: x\r\n{auth}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(two.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 206"), "{text}");
        let second = text.find("HTTP/1.1 200").expect("the second response");
        assert_eq!(&out[text.find("\r\n\r\n").unwrap() + 4..][..10], &disk[..10]);
        assert!(text[second..].contains(&format!("\"id\":\"{id}\"")), "{text}");
    }

    // batchd fetch: every part, checked; a partial download resumes.
    let out = env.path("fetched");
    std::fs::create_dir_all(&out).unwrap();
    let first = PathBuf::from(parts[0]["path"].as_str().unwrap());
    let first_bytes = std::fs::read(&first).unwrap();
    let partial = out.join(format!("{}.partial", first.file_name().unwrap().to_string_lossy()));
    std::fs::write(&partial, &first_bytes[..first_bytes.len() / 2]).unwrap();
    let (ok, text) = run(&["fetch", &id, "--out", out.to_str().unwrap()], &d.data_dir());
    assert!(ok, "{text}");
    assert!(text.contains("3 part(s) fetched"), "{text}");
    for p in &parts {
        let on_disk = PathBuf::from(p["path"].as_str().unwrap());
        let got = std::fs::read(out.join(on_disk.file_name().unwrap())).unwrap();
        assert_eq!(got, std::fs::read(&on_disk).unwrap());
    }
    assert!(!partial.exists());
    let (ok, text) = run(&["fetch", &id, "--out", out.to_str().unwrap()], &d.data_dir());
    assert!(ok && text.contains("0 part(s) fetched, 3 already here"), "{text}");
    // A partial file whose bytes are wrong: the resumed whole fails its hash,
    // is thrown away, and the next fetch gets the part whole.
    std::fs::remove_file(out.join(first.file_name().unwrap())).unwrap();
    let mut wrong = first_bytes[..100].to_vec();
    wrong[0] ^= 0xff;
    std::fs::write(&partial, wrong).unwrap();
    let (ok, text) = run(&["fetch", &id, "--out", out.to_str().unwrap()], &d.data_dir());
    assert!(!ok && text.contains("arrived with SHA-256"), "{text}");
    let (ok, text) = run(&["fetch", &id, "--out", out.to_str().unwrap()], &d.data_dir());
    assert!(ok && text.contains("1 part(s) fetched"), "{text}");
    assert_eq!(std::fs::read(out.join(first.file_name().unwrap())).unwrap(), first_bytes);
}

/// A GET read as bytes: (status, lower-case head, body).
fn raw_get(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(d.addr()).unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n",
        d.token()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, out[split + 4..].to_vec())
}

#[test]
fn a_dry_run_plans_every_source_and_writes_nothing() {
    let env = Env::new();
    let mut entries = numbered(9, 20);
    entries.retain(|e| e.name != "f4.bin" && e.name != "f6.bin");
    let broken = env.archive("zip", "broken.zip", &entries);
    let good = env.archive("tar.gz", "good.tar.gz", &numbered(7, 20));
    let d = Daemon::start();
    let (broken, good) = (d.stage(&broken), d.stage(&good));
    let before = env_snapshot(&d.data_dir());
    let r = d.post("/v1/jobs", &json!({"sources": [broken, good], "batch_size": 3, "dry_run": true}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(env_snapshot(&d.data_dir()), before, "a dry run wrote something");
    assert_eq!(d.get("/v1/jobs").json["jobs"].as_array().unwrap().len(), 0);
    let v = &r.json;
    assert_eq!(
        (v["dry_run"].as_bool(), v["ok"].as_bool(), v["errors"].as_i64()),
        (Some(true), Some(false), Some(2)),
        "{v}"
    );
    let b = &v["sources"][0];
    assert_eq!((b["rows"].as_i64(), b["missing_rows"].as_i64()), (Some(7), Some(2)));
    let lines: Vec<(i64, &str)> = b["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_i64().unwrap(), p["code"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, vec![(6, "MISSING_FILE"), (8, "MISSING_FILE")]);
    assert_eq!(b["problems"][0]["entry"], "f4.bin");
    let g = &v["sources"][1];
    assert_eq!(
        (g["rows"].as_i64(), g["parts"].as_array().unwrap().len(), g["kind"].as_str()),
        (Some(7), 3, Some("tar.gz")),
        "{g}"
    );
    assert!(g["problems"].as_array().unwrap().is_empty());

    // With skip, the same rows are warnings, and the plan says what the job makes.
    let r = d.post(
        "/v1/jobs",
        &json!({"sources": [good], "batch_size": 3, "dry_run": true, "on_missing_file": "skip"}),
    );
    assert_eq!((r.json["ok"].as_bool(), r.json["parts"].as_i64()), (Some(true), Some(3)));
    let id = d.create(&json!({"sources": [good], "batch_size": 3}));
    d.wait_job(&id, Duration::from_secs(60));
    let made = d.get(&format!("/v1/jobs/{id}/parts")).json["parts"].as_array().unwrap().len();
    assert_eq!(made, 3);
    // A source that is not an archive is a problem of its own, not a 500.
    std::fs::write(d.data_dir().join("in/junk.zip"), b"not an archive").unwrap();
    let r = d.post("/v1/jobs", &json!({"sources": [d.data_dir().join("in/junk.zip")], "dry_run": true}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["sources"][0]["problems"][0]["severity"], "error", "{}", r.text);
}

/// Every file under `dir` with its size (the token and address files included).
fn env_snapshot(dir: &Path) -> Vec<(String, u64)> {
    let out = Command::new("find")
        .arg(dir)
        .args(["-type", "f", "-printf", "%P %s\n"])
        .output()
        .unwrap();
    let mut v: Vec<(String, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("batchd.db"))
        .map(|l| {
            let (p, s) = l.rsplit_once(' ').unwrap();
            (p.to_owned(), s.parse().unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn glob_sources_take_the_first_max_files_by_name_through_regex_filter() {
    let env = Env::new();
    let d = Daemon::start();
    let exports = d.data_dir().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    let zip = env.archive("zip", "x.zip", &numbered(2, 10));
    for name in ["d.zip", "b.zip", "a.zip", "c.zip"] {
        std::fs::copy(&zip, exports.join(name)).unwrap();
    }
    std::fs::write(exports.join("notes.txt"), "not a source").unwrap();
    let glob = exports.join("*.zip");
    let sources = |body: Value| -> Vec<String> {
        let r = d.post("/v1/jobs", &body);
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(sources(json!({"sources": [glob], "max_files": 2})), ["a.zip", "b.zip"]);
    assert_eq!(
        sources(json!({"sources": [glob], "regex_filter": "/[bd]\\.zip$"})),
        ["b.zip", "d.zip"]
    );
    assert_eq!(
        sources(json!({"sources": [glob], "regex_filter": "/[bcd]\\.zip$", "max_files": 1})),
        ["b.zip"]
    );
    let id = d.create(&json!({"sources": [glob], "max_files": 3}));
    assert_eq!(d.wait_job(&id, Duration::from_secs(60))["status"], "COMPLETED");
    let expanded = d.get(&format!("/v1/jobs/{id}/events")).json["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "sources.expanded")
        .unwrap()["data"]["globs"][0]
        .clone();
    assert_eq!(expanded["matched"].as_array().unwrap().len(), 3, "{expanded}");
    for (body, status, words) in [
        (json!({"sources": [exports.join("*.tar")]}), 400, "matched no file"),
        (json!({"sources": [glob], "regex_filter": "("}), 400, "regex_filter"),
        (json!({"sources": [glob], "max_files": 0}), 400, "max_files"),
        (json!({"sources": [exports.join("a.zip")], "max_files": 1}), 400, "glob"),
        (json!({"sources": ["/etc/*.conf"]}), 403, "allowed roots"),
    ] {
        let r = d.post("/v1/jobs", &body);
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(r.text.contains(words), "{body}: {}", r.text);
    }
}

#[test]
fn max_part_bytes_caps_every_part_but_a_single_larger_file() {
    let env = Env::new();
    let cap = 10_000u64;
    let sizes: Vec<usize> = (0..60)
        .map(|i| if i == 17 || i == 41 { 25_000 } else { 300 + (i * 797) % 3_700 })
        .collect();
    let mut manifest = String::from("file\n");
    let mut entries = Vec::new();
    for (i, &s) in sizes.iter().enumerate() {
        manifest.push_str(&format!("f{i}.bin\n"));
        entries.push(file(&format!("f{i}.bin"), bytes(i as u64, s)));
    }
    entries.insert(0, file("manifest.csv", manifest));
    let d = Daemon::start();
    // Every kind of source: TAR and ZIP are planned from their index; a TAR.GZ
    // with a byte cap is planned before it is packed (not in one pass).
    for format in ["tar", "zip", "tar.gz"] {
        let src = env.archive(format, &format!("sized.{format}"), &entries);
        let id = d.create(&json!({"sources": [d.stage(&src)], "batch_size": 100, "max_part_bytes": cap}));
        let job = d.wait_job(&id, Duration::from_secs(60));
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!(job["settings"]["max_part_bytes"], cap);
        let dir = PathBuf::from(job["out_dir"].as_str().unwrap());
        let parts = inspect(&dir);
        let mut rows = Vec::new();
        let mut oversized = Vec::new();
        for (name, p) in &parts.parts {
            let data: Vec<&(String, Vec<u8>)> = p.entries[1..].iter().collect();
            let payload: usize = data.iter().map(|(_, b)| b.len()).sum();
            if payload as u64 > cap {
                assert_eq!(data.len(), 1, "{name}: {payload} bytes in {} files", data.len());
                oversized.push(name.clone());
            }
            for (n, b) in data {
                let i: usize = n.trim_start_matches('f').trim_end_matches(".bin").parse().unwrap();
                assert_eq!(b, &bytes(i as u64, sizes[i]));
            }
        }
        rows.extend(parts.manifest_rows());
        rows.sort_by_key(|r| r.trim_start_matches('f').trim_end_matches(".bin").parse::<u32>().unwrap());
        assert_eq!(rows, (0..60).map(|i| format!("f{i}.bin")).collect::<Vec<_>>());
        assert_eq!(oversized.len(), 2, "{oversized:?}");
        unzip_test(&dir);
        let planned = d.get(&format!("/v1/jobs/{id}/events")).json["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "source.planned")
            .unwrap()["data"]
            .clone();
        assert_eq!(planned["oversized_parts"].as_array().unwrap().len(), 2, "{planned}");

        // batchd split cuts the same parts, byte for byte, and says which are oversized.
        let out = env.path(&format!("split-{format}"));
        let r = env.split(&src, &out, &["--batch-size", "100", "--max-part-bytes", &cap.to_string()]);
        r.ok();
        assert_eq!(r.json["oversized_parts"].as_array().unwrap().len(), 2);
        for p in std::fs::read_dir(&dir).unwrap().flatten() {
            assert_eq!(std::fs::read(p.path()).unwrap(), std::fs::read(out.join(p.file_name())).unwrap());
        }
    }
    assert_eq!(
        d.post(
            "/v1/jobs",
            &json!({"sources": [d.data_dir().join("in/sized.tar")], "max_part_bytes": 0})
        )
        .status,
        400
    );
}

#[test]
fn output_dir_below_an_allowed_root_and_drafts_from_the_cli() {
    let env = Env::new();
    let src = env.archive("zip", "o.zip", &numbered(4, 10));
    let d = Daemon::start();
    let staged = d.stage(&src);
    let want = d.data_dir().join("deliveries/lab-a");
    let id = d.create(&json!({"sources": [staged], "output_dir": want}));
    let job = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(job["out_dir"], want.to_str().unwrap());
    assert_eq!(listing(&want), ["o-part1.zip"]);
    for (dir, status) in [
        (json!("/tmp/elsewhere"), 403),
        (json!("relative/dir"), 400),
        (json!(format!("{}/../x", d.data_dir().display())), 400),
    ] {
        let r = d.post("/v1/jobs", &json!({"sources": [staged], "output_dir": dir}));
        assert_eq!(r.status, status, "{dir}: {}", r.text);
    }

    let data = d.data_dir();
    let (ok, text) = run(&["submit", "--draft", "--json"], &data);
    assert!(ok, "{text}");
    let draft: Value = serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    let draft = draft["id"].as_str().unwrap().to_owned();
    assert_eq!(d.get(&format!("/v1/jobs/{draft}")).json["status"], "DRAFT");
    let (ok, text) = run(&["add", &draft, staged.to_str().unwrap()], &data);
    assert!(ok && text.contains("DRAFT"), "{text}");
    let (ok, text) = run(&["submit-draft", &draft, "--wait"], &data);
    assert!(ok, "{text}");
    assert_eq!(d.get(&format!("/v1/jobs/{draft}")).json["status"], "COMPLETED");
    let (ok, text) = run(&["submit-draft", &draft], &data);
    assert!(!ok && text.contains("only a DRAFT job"), "{text}");
}
