//! What each command takes, in help groups: source, selection and mapping, target, run, output.

use std::path::PathBuf;

use clap::Args;

use crate::copy::{DEFAULT_CHUNK_SIZE, DEFAULT_UPLOAD_CONCURRENCY};
use crate::report::log::LogFormat;
use crate::run::inventory::Format;
use crate::scan::DiscoveryMode;
use crate::shard::Shard;
use crate::sync::PlanFormat;

#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Also list manifest revisions that no tag points at (index children, referrers, untagged images).
    #[arg(long, help_heading = "Selection and mapping")]
    pub untagged: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Write the inventory here instead of standard output.
    #[arg(long = "output", short = 'o', value_name = "FILE", help_heading = "Output")]
    pub inventory: Option<PathBuf>,
    /// The inventory's format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl, help_heading = "Output")]
    pub format: Format,
}

/// What every run against a target takes: the source, what of it, the target, limits and output.
#[derive(Debug, Args)]
pub struct AgainstTarget {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub run: AgainstTarget,
    /// With --untagged: give each manifest found by digest the tags this file names for it (the lines
    /// `rehydrate export-tags` wrote), for a rebuild of a Harbor 2.15+ whose storage holds no tags.
    #[arg(long, value_name = "FILE", requires = "untagged", help_heading = "Selection and mapping")]
    pub tags_from: Option<PathBuf>,
    #[command(flatten)]
    pub copy: CopyArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub run: AgainstTarget,
    /// How many tags are checked at once; also the most requests in flight to the target.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = at_least_one, help_heading = "Run")]
    pub push_concurrency: usize,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub run: AgainstTarget,
    /// How the plan is written on standard output.
    #[arg(long, value_enum, default_value_t = PlanFormat::Table, help_heading = "Output")]
    pub format: PlanFormat,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Export only repositories matching this doublestar glob (repeatable): `team-a/**`.
    #[arg(long = "include", value_name = "GLOB", help_heading = "Selection and mapping")]
    pub include: Vec<String>,
    /// Skip repositories matching this glob (repeatable).
    #[arg(long = "exclude", value_name = "GLOB", help_heading = "Selection and mapping")]
    pub exclude: Vec<String>,
    /// Write here (a complete file, or the previous one left in place) instead of standard output.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The journal file (`sync` prints its path at the end of each run).
    #[arg(long, value_name = "FILE")]
    pub journal: PathBuf,
}

/// Where the source storage is and how to list it.
#[derive(Debug, Args)]
#[command(next_help_heading = "Source")]
pub struct SourceArgs {
    /// The storage root, the place that holds docker/registry/v2: a path or file:///path, s3://bucket/root,
    /// gs://bucket/root or az://container/root.
    pub source: String,
    /// Check that every tag is pullable, not only served: read each manifest once per digest, check that
    /// every blob it names is present and linked in the repository, and an index's children likewise.
    /// Each tag that is not gets an error record with the first reason (`plan` always does this).
    #[arg(long)]
    pub deep: bool,
    /// How many listings run at once [default: 4 per core on a filesystem, 32 on an object store].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub list_concurrency: Option<usize>,
    /// Object store endpoint (MinIO, Ceph, an emulator), e.g. http://127.0.0.1:9000 [env: AWS_ENDPOINT_URL,
    /// STORAGE_EMULATOR_HOST or AZURE_STORAGE_ENDPOINT, by cloud].
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Send no credentials to the object store (public buckets).
    #[arg(long)]
    pub anonymous: bool,
    /// Keys per listing page on an object store.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = at_least_one)]
    pub list_page_size: usize,
    /// How repositories are found in an object store: `auto` rolls keys up at `/_` where the store allows
    /// it; `walk` lists folder by folder (for stores that misbehave with string delimiters).
    #[arg(long, value_enum, default_value_t = DiscoveryMode::Auto)]
    pub discovery: DiscoveryMode,
    /// Do only this machine's share: `K/N` (shard K of N, from 0), or `N` with K from JOB_COMPLETION_INDEX
    /// (Kubernetes Indexed Jobs) or AWS_BATCH_JOB_ARRAY_INDEX. The N runs together do exactly what one
    /// run does, each repository in exactly one of them.
    #[arg(long, value_name = "K/N", value_parser = shard_spec)]
    pub shard: Option<String>,
}

/// How hard the run may press on the storage and the target.
#[derive(Debug, Args)]
#[command(next_help_heading = "Run")]
pub struct LimitArgs {
    /// Seconds an answer (from the storage or the target) may stay silent before its request is
    /// abandoned and tried again [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub stall_timeout: Option<u64>,
    /// At most this many HTTP requests per second, storage and target together.
    #[arg(long, value_name = "N", value_parser = above_zero)]
    pub max_requests_per_second: Option<f64>,
    /// Keep as many requests in flight as the concurrency flags allow, whatever the servers say. By
    /// default each side's window starts small, grows while answers come, and halves when the server
    /// pushes back (429, 503, resets).
    #[arg(long)]
    pub fixed_window: bool,
}

