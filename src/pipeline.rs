//! Running a plan: the scan streams items through a bounded channel into whoever consumes them, and the
//! run ends with a summary on standard error and an outcome for the exit code.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::error::TryRecvError;

use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use url::Url;

use crate::copy::manifest::Manifest;
use crate::copy::{Copier, CopyError, TagOutcome};
use crate::filter::{NameFilter, NameMapping};
use crate::inventory::{human_bytes, human_duration, Counts, Format, InventoryWriter};
use crate::journal::Journal;
use crate::layout::Digest;
use crate::progress::{bump, get, Live, Reporter};
use crate::registry::client::RegistryClient;
use crate::registry::credentials::Credentials;
use crate::registry::harbor::Harbor;
use crate::scan::{self, FinishedRepositories, RequestCounts, ScanItem, ScanOptions};
use crate::storage::{BlobStore, Source};

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
    pub reporting: Reporting,
}

/// What the run tells its operator while it runs.
#[derive(Debug, Clone, Default)]
pub struct Reporting {
    /// Print only the summary, not each problem.
    pub quiet: bool,
    /// Off a terminal: a progress line this often (never when zero).
    pub progress_interval: Duration,
    /// Serve Prometheus metrics here.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Starts the metrics endpoint (when asked) and the progress reporter over `live`.
fn start_reporting(live: &Arc<Live>, reporting: &Reporting) -> anyhow::Result<Reporter> {
    if let Some(address) = reporting.metrics_addr {
        let metrics_live = live.clone();
        let bound = crate::metrics::serve(address, move |out| metrics_live.write_metrics(out))
            .with_context(|| format!("serving metrics on {address}"))?;
        crate::log::info(format!("metrics: http://{bound}/metrics"));
    }
    Ok(Reporter::start(live.clone(), reporting.progress_interval))
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
    let live = Arc::new(Live::new("scan", started, requests.clone(), Arc::default()));
    let reporter = start_reporting(&live, &plan.reporting)?;
    let (mut items, scan_thread) = scan::start(&plan.source, plan.options.clone(), requests.clone());

    let mut counts = Counts::default();
    let mut printer = ProblemPrinter { quiet: plan.reporting.quiet, printed: 0 };
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
        counts.publish(&live.run);
        match &item {
            ScanItem::Error(problem) => printer.print("error", problem),
            ScanItem::Warning(problem) => printer.print("warning", problem),
            _ => {}
        }
        writer.write(&item).context("writing the inventory")?;
    }
    writer.flush().context("writing the inventory")?;
    drop(items);
    scan_thread.join().expect("the scan thread panicked").context("scanning the source")?;
    live.mark_listing_finished();
    reporter.stop();

    print_summary(&counts, &requests, started, printer.printed);
    Ok(if counts.errors > 0 { Outcome::Partial } else { Outcome::Complete })
}

fn print_summary(counts: &Counts, requests: &RequestCounts, started: Instant, problems_printed: u64) {
    let elapsed = human_duration(started.elapsed());
    crate::log::info_with(
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
    let problems = counts.errors + counts.warnings;
    if problems > problems_printed && problems_printed > 0 {
        crate::log::info(format!("({} more problems are in the inventory only)", problems - problems_printed));
    }
    if counts.errors > 0 {
        crate::log::info(format!(
            "the scan is PARTIAL: {} items could not be read (each is an error record in the inventory)",
            counts.errors
        ));
    }
}

/// The storage requests a run made (scan and sync summaries alike).
fn log_storage_requests(requests: &RequestCounts) {
    crate::log::info(format!(
        "storage requests: {} listings, {} link reads; {} entries seen",
        get(&requests.lists),
        get(&requests.reads),
        get(&requests.entries)
    ));
}

/// What `rehydrate sync` or `verify` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Copy every selected tag.
    Sync,
    /// Check that every selected tag resolves to the same digest on the target.
    Verify,
}

/// Which repositories and tags are taken, and where they land.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub repositories: NameFilter,
    pub tags: NameFilter,
    pub mapping: NameMapping,
}

