//! The command line: clap definitions, turned into the plans that `run::scan` and `sync` run.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use url::Url;

use crate::copy::{DEFAULT_CHUNK_SIZE, DEFAULT_UPLOAD_CONCURRENCY};
use crate::filter::{Glob, NameFilter, NameMapping};
use crate::registry::credentials::{self, CredentialSources};
use crate::report::log::LogFormat;
use crate::report::shell::Shell;
use crate::run::inventory::Format;
use crate::run::scan::{run_scan, ScanPlan};
use crate::run::{Outcome, Reporting};
use crate::scan::{DiscoveryMode, ScanOptions};
use crate::shard::Shard;
use crate::storage::object::ObjectOptions;
use crate::storage::Source;
use crate::sync::{run_plan, run_sync, PlanFormat, Selection, SyncMode, SyncPlan};

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
    Verify(SyncArgs),
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

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Write here (a complete file, or the previous one left in place) instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

impl ExportArgs {
    fn run(self) -> anyhow::Result<Outcome> {
        let (target, credentials) = self.target.resolve()?;
        crate::run::export::run_export_tags(crate::run::export::ExportPlan {
            target,
            credentials,
            ca_cert: self.target.ca_cert.clone(),
            output: self.output,
        })
    }
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The journal file (`sync` prints its path at the end of each run).
    #[arg(long, value_name = "FILE")]
    journal: PathBuf,
}

/// Where the source storage is and how to list it (shared by every command).
#[derive(Debug, Args)]
struct SourceArgs {
    /// The storage root, the place that holds docker/registry/v2: a path or file:///path, s3://bucket/root,
    /// gs://bucket/root or az://container/root.
    source: String,
    /// Check that every tag is pullable, not only served: read each manifest once per digest, check that
    /// every blob it names is present and linked in the repository, and an index's children likewise.
    /// Each tag that is not gets an error record with the first reason (`plan` always does this).
    #[arg(long)]
    deep: bool,
    /// How many listings run at once [default: 4 per core on a filesystem, 32 on an object store].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    list_concurrency: Option<usize>,
    /// Object store endpoint (MinIO, Ceph, an emulator), e.g. http://127.0.0.1:9000 [env: AWS_ENDPOINT_URL,
    /// STORAGE_EMULATOR_HOST or AZURE_STORAGE_ENDPOINT, by cloud].
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Send no credentials to the object store (public buckets).
    #[arg(long)]
    anonymous: bool,
    /// Keys per listing page on an object store.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = at_least_one)]
    list_page_size: usize,
    /// How repositories are found in an object store: `auto` rolls keys up at `/_` where the store allows
    /// it; `walk` lists folder by folder (for stores that misbehave with string delimiters).
    #[arg(long, value_enum, default_value_t = DiscoveryMode::Auto)]
    discovery: DiscoveryMode,
    /// Print only the summary, not each problem as it is found.
    #[arg(long, short)]
    quiet: bool,
    /// Do only this machine's share: `K/N` (shard K of N, from 0), or `N` with K from JOB_COMPLETION_INDEX
    /// (Kubernetes Indexed Jobs) or AWS_BATCH_JOB_ARRAY_INDEX. The N runs together do exactly what one
    /// run does, each repository in exactly one of them.
    #[arg(long, value_name = "K/N", value_parser = shard_spec)]
    shard: Option<String>,
    /// Seconds an answer (from the storage or the target) may stay silent before its request is
    /// abandoned and tried again [default: 300].
    #[arg(long, value_name = "SECONDS")]
    stall_timeout: Option<u64>,
    /// At most this many HTTP requests per second, storage and target together.
    #[arg(long, value_name = "N")]
    max_requests_per_second: Option<f64>,
    /// Keep as many requests in flight as the concurrency flags allow, whatever the servers say. By
    /// default each side's window starts small, grows while answers come, and halves when the server
    /// pushes back (429, 503, resets).
    #[arg(long)]
    fixed_window: bool,
    /// How messages, progress and summaries are written on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Also log every HTTP request (method, URL without its query, status, time; secret headers
    /// redacted) and every retry.
    #[arg(long, short)]
    verbose: bool,
    /// When standard error is not a terminal, write a progress line this often (0: never). On a
    /// terminal, a status line is kept up to date instead.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    progress_interval: u64,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464), at /metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
struct ScanArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Write the inventory here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// The inventory's format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Also list manifest revisions that no tag points at (index children, referrers, untagged images).
    #[arg(long)]
    untagged: bool,
}

