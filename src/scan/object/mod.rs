//! Scanning a registry in an object store (S3, GCS, Azure Blob) without descending into repositories.
//!
//! 1. Repositories: one listing of `repositories/` with the delimiter `/_` rolls every key of a repository
//!    (`_layers`, `_manifests`, `_uploads` are the only components starting with `_`) into one common
//!    prefix, so every repository at every depth comes out of one paginated listing, 1,000 a page. The
//!    key space is cut into ranges listed concurrently (start-after), split again whenever a listing
//!    slot is free. Stores that do not roll up at `/_` are walked folder by folder with `/` instead.
//! 2. Tags: one listing of `<repo>/_manifests/tags/` gives each tag's `current/link` and its index
//!    entries with their MD5s; the index entry whose `md5("sha256:<hex>")` equals the listed MD5 of
//!    `current/link` is the current digest. The link is read only where no entry matches.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use md5::{Digest as _, Md5};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::check::{layer_link_verdict, revision_link_verdict, Unpullable};
use super::deep::{served, Blobs, Deep, Links, MANIFEST_READ_LIMIT};
use super::{
    ConsumerGone, DiscoveryMode, Emitter, ItemError, RequestCounts, ScanItem, ScanOptions, NO_CURRENT_LINK,
    TAG_LINK_INVALID, TAG_LINK_MISSING,
};
use crate::layout::{self, check_component, check_repository, check_tag, parse_link, Digest};
use crate::shard::{after_group, midpoint, worth_cutting};
use crate::storage::object::{Cloud, ListPage, ListRequest, ObjectBackend, StorageError};

mod checks;
mod discovery;
mod repository;

use super::pool::{run_pool, Pool};
use checks::{ObjectBlobs, ObjectLinks};
use repository::ListedLinks;

/// The delimiter that rolls a whole repository into one common prefix.
const ROLL_UP: &str = "/_";
/// Repositories found but not yet scanned: holds the listing back when tag scans lag behind.
const REPOSITORY_QUEUE: usize = 2048;
/// Keys asked for in the first page of a repository's listing. Most repositories hold a few dozen keys
/// under `_manifests/` (two per tag, one per revision), and some stores answer in time that follows the
/// keys asked for, not the keys found: Garage answers a small prefix 4x faster with 100 than with
/// 1,000 (docs/benchmarks.md). A larger repository pays one more listing, then full pages.
const REPOSITORY_FIRST_PAGE: usize = 100;

/// Why a scan could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ObjectScanError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("no registry found: nothing under {0} (is the root right?)")]
    Empty(String),
}

/// Scans the registry under `root` in `bucket`, every item into `emitter`.
pub async fn scan(
    cloud: Cloud,
    bucket: &str,
    root: &str,
    options: &ScanOptions,
    emitter: &Emitter,
    counts: &Arc<RequestCounts>,
) -> Result<(), ObjectScanError> {
    let store = Arc::new(ObjectBackend::connect(cloud, bucket, &options.object).await?);
    let scanner = Arc::new(Scanner {
        store,
        options: options.clone(),
        emitter: emitter.clone(),
        counts: counts.clone(),
        deep: Deep::default(),
        blob_index: tokio::sync::OnceCell::new(),
    });
    let mut found_any = false;
    for variant in scanner.store.root_variants(root) {
        let repositories_prefix = format!("{variant}{}", layout::repositories_prefix());
        found_any |= scanner.clone().scan_root(repositories_prefix).await?;
    }
    if found_any {
        Ok(())
    } else {
        Err(ObjectScanError::Empty(format!("{bucket}/{root}{}", layout::repositories_prefix())))
    }
}

struct Scanner {
    store: Arc<ObjectBackend>,
    options: ScanOptions,
    emitter: Emitter,
    counts: Arc<RequestCounts>,
    deep: Deep,
    /// Every blob present under `blobs/`, listed once when `--deep` first asks.
    blob_index: tokio::sync::OnceCell<Result<HashSet<Digest>, String>>,
}

/// How repositories are found in this store.
enum Discovery {
    /// The store rolls keys up at `/_`; `splittable` when it honours start-after (ranges can be cut).
    RollUp { first_page: ListPage, splittable: bool },
    /// Folder by folder with `/`.
    Walk,
}

/// A key range of the repositories listing: keys after `after` (exclusive) and before `before`, with the
/// store's token for the page after the last one listed (used where start-after is not honoured).
#[derive(Debug, Clone)]
struct KeyRange {
    after: Option<String>,
    before: Option<String>,
    token: Option<String>,
    /// Keys of this range found on the page that ended at `after` (0 when none was listed yet).
    last_page_entries: usize,
}

impl KeyRange {
    fn contains(&self, key: &str) -> bool {
        self.after.as_deref().is_none_or(|after| key > after)
            && self.before.as_deref().is_none_or(|before| key < before)
    }
}

fn md5_of(text: &str) -> [u8; 16] {
    Md5::digest(text.as_bytes()).into()
}

impl Scanner {
    async fn emit(&self, item: ScanItem) -> Result<(), ConsumerGone> {
        self.emitter.send(item).await
    }

    async fn list(&self, request: ListRequest<'_>) -> Result<ListPage, StorageError> {
        RequestCounts::add(&self.counts.lists, 1);
        let page = self.store.list(&request).await?;
        RequestCounts::add(&self.counts.entries, (page.objects.len() + page.prefixes.len()) as u64);
        Ok(page)
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        RequestCounts::add(&self.counts.reads, 1);
        self.store.read_small(key, layout::MAX_LINK_LEN).await
    }

    /// Scans every repository under `repositories_prefix`; false when nothing is there at all.
    async fn scan_root(self: Arc<Self>, repositories_prefix: String) -> Result<bool, ObjectScanError> {
        let Some(discovery) = self.probe(&repositories_prefix).await? else { return Ok(false) };
        let (repositories, mut found) = mpsc::channel::<String>(REPOSITORY_QUEUE);
        let lister = {
            let scanner = self.clone();
            let prefix = repositories_prefix.clone();
            tokio::spawn(async move { scanner.discover(prefix, discovery, repositories).await })
        };
        // Tag scans, up to --list-concurrency at once, as repositories arrive.
        let slots = Arc::new(Semaphore::new(self.options.list_concurrency));
        let mut scans = JoinSet::new();
        while let Some(repository) = found.recv().await {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            let scanner = self.clone();
            let prefix = repositories_prefix.clone();
            scans.spawn(async move {
                let outcome = scanner.scan_repository(&prefix, &repository).await;
                drop(permit);
                outcome
            });
            while let Some(done) = scans.try_join_next() {
                if done.expect("repository scan panicked").is_err() {
                    found.close();
                }
            }
        }
        while scans.join_next().await.is_some() {}
        lister.await.expect("repository listing panicked");
        Ok(true)
    }
}
