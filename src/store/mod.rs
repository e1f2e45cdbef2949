//! The SQLite store: one file holds every job, source, task, part and event. This
//! module owns opening it (pragmas read back and checked, because SQLite silently
//! ignores a misspelled pragma), applying `schema.sql` and migrations, the single
//! writer thread that owns the only write connection and commits queued writes in
//! batches, and the small pool of read-only connections. Engine workers and HTTP
//! handlers never hold a write connection: they hand closures to the writer.
//! The last `Store` to be dropped waits for the writer to checkpoint the WAL and
//! close, so from then on the database file alone is the whole database.

pub mod campaign_batches;
pub mod campaigns;
pub mod counters;
pub mod delivery;
pub mod jobs;
pub mod model;
pub mod parts;
pub mod queue;
pub mod retention;
pub mod retry;
pub mod schedules;
pub mod views;
pub mod watch_files;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use anyhow::{bail, Context};
use r2d2_sqlite::rusqlite::{self, Connection, OpenFlags};
use r2d2_sqlite::SqliteConnectionManager;

const SCHEMA: &str = include_str!("../../schema.sql");
/// Moves a database made by an older batchd forward: MIGRATIONS[i] takes
/// version i+1 to i+2 (version 1 is `migrations/001_initial.sql`).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/002_watch.sql"),
    include_str!("../../migrations/003_schedule.sql"),
    include_str!("../../migrations/004_watch_hash.sql"),
    include_str!("../../migrations/005_campaign.sql"),
    include_str!("../../migrations/006_retention.sql"),
    include_str!("../../migrations/007_queue.sql"),
    include_str!("../../migrations/008_retry.sql"),
    include_str!("../../migrations/009_delivery.sql"),
];
/// The version `schema.sql` creates: the last migration's.
pub const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;

pub type Tx<'a> = rusqlite::Transaction<'a>;

/// A request the store refuses, with what the user is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    NotFound,
    Conflict(String),
    /// The idempotency key was used before with another body.
    KeyReused,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reject::NotFound => f.write_str("not found"),
            Reject::Conflict(m) => f.write_str(m),
            Reject::KeyReused => f.write_str("this Idempotency-Key was used with a different request body"),
        }
    }
}

/// Why a store function did not succeed: the database failed, the request was
/// refused (a [`Reject`], kept whole so the API can answer 404 or 409), or
/// something else went wrong (a stored value that does not parse). A refused
/// write is rolled back like a failed one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Refused(Reject),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Other(anyhow::Error::new(e).context("a stored JSON value does not parse"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
/// Called after the batch's COMMIT with its outcome.
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A queued write: runs inside the batch transaction, says whether it succeeded,
/// and hands back what to tell its caller once the commit is done.
type WriteFn = Box<dyn FnOnce(&Tx) -> (bool, Deliver) + Send>;

#[derive(Clone)]
pub struct Store {
    // Declared before `pool`, so it is dropped first: see `Writer`'s Drop.
    writer: Arc<Writer>,
    pool: r2d2::Pool<SqliteConnectionManager>,
    pub path: PathBuf,
    pub bell: Arc<crate::signals::EventBell>,
}

/// The writer thread and the only way to reach it. Shared by every clone of a
/// Store; the last one to go closes the database.
struct Writer {
    tx: Option<Sender<WriteFn>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    /// The last Store is gone: the writer commits what is queued, checkpoints
    /// the WAL into the database file and closes before this returns. Without
    /// the wait the close ran later on its own thread, so a store reopened at
    /// once (a restart) raced it, and a copy of the file taken then (a backup,
    /// a template) missed what was still in the WAL and read as malformed.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            // A write closure that dropped the last Store would otherwise wait
            // for itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn pragma(conn: &Connection, name: &str, value: &str) -> anyhow::Result<String> {
    conn.execute_batch(&format!("PRAGMA {name} = {value};"))
        .with_context(|| format!("setting PRAGMA {name}"))?;
    let got: String = conn
        .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0))
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })?;
    Ok(got)
}

fn check(conn: &Connection, name: &str, value: &str, want: &str) -> anyhow::Result<()> {
    let got = pragma(conn, name, value)?;
    if !got.eq_ignore_ascii_case(want) {
        bail!("PRAGMA {name} reads back {got:?}, expected {want:?}: this SQLite does not support what batchd needs");
    }
    Ok(())
}

