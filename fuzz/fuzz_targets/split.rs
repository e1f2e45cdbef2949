//! The whole splitter (format detection, ZIP/TAR/TAR.GZ reading, manifest, plan,
//! pack, ZIP writing) on arbitrary bytes as the source archive. A run ends in
//! parts or an error, never a panic or a hang, and never writes outside its
//! output directory: after each run the work directory holds only the source
//! and the output directory, and the output directory holds no temp file.
//! Each input is also split a second time into the same directory: a rerun
//! resumes (keeps matching parts), and must end the same way.
#![no_main]

use std::path::PathBuf;

use batchd::split::{self, Limits, Progress, SplitOptions};
use libfuzzer_sys::fuzz_target;

fn work() -> PathBuf {
    // One directory per fuzzing process; /dev/shm keeps the disk out of it.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("batchd-fuzz-split-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let dir = work();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("source");
    let out = dir.join("out");
    std::fs::write(&src, data).unwrap();
    let mut opts = SplitOptions::new(&src, &out);
    opts.batch_size = 3;
    opts.jobs = 1;
    // Small limits keep each run short; the limits themselves are under test too.
    opts.limits = Limits {
        max_entry_bytes: 8 << 20,
        max_total_bytes: 32 << 20,
        max_entries: 10_000,
        max_manifest_bytes: 4 << 20,
        ..Limits::default()
    };
    let result = split::split(&opts, &Progress::default());
    let again = split::split(&opts, &Progress::default());
    assert_eq!(
        result.is_ok(),
        again.is_ok(),
        "a rerun ended differently: {result:?} then {again:?}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names == ["out", "source"] || names == ["source"],
        "wrote outside its output directory: {names:?}"
    );
    if out.is_dir() {
        for e in std::fs::read_dir(&out).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            // Finished parts of a failed split stay (a rerun resumes from them);
            // a temp file never does.
            assert!(!name.starts_with('.'), "a temp file was left: {name} ({result:?})");
        }
    }
});
