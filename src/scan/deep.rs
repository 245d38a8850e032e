//! Checking a tag the way a client pulls it, one step at a time, on any backend.
//!
//! Every scan checks that the registry would *serve* a tag (`served`): its revision link, and on a
//! filesystem its manifest blob as the registry parses it. `scan --deep` checks that a client could
//! *pull* it (`Deep::pullable`): the manifest read once per digest across every tag and repository and
//! parsed by its media type, then every blob it names present under `blobs/` (checked once per digest)
//! and linked in the repository's `_layers`, and an index's children likewise. The storage is reached
//! through two small traits, one per question, so that the steps are written once for every backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::check::{check_pullable, check_served, Unpullable};
use crate::copy::manifest::Manifest;
use crate::layout::{self, Digest};

/// One repository's links, as the registry resolves them.
pub(crate) trait Links {
    /// The manifest's revision link: present, and naming `digest`.
    async fn revision(&self, digest: &Digest) -> Result<(), Unpullable>;
    /// The blob's `_layers` link: present, and naming `digest`.
    async fn layer(&self, digest: &Digest) -> Result<(), Unpullable>;
}

/// The storage's `blobs/`.
pub(crate) trait Blobs {
    /// A manifest blob's bytes, at most 4 MiB and one byte; `None` when it is missing.
    async fn manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>, String>;
    /// Whether a blob's `data` is present.
    async fn exists(&self, digest: &Digest) -> Result<bool, String>;
}

/// The longest manifest read: one byte over what registries serve, so that an oversized one shows.
pub const MANIFEST_READ_LIMIT: usize = crate::copy::manifest::MAX_MANIFEST_SIZE + 1;

/// Whether the registry would serve this manifest of the repository: its revision link, then (when
/// `read_manifest`) its blob, read as the registry reads it.
pub(crate) async fn served(
    links: &impl Links,
    blobs: &impl Blobs,
    digest: &Digest,
    read_manifest: bool,
) -> Result<(), Unpullable> {
    links.revision(digest).await?;
    if read_manifest {
        let bytes = blobs.manifest(digest).await.map_err(Unpullable::Unreadable)?;
        check_served(&bytes.ok_or(Unpullable::ManifestBlobMissing)?)?;
    }
    Ok(())
}

type Verdict<T> = Arc<OnceCell<Result<T, Unpullable>>>;

/// The deep check's memory: each manifest's verdict and each blob's presence, found once per digest.
#[derive(Default)]
pub struct Deep {
    manifests: Mutex<HashMap<Digest, Verdict<Arc<Manifest>>>>,
    blobs: Mutex<HashMap<Digest, Verdict<()>>>,
}

impl Deep {
    /// Whether a client could pull this manifest from the repository: served, every blob present and
    /// linked, every child of an index pullable. The first reason it is not, else `Ok`. (A worklist, not
    /// recursion, so that the future stays plain and `Send` on every backend.)
    pub(crate) async fn pullable(
        &self,
        links: &impl Links,
        blobs: &impl Blobs,
        digest: &Digest,
    ) -> Result<(), Unpullable> {
        let mut pending = vec![digest.clone()];
        while let Some(manifest) = pending.pop() {
            let in_child = |reason| match &manifest == digest {
                true => reason,
                false => Unpullable::Child { digest: manifest.clone(), reason: Box::new(reason) },
            };
            self.check_one(links, blobs, &manifest, &mut pending).await.map_err(in_child)?;
        }
        Ok(())
    }

    /// Checks one manifest: its revision link, its blob, and its blobs (an image) or queues its
    /// children (an index).
    async fn check_one(
        &self,
        links: &impl Links,
        blobs: &impl Blobs,
        digest: &Digest,
        children: &mut Vec<Digest>,
    ) -> Result<(), Unpullable> {
        links.revision(digest).await?;
        match &*self.manifest(blobs, digest).await? {
            Manifest::Image { blobs: descriptors, .. } => {
                for descriptor in descriptors {
                    links.layer(&descriptor.digest).await?;
                    self.blob(blobs, &descriptor.digest).await?;
                }
            }
            Manifest::Index { children: listed, .. } => children.extend(listed.iter().map(|c| c.digest.clone())),
        }
        Ok(())
    }

    /// The manifest's parsed references, read and judged once per digest.
    async fn manifest(&self, blobs: &impl Blobs, digest: &Digest) -> Result<Arc<Manifest>, Unpullable> {
        let cell = once_per_digest(&self.manifests, digest);
        let verdict = cell
            .get_or_init(|| async {
                let bytes = blobs.manifest(digest).await.map_err(Unpullable::Unreadable)?;
                check_pullable(&bytes.ok_or(Unpullable::ManifestBlobMissing)?, digest).map(Arc::new)
            })
            .await;
        verdict.clone()
    }

    /// Whether the blob's bytes are present, asked once per digest.
    async fn blob(&self, blobs: &impl Blobs, digest: &Digest) -> Result<(), Unpullable> {
        let cell = once_per_digest(&self.blobs, digest);
        cell.get_or_init(|| async {
            match blobs.exists(digest).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(Unpullable::BlobMissing(digest.clone())),
                Err(error) => Err(Unpullable::Unreadable(error)),
            }
        })
        .await
        .clone()
    }
}

