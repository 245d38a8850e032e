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
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
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

pub fn scan(
    runtime: &tokio::runtime::Handle,
    cloud: Cloud,
    bucket: &str,
    root: &str,
    options: &ScanOptions,
    emitter: &Emitter,
    counts: &Arc<RequestCounts>,
) -> std::io::Result<()> {
    runtime
        .block_on(scan_async(cloud, bucket, root, options, emitter, counts))
        .map_err(|error| std::io::Error::other(error.to_string()))
}

async fn scan_async(
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

    /// Lists the first page with the `/_` delimiter and decides how to find repositories.
    async fn probe(&self, prefix: &str) -> Result<Option<Discovery>, StorageError> {
        let first_page = self
            .list(ListRequest {
                prefix,
                delimiter: Some(ROLL_UP),
                max_keys: Some(self.options.page_size),
                ..Default::default()
            })
            .await?;
        if first_page.prefixes.is_empty() && first_page.objects.is_empty() {
            return Ok(None);
        }
        if self.options.discovery == DiscoveryMode::Walk {
            return Ok(Some(Discovery::Walk));
        }
        let rolls_up = match first_page.prefixes.first() {
            None => false,
            Some(_) if first_page.prefixes.iter().all(|p| p.ends_with(ROLL_UP)) => true,
            // Some stores (s3s, fake-gcs-server) return the prefix cut after its first `/`: it still rolls
            // up at `/_` if the keys under it start with `_`.
            Some(first) if first.ends_with('/') => {
                let group = format!("{first}_");
                let page = self.list(ListRequest { prefix: &group, max_keys: Some(1), ..Default::default() }).await?;
                !page.objects.is_empty()
            }
            Some(_) => false,
        };
        if !rolls_up {
            return Ok(Some(Discovery::Walk));
        }
        let splittable = match (&first_page.next_token, first_page.prefixes.last()) {
            (Some(_), Some(last)) => {
                let after = after_group(&group_key(last));
                let page = self
                    .list(ListRequest {
                        prefix,
                        delimiter: Some(ROLL_UP),
                        start_after: Some(&after),
                        max_keys: Some(1),
                        ..Default::default()
                    })
                    .await?;
                page.prefixes.iter().chain(page.objects.iter().map(|o| &o.key)).all(|key| key.as_str() > after.as_str())
            }
            _ => false,
        };
        Ok(Some(Discovery::RollUp { first_page, splittable }))
    }

    /// Finds every repository and sends its name; errors become error items.
    async fn discover(self: Arc<Self>, prefix: String, discovery: Discovery, found: mpsc::Sender<String>) {
        let workers = self.options.list_concurrency;
        match discovery {
            Discovery::RollUp { first_page, splittable } => {
                let first = KeyRange { after: None, before: None, token: None, last_page_entries: 0 };
                let Some(rest) = self.take_page(&prefix, &first, first_page, &found).await else { return };
                let scanner = self.clone();
                run_pool(workers, rest.into_iter().collect(), move |range, pool| {
                    let scanner = scanner.clone();
                    let prefix = prefix.clone();
                    let found = found.clone();
                    async move { scanner.list_range(&prefix, range, splittable, &pool, &found).await }
                })
                .await;
            }
            Discovery::Walk => {
                let scanner = self.clone();
                run_pool(workers, vec![prefix.clone()], move |folder, pool| {
                    let scanner = scanner.clone();
                    let found = found.clone();
                    let prefix = prefix.clone();
                    async move { scanner.walk_folder(&prefix, folder, &pool, &found).await }
                })
                .await;
            }
        }
    }

    /// Takes the repositories of one page of `range`; returns the rest of the range, if any.
    async fn take_page(
        &self,
        prefix: &str,
        range: &KeyRange,
        page: ListPage,
        found: &mpsc::Sender<String>,
    ) -> Option<Option<KeyRange>> {
        let mut last: Option<String> = None;
        let mut passed_end = false;
        let mut entries = 0;
        for raw in &page.prefixes {
            let group = group_key(raw);
            if !range.contains(&group) {
                passed_end |= range.before.as_deref().is_some_and(|before| group.as_str() >= before);
                continue;
            }
            entries += 1;
            let name = &group[prefix.len()..group.len() - ROLL_UP.len()];
            if !name.is_empty() && self.found_repository(prefix, name, found).await.is_err() {
                return None;
            }
            last = last.max(Some(after_group(&group)));
        }
        for object in &page.objects {
            passed_end |= range.before.as_deref().is_some_and(|before| object.key.as_str() >= before);
            if range.contains(&object.key) {
                entries += 1;
                last = last.max(Some(object.key.clone()));
            }
        }
        if page.next_token.is_none() || passed_end {
            return Some(None);
        }
        let after = last.or(range.after.clone());
        Some(Some(KeyRange { after, before: range.before.clone(), token: page.next_token, last_page_entries: entries }))
    }

    /// Checks a repository name and hands it to the tag scans.
    async fn found_repository(
        &self,
        prefix: &str,
        name: &str,
        found: &mpsc::Sender<String>,
    ) -> Result<(), ConsumerGone> {
        if !self.options.shard.owns(name) {
            return Ok(());
        }
        match check_repository(name) {
            Ok(()) => found.send(name.to_string()).await.map_err(|_| ConsumerGone),
            Err(error) => self.emit(ScanItem::Error(ItemError::new(format!("{prefix}{name}/"), error))).await,
        }
    }

    /// Lists `range` page by page; whenever a listing slot is free and the rest of the range looks large
    /// enough (`worth_cutting`, from the density of the page just listed), cuts the rest in two.
    ///
    /// Pages follow each other by start-after, so that a range can be cut anywhere. On a store that does
    /// not honour start-after (checked once in the probe, and again whenever a page brings nothing new),
    /// pages follow the store's own tokens instead, and the range is never cut.
    async fn list_range(
        &self,
        prefix: &str,
        mut range: KeyRange,
        splittable: bool,
        pool: &Pool<KeyRange>,
        found: &mpsc::Sender<String>,
    ) {
        let mut by_token = !splittable && range.token.is_some();
        // Where the page that ended at `range.after` started (the first range's first page: at the start).
        let mut page_start: Option<String> = None;
        loop {
            if !by_token && pool.has_free_slot() {
                if let Some(cut) = self.cut_point(prefix, page_start.as_deref(), &range) {
                    let rest = KeyRange {
                        after: Some(cut.clone()),
                        before: range.before.clone(),
                        token: None,
                        last_page_entries: 0,
                    };
                    // Refused (the queue is full): this range stays whole.
                    if pool.offer(rest).is_none() {
                        range.before = Some(cut);
                    }
                }
            }
            page_start = range.after.clone();
            let request = ListRequest {
                prefix,
                delimiter: Some(ROLL_UP),
                start_after: if by_token { None } else { range.after.as_deref() },
                page_token: if by_token { range.token.as_deref() } else { None },
                max_keys: Some(self.options.page_size),
            };
            let page = match self.list(request).await {
                Ok(page) => page,
                Err(error) => {
                    let key = format!("{prefix} (after {})", range.after.as_deref().unwrap_or("the start"));
                    let _ = self.emit(ScanItem::Error(ItemError::new(key, error))).await;
                    return;
                }
            };
            let Some(Some(rest)) = self.take_page(prefix, &range, page, found).await else { return };
            if rest.after == range.after && !by_token {
                // Nothing new after the start-after key: the store ignored it. Follow its tokens, which is
                // possible from the start of the key space only; a cut range cannot be finished.
                if range.before.is_some() {
                    let key = format!("{prefix} (after {})", range.after.as_deref().unwrap_or("the start"));
                    let message = "the store ignored start-after in a cut key range: repositories in it may be missing (use --list-concurrency 1)";
                    let _ = self.emit(ScanItem::Error(ItemError::new(key, message))).await;
                    return;
                }
                if rest.token.is_none() {
                    return;
                }
                by_token = true;
            }
            range = rest;
        }
    }

    /// Where to cut the rest of `range`, if it is worth it.
    fn cut_point(&self, prefix: &str, page_start: Option<&str>, range: &KeyRange) -> Option<String> {
        let after = range.after.as_deref()?;
        let before = range.before.as_deref();
        worth_cutting(prefix, page_start, after, before, range.last_page_entries, self.options.page_size)
            .then(|| midpoint(prefix, after, before))
            .flatten()
    }

    /// The `/` walk for stores that do not roll up at `/_`: lists one folder's children.
    async fn walk_folder(&self, prefix: &str, folder: String, pool: &Pool<String>, found: &mpsc::Sender<String>) {
        let mut token: Option<String> = None;
        let mut is_repository = false;
        loop {
            let request = ListRequest {
                prefix: &folder,
                delimiter: Some("/"),
                page_token: token.as_deref(),
                max_keys: Some(self.options.page_size),
                ..Default::default()
            };
            let page = match self.list(request).await {
                Ok(page) => page,
                Err(error) => {
                    let _ = self.emit(ScanItem::Error(ItemError::new(folder.clone(), error))).await;
                    return;
                }
            };
            for child in &page.prefixes {
                let Some(name) = child.strip_prefix(folder.as_str()).map(|c| c.trim_end_matches('/')) else { continue };
                match layout::classify_child(name.as_bytes()) {
                    layout::ChildKind::RepositoryMarker => is_repository = folder.len() > prefix.len(),
                    layout::ChildKind::Reserved => {}
                    layout::ChildKind::Component => match check_component(name) {
                        Ok(()) => {
                            if let Some(child) = pool.offer(format!("{folder}{name}/")) {
                                Box::pin(self.walk_folder(prefix, child, pool, found)).await;
                            }
                        }
                        Err(error) => {
                            if self.emit(ScanItem::Error(ItemError::new(child.clone(), error))).await.is_err() {
                                return;
                            }
                        }
                    },
                }
            }
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        if is_repository {
            let name = folder[prefix.len()..].trim_end_matches('/');
            let _ = self.found_repository(prefix, name, found).await;
        }
    }

    /// Scans one repository's tags (and untagged revisions when asked) from one listing of its
    /// `_manifests/` (of all its keys with `--deep`, `_layers` included).
    async fn scan_repository(&self, prefix: &str, repository: &str) -> Result<(), ConsumerGone> {
        if self.options.is_finished(repository) {
            return self.emit(ScanItem::Resumed { name: repository.to_string() }).await;
        }
        self.emit(ScanItem::Repository { name: repository.to_string() }).await?;
        let repository_prefix = format!("{prefix}{repository}/");
        let listing_prefix = format!("{repository_prefix}{}", if self.options.deep { "_" } else { "_manifests/" });
        let keys = match self.list_all(&listing_prefix, REPOSITORY_FIRST_PAGE).await {
            Ok(keys) => keys,
            Err(error) => {
                let problem = ItemError::new(&listing_prefix, error).in_repository(repository);
                return self.emit(ScanItem::Error(problem)).await;
            }
        };
        let tags_prefix = format!("{repository_prefix}_manifests/tags/");
        let listed = ListedLinks::group(&repository_prefix, &keys);
        let links = ObjectLinks { scanner: self, repository_prefix, listed };
        let blobs =
            ObjectBlobs { scanner: self, root: prefix.strip_suffix(&layout::repositories_prefix()).unwrap_or("") };
        let mut tagged = HashSet::new();
        for (tag, tag_keys) in group_tag_keys(&tags_prefix, keys) {
            let Some(digest) = self.resolve_tag(&tags_prefix, repository, &tag, tag_keys).await? else { continue };
            tagged.insert(digest.clone());
            let verdict = match self.options.needs_check(repository, &tag, &digest) {
                true => self.check(&links, &blobs, &digest).await,
                false => Ok(()),
            };
            match verdict {
                Ok(()) => self.emit(ScanItem::Tag { repository: repository.to_string(), tag, digest }).await?,
                Err(reason) => {
                    self.emit(ScanItem::Error(ItemError::unpullable(repository, Some(&tag), &digest, &reason))).await?
                }
            }
        }
        if self.options.untagged {
            self.scan_untagged(repository, &links, &blobs, &tagged).await?;
        }
        self.emit(ScanItem::RepositoryEnd { name: repository.to_string() }).await
    }

    /// Whether the registry would serve the manifest (or, with `--deep`, a client could pull it). The
    /// default check costs no request where the store lists MD5s: the revision link is in the listing.
    async fn check(&self, links: &ObjectLinks<'_>, blobs: &ObjectBlobs<'_>, digest: &Digest) -> Result<(), Unpullable> {
        match self.options.deep {
            true => self.deep.pullable(links, blobs, digest).await,
            false => served(links, blobs, digest, false).await,
        }
    }

    /// Every object under `prefix`, page after page; the first page asks for at most `first_page` keys.
    async fn list_all(
        &self,
        prefix: &str,
        first_page: usize,
    ) -> Result<Vec<crate::storage::object::ListedObject>, StorageError> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page_size =
                if token.is_none() { first_page.min(self.options.page_size) } else { self.options.page_size };
            let page = self
                .list(ListRequest {
                    prefix,
                    page_token: token.as_deref(),
                    max_keys: Some(page_size),
                    ..Default::default()
                })
                .await?;
            objects.extend(page.objects);
            token = page.next_token;
            if token.is_none() {
                return Ok(objects);
            }
        }
    }

    /// The digest a tag points at: from the listed MD5 of `current/link` matched against the index
    /// entries, else by reading the link. `None` when there is nothing to report (problems are emitted).
    async fn resolve_tag(
        &self,
        tags_prefix: &str,
        repository: &str,
        tag: &str,
        keys: TagKeys,
    ) -> Result<Option<Digest>, ConsumerGone> {
        let link_key = format!("{tags_prefix}{tag}/current/link");
        let problem =
            |message: &dyn std::fmt::Display| ItemError::new(&link_key, message).in_repository(repository).for_tag(tag);
        if let Err(error) = check_tag(tag) {
            return self.emit(ScanItem::Error(problem(&error))).await.map(|_| None);
        }
        let Some(current_md5) = keys.current else {
            let error = problem(&NO_CURRENT_LINK).because(TAG_LINK_MISSING);
            return self.emit(ScanItem::Error(error)).await.map(|_| None);
        };
        if let Some(md5) = current_md5 {
            if let Some(digest) = keys.index.into_iter().find(|digest| md5_of(digest.as_str()) == md5) {
                return Ok(Some(digest));
            }
        }
        match self.read(&link_key).await {
            Ok(Some(content)) => match parse_link(&content) {
                Ok(digest) => Ok(Some(digest)),
                Err(error) => self.emit(ScanItem::Error(problem(&error).because(TAG_LINK_INVALID))).await.map(|_| None),
            },
            Ok(None) => self
                .emit(ScanItem::Warning(problem(&"current/link vanished while scanning: skipped")))
                .await
                .map(|_| None),
            Err(error) => self.emit(ScanItem::Error(problem(&error))).await.map(|_| None),
        }
    }

    /// Reports revisions no tag points at, from the listing already made: a revision's digest is its
    /// key, confirmed by the listed MD5 of its link or by reading it.
    async fn scan_untagged(
        &self,
        repository: &str,
        links: &ObjectLinks<'_>,
        blobs: &ObjectBlobs<'_>,
        tagged: &HashSet<Digest>,
    ) -> Result<(), ConsumerGone> {
        for (key, error) in &links.listed.bad_keys {
            self.emit(ScanItem::Error(ItemError::new(key, error).in_repository(repository))).await?;
        }
        for digest in links.listed.revisions.keys().filter(|digest| !tagged.contains(*digest)) {
            match self.check(links, blobs, digest).await {
                Ok(()) => {
                    let item = ScanItem::Untagged { repository: repository.to_string(), digest: digest.clone() };
                    self.emit(item).await?
                }
                // Deleted between the listing and the read.
                Err(Unpullable::RevisionLinkMissing) => {}
                Err(reason) => {
                    self.emit(ScanItem::Error(ItemError::unpullable(repository, None, digest, &reason))).await?
                }
            }
        }
        Ok(())
    }
}

