//! The database file: a version-1 database (as the first daemon release wrote it)
//! is migrated forward at start, a database from a newer batchd is refused, and
//! opening and dropping the store leaves no thread behind.

use batchd::store::Store;
use r2d2_sqlite::rusqlite::Connection;

#[test]
fn version_one_database_is_migrated_forward() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batchd.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(include_str!("../../schema.sql")).unwrap();
        c.execute_batch("PRAGMA user_version = 1; INSERT INTO jobs (id, seq, status, trigger, settings, out_dir, created, modified) VALUES ('old', 1, 'COMPLETED', 'api', '{}', '/x', 0, 0);").unwrap();
    }
    let store = Store::open(&path, 2).unwrap();
    let (version, tables, old): (i64, i64, i64) = store
        .read(|c| {
            Ok((
                c.query_row("PRAGMA user_version", [], |r| r.get(0))?,
                c.query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('watch_files', 'schedules', 'schedule_fires', 'schedule_files')",
                    [],
                    |r| r.get(0),
                )?,
                c.query_row("SELECT COUNT(*) FROM jobs WHERE id = 'old'", [], |r| r.get(0))?,
            ))
        })
        .unwrap();
    assert_eq!((version, tables, old), (6, 4, 1), "migrated to 6, tables added, data kept");
    drop(store);
    // Opening again is a no-op.
    assert!(Store::open(&path, 2).is_ok());
}

#[test]
fn database_from_a_newer_batchd_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batchd.db");
    Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    let err = format!("{:#}", Store::open(&path, 2).err().expect("refused"));
    assert!(err.contains("newer") && err.contains("99"), "{err}");
}

/// How many threads the process has now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

const REOPEN_CHILD: &str = "BATCHD_IT_REOPEN_CHILD";

/// Each dropped Store used to leave r2d2's three pool threads alive for up to
/// 30 s (see `Store::open`), so a process that reopened its store in a loop ran
/// out of memory mappings; the lifecycle test's crashes did, in CI. Counted in a
/// process of its own (this binary, running only `reopen_child`), because the
/// tests beside this one start and stop threads of their own.
#[test]
fn reopening_the_store_leaves_no_threads_behind() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "store::reopen_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(REOPEN_CHILD, "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the child failed:\n{text}");
    assert!(text.contains("reopen_child: 1000 opens"), "the child did not run its loop:\n{text}");
}

#[test]
#[ignore = "run in a process of its own by reopening_the_store_leaves_no_threads_behind"]
fn reopen_child() {
    assert!(
        std::env::var_os(REOPEN_CHILD).is_some(),
        "run by reopening_the_store_leaves_no_threads_behind, not by hand"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batchd.db");
    drop(Store::open(&path, 2).unwrap());
    let before = threads();
    for _ in 0..1000 {
        let store = Store::open(&path, 2).unwrap();
        let n: i64 = store.read(|c| c.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0))).unwrap();
        assert_eq!(n, 0);
        drop(store);
    }
    // The writer thread exits once its channel closes: give the last one a moment.
    let settled = crate::helper::wait_for(|| threads() <= before, std::time::Duration::from_secs(5));
    let after = threads();
    eprintln!("reopen_child: 1000 opens, threads {before} before, {after} after");
    assert!(settled, "1000 opens and drops left {} threads behind", after.saturating_sub(before));
}
