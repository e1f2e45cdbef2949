//! The `batchd` binary: parses the command line, sets up logging, runs the
//! command, and prints an error once as `batchd: {err:#}` with its documented
//! exit code (see `batchd::exit`).

use clap::Parser;

fn main() {
    let cli = batchd::Cli::parse();
    batchd::logging::init(&cli);
    if let Err(err) = batchd::run(cli) {
        eprintln!("batchd: {err:#}");
        std::process::exit(batchd::exit_code(&err));
    }
}
