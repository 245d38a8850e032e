//! A blob into a repository of the target: mounted from a repository known to hold it (this run's
//! uploads, the journal), else HEAD, then mount, then upload (`transfer.rs`), once per digest.

use super::*;

impl Copier {
    pub(super) async fn ensure_blobs(&self, repository: &str, blobs: &[Descriptor]) -> Result<(), CopyError> {
        let copies = blobs.iter().map(|blob| self.once(repository, &blob.digest, self.ensure_blob(repository, blob)));
        futures::future::try_join_all(copies).await.map(|_| ())
    }

    /// Mount from a known home, or HEAD, then mount, then upload. A blob whose home is known (uploaded
    /// by this run, or recorded in the journal) is mounted at once, without a HEAD: a catch-up's new and
    /// moved tags mostly reuse blobs the target has.
    pub(super) async fn ensure_blob(&self, repository: &str, blob: &Descriptor) -> Result<(), CopyError> {
        let upload = {
            let mut uploads = self.uploads.lock().await;
            sweep(&mut uploads);
            uploads.entry(blob.digest.clone()).or_default().clone()
        };
        let known =
            upload.get().and_then(|home| home.as_ref().ok().cloned()).or_else(|| self.journaled_home(&blob.digest));
        if let Some(home) = known.filter(|home| home != repository) {
            return self
                .alone_in_namespace(repository, &blob.digest, self.mount_or_upload(repository, blob, &home))
                .await;
        }
        if self.target.blob_exists(repository, &blob.digest).await? {
            self.counts.blobs_present.fetch_add(1, Ordering::Relaxed);
            // Already there (an earlier run): later repositories can mount it from here.
            if upload.set(Ok(repository.to_string())).is_ok() {
                self.remember_blob(&blob.digest, repository);
            }
            return Ok(());
        }
        let home = upload
            .get_or_init(|| async {
                if let Some(home) = self.journaled_home(&blob.digest) {
                    return Ok(home);
                }
                self.upload(repository, blob, None).await?;
                self.remember_blob(&blob.digest, repository);
                Ok(repository.to_string())
            })
            .await
            .clone()?;
        if home == repository {
            return Ok(());
        }
        self.alone_in_namespace(repository, &blob.digest, self.mount_or_upload(repository, blob, &home)).await
    }

    /// Mounts a blob from `home`; uploads it where the target opens a session instead or refuses the
    /// mount.
    pub(super) async fn mount_or_upload(
        &self,
        repository: &str,
        blob: &Descriptor,
        home: &str,
    ) -> Result<(), CopyError> {
        let location = match self.target.mount_blob(repository, &blob.digest, home).await {
            Ok(Mount::Mounted) => {
                self.counts.blobs_mounted.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Ok(Mount::Upload(location)) => location,
            // Harbor answers 404 to a mount of a blob its database does not know, and 401 to one from a
            // repository the credentials may not pull: upload instead.
            Err(error) if matches!(error.status(), Some(404 | 401)) && error.refusal().is_none() => {
                return self.upload(repository, blob, None).await
            }
            Err(error) => return Err(error.into()),
        };
        // The registry opened an upload session instead of mounting: upload into it.
        self.upload(repository, blob, Some(location)).await
    }
    pub(super) fn remember_blob(&self, digest: &Digest, repository: &str) {
        if let Some(journal) = &self.journal {
            journal.record_blob(digest.as_str(), repository);
        }
    }

    /// A target repository the journal knows to hold this blob.
    pub(super) fn journaled_home(&self, digest: &Digest) -> Option<String> {
        self.journal.as_ref()?.blob_home(digest.as_str()).ok().flatten()
    }
}