/// The target registry and how to reach it (shared by `sync`, `verify` and `plan`).
#[derive(Debug, Args)]
struct TargetArgs {
    /// The target registry: https://harbor.example.com (a bare host means https).
    target: String,
    /// Allow a plain-HTTP target (http://...). Without it, only HTTPS is spoken.
    #[arg(long)]
    plain_http: bool,
    /// Trust the CA certificate(s) in this PEM file for the target's HTTPS, beside the system's. The
    /// target's certificate is always verified.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// User name on the target [env: REHYDRATE_TARGET_USERNAME]. The password comes from
    /// REHYDRATE_TARGET_PASSWORD, --password-file, --password-stdin, or the Docker config (docker login).
    #[arg(long)]
    username: Option<String>,
    /// Read the target password from this file.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Read the target password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

/// Which repositories and tags are taken, and their names on the target (shared by `sync`, `verify`
/// and `plan`).
#[derive(Debug, Args)]
struct SelectionArgs {
    /// Copy only repositories matching this doublestar glob (repeatable): `library/**`, `{a,b}/*`.
    #[arg(long = "include", value_name = "GLOB")]
    include: Vec<String>,
    /// Skip repositories matching this glob (repeatable).
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// Copy only tags matching this glob (repeatable).
    #[arg(long = "include-tag", value_name = "GLOB")]
    include_tag: Vec<String>,
    /// Skip tags matching this glob (repeatable).
    #[arg(long = "exclude-tag", value_name = "GLOB")]
    exclude_tag: Vec<String>,
    /// Put every repository under this namespace on the target (Harbor's destination namespace).
    #[arg(long, value_name = "NAMESPACE", default_value = "")]
    dest_namespace: String,
    /// With --dest-namespace: -1 keeps only the last name component, 0 the whole name, N drops the first N
    /// components (Harbor's dest_namespace_replace_count).
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    flatten: i32,
    /// Also take every manifest no tag points at, by digest (buckets written by Harbor 2.15 or later
    /// hold no tags at all).
    #[arg(long)]
    untagged: bool,
}

#[derive(Debug, Args)]
struct SyncArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    selection: SelectionArgs,
    /// The journal of finished tags [default: under $XDG_STATE_HOME/rehydrate, one per source, target
    /// and shard]. After a crash or a kill, the same command carries on from it.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Keep no journal.
    #[arg(long, conflicts_with = "journal")]
    no_journal: bool,
    /// Replace target tags that point at another digest (by default they are left alone and reported).
    #[arg(long = "override")]
    override_tags: bool,
    /// Print what would be created and pushed, and push nothing.
    #[arg(long)]
    dry_run: bool,
    /// Delete from the target the tags gone from the source since rehydrate pushed them: only tags the
    /// journal says rehydrate pushed, and only while they still hold the digest it pushed (without it,
    /// such tags are reported and kept).
    #[arg(long, conflicts_with = "no_journal")]
    delete: bool,
    /// At most this many blob bytes per second copied into the target: 50M, 1G (powers of 1024).
    #[arg(long, value_name = "RATE")]
    max_bandwidth: Option<String>,
    /// How many tags are copied at once; also the most requests in flight to the target (the ceiling
    /// of its adaptive window).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = at_least_one)]
    push_concurrency: usize,
    /// Blobs larger than this are uploaded in PATCHes of this many bytes (streamed: no memory cost; a
    /// request cut in the middle is resumed where the target stopped).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_CHUNK_SIZE)]
    chunk_size: u64,
    /// How many blob bodies are uploaded at once across all tags: the memory budget of the copy, about
    /// 1 MiB each (16: about 16 MiB).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_UPLOAD_CONCURRENCY, value_parser = at_least_one)]
    upload_concurrency: usize,
    /// Disaster recovery: the target (a Harbor that lost its database) serves this very storage. Each
    /// manifest is PUT first, without HEADing or uploading blobs; blobs are sent only where the target
    /// answers MANIFEST_BLOB_UNKNOWN.
    #[arg(long)]
    in_place: bool,
    /// With --untagged: give each manifest found by digest the tags this file names for it (the lines
    /// `rehydrate export-tags` wrote), for a rebuild of a Harbor 2.15+ whose storage holds no tags.
    #[arg(long, value_name = "FILE", requires = "untagged")]
    tags_from: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    selection: SelectionArgs,
    /// How the plan is written on standard output.
    #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
    format: PlanFormat,
}

