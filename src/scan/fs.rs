//! Scanning a storage root on a filesystem: a parallel folder walk under `repositories/` that prunes at
//! the entry. It never descends into `_layers`, `_uploads`, `revisions` (unless untagged manifests are
//! asked for) or `blobs/`: per repository it lists `_manifests/tags/` and reads each tag's
//! `current/link`, nothing else.

use std::collections::HashSet;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use super::check::{layer_link_verdict, revision_link_verdict, Unpullable};
use super::deep::{served, Blobs, Deep, Links, MANIFEST_READ_LIMIT};
use super::walker::{walk_parallel, WorkQueue};
use super::{
    ConsumerGone, Emitter, ItemError, RequestCounts, ScanItem, ScanOptions, NO_CURRENT_LINK, TAG_LINK_INVALID,
    TAG_LINK_MISSING,
};
use crate::layout::{
    self, check_component, check_repository, check_tag, classify_child, parse_link, ChildKind, Digest,
};
use crate::storage::fs::{
    file_size, is_not_found, is_refused_link, list_dir, open_file, read_small_file, EntryKind, FsRoot,
};

/// Walks the storage root at `root`, emitting what it finds. Fails only when the root itself cannot be
/// opened; everything below is a per-item error.
pub fn scan(root: &Path, options: &ScanOptions, emitter: &Emitter, counts: &RequestCounts) -> io::Result<()> {
    let root = FsRoot::open(root)?;
    let deep = Deep::default();
    let scanner = FsScanner { root: &root, options, emitter, counts, deep: &deep };
    // The one seed is the repositories folder itself (the empty name prefix); the walk splits from there.
    walk_parallel(options.list_concurrency, [String::new()], |prefix, queue| scanner.visit_folder(prefix, queue));
    Ok(())
}

struct FsScanner<'a> {
    root: &'a FsRoot,
    options: &'a ScanOptions,
    emitter: &'a Emitter,
    counts: &'a RequestCounts,
    deep: &'a Deep,
}

