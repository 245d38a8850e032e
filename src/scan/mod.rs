//! The scan: storage keys in, a stream of repositories, tags and per-item errors out.
//!
//! The walk of a backend (`fs`) produces `ScanItem`s into a bounded channel; whoever consumes them (the
//! inventory writer, later the copy engine) sees them as they are found, so nothing waits for the end of
//! the listing and memory does not grow with the size of the registry.

pub mod check;
pub mod deep;
pub mod fs;
pub mod object;
mod pool;
pub mod walker;

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc::{channel, Receiver, Sender};

use serde::Serialize;

use crate::layout::Digest;
use crate::storage::Source;

/// One thing the scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanItem {
    /// A repository folder (found before its tags).
    Repository { name: String },
    /// Every tag (and untagged manifest) of this repository has been reported, and its problems.
    RepositoryEnd { name: String },
    /// A repository an earlier run finished (`ScanOptions::finished` says so): its tags were not listed.
    Resumed { name: String },
    /// A tag and the digest its `current/link` names.
    Tag { repository: String, tag: String, digest: Digest },
    /// A manifest revision that no tag of its repository points at (only with `untagged`).
    Untagged { repository: String, digest: Digest },
    /// Something that could not be read or understood; the scan goes on.
    Error(ItemError),
    /// Something odd but harmless, reported so that an operator can look (e.g. a tag folder with no
    /// `current/link`, which the registry itself lists but cannot resolve).
    Warning(ItemError),
}

/// A problem with one item, naming the storage key it was found at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemError {
    /// The storage key (relative to the storage root) that the problem is about.
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// What is wrong, in words.
    #[serde(rename = "error")]
    pub message: String,
    /// Why a tag is not served or not pullable, as a short stable name (counted in the summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl ItemError {
    pub fn new(key: impl Into<String>, message: impl std::fmt::Display) -> ItemError {
        ItemError { key: key.into(), repository: None, tag: None, message: message.to_string(), reason: None }
    }

    pub fn in_repository(mut self, repository: &str) -> ItemError {
        self.repository = Some(repository.to_string());
        self
    }

    pub fn for_tag(mut self, tag: &str) -> ItemError {
        self.tag = Some(tag.to_string());
        self
    }

    /// Names the reason a tag is not listed, for counting.
    pub fn because(mut self, reason: &'static str) -> ItemError {
        self.reason = Some(reason);
        self
    }

    /// The error record of a tag (or, without one, an untagged manifest) of `repository` that the
    /// registry would not serve, or a client could not pull, named by the key the reason is about.
    pub fn unpullable(repository: &str, tag: Option<&str>, digest: &Digest, reason: &check::Unpullable) -> ItemError {
        let item = match tag {
            Some(tag) => format!("{repository}:{tag} ({digest})"),
            None => format!("{repository}@{digest}"),
        };
        let error = ItemError::new(deep::reason_key(reason, repository, digest), format!("{item}: {reason}"))
            .in_repository(repository)
            .because(reason.reason());
        match tag {
            Some(tag) => error.for_tag(tag),
            None => error,
        }
    }
}

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A tag folder without `current/link`: the registry lists the tag but answers "manifest unknown".
pub const NO_CURRENT_LINK: &str =
    "manifest unknown: the tag folder has no current/link (a half-written or half-deleted tag)";
/// Reasons a tag is not listed, before its manifest is looked at (see `check::Unpullable` for the rest).
pub const TAG_LINK_MISSING: &str = "tag link missing";
pub const TAG_LINK_INVALID: &str = "tag link invalid";

/// What a scan should do.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// How many folders (or listings) are read at once.
    pub list_concurrency: usize,
    /// Also report manifest revisions that no tag points at.
    pub untagged: bool,
    /// Check that each tag is pullable (`scan --deep`), not only served: read every manifest once per
    /// digest, check its blobs and children.
    pub deep: bool,
    /// How to reach an object store (endpoint, anonymous access); unused for filesystems.
    pub object: crate::storage::object::ObjectOptions,
    /// Keys asked for per listing page on an object store (S3 answers at most 1,000, Azure 5,000).
    pub page_size: usize,
    /// How repositories are found in an object store.
    pub discovery: DiscoveryMode,
    /// This machine's share: only the repositories it owns are scanned (their tags listed, reported).
    pub shard: crate::shard::Shard,
    /// Repositories an earlier run finished: reported as `Resumed`, their tags not listed.
    pub finished: Option<FinishedRepositories>,
    /// Tags the journal holds as finished at the digest found (a catch-up's unchanged tags): the default
    /// scan takes them without the served check (their manifest was read and verified by the copy that
    /// finished them), so that a catch-up costs the listing.
    pub known: Option<KnownTags>,
}

