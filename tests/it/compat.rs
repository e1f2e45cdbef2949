//! The differential compatibility suite (issue: archive fidelity). The corpus is
//! built fresh by `tests/compat/build.sh` with real tools (GNU tar in every format
//! and sparse format, bsdtar, Info-ZIP, Python's zipfile and zipapp, jar, git
//! archive, 7-Zip) plus the quirks other writers produce. Each archive is split and
//! then judged by `tests/compat/check.py`, which extracts the source with bsdtar,
//! Python and (for tars) GNU tar and compares every packed file's bytes with each
//! reader that extracts it; or it must be refused with the code
//! `tests/compat/expected.tsv` names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helper::*;

fn compat(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat").join(name)
}

fn expectations() -> BTreeMap<String, String> {
    std::fs::read_to_string(compat("expected.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
        })
        .collect()
}

/// Runs the oracle on one split's output; returns its JSON verdict.
fn oracle(source: &Path, parts: &Path) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(compat("check.py"))
        .arg(source)
        .arg(parts)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("check.py said {text} / {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn every_archive_real_tools_write_is_split_byte_exact_or_refused_by_name() {
    let env = Env::new();
    let corpus = env.path("corpus");
    let built = Command::new("bash").arg(compat("build.sh")).arg(&corpus).output().unwrap();
    assert!(
        built.status.success(),
        "building the corpus failed (scripts/test.sh installs the tools):\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let expected = expectations();
    let made: Vec<String> = listing(&corpus);
    assert_eq!(
        made.iter().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "tests/compat/expected.tsv must name exactly the archives build.sh makes"
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, want) in &expected {
        let source = corpus.join(name);
        // TAR.GZ goes through both the one-pass packer and the second pass (which
        // `--on-missing-file skip` forces, and the daemon's PACK tasks use).
        let variants: &[&[&str]] = if name.ends_with(".gz") || name.ends_with(".tgz") {
            &[&[], &["--on-missing-file", "skip"]]
        } else {
            &[&[]]
        };
        for (k, extra) in variants.iter().enumerate() {
            let out = env.path(&format!("out/{name}-{k}"));
            let mut args = vec!["--batch-size", "3"];
            args.extend_from_slice(extra);
            let run = env.split(&source, &out, &args);
            if want == "OK" {
                if run.code != 0 {
                    failures.push(format!("{name} {extra:?}: refused: {}", run.stdout.trim()));
                    continue;
                }
                let verdict = oracle(&source, &out);
                let problems = verdict["problems"].as_array().cloned().unwrap_or_default();
                if !problems.is_empty() || verdict["files"].as_u64().unwrap_or(0) == 0 {
                    failures.push(format!("{name} {extra:?}: {verdict}"));
                }
                checked += 1;
            } else {
                if run.code != 3 || run.error_code() != want {
                    failures.push(format!("{name}: want {want}, got exit {} {}", run.code, run.stdout.trim()));
                }
                assert!(!out.exists(), "{name}: a refused split leaves no output directory behind");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the corpus failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 60, "only {checked} splits were checked against the oracles");
}

/// The sparse formats again, one by one, with the real file's bytes compared to
/// the source file they were made from (not only to other readers).
#[test]
fn sparse_files_are_rebuilt_with_their_holes() {
    let env = Env::new();
    let dir = env.path("export");
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut want = vec![0u8; 5 << 20];
    for (at, seed) in [(0usize, 1u64), (2 << 20, 2), ((5 << 20) - 70_000, 3)] {
        let b = bytes(seed, 70_000);
        want[at..at + b.len()].copy_from_slice(&b);
    }
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(dir.join("img/disk.img")).unwrap();
        f.set_len(5 << 20).unwrap();
        for (at, seed) in [(0u64, 1u64), (2 << 20, 2), ((5 << 20) - 70_000, 3)] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&bytes(seed, 70_000)).unwrap();
        }
    }
    std::fs::write(dir.join("manifest.csv"), "file\nimg/disk.img\n").unwrap();
    let formats: &[(&str, &[&str])] = &[
        ("gnu", &["--format=gnu", "--sparse"]),
        ("oldgnu", &["--format=oldgnu", "--sparse"]),
        ("pax00", &["--format=pax", "--sparse", "--sparse-version=0.0"]),
        ("pax01", &["--format=pax", "--sparse", "--sparse-version=0.1"]),
        ("pax10", &["--format=pax", "--sparse", "--sparse-version=1.0"]),
    ];
    for (label, flags) in formats {
        for gz in [false, true] {
            let src = env.path(&format!("{label}.tar{}", if gz { ".gz" } else { "" }));
            let mut cmd = Command::new("tar");
            cmd.args(*flags)
                .arg(if gz { "-czf" } else { "-cf" })
                .arg(&src)
                .arg("-C")
                .arg(&dir)
                .args(["manifest.csv", "img"]);
            assert!(cmd.status().unwrap().success());
            let listing = Command::new("tar").arg("-tvf").arg(&src).output().unwrap();
            assert!(
                !String::from_utf8_lossy(&listing.stdout).contains("GNUSparseFile"),
                "tar lists the real name"
            );
            let out = env.path(&format!("out-{label}-{gz}"));
            env.split(&src, &out, &[]).ok();
            let part = inspect(&out);
            let (_, entries) = part.parts.iter().next().unwrap();
            let (name, data) = &entries.entries[1];
            assert_eq!(name, "img/disk.img", "{label}");
            assert!(
                data == &want,
                "{label} gz={gz}: {} bytes, not the real file's {}",
                data.len(),
                want.len()
            );
        }
    }
}