pub struct SyncPlan {
    pub mode: SyncMode,
    pub source: Source,
    pub options: ScanOptions,
    pub target: Url,
    pub credentials: Option<Credentials>,
    pub selection: Selection,
    pub override_tags: bool,
    pub dry_run: bool,
    pub push_concurrency: usize,
    pub chunk_size: u64,
    pub reporting: Reporting,
    /// The target serves the source's own storage (disaster recovery): manifests first, blobs on demand.
    pub in_place: bool,
    /// Also copy every manifest no tag points at, by digest.
    pub untagged: bool,
    /// Extra CA certificates (PEM) to trust for the target.
    pub ca_cert: Option<PathBuf>,
    /// Where finished tags are recorded (and found again after a crash); `None`: no journal.
    pub journal: Option<PathBuf>,
}

/// Prints problems as they come, up to `PROBLEMS_PRINTED`.
struct ProblemPrinter {
    quiet: bool,
    printed: u64,
}

impl ProblemPrinter {
    fn print(&mut self, level: &str, message: impl std::fmt::Display) {
        if !self.quiet && self.printed < PROBLEMS_PRINTED {
            match level {
                "warning" => crate::log::warn(message),
                _ => crate::log::error(message),
            }
            self.printed += 1;
        }
    }
}

/// What one tag's task reports back.
struct TagReport {
    label: String,
    result: Result<TagOutcome, CopyError>,
    /// (target repository, reference, digest), for the journal.
    item: (String, String, String),
    source_repository: String,
}

/// Repositories whose listing or tags are still in flight. A repository is finished once its listing
/// ended and its last tag is done: cleanly (`Some(true)`, recorded in the journal so that a resumed run
/// does not list it again) or with a failure (`Some(false)`). Only open repositories are held, so the
/// map stays as small as the work in flight.
#[derive(Default)]
struct OpenRepositories(HashMap<String, OpenRepository>);

#[derive(Default)]
struct OpenRepository {
    pending: u64,
    failed: bool,
    listed: bool,
}

impl OpenRepositories {
    fn opened(&mut self, repository: &str) {
        self.0.entry(repository.to_string()).or_default();
    }

    fn tag_started(&mut self, repository: &str) {
        self.0.entry(repository.to_string()).or_default().pending += 1;
    }

    fn failed(&mut self, repository: &str) {
        if let Some(open) = self.0.get_mut(repository) {
            open.failed = true;
        }
    }

    fn tag_finished(&mut self, repository: &str, ok: bool) -> Option<bool> {
        let open = self.0.get_mut(repository)?;
        open.pending = open.pending.saturating_sub(1);
        open.failed |= !ok;
        self.settle(repository)
    }

    fn listed(&mut self, repository: &str) -> Option<bool> {
        self.0.get_mut(repository)?.listed = true;
        self.settle(repository)
    }

    fn settle(&mut self, repository: &str) -> Option<bool> {
        let open = self.0.get(repository)?;
        if !open.listed || open.pending > 0 {
            return None;
        }
        self.0.remove(repository).map(|open| !open.failed)
    }
}