/// The links of one repository found in its listing: each digest with the listed MD5 of its link.
#[derive(Default)]
struct ListedLinks {
    revisions: BTreeMap<Digest, Option<[u8; 16]>>,
    layers: BTreeMap<Digest, Option<[u8; 16]>>,
    /// Revision keys that name no digest (`sha256/garbage/link`), with the reason.
    bad_keys: Vec<(String, String)>,
}

impl ListedLinks {
    /// Picks the revision and layer links out of a listing of `<repository>/_manifests/` or `<repository>/_`.
    fn group(repository_prefix: &str, keys: &[crate::storage::object::ListedObject]) -> ListedLinks {
        let mut links = ListedLinks::default();
        for object in keys {
            let Some(rest) = object.key.strip_prefix(repository_prefix) else { continue };
            let (table, path) = if let Some(path) = rest.strip_prefix("_manifests/revisions/") {
                (&mut links.revisions, path)
            } else if let Some(path) = rest.strip_prefix("_layers/") {
                (&mut links.layers, path)
            } else {
                continue;
            };
            let Some((algorithm, hex)) = path.strip_suffix("/link").and_then(|p| p.split_once('/')) else { continue };
            match Digest::parse(&format!("{algorithm}:{hex}")) {
                Ok(digest) => {
                    table.insert(digest, object.md5);
                }
                Err(error) => links.bad_keys.push((object.key.clone(), error.to_string())),
            }
        }
        links
    }
}