/// A ZIP (Info-ZIP, made in a non-UTC zone, which rounds odd seconds up) and a
/// TAR.GZ (GNU tar, exact seconds) of the same files give byte-identical parts:
/// one time rule for every source kind, the exact time taken from ZIP's
/// extended-timestamp field where the writer kept it.
#[test]
fn zip_and_tar_gz_of_the_same_files_give_identical_parts_at_odd_seconds() {
    let env = Env::new();
    let dir = env.path("export");
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut manifest = String::from("file\n");
    for i in 0..5u64 {
        let p = dir.join(format!("img/{i}.bin"));
        std::fs::write(&p, bytes(i, 1000 + i as usize)).unwrap();
        manifest.push_str(&format!("img/{i}.bin\n"));
        // 2024-05-06 07:08:09 + i minutes: every one an odd second.
        let t = 1_714_979_289 + 60 * i as i64;
        assert!(Command::new("touch")
            .arg("-d")
            .arg(format!("@{t}"))
            .arg(&p)
            .status()
            .unwrap()
            .success());
    }
    std::fs::write(dir.join("manifest.csv"), manifest).unwrap();
    assert!(Command::new("touch")
        .arg("-d")
        .arg("@1714979301")
        .arg(dir.join("manifest.csv"))
        .status()
        .unwrap()
        .success());
    let zip = env.path("export.zip");
    let tgz = env.path("export.tar.gz");
    assert!(Command::new("zip")
        .current_dir(&dir)
        .env("TZ", "America/St_Johns")
        .args(["-q", "-r"])
        .arg(&zip)
        .args(["manifest.csv", "img"])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&dir)
        .args(["manifest.csv", "img"])
        .status()
        .unwrap()
        .success());
    env.split(&zip, &env.path("from-zip"), &["-n", "2"]).ok();
    env.split(&tgz, &env.path("from-tgz"), &["-n", "2"]).ok();
    let names = listing(&env.path("from-zip"));
    assert_eq!(names.len(), 3);
    for name in &names {
        let a = std::fs::read(env.path("from-zip").join(name)).unwrap();
        let b = std::fs::read(env.path("from-tgz").join(name)).unwrap();
        assert!(a == b, "{name}: the ZIP's and the TAR.GZ's parts differ");
    }
}
