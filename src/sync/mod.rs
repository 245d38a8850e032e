//! `rehydrate sync` and `verify`: the scan's items flow one way through small steps, one file each:
//!
//! scan items in -> `select` (filters, name mapping) -> `skip` (the journal) -> `execute` (copy or verify,
//! tasks under the push limit) -> `record` (journal, counters, problems) -> `summary`; and, at the end of
//! each repository's listing and of the whole pass, `gone` (tags the source no longer has).
//!
//! `flow` is that chain; what consumes the selected tags is a `Consumer`: the copy tasks (`execute`) or
//! the dry run (`dry_run`), so a dry run is another reader of the same stream, not a branch of the loop.

mod dry_run;
mod execute;
mod gone;
mod overlay;
mod plan;
mod record;
mod select;
mod skip;
mod stops;
mod summary;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc::Receiver;
use url::Url;

use crate::copy::Copier;
use crate::journal::{Journal, RunStart};
use crate::registry::control::ControlPlane;
use crate::registry::credentials::Credentials;
pub use crate::registry::target::Target;
use crate::run::live::{get, Live};
use crate::run::{start_reporting, Outcome, Reporting};
use crate::scan::{self, FinishedRepositories, KnownTags, RequestCounts, ScanItem, ScanOptions};
use crate::storage::{BlobStore, Source};
pub use plan::PlanFormat;
use record::{JournalRun, Record};
pub use select::{Found, Planned, Selected, Selection};

/// What `rehydrate sync` or `verify` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Copy every selected tag.
    Sync,
    /// Check that every selected tag resolves to the same digest on the target.
    Verify,
}

/// What a run against a target does with the tags it selects.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Copy every selected tag.
    Sync(Copying),
    /// Say what that sync would create and push; push nothing.
    DryRun(Copying),
    /// Check that every selected tag resolves to the same digest on the target.
    Verify,
    /// Count what a sync would move, per target project, and whether it fits (`rehydrate plan`).
    Plan(PlanFormat),
}

impl Mode {
    /// Copy or check, as the counters and the summary tell it.
    fn kind(&self) -> SyncMode {
        match self {
            Mode::Verify => SyncMode::Verify,
            _ => SyncMode::Sync,
        }
    }

    /// How this run copies (a verify or a plan copies nothing: the defaults, never used to write).
    fn copying(&self) -> Copying {
        match self {
            Mode::Sync(copying) | Mode::DryRun(copying) => copying.clone(),
            Mode::Verify | Mode::Plan(_) => Copying::default(),
        }
    }
}

/// How a sync copies.
#[derive(Debug, Clone)]
pub struct Copying {
    /// Replace target tags that point at another digest.
    pub override_tags: bool,
    /// Blobs above this size go in PATCHes of this size.
    pub chunk_size: u64,
    /// Blob bodies in flight at once: the copy's memory budget.
    pub upload_concurrency: usize,
    /// The target serves the source's own storage (disaster recovery): manifests first, blobs on demand.
    pub in_place: bool,
    /// Where finished tags are recorded (and found again after a crash); `None`: no journal.
    pub journal: Option<PathBuf>,
    /// Tags to give back to untagged manifests (`--tags-from`, an export of Harbor's tags).
    pub tags_from: Option<PathBuf>,
    /// Delete from the target the tags gone from the source (only those rehydrate pushed, still at the
    /// digest it pushed).
    pub delete: bool,
}

impl Default for Copying {
    fn default() -> Copying {
        Copying {
            override_tags: false,
            chunk_size: crate::copy::DEFAULT_CHUNK_SIZE,
            upload_concurrency: crate::copy::DEFAULT_UPLOAD_CONCURRENCY,
            in_place: false,
            journal: None,
            tags_from: None,
            delete: false,
        }
    }
}

