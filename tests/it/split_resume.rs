//! Interrupted splits: SIGKILL midway, then a rerun into the same directory keeps
//! the finished parts, redoes the rest, leaves no temp file, and ends with parts
//! byte-identical to an uninterrupted run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helper::*;

fn big_export(env: &Env, format: &str) -> std::path::PathBuf {
    env.archive(format, &format!("big.{format}"), &numbered(240, 300_000))
}

fn files_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    listing(dir)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect()
}

fn kill_midway_then_rerun(format: &str) {
    let env = Env::new();
    let src = big_export(&env, format);
    let reference = env.path("reference");
    env.split(&src, &reference, &["-n", "10", "-j", "1"]).ok();
    let want = files_bytes(&reference);
    assert_eq!(want.len(), 24);

    let out = env.path("parts");
    let mut killed_with_parts = 0;
    for attempt in 0..3 {
        let mut child = Command::new(BIN)
            .arg("split")
            .arg(&src)
            .arg("--out")
            .arg(&out)
            .args(["-n", "10", "-j", "1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Kill once some output exists (a temp file or a part), i.e. mid-write.
        let started = wait_for(|| !listing(&out).is_empty(), Duration::from_secs(20));
        assert!(started, "split produced nothing");
        std::thread::sleep(Duration::from_millis(20 * attempt));
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever carries a final name must be a complete, valid part.
        let parts: Vec<String> = listing(&out).into_iter().filter(|n| !n.starts_with('.')).collect();
        for p in &parts {
            let want_bytes = &want.iter().find(|(n, _)| n == p).expect("known part name").1;
            assert_eq!(&std::fs::read(out.join(p)).unwrap(), want_bytes, "{p} visible but not complete");
        }
        if !parts.is_empty() && parts.len() < 24 {
            killed_with_parts += 1;
        }
    }
    let run = env.split(&src, &out, &["-n", "10"]);
    run.ok();
    assert_eq!(files_bytes(&out), want, "rerun gives byte-identical parts and no temp files");
    let kept = run.json["parts"].as_array().unwrap().iter().filter(|p| p["kept"] == true).count();
    if format == "zip" {
        assert!(killed_with_parts > 0, "the kills should land between parts at least once");
        assert!(kept > 0, "finished parts are kept");
    }
    // A second rerun keeps everything and rewrites nothing.
    let again = env.split(&src, &out, &["-n", "10"]);
    assert!(again.ok().json["parts"].as_array().unwrap().iter().all(|p| p["kept"] == true));
    assert_eq!(files_bytes(&out), want);
}

#[test]
fn sigkill_midway_zip() {
    kill_midway_then_rerun("zip");
}

#[test]
fn sigkill_midway_tar_gz() {
    kill_midway_then_rerun("tar.gz");
}

/// A rerun with another batch size replaces the parts of the earlier plan.
#[test]
fn rerun_with_other_batch_size_replaces_stale_parts() {
    let env = Env::new();
    let src = env.archive("zip", "e.zip", &numbered(10, 10));
    let out = env.path("parts");
    env.split(&src, &out, &["-n", "2"]).ok();
    assert_eq!(listing(&out).len(), 5);
    env.split(&src, &out, &["-n", "5"]).ok();
    assert_eq!(listing(&out), vec!["e-part1.zip", "e-part2.zip"]);
    assert_eq!(inspect(&out).parts["e-part2.zip"].entries.len(), 6);
}

/// Two splits into one directory at once: the second is refused, not interleaved.
#[test]
fn output_directory_is_locked() {
    let env = Env::new();
    let src = big_export(&env, "zip");
    let out = env.path("parts");
    let mut first = Command::new(BIN)
        .arg("split")
        .arg(&src)
        .arg("--out")
        .arg(&out)
        .args(["-n", "10", "-j", "1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(|| !listing(&out).is_empty(), Duration::from_secs(20)));
    let second = env.split(&src, &out, &["-n", "10"]);
    first.wait().unwrap();
    if second.code != 0 {
        assert_eq!(second.error_code(), "OUTPUT_LOCKED");
        assert_eq!(second.code, 1);
    }
}