/// The target's HTTP client: TLS always verified (against the system's roots and `--ca-cert`), no cookie
/// jar (Harbor skips CSRF checks for calls without its session cookie), and reqwest's redirect policy,
/// which drops credentials on a redirect to another host.
fn target_http(ca_cert: Option<&Path>, stall_timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(stall_timeout.unwrap_or(crate::net::DEFAULT_STALL_TIMEOUT))
        .pool_max_idle_per_host(64)
        .user_agent(concat!("rehydrate/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("reading --ca-cert {}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--ca-cert {}: not PEM certificates", path.display()))?;
        if certificates.is_empty() {
            anyhow::bail!("--ca-cert {}: no certificate in it", path.display());
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder.build()?)
}

/// Explains a failure to reach the target, with what to do when its certificate is not trusted.
fn unreachable_target(target: &Url, text: String) -> anyhow::Error {
    if text.contains("certificate") || text.contains("UnknownIssuer") || text.contains("invalid peer") {
        anyhow::anyhow!(
            "the TLS certificate of {} is not trusted ({text}). If the target uses a private CA or a self-signed certificate, pass --ca-cert FILE with that CA's certificate (PEM)",
            target.host_str().unwrap_or_default()
        )
    } else {
        anyhow::anyhow!("reaching the target {target}: {text}")
    }
}

/// Copies (or verifies) every selected tag as the scan finds it: the scan streams tags through a bounded
/// channel, each tag becomes a task, at most `push_concurrency` run at once, and the scan is held back
/// while they are all busy.
pub fn run_sync(plan: SyncPlan) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(sync_async(plan))
}

async fn sync_async(plan: SyncPlan) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let http = target_http(plan.ca_cert.as_deref(), plan.options.object.stall_timeout)?;
    let target = Arc::new(RegistryClient::new(plan.target.clone(), http.clone(), plan.credentials.clone()));
    let detected = Harbor::detect(&plan.target, &http, plan.credentials.clone())
        .await
        .map_err(|e| unreachable_target(&plan.target, e.to_string()))?;
    let harbor = match detected {
        Some(harbor) => {
            harbor.check_credentials().await?;
            crate::log::info(format!("target is Harbor {}", harbor.version().await.unwrap_or_default()));
            Some(Arc::new(harbor))
        }
        None => None,
    };
    target.ping().await.map_err(|error| unreachable_target(&plan.target, error.to_string()))?;
    let blobs =
        Arc::new(BlobStore::connect(&plan.source, &plan.options.object).await.context("opening the source storage")?);
    let journal = match (&plan.journal, plan.mode, plan.dry_run) {
        (Some(path), SyncMode::Sync, false) => Some(Journal::open(path)?),
        _ => None,
    };
    let copier =
        Arc::new(Copier::new(blobs, target.clone(), plan.chunk_size, plan.in_place).with_journal(journal.clone()));
    // Repositories are finished under one selection: another selection lists them again.
    let selection = crate::journal::fingerprint(&format!(
        "{:?} {} {} {}",
        plan.selection, plan.override_tags, plan.untagged, plan.in_place
    ));
    let mut scan_options = plan.options.clone();
    if let Some(journal) = &journal {
        let (journal, selection) = (journal.clone(), selection.clone());
        scan_options.finished = Some(FinishedRepositories(Arc::new(move |repository| {
            journal.is_repository_done(repository, &selection).unwrap_or(false)
        })));
    }
    let flusher = journal.clone().map(|journal| {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(crate::journal::FLUSH_EVERY).await;
                let journal = journal.clone();
                if let Err(error) =
                    tokio::task::spawn_blocking(move || journal.flush()).await.expect("journal flush panicked")
                {
                    crate::log::warn(error);
                }
            }
        })
    });

    let requests = Arc::new(RequestCounts::default());
    let what = if plan.mode == SyncMode::Sync { "sync" } else { "verify" };
    let live = Arc::new(Live::new(what, started, requests.clone(), copier.counts.clone()));
    let reporter = start_reporting(&live, &plan.reporting)?;
    let (mut items, scan_thread) = scan::start(&plan.source, scan_options, requests.clone());
    let slots = Arc::new(Semaphore::new(plan.push_concurrency));
    let mut open = OpenRepositories::default();
    let finished = |repository: &str, clean: Option<bool>| {
        if let (Some(journal), Some(true)) = (&journal, clean) {
            journal.record_repository(repository, &selection);
        }
    };
    let mut tasks: JoinSet<TagReport> = JoinSet::new();
    let counts = &live.run;
    let mut printer = ProblemPrinter { quiet: plan.reporting.quiet, printed: 0 };
    let mut dry_run = DryRun::default();
    let mut scanned_tags = 0u64;

    while let Some(item) = items.recv().await {
        while let Some(done) = tasks.try_join_next() {
            {
                let report = done.expect("a copy task panicked");
                let (repository, ok) = (report.source_repository.clone(), report.result.is_ok());
                record(&live, &mut printer, plan.mode, journal.as_deref(), report);
                finished(&repository, open.tag_finished(&repository, ok));
            }
        }
        let (repository, tag, digest) = match item {
            ScanItem::Tag { repository, tag, digest } => {
                scanned_tags += 1;
                (repository, Some(tag), digest)
            }
            ScanItem::Untagged { repository, digest } => (repository, None, digest),
            ScanItem::Repository { name } => {
                bump(&counts.repositories);
                open.opened(&name);
                continue;
            }
            ScanItem::RepositoryEnd { name } => {
                finished(&name, open.listed(&name));
                continue;
            }
            ScanItem::Resumed { .. } => {
                bump(&counts.repositories_resumed);
                continue;
            }
            ScanItem::Error(problem) => {
                bump(&counts.source_errors);
                if let Some(repository) = &problem.repository {
                    open.failed(repository);
                }
                printer.print("error", problem);
                continue;
            }
            ScanItem::Warning(problem) => {
                bump(&counts.warnings);
                printer.print("warning", problem);
                continue;
            }
        };
        bump(&counts.tags_seen);
        let tag_accepted = tag.as_deref().is_none_or(|tag| plan.selection.tags.accepts(tag));
        if !plan.selection.repositories.accepts(&repository) || !tag_accepted {
            bump(&counts.filtered);
            continue;
        }
        let label = match &tag {
            Some(tag) => format!("{repository}:{tag}"),
            None => format!("{repository}@{digest}"),
        };
        let target_repository = match plan.selection.mapping.map(&repository) {
            Ok(name) => name,
            Err(error) => {
                bump(&counts.failed);
                open.failed(&repository);
                printer.print("error", format!("{label}: {error}"));
                continue;
            }
        };
        if plan.dry_run {
            dry_run
                .plan(
                    &copier,
                    &target,
                    &target_repository,
                    tag.as_deref().unwrap_or(digest.as_str()),
                    &digest,
                    &mut printer,
                )
                .await;
            continue;
        }
        let reference = tag.clone().unwrap_or_else(|| digest.to_string());
        if let Some(journal) = &journal {
            if journal.is_done(&target_repository, &reference, digest.as_str())? {
                bump(&counts.journaled);
                continue;
            }
        }
        open.tag_started(&repository);
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let (copier, harbor, target) = (copier.clone(), harbor.clone(), target.clone());
        let (mode, override_tags) = (plan.mode, plan.override_tags);
        tasks.spawn(async move {
            let separator = if tag.is_some() { ':' } else { '@' };
            let label = format!("{label} -> {target_repository}{separator}{reference}");
            let result = match mode {
                SyncMode::Sync => {
                    copy_one(&copier, harbor.as_deref(), &target_repository, tag.as_deref(), &digest, override_tags)
                        .await
                }
                SyncMode::Verify => verify_one(&target, &target_repository, &reference, &digest).await,
            };
            drop(permit);
            TagReport {
                label,
                result,
                item: (target_repository, reference, digest.to_string()),
                source_repository: repository,
            }
        });
    }
    live.mark_listing_finished();
    while let Some(done) = tasks.join_next().await {
        {
            let report = done.expect("a copy task panicked");
            let (repository, ok) = (report.source_repository.clone(), report.result.is_ok());
            record(&live, &mut printer, plan.mode, journal.as_deref(), report);
            finished(&repository, open.tag_finished(&repository, ok));
        }
    }
    if let Some(flusher) = flusher {
        flusher.abort();
    }
    if let Some(journal) = &journal {
        journal.flush()?;
        crate::log::info(format!(
            "journal: {} ({} finished tags, {} finished repositories, {} blobs known on the target)",
            journal.path().display(),
            journal.finished_tags()?,
            journal.finished_repositories()?,
            journal.blobs_on_target()?
        ));
    }
    scan_thread.join().expect("the scan thread panicked").context("scanning the source")?;
    reporter.stop();

    if plan.dry_run {
        dry_run.print_summary();
    }
    if plan.untagged && get(&counts.tags_seen) > 0 && scanned_tags == 0 {
        crate::log::info(
            "note: the storage holds no tags at all (as buckets written by Harbor 2.15 or later): every manifest was restored by digest; tag names cannot be recovered from it",
        );
    }
    print_sync_summary(&plan, &live, started);
    Ok(if get(&counts.failed) > 0 || get(&counts.source_errors) > 0 { Outcome::Partial } else { Outcome::Complete })
}

