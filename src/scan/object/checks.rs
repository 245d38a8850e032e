//! `--deep` on an object store: the links and blobs a check reads, from the repository's listing
//! (a link is read only where its listed MD5 does not say it) and the blob index listed once.

use super::*;

/// One repository's links, answered from its listing; a link is read only when its listed MD5 does not
/// tell (no MD5 listed, or one that is not that of the digest).
pub(super) struct ObjectLinks<'a> {
    pub(super) scanner: &'a Scanner,
    pub(super) repository_prefix: String,
    pub(super) listed: ListedLinks,
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
pub(super) struct ObjectBlobs<'a> {
    pub(super) scanner: &'a Scanner,
    pub(super) root: &'a str,
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
