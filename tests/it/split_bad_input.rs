//! The attack catalog: one test per kind of bad input, each fixture built here
//! from real archive bytes. Each must exit non-zero with its stable code, name
//! the entry or manifest line, leave no part (and no temp file) in the output
//! directory, write nothing outside it (the listing of everything else is
//! compared before and after), stay under 256 MiB of memory and end within 5 s
//! (both read by GNU time). Every fixture adds a line to
//! `target/attack-catalog.tsv` (code, source, seconds, MiB).

use std::path::{Path, PathBuf};

use crate::helper::*;

const BAD_INPUT: i32 = 3;

/// Runs the split and asserts the failure contract; returns the error message.
fn fails(env: &Env, src: &Path, args: &[&str], code: &str, names: &str) -> String {
    let out = env.path("parts");
    let before = env.snapshot(&out);
    let (run, secs, mib) = env.split_measured(src, &out, args);
    assert!(mib < 256.0, "{code} on {}: peak RSS {mib:.1} MiB", src.display());
    assert!(secs < 5.0, "{code} on {}: {secs} s", src.display());
    record(code, src, secs, mib);
    assert_eq!(
        run.code,
        if code == "DISK_FULL" { 4 } else { BAD_INPUT },
        "exit code; stdout {} stderr {}",
        run.stdout,
        run.stderr
    );
    assert_eq!(run.error_code(), code, "{}", run.stdout);
    let message = run.json["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(names), "message {message:?} should name {names:?}");
    assert!(run.stderr.contains(&format!("batchd: {code}")), "stderr: {}", run.stderr);
    assert_eq!(listing(&out), Vec::<String>::new(), "the output directory must hold nothing");
    assert_eq!(before, env.snapshot(&out), "nothing written outside the output directory");
    message
}

/// Appends one fixture's figures to target/attack-catalog.tsv (one short write
/// per line, so parallel tests do not interleave).
fn record(code: &str, src: &Path, secs: f64, mib: f64) {
    use std::io::Write;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("attack-catalog.tsv");
    let name = src.file_name().unwrap().to_string_lossy();
    let line = format!("{code}\t{name}\t{secs:.2}\t{mib:.1}\n");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(line.as_bytes()).unwrap();
}

fn ok_manifest() -> E {
    file("manifest.csv", "file\na.txt\n")
}

#[test]
fn unsafe_paths_in_zip() {
    for (bad, why) in [
        ("../escape.txt", "'..'"),
        ("/tmp/batchd-abs-escape.txt", "absolute"),
        ("C:/x.txt", "drive letter"),
        ("a\\..\\b.txt", "backslash"),
    ] {
        let env = Env::new();
        let src = env.archive("zip", "evil.zip", &[ok_manifest(), file("a.txt", "a"), file(bad, "evil")]);
        let msg = fails(&env, &src, &[], "UNSAFE_PATH", bad.replace('\\', "\\\\").as_str());
        assert!(msg.contains(why), "{msg}");
        assert!(!Path::new("/tmp/batchd-abs-escape.txt").exists());
        assert!(!env.dir.path().parent().unwrap().join("escape.txt").exists());
    }
}

#[test]
fn unsafe_paths_in_tar() {
    for fmt in ["tar", "tar.gz"] {
        let env = Env::new();
        let src = env.archive(
            fmt,
            &format!("evil.{fmt}"),
            &[ok_manifest(), file("a.txt", "a"), file("sub/../../escape.txt", "evil")],
        );
        fails(&env, &src, &[], "UNSAFE_PATH", "sub/../../escape.txt");
    }
}

#[test]
fn tar_links_and_devices_are_unsupported() {
    for (kind, link, what) in [
        ("symlink", "/etc/passwd", "symbolic link"),
        ("hardlink", "a.txt", "hard link"),
        ("fifo", "", "fifo"),
        ("chardev", "", "character device"),
    ] {
        let env = Env::new();
        let src = env.archive(
            "tar",
            "links.tar",
            &[ok_manifest(), file("a.txt", "a"), special("other", kind, link)],
        );
        let msg = fails(&env, &src, &[], "UNSUPPORTED_ENTRY", "\"other\"");
        assert!(msg.contains(what), "{msg}");
    }
}

#[test]
fn zip_symlink_and_directory_symlink_are_unsupported() {
    let env = Env::new();
    let src = env.archive(
        "zip",
        "link.zip",
        &[ok_manifest(), file("a.txt", "a"), special("ln", "symlink", "/etc")],
    );
    fails(&env, &src, &[], "UNSUPPORTED_ENTRY", "\"ln\"");
    let env = Env::new();
    let src = env.archive(
        "dir",
        "srcdir",
        &[ok_manifest(), file("a.txt", "a"), special("ln", "symlink", "/etc")],
    );
    fails(&env, &src, &[], "UNSUPPORTED_ENTRY", "\"ln\"");
}

#[test]
fn duplicate_entries() {
    for fmt in ["zip", "tar", "tar.gz"] {
        let env = Env::new();
        let src = env.archive(
            fmt,
            &format!("dup.{fmt}"),
            &[ok_manifest(), file("a.txt", "a"), file("./a.txt", "b")],
        );
        fails(&env, &src, &[], "DUPLICATE_ENTRY", "\"a.txt\"");
    }
}

/// Names that are different bytes but one file once a part is unpacked on
/// macOS or Windows: letter case, NFC against NFD, and both at once, in every
/// archive format and in a directory source.
#[test]
fn case_and_unicode_normalisation_collisions() {
    let nfc = "caf\u{e9}.txt";
    let nfd = "cafe\u{301}.txt";
    let nfd_upper = "CAFE\u{301}.txt";
    let cases: [(&str, &str, &str); 3] = [
        ("Photo.JPG", "photo.jpg", "letter case"),
        (nfc, nfd, "Unicode normalisation (NFC/NFD)"),
        (nfc, nfd_upper, "letter case and Unicode normalisation"),
    ];
    for fmt in ["zip", "tar", "tar.gz", "dir"] {
        for (i, (a, b, reason)) in cases.iter().enumerate() {
            let env = Env::new();
            let name = if fmt == "dir" {
                format!("collide{i}")
            } else {
                format!("collide{i}.{fmt}")
            };
            let src = env.archive(fmt, &name, &[ok_manifest(), file(a, "first"), file(b, "second")]);
            let message = fails(&env, &src, &[], "NAME_COLLISION", &format!("{b:?}"));
            assert!(message.contains(&format!("{a:?}")), "{fmt}: both entries named: {message}");
            assert!(message.contains(reason), "{fmt}: {message}");
        }
    }
}

#[test]
fn zip_bomb_by_ratio() {
    let env = Env::new();
    let bomb = E {
        deflate: true,
        ..file("a.txt", vec![0u8; 60 << 20])
    };
    let src = env.archive("zip", "bomb.zip", &[ok_manifest(), bomb]);
    let started = std::time::Instant::now();
    let msg = fails(&env, &src, &[], "ARCHIVE_BOMB", "a.txt");
    assert!(msg.contains("ratio"), "{msg}");
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn gzip_bomb_by_ratio() {
    let env = Env::new();
    let src = env.path("bomb.tar.gz");
    let script = format!(
        r#"
import tarfile, io
with tarfile.open({src:?}, "w:gz") as t:
    for name, size in [("manifest.csv", 0), ("a.txt", 400 << 20)]:
        info = tarfile.TarInfo(name)
        data = b"file\na.txt\n" if name == "manifest.csv" else None
        info.size = len(data) if data else size
        t.addfile(info, io.BytesIO(data) if data else io.BytesIO(bytes(size)))
"#,
        src = src.to_str().unwrap()
    );
    assert!(std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap()
        .success());
    let started = std::time::Instant::now();
    fails(&env, &src, &[], "ARCHIVE_BOMB", "gzip stream");
    assert!(started.elapsed().as_secs() < 10);
}

/// Two central-directory entries sharing one local header: the "better zip bomb"
/// layout. Built by hand because no ordinary tool writes it.
#[test]
fn zip_bomb_by_overlapping_entries() {
    let env = Env::new();
    let data = b"file\na.txt\nb.txt\n";
    let crc = crc32(data);
    let mut z = Vec::new();
    let local = |name: &str, z: &mut Vec<u8>, data: &[u8]| {
        z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        z.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        z.extend_from_slice(&crc32(data).to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z.extend_from_slice(name.as_bytes());
        z.extend_from_slice(data);
    };
    local("manifest.csv", &mut z, data);
    let shared_at = z.len() as u32;
    local("a.txt", &mut z, b"payload");
    let cd_at = z.len() as u32;
    let mut n = 0u16;
    for (name, at, d) in [
        ("manifest.csv", 0u32, &data[..]),
        ("a.txt", shared_at, b"payload"),
        ("b.txt", shared_at, b"payload"),
    ] {
        z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        z.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        z.extend_from_slice(&crc32(d).to_le_bytes());
        z.extend_from_slice(&(d.len() as u32).to_le_bytes());
        z.extend_from_slice(&(d.len() as u32).to_le_bytes());
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        z.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        z.extend_from_slice(&at.to_le_bytes());
        z.extend_from_slice(name.as_bytes());
        n += 1;
    }
    let cd_len = z.len() as u32 - cd_at;
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0]);
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&cd_len.to_le_bytes());
    z.extend_from_slice(&cd_at.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    let _ = crc;
    let src = env.path("overlap.zip");
    std::fs::write(&src, z).unwrap();
    let msg = fails(&env, &src, &[], "ARCHIVE_BOMB", ".txt");
    assert!(msg.contains("overlap"), "{msg}");
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

fn flip_byte_in(path: &Path, needle: &[u8]) {
    let mut data = std::fs::read(path).unwrap();
    let at = data.windows(needle.len()).position(|w| w == needle).expect("needle present");
    data[at + needle.len() / 2] ^= 0x55;
    std::fs::write(path, data).unwrap();
}

#[test]
fn zip_bad_crc() {
    let env = Env::new();
    let src = env.archive(
        "zip",
        "crc.zip",
        &[ok_manifest(), file("a.txt", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
    );
    flip_byte_in(&src, b"AAAAAAAAAAAAAAAA");
    let msg = fails(&env, &src, &[], "ARCHIVE_CORRUPT", "a.txt");
    assert!(msg.contains("CRC"), "{msg}");
}

#[test]
fn zip_bad_deflate_data() {
    let env = Env::new();
    let big: Vec<u8> = (0..20_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    let src = env.archive(
        "zip",
        "bad.zip",
        &[
            ok_manifest(),
            E {
                deflate: true,
                ..file("a.txt", big)
            },
        ],
    );
    let mut data = std::fs::read(&src).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b ^= 0xA5;
    }
    std::fs::write(&src, data).unwrap();
    fails(&env, &src, &[], "ARCHIVE_CORRUPT", "a.txt");
}

#[test]
fn gzip_bad_trailer() {
    let env = Env::new();
    let src = env.archive("tar.gz", "t.tar.gz", &[ok_manifest(), file("a.txt", "a")]);
    let mut data = std::fs::read(&src).unwrap();
    let n = data.len();
    data[n - 8] ^= 0xFF; // CRC-32 of the gzip trailer
    std::fs::write(&src, data).unwrap();
    fails(&env, &src, &[], "ARCHIVE_CORRUPT", "gzip");
}

#[test]
fn truncated_archives() {
    for fmt in ["zip", "tar", "tar.gz"] {
        let env = Env::new();
        let src = env.archive(fmt, &format!("t.{fmt}"), &[ok_manifest(), file("a.txt", bytes(1, 40_000))]);
        let data = std::fs::read(&src).unwrap();
        std::fs::write(&src, &data[..data.len() / 2]).unwrap();
        fails(&env, &src, &[], "ARCHIVE_CORRUPT", "trunc");
    }
}

#[test]
fn not_an_archive_and_empty_file() {
    let env = Env::new();
    let src = env.path("notes.zip");
    std::fs::write(&src, "just some text, not an archive\n").unwrap();
    fails(&env, &src, &[], "ARCHIVE_CORRUPT", "not a ZIP, TAR or TAR.GZ");
    std::fs::write(&src, "").unwrap();
    fails(&env, &src, &[], "ARCHIVE_CORRUPT", "empty file");
}

#[test]
fn manifest_missing_when_named() {
    let env = Env::new();
    let src = env.archive("zip", "m.zip", &[ok_manifest(), file("a.txt", "a")]);
    fails(&env, &src, &["--manifest", "list.csv"], "MANIFEST_MISSING", "list.csv");
}

#[test]
fn manifest_column_missing_or_undetectable() {
    let env = Env::new();
    let src = env.archive("zip", "m.zip", &[file("manifest.csv", "id,title\n1,a\n"), file("a.txt", "a")]);
    let msg = fails(&env, &src, &["--file-column", "image"], "MANIFEST_MISSING_COLUMN", "\"image\"");
    assert!(msg.contains("\"id\", \"title\""), "lists the headers: {msg}");
    let msg = fails(&env, &src, &[], "MANIFEST_NO_FILE_COLUMN", "\"id\", \"title\"");
    assert!(msg.contains("--file-column"), "{msg}");
}

/// A column named for files is used even when none of its values match, so the
/// error names the row rather than the column.
#[test]
fn file_column_by_name_when_nothing_matches() {
    let env = Env::new();
    let src = env.archive(
        "dir",
        "src",
        &[file("manifest.csv", "id,Image Name\n1,nope.jpg\n"), file("other.jpg", "x")],
    );
    fails(&env, &src, &[], "MISSING_FILE", "line 2 names \"nope.jpg\"");
}

#[test]
fn manifest_ragged_row() {
    for fmt in ["zip", "tar.gz"] {
        let env = Env::new();
        let src = env.archive(
            fmt,
            &format!("m.{fmt}"),
            &[
                file("manifest.csv", "file,n\r\na.txt,1\r\nb.txt,2,extra\r\n"),
                file("a.txt", "a"),
                file("b.txt", "b"),
            ],
        );
        fails(&env, &src, &[], "MANIFEST_RAGGED", "line 3");
    }
}

#[test]
fn manifest_not_utf8() {
    let env = Env::new();
    let mut m = b"file,n\na.txt,1\nb.txt,2\nc.txt,\xff\xfe\n".to_vec();
    m.extend_from_slice(b"");
    let src = env.archive(
        "zip",
        "m.zip",
        &[file("manifest.csv", m), file("a.txt", "a"), file("b.txt", "b"), file("c.txt", "c")],
    );
    fails(&env, &src, &[], "MANIFEST_NOT_UTF8", "line 4");
}

#[test]
fn manifest_empty() {
    let env = Env::new();
    let src = env.archive("zip", "m.zip", &[file("manifest.csv", "file\n"), file("a.txt", "a")]);
    fails(&env, &src, &[], "MANIFEST_EMPTY", "no rows");
}

#[test]
fn missing_file_fails_or_is_skipped() {
    for fmt in ["zip", "tar.gz", "dir"] {
        let env = Env::new();
        let name = if fmt == "dir" { "src".to_owned() } else { format!("m.{fmt}") };
        let src = env.archive(
            fmt,
            &name,
            &[
                file("manifest.csv", "file\na.txt\ngone.txt\nb.txt\n"),
                file("a.txt", "a"),
                file("b.txt", "b"),
            ],
        );
        fails(&env, &src, &[], "MISSING_FILE", "line 3");

        let out = env.path("parts");
        let run = env.split(&src, &out, &["--on-missing-file", "skip", "-n", "1"]);
        run.ok();
        assert_eq!(run.json["skipped_rows"], 1);
        assert_eq!(run.json["skipped"][0]["line"], 3);
        assert_eq!(run.json["skipped"][0]["value"], "gone.txt");
        let got = inspect(&out);
        let stem = if fmt == "dir" { "src" } else { "m" };
        assert_eq!(got.parts.len(), 2);
        assert_eq!(got.parts[&format!("{stem}-part2.zip")].entries[0].1, b"file\nb.txt\n".to_vec());
    }
}

#[test]
fn ambiguous_bare_name() {
    let env = Env::new();
    let src = env.archive(
        "zip",
        "m.zip",
        &[file("manifest.csv", "file\nx.jpg\n"), file("a/x.jpg", "1"), file("b/x.jpg", "2")],
    );
    fails(&env, &src, &[], "AMBIGUOUS_FILE", "a/x.jpg, b/x.jpg");
}

/// A real full filesystem: a 1 MiB tmpfs as the output directory.
#[test]
fn disk_full_removes_temp_files() {
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("disk_full_removes_temp_files: not root, cannot mount a tmpfs; this test runs in CI as root");
        return;
    }
    let env = Env::new();
    let src = env.archive(
        "zip",
        "big.zip",
        &[
            file("manifest.csv", "file\na.bin\nb.bin\n"),
            file("a.bin", bytes(1, 700_000)),
            file("b.bin", bytes(2, 700_000)),
        ],
    );
    let out = env.path("parts");
    std::fs::create_dir(&out).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(out.clone());
    fails(&env, &src, &["-n", "1"], "DISK_FULL", "parts");
    // With room again, the same command succeeds.
    let run = env.split(&src, &out, &["-n", "2"]);
    assert_eq!(run.error_code(), "DISK_FULL", "both files in one part still cannot fit");
    std::process::Command::new("mount")
        .args(["-o", "remount,size=4m"])
        .arg(&out)
        .status()
        .unwrap();
    env.split(&src, &out, &["-n", "1"]).ok();
    assert_eq!(inspect(&out).parts.len(), 2);
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn tar_symlinked_directory_and_hardlink_escapes() {
    // A symlink to a directory outside, then a file "through" it.
    let env = Env::new();
    let src = env.archive(
        "tar",
        "symdir.tar",
        &[
            ok_manifest(),
            file("a.txt", "a"),
            special("d", "symlink", "/tmp"),
            file("d/x.txt", "evil"),
        ],
    );
    fails(&env, &src, &[], "UNSUPPORTED_ENTRY", "\"d\"");
    assert!(!Path::new("/tmp/x.txt").exists());
    let env = Env::new();
    let src = env.archive(
        "tar.gz",
        "hardout.tar.gz",
        &[ok_manifest(), file("a.txt", "a"), special("h", "hardlink", "../../etc/passwd")],
    );
    fails(&env, &src, &[], "UNSUPPORTED_ENTRY", "\"h\"");
}

#[test]
fn manifest_pathologies_name_their_line() {
    // A 20 MB field: the message quotes a clipped value and says how long it was.
    let env = Env::new();
    let long = format!("file\n{}\n", "x".repeat(20 << 20));
    let src = env.archive("zip", "longfield.zip", &[file("manifest.csv", long), file("a.txt", "a")]);
    let msg = fails(&env, &src, &[], "MISSING_FILE", "line 2");
    assert!(
        msg.len() < 1000 && msg.contains("20971521 bytes in all") || msg.contains("bytes in all"),
        "{}",
        &msg[..200.min(msg.len())]
    );
    // A NUL inside a name, and a name climbing out of the source.
    for (name, manifest) in [("nul.zip", "file\na.t\0xt\n"), ("climb.zip", "file\n../a.txt\n")] {
        let env = Env::new();
        let src = env.archive("zip", name, &[file("manifest.csv", manifest), file("a.txt", "a")]);
        fails(&env, &src, &[], "MISSING_FILE", "line 2");
    }
    // Only a header, and no header at all.
    for (name, manifest) in [("header-only.zip", "file\n"), ("blank.zip", "\n\n")] {
        let env = Env::new();
        let src = env.archive("zip", name, &[file("manifest.csv", manifest), file("a.txt", "a")]);
        fails(&env, &src, &[], "MANIFEST_EMPTY", "manifest.csv");
    }
}

#[test]
fn zip_entry_with_a_64_kib_name_and_a_zip64_size_without_its_extra_field() {
    let env = Env::new();
    let long = format!("{}.txt", "n".repeat(65_000));
    let src = env.archive(
        "zip",
        "longname.zip",
        &[ok_manifest(), file("a.txt", "a"), file(&format!("../{long}"), "x")],
    );
    let msg = fails(&env, &src, &[], "UNSAFE_PATH", "bytes in all");
    assert!(msg.len() < 1000, "the message is clipped: {} bytes", msg.len());

    // The central directory says a.txt is 0xFFFFFFFF bytes compressed, which
    // means "see the ZIP64 extra field", but there is none.
    let env = Env::new();
    let src = env.archive("zip", "zip64-lie.zip", &[ok_manifest(), file("a.txt", "a")]);
    let mut bytes = std::fs::read(&src).unwrap();
    let cd = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"PK\x01\x02")
        .map(|(i, _)| i)
        .find(|&i| bytes[i + 46..].starts_with(b"a.txt"))
        .expect("a.txt in the central directory");
    bytes[cd + 20..cd + 24].copy_from_slice(&[0xFF; 4]);
    std::fs::write(&src, &bytes).unwrap();
    fails(&env, &src, &[], "ARCHIVE_CORRUPT", "a.txt");
}
