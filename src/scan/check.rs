//! What the registry would serve, and what a client could pull: the rules, without storage access.
//!
//! distribution 2.8 (checked against the Debian `docker-registry` serving damaged trees, see
//! `docs/reliability.md`) resolves a tag through its `current/link`, then the manifest's revision link
//! in the repository, then the manifest blob; it parses the blob by its schema version and media type
//! before answering. A client then fetches every blob the manifest names, which the registry serves only
//! when it is linked in the repository's `_layers` and present under `blobs/`. Each step that fails has
//! its reason here, with a short stable name for counting.

use serde::Deserialize;
use thiserror::Error;

use crate::copy::manifest::{
    parse_manifest, ManifestError, DOCKER_LIST, DOCKER_MANIFEST, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST,
};
use crate::layout::{Digest, DigestError};

/// Why a tag (or a manifest) is not served by the registry, or not pullable from it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Unpullable {
    #[error("manifest unknown: its revision link is missing")]
    RevisionLinkMissing,
    #[error("revision link unreadable by the registry: {0}")]
    RevisionLinkInvalid(DigestError),
    #[error("revision link names {0}, not the manifest's digest")]
    RevisionLinkElsewhere(Digest),
    #[error("manifest unknown: the manifest blob is missing from blobs/")]
    ManifestBlobMissing,
    #[error("the manifest blob is empty (the registry answers 500)")]
    ManifestBlobEmpty,
    #[error("the registry cannot parse the manifest (it answers 500): {0}")]
    ManifestNotServed(ManifestError),
    #[error("the manifest's bytes do not hash to its digest (a client pulling by digest refuses them)")]
    ManifestCorrupt,
    #[error("Docker schema 1 manifest: served, but no current client pulls it and Harbor refuses it")]
    Schema1,
    #[error("{0}")]
    ManifestUnpullable(ManifestError),
    #[error("blob {0} is missing from blobs/ (blob unknown)")]
    BlobMissing(Digest),
    #[error("blob {0} is not linked in the repository's _layers (blob unknown)")]
    BlobNotLinked(Digest),
    #[error("the _layers link of blob {0} is unreadable by the registry: {1}")]
    LayerLinkInvalid(Digest, DigestError),
    #[error("index child {digest}: {reason}")]
    Child { digest: Digest, reason: Box<Unpullable> },
    #[error("could not be read: {0}")]
    Unreadable(String),
}

impl Unpullable {
    /// A short stable name for counting by reason (summary, JSON, inventory records).
    pub fn reason(&self) -> &'static str {
        match self {
            Unpullable::RevisionLinkMissing => "revision link missing",
            Unpullable::RevisionLinkInvalid(_) | Unpullable::RevisionLinkElsewhere(_) => "revision link invalid",
            Unpullable::ManifestBlobMissing => "manifest blob missing",
            Unpullable::ManifestBlobEmpty => "manifest blob empty",
            Unpullable::ManifestNotServed(ManifestError::TooLarge(_)) => "manifest over 4 MiB",
            Unpullable::ManifestNotServed(ManifestError::InvalidJson(_)) => "manifest not JSON",
            Unpullable::ManifestNotServed(_) => "manifest type unknown",
            Unpullable::ManifestCorrupt => "manifest corrupt",
            Unpullable::Schema1 => "schema 1",
            Unpullable::ManifestUnpullable(_) => "manifest descriptor invalid",
            Unpullable::BlobMissing(_) => "blob missing",
            Unpullable::BlobNotLinked(_) => "blob not linked",
            Unpullable::LayerLinkInvalid(..) => "layer link invalid",
            Unpullable::Child { .. } => "index child not pullable",
            Unpullable::Unreadable(_) => "unreadable",
        }
    }
}

/// The fields the registry looks at before serving a manifest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Versioned {
    schema_version: Option<i64>,
    media_type: Option<String>,
}

/// Checks what the registry checks before serving a manifest blob: not empty, at most 4 MiB (it answers
/// 500 above), JSON, schema version 1, or 2 with a media type it knows or none (OCI).
pub fn check_served(bytes: &[u8]) -> Result<(), Unpullable> {
    if bytes.is_empty() {
        return Err(Unpullable::ManifestBlobEmpty);
    }
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(Unpullable::ManifestNotServed(ManifestError::TooLarge(bytes.len())));
    }
    let versioned: Versioned = serde_json::from_slice(bytes)
        .map_err(|e| Unpullable::ManifestNotServed(ManifestError::InvalidJson(e.to_string())))?;
    match (versioned.schema_version, versioned.media_type.as_deref()) {
        (Some(1), _) => Ok(()),
        (Some(2), None | Some(OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST)) => Ok(()),
        (Some(2), Some(other)) => Err(Unpullable::ManifestNotServed(ManifestError::UnknownMediaType(other.into()))),
        (version, _) => Err(Unpullable::ManifestNotServed(ManifestError::UnknownMediaType(format!(
            "schema version {}",
            version.map(|v| v.to_string()).unwrap_or_else(|| "missing".into())
        )))),
    }
}

