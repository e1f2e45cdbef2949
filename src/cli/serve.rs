//! `batchd serve` and `batchd check-config`.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::Config;

#[derive(Debug, Args, Clone)]
pub struct DaemonArgs {
    /// Data directory (database, token, parts); overrides the config file.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Config file (TOML); without one the embedded defaults are used.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

impl DaemonArgs {
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Address to listen on, e.g. 127.0.0.1:8787 (overrides the config file).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = args.daemon.load()?;
    if let Some(l) = args.listen {
        config.http.listen = l;
    }
    let listener = TcpListener::bind(config.http.listen).with_context(|| {
        format!(
            "listening on {}; is another batchd running? (--listen picks another address)",
            config.http.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let d = config.data_dir.display();
    eprintln!("batchd {} serving on http://{addr}", env!("CARGO_PKG_VERSION"));
    eprintln!("  data dir       {d} (database batchd.db, parts in {d}/parts/<job>/)");
    eprintln!("  token          {d}/token (send it as Authorization: Bearer <token>)");
    eprintln!(
        "  allowed roots  {}",
        config
            .allowed_roots()
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!("  try            batchd submit SOURCE --data-dir {d} --wait    (SOURCE below an allowed root)");
    crate::signals::install_interrupt_handler();
    crate::daemon::run(listener, config, &crate::signals::INTERRUPTED)
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The file to check.
    #[arg(long)]
    pub config: PathBuf,
}

pub fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config).map_err(|e| crate::Error::InvalidArgument(format!("{e:#}")))?;
    println!("{}: ok", args.config.display());
    println!("{}", toml::to_string(&config).context("printing the effective config")?);
    Ok(())
}
