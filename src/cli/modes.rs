//! What each command becomes: the flags turned into a plan (a scan, or a run against a target in one
//! mode), with the run's HTTP context and reporting made here, once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use url::Url;

use super::args::{
    AgainstTarget, ExportArgs, LimitArgs, OutputArgs, PlanArgs, ScanArgs, SelectionArgs, SourceArgs, StatusArgs,
    SyncArgs, TargetArgs, VerifyArgs,
};
use crate::filter::{Glob, NameFilter, NameMapping};
use crate::http::Limits;
use crate::registry::credentials::{self, CredentialSources, Credentials};
use crate::report::shell::Shell;
use crate::run::export::ExportPlan;
use crate::run::scan::ScanPlan;
use crate::run::{Outcome, Reporting};
use crate::scan::ScanOptions;
use crate::shard::Shard;
use crate::storage::object::ObjectOptions;
use crate::storage::Source;
use crate::sync::{Copying, Mode, SyncPlan};

pub fn scan(args: ScanArgs, shell: Arc<Shell>) -> anyhow::Result<ScanPlan> {
    let (source, mut options) = resolve_source(&args.source, &args.limits, args.untagged)?;
    let limits = Limits { storage_ceiling: Some(options.list_concurrency), ..limits(&args.limits) };
    options.object.http = Arc::new(crate::http::Context::new(&limits));
    Ok(ScanPlan {
        source,
        options,
        output: args.inventory,
        format: args.format,
        reporting: reporting(&args.output, shell),
    })
}

pub fn sync(args: SyncArgs, shell: Arc<Shell>) -> anyhow::Result<SyncPlan> {
    let copy = &args.copy;
    let shard = args.run.source.shard.as_deref().unwrap_or("all");
    let mode = |target: &Url| {
        let copying = Copying {
            override_tags: copy.override_tags,
            chunk_size: copy.chunk_size.max(1024 * 1024),
            upload_concurrency: copy.upload_concurrency,
            in_place: copy.in_place,
            journal: match (copy.no_journal, &copy.journal) {
                (true, _) => None,
                (false, Some(path)) => Some(path.clone()),
                (false, None) => Some(crate::journal::default_path(&args.run.source.source, target.as_str(), shard)),
            },
            tags_from: args.tags_from.clone(),
            delete: copy.delete,
        };
        if copy.dry_run {
            Mode::DryRun(copying)
        } else {
            Mode::Sync(copying)
        }
    };
    let pushing = Some(Pushing { tags_at_once: copy.push_concurrency, bytes_per_second: copy.max_bandwidth });
    target_plan(&args.run, mode, pushing, shell)
}

pub fn verify(args: VerifyArgs, shell: Arc<Shell>) -> anyhow::Result<SyncPlan> {
    let checking = Some(Pushing { tags_at_once: args.push_concurrency, bytes_per_second: None });
    target_plan(&args.run, |_| Mode::Verify, checking, shell)
}

