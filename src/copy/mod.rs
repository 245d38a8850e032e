//! Copying one image from the source storage into the target registry, byte for byte.
//!
//! A tag is copied as: check the target's tag (same digest: skip; another digest: leave it unless
//! overriding) -> the manifest, read from the source blob store and checked against its digest -> its
//! graph, children first (an index's children are PUT by digest before it; an image's blobs are on the
//! target before its manifest) -> the manifest PUT under the tag, with its exact bytes and media type.
//!
//! A blob goes through small named steps: `blob_exists` (HEAD) -> `mount_blob` (from a target repository
//! that already holds it) -> `start_upload` -> streamed upload, its digest checked on the way. Work is
//! shared across tags by digest: a blob or manifest shared by many images is sent once per repository.

mod blobs;
mod image;
pub mod manifest;
mod transfer;
mod verified;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{Mutex, OnceCell};

use crate::journal::Journal;
use crate::layout::Digest;
use crate::registry::client::{Mount, RegistryClient, RegistryError};
use crate::registry::control::{ControlError, ControlPlane};
use crate::registry::refusal::RefusalClass;
use crate::storage::object::StorageError;
use crate::storage::BlobStore;
use manifest::{parse_manifest, Descriptor, Manifest, ManifestError, MAX_MANIFEST_SIZE};

/// Blobs above this size are sent in PATCHes of this size; smaller ones in one PUT. Bodies are streamed,
/// so the chunk size costs no memory: it is how much one cut request may cost in bytes sent again.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 * 1024 * 1024;

/// Blob bodies in flight at once across all copies, unless `--upload-concurrency` says otherwise: the
/// memory budget of the copy (each body holds about two source pieces, `storage::blobs::PIECE`).
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 16;

#[derive(Debug, Error, Clone)]
pub enum CopyError {
    #[error("manifest {digest}: {source}")]
    Manifest { digest: Digest, source: ManifestError },
    #[error("{what} {digest} is missing from the source storage ({key})")]
    Missing { what: &'static str, digest: Digest, key: String },
    #[error("{what} {digest} in the source storage is corrupt: its bytes hash to {actual} ({key}); not pushed")]
    Corrupt { what: &'static str, digest: Digest, actual: String, key: String },
    #[error(
        "blob {digest}: the manifest says {expected} bytes, the source storage holds {actual} ({key}); not pushed"
    )]
    SizeMismatch { digest: Digest, expected: u64, actual: u64, key: String },
    #[error("source storage: {0}")]
    Storage(String),
    /// The source storage failed (its cause kept).
    #[error("source storage: {0}")]
    Source(#[source] Arc<StorageError>),
    #[error("target: {0}")]
    Target(String),
    /// The target's registry failed (its cause kept).
    #[error("target: {}", .0.explained())]
    Registry(#[source] Arc<RegistryError>),
    /// Refused by one of Harbor's policies: never tried again.
    #[error("refused by Harbor ({}): {message}", class.name())]
    Refused { class: RefusalClass, message: String },
    #[error(
        "the target's tag points at {existing}, not {wanted}: left alone (it was changed on the target, or not \
         set by rehydrate; use --override to replace it)"
    )]
    TagDiffers { existing: Digest, wanted: Digest },
}

impl From<StorageError> for CopyError {
    fn from(error: StorageError) -> Self {
        CopyError::Source(Arc::new(error))
    }
}

impl From<RegistryError> for CopyError {
    fn from(error: RegistryError) -> Self {
        match error.refusal() {
            Some(class) => CopyError::Refused { class, message: error.explained() },
            None => CopyError::Registry(Arc::new(error)),
        }
    }
}

impl From<ControlError> for CopyError {
    fn from(error: ControlError) -> Self {
        match error {
            ControlError::Refused { class, message } => CopyError::Refused { class, message },
            ControlError::Registry(error) => error.into(),
            ControlError::Failed(message) => CopyError::Target(message),
        }
    }
}

impl CopyError {
    /// The class of Harbor policy that refused this, if one did.
    pub fn refusal(&self) -> Option<RefusalClass> {
        match self {
            CopyError::Refused { class, .. } => Some(*class),
            _ => None,
        }
    }
}

/// When a target tag that points at another digest may be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replace {
    /// Never: it is left alone and reported.
    Never,
    /// Whatever it points at (`--override`).
    Any,
    /// Only while it still points at this digest: the one rehydrate set, which the source has moved on
    /// from. Someone else's change is left alone.
    Only(Digest),
}

impl Replace {
    pub fn allows(&self, existing: &Digest) -> bool {
        match self {
            Replace::Never => false,
            Replace::Any => true,
            Replace::Only(set_by_us) => set_by_us == existing,
        }
    }
}

/// What copying one tag did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOutcome {
    /// The tag was pushed.
    Pushed,
    /// The target's tag already pointed at the same digest: nothing was sent.
    AlreadyThere,
    /// Already there with the same digest, but pulls of it are blocked by a Harbor policy (content
    /// trust, vulnerability prevention): its digest came from Harbor's API.
    PullBlocked,
}

/// A target tag (or digest) as the target knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetManifest {
    pub digest: Digest,
    /// Found through Harbor's API because a pull-side policy answers the manifest HEAD with 412.
    pub pull_blocked: bool,
}

impl TargetManifest {
    /// What finding the wanted digest there means.
    fn outcome(&self) -> TagOutcome {
        if self.pull_blocked {
            TagOutcome::PullBlocked
        } else {
            TagOutcome::AlreadyThere
        }
    }
}

/// Counts of the work done, shared by every copy.
#[derive(Debug, Default)]
pub struct CopyCounts {
    pub blobs_uploaded: AtomicU64,
    pub blobs_mounted: AtomicU64,
    pub blobs_present: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub manifests_pushed: AtomicU64,
}

