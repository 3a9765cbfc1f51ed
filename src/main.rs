//! The `whitebeat` command line: clap reads the flags and environment variables
//! (`cli::args`), the chosen subcommand runs (`cli::run`), and any failure becomes one line
//! on stderr and exit code 1.

use clap::Parser;
use std::process::ExitCode;
use whitebeat::cli::{args::Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    run::init_logging(cli.global.log_level);
    match run::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