/// How the run tells its operator what happens.
#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Print only the summary, not each problem as it is found.
    #[arg(long, short)]
    pub quiet: bool,
    /// How messages, progress and summaries are written on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Also log every HTTP request (method, URL without its query, status, time; secret headers
    /// redacted) and every retry.
    #[arg(long, short)]
    pub verbose: bool,
    /// When standard error is not a terminal, write a progress line this often (0: never). On a
    /// terminal, a status line is kept up to date instead.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub progress_interval: u64,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464), at /metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// The target registry and how to reach it.
#[derive(Debug, Args)]
#[command(next_help_heading = "Target")]
pub struct TargetArgs {
    /// The target registry: https://harbor.example.com (a bare host means https).
    pub target: String,
    /// Allow a plain-HTTP target (http://...). Without it, only HTTPS is spoken.
    #[arg(long)]
    pub plain_http: bool,
    /// Trust the CA certificate(s) in this PEM file for the target's HTTPS, beside the system's. The
    /// target's certificate is always verified.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// User name on the target [env: REHYDRATE_TARGET_USERNAME]. The password comes from
    /// REHYDRATE_TARGET_PASSWORD, --password-file, --password-stdin, or the Docker config (docker login).
    #[arg(long)]
    pub username: Option<String>,
    /// Read the target password from this file.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Read the target password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Which repositories and tags are taken, and their names on the target.
#[derive(Debug, Args)]
#[command(next_help_heading = "Selection and mapping")]
pub struct SelectionArgs {
    /// Copy only repositories matching this doublestar glob (repeatable): `library/**`, `{a,b}/*`.
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip repositories matching this glob (repeatable).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Copy only tags matching this glob (repeatable).
    #[arg(long = "include-tag", value_name = "GLOB")]
    pub include_tag: Vec<String>,
    /// Skip tags matching this glob (repeatable).
    #[arg(long = "exclude-tag", value_name = "GLOB")]
    pub exclude_tag: Vec<String>,
    /// Put every repository under this namespace on the target (Harbor's destination namespace).
    #[arg(long, value_name = "NAMESPACE", default_value = "")]
    pub dest_namespace: String,
    /// With --dest-namespace: -1 keeps only the last name component, 0 the whole name, N drops the first N
    /// components (Harbor's dest_namespace_replace_count).
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    pub flatten: i32,
    /// Also take every manifest no tag points at, by digest (buckets written by Harbor 2.15 or later
    /// hold no tags at all).
    #[arg(long)]
    pub untagged: bool,
}

/// How a sync copies, and what it remembers.
#[derive(Debug, Args)]
#[command(next_help_heading = "Run")]
pub struct CopyArgs {
    /// The journal of finished tags [default: under $XDG_STATE_HOME/rehydrate, one per source, target
    /// and shard]. After a crash or a kill, the same command carries on from it.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Keep no journal.
    #[arg(long, conflicts_with = "journal")]
    pub no_journal: bool,
    /// Replace target tags that point at another digest (by default they are left alone and reported).
    #[arg(long = "override")]
    pub override_tags: bool,
    /// Print what would be created and pushed, and push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete from the target the tags gone from the source since rehydrate pushed them: only tags the
    /// journal says rehydrate pushed, and only while they still hold the digest it pushed (without it,
    /// such tags are reported and kept).
    #[arg(long, conflicts_with = "no_journal")]
    pub delete: bool,
    /// At most this many blob bytes per second copied into the target: 50M, 1G (powers of 1024).
    #[arg(long, value_name = "RATE", value_parser = crate::http::limit::parse_bytes_per_second)]
    pub max_bandwidth: Option<u64>,
    /// How many tags are copied at once; also the most requests in flight to the target (the ceiling
    /// of its adaptive window).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = at_least_one)]
    pub push_concurrency: usize,
    /// Blobs larger than this are uploaded in PATCHes of this many bytes (streamed: no memory cost; a
    /// request cut in the middle is resumed where the target stopped). At least 1 MiB.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u64,
    /// How many blob bodies are uploaded at once across all tags: the memory budget of the copy, about
    /// 1 MiB each (16: about 16 MiB).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_UPLOAD_CONCURRENCY, value_parser = at_least_one)]
    pub upload_concurrency: usize,
    /// Disaster recovery: the target (a Harbor that lost its database) serves this very storage. Each
    /// manifest is PUT first, without HEADing or uploading blobs; blobs are sent only where the target
    /// answers MANIFEST_BLOB_UNKNOWN.
    #[arg(long)]
    pub in_place: bool,
}

/// A count that must be at least 1 (checked while parsing: a wrong value exits 2 with the usage line).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A rate that must be above zero.
fn above_zero(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 => Ok(rate),
        Ok(_) => Err("must be above zero".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// A `--shard` value whose form is right (`K/N` with K < N, or `N` >= 1); K of a bare `N` comes from the
/// environment later.
fn shard_spec(text: &str) -> Result<String, String> {
    Shard::parse(text, Some("0")).map(|_| text.to_string()).map_err(|e| e.to_string())
}
