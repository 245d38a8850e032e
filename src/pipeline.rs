//! Running a plan: the scan streams items through a bounded channel into whoever consumes them, and the
//! run ends with a summary on standard error and an outcome for the exit code.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use tokio::sync::mpsc::error::TryRecvError;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::inventory::{human_duration, Counts, Format, InventoryWriter};
use crate::scan::{self, RequestCounts, ScanItem, ScanOptions};
use crate::storage::Source;

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every item was handled.
    Complete,
    /// The run finished, but some items had errors (each reported, and counted in the summary).
    Partial,
}

/// What `rehydrate scan` does.
pub struct ScanPlan {
    pub source: Source,
    pub options: ScanOptions,
    /// Where the inventory goes; standard output when `None`.
    pub output: Option<PathBuf>,
    pub format: Format,
    /// Print only the summary, not each problem.
    pub quiet: bool,
}

/// How many problems are printed on standard error one by one; past that, they are only in the
/// inventory and the summary, so that a badly broken registry does not drown the terminal.
const PROBLEMS_PRINTED: u64 = 100;

/// Scans the source and writes the inventory as items arrive.
pub fn run_scan(plan: ScanPlan) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let out: Box<dyn Write> = match &plan.output {
        Some(path) => Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(io::stdout().lock()),
    };
    let mut writer = InventoryWriter::new(BufWriter::with_capacity(64 * 1024, out), plan.format)?;
    let requests = Arc::new(RequestCounts::default());
    let (mut items, scan_thread) = scan::start(&plan.source, plan.options.clone(), requests.clone());

    let mut counts = Counts::default();
    let mut problems_printed = 0;
    loop {
        // Flush whenever the scan has nothing ready, so that records stream out as they are found
        // without a system call per record.
        let item = match items.try_recv() {
            Ok(item) => item,
            Err(TryRecvError::Empty) => {
                writer.flush().context("writing the inventory")?;
                match items.blocking_recv() {
                    Some(item) => item,
                    None => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        counts.count(&item);
        if let ScanItem::Error(problem) | ScanItem::Warning(problem) = &item {
            let level = if matches!(item, ScanItem::Error(_)) { "error" } else { "warning" };
            if !plan.quiet && problems_printed < PROBLEMS_PRINTED {
                eprintln!("{level}: {problem}");
                problems_printed += 1;
            }
        }
        writer.write(&item).context("writing the inventory")?;
    }
    writer.flush().context("writing the inventory")?;
    drop(items);
    scan_thread.join().expect("the scan thread panicked").context("scanning the source")?;

    print_summary(&counts, &requests, started, problems_printed);
    Ok(if counts.errors > 0 { Outcome::Partial } else { Outcome::Complete })
}

fn print_summary(counts: &Counts, requests: &RequestCounts, started: Instant, problems_printed: u64) {
    let elapsed = human_duration(started.elapsed());
    eprintln!(
        "scan finished in {elapsed}: {} repositories, {} tags, {} untagged manifests, {} errors, {} warnings",
        counts.repositories, counts.tags, counts.untagged, counts.errors, counts.warnings
    );
    eprintln!(
        "storage requests: {} listings, {} link reads; {} entries seen",
        RequestCounts::get(&requests.lists),
        RequestCounts::get(&requests.reads),
        RequestCounts::get(&requests.entries)
    );
    let problems = counts.errors + counts.warnings;
    if problems > problems_printed && problems_printed > 0 {
        eprintln!("({} more problems are in the inventory only)", problems - problems_printed);
    }
    if counts.errors > 0 {
        eprintln!("the scan is PARTIAL: {} items could not be read (each is an error record in the inventory)", counts.errors);
    }
}