/// A run against a target: where from, what, where to, and what to do.
pub struct SyncPlan {
    pub mode: Mode,
    pub source: Source,
    pub options: ScanOptions,
    pub target: Url,
    pub credentials: Option<Credentials>,
    /// Extra CA certificates (PEM) to trust for the target.
    pub ca_cert: Option<PathBuf>,
    pub selection: Selection,
    /// Also take every manifest no tag points at, by digest.
    pub untagged: bool,
    /// Tags handled at once (the target's window ceiling).
    pub push_concurrency: usize,
    pub reporting: Reporting,
}

/// What consumes the selected tags.
trait Consumer {
    /// Records what finished since the last call, without waiting.
    fn collect(&mut self, _record: &mut Record) {}
    /// Takes one selected tag (and may wait for room).
    async fn take(&mut self, planned: Planned, record: &mut Record);
    /// Takes a tag gone from the source; by default it is reported and kept.
    async fn gone(&mut self, gone: gone::GoneTag, record: &mut Record) {
        record.gone_kept(&gone);
    }
    /// Waits for everything taken, and records it; the consumer's own verdict on the run.
    async fn finish(self, record: &mut Record) -> Outcome;
}

/// Runs `plan` on the process's runtime: copies, dry-runs, verifies or plans every selected tag as the
/// scan finds it.
pub fn run_sync(plan: SyncPlan) -> anyhow::Result<Outcome> {
    tokio::runtime::Handle::current().block_on(sync(plan))
}

async fn sync(plan: SyncPlan) -> anyhow::Result<Outcome> {
    let copying = plan.mode.copying();
    let started = Instant::now();
    let target = connect(&plan).await?;
    let blobs = BlobStore::connect(&plan.source, &plan.options.object).await.context("opening the source storage")?;
    let journal = open_journal(&plan)?;
    let copier = Copier::new(
        Arc::new(blobs),
        target.registry.clone(),
        copying.chunk_size,
        copying.upload_concurrency,
        copying.in_place,
    );
    let copier = copier
        .with_journal(journal.as_ref().map(|run| run.journal.clone()))
        .with_control_plane(target.harbor.clone().map(|harbor| harbor as Arc<dyn ControlPlane>));
    let copier = Arc::new(copier);
    let stops = Arc::new(stops::Stops::default());
    let flusher = journal.as_ref().map(|run| run.journal.start_flushing());

    let requests = Arc::new(RequestCounts::default());
    let what = if plan.mode.kind() == SyncMode::Sync { "sync" } else { "verify" };
    let live =
        Arc::new(Live::new(what, started, requests.clone(), copier.counts.clone(), plan.options.object.http.clone()));
    let reporter = start_reporting(&live, &plan.reporting)?;
    let scan_options = scan_options(&plan, journal.as_ref());
    let (items, scan_thread) = scan::start(&plan.source, scan_options, requests);
    let finished_journal = journal.as_ref().map(|run| run.journal.clone());
    let overlay = copying.tags_from.as_deref().map(overlay::TagOverlay::load).transpose()?;
    let mut record =
        Record::new(live.clone(), plan.mode.kind(), journal, plan.selection.mapping.clone(), plan.reporting.quiet);
    record.stops = stops.clone();

    let flowed = match &plan.mode {
        Mode::Plan(format) => {
            let planner = plan::Planner::new(copier, target, *format)?;
            flow(items, scan_thread, &plan.selection, overlay.as_ref(), &mut record, planner).await
        }
        Mode::DryRun(_) => {
            let dry_run = dry_run::DryRun::new(copier, target);
            flow(items, scan_thread, &plan.selection, overlay.as_ref(), &mut record, dry_run).await
        }
        Mode::Sync(_) | Mode::Verify => {
            let context = execute::TaskContext {
                copier,
                target,
                mode: plan.mode.kind(),
                override_tags: copying.override_tags,
                delete: copying.delete,
                stops,
            };
            let tasks = execute::Tasks::new(context, plan.push_concurrency);
            flow(items, scan_thread, &plan.selection, overlay.as_ref(), &mut record, tasks).await
        }
    };
    if let Some(flusher) = flusher {
        flusher.abort();
    }
    if let Some(journal) = &finished_journal {
        // A run stopped part-way (read-only mode) leaves its pass open: the next run carries it on.
        if matches!(flowed, Ok((FlowEnd::Finished, _))) {
            journal.finish_run();
        }
        close_journal(journal)?;
    }
    let (_, verdict) = flowed?;
    reporter.stop();
    if matches!(plan.mode, Mode::Plan(_)) {
        return Ok(worst(verdict, outcome(&live)));
    }
    note_tagless_storage(&plan, &live);
    summary::print(&plan, &live, started);
    Ok(worst(verdict, outcome(&live)))
}

