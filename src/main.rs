use clap::Parser;

fn main() {
    let cli = batchd::Cli::parse();
    batchd::logging::init(&cli);
    if let Err(err) = batchd::run(cli) {
        eprintln!("batchd: {err:#}");
        std::process::exit(batchd::exit_code(&err));
    }
}