/// One repository's links, answered from its listing; a link is read only when its listed MD5 does not
/// tell (no MD5 listed, or one that is not that of the digest).
struct ObjectLinks<'a> {
    scanner: &'a Scanner,
    repository_prefix: String,
    listed: ListedLinks,
}

impl ObjectLinks<'_> {
    async fn confirm(
        &self,
        key: String,
        listed_md5: Option<[u8; 16]>,
        digest: &Digest,
        verdict: fn(&[u8], &Digest) -> Result<(), Unpullable>,
    ) -> Result<(), Unpullable> {
        match listed_md5 {
            Some(md5) if md5 == md5_of(digest.as_str()) => return Ok(()),
            Some(md5) if md5 == md5_of("") => return verdict(b"", digest),
            _ => {}
        }
        match self.scanner.read(&key).await {
            Ok(Some(content)) => verdict(&content, digest),
            Ok(None) => verdict(b"", digest),
            Err(error) => Err(Unpullable::Unreadable(error.to_string())),
        }
    }
}

impl Links for ObjectLinks<'_> {
    async fn revision(&self, digest: &Digest) -> Result<(), Unpullable> {
        let md5 = *self.listed.revisions.get(digest).ok_or(Unpullable::RevisionLinkMissing)?;
        let key =
            format!("{}_manifests/revisions/{}/{}/link", self.repository_prefix, digest.algorithm(), digest.hex());
        self.confirm(key, md5, digest, revision_link_verdict).await
    }

    async fn layer(&self, digest: &Digest) -> Result<(), Unpullable> {
        let md5 = *self.listed.layers.get(digest).ok_or_else(|| Unpullable::BlobNotLinked(digest.clone()))?;
        let key = format!("{}_layers/{}/{}/link", self.repository_prefix, digest.algorithm(), digest.hex());
        self.confirm(key, md5, digest, layer_link_verdict).await
    }
}

