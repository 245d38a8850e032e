//! The command line: clap's definitions (`args`, flags in help groups: source, selection and mapping,
//! target, run, output) and what each command becomes (`modes`: a scan plan, or a run against a target
//! in one mode: sync, dry run, verify, plan). Nothing here sets state: `main.rs` installs the log
//! writer from [`Cli::log_settings`] and starts the runtime, then runs the command.

mod args;
mod modes;

use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::report::log::LogFormat;
use crate::report::shell::Shell;
use crate::run::Outcome;
use args::{ExportArgs, PlanArgs, ScanArgs, StatusArgs, SyncArgs, VerifyArgs};

#[derive(Debug, Parser)]
#[command(name = "rehydrate", version, about = "Rebuild a registry's contents from its storage, without the catalog")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every repository, tag and digest found in a registry's storage, as an inventory.
    Scan(ScanArgs),
    /// Copy every tag found in a registry's storage into a target registry (Harbor or any OCI registry).
    Sync(SyncArgs),
    /// Check that every tag found in the storage resolves to the same digest on the target.
    Verify(VerifyArgs),
    /// Print what a sync's journal records as finished.
    Status(StatusArgs),
    /// Plan a sync without writing anything: per target project, what it would hold (repositories, tags,
    /// bytes as Harbor's quota counts them) and whether it fits; names Harbor would refuse, collisions.
    Plan(PlanArgs),
    /// Write every tag a Harbor holds (repository, tag, digest) as JSON lines: Harbor 2.15 and later keep
    /// tag names only in their database, so a rebuild after a lost database (`sync --in-place --untagged
    /// --tags-from FILE`) needs them kept. Run it on a schedule.
    ExportTags(ExportArgs),
}

impl Cli {
    /// How messages are to be written: the format, and whether debug lines are on.
    pub fn log_settings(&self) -> (LogFormat, bool) {
        let output = match &self.command {
            Command::Scan(args) => &args.output,
            Command::Sync(args) => &args.run.output,
            Command::Verify(args) => &args.run.output,
            Command::Plan(args) => &args.run.output,
            Command::Status(_) | Command::ExportTags(_) => return (LogFormat::Text, false),
        };
        (output.log_format, output.verbose)
    }

    /// Runs the command; its lines go to `shell`.
    pub fn run(self, shell: Arc<Shell>) -> anyhow::Result<Outcome> {
        match self.command {
            Command::Scan(args) => crate::run::scan::run_scan(modes::scan(args, shell)?),
            Command::Sync(args) => crate::sync::run_sync(modes::sync(args, shell)?),
            Command::Verify(args) => crate::sync::run_sync(modes::verify(args, shell)?),
            Command::Plan(args) => crate::sync::run_sync(modes::plan(args, shell)?),
            Command::Status(args) => modes::status(args),
            Command::ExportTags(args) => crate::run::export::run_export_tags(modes::export(args)?),
        }
    }
}
