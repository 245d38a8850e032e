//! The command line: clap definitions, turned into the plans that `pipeline` runs.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::inventory::Format;
use crate::pipeline::{self, Outcome, ScanPlan};
use crate::scan::{DiscoveryMode, ScanOptions};
use crate::storage::object::ObjectOptions;
use crate::storage::Source;

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
}

#[derive(Debug, Args)]
struct ScanArgs {
    /// The storage root, the place that holds docker/registry/v2: a path or file:///path, s3://bucket/root,
    /// gs://bucket/root or az://container/root.
    source: String,
    /// Write the inventory here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// The inventory's format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Also list manifest revisions that no tag points at (index children, referrers, untagged images).
    #[arg(long)]
    untagged: bool,
    /// How many listings run at once [default: 4 per core on a filesystem, 32 on an object store].
    #[arg(long, value_name = "N")]
    list_concurrency: Option<usize>,
    /// Object store endpoint (MinIO, Ceph, an emulator), e.g. http://127.0.0.1:9000 [env: AWS_ENDPOINT_URL,
    /// STORAGE_EMULATOR_HOST or AZURE_STORAGE_ENDPOINT, by cloud].
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Send no credentials to the object store (public buckets).
    #[arg(long)]
    anonymous: bool,
    /// Keys per listing page on an object store.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    list_page_size: usize,
    /// How repositories are found in an object store: `auto` rolls keys up at `/_` where the store allows
    /// it; `walk` lists folder by folder (for stores that misbehave with string delimiters).
    #[arg(long, value_enum, default_value_t = DiscoveryMode::Auto)]
    discovery: DiscoveryMode,
    /// Print only the summary, not each problem as it is found.
    #[arg(long, short)]
    quiet: bool,
}

/// Folder reads are short system calls that mostly wait on the disk (or a network filesystem): a few per
/// core keep the disk queue full without thrashing. Object store listings wait on the network: many at
/// once, still far below any store's request-rate limits.
fn default_list_concurrency(source: &Source) -> usize {
    match source {
        Source::Filesystem(_) => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) * 4,
        Source::Object { .. } => 32,
    }
}

impl Cli {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self.command {
            Command::Scan(args) => args.run(),
        }
    }
}

impl ScanArgs {
    fn run(self) -> anyhow::Result<Outcome> {
        let source = Source::parse(&self.source).with_context(|| format!("source {:?}", self.source))?;
        let list_concurrency = match self.list_concurrency {
            Some(0) => anyhow::bail!("--list-concurrency must be at least 1"),
            Some(n) => n,
            None => default_list_concurrency(&source),
        };
        let object = ObjectOptions { endpoint: self.endpoint, anonymous: self.anonymous };
        let plan = ScanPlan {
            source,
            options: ScanOptions {
                list_concurrency,
                untagged: self.untagged,
                object,
                page_size: self.list_page_size.max(1),
                discovery: self.discovery,
            },
            output: self.output,
            format: self.format,
            quiet: self.quiet,
        };
        pipeline::run_scan(plan)
    }
}
