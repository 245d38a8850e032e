//! One repository: its tags (and untagged revisions) from one listing of its `_manifests/`, each tag's
//! current digest told by the MD5s of its links, the link read only where none matches.

use super::*;

impl Scanner {
    /// Scans one repository's tags (and untagged revisions when asked) from one listing of its
    /// `_manifests/` (of all its keys with `--deep`, `_layers` included).
    pub(super) async fn scan_repository(&self, prefix: &str, repository: &str) -> Result<(), ConsumerGone> {
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
    pub(super) async fn check(
        &self,
        links: &ObjectLinks<'_>,
        blobs: &ObjectBlobs<'_>,
        digest: &Digest,
    ) -> Result<(), Unpullable> {
        match self.options.deep {
            true => self.deep.pullable(links, blobs, digest).await,
            false => served(links, blobs, digest, false).await,
        }
    }

    /// Every object under `prefix`, page after page; the first page asks for at most `first_page` keys.
    pub(super) async fn list_all(
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
    pub(super) async fn resolve_tag(
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
    pub(super) async fn scan_untagged(
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
pub(super) struct ListedLinks {
    pub(super) revisions: BTreeMap<Digest, Option<[u8; 16]>>,
    pub(super) layers: BTreeMap<Digest, Option<[u8; 16]>>,
    /// Revision keys that name no digest (`sha256/garbage/link`), with the reason.
    pub(super) bad_keys: Vec<(String, String)>,
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

/// The keys of one tag folder: `current/link` (with its listed MD5, if any) and the index entries.
#[derive(Default)]
pub(super) struct TagKeys {
    /// `Some(md5)` when `current/link` is listed.
    pub(super) current: Option<Option<[u8; 16]>>,
    pub(super) index: Vec<Digest>,
}

/// Groups a tags listing by tag name. Every tag folder seen is kept (so that a bad name, such as `..`,
/// or a folder without `current/link` is reported); keys that are neither `current/link` nor a
/// well-formed index entry add nothing (they cannot change what the tag points at).
pub(super) fn group_tag_keys(
    tags_prefix: &str,
    objects: Vec<crate::storage::object::ListedObject>,
) -> BTreeMap<String, TagKeys> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::object::ListedObject;
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
}
