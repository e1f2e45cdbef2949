//! The daemon: owns the data directory (an exclusive lock, so two daemons never
//! share one), the token, the store, the engine and the HTTP server, and shuts
//! them down in order. It takes its listener, config and shutdown flag as
//! arguments so tests can run it in-process on port 0 with a temp data dir.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::Config;
use crate::engine::Engine;
use crate::http::Api;
use crate::store::Store;
use crate::triggers::schedule::{Clock, Scheduler};

/// How long running tasks get to stop at an entry boundary on shutdown.
const STOP_DEADLINE: Duration = Duration::from_secs(8);

pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("token")
}

pub fn address_path(data_dir: &Path) -> PathBuf {
    data_dir.join("daemon.json")
}

/// Reads the token, creating a random one (mode 0600) on first start.
pub fn ensure_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = token_path(data_dir);
    if let Ok(t) = fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if t.len() >= 16 {
            return Ok(t);
        }
    }
    let mut raw = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .context("reading /dev/urandom for a token")?;
    let token = crate::fsx::hex(&raw);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

/// Takes the data directory's lock for the life of the daemon.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<File> {
    let path = data_dir.join("batchd.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "another batchd is already running with data dir {}; stop it first or use another --data-dir",
            data_dir.display()
        ),
        Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// Responses go out as headers then body; with Nagle on, a keep-alive client's
/// delayed ACK holds the body back ~40 ms. Linux copies TCP_NODELAY from the
/// listening socket to every accepted one, so setting it here covers them all.
fn set_nodelay(listener: &TcpListener) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a correctly sized int option.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setting TCP_NODELAY on the listener");
    }
    Ok(())
}

/// Runs the daemon until `shutdown` becomes true.
pub fn run(listener: TcpListener, config: Config, shutdown: &AtomicBool) -> anyhow::Result<()> {
    run_with(listener, config, shutdown, Clock::System)
}

/// [`run`], with schedules reading the time from `clock` (tests move it by hand).
pub fn run_with(listener: TcpListener, mut config: Config, shutdown: &AtomicBool, clock: Clock) -> anyhow::Result<()> {
    // glibc gives each thread its own malloc arena (up to 8 per core); two are
    // plenty here and keep an idle edge daemon's memory small.
    // SAFETY: mallopt only tunes the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    // Paths stored in the database must not depend on the directory we started in.
    fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    config.data_dir = fs::canonicalize(&config.data_dir).with_context(|| format!("resolving data dir {}", config.data_dir.display()))?;
    let config = Arc::new(config);
    let data_dir = &config.data_dir;
    fs::create_dir_all(data_dir.join("parts")).with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let _lock = lock_data_dir(data_dir)?;
    let token = ensure_token(data_dir)?;
    let store = Store::open(
        &data_dir.join("batchd.db"),
        config.http.workers as u32 + config.engine_workers() as u32,
    )?;
    // Secrets are checked before anything starts: a bad one stops the daemon here.
    let dispatcher = crate::delivery::webhooks::Dispatcher::new(store.clone(), Arc::clone(&config))?;
    let engine = Engine::start(store.clone(), Arc::clone(&config))?;
    let watcher = crate::triggers::watch::Watcher::new(store.clone(), Arc::clone(&config))?;
    let scheduler = Scheduler::new(store.clone(), Arc::clone(&config), clock.clone())?;
    let watch_stop = Arc::new(crate::signals::Stop::default());
    // The watcher has a stop of its own: filesystem events wake it through
    // it, and must not wake the other loops.
    let watcher_stop = Arc::new(crate::signals::Stop::default());
    let trigger_threads = {
        let (stop, stop2, stop3, stop4) = (
            Arc::clone(&watcher_stop),
            Arc::clone(&watch_stop),
            Arc::clone(&watch_stop),
            Arc::clone(&watch_stop),
        );
        let (retention_store, retention) = (store.clone(), config.retention.clone());
        let runner = crate::campaign::Runner::new(store.clone(), Arc::clone(&config));
        let stop5 = Arc::clone(&watch_stop);
        [
            std::thread::Builder::new()
                .name("batchd-watch".into())
                .spawn(move || watcher.run(stop))?,
            std::thread::Builder::new()
                .name("batchd-schedule".into())
                .spawn(move || scheduler.run(&stop2))?,
            std::thread::Builder::new()
                .name("batchd-campaign".into())
                .spawn(move || runner.run(&stop3))?,
            std::thread::Builder::new()
                .name("batchd-retention".into())
                .spawn(move || crate::store::retention::run(retention_store, retention.keep_days, retention.delete_parts, &stop4))?,
            std::thread::Builder::new()
                .name("batchd-webhooks".into())
                .spawn(move || dispatcher.run(&stop5))?,
        ]
    };
    let addr = listener.local_addr()?;
    set_nodelay(&listener)?;
    let server = Arc::new(tiny_http::Server::from_listener(listener, None).map_err(|e| anyhow::anyhow!("starting the HTTP server: {e}"))?);
    let api = Arc::new(Api::new(
        store.clone(),
        Arc::clone(&engine.engine),
        Arc::clone(&config),
        token,
        clock,
    ));
    let http_threads = api.serve(&server);
    // Written under a temp name and renamed: clients never read half a file.
    let address = address_path(data_dir);
    let tmp = address.with_extension("json.tmp");
    fs::write(
        &tmp,
        serde_json::json!({"listen": addr.to_string(), "pid": std::process::id()}).to_string(),
    )
    .and_then(|()| fs::rename(&tmp, &address))
    .with_context(|| format!("writing {}", address.display()))?;
    tracing::info!(%addr, data_dir = %data_dir.display(), "batchd serving");
    crate::sdnotify::notify(&format!("READY=1\nSTATUS=serving on {addr}"));

    while !shutdown.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("shutting down: no new work; running tasks stop at the next entry");
    crate::sdnotify::notify("STOPPING=1\nSTATUS=stopping: running tasks stop at the next entry");
    for _ in &http_threads {
        server.unblock();
    }
    watch_stop.set();
    watcher_stop.set();
    store.bell.ring(); // wakes the campaign runner
    for t in trigger_threads {
        let _ = t.join();
    }
    engine.shutdown(STOP_DEADLINE);
    for t in http_threads {
        let _ = t.join();
    }
    let _ = fs::remove_file(address_path(data_dir));
    Ok(())
}