/// The storage key of the folder (or file) at `relative` below `repositories/`.
fn key_below_repositories(relative: &str) -> String {
    format!("{}{relative}", layout::repositories_prefix())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

const SYMLINK_REFUSED: &str =
    "symbolic link not followed (nothing is read through links, so nothing outside the storage root)";

/// Describes an I/O failure on one item, in words an operator can act on.
fn describe(error: &io::Error) -> String {
    if is_refused_link(error) {
        SYMLINK_REFUSED.to_string()
    } else {
        error.to_string()
    }
}

impl FsScanner<'_> {
    fn emit(&self, item: ScanItem) -> Result<(), ConsumerGone> {
        self.emitter.emit(item)
    }

    fn error(&self, error: ItemError) -> Result<(), ConsumerGone> {
        self.emit(ScanItem::Error(error))
    }

    /// Visits the folder `repositories/<prefix>`: offers each valid child name to the queue (or walks it
    /// here), and scans the folder as a repository when it holds a marker.
    fn visit_folder(&self, prefix: String, queue: &WorkQueue<String>) {
        if self.visit_folder_inner(&prefix, queue).is_err() {
            queue.stop();
        }
    }

    fn visit_folder_inner(&self, prefix: &str, queue: &WorkQueue<String>) -> Result<(), ConsumerGone> {
        if queue.is_stopped() {
            return Err(ConsumerGone);
        }
        let folder_key = key_below_repositories(&format!("{prefix}/"));
        RequestCounts::add(&self.counts.lists, 1);
        let mut entries = match list_dir(self.root.repositories(), prefix) {
            Ok(entries) => entries,
            Err(error) => return self.error(ItemError::new(folder_key, describe(&error))),
        };
        let mut is_repository = false;
        for entry in entries.by_ref() {
            RequestCounts::add(&self.counts.entries, 1);
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => return self.error(ItemError::new(folder_key, describe(&error))),
            };
            let child_key = || key_below_repositories(&join(prefix, &String::from_utf8_lossy(&entry.name)));
            match (entry.kind, classify_child(&entry.name)) {
                (EntryKind::Symlink, _) => self.error(ItemError::new(child_key(), SYMLINK_REFUSED))?,
                (EntryKind::Dir, ChildKind::RepositoryMarker) => is_repository = !prefix.is_empty(),
                (EntryKind::Dir, ChildKind::Component) => self.descend(prefix, &entry.name, queue)?,
                // `_uploads`, other reserved names and stray files are never part of a name.
                _ => {}
            }
        }
        if is_repository {
            self.scan_repository(prefix, entries.fd())?;
        }
        Ok(())
    }

    /// Checks a child name and walks below it: through the queue when another worker is free, else here.
    fn descend(&self, prefix: &str, raw_name: &[u8], queue: &WorkQueue<String>) -> Result<(), ConsumerGone> {
        let name = match std::str::from_utf8(raw_name) {
            Ok(name) => name,
            Err(_) => {
                let key = key_below_repositories(&join(prefix, &String::from_utf8_lossy(raw_name)));
                return self.error(ItemError::new(key, "folder name is not UTF-8: not a repository name"));
            }
        };
        let child = join(prefix, name);
        if let Err(error) = check_component(name) {
            return self.error(ItemError::new(key_below_repositories(&format!("{child}/")), error));
        }
        if let Some(kept) = queue.offer(child) {
            self.visit_folder_inner(&kept, queue)?;
        }
        Ok(())
    }

    /// Scans one repository, whose folder is open as `repository_dir`: its tags, and its untagged
    /// revisions when asked.
    fn scan_repository(&self, repository: &str, repository_dir: BorrowedFd<'_>) -> Result<(), ConsumerGone> {
        if !self.options.shard.owns(repository) {
            return Ok(());
        }
        if let Err(error) = check_repository(repository) {
            return self.error(ItemError::new(key_below_repositories(&format!("{repository}/")), error));
        }
        if self.options.is_finished(repository) {
            return self.emit(ScanItem::Resumed { name: repository.to_string() });
        }
        self.emit(ScanItem::Repository { name: repository.to_string() })?;
        let mut tagged = self.options.untagged.then(HashSet::new);
        self.scan_tags(repository, repository_dir, &mut tagged)?;
        if let Some(tagged) = tagged {
            self.scan_untagged(repository, repository_dir, &tagged)?;
        }
        self.emit(ScanItem::RepositoryEnd { name: repository.to_string() })
    }

    fn scan_tags(
        &self,
        repository: &str,
        repository_dir: BorrowedFd<'_>,
        tagged: &mut Option<HashSet<Digest>>,
    ) -> Result<(), ConsumerGone> {
        let tags_key = layout::tags_dir_key(repository);
        RequestCounts::add(&self.counts.lists, 1);
        let mut tags = match list_dir(repository_dir, "_manifests/tags") {
            Ok(tags) => tags,
            // A repository with no tag folder at all: layers only, or every tag deleted.
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return self.error(ItemError::new(tags_key, describe(&error)).in_repository(repository)),
        };
        while let Some(entry) = tags.next() {
            RequestCounts::add(&self.counts.entries, 1);
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => return self.error(ItemError::new(tags_key, describe(&error)).in_repository(repository)),
            };
            let lossy_tag = String::from_utf8_lossy(&entry.name).into_owned();
            let problem = |message: &dyn std::fmt::Display| {
                ItemError::new(format!("{tags_key}{lossy_tag}"), message).in_repository(repository).for_tag(&lossy_tag)
            };
            match entry.kind {
                EntryKind::Dir => {}
                EntryKind::Symlink => {
                    self.error(problem(&SYMLINK_REFUSED))?;
                    continue;
                }
                _ => continue,
            }
            let Ok(tag) = String::from_utf8(entry.name) else {
                self.error(problem(&"tag folder name is not UTF-8: not a tag"))?;
                continue;
            };
            if let Err(error) = check_tag(&tag) {
                self.error(problem(&error))?;
                continue;
            }
            if let Some(digest) = self.read_tag_link(repository, &tag, tags.fd())? {
                if let Some(tagged) = tagged.as_mut() {
                    tagged.insert(digest.clone());
                }
                let verdict = match self.options.needs_check(repository, &tag, &digest) {
                    true => self.check(repository_dir, &digest),
                    false => Ok(()),
                };
                match verdict {
                    Ok(()) => self.emit(ScanItem::Tag { repository: repository.to_string(), tag, digest })?,
                    Err(reason) => self.error(ItemError::unpullable(repository, Some(&tag), &digest, &reason))?,
                }
            }
        }
        Ok(())
    }

    /// Whether the registry would serve the manifest (or, with `--deep`, a client could pull it).
    fn check(&self, repository_dir: BorrowedFd<'_>, digest: &Digest) -> Result<(), Unpullable> {
        let links = FsLinks { repository_dir, counts: self.counts };
        let blobs = FsBlobs { blobs_dir: self.root.blobs(), counts: self.counts };
        // The storage answers synchronously here; the checks are written once, as async, for every backend.
        futures::executor::block_on(async {
            match self.options.deep {
                true => self.deep.pullable(&links, &blobs, digest).await,
                false => served(&links, &blobs, digest, true).await,
            }
        })
    }

    /// Reads `<tag>/current/link` below the open tags folder. `None` when there is no digest to report
    /// (the problem, if any, has been emitted).
    fn read_tag_link(
        &self,
        repository: &str,
        tag: &str,
        tags_dir: BorrowedFd<'_>,
    ) -> Result<Option<Digest>, ConsumerGone> {
        let key = layout::tag_current_link_key(repository, tag);
        let problem =
            |message: &dyn std::fmt::Display| ItemError::new(&key, message).in_repository(repository).for_tag(tag);
        RequestCounts::add(&self.counts.reads, 1);
        match read_small_file(tags_dir, &format!("{tag}/current/link"), layout::MAX_LINK_LEN) {
            Ok(content) => match parse_link(&content) {
                Ok(digest) => Ok(Some(digest)),
                Err(error) => self.error(problem(&error).because(TAG_LINK_INVALID)).map(|_| None),
            },
            Err(error) if is_not_found(&error) => {
                self.error(problem(&NO_CURRENT_LINK).because(TAG_LINK_MISSING)).map(|_| None)
            }
            Err(error) => self.error(problem(&describe(&error))).map(|_| None),
        }
    }

    /// Reports every revision of the repository whose link is intact and that no tag points at. A revision
    /// folder without `link` is a deleted manifest (the filesystem driver leaves the folder behind).
    fn scan_untagged(
        &self,
        repository: &str,
        repository_dir: BorrowedFd<'_>,
        tagged: &HashSet<Digest>,
    ) -> Result<(), ConsumerGone> {
        let revisions_key = format!("{}{repository}/_manifests/revisions/", layout::repositories_prefix());
        RequestCounts::add(&self.counts.lists, 1);
        let algorithms = match list_dir(repository_dir, "_manifests/revisions") {
            Ok(algorithms) => algorithms,
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return self.error(ItemError::new(revisions_key, describe(&error)).in_repository(repository)),
        };
        for algorithm in algorithms {
            let Ok(algorithm) = algorithm else { continue };
            if algorithm.kind != EntryKind::Dir {
                continue;
            }
            let algorithm = String::from_utf8_lossy(&algorithm.name).into_owned();
            RequestCounts::add(&self.counts.lists, 1);
            let revisions = match list_dir(repository_dir, &format!("_manifests/revisions/{algorithm}")) {
                Ok(revisions) => revisions,
                Err(error) => {
                    self.error(
                        ItemError::new(format!("{revisions_key}{algorithm}/"), describe(&error))
                            .in_repository(repository),
                    )?;
                    continue;
                }
            };
            let mut revisions = revisions;
            while let Some(Ok(revision)) = revisions.next() {
                RequestCounts::add(&self.counts.entries, 1);
                if revision.kind != EntryKind::Dir {
                    continue;
                }
                let hex = String::from_utf8_lossy(&revision.name).into_owned();
                // A revision's digest is its folder; the check reads its link as the registry would.
                let digest = match Digest::parse(&format!("{algorithm}:{hex}")) {
                    Ok(digest) => digest,
                    Err(error) => {
                        let key = format!("{revisions_key}{algorithm}/{hex}/link");
                        self.error(ItemError::new(key, error).in_repository(repository))?;
                        continue;
                    }
                };
                if tagged.contains(&digest) {
                    continue;
                }
                match self.check(repository_dir, &digest) {
                    Ok(()) => self.emit(ScanItem::Untagged { repository: repository.to_string(), digest })?,
                    // A deleted manifest: the filesystem driver leaves its folder behind, without `link`.
                    Err(Unpullable::RevisionLinkMissing) => {}
                    Err(reason) => self.error(ItemError::unpullable(repository, None, &digest, &reason))?,
                }
            }
        }
        Ok(())
    }
}