async fn copy_one(
    copier: &Copier,
    harbor: Option<&Harbor>,
    repository: &str,
    tag: Option<&str>,
    digest: &Digest,
    override_tags: bool,
) -> Result<TagOutcome, CopyError> {
    if let Some(harbor) = harbor {
        let project = repository.split('/').next().unwrap_or(repository);
        harbor.ensure_project(project).await.map_err(|e| CopyError::Target(e.to_string()))?;
    }
    match tag {
        Some(tag) => copier.copy_tag(repository, tag, digest, override_tags).await,
        None => copier.copy_untagged(repository, digest).await,
    }
}

async fn verify_one(
    target: &RegistryClient,
    repository: &str,
    tag: &str,
    digest: &Digest,
) -> Result<TagOutcome, CopyError> {
    match target.manifest_digest(repository, tag).await? {
        Some(found) if &found == digest => Ok(TagOutcome::AlreadyThere),
        Some(found) => Err(CopyError::Target(format!("the target's tag points at {found}, the source's at {digest}"))),
        None => Err(CopyError::Target("missing on the target".to_string())),
    }
}

fn record(live: &Live, printer: &mut ProblemPrinter, mode: SyncMode, journal: Option<&Journal>, report: TagReport) {
    let counts = &live.run;
    if let (Some(journal), Ok(_)) = (journal, &report.result) {
        let (repository, reference, digest) = &report.item;
        journal.record(repository, reference, digest);
    }
    match (report.result, mode) {
        (Ok(TagOutcome::Pushed), _) => {
            live.mark_done();
            bump(&counts.pushed)
        }
        (Ok(TagOutcome::AlreadyThere), SyncMode::Sync) => bump(&counts.already_there),
        (Ok(TagOutcome::AlreadyThere), SyncMode::Verify) => {
            live.mark_done();
            bump(&counts.verified)
        }
        (Err(error), _) => {
            bump(&counts.failed);
            printer.print("error", format!("{}: {error}", report.label));
        }
    }
}

