//! Building images and the registry-written fixture through the registry API.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{sha256, Registry, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// The kind of image manifest to build.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Oci,
    Docker,
}

/// Pushes a small image (a config and a layer, unique to `seed`) and its manifest under `reference` (a
/// tag, or its own digest when `None`). Returns the manifest digest.
pub fn push_image(registry: &Registry, repository: &str, reference: Option<&str>, kind: Kind, seed: &str) -> String {
    push_image_sized(registry, repository, reference, kind, seed).0
}

/// `push_image`, returning the manifest's size too.
pub fn push_image_sized(
    registry: &Registry,
    repository: &str,
    reference: Option<&str>,
    kind: Kind,
    seed: &str,
) -> (String, usize) {
    push_image_with_layer(registry, repository, reference, kind, seed, format!("layer of {seed}").into_bytes())
}

/// Bytes that do not compress, `len` of them, the same for the same seed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `push_image_sized` with the given layer bytes.
pub fn push_image_with_layer(
    registry: &Registry,
    repository: &str,
    reference: Option<&str>,
    kind: Kind,
    seed: &str,
    layer: Vec<u8>,
) -> (String, usize) {
    let (manifest_type, config_type, layer_type) = match kind {
        Kind::Oci => {
            (OCI_MANIFEST, "application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip")
        }
        Kind::Docker => (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
    };
    let layer_digest = registry.push_blob(repository, &layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = registry.push_blob(repository, &config);
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let digest = sha256(&manifest);
    (registry.push_manifest(repository, reference.unwrap_or(&digest), manifest_type, &manifest), manifest.len())
}

/// Pushes an index (OCI) or manifest list (Docker) over children already pushed, by tag.
pub fn push_index(
    registry: &Registry,
    repository: &str,
    tag: &str,
    kind: Kind,
    children: &[(String, usize)],
) -> String {
    let (index_type, child_type) = match kind {
        Kind::Oci => (OCI_INDEX, OCI_MANIFEST),
        Kind::Docker => (DOCKER_LIST, DOCKER_MANIFEST),
    };
    let architectures = ["amd64", "arm64", "s390x"];
    let manifests: Vec<Value> = children
        .iter()
        .zip(architectures)
        .map(|((digest, size), arch)| json!({"mediaType": child_type, "digest": digest, "size": size, "platform": {"architecture": arch, "os": "linux"}}))
        .collect();
    let index =
        serde_json::to_vec_pretty(&json!({"schemaVersion": 2, "mediaType": index_type, "manifests": manifests}))
            .unwrap();
    registry.push_manifest(repository, tag, index_type, &index)
}

/// Pushes an OCI 1.1 artifact manifest (a signature-like referrer) whose `subject` is `subject`, by digest.
pub fn push_referrer(registry: &Registry, repository: &str, subject: &str, subject_size: usize) -> String {
    let payload = format!("signature of {subject}").into_bytes();
    let payload_digest = registry.push_blob(repository, &payload);
    let empty_config = b"{}".to_vec();
    let config_digest = registry.push_blob(repository, &empty_config);
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.signature", "digest": payload_digest, "size": payload.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
    }))
    .unwrap();
    let digest = sha256(&manifest);
    registry.push_manifest(repository, &digest, OCI_MANIFEST, &manifest)
}

/// What the fixture holds beyond what the registry answers.
pub struct FixtureFacts {
    /// Manifests no tag points at, as (repository, digest).
    pub untagged: BTreeSet<(String, String)>,
    /// Digests that were tagged once and then deleted, so must not appear.
    pub deleted: Vec<String>,
    /// The current digest of `team-a/web.app:stable`, which was re-pointed.
    pub restagged: String,
}

/// Number of repositories (with `gone/repo` and `blobsonly/repo`) and tags in the fixture.
pub const FIXTURE_REPOSITORIES: usize = 17;
pub const FIXTURE_TAGS: usize = 17;

/// Writes, through the registry's API, a layout with the shapes that trip walkers: two tags on one image,
/// a referrer, a re-pointed tag, a tag deleted through its digest, an OCI index and a Docker manifest
/// list (children by digest), an emptied repository, a blobs-only repository, nested and deep
/// repositories, every separator, and names that sort around `/`.
pub fn push_fixture(r: &Registry) -> FixtureFacts {
    let mut untagged = BTreeSet::new();
    let mut deleted = Vec::new();
    let mut untag = |repository: &str, digest: &str| untagged.insert((repository.to_string(), digest.to_string()));

    let (alpine, alpine_size) = push_image_sized(r, "library/alpine", Some("3.19"), Kind::Oci, "alpine");
    push_image(r, "library/alpine", Some("latest"), Kind::Oci, "alpine");
    untag("library/alpine", &push_referrer(r, "library/alpine", &alpine, alpine_size));

    push_image(r, "team-a/web.app", Some("v1"), Kind::Docker, "web1");
    untag("team-a/web.app", &push_image(r, "team-a/web.app", Some("stable"), Kind::Docker, "web-old"));
    let restagged = push_image(r, "team-a/web.app", Some("stable"), Kind::Docker, "web-new");
    let doomed = push_image(r, "team-a/web.app", Some("old"), Kind::Docker, "web-doomed");
    r.delete_manifest("team-a/web.app", &doomed);
    deleted.push(doomed);

    for (repository, tag, kind) in [("multi/arch", "1.0", Kind::Oci), ("multi/list", "2.0", Kind::Docker)] {
        let children: Vec<(String, usize)> = ["amd64", "arm64"]
            .iter()
            .map(|arch| {
                let child = push_image_sized(r, repository, None, kind, &format!("{repository}-{arch}"));
                untag(repository, &child.0);
                child
            })
            .collect();
        push_index(r, repository, tag, kind, &children);
    }

    for seed in ["gone1", "gone2"] {
        let digest = push_image(r, "gone/repo", Some(seed), Kind::Oci, seed);
        r.delete_manifest("gone/repo", &digest);
        deleted.push(digest);
    }
    r.push_blob("blobsonly/repo", b"a layer pushed without any manifest");

    for repository in
        ["nest/a", "nest/a/b", "nest/a/b/c/d/e", "my_org/some-name.with__chars", "x0/y-1/z.2/w__3/v_4/u--5"]
    {
        push_image(r, repository, Some("v1.0-rc_1"), Kind::Oci, repository);
    }
    for repository in ["sort/a", "sort/a-b", "sort/a.b", "sort/a/b", "sort/a_b", "sort/a0"] {
        push_image(r, repository, Some("t"), Kind::Docker, repository);
    }
    FixtureFacts { untagged, deleted, restagged }
}

/// A storage root written by the real registry through its API (`push_fixture`), with that registry
/// still serving it. The registry stops before its folder is removed (fields drop in order).
pub struct WrittenFixture {
    pub registry: Registry,
    pub facts: FixtureFacts,
    _dir: tempfile::TempDir,
}

impl WrittenFixture {
    /// The storage root, as a source argument.
    pub fn root(&self) -> &str {
        self.registry.root.to_str().expect("temporary paths are UTF-8")
    }
}

pub fn written_fixture() -> WrittenFixture {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let facts = push_fixture(&registry);
    WrittenFixture { registry, facts, _dir: dir }
}
