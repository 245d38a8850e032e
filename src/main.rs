use std::process::ExitCode;

use clap::Parser;

use rehydrate::cli::Cli;
use rehydrate::run::Outcome;

/// Exit codes, also listed in the README and `docs/operations.md`.
const EXIT_FATAL: u8 = 1;
const EXIT_PARTIAL: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.run() {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        Ok(Outcome::Partial) => ExitCode::from(EXIT_PARTIAL),
        Err(error) => {
            rehydrate::log::error(format!("{error:#}"));
            ExitCode::from(EXIT_FATAL)
        }
    }
}