/// What a dry run finds: projects to create, tags to push, blob bytes to move (each blob counted once).
#[derive(Default)]
struct DryRun {
    projects: std::collections::BTreeSet<String>,
    repositories: std::collections::BTreeSet<String>,
    tags: u64,
    already_there: u64,
    blobs: std::collections::HashSet<Digest>,
    bytes: u64,
}

impl DryRun {
    async fn plan(
        &mut self,
        copier: &Copier,
        target: &RegistryClient,
        repository: &str,
        tag: &str,
        digest: &Digest,
        printer: &mut ProblemPrinter,
    ) {
        if let Ok(Some(existing)) = target.manifest_digest(repository, tag).await {
            if &existing == digest {
                self.already_there += 1;
                return;
            }
        }
        self.projects.insert(repository.split('/').next().unwrap_or(repository).to_string());
        self.repositories.insert(repository.to_string());
        self.tags += 1;
        println!("would push {repository}:{tag} ({digest})");
        let mut pending = vec![digest.clone()];
        while let Some(manifest_digest) = pending.pop() {
            match copier.read_manifest(&manifest_digest).await {
                Ok((Manifest::Index { children, .. }, _)) => pending.extend(children.into_iter().map(|c| c.digest)),
                Ok((Manifest::Image { blobs, .. }, _)) => {
                    for blob in blobs {
                        if self.blobs.insert(blob.digest) {
                            self.bytes += blob.size;
                        }
                    }
                }
                Err(error) => printer.print("error", format!("{repository}:{tag}: {error}")),
            }
        }
    }