/// One repository's links on disk, read below its open folder.
struct FsLinks<'a> {
    repository_dir: BorrowedFd<'a>,
    counts: &'a RequestCounts,
}

impl FsLinks<'_> {
    /// The content of a link below the repository; `None` when there is none.
    fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, Unpullable> {
        RequestCounts::add(&self.counts.reads, 1);
        match read_small_file(self.repository_dir, relative, layout::MAX_LINK_LEN) {
            Ok(content) => Ok(Some(content)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(Unpullable::Unreadable(describe(&error))),
        }
    }
}

impl Links for FsLinks<'_> {
    async fn revision(&self, digest: &Digest) -> Result<(), Unpullable> {
        let relative = format!("_manifests/revisions/{}/{}/link", digest.algorithm(), digest.hex());
        let content = self.read(&relative)?.ok_or(Unpullable::RevisionLinkMissing)?;
        revision_link_verdict(&content, digest)
    }

    async fn layer(&self, digest: &Digest) -> Result<(), Unpullable> {
        let relative = format!("_layers/{}/{}/link", digest.algorithm(), digest.hex());
        let content = self.read(&relative)?.ok_or_else(|| Unpullable::BlobNotLinked(digest.clone()))?;
        layer_link_verdict(&content, digest)
    }
}

/// `blobs/` on disk, when the tree has one.
struct FsBlobs<'a> {
    blobs_dir: Option<BorrowedFd<'a>>,
    counts: &'a RequestCounts,
}

/// A blob's `data` below `blobs/`.
fn blob_below_blobs(digest: &Digest) -> String {
    format!("{}/{}/{}/data", digest.algorithm(), &digest.hex()[..2], digest.hex())
}

impl Blobs for FsBlobs<'_> {
    async fn manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>, String> {
        use std::io::Read;
        let Some(blobs_dir) = self.blobs_dir else { return Ok(None) };
        RequestCounts::add(&self.counts.reads, 1);
        let file = match open_file(blobs_dir, &blob_below_blobs(digest)) {
            Ok(fd) => std::fs::File::from(fd),
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(describe(&error)),
        };
        let mut bytes = Vec::new();
        file.take(MANIFEST_READ_LIMIT as u64).read_to_end(&mut bytes).map_err(|error| describe(&error))?;
        Ok(Some(bytes))
    }

    async fn exists(&self, digest: &Digest) -> Result<bool, String> {
        let Some(blobs_dir) = self.blobs_dir else { return Ok(false) };
        RequestCounts::add(&self.counts.reads, 1);
        file_size(blobs_dir, &blob_below_blobs(digest)).map(|size| size.is_some()).map_err(|error| describe(&error))
    }
}
