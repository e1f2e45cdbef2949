//! The database file: a version-1 database (as the first daemon release wrote it)
//! is migrated forward at start, and a database from a newer batchd is refused.

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