type Once = Arc<OnceCell<Result<(), CopyError>>>;
/// The one upload of a blob: the target repository that holds it once done.
type BlobHome = Arc<OnceCell<Result<String, CopyError>>>;
/// Held by the one write of a digest into a namespace under way.
type WriteGate = Arc<Mutex<()>>;

/// The state shared by all copies into one target.
pub struct Copier {
    source: Arc<BlobStore>,
    target: Arc<RegistryClient>,
    pub counts: Arc<CopyCounts>,
    chunk_size: u64,
    /// One permit per blob body in flight: the copy's memory budget.
    bodies: tokio::sync::Semaphore,
    /// Per (repository, digest): the one attempt to get that blob or manifest there.
    done: Mutex<HashMap<(String, Digest), Once>>,
    /// Per blob: the one upload of its bytes to the target, and the repository it went to. Every other
    /// repository that needs the blob waits for it, then mounts from there: bytes cross once.
    uploads: Mutex<HashMap<Digest, BlobHome>>,
    /// Per (namespace, digest): one write of that manifest or blob at a time (a manifest PUT, a blob
    /// mount). Harbor charges a project's quota for a manifest or blob it does not hold yet, decided
    /// when the request comes in, so two writes of the same digest at once into one project (two tags
    /// of one image, an index child that is also tagged, two repositories mounting one blob) are both
    /// charged (seen on Harbor v2.15.2); one after the other, the second costs nothing.
    writes_in_namespace: Mutex<HashMap<(String, Digest), WriteGate>>,
    /// Rehydrating a target that serves the source's own storage: manifests first, blobs only on demand.
    in_place: bool,
    /// Where blobs known on the target are remembered beyond the in-memory maps.
    journal: Option<Arc<Journal>>,
    /// The target's control plane (Harbor's), for what its registry API will not tell.
    control: Option<Arc<dyn ControlPlane>>,
}

/// Finished entries kept in memory per map; past that they are swept (work in flight always stays).
/// A swept `done` entry costs one HEAD if asked again; a swept blob home is found in the journal.
const REMEMBERED: usize = 50_000;

/// Drops the finished entries of a full map, keeping the ones in flight (others may be waiting on them).
fn sweep<K, V>(map: &mut HashMap<K, Arc<OnceCell<V>>>) {
    if map.len() > REMEMBERED {
        map.retain(|_, cell| !cell.initialized());
    }
}

/// The subject digest a cosign-style tag names: `sha256-<hex>.sig` (or `.att`, `.sbom`).
pub fn cosign_subject(tag: &str) -> Option<Digest> {
    let (name, suffix) = tag.rsplit_once('.')?;
    if !matches!(suffix, "sig" | "att" | "sbom") {
        return None;
    }
    Digest::parse(&name.replacen('-', ":", 1)).ok()
}

impl Copier {
    pub fn new(
        source: Arc<BlobStore>,
        target: Arc<RegistryClient>,
        chunk_size: u64,
        upload_concurrency: usize,
        in_place: bool,
    ) -> Copier {
        Copier {
            source,
            target,
            counts: Arc::default(),
            chunk_size,
            bodies: tokio::sync::Semaphore::new(upload_concurrency.max(1)),
            done: Mutex::new(HashMap::new()),
            uploads: Mutex::new(HashMap::new()),
            writes_in_namespace: Mutex::new(HashMap::new()),
            in_place,
            journal: None,
            control: None,
        }
    }

    /// The target registry's client.
    pub fn target(&self) -> &RegistryClient {
        &self.target
    }

    /// Reads the registry API's answers with the target's control plane (Harbor's), where it has one.
    pub fn with_control_plane(mut self, control: Option<Arc<dyn ControlPlane>>) -> Copier {
        self.control = control;
        self
    }

    /// What the target holds under `reference`: a manifest HEAD, or, where a pull-side policy answers
    /// that with 412 (the artifact exists), Harbor's artifact API.
    pub async fn target_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<TargetManifest>, CopyError> {
        match self.target.manifest_digest(repository, reference).await {
            Ok(found) => Ok(found.map(|digest| TargetManifest { digest, pull_blocked: false })),
            Err(error) => {
                let Some(control) = &self.control else { return Err(error.into()) };
                let digest = control.read_failed_head(repository, reference, error).await?;
                Ok(digest.map(|digest| TargetManifest { digest, pull_blocked: true }))
            }
        }
    }

    /// Remembers blobs on the target in `journal` too (and looks for their homes there).
    pub fn with_journal(mut self, journal: Option<Arc<Journal>>) -> Copier {
        self.journal = journal;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags_name_their_subject() {
        let hex = "a".repeat(64);
        assert_eq!(cosign_subject(&format!("sha256-{hex}.sig")).unwrap().as_str(), format!("sha256:{hex}"));
        assert!(cosign_subject(&format!("sha256-{hex}.att")).is_some());
        assert!(cosign_subject("v1.0").is_none());
        assert!(cosign_subject("sha256-abc.sig").is_none());
    }

    #[tokio::test]
    async fn sweeping_keeps_only_work_in_flight() {
        let mut map: HashMap<u32, Arc<OnceCell<()>>> = HashMap::new();
        for key in 0..=REMEMBERED as u32 {
            let cell: Arc<OnceCell<()>> = Arc::default();
            if key % 2 == 0 {
                cell.set(()).unwrap();
            }
            map.insert(key, cell);
        }
        sweep(&mut map);
        assert_eq!(map.len(), REMEMBERED / 2, "the finished half is gone");
        assert!(map.values().all(|cell| !cell.initialized()));
    }
}
