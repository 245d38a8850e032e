//! Pure manifest rules for the copy: what a manifest is (by its own media type), which children and
//! blobs it references, and which manifests the target cannot take.

use serde::Deserialize;
use thiserror::Error;

use crate::layout::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Registries (Harbor included) refuse manifests larger than this.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Layers that registries must not be sent (Windows base layers and other foreign layers).
const NON_DISTRIBUTABLE: [&str; 3] = [
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// What a manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An image: its config and layers are blobs to copy first.
    Image { media_type: String, blobs: Vec<Descriptor>, subject: Option<Descriptor> },
    /// An index or manifest list: its children are manifests to copy (by digest) first.
    Index { media_type: String, children: Vec<Descriptor>, subject: Option<Descriptor> },
}

impl Manifest {
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image { media_type, .. } | Manifest::Index { media_type, .. } => media_type,
        }
    }

    /// The manifest this one refers to (OCI 1.1 `subject`: signatures, SBOMs, attestations).
    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            Manifest::Image { subject, .. } | Manifest::Index { subject, .. } => subject.as_ref(),
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is {0} bytes, over the 4 MiB registries accept")]
    TooLarge(usize),
    #[error("manifest is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("Docker schema 1 manifest: deprecated and not copied (re-push the image with a current client)")]
    Schema1,
    #[error("unknown manifest media type {0:?}")]
    UnknownMediaType(String),
    #[error("manifest references a bad descriptor: {0}")]
    BadDescriptor(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    urls: Vec<String>,
}

impl RawDescriptor {
    fn parse(self) -> Result<Descriptor, ManifestError> {
        let digest = Digest::parse(&self.digest).map_err(|e| ManifestError::BadDescriptor(e.to_string()))?;
        Ok(Descriptor { media_type: self.media_type, digest, size: self.size })
    }

    /// Foreign layers (with `urls` and a non-distributable type) live elsewhere and are not pushed.
    fn is_distributable(&self) -> bool {
        self.urls.is_empty() || !NON_DISTRIBUTABLE.contains(&self.media_type.as_str())
    }
}

/// Parses a manifest's bytes. Its media type is the one it declares; OCI manifests may omit it, and
/// are then told apart by their shape (`manifests` for an index, `config` for an image).
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(ManifestError::TooLarge(bytes.len()));
    }
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::InvalidJson(e.to_string()))?;
    if raw.schema_version == Some(1) {
        return Err(ManifestError::Schema1);
    }
    let media_type = match raw.media_type.as_deref() {
        Some(declared) => declared.to_string(),
        None if raw.manifests.is_some() => OCI_INDEX.to_string(),
        None if raw.config.is_some() => OCI_MANIFEST.to_string(),
        None => return Err(ManifestError::UnknownMediaType(String::new())),
    };
    let subject = raw.subject.map(RawDescriptor::parse).transpose()?;
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => {
            let children =
                raw.manifests.unwrap_or_default().into_iter().map(RawDescriptor::parse).collect::<Result<_, _>>()?;
            Ok(Manifest::Index { media_type, children, subject })
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config =
                raw.config.ok_or_else(|| ManifestError::BadDescriptor("image manifest without config".into()))?;
            let mut blobs = vec![config.parse()?];
            for layer in raw.layers.into_iter().filter(RawDescriptor::is_distributable) {
                blobs.push(layer.parse()?);
            }
            Ok(Manifest::Image { media_type, blobs, subject })
        }
        other => Err(ManifestError::UnknownMediaType(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(seed: &str) -> String {
        Digest::sha256_of(seed.as_bytes()).to_string()
    }

    #[test]
    fn images_list_config_then_layers() {
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest("c"), "size": 10},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest("l1"), "size": 20},
                {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": digest("win"), "size": 30, "urls": ["https://x/y"]},
            ],
        });
        let Manifest::Image { media_type, blobs, subject } = parse_manifest(manifest.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(subject, None);
        assert_eq!(media_type, DOCKER_MANIFEST);
        assert_eq!(
            blobs.iter().map(|b| b.digest.to_string()).collect::<Vec<_>>(),
            vec![digest("c"), digest("l1")],
            "foreign layers are not pushed"
        );
    }

    #[test]
    fn indexes_list_children_and_oci_types_may_be_implicit() {
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest("a"), "size": 5}]});
        let Manifest::Index { media_type, children, .. } = parse_manifest(index.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(media_type, OCI_INDEX);
        assert_eq!(children[0].size, 5);
        let image = serde_json::json!({"schemaVersion": 2, "config": {"digest": digest("c"), "size": 1}, "layers": []});
        assert_eq!(parse_manifest(image.to_string().as_bytes()).unwrap().media_type(), OCI_MANIFEST);
    }

    #[test]
    fn referrers_name_their_subject() {
        let referrer = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest("e"), "size": 2},
            "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": digest("s"), "size": 9},
        });
        let manifest = parse_manifest(referrer.to_string().as_bytes()).unwrap();
        assert_eq!(manifest.subject().unwrap().digest.to_string(), digest("s"));
    }

    #[test]
    fn refuses_what_registries_refuse() {
        assert_eq!(
            parse_manifest(br#"{"schemaVersion": 1, "name": "x", "fsLayers": []}"#),
            Err(ManifestError::Schema1)
        );
        assert!(matches!(parse_manifest(b"{not json"), Err(ManifestError::InvalidJson(_))));
        assert!(matches!(
            parse_manifest(br#"{"schemaVersion":2,"mediaType":"application/x-unknown"}"#),
            Err(ManifestError::UnknownMediaType(_))
        ));
        assert!(matches!(parse_manifest(&vec![b' '; MAX_MANIFEST_SIZE + 1]), Err(ManifestError::TooLarge(_))));
        let bad = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": "sha256:xyz", "size": 1}});
        assert!(matches!(parse_manifest(bad.to_string().as_bytes()), Err(ManifestError::BadDescriptor(_))));
    }
}
