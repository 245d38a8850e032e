//! Reading blobs (layers, configs, and manifests, which are blobs too) from the source storage, for the
//! copy: small ones whole, large ones as a stream.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::object::ranged::{self, ReadAhead};
use super::object::{ByteStream, ObjectBackend, ObjectOptions, StorageError};
use super::Source;
use crate::layout::{self, Digest};

/// The blob store of a source registry.
pub enum BlobStore {
    Filesystem {
        root: PathBuf,
    },
    /// Large blobs are read by several ranges at once, within the run's `read_ahead`.
    Object {
        store: Arc<ObjectBackend>,
        root: String,
        read_ahead: ReadAhead,
    },
}

impl BlobStore {
    /// Connects to the source's blob store. On Azure, the root is the one (with or without the leading
    /// `/` that distribution 2.8 wrote) under which repositories exist.
    pub async fn connect(source: &Source, options: &ObjectOptions) -> Result<BlobStore, StorageError> {
        match source {
            Source::Filesystem(root) => Ok(BlobStore::Filesystem { root: root.clone() }),
            Source::Object { cloud, bucket, root } => {
                let store = Arc::new(ObjectBackend::connect(*cloud, bucket, options).await?);
                let mut chosen = root.clone();
                for variant in store.root_variants(root) {
                    let prefix = format!("{variant}{}", layout::repositories_prefix());
                    let request =
                        super::object::ListRequest { prefix: &prefix, max_keys: Some(1), ..Default::default() };
                    if !store.list(&request).await?.objects.is_empty() {
                        chosen = variant;
                        break;
                    }
                }
                Ok(BlobStore::Object { store, root: chosen, read_ahead: ReadAhead::default() })
            }
        }
    }

    /// Where a blob's bytes are, as a key (or path) for messages.
    pub fn blob_key(&self, digest: &Digest) -> String {
        match self {
            BlobStore::Filesystem { root } => root.join(layout::blob_data_key(digest)).display().to_string(),
            BlobStore::Object { root, .. } => format!("{root}{}", layout::blob_data_key(digest)),
        }
    }

    /// Reads a blob of at most `max_len` bytes (returning `max_len + 1` bytes when it is longer);
    /// `None` when it is missing.
    pub async fn read_small(&self, digest: &Digest, max_len: usize) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            BlobStore::Filesystem { root } => {
                let root = root.clone();
                let key = layout::blob_data_key(digest);
                tokio::task::spawn_blocking(move || read_file_below(&root, &key, max_len))
                    .await
                    .expect("blob read panicked")
                    .map_err(|source| StorageError::Io {
                        operation: "read",
                        target: layout::blob_data_key(digest),
                        source,
                    })
            }
            BlobStore::Object { store, root, .. } => {
                store.read_small(&format!("{root}{}", layout::blob_data_key(digest)), max_len).await
            }
        }
    }

    /// Opens a blob as a stream of its bytes from byte `from` on (a seek on disk, a ranged read on an
    /// object store), with the blob's whole size; `None` when it is missing.
    pub async fn open(&self, digest: &Digest, from: u64) -> Result<Option<(u64, ByteStream)>, StorageError> {
        match self {
            BlobStore::Filesystem { root } => {
                let io_error = |source: io::Error| StorageError::Io {
                    operation: "read",
                    target: layout::blob_data_key(digest),
                    source,
                };
                let Some(file) = open_file_below(root, &layout::blob_data_key(digest)).map_err(io_error)? else {
                    return Ok(None);
                };
                let size = file.metadata().map_err(io_error)?.len();
                let mut file = file;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(from)).map_err(io_error)?;
                Ok(Some((size, file_stream(file))))
            }
            BlobStore::Object { store, root, read_ahead } => {
                ranged::open(store, &format!("{root}{}", layout::blob_data_key(digest)), from, read_ahead).await
            }
        }
    }
}

/// Opens `key` below `root` without following any symbolic link on the way; `None` when missing.
fn open_file_below(root: &Path, key: &str) -> io::Result<Option<std::fs::File>> {
    let root_dir = rustix::fs::open(
        root,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    match super::fs::open_file(root_dir.as_fd(), key) {
        Ok(fd) => Ok(Some(std::fs::File::from(fd))),
        Err(error) if super::fs::is_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

fn read_file_below(root: &Path, key: &str, max_len: usize) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let Some(file) = open_file_below(root, key)? else { return Ok(None) };
    let mut content = Vec::new();
    file.take(max_len as u64 + 1).read_to_end(&mut content)?;
    Ok(Some(content))
}

/// The size of a piece read from a file: what one blob body holds at a time (with the piece being
/// written out), so the copy's memory is pieces times `--upload-concurrency`.
pub const PIECE: usize = 512 * 1024;

/// Streams a file in pieces of `PIECE` bytes, read on the blocking pool.
fn file_stream(file: std::fs::File) -> ByteStream {
    let file = Arc::new(file);
    Box::pin(futures::stream::unfold(Some(file), |file| async move {
        let file = file?;
        let reader = file.clone();
        let piece = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buffer = vec![0u8; PIECE];
            let mut filled = 0;
            while filled < PIECE {
                match (&*reader).read(&mut buffer[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            buffer.truncate(filled);
            Ok(buffer)
        })
        .await
        .expect("file read panicked");
        match piece {
            Ok(piece) if piece.is_empty() => None,
            Ok(piece) => Some((Ok(Bytes::from(piece)), Some(file))),
            Err(error) => Some((Err(error), None)),
        }
    }))
}
