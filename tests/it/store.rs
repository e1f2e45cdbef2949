//! The database file: a version-1 database (as the first daemon release wrote it)
//! is migrated forward at start to exactly the schema a new database gets from
//! `schema.sql`, a database from a newer batchd is refused, and opening and
//! dropping the store leaves no thread behind.

use batchd::store::Store;
use r2d2_sqlite::rusqlite::types::ValueRef;
use r2d2_sqlite::rusqlite::Connection;

use crate::helper::{assert_alone, run_alone, threads, threads_settle};

#[test]
fn version_one_database_is_migrated_forward() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batchd.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(include_str!("../../migrations/001_initial.sql")).unwrap();
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
    assert_eq!(
        (version, tables, old),
        (batchd::store::SCHEMA_VERSION, 4, 1),
        "migrated to the current version, tables added, data kept"
    );
    assert_eq!(batchd::store::SCHEMA_VERSION, 9);
    drop(store);
    // Opening again is a no-op.
    assert!(Store::open(&path, 2).is_ok());
}

/// Everything SQLite knows about a database's schema, in a form that does not
/// depend on how it got there: columns (name, type, NOT NULL, default, key),
/// foreign keys, indexes with their columns, uniqueness and WHERE clause, and
/// triggers, with comments and spacing taken out of the SQL.
fn schema_of(c: &Connection) -> Vec<String> {
    let norm = |sql: &str| -> String {
        let no_comments: Vec<&str> = sql.lines().map(|l| l.split("--").next().unwrap()).collect();
        no_comments.join(" ").split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let rows = |sql: &str| -> Vec<String> {
        let mut st = c.prepare(sql).unwrap();
        let n = st.column_count();
        st.query_map([], |r| {
            Ok((0..n)
                .map(|i| match r.get_ref(i).unwrap() {
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let mut out = Vec::new();
    let objects: Vec<(String, String, String, Option<String>)> = c
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (kind, name, table, sql) in objects {
        match kind.as_str() {
            "table" => {
                for col in rows(&format!("PRAGMA table_xinfo('{name}')")) {
                    out.push(format!("table {name} column {col}"));
                }
                for fk in rows(&format!("PRAGMA foreign_key_list('{name}')")) {
                    out.push(format!("table {name} fk {fk}"));
                }
            }
            "index" => {
                let cols = rows(&format!("PRAGMA index_xinfo('{name}')")).join(",");
                let unique: Vec<String> = rows(&format!(
                    "SELECT \"unique\", partial FROM pragma_index_list('{table}') WHERE name = '{name}'"
                ));
                let sql = sql.map(|s| norm(&s)).unwrap_or_default();
                out.push(format!("index {name} on {table} ({cols}) {unique:?} {sql}"));
            }
            _ => out.push(format!("{kind} {name} on {table}: {}", norm(&sql.unwrap_or_default()))),
        }
    }
    out
}

/// `schema.sql` is the whole current schema: a new database and one migrated
/// from version 1 come out the same.
#[test]
fn new_and_migrated_databases_have_the_same_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, old) = (dir.path().join("fresh.db"), dir.path().join("old.db"));
    {
        let c = Connection::open(&old).unwrap();
        c.execute_batch(include_str!("../../migrations/001_initial.sql")).unwrap();
        c.execute_batch("PRAGMA user_version = 1").unwrap();
    }
    for p in [&fresh, &old] {
        drop(Store::open(p, 1).unwrap());
    }
    let (a, b) = (
        schema_of(&Connection::open(&fresh).unwrap()),
        schema_of(&Connection::open(&old).unwrap()),
    );
    assert!(a.len() > 50, "the schema reads as {} facts", a.len());
    let only_fresh: Vec<_> = a.iter().filter(|x| !b.contains(x)).collect();
    let only_old: Vec<_> = b.iter().filter(|x| !a.contains(x)).collect();
    assert!(
        only_fresh.is_empty() && only_old.is_empty(),
        "only in a new database: {only_fresh:#?}\nonly in a migrated one: {only_old:#?}"
    );
    assert_eq!(a, b, "same facts in the same order");
    let version = |p: &std::path::Path| -> i64 {
        Connection::open(p)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!((version(&fresh), version(&old)), (9, 9));
}

#[test]
fn database_from_a_newer_batchd_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batchd.db");
    Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    let err = format!("{:#}", Store::open(&path, 2).err().expect("refused"));
    assert!(err.contains("newer") && err.contains("99"), "{err}");
}

/// Each dropped Store used to leave r2d2's three pool threads alive for up to
/// 30 s (see `Store::open`), so a process that reopened its store in a loop ran
/// out of memory mappings; the lifecycle test's crashes did, in CI.
#[test]
fn reopening_the_store_leaves_no_threads_behind() {
    let out = run_alone("store::reopen_alone");
    assert!(out.contains("reopen_alone: 1000 opens"), "{out}");
}

#[test]
#[ignore = "run in a process of its own by reopening_the_store_leaves_no_threads_behind"]
fn reopen_alone() {
    assert_alone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batchd.db");
    drop(Store::open(&path, 2).unwrap());
    let before = threads();
    for _ in 0..1000 {
        let store = Store::open(&path, 2).unwrap();
        let n: i64 = store
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 0);
        drop(store);
    }
    let after = threads_settle(before, "1000 opens and drops");
    eprintln!("reopen_alone: 1000 opens, threads {before} before, {after} after");
}

/// When the last Store is dropped the database file alone holds everything:
/// the writer checkpoints the WAL and closes before the drop returns. Before,
/// the close ran later on the writer's own thread, and a copy taken at once
/// (the lifecycle test's template, or a backup after `batchd serve` exits)
/// could miss what was still in the WAL and read as malformed.
#[test]
fn the_database_file_is_whole_once_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batchd.db");
    for round in 1..=50i64 {
        let store = Store::open(&path, 2).unwrap();
        store
            .write(move |tx| batchd::store::jobs::event(tx, None, "test.round", serde_json::json!({ "round": round })))
            .unwrap();
        drop(store);
        let copy = dir.path().join(format!("copy-{round}.db"));
        std::fs::copy(&path, &copy).unwrap();
        // Read with plain SQLite, not our store, and without the WAL beside it.
        let c = Connection::open(&copy).unwrap();
        let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "round {round}");
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM events WHERE kind = 'test.round'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, round, "round {round}: the copy lacks writes still in the WAL");
        drop(c);
        std::fs::remove_file(&copy).unwrap();
    }
}

/// Reads a database file with Python's sqlite3 (not our store): the integrity
/// check and the ids of its jobs.
fn python_read(db: &std::path::Path) -> (String, Vec<String>) {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, json\n\
             c = sqlite3.connect(sys.argv[1])\n\
             print(json.dumps([c.execute('PRAGMA integrity_check').fetchone()[0],\n\
                   [r[0] for r in c.execute('SELECT id FROM jobs ORDER BY seq')]]))",
        ])
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The README's backups: while `batchd serve` runs, SQLite's online backup (here
/// through Python's sqlite3) copies a database with every committed job; once it
/// has stopped on SIGTERM, the file alone is the whole database. Draft jobs, so
/// the daemon is idle and the check is about the file.
#[test]
fn backups_as_the_readme_says() {
    use crate::helper::daemon::{Api, DaemonProcess};
    let env = crate::helper::Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let d = DaemonProcess::start(&data);
    let ids: Vec<String> = (0..3).map(|_| d.create(&serde_json::json!({"submit": false}))).collect();
    let db = data.join("batchd.db");

    let online = env.path("online.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nsqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))",
        ])
        .arg(&db)
        .arg(&online)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(python_read(&online), ("ok".to_owned(), ids.clone()), "online backup");

    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
    let wal = data.join("batchd.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the WAL is empty after a clean stop"
    );
    let copy = env.path("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    assert_eq!(python_read(&copy), ("ok".to_owned(), ids), "the file alone after a stop");
}