/// Reaches the plan's target (Harbor detected, credentials checked) before anything is listed.
async fn connect(plan: &SyncPlan) -> anyhow::Result<Target> {
    let (stall_timeout, http) = (plan.options.object.stall_timeout, plan.options.object.http.clone());
    Target::connect(&plan.target, plan.credentials.clone(), plan.ca_cert.as_deref(), stall_timeout, http).await
}

fn worst(a: Outcome, b: Outcome) -> Outcome {
    if a == Outcome::Partial || b == Outcome::Partial {
        Outcome::Partial
    } else {
        Outcome::Complete
    }
}

/// How the data flow ended.
enum FlowEnd {
    /// Every item was taken.
    Finished,
    /// A refusal (read-only mode) stopped the run part-way.
    Stopped,
}

/// The data flow of a run: every scan item is either bookkeeping (repositories, problems), or a tag
/// that is selected, skipped when the journal has it, and otherwise handed to the consumer. At the end
/// of each repository's listing, and once the whole listing is known to be complete, the tags gone from
/// the source go to the consumer too. A refusal that closes the run stops it at the next item.
async fn flow<C: Consumer>(
    mut items: Receiver<ScanItem>,
    scan_thread: std::thread::JoinHandle<std::io::Result<()>>,
    selection: &Selection,
    overlay: Option<&overlay::TagOverlay>,
    record: &mut Record,
    mut consumer: C,
) -> anyhow::Result<(FlowEnd, Outcome)> {
    while let Some(item) = items.recv().await {
        consumer.collect(record);
        if record.stops.run_stopped() {
            break;
        }
        match Found::from_item(item) {
            Ok(found) => {
                // An untagged manifest also goes under the tags an export gives back for it.
                let restored = match (&found.tag, overlay) {
                    (None, Some(overlay)) => overlay.tags_of(&found.repository, &found.digest).to_vec(),
                    _ => Vec::new(),
                };
                let (repository, digest) = (found.repository.clone(), found.digest.clone());
                take_found(found, selection, record, &mut consumer).await?;
                for tag in restored {
                    let found = Found { repository: repository.clone(), tag: Some(tag), digest: digest.clone() };
                    take_found(found, selection, record, &mut consumer).await?;
                }
            }
            Err(ScanItem::RepositoryEnd { name }) => {
                for gone in record.gone_in(&name)? {
                    consumer.gone(gone, record).await;
                }
                record.bookkeeping(ScanItem::RepositoryEnd { name });
            }
            Err(other) => record.bookkeeping(other),
        }
    }
    // Dropping the channel tells the walk to stop, if the run stopped before the listing ended.
    drop(items);
    record.live.mark_listing_finished();
    // A listing that failed as a whole, or was stopped, says nothing of what is gone.
    let scanned = tokio::task::spawn_blocking(move || scan_thread.join().expect("the scan thread panicked"))
        .await
        .expect("joining the scan thread")
        .context("scanning the source");
    record.listing_failed = scanned.is_err();
    let stopped = record.stops.run_stopped();
    if scanned.is_ok() && !stopped {
        for gone in record.gone_from_unseen_repositories()? {
            consumer.gone(gone, record).await;
        }
    }
    let verdict = consumer.finish(record).await;
    scanned?;
    let end = if stopped || record.stops.run_stopped() { FlowEnd::Stopped } else { FlowEnd::Finished };
    Ok((end, verdict))
}

