//! One image as a graph: the tag's manifest pushed after everything it references (an index's children,
//! a referrer's subject, the blobs), each manifest once per repository, and writes of one digest into
//! one quota one after the other.

use super::*;

impl Copier {
    /// Copies `digest` into `repository` under `tag`. A target tag at another digest is replaced only as
    /// `replace` allows.
    pub async fn copy_tag(
        &self,
        repository: &str,
        tag: &str,
        digest: &Digest,
        replace: &Replace,
    ) -> Result<TagOutcome, CopyError> {
        match self.target_manifest(repository, tag).await? {
            Some(existing) if &existing.digest == digest => return Ok(existing.outcome()),
            Some(existing) if !replace.allows(&existing.digest) => {
                return Err(CopyError::TagDiffers { existing: existing.digest, wanted: digest.clone() })
            }
            _ => {}
        }
        // A cosign-style tag (`sha256-<hex>.sig`, `.att`, `.sbom`) names its subject: the subject goes
        // first, so that Harbor links the accessory to it.
        if let Some(subject) = cosign_subject(tag) {
            if self.source.read_small(&subject, 0).await?.is_some() {
                self.push_by_digest(repository, &subject).await?;
            }
        }
        self.push_manifest(repository, tag, digest).await?;
        Ok(TagOutcome::Pushed)
    }

    /// Copies a manifest that no tag points at, by its digest (index children, referrers, and every
    /// image of a bucket whose tags are gone).
    pub async fn copy_untagged(&self, repository: &str, digest: &Digest) -> Result<TagOutcome, CopyError> {
        if let Some(existing) = self.target_manifest(repository, digest.as_str()).await? {
            return Ok(existing.outcome());
        }
        self.once(repository, digest, self.push_manifest(repository, digest.as_str(), digest)).await?;
        Ok(TagOutcome::Pushed)
    }

    /// Reads a manifest from the source and checks it against its digest.
    pub async fn read_manifest(&self, digest: &Digest) -> Result<(Manifest, Bytes), CopyError> {
        let key = self.source.blob_key(digest);
        let bytes = self.source.read_small(digest, MAX_MANIFEST_SIZE).await?.ok_or_else(|| CopyError::Missing {
            what: "manifest",
            digest: digest.clone(),
            key: key.clone(),
        })?;
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(CopyError::Manifest { digest: digest.clone(), source: ManifestError::TooLarge(bytes.len()) });
        }
        let actual = Digest::sha256_of(&bytes);
        if &actual != digest {
            return Err(CopyError::Corrupt {
                what: "manifest",
                digest: digest.clone(),
                actual: actual.to_string(),
                key,
            });
        }
        let manifest =
            parse_manifest(&bytes).map_err(|source| CopyError::Manifest { digest: digest.clone(), source })?;
        Ok((manifest, Bytes::from(bytes)))
    }

    /// Pushes one manifest under `reference` (a tag or its digest) with everything it references first:
    /// its subject and an index's children (each by digest), and an image's blobs. In place, blobs are
    /// not sent at all: the manifest is PUT first, and only if the target answers
    /// `MANIFEST_BLOB_UNKNOWN` are its blobs copied and the PUT repeated.
    pub(super) fn push_manifest<'a>(
        &'a self,
        repository: &'a str,
        reference: &'a str,
        digest: &'a Digest,
    ) -> futures::future::BoxFuture<'a, Result<(), CopyError>> {
        Box::pin(async move {
            let (manifest, bytes) = self.read_manifest(digest).await?;
            if let Some(subject) = manifest.subject() {
                self.push_by_digest(repository, &subject.digest).await?;
            }
            match &manifest {
                Manifest::Index { children, .. } => {
                    for child in children {
                        self.push_by_digest(repository, &child.digest).await?;
                    }
                }
                Manifest::Image { .. } if self.in_place => {}
                Manifest::Image { blobs, .. } => self.ensure_blobs(repository, blobs).await?,
            }
            let put = self.target.put_manifest(repository, reference, manifest.media_type(), bytes.clone());
            let pushed = self.alone_in_namespace(repository, digest, put).await;
            match (pushed, &manifest) {
                (Err(error), Manifest::Image { blobs, .. })
                    if self.in_place && error.has_code("MANIFEST_BLOB_UNKNOWN") =>
                {
                    self.ensure_blobs(repository, blobs).await?;
                    let put = self.target.put_manifest(repository, reference, manifest.media_type(), bytes);
                    self.alone_in_namespace(repository, digest, put).await?;
                }
                (result, _) => result?,
            }
            self.counts.manifests_pushed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }

    /// A manifest another one needs first (an index's child, a subject), by its digest, once per
    /// repository: checked on the target first, so that a child pushed by an earlier run that stopped
    /// before its index is not sent again.
    pub(super) async fn push_by_digest(&self, repository: &str, digest: &Digest) -> Result<(), CopyError> {
        let push = async {
            if self.target_manifest(repository, digest.as_str()).await?.is_some() {
                return Ok(());
            }
            self.push_manifest(repository, digest.as_str(), digest).await
        };
        self.once(repository, digest, push).await
    }

    /// Runs `write` (of `digest` into `repository`) while no other write of that digest into the same
    /// namespace (the repository's first component: Harbor's project) is under way.
    pub(super) async fn alone_in_namespace<T>(
        &self,
        repository: &str,
        digest: &Digest,
        write: impl std::future::Future<Output = T>,
    ) -> T {
        let scope = self.control.as_ref().map_or(repository, |control| control.charged_to(repository));
        let key = (scope.to_string(), digest.clone());
        let gate = self.writes_in_namespace.lock().await.entry(key.clone()).or_default().clone();
        let result = {
            let _alone = gate.lock().await;
            write.await
        };
        let mut gates = self.writes_in_namespace.lock().await;
        // Only the map and this write hold the gate: nobody waits on it, it goes.
        if Arc::strong_count(&gate) == 2 {
            gates.remove(&key);
        }
        result
    }

    /// Runs `work` once per (repository, digest), however many copies ask; later askers share its result.
    pub(super) async fn once(
        &self,
        repository: &str,
        digest: &Digest,
        work: impl std::future::Future<Output = Result<(), CopyError>>,
    ) -> Result<(), CopyError> {
        let cell = {
            let mut done = self.done.lock().await;
            sweep(&mut done);
            done.entry((repository.to_string(), digest.clone())).or_default().clone()
        };
        cell.get_or_init(|| work).await.clone()
    }
}
