//! Log output. The daemon logs to stdout (what journald and container runtimes
//! collect); every other command logs to stderr so its stdout stays parseable.
//! Under journald (`JOURNAL_STREAM` names our stdout) lines carry neither a
//! timestamp nor colour, since the journal adds its own; `BATCHD_LOG_FORMAT=json`
//! gives one JSON object per line for log shippers.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

/// True when stdout is the journal stream systemd handed us (not just any
/// inherited `JOURNAL_STREAM` from a shell started under systemd).
fn stdout_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = v.split_once(':') else { return false };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/1") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Sets up tracing for `cli`; `BATCHD_LOG` (an EnvFilter) overrides the level,
/// `BATCHD_LOG_FORMAT` = `text` | `json` the format.
pub fn init(cli: &Cli) {
    let daemon = matches!(cli.command, Command::Serve(_));
    let filter = EnvFilter::try_from_env("BATCHD_LOG").unwrap_or_else(|_| EnvFilter::new(if daemon { "info" } else { "warn" }));
    let json = std::env::var("BATCHD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let journal = daemon && stdout_is_journal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (json, daemon, journal) {
        (true, true, _) => builder.json().with_writer(std::io::stdout).init(),
        (true, false, _) => builder.json().with_writer(std::io::stderr).init(),
        (false, true, true) => builder.without_time().with_ansi(false).with_writer(std::io::stdout).init(),
        (false, true, false) => builder
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .init(),
        (false, false, _) => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
}
