//! systemd notifications (`sd_notify(3)`): READY once the API listens, a
//! one-line STATUS, WATCHDOG pings, STOPPING on shutdown. The protocol is one
//! datagram to the socket named by `NOTIFY_SOCKET`, so a few lines of std
//! replace a dependency. Without `NOTIFY_SOCKET` (not under systemd) every call
//! does nothing.
//!
//! The watchdog is pinged by the engine's supervisor loop only after a round
//! trip through the database writer, so a wedged writer or engine stops the
//! pings and systemd restarts the daemon.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn socket_addr() -> Option<std::os::unix::net::SocketAddr> {
    let path = std::env::var_os("NOTIFY_SOCKET")?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name).ok()
    } else {
        std::os::unix::net::SocketAddr::from_pathname(std::path::Path::new(&path)).ok()
    }
}

/// True when systemd is listening (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Sends `state` (newline-separated `KEY=VALUE` lines). Errors are logged once
/// at debug level: a missing notify socket must never stop the daemon.
pub fn notify(state: &str) {
    let Some(addr) = socket_addr() else { return };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::debug!("sd_notify {state:?}: {e}");
    }
}

/// How often to ping: half of `WATCHDOG_USEC` when the watchdog is on for this
/// process (`WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
