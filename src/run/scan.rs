//! `rehydrate scan`: the scan's items are written to the inventory as they arrive, and the run ends
//! with a summary.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::Receiver;

use super::{log_storage_requests, log_storage_window, start_reporting, Outcome, ProblemPrinter, Reporting};
use crate::report::units::human_duration;
use crate::run::inventory::{Counts, Format, InventoryWriter};
use crate::run::live::Live;
use crate::scan::{self, RequestCounts, ScanItem, ScanOptions};
use crate::storage::Source;

/// What `rehydrate scan` does.
pub struct ScanPlan {
    pub source: Source,
    pub options: ScanOptions,
    /// Where the inventory goes; standard output when `None`.
    pub output: Option<PathBuf>,
    pub format: Format,
    pub reporting: Reporting,
}

/// Scans the source and writes the inventory as items arrive.
pub fn run_scan(plan: ScanPlan) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let out: Box<dyn Write> = match &plan.output {
        Some(path) => Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(io::stdout().lock()),
    };
    let mut writer = InventoryWriter::new(BufWriter::with_capacity(64 * 1024, out), plan.format)?;
    let requests = Arc::new(RequestCounts::default());
    let live = Arc::new(Live::new("scan", started, requests.clone(), Arc::default(), plan.options.object.http.clone()));
    let reporter = start_reporting(&live, &plan.reporting)?;
    let (mut items, scan_thread) = scan::start(&plan.source, plan.options.clone(), requests.clone());

    let mut counts = Counts::default();
    let mut printer = ProblemPrinter::new(plan.reporting.quiet);
    while let Some(item) = next_flushing(&mut items, &mut writer)? {
        counts.count(&item);
        counts.publish(&live.run);
        match &item {
            ScanItem::Error(problem) => printer.error(problem),
            ScanItem::Warning(problem) => printer.warning(problem),
            _ => {}
        }
        writer.write(&item).context("writing the inventory")?;
    }
    writer.flush().context("writing the inventory")?;
    drop(items);
    scan_thread.join().expect("the scan thread panicked").context("scanning the source")?;
    live.mark_listing_finished();
    reporter.stop();

    print_summary(&counts, &requests, &plan.options.object.http, started, printer.printed);
    Ok(if counts.errors > 0 { Outcome::Partial } else { Outcome::Complete })
}

/// The next item; the inventory is flushed whenever the scan has nothing ready, so that records stream
/// out as they are found without a system call per record.
fn next_flushing<W: Write>(
    items: &mut Receiver<ScanItem>,
    writer: &mut InventoryWriter<W>,
) -> anyhow::Result<Option<ScanItem>> {
    match items.try_recv() {
        Ok(item) => Ok(Some(item)),
        Err(TryRecvError::Empty) => {
            writer.flush().context("writing the inventory")?;
            Ok(items.blocking_recv())
        }
        Err(TryRecvError::Disconnected) => Ok(None),
    }
}

fn print_summary(
    counts: &Counts,
    requests: &RequestCounts,
    http: &crate::http::Context,
    started: Instant,
    problems_printed: u64,
) {
    let elapsed = human_duration(started.elapsed());
    crate::report::log::info_with(
        format!(
            "scan finished in {elapsed}: {} repositories, {} tags, {} untagged manifests, {} errors, {} warnings",
            counts.repositories, counts.tags, counts.untagged, counts.errors, counts.warnings
        ),
        &[
            ("summary", true.into()),
            ("repositories", counts.repositories.into()),
            ("tags", counts.tags.into()),
            ("untagged", counts.untagged.into()),
            ("errors", counts.errors.into()),
            ("warnings", counts.warnings.into()),
        ],
    );
    log_storage_requests(requests);
    log_storage_window(http);
    log_cost_and_reasons(counts, requests);
    let problems = counts.errors + counts.warnings;
    if problems > problems_printed && problems_printed > 0 {
        crate::report::log::info(format!("({} more problems are in the inventory only)", problems - problems_printed));
    }
    if counts.errors > 0 {
        crate::report::log::info(format!(
            "the scan is PARTIAL: {} items could not be read (each is an error record in the inventory)",
            counts.errors
        ));
    }
}

/// The scan's cost per tag, and the tags it did not list because the registry would not serve them (or,
/// with `--deep`, a client could not pull them), counted by reason.
fn log_cost_and_reasons(counts: &Counts, requests: &RequestCounts) {
    use std::sync::atomic::Ordering::Relaxed;
    let checked = counts.tags + counts.untagged + counts.unpullable.values().sum::<u64>();
    let requests_made = requests.lists.load(Relaxed) + requests.reads.load(Relaxed);
    let per_tag = requests_made as f64 / checked.max(1) as f64;
    let per_repository = requests_made as f64 / counts.repositories.max(1) as f64;
    crate::report::log::info_with(
        format!("cost: {per_tag:.2} storage requests per tag, {per_repository:.2} per repository"),
        &[("requests_per_tag", per_tag.into()), ("requests_per_repository", per_repository.into())],
    );
    if counts.unpullable.is_empty() {
        return;
    }
    let words: Vec<String> = counts.unpullable.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    let fields: serde_json::Map<String, serde_json::Value> =
        counts.unpullable.iter().map(|(reason, n)| (reason.to_string(), (*n).into())).collect();
    crate::report::log::info_with(
        format!(
            "not listed as tags (the registry would not serve them, or they cannot be pulled): {}",
            words.join(", ")
        ),
        &[("unpullable", serde_json::Value::Object(fields))],
    );
}