/// The question `KnownTags` asks: (source repository, tag, digest) finished already?
pub type IsKnown = dyn Fn(&str, &str, &Digest) -> bool + Send + Sync;

/// Tells whether the journal holds (repository, tag) as finished at this digest.
#[derive(Clone)]
pub struct KnownTags(pub std::sync::Arc<IsKnown>);

impl std::fmt::Debug for KnownTags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KnownTags")
    }
}

/// Tells whether an earlier run finished a repository (the journal answers).
#[derive(Clone)]
pub struct FinishedRepositories(pub std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for FinishedRepositories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinishedRepositories")
    }
}

impl ScanOptions {
    /// Whether the served check of this tag can be skipped: not `--deep`, and the journal has it at this
    /// digest already.
    pub fn needs_check(&self, repository: &str, tag: &str, digest: &Digest) -> bool {
        self.deep || !self.known.as_ref().is_some_and(|known| (known.0)(repository, tag, digest))
    }

    /// Whether this repository's tags can be skipped: an earlier run finished it.
    pub fn is_finished(&self, repository: &str) -> bool {
        self.finished.as_ref().is_some_and(|finished| (finished.0)(repository))
    }
}

/// How an object-store scan finds repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DiscoveryMode {
    /// Roll keys up at `/_` where the store does (checked on the first page), else walk folders.
    #[default]
    Auto,
    /// Walk folder by folder with the delimiter `/` (one listing per folder), whatever the store does.
    Walk,
}

/// Storage requests made by a scan, counted as they happen.
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// Folders listed (filesystem) or list pages fetched (object stores).
    pub lists: AtomicU64,
    /// Small objects read (link files).
    pub reads: AtomicU64,
    /// Entries (files, folders, keys) seen in listings.
    pub entries: AtomicU64,
}

impl RequestCounts {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The channel end a walk writes into, from threads (`emit`) or async tasks (`send`). Sending fails once
/// the consumer has gone away (for example the output pipe closed), which tells the walk to stop.
#[derive(Clone)]
pub struct Emitter {
    sender: Sender<ScanItem>,
}

/// The consumer has gone away; the walk should stop.
#[derive(Debug)]
pub struct ConsumerGone;

impl Emitter {
    /// Sends from a plain thread, waiting while the channel is full.
    pub fn emit(&self, item: ScanItem) -> Result<(), ConsumerGone> {
        self.sender.blocking_send(item).map_err(|_| ConsumerGone)
    }

    /// Sends from an async task, waiting while the channel is full.
    pub async fn send(&self, item: ScanItem) -> Result<(), ConsumerGone> {
        self.sender.send(item).await.map_err(|_| ConsumerGone)
    }
}

/// How many found items may wait for the consumer before the walk is held back.
const CHANNEL_CAPACITY: usize = 4096;

/// Starts scanning `source` on background threads. Items arrive on the returned receiver as they are found;
/// the receiver ends when the scan is over. The join handle gives the fatal error, if any (a source that
/// cannot be opened at all); per-item problems come through the channel as `ScanItem::Error`.
pub fn start(
    source: &Source,
    options: ScanOptions,
    counts: std::sync::Arc<RequestCounts>,
) -> (Receiver<ScanItem>, std::thread::JoinHandle<std::io::Result<()>>) {
    let (sender, receiver) = channel(CHANNEL_CAPACITY);
    let emitter = Emitter { sender };
    let source = source.clone();
    // An object store is listed by tasks of the process's runtime; this thread only waits for them.
    let runtime = tokio::runtime::Handle::current();
    let handle = std::thread::Builder::new()
        .name("scan".into())
        .spawn(move || match &source {
            Source::Filesystem(root) => fs::scan(root, &options, &emitter, &counts),
            Source::Object { cloud, bucket, root } => runtime
                .block_on(object::scan(*cloud, bucket, root, &options, &emitter, &counts))
                .map_err(|error| std::io::Error::other(error.to_string())),
        })
        .expect("spawning the scan thread");
    (receiver, handle)
}
