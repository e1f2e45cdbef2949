use clap::Parser;

fn main() {
    let cli = batchd::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATCHD_LOG").unwrap_or_else(|_| batchd::cli::default_log_level(&cli).into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = batchd::run(cli) {
        eprintln!("batchd: {err:#}");
        std::process::exit(batchd::exit_code(&err));
    }
}
