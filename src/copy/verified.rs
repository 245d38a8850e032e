//! A blob's bytes read from the source storage, checked against its digest on the way, handed out in
//! pieces to the requests that upload them, and read again from any offset the target asks for.
//!
//! Every byte is hashed once, in order, as it is read from the source. The piece that completes the
//! blob is handed out only once the whole blob has hashed to its digest, so a corrupt blob never
//! completes an upload (the body fails instead, and the target, which also checks, discards it). To
//! start again at an offset the target reports, the hasher's state is kept at points spaced at least a
//! chunk apart: the source is opened again at the last point at or before that offset and read (and
//! hashed, not sent) up to it. The hash therefore always covers the bytes in order, across any resume.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

use super::CopyError;
use crate::layout::Digest;
use crate::storage::object::ByteStream;
use crate::storage::BlobStore;

/// A blob on its way out of the source storage.
pub struct SourceReader {
    source: Arc<BlobStore>,
    digest: Digest,
    key: String,
    size: u64,
    /// The source's bytes from `read` on.
    stream: Option<ByteStream>,
    /// The hash of the bytes `[0, read)`.
    hasher: Sha256,
    read: u64,
    /// Bytes read and hashed, not yet handed out: `[handed, read)`.
    pending: Bytes,
    handed: u64,
    /// Hasher states at offsets where the source may be opened again, in order (the first at 0).
    checkpoints: Vec<(u64, Sha256)>,
    /// Offsets between two checkpoints, at least.
    spacing: u64,
    /// Why the bytes cannot be sent (corrupt, or the source failed), once known.
    failure: Option<CopyError>,
    /// Counts rewinds: a request body made before the last one may not take pieces any more (a failed
    /// request's body can outlive the failure for a moment).
    generation: u64,
}