/// `blobs/` in the bucket, below the registry's root.
struct ObjectBlobs<'a> {
    scanner: &'a Scanner,
    root: &'a str,
}

impl Blobs for ObjectBlobs<'_> {
    async fn manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>, String> {
        let key = format!("{}{}", self.root, layout::blob_data_key(digest));
        RequestCounts::add(&self.scanner.counts.reads, 1);
        self.scanner.store.read_small(&key, MANIFEST_READ_LIMIT - 1).await.map_err(|error| error.to_string())
    }

    /// From one listing of all of `blobs/` (a page per 1,000 blobs), made the first time it is asked:
    /// far fewer requests than a HEAD per distinct blob, at the price of the blob index in memory.
    async fn exists(&self, digest: &Digest) -> Result<bool, String> {
        let index = self.scanner.blob_index.get_or_init(|| self.list_blobs()).await;
        index.as_ref().map(|present| present.contains(digest)).map_err(Clone::clone)
    }
}

impl ObjectBlobs<'_> {
    /// Every blob under `blobs/` whose key is `<algorithm>/<xx>/<hex>/data`.
    async fn list_blobs(&self) -> Result<HashSet<Digest>, String> {
        let prefix = format!("{}{}/blobs/", self.root, layout::V2_DIR);
        let keys = self.scanner.list_all(&prefix, usize::MAX).await.map_err(|error| error.to_string())?;
        let digest_of = |key: &str| {
            let (algorithm, rest) = key.strip_prefix(&prefix)?.strip_suffix("/data")?.split_once('/')?;
            let (_, hex) = rest.split_once('/')?;
            Digest::parse(&format!("{algorithm}:{hex}")).ok()
        };
        Ok(keys.iter().filter_map(|object| digest_of(&object.key)).collect())
    }
}