fn once_per_digest<T>(map: &Mutex<HashMap<Digest, Verdict<T>>>, digest: &Digest) -> Verdict<T> {
    map.lock().expect("verdict map poisoned").entry(digest.clone()).or_default().clone()
}

/// The storage key a reason is about, for the error record of a manifest of `repository`.
pub fn reason_key(reason: &Unpullable, repository: &str, manifest: &Digest) -> String {
    match reason {
        Unpullable::RevisionLinkMissing | Unpullable::RevisionLinkInvalid(_) | Unpullable::RevisionLinkElsewhere(_) => {
            layout::revision_link_key(repository, manifest)
        }
        Unpullable::BlobMissing(blob) => layout::blob_data_key(blob),
        Unpullable::BlobNotLinked(blob) | Unpullable::LayerLinkInvalid(blob, _) => {
            layout::layer_link_key(repository, blob)
        }
        Unpullable::Child { digest, reason } => reason_key(reason, repository, digest),
        Unpullable::ManifestBlobMissing
        | Unpullable::ManifestBlobEmpty
        | Unpullable::ManifestNotServed(_)
        | Unpullable::ManifestCorrupt
        | Unpullable::Schema1
        | Unpullable::ManifestUnpullable(_)
        | Unpullable::Unreadable(_) => layout::blob_data_key(manifest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Memory {
        revisions: HashSet<Digest>,
        layers: HashSet<Digest>,
        blobs: HashMap<Digest, Vec<u8>>,
        reads: AtomicU64,
    }

    impl Links for Memory {
        async fn revision(&self, digest: &Digest) -> Result<(), Unpullable> {
            self.revisions.contains(digest).then_some(()).ok_or(Unpullable::RevisionLinkMissing)
        }
        async fn layer(&self, digest: &Digest) -> Result<(), Unpullable> {
            self.layers.contains(digest).then_some(()).ok_or(Unpullable::BlobNotLinked(digest.clone()))
        }
    }

    impl Blobs for Memory {
        async fn manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>, String> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Ok(self.blobs.get(digest).cloned())
        }
        async fn exists(&self, digest: &Digest) -> Result<bool, String> {
            Ok(self.blobs.contains_key(digest))
        }
    }

    fn image(memory: &mut Memory, seed: &str) -> Digest {
        let config = Digest::sha256_of(seed.as_bytes());
        memory.blobs.insert(config.clone(), seed.as_bytes().to_vec());
        memory.layers.insert(config.clone());
        let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": crate::copy::manifest::OCI_MANIFEST,
            "config": {"digest": config.to_string(), "size": seed.len()}, "layers": []});
        let bytes = manifest.to_string().into_bytes();
        let digest = Digest::sha256_of(&bytes);
        memory.blobs.insert(digest.clone(), bytes);
        memory.revisions.insert(digest.clone());
        digest
    }

    #[test]
    fn reads_each_manifest_once_and_names_the_first_reason() {
        let mut memory = Memory::default();
        let good = image(&mut memory, "good");
        let unlinked = image(&mut memory, "unlinked");
        let config = Digest::sha256_of(b"unlinked");
        memory.layers.remove(&config);
        let deep = Deep::default();
        let check = |digest: &Digest| futures::executor::block_on(deep.pullable(&memory, &memory, digest));
        assert_eq!(check(&good), Ok(()));
        assert_eq!(check(&good), Ok(()));
        assert_eq!(check(&unlinked), Err(Unpullable::BlobNotLinked(config.clone())));
        assert_eq!(memory.reads.load(Ordering::Relaxed), 2, "one read per distinct manifest");
        assert_eq!(
            reason_key(&Unpullable::BlobNotLinked(config.clone()), "r", &unlinked),
            layout::layer_link_key("r", &config)
        );
        let missing = Digest::sha256_of(b"never stored");
        assert_eq!(check(&missing), Err(Unpullable::RevisionLinkMissing));
    }

    #[test]
    fn an_index_is_pullable_only_with_every_child() {
        let mut memory = Memory::default();
        let child = image(&mut memory, "child");
        let gone = Digest::sha256_of(b"gone child");
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": crate::copy::manifest::OCI_INDEX,
            "manifests": [{"digest": child.to_string(), "size": 1}, {"digest": gone.to_string(), "size": 1}]});
        let bytes = index.to_string().into_bytes();
        let digest = Digest::sha256_of(&bytes);
        memory.blobs.insert(digest.clone(), bytes);
        memory.revisions.insert(digest.clone());
        let verdict = futures::executor::block_on(Deep::default().pullable(&memory, &memory, &digest));
        let reason = verdict.unwrap_err();
        assert_eq!(reason.reason(), "index child not pullable");
        assert_eq!(reason_key(&reason, "r", &digest), layout::revision_link_key("r", &gone));
    }
}
