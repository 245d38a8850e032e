use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use rehydrate::cli::Cli;
use rehydrate::run::Outcome;

/// Exit codes, also listed in the README and `docs/operations.md`.
const EXIT_FATAL: u8 = 1;
const EXIT_PARTIAL: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|error| exit_with_usage(error));
    let (format, verbose) = cli.log_settings();
    let shell = rehydrate::report::log::init(format, verbose);
    // The one runtime of the process: every command's async work runs on it.
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            rehydrate::report::log::error(format!("starting the async runtime: {error}"));
            return ExitCode::from(EXIT_FATAL);
        }
    };
    let _entered = runtime.enter();
    match cli.run(shell) {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        Ok(Outcome::Partial) => ExitCode::from(EXIT_PARTIAL),
        Err(error) => {
            rehydrate::report::log::error(rehydrate::http::chain_in_words(error.as_ref()));
            rehydrate::report::log::causes(error.as_ref());
            ExitCode::from(EXIT_FATAL)
        }
    }
}

/// A wrong value on the command line: clap's message, then the command's usage line (clap leaves it
/// out for values), exit code 2. Help, version and the errors that carry their usage go as clap prints
/// them.
fn exit_with_usage(error: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if !matches!(error.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        error.exit();
    }
    let mut command = Cli::command();
    command.build();
    let verb = std::env::args().nth(1).unwrap_or_default();
    let usage = match command.find_subcommand_mut(&verb) {
        Some(subcommand) => subcommand.render_usage(),
        None => command.render_usage(),
    };
    let rendered = error.render().to_string();
    let message = rendered.split("\n\n").next().unwrap_or(&rendered);
    eprintln!("{message}\n\n{usage}\n\nFor more information, try '--help'.");
    std::process::exit(2);
}