/// Checks a served manifest as a client pulls it: parsed by its media type, with well-formed
/// descriptors. Returns what it references.
pub fn check_pullable(bytes: &[u8], digest: &Digest) -> Result<crate::copy::manifest::Manifest, Unpullable> {
    check_served(bytes)?;
    let manifest = parse_manifest(bytes).map_err(|error| match error {
        ManifestError::Schema1 => Unpullable::Schema1,
        other => Unpullable::ManifestUnpullable(other),
    })?;
    // The registry serves a tag's bytes whatever they hash to; a pull by digest, and the copy, check.
    if digest.algorithm() == "sha256" && Digest::sha256_of(bytes) != *digest {
        return Err(Unpullable::ManifestCorrupt);
    }
    Ok(manifest)
}

/// The verdict on a revision link's content: exactly a digest (no newline, as the registry reads it),
/// naming the manifest.
pub fn revision_link_verdict(content: &[u8], digest: &Digest) -> Result<(), Unpullable> {
    match crate::layout::parse_link(content) {
        Ok(named) if &named == digest => Ok(()),
        Ok(other) => Err(Unpullable::RevisionLinkElsewhere(other)),
        Err(error) => Err(Unpullable::RevisionLinkInvalid(error)),
    }
}

/// The verdict on a `_layers` link's content: exactly a digest, naming the blob.
pub fn layer_link_verdict(content: &[u8], digest: &Digest) -> Result<(), Unpullable> {
    match crate::layout::parse_link(content) {
        Ok(named) if &named == digest => Ok(()),
        Ok(other) => Err(Unpullable::LayerLinkInvalid(digest.clone(), DigestError::Malformed(other.to_string()))),
        Err(error) => Err(Unpullable::LayerLinkInvalid(digest.clone(), error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_follows_the_registry() {
        assert_eq!(check_served(b""), Err(Unpullable::ManifestBlobEmpty));
        assert_eq!(check_served(b"schemaVersion: 2\n").unwrap_err().reason(), "manifest not JSON");
        assert_eq!(check_served(br#"{"schemaVersion": 3}"#).unwrap_err().reason(), "manifest type unknown");
        assert_eq!(
            check_served(br#"{"schemaVersion": 2, "mediaType": "application/x-unknown"}"#).unwrap_err().reason(),
            "manifest type unknown"
        );
        assert_eq!(check_served(&vec![b' '; MAX_MANIFEST_SIZE + 1]).unwrap_err().reason(), "manifest over 4 MiB");
        assert_eq!(check_served(br#"{"schemaVersion": 1, "fsLayers": []}"#), Ok(()));
        assert_eq!(check_served(br#"{"schemaVersion": 2, "config": {}}"#), Ok(()));
    }

    #[test]
    fn pullable_refuses_schema_1_and_bad_descriptors() {
        let check = |bytes: &[u8]| check_pullable(bytes, &Digest::sha256_of(bytes));
        assert_eq!(check(br#"{"schemaVersion": 1, "fsLayers": []}"#).unwrap_err(), Unpullable::Schema1);
        let bad = br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": "md5:abc", "size": 1}}"#;
        assert_eq!(check(bad).unwrap_err().reason(), "manifest descriptor invalid");
        let image = br#"{"schemaVersion": 2, "config": {"digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "size": 1}}"#;
        assert!(check(image).is_ok());
        assert_eq!(check_pullable(image, &Digest::sha256_of(b"other")), Err(Unpullable::ManifestCorrupt));
    }

    #[test]
    fn links_must_name_the_digest_exactly() {
        let digest = Digest::sha256_of(b"m");
        assert_eq!(revision_link_verdict(digest.as_str().as_bytes(), &digest), Ok(()));
        assert_eq!(revision_link_verdict(b"", &digest).unwrap_err().reason(), "revision link invalid");
        let other = Digest::sha256_of(b"other");
        assert_eq!(
            revision_link_verdict(other.as_str().as_bytes(), &digest),
            Err(Unpullable::RevisionLinkElsewhere(other))
        );
        assert_eq!(layer_link_verdict(b"", &digest).unwrap_err().reason(), "layer link invalid");
    }
}