/// Folder reads are short system calls that mostly wait on the disk (or a network filesystem): a few per
/// core keep the disk queue full without thrashing. Object store listings wait on the network: many at
/// once, still far below any store's request-rate limits.
/// A count that must be at least 1 (checked while parsing: a wrong value exits 2 with the usage line).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A `--shard` value whose form is right (`K/N` with K < N, or `N` >= 1); K of a bare `N` comes from the
/// environment later.
fn shard_spec(text: &str) -> Result<String, String> {
    Shard::parse(text, Some("0")).map(|_| text.to_string()).map_err(|e| e.to_string())
}

fn default_list_concurrency(source: &Source) -> usize {
    match source {
        Source::Filesystem(_) => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) * 4,
        Source::Object { .. } => 32,
    }
}

impl Cli {
    /// How messages are to be written: the format, and whether debug lines are on.
    pub fn log_settings(&self) -> (LogFormat, bool) {
        let source = match &self.command {
            Command::Scan(args) => &args.source,
            Command::Sync(args) | Command::Verify(args) => &args.source,
            Command::Plan(args) => &args.source,
            Command::Status(_) | Command::ExportTags(_) => return (LogFormat::Text, false),
        };
        (source.log_format, source.verbose)
    }

    /// Runs the command; its lines go to `shell`.
    pub fn run(self, shell: Arc<Shell>) -> anyhow::Result<Outcome> {
        match self.command {
            Command::Scan(args) => args.run(shell),
            Command::Sync(args) => args.run(SyncMode::Sync, shell),
            Command::Verify(args) => args.run(SyncMode::Verify, shell),
            Command::Status(args) => args.run(),
            Command::Plan(args) => args.run(shell),
            Command::ExportTags(args) => args.run(),
        }
    }
}

impl StatusArgs {
    fn run(self) -> anyhow::Result<Outcome> {
        if !self.journal.exists() {
            anyhow::bail!("no journal at {}", self.journal.display());
        }
        let journal = crate::journal::Journal::open(&self.journal)?;
        println!(
            "{}: {} tags finished on the target, {} source repositories finished in this pass, {} blobs known on the \
             target",
            journal.path().display(),
            journal.finished_tags()?,
            journal.finished_repositories()?,
            journal.blobs_on_target()?
        );
        println!(
            "{}",
            match journal.last_pass()? {
                None => "no run yet: the next run is the first pass".to_string(),
                Some((pass, true)) => format!(
                    "pass {pass} finished: the next run catches up (lists every repository again; tags unchanged at \
                     the source are skipped without a request)"
                ),
                Some((pass, false)) => format!(
                    "pass {pass} was stopped part-way: the next run resumes it (repositories it finished are not \
                     listed again)"
                ),
            }
        );
        Ok(Outcome::Complete)
    }
}