impl SourceReader {
    /// Opens `digest`'s blob, whose manifest says `expected` bytes (0: unknown). Missing, or of another
    /// size: an error naming its key.
    pub async fn open(
        source: Arc<BlobStore>,
        digest: &Digest,
        expected: u64,
        spacing: u64,
    ) -> Result<SourceReader, CopyError> {
        let key = source.blob_key(digest);
        let (size, stream) = source.open(digest, 0).await?.ok_or_else(|| CopyError::Missing {
            what: "blob",
            digest: digest.clone(),
            key: key.clone(),
        })?;
        if expected != 0 && size != expected {
            return Err(CopyError::SizeMismatch { digest: digest.clone(), expected, actual: size, key });
        }
        let mut reader = SourceReader {
            source,
            digest: digest.clone(),
            key,
            size,
            stream: Some(stream),
            hasher: Sha256::new(),
            read: 0,
            pending: Bytes::new(),
            handed: 0,
            checkpoints: vec![(0, Sha256::new())],
            spacing: spacing.max(1),
            failure: None,
            generation: 0,
        };
        reader.check_if_complete();
        Ok(reader)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Which rewind the reader is at (see `body`).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The offset of the next byte to hand out.
    pub fn position(&self) -> u64 {
        self.handed
    }

    /// Why the blob cannot be sent, if that is known: corrupt data (never worth another try) or a
    /// failed read of the source.
    pub fn failure(&self) -> Option<&CopyError> {
        self.failure.as_ref()
    }

    /// Whether the blob's bytes are bad (no upload of them may ever complete).
    pub fn is_corrupt(&self) -> bool {
        matches!(self.failure, Some(CopyError::Corrupt { .. }))
    }

    /// The next piece, of at most `max` bytes; `None` at the end of the blob. Fails on a source read
    /// error or a corrupt blob (the reason is kept in `failure`).
    pub async fn next_piece(&mut self, max: u64) -> std::io::Result<Option<Bytes>> {
        if let Some(failure) = &self.failure {
            return Err(std::io::Error::other(failure.to_string()));
        }
        if self.pending.is_empty() && self.read < self.size {
            self.read_piece().await?;
        }
        if self.pending.is_empty() {
            return Ok(None);
        }
        let take = (self.pending.len() as u64).min(max) as usize;
        let piece = self.pending.split_to(take);
        self.handed += take as u64;
        Ok(Some(piece))
    }

    /// Reads and hashes one more piece of the source; checks the digest once the last byte is in.
    async fn read_piece(&mut self) -> std::io::Result<()> {
        if self.read >= self.checkpoints.last().map_or(0, |(at, _)| *at) + self.spacing {
            self.checkpoints.push((self.read, self.hasher.clone()));
        }
        let stream = self.stream.as_mut().expect("a reader below its size has a stream");
        let piece = match stream.next().await {
            Some(Ok(piece)) => piece,
            Some(Err(error)) => {
                return Err(self.fail(CopyError::Storage(format!("blob {} ({}): {error}", self.digest, self.key))))
            }
            None => {
                let message = format!(
                    "blob {} ({}): the source ended at byte {} of {}",
                    self.digest, self.key, self.read, self.size
                );
                return Err(self.fail(CopyError::Storage(message)));
            }
        };
        if self.read + piece.len() as u64 > self.size {
            let message =
                format!("blob {} ({}): the source holds more than its {} bytes", self.digest, self.key, self.size);
            return Err(self.fail(CopyError::Storage(message)));
        }
        self.hasher.update(&piece);
        self.read += piece.len() as u64;
        self.pending = piece;
        self.check_if_complete();
        match &self.failure {
            Some(failure) => Err(std::io::Error::other(failure.to_string())),
            None => Ok(()),
        }
    }

    /// Once every byte is read: the digest check, before the last piece goes anywhere.
    fn check_if_complete(&mut self) {
        if self.read != self.size {
            return;
        }
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if actual != self.digest.as_str() {
            self.pending = Bytes::new();
            self.failure =
                Some(CopyError::Corrupt { what: "blob", digest: self.digest.clone(), actual, key: self.key.clone() });
        }
    }

    fn fail(&mut self, failure: CopyError) -> std::io::Error {
        let error = std::io::Error::other(failure.to_string());
        self.failure = Some(failure);
        self.stream = None;
        error
    }

    /// Makes `offset` the next byte handed out: opens the source again at the last checkpoint at or
    /// before it, and reads (hashing, not handing out) up to it. A corrupt blob stays corrupt.
    pub async fn rewind_to(&mut self, offset: u64) -> Result<(), CopyError> {
        if self.is_corrupt() {
            return Err(self.failure.clone().expect("corrupt"));
        }
        let (at, hasher) =
            self.checkpoints.iter().rev().find(|(at, _)| *at <= offset).cloned().expect("a checkpoint at 0");
        let (_, stream) = self.source.open(&self.digest, at).await?.ok_or_else(|| CopyError::Missing {
            what: "blob",
            digest: self.digest.clone(),
            key: self.key.clone(),
        })?;
        self.stream = Some(stream);
        self.hasher = hasher;
        self.generation += 1;
        (self.read, self.handed, self.pending, self.failure) = (at, at, Bytes::new(), None);
        self.checkpoints.retain(|(checkpoint, _)| *checkpoint <= at);
        self.check_if_complete();
        while self.handed < offset {
            if self.next_piece(offset - self.handed).await.is_err() || self.failure.is_some() {
                return Err(self.failure.clone().expect("a failed read leaves its reason"));
            }
        }
        Ok(())
    }
}

/// The next `length` bytes of a shared reader as a request body, streamed piece by piece, as long as
/// the reader is at `generation` (a body made before a rewind fails instead of taking pieces).
pub fn body(
    reader: Arc<tokio::sync::Mutex<SourceReader>>,
    length: u64,
    generation: u64,
    http: Arc<crate::http::Context>,
) -> reqwest::Body {
    let pieces = futures::stream::unfold((reader, length), move |(reader, left)| {
        let http = http.clone();
        async move {
            if left == 0 {
                return None;
            }
            let mut current = reader.lock().await;
            if current.generation() != generation {
                drop(current);
                return Some((Err(std::io::Error::other("a body of an earlier try")), (reader, 0)));
            }
            let piece = current.next_piece(left).await;
            drop(current);
            // `--max-bandwidth` counts bytes sent, not the ones a rewind reads again to hash.
            if let Ok(Some(piece)) = &piece {
                http.copied(piece.len()).await;
            }
            match piece {
                Ok(Some(piece)) => {
                    let left = left - piece.len() as u64;
                    Some((Ok(piece), (reader, left)))
                }
                Ok(None) => Some((Err(std::io::Error::other("the blob ended early")), (reader, 0))),
                Err(error) => Some((Err(error), (reader, 0))),
            }
        }
    });
    reqwest::Body::wrap_stream(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob store on disk holding `content` under its digest.
    fn store_with(content: &[u8]) -> (tempfile::TempDir, Arc<BlobStore>, Digest) {
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::sha256_of(content);
        let path = dir.path().join(crate::layout::blob_data_key(&digest));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        let store = Arc::new(BlobStore::Filesystem { root: dir.path().to_path_buf() });
        (dir, store, digest)
    }

    async fn drain(reader: &mut SourceReader, max: u64) -> (Vec<u8>, Option<std::io::Error>) {
        let mut out = Vec::new();
        loop {
            match reader.next_piece(max).await {
                Ok(Some(piece)) => out.extend_from_slice(&piece),
                Ok(None) => return (out, None),
                Err(error) => return (out, Some(error)),
            }
        }
    }

    #[tokio::test]
    async fn hands_out_a_good_blob_whole_in_pieces_of_at_most_max() {
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (_dir, store, digest) = store_with(&content);
        let mut reader = SourceReader::open(store, &digest, content.len() as u64, 1 << 20).await.unwrap();
        let mut out = Vec::new();
        while let Some(piece) = reader.next_piece(100_000).await.unwrap() {
            assert!(piece.len() <= 100_000);
            out.extend_from_slice(&piece);
        }
        assert_eq!(out, content);
    }

    #[tokio::test]
    async fn never_hands_out_the_end_of_a_corrupt_blob() {
        let content = vec![7u8; 2_000_000];
        let (dir, store, digest) = store_with(&content);
        // Rot one byte near the end, after the digest was taken.
        let path = dir.path().join(crate::layout::blob_data_key(&digest));
        let mut rotten = content.clone();
        rotten[1_999_000] = 8;
        std::fs::write(&path, &rotten).unwrap();
        let mut reader = SourceReader::open(store, &digest, 0, 1 << 20).await.unwrap();
        let (out, error) = drain(&mut reader, u64::MAX).await;
        assert!(error.is_some());
        assert!(out.len() < content.len(), "the last piece is held back");
        assert!(reader.is_corrupt());
        assert!(matches!(reader.rewind_to(0).await, Err(CopyError::Corrupt { .. })), "corrupt stays corrupt");
    }

    #[tokio::test]
    async fn rewinds_to_any_offset_and_still_checks_every_byte() {
        let content: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let (_dir, store, digest) = store_with(&content);
        let mut reader = SourceReader::open(store, &digest, 0, 1 << 20).await.unwrap();
        let (first, _) = {
            let mut out = Vec::new();
            while out.len() < 3_500_000 {
                out.extend_from_slice(&reader.next_piece(250_000).await.unwrap().unwrap());
            }
            (out, ())
        };
        assert_eq!(&first[..], &content[..first.len()]);
        for offset in [2_345_678u64, 0, 4_999_999, 1_048_576] {
            reader.rewind_to(offset).await.unwrap();
            assert_eq!(reader.position(), offset);
            let (rest, error) = drain(&mut reader, 300_000).await;
            assert!(error.is_none(), "{error:?}");
            assert_eq!(&rest[..], &content[offset as usize..]);
        }
    }

    #[tokio::test]
    async fn a_body_made_before_a_rewind_takes_nothing() {
        use http_body_util::BodyExt;
        let content: Vec<u8> = (0..1_500_000u32).map(|i| (i % 241) as u8).collect();
        let (_dir, store, digest) = store_with(&content);
        let reader = Arc::new(tokio::sync::Mutex::new(SourceReader::open(store, &digest, 0, 1 << 20).await.unwrap()));
        let stale = body(reader.clone(), 1000, reader.lock().await.generation(), Arc::default());
        reader.lock().await.rewind_to(0).await.unwrap();
        assert!(stale.collect().await.is_err(), "a body of an earlier try fails");
        assert_eq!(reader.lock().await.position(), 0, "and took no byte from the current one");
        let fresh = body(reader.clone(), 1000, reader.lock().await.generation(), Arc::default());
        assert_eq!(fresh.collect().await.unwrap().to_bytes(), &content[..1000]);
    }

    #[tokio::test]
    async fn an_empty_blob_is_checked_at_once() {
        let (_dir, store, digest) = store_with(b"");
        let mut reader = SourceReader::open(store, &digest, 0, 1 << 20).await.unwrap();
        assert!(reader.next_piece(10).await.unwrap().is_none());
        assert!(reader.failure().is_none());
    }
}