pub fn plan(args: PlanArgs, shell: Arc<Shell>) -> anyhow::Result<SyncPlan> {
    let mut plan = target_plan(&args.run, |_| Mode::Plan(args.format), None, shell)?;
    // A plan counts what would move: only what a client could pull from the source.
    plan.options.deep = true;
    Ok(plan)
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExportPlan> {
    let (target, credentials) = resolve_target(&args.target)?;
    let repositories = NameFilter { include: globs(&args.include)?, exclude: globs(&args.exclude)? };
    Ok(ExportPlan { target, credentials, repositories, ca_cert: args.target.ca_cert.clone(), output: args.output })
}

pub fn status(args: StatusArgs) -> anyhow::Result<Outcome> {
    crate::run::status::print(&args.journal)
}

/// How many tags a run against a target handles at once, and the byte rate it may copy at; `None` for a
/// run that sends only the plan's few reads (`plan`).
struct Pushing {
    tags_at_once: usize,
    bytes_per_second: Option<u64>,
}

/// A run against a target in the mode `mode` makes of the target's URL, with its HTTP context: the request-rate limit, and, for a run that
/// handles tags (`pushing`), each side's window (the target's ceiling is the tags in flight; the
/// storage's, the listings plus the blob reads of those tags) and the byte rate.
fn target_plan(
    args: &AgainstTarget,
    mode: impl FnOnce(&Url) -> Mode,
    pushing: Option<Pushing>,
    shell: Arc<Shell>,
) -> anyhow::Result<SyncPlan> {
    let AgainstTarget { source, selection, target, limits: limit_args, output } = args;
    let (source_location, mut options) = resolve_source(source, limit_args, selection.untagged)?;
    let mut limits = limits(limit_args);
    if let Some(pushing) = &pushing {
        limits.target_ceiling = Some(pushing.tags_at_once);
        limits.storage_ceiling = Some(options.list_concurrency + pushing.tags_at_once);
        limits.bytes_per_second = pushing.bytes_per_second;
    }
    options.object.http = Arc::new(crate::http::Context::new(&limits));
    let (target_url, credentials) = resolve_target(target)?;
    Ok(SyncPlan {
        mode: mode(&target_url),
        source: source_location,
        options,
        target: target_url,
        credentials,
        ca_cert: target.ca_cert.clone(),
        selection: resolve_selection(selection)?,
        untagged: selection.untagged,
        push_concurrency: pushing.map_or(1, |pushing| pushing.tags_at_once),
        reporting: reporting(output, shell),
    })
}

fn limits(args: &LimitArgs) -> Limits {
    Limits { requests_per_second: args.max_requests_per_second, fixed_window: args.fixed_window, ..Limits::default() }
}

fn reporting(args: &OutputArgs, shell: Arc<Shell>) -> Reporting {
    Reporting {
        shell,
        quiet: args.quiet,
        progress_interval: Duration::from_secs(args.progress_interval),
        metrics_addr: args.metrics_addr,
    }
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

fn resolve_source(args: &SourceArgs, limits: &LimitArgs, untagged: bool) -> anyhow::Result<(Source, ScanOptions)> {
    let source = Source::parse(&args.source).with_context(|| format!("source {:?}", args.source))?;
    let list_concurrency = args.list_concurrency.unwrap_or_else(|| default_list_concurrency(&source));
    let shard = match &args.shard {
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
        deep: args.deep,
        object: ObjectOptions {
            endpoint: args.endpoint.clone(),
            anonymous: args.anonymous,
            stall_timeout: limits.stall_timeout.map(Duration::from_secs),
            http: Default::default(),
        },
        page_size: args.list_page_size,
        discovery: args.discovery,
        shard,
        finished: None,
        known: None,
    };
    Ok((source, options))
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

/// The target's URL and the credentials for it.
fn resolve_target(args: &TargetArgs) -> anyhow::Result<(Url, Option<Credentials>)> {
    let target = target_url(&args.target, args.plain_http)?;
    let host = match target.port() {
        Some(port) => format!("{}:{port}", target.host_str().unwrap_or_default()),
        None => target.host_str().unwrap_or_default().to_string(),
    };
    let credentials = credentials::resolve(&CredentialSources {
        username: args.username.clone(),
        password_file: args.password_file.clone(),
        password_stdin: args.password_stdin,
        registry_host: host,
    })?;
    Ok((target, credentials))
}

fn globs(patterns: &[String]) -> anyhow::Result<Vec<Glob>> {
    patterns.iter().map(|p| Glob::new(p).map_err(anyhow::Error::from)).collect()
}

fn resolve_selection(args: &SelectionArgs) -> anyhow::Result<crate::sync::Selection> {
    Ok(crate::sync::Selection {
        repositories: NameFilter { include: globs(&args.include)?, exclude: globs(&args.exclude)? },
        tags: NameFilter { include: globs(&args.include_tag)?, exclude: globs(&args.exclude_tag)? },
        mapping: NameMapping::new(&args.dest_namespace, args.flatten)?,
    })
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