impl SourceArgs {
    /// Sets up logging and the request-rate limit (before anything runs) and says how to report.
    fn reporting(&self, shell: Arc<Shell>) -> anyhow::Result<Reporting> {
        if let Some(rate) = self.max_requests_per_second {
            if rate.is_nan() || rate <= 0.0 {
                anyhow::bail!("--max-requests-per-second must be above zero");
            }
        }
        Ok(Reporting {
            shell,
            quiet: self.quiet,
            progress_interval: std::time::Duration::from_secs(self.progress_interval),
            metrics_addr: self.metrics_addr,
        })
    }

    fn resolve(&self, untagged: bool) -> anyhow::Result<(Source, ScanOptions)> {
        let source = Source::parse(&self.source).with_context(|| format!("source {:?}", self.source))?;
        let list_concurrency = self.list_concurrency.unwrap_or_else(|| default_list_concurrency(&source));
        let shard = match &self.shard {
            Some(spec) => {
                let index =
                    std::env::var("JOB_COMPLETION_INDEX").or_else(|_| std::env::var("AWS_BATCH_JOB_ARRAY_INDEX")).ok();
                Shard::parse(spec, index.as_deref())?
            }
            None => Shard::ALL,
        };
        let options = ScanOptions {
            list_concurrency,
            untagged,
            deep: self.deep,
            object: ObjectOptions {
                endpoint: self.endpoint.clone(),
                anonymous: self.anonymous,
                stall_timeout: self.stall_timeout.map(std::time::Duration::from_secs),
                http: Default::default(),
            },
            page_size: self.list_page_size.max(1),
            discovery: self.discovery,
            shard,
            finished: None,
            known: None,
        };
        Ok((source, options))
    }
}

impl ScanArgs {
    fn run(self, shell: Arc<Shell>) -> anyhow::Result<Outcome> {
        let (source, mut options) = self.source.resolve(self.untagged)?;
        let reporting = self.source.reporting(shell)?;
        options.object.http = Arc::new(crate::http::Context::new(&crate::http::Limits {
            requests_per_second: self.source.max_requests_per_second,
            storage_ceiling: Some(options.list_concurrency),
            fixed_window: self.source.fixed_window,
            ..Default::default()
        }));
        run_scan(ScanPlan { source, options, output: self.output, format: self.format, reporting })
    }
}