    fn print_summary(&self) {
        println!(
            "dry run: would create up to {} projects ({}), push {} tags into {} repositories, move up to {} blobs ({}); {} tags already there",
            self.projects.len(),
            self.projects.iter().cloned().collect::<Vec<_>>().join(", "),
            self.tags,
            self.repositories.len(),
            self.blobs.len(),
            human_bytes(self.bytes),
            self.already_there
        );
    }
}

fn print_sync_summary(plan: &SyncPlan, live: &Live, started: Instant) {
    let elapsed = human_duration(started.elapsed());
    let (counts, copy) = (&live.run, &live.copy);
    let selected = get(&counts.tags_seen) - get(&counts.filtered);
    let fields = live.fields();
    match plan.mode {
        SyncMode::Sync => crate::log::info_with(
            format!(
                "sync finished in {elapsed}: {} repositories{}, {} tags selected ({} filtered out): {} pushed, {} already there, {} failed ({} known finished from the journal); \
                 blobs: {} uploaded ({}), {} mounted, {} already on the target; {} manifests pushed; {} source errors, {} warnings; {} retries",
                get(&counts.repositories) + get(&counts.repositories_resumed),
                match get(&counts.repositories_resumed) {
                    0 => String::new(),
                    resumed => format!(" ({resumed} finished by an earlier run)"),
                },
                selected,
                get(&counts.filtered),
                get(&counts.pushed),
                get(&counts.already_there) + get(&counts.journaled),
                get(&counts.failed),
                get(&counts.journaled),
                get(&copy.blobs_uploaded),
                human_bytes(get(&copy.bytes_uploaded)),
                get(&copy.blobs_mounted),
                get(&copy.blobs_present),
                get(&copy.manifests_pushed),
                get(&counts.source_errors),
                get(&counts.warnings),
                crate::net::retries(),
            ),
            &fields,
        ),
        SyncMode::Verify => crate::log::info_with(
            format!(
                "verify finished in {elapsed}: {} tags selected ({} filtered out): {} match, {} do not; {} source errors",
                selected,
                get(&counts.filtered),
                get(&counts.verified),
                get(&counts.failed),
                get(&counts.source_errors)
            ),
            &fields,
        ),
    }
    log_storage_requests(&live.requests);
    let resumed = get(&counts.repositories_resumed);
    if resumed > 0 {
        crate::log::info(format!("{resumed} repositories were finished by an earlier run (from the journal): their tags were not listed again"));
    }
    if let (Some(first), Some(listed)) = (live.first_done.get(), live.listing_finished.get()) {
        crate::log::info_with(
            format!(
                "timeline: first tag {} after {}; listing finished after {}",
                if plan.mode == SyncMode::Sync { "pushed" } else { "verified" },
                human_duration(*first),
                human_duration(*listed)
            ),
            &[
                ("first_done_seconds", first.as_secs_f64().into()),
                ("listing_finished_seconds", listed.as_secs_f64().into()),
                ("total_seconds", started.elapsed().as_secs_f64().into()),
            ],
        );
    }
    if get(&counts.failed) > 0 || get(&counts.source_errors) > 0 {
        crate::log::info(format!(
            "the run is PARTIAL: {} tags failed, {} source items could not be read",
            get(&counts.failed),
            get(&counts.source_errors)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_is_finished_when_listed_and_its_last_tag_is_done() {
        let mut open = OpenRepositories::default();
        open.opened("a");
        open.tag_started("a");
        open.tag_started("a");
        assert_eq!(open.tag_finished("a", true), None, "not listed yet");
        assert_eq!(open.listed("a"), None, "a tag is still in flight");
        assert_eq!(open.tag_finished("a", true), Some(true));
        assert!(open.0.is_empty(), "a finished repository is forgotten");

        open.opened("b");
        open.tag_started("b");
        open.tag_finished("b", false);
        assert_eq!(open.listed("b"), Some(false), "a failed tag keeps it from the journal");

        open.opened("c");
        open.failed("c");
        assert_eq!(open.listed("c"), Some(false), "a source error too");
        open.opened("d");
        assert_eq!(open.listed("d"), Some(true), "a repository with nothing selected is finished");
    }
}
