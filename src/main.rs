//! `nephrod` binary: parse arguments, set up logging, dispatch, map errors to exit codes.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = nephrod::cli::Cli::parse();
    nephrod::cli::init_logging(cli.verbose);
    match nephrod::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("nephrod: error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