/// A tag the scan found: selected, skipped when the journal has it, or handed to the consumer.
async fn take_found<C: Consumer>(
    found: Found,
    selection: &Selection,
    record: &mut Record,
    consumer: &mut C,
) -> anyhow::Result<()> {
    record.tag_seen(&found);
    let planned = match selection.select(found) {
        Selected::Planned(planned) => planned,
        Selected::Filtered => {
            record.filtered();
            return Ok(());
        }
        Selected::Unmappable { repository, message } => {
            record.unmappable(&repository, message);
            return Ok(());
        }
    };
    match skip::unless_journaled(record.journal(), planned)? {
        Some(planned) => consumer.take(planned, record).await,
        None => record.journaled(),
    }
    Ok(())
}

/// The journal of a real sync (a dry run and a verify write none), with the pass this run starts.
fn open_journal(plan: &SyncPlan) -> anyhow::Result<Option<JournalRun>> {
    let Mode::Sync(Copying { journal: Some(path), override_tags, in_place, .. }) = &plan.mode else { return Ok(None) };
    let journal = Journal::open(path)?;
    let scope = format!("{:?} {:?}", plan.source, plan.options.shard);
    let (start, same_scope) = journal.begin_run(&scope)?;
    if !same_scope {
        crate::report::log::warn(format!(
            "journal {}: its last pass listed another source or shard: repositories gone from the source are not \
             looked for in this pass",
            journal.path().display()
        ));
    }
    match start {
        RunStart::First => {}
        RunStart::Resume { pass } => crate::report::log::info(format!(
            "journal: resuming pass {pass}, which was stopped part-way: repositories it finished are not listed again"
        )),
        RunStart::CatchUp { pass } => crate::report::log::info(format!(
            "journal: the last run finished; pass {pass} catches up: every repository is listed again, and tags \
             unchanged since are skipped without a request"
        )),
    }
    let selection = plan.selection.fingerprint(&format!("{override_tags} {} {in_place}", plan.untagged));
    Ok(Some(JournalRun { journal, pass: start.pass(), selection, look_for_unseen: same_scope }))
}

/// The scan's options, with the repositories this pass of the journal holds as finished.
fn scan_options(plan: &SyncPlan, journal: Option<&JournalRun>) -> ScanOptions {
    let mut options = plan.options.clone();
    if let Some(run) = journal {
        let (journal, selection) = (run.journal.clone(), run.selection.clone());
        options.finished = Some(FinishedRepositories(Arc::new(move |repository| {
            journal.is_repository_done(repository, &selection).unwrap_or(false)
        })));
        let (journal, mapping) = (run.journal.clone(), plan.selection.mapping.clone());
        options.known = Some(KnownTags(Arc::new(move |repository, tag, digest| {
            let Ok(target) = mapping.map(repository) else { return false };
            journal.is_done(&target, tag, digest.as_str()).unwrap_or(false)
        })));
    }
    options
}

/// Commits the journal's last records, and says what it holds.
fn close_journal(journal: &Journal) -> anyhow::Result<()> {
    journal.flush()?;
    crate::report::log::info(format!(
        "journal: {} ({} finished tags, {} finished repositories, {} blobs known on the target)",
        journal.path().display(),
        journal.finished_tags()?,
        journal.finished_repositories()?,
        journal.blobs_on_target()?
    ));
    Ok(())
}

/// With `--untagged` on storage holding no tag at all (as Harbor 2.15 writes it), says that tag names
/// could not be recovered.
fn note_tagless_storage(plan: &SyncPlan, live: &Live) {
    let seen = get(&live.run.tags_seen);
    if plan.untagged && seen > 0 && get(&live.run.untagged) == seen {
        crate::report::log::info(
            "note: the storage holds no tags at all (as buckets written by Harbor 2.15 or later): every manifest \
             was restored by digest; tag names cannot be recovered from it (keep them with `rehydrate \
             export-tags` on a schedule, and give them back with --tags-from)",
        );
    }
}

fn outcome(live: &Live) -> Outcome {
    let run = &live.run;
    if get(&run.failed) > 0 || get(&run.source_errors) > 0 || get(&run.left_alone) > 0 || run.refused() > 0 {
        Outcome::Partial
    } else {
        Outcome::Complete
    }
}