/// The target URL: a bare host means HTTPS; plain HTTP only when asked for explicitly.
fn target_url(text: &str, plain_http: bool) -> anyhow::Result<Url> {
    let with_scheme = if text.contains("://") { text.to_string() } else { format!("https://{text}") };
    let url = Url::parse(&with_scheme).with_context(|| format!("target {text:?} is not a URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if plain_http => {}
        "http" => anyhow::bail!("target {text:?} is plain HTTP: pass --plain-http to allow it"),
        other => anyhow::bail!("target {text:?}: unsupported scheme {other:?}"),
    }
    if url.host_str().is_none() {
        anyhow::bail!("target {text:?} names no host");
    }
    Ok(url)
}

fn globs(patterns: &[String]) -> anyhow::Result<Vec<Glob>> {
    patterns.iter().map(|p| Glob::new(p).map_err(anyhow::Error::from)).collect()
}

impl TargetArgs {
    /// The target's URL and the credentials for it.
    fn resolve(&self) -> anyhow::Result<(Url, Option<crate::registry::credentials::Credentials>)> {
        let target = target_url(&self.target, self.plain_http)?;
        let host = match target.port() {
            Some(port) => format!("{}:{port}", target.host_str().unwrap_or_default()),
            None => target.host_str().unwrap_or_default().to_string(),
        };
        let credentials = credentials::resolve(&CredentialSources {
            username: self.username.clone(),
            password_file: self.password_file.clone(),
            password_stdin: self.password_stdin,
            registry_host: host,
        })?;
        Ok((target, credentials))
    }
}

impl SelectionArgs {
    fn resolve(&self) -> anyhow::Result<Selection> {
        Ok(Selection {
            repositories: NameFilter { include: globs(&self.include)?, exclude: globs(&self.exclude)? },
            tags: NameFilter { include: globs(&self.include_tag)?, exclude: globs(&self.exclude_tag)? },
            mapping: NameMapping::new(&self.dest_namespace, self.flatten)?,
        })
    }
}

/// A plan of a run against `target` that pushes nothing (the fields a plan does not use keep their
/// defaults).
fn read_only_plan(
    mode: SyncMode,
    source: &SourceArgs,
    target: &TargetArgs,
    selection: &SelectionArgs,
    shell: Arc<Shell>,
) -> anyhow::Result<SyncPlan> {
    let reporting = source.reporting(shell)?;
    let (source_location, mut options) = source.resolve(selection.untagged)?;
    options.object.http = Arc::new(crate::http::Context::new(&crate::http::Limits {
        requests_per_second: source.max_requests_per_second,
        ..Default::default()
    }));
    let (target_url, credentials) = target.resolve()?;
    Ok(SyncPlan {
        mode,
        source: source_location,
        options,
        target: target_url,
        credentials,
        selection: selection.resolve()?,
        override_tags: false,
        dry_run: false,
        push_concurrency: 8,
        chunk_size: DEFAULT_CHUNK_SIZE,
        upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
        reporting,
        in_place: false,
        untagged: selection.untagged,
        delete: false,
        ca_cert: target.ca_cert.clone(),
        journal: None,
        tags_from: None,
    })
}

impl SyncArgs {
    fn run(self, mode: SyncMode, shell: Arc<Shell>) -> anyhow::Result<Outcome> {
        let mut plan = read_only_plan(mode, &self.source, &self.target, &self.selection, shell)?;
        let bytes_per_second = match &self.max_bandwidth {
            Some(rate) => Some(
                crate::http::limit::parse_bytes_per_second(rate).map_err(|e| anyhow::anyhow!("--max-bandwidth {e}"))?,
            ),
            None => None,
        };
        let shard = self.source.shard.as_deref().unwrap_or("all");
        plan.journal = match (self.no_journal, &self.journal) {
            (true, _) => None,
            (false, Some(path)) => Some(path.clone()),
            (false, None) => Some(crate::journal::default_path(&self.source.source, plan.target.as_str(), shard)),
        };
        plan.override_tags = self.override_tags;
        plan.dry_run = self.dry_run;
        plan.push_concurrency = self.push_concurrency;
        plan.chunk_size = self.chunk_size.max(1024 * 1024);
        plan.upload_concurrency = self.upload_concurrency;
        plan.in_place = self.in_place;
        plan.tags_from = self.tags_from.clone();
        plan.delete = self.delete;
        let storage_ceiling = plan.options.list_concurrency + plan.push_concurrency;
        plan.options.object.http = Arc::new(crate::http::Context::new(&crate::http::Limits {
            requests_per_second: self.source.max_requests_per_second,
            bytes_per_second,
            target_ceiling: Some(plan.push_concurrency),
            storage_ceiling: Some(storage_ceiling),
            fixed_window: self.source.fixed_window,
        }));
        run_sync(plan)
    }
}

impl PlanArgs {
    fn run(self, shell: Arc<Shell>) -> anyhow::Result<Outcome> {
        let mut plan = read_only_plan(SyncMode::Sync, &self.source, &self.target, &self.selection, shell)?;
        // A plan counts what would move: only what a client could pull from the source.
        plan.options.deep = true;
        run_plan(plan, self.format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_https_unless_plain_http_is_asked_for() {
        assert_eq!(target_url("harbor.example.com", false).unwrap().as_str(), "https://harbor.example.com/");
        assert!(target_url("http://127.0.0.1:5000", false).is_err());
        assert_eq!(target_url("http://127.0.0.1:5000", true).unwrap().as_str(), "http://127.0.0.1:5000/");
        assert!(target_url("ftp://x", true).is_err());
    }
}