/// The key of a rolled-up group: `<prefix><name>/_`, whether the store returned the prefix with its
/// `_` (S3, Azure) or cut after the `/` (s3s, fake-gcs-server).
fn group_key(raw: &str) -> String {
    if raw.ends_with(ROLL_UP) {
        raw.to_string()
    } else {
        format!("{}{ROLL_UP}", raw.trim_end_matches('/'))
    }
}

/// The keys of one tag folder: `current/link` (with its listed MD5, if any) and the index entries.
#[derive(Default)]
struct TagKeys {
    /// `Some(md5)` when `current/link` is listed.
    current: Option<Option<[u8; 16]>>,
    index: Vec<Digest>,
}

/// Groups a tags listing by tag name. Every tag folder seen is kept (so that a bad name, such as `..`,
/// or a folder without `current/link` is reported); keys that are neither `current/link` nor a
/// well-formed index entry add nothing (they cannot change what the tag points at).
fn group_tag_keys(tags_prefix: &str, objects: Vec<crate::storage::object::ListedObject>) -> BTreeMap<String, TagKeys> {
    let mut tags: BTreeMap<String, TagKeys> = BTreeMap::new();
    for object in objects {
        let Some(rest) = object.key.strip_prefix(tags_prefix) else { continue };
        let Some((tag, tail)) = rest.split_once('/') else { continue };
        let keys = tags.entry(tag.to_string()).or_default();
        if tail == "current/link" {
            keys.current = Some(object.md5);
        } else if let Some(entry) = tail.strip_prefix("index/").and_then(|e| e.strip_suffix("/link")) {
            if let Some((algorithm, hex)) = entry.split_once('/') {
                if let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) {
                    keys.index.push(digest);
                }
            }
        }
    }
    tags
}

