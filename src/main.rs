use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use rehydrate::cli::Cli;
use rehydrate::run::Outcome;

/// Exit codes, also listed in the README and `docs/operations.md`.
const EXIT_FATAL: u8 = 1;
const EXIT_PARTIAL: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|error| exit_with_usage(error));
    keep_large_buffers_off_the_heap();
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

/// The copy's buffers (half-MiB pieces of blobs, ranges read ahead) are allocated and freed by the
/// thousand from many threads. glibc's allocator raises its mmap threshold as they are freed and then
/// keeps them in per-thread heaps it seldom gives back: a sync from S3 held about 10 MiB more than its
/// budget. A fixed threshold below a piece's size gives each one back to the system when it is freed.
fn keep_large_buffers_off_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning value of the allocator; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
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