fn open_write(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening database {}", path.display()))?;
    check(&conn, "journal_mode", "WAL", "wal")?;
    check(&conn, "foreign_keys", "ON", "1")?;
    check(&conn, "busy_timeout", "5000", "5000")?;
    // FULL: a commit is on disk when the writer answers, so a part recorded DONE stays DONE.
    check(&conn, "synchronous", "FULL", "2")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        bail!("the database has schema version {version}, newer than this batchd knows ({SCHEMA_VERSION}); run a newer batchd");
    }
    let tx = conn.transaction()?;
    if version == 0 {
        tx.execute_batch(SCHEMA).context("applying schema.sql")?;
    } else {
        for (i, m) in MIGRATIONS.iter().enumerate().skip((version - 1) as usize) {
            tx.execute_batch(m).with_context(|| format!("migration to version {}", i + 2))?;
        }
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `path` and starts the writer.
    /// `readers` sizes the read pool (one per HTTP worker and engine worker avoids waiting on it).
    pub fn open(path: &Path, readers: u32) -> anyhow::Result<Store> {
        let mut conn = open_write(path)?;
        migrate(&mut conn)?;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)
            // A small page cache per reader: there is one reader per HTTP and engine
            // worker, and status queries touch few pages.
            .with_init(|c| c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON; PRAGMA cache_size = -512;"));
        // r2d2's defaults cost a process three threads per pool that outlive it:
        // its idle reaper is a job scheduled every 30 s on a thread pool of its
        // own, and that pool finishes pending jobs before its threads exit, so
        // each dropped Store left three threads (and their stack mappings)
        // behind for up to 30 s. Reopening the store in a loop (the lifecycle
        // test's crashes) ran the process out of memory mappings. Read
        // connections to a local file need no reaping, and one thread that
        // drops pending work with the pool is enough to open them.
        let workers = scheduled_thread_pool::ScheduledThreadPool::builder()
            .num_threads(1)
            .thread_name_pattern("batchd-readers-{}")
            .on_drop_behavior(scheduled_thread_pool::OnPoolDropBehavior::DiscardPendingScheduled)
            .build();
        let pool = r2d2::Pool::builder()
            .max_size(readers.max(2))
            .idle_timeout(None)
            .max_lifetime(None)
            .thread_pool(Arc::new(workers))
            .build(manager)
            .context("opening the read pool")?;
        let (tx, rx) = mpsc::channel::<WriteFn>();
        // The writer exits when the last Store clone (and so the last sender) is dropped.
        let thread = std::thread::Builder::new()
            .name("batchd-writer".into())
            .spawn(move || writer_loop(conn, rx))?;
        Ok(Store {
            writer: Arc::new(Writer {
                tx: Some(tx),
                thread: Some(thread),
            }),
            pool,
            path: path.to_owned(),
            bell: Arc::new(crate::signals::EventBell::default()),
        })
    }

    /// Runs `f` in the writer's transaction and returns its result once committed.
    pub fn write<R: Send + 'static>(&self, f: impl FnOnce(&Tx) -> StoreResult<R> + Send + 'static) -> StoreResult<R> {
        let v = self.write_quiet(f)?;
        self.bell.ring();
        Ok(v)
    }

    /// Like [`Store::write`] without ringing the bell: for writes that may change
    /// nothing (a claim that finds no task), so waiters are not woken for nothing.
    /// The caller rings when something did change.
    pub fn write_quiet<R: Send + 'static>(&self, f: impl FnOnce(&Tx) -> StoreResult<R> + Send + 'static) -> StoreResult<R> {
        let (reply_tx, reply_rx) = mpsc::sync_channel::<Result<StoreResult<R>, String>>(1);
        let job: WriteFn = Box::new(move |tx| {
            let r = f(tx);
            let ok = r.is_ok();
            let deliver: Deliver = Box::new(move |commit| {
                let _ = reply_tx.send(commit.map(|()| r));
            });
            (ok, deliver)
        });
        let tx = self.writer.tx.as_ref().expect("the sender lives as long as any Store");
        tx.send(job).map_err(|_| anyhow::anyhow!("the database writer has stopped"))?;
        let r = reply_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the database writer stopped before committing"))?;
        r.map_err(|e| anyhow::anyhow!("database commit failed: {e}"))?
    }

    /// Runs `f` on a pooled read-only connection.
    pub fn read<R>(&self, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        let conn = self.pool.get().context("taking a read connection")?;
        f(&conn)
    }
}

/// Takes the first queued write, then whatever else is queued (up to 256), and
/// commits them in one transaction; each runs in its own savepoint so one failing
/// write does not undo the others. Replies are held until the commit is durable.
fn writer_loop(mut conn: Connection, rx: Receiver<WriteFn>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!("database: cannot begin a transaction: {e}");
                // Run nothing; tell every caller.
                drop(batch);
                continue;
            }
        };
        let mut delivers = Vec::with_capacity(batch.len());
        for f in batch {
            let _ = tx.execute_batch("SAVEPOINT w");
            let (ok, deliver) = f(&tx);
            let _ = tx.execute_batch(if ok { "RELEASE w" } else { "ROLLBACK TO w; RELEASE w" });
            delivers.push(deliver);
        }
        let outcome = tx.commit().map_err(|e| e.to_string());
        if let Err(e) = &outcome {
            tracing::error!("database: commit failed: {e}");
        }
        for d in delivers {
            d(outcome.clone());
        }
    }
    // Everything committed so far moves into the database file and the WAL is
    // emptied, so the file alone is the whole database (the read connections
    // are still open, so SQLite would not do this at close).
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)) {
        Ok(0) => {}
        Ok(_) => tracing::warn!("database: a reader was busy at close; the WAL is applied at the next start"),
        Err(e) => tracing::warn!("database: checkpoint at close failed: {e}; the WAL is applied at the next start"),
    }
}