/// A pool of async jobs, at most `workers` running at once, where a running job can offer more. Its
/// queue is bounded, after ripgrep's walker: a job offered while `workers` jobs wait already is refused,
/// and the one that offered it does it itself (depth first), so memory never grows with the width of
/// the tree.
struct Pool<J> {
    queue: mpsc::Sender<J>,
    running: Arc<AtomicUsize>,
    workers: usize,
}

impl<J> Pool<J> {
    /// Queues `job` for another worker; gives it back when the queue is full.
    fn offer(&self, job: J) -> Option<J> {
        match self.queue.try_send(job) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => Some(job),
        }
    }

    /// True when fewer jobs run than there are workers: a good moment to split work.
    fn has_free_slot(&self) -> bool {
        self.running.load(Ordering::Relaxed) < self.workers
    }
}

impl<J> Clone for Pool<J> {
    fn clone(&self) -> Self {
        Pool { queue: self.queue.clone(), running: self.running.clone(), workers: self.workers }
    }
}

/// Runs `work` over `seeds` and every job the jobs queue, `workers` at a time; returns when all are done.
async fn run_pool<J, F, Fut>(workers: usize, seeds: Vec<J>, work: F)
where
    J: Send + 'static,
    F: Fn(J, Pool<J>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let workers = workers.max(1);
    let (queue, mut jobs) = mpsc::channel(workers.max(seeds.len()));
    let pool = Pool { queue, running: Arc::new(AtomicUsize::new(0)), workers };
    for seed in seeds {
        let _ = pool.offer(seed);
    }
    let mut running = JoinSet::new();
    let start = |job: J, running: &mut JoinSet<()>| {
        pool.running.fetch_add(1, Ordering::Relaxed);
        let counter = pool.running.clone();
        let future = work(job, pool.clone());
        running.spawn(async move {
            future.await;
            counter.fetch_sub(1, Ordering::Relaxed);
        });
    };
    loop {
        if running.len() >= workers {
            running.join_next().await.expect("jobs are running").expect("a listing job panicked");
            continue;
        }
        match jobs.try_recv() {
            Ok(job) => start(job, &mut running),
            // Nothing queued and nothing running: no job is left to queue more.
            Err(_) if running.is_empty() => return,
            Err(_) => tokio::select! {
                Some(job) = jobs.recv() => start(job, &mut running),
                Some(done) = running.join_next() => done.expect("a listing job panicked"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::object::ListedObject;

    #[test]
    fn group_keys_from_both_prefix_shapes() {
        let p = "docker/registry/v2/repositories/";
        assert_eq!(group_key(&format!("{p}a/b/_")), format!("{p}a/b/_"));
        assert_eq!(group_key(&format!("{p}a/b/")), format!("{p}a/b/_"));
    }

    #[test]
    fn tag_keys_are_grouped_by_tag() {
        let prefix = "r/x/_manifests/tags/";
        let digest = Digest::sha256_of(b"m");
        let key = |tail: &str| ListedObject { key: format!("{prefix}{tail}"), md5: Some([7; 16]) };
        let objects = vec![
            key("v1/current/link"),
            key(&format!("v1/index/sha256/{}/link", digest.hex())),
            key("v1/index/sha256/garbage/link"),
            key(&format!("half/index/sha256/{}/link", digest.hex())),
            key("stray"),
        ];
        let tags = group_tag_keys(prefix, objects);
        assert_eq!(tags.len(), 2);
        assert_eq!(tags["v1"].current, Some(Some([7; 16])));
        assert_eq!(tags["v1"].index, vec![digest.clone()]);
        assert_eq!(tags["half"].current, None);
    }

    type Seen = Arc<std::sync::Mutex<Vec<u32>>>;

    /// A job of the test tree: records `n`, offers its two children, does the refused ones itself.
    fn visit(n: u32, pool: Pool<u32>, seen: Seen) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            seen.lock().unwrap().push(n);
            if n < 100 {
                for child in [n * 2, n * 2 + 1] {
                    if let Some(child) = pool.offer(child) {
                        visit(child, pool.clone(), seen.clone()).await;
                    }
                }
            }
        })
    }

    #[tokio::test]
    async fn the_pool_runs_every_job_once_with_a_queue_bounded_by_its_workers() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        run_pool(3, vec![1u32], move |n, pool| {
            assert_eq!(pool.queue.max_capacity(), 3, "the queue holds at most one job per worker");
            visit(n, pool, log.clone())
        })
        .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, (1..=199).collect::<Vec<_>>());
    }
}
