//! One blob's bytes, from the source storage into an upload session on the target: the only retry
//! layer of a transfer.
//!
//! A blob up to the chunk size goes in one streamed PUT; a larger one in streamed PATCHes of the chunk
//! size, then an empty PUT (so that Harbor's quota is charged by the PATCHes, the whole blob). Nothing is
//! held in memory but the reader's current piece: the memory of a transfer does not grow with the blob.
//! A request that fails in the middle is never sent again as it was: the target is asked where the
//! session stands (its `Range`), and the upload goes on from there, the source read again from that
//! offset (a seek on disk, a ranged read on an object store); a session the target has forgotten is
//! opened again from the first byte. The digest check covers every byte across all of it. A transfer
//! has `http::retry::ATTEMPTS` tries without progress: a try after which the target holds more bytes than
//! before starts the count again.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::Mutex;
use url::Url;

use super::verified::{body, SourceReader};
use super::{Copier, CopyError};
use crate::copy::manifest::Descriptor;
use crate::registry::client::{RegistryError, UploadStatus};

/// A failed request of a transfer, and whether another try can help.
fn worth_another_try(error: &RegistryError) -> bool {
    match error {
        RegistryError::Transport { .. } => true,
        // 401: a token that expired during a long upload (the status request fetches a new one); 404 and
        // 416: a session the target forgot or holds at another offset (the status tells); 429 and 5xx.
        RegistryError::Status { status, .. } => {
            error.refusal().is_none() && matches!(*status, 401 | 404 | 416 | 429 | 500..=599)
        }
        _ => false,
    }
}

impl Copier {
    /// Uploads a blob into `repository`, into `session` when the target already opened one. At most
    /// `--upload-concurrency` blob bodies are in flight across all copies: the memory budget.
    pub(super) async fn upload(
        &self,
        repository: &str,
        blob: &Descriptor,
        session: Option<Url>,
    ) -> Result<(), CopyError> {
        let _budget = self.bodies.acquire().await.expect("never closed");
        let reader = SourceReader::open(self.source.clone(), &blob.digest, blob.size, self.chunk_size).await?;
        let size = reader.size();
        let reader = Arc::new(Mutex::new(reader));
        let mut location = match session {
            Some(location) => location,
            None => self.target.start_upload(repository).await?,
        };
        let http = self.target.http().context().clone();
        let mut backoff = http.backoff();
        let mut held = 0;
        loop {
            let sent = self.send_from(repository, blob, &reader, size, &mut location, held).await;
            let error = match sent {
                Ok(()) => break,
                Err(error) => error,
            };
            let reader_failure = reader.lock().await.failure().cloned();
            match reader_failure {
                Some(failure @ CopyError::Corrupt { .. }) => return Err(failure),
                Some(_) => {}
                None if worth_another_try(&error) => {}
                None => return Err(error.into()),
            }
            let before = held;
            (held, location) = self.where_to_go_on(repository, &reader, &location).await?;
            // A try that moved the upload forward does not use the budget: only tries without progress
            // count (a multi-GiB blob on a flaky link gets there, a target that takes nothing does not).
            if held > before {
                backoff.reset();
            }
            if !backoff.wait(error.retry_after()).await {
                return Err(reader_failure.unwrap_or_else(|| error.into()));
            }
            reader.lock().await.rewind_to(held).await?;
        }
        self.counts.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
        self.counts.bytes_uploaded.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// After a failed request: the offset the target holds and where to send the rest, or a new session
    /// from the first byte when the target forgot this one (or claims more than was ever sent).
    async fn where_to_go_on(
        &self,
        repository: &str,
        reader: &Mutex<SourceReader>,
        location: &Url,
    ) -> Result<(u64, Url), CopyError> {
        let sent = reader.lock().await.position();
        match self.target.upload_status(repository, location).await? {
            UploadStatus::At { offset, location } if offset <= sent => {
                tracing::debug!("{repository}: the upload goes on at byte {offset} of the session");
                Ok((offset, location))
            }
            _ => Ok((0, self.target.start_upload(repository).await?)),
        }
    }

    /// Sends the blob from byte `from` on (the target holds the bytes before it): one PUT for a blob up
    /// to the chunk size sent from its start, else PATCHes of the chunk size and an empty PUT.
    async fn send_from(
        &self,
        repository: &str,
        blob: &Descriptor,
        reader: &Arc<Mutex<SourceReader>>,
        size: u64,
        location: &mut Url,
        from: u64,
    ) -> Result<(), RegistryError> {
        let generation = reader.lock().await.generation();
        if from == 0 && size <= self.chunk_size {
            let whole = body(reader.clone(), size, generation, self.target.http().context().clone());
            return self.target.put_blob(repository, location, &blob.digest, size, whole).await;
        }
        let mut offset = from;
        while offset < size {
            let length = self.chunk_size.min(size - offset);
            let part = body(reader.clone(), length, generation, self.target.http().context().clone());
            let next = self.target.patch_blob(repository, location, offset, length, part);
            *location = next.await?;
            offset += length;
        }
        self.target.finish_upload(repository, location, &blob.digest).await
    }
}
