//! The inventory says exactly what a client can pull. A corpus of storage damaged the way old registries
//! get damaged (crashes mid-push, partial garbage collection, hand edits), each case first written
//! through the real registry and then broken, is served by the real registry again and compared, on
//! disk and on S3 (moto):
//! - the default scan's tags equal the tags the registry serves (`tags/list`, then a manifest GET that
//!   succeeds). On S3 the default scan reads no manifest (one listing per repository), so the cases whose
//!   damage is inside the manifest blob are listed there, and exactly those;
//! - `scan --deep`'s tags equal what skopeo can copy out of that registry (`--all`), except a manifest
//!   whose bytes no longer hash to its digest, which skopeo takes by tag and rehydrate refuses;
//! - each tag not listed is an error record naming its key, with its reason;
//! - `sync --deep` pushes exactly what `scan --deep` calls pullable.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::images::{push_image, push_image_with_layer, push_index, Kind};
use support::servers::Moto;
use support::*;

const TAG: &str = "t";

/// A case: its repository (tag `t`), and the reason each scan gives for not listing it (`None`: listed).
struct Case {
    repository: String,
    /// Why the default scan does not list the tag; `None` when the registry serves it.
    default: Option<&'static str>,
    /// Why `--deep` does not list it; `None` when it can be pulled.
    deep: Option<&'static str>,
}

/// Reasons only a read of the manifest blob shows (the default scan on an object store reads none).
const MANIFEST_CONTENT_REASONS: [&str; 5] = [
    "manifest blob missing",
    "manifest blob empty",
    "manifest not JSON",
    "manifest type unknown",
    "manifest over 4 MiB",
];

struct Tree {
    root: PathBuf,
    cases: Vec<Case>,
}

impl Tree {
    fn v2(&self) -> PathBuf {
        self.root.join("docker/registry/v2")
    }

    fn repository(&self, repository: &str) -> PathBuf {
        self.v2().join("repositories").join(repository)
    }

    fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.v2().join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    fn revision_link(&self, repository: &str, digest: &str) -> PathBuf {
        self.repository(repository).join(format!("_manifests/revisions/sha256/{}/link", &digest[7..]))
    }

    fn layer_link(&self, repository: &str, digest: &str) -> PathBuf {
        self.repository(repository).join(format!("_layers/sha256/{}/link", &digest[7..]))
    }

    fn current_link(&self, repository: &str) -> PathBuf {
        self.repository(repository).join(format!("_manifests/tags/{TAG}/current/link"))
    }

    fn manifest(&self, digest: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.blob(digest)).unwrap()).unwrap()
    }

    fn case(&mut self, repository: &str, default: Option<&'static str>, deep: Option<&'static str>) {
        self.cases.push(Case { repository: repository.to_string(), default, deep });
    }

    /// A hand edit: stores `bytes` as a manifest blob under their digest and points the tag at it, with
    /// the revision and index links the registry would have written.
    fn hand_written(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        write(&self.blob(&digest), bytes);
        write(&self.revision_link(repository, &digest), digest.as_bytes());
        let index =
            self.repository(repository).join(format!("_manifests/tags/{TAG}/index/sha256/{}/link", &digest[7..]));
        write(&index, digest.as_bytes());
        write(&self.current_link(repository), digest.as_bytes());
        digest
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn remove(path: &Path) {
    if path.is_dir() {
        std::fs::remove_dir_all(path).unwrap()
    } else {
        std::fs::remove_file(path).unwrap()
    }
}

/// Pushes an image by tag into `repository` and returns (manifest, config, layer) digests.
fn image(registry: &Registry, tree: &Tree, repository: &str) -> (String, String, String) {
    let digest = push_image(registry, repository, Some(TAG), Kind::Oci, repository);
    let manifest = tree.manifest(&digest);
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    (digest, config, layer)
}

/// Pushes an index of two images (by digest) under the tag; returns the children's digests.
fn index(registry: &Registry, tree: &Tree, repository: &str) -> Vec<String> {
    let children: Vec<(String, usize)> = ["a", "b"]
        .iter()
        .map(|arch| {
            let digest = push_image(registry, repository, None, Kind::Oci, &format!("{repository}-{arch}"));
            let size = std::fs::metadata(tree.blob(&digest)).unwrap().len() as usize;
            (digest, size)
        })
        .collect();
    push_index(registry, repository, TAG, Kind::Oci, &children);
    children.into_iter().map(|(digest, _)| digest).collect()
}

/// Writes every case through the registry, then breaks it.
fn build(registry: &Registry, root: &Path) -> Tree {
    let mut tree = Tree { root: root.to_path_buf(), cases: Vec::new() };
    let t = &mut tree;
    // Intact, for contrast.
    image(registry, t, "ok/oci");
    t.case("ok/oci", None, None);
    push_image(registry, "ok/docker", Some(TAG), Kind::Docker, "ok/docker");
    t.case("ok/docker", None, None);
    index(registry, t, "ok/index");
    t.case("ok/index", None, None);
    let config = br#"{"architecture":"amd64","os":"linux","weird":true}"#;
    let config_digest = registry.push_blob("ok/config-type-unknown", config);
    let layer_digest = registry.push_blob("ok/config-type-unknown", b"a layer");
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/x-unknown-config", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": 7}]});
    registry.push_manifest("ok/config-type-unknown", TAG, OCI_MANIFEST, manifest.to_string().as_bytes());
    t.case("ok/config-type-unknown", None, None);
    push_image_with_layer(registry, "ok/zero-byte-layer", Some(TAG), Kind::Oci, "ok/zero-byte-layer", Vec::new());
    t.case("ok/zero-byte-layer", None, None);

    // Revision links: the registry resolves a tag's digest through them.
    let (digest, ..) = image(registry, t, "d/revision-link-missing");
    remove(&t.revision_link("d/revision-link-missing", &digest));
    t.case("d/revision-link-missing", Some("revision link missing"), Some("revision link missing"));
    let (digest, ..) = image(registry, t, "d/revision-link-empty");
    write(&t.revision_link("d/revision-link-empty", &digest), b"");
    t.case("d/revision-link-empty", Some("revision link invalid"), Some("revision link invalid"));
    let (digest, ..) = image(registry, t, "d/revision-link-garbage");
    write(&t.revision_link("d/revision-link-garbage", &digest), b"not a digest at all");
    t.case("d/revision-link-garbage", Some("revision link invalid"), Some("revision link invalid"));
    image(registry, t, "d/revisions-folder-missing");
    remove(&t.repository("d/revisions-folder-missing").join("_manifests/revisions"));
    t.case("d/revisions-folder-missing", Some("revision link missing"), Some("revision link missing"));

    // Tag folders and tag links.
    image(registry, t, "d/tags-folder-missing");
    remove(&t.repository("d/tags-folder-missing").join("_manifests/tags"));
    image(registry, t, "d/tag-without-current-link");
    remove(&t.current_link("d/tag-without-current-link"));
    t.case("d/tag-without-current-link", Some("tag link missing"), Some("tag link missing"));
    image(registry, t, "d/tag-link-empty");
    write(&t.current_link("d/tag-link-empty"), b"");
    t.case("d/tag-link-empty", Some("tag link invalid"), Some("tag link invalid"));
    let (digest, ..) = image(registry, t, "d/tag-link-newline");
    write(&t.current_link("d/tag-link-newline"), format!("{digest}\n").as_bytes());
    t.case("d/tag-link-newline", Some("tag link invalid"), Some("tag link invalid"));
    image(registry, t, "d/tag-link-sha512");
    write(&t.current_link("d/tag-link-sha512"), format!("sha512:{}", "ab".repeat(64)).as_bytes());
    t.case("d/tag-link-sha512", Some("revision link missing"), Some("revision link missing"));

    // Manifest blobs: gone, emptied, rotten, edited by hand.
    let (digest, ..) = image(registry, t, "d/manifest-blob-missing");
    remove(&t.blob(&digest));
    t.case("d/manifest-blob-missing", Some("manifest blob missing"), Some("manifest blob missing"));
    let (digest, ..) = image(registry, t, "d/manifest-blob-empty");
    write(&t.blob(&digest), b"");
    t.case("d/manifest-blob-empty", Some("manifest blob empty"), Some("manifest blob empty"));
    let (digest, ..) = image(registry, t, "d/manifest-yaml");
    write(&t.blob(&digest), b"schemaVersion: 2\nmediaType: application/vnd.oci.image.manifest.v1+json\n");
    t.case("d/manifest-yaml", Some("manifest not JSON"), Some("manifest not JSON"));
    let (digest, ..) = image(registry, t, "d/manifest-garbage");
    write(&t.blob(&digest), b"\x00\x01\x02 not a manifest \xff");
    t.case("d/manifest-garbage", Some("manifest not JSON"), Some("manifest not JSON"));
    let (digest, ..) = image(registry, t, "d/manifest-type-unknown");
    let mut manifest = t.manifest(&digest);
    manifest["mediaType"] = json!("application/x-not-a-manifest");
    t.hand_written("d/manifest-type-unknown", manifest.to_string().as_bytes());
    t.case("d/manifest-type-unknown", Some("manifest type unknown"), Some("manifest type unknown"));
    let (digest, ..) = image(registry, t, "d/schema-version-3");
    let mut manifest = t.manifest(&digest);
    manifest["schemaVersion"] = json!(3);
    t.hand_written("d/schema-version-3", manifest.to_string().as_bytes());
    t.case("d/schema-version-3", Some("manifest type unknown"), Some("manifest type unknown"));
    let (digest, ..) = image(registry, t, "d/manifest-over-4mib");
    let mut manifest = t.manifest(&digest);
    manifest["annotations"] = json!({"padding": "p".repeat(4 << 20)});
    t.hand_written("d/manifest-over-4mib", manifest.to_string().as_bytes());
    t.case("d/manifest-over-4mib", Some("manifest over 4 MiB"), Some("manifest over 4 MiB"));
    let (_, _, layer) = image(registry, t, "d/schema-1");
    let schema1 = json!({"schemaVersion": 1, "name": "d/schema-1", "tag": TAG, "architecture": "amd64",
        "fsLayers": [{"blobSum": layer}], "history": [{"v1Compatibility": "{}"}]});
    t.hand_written("d/schema-1", schema1.to_string().as_bytes());
    t.case("d/schema-1", None, Some("schema 1"));
    let (digest, ..) = image(registry, t, "d/oci-without-media-type");
    let mut manifest = t.manifest(&digest);
    manifest.as_object_mut().unwrap().remove("mediaType");
    t.hand_written("d/oci-without-media-type", manifest.to_string().as_bytes());
    t.case("d/oci-without-media-type", None, None);
    let (digest, ..) = image(registry, t, "d/manifest-bit-rot");
    // Still the same JSON, one byte more: what a bit flipped into whitespace, or a hand edit, leaves.
    let mut rotten = std::fs::read(t.blob(&digest)).unwrap();
    rotten.push(b'\n');
    write(&t.blob(&digest), &rotten);
    t.case("d/manifest-bit-rot", None, Some("manifest corrupt"));
    let (digest, ..) = image(registry, t, "d/layer-digest-unsupported");
    let mut manifest = t.manifest(&digest);
    manifest["layers"][0]["digest"] = json!(format!("md5:{}", "a".repeat(32)));
    t.hand_written("d/layer-digest-unsupported", manifest.to_string().as_bytes());
    t.case("d/layer-digest-unsupported", None, Some("manifest descriptor invalid"));

    // Blobs: partial garbage collection, crashes mid-push.
    let (_, _, layer) = image(registry, t, "d/layer-missing");
    remove(&t.blob(&layer));
    t.case("d/layer-missing", None, Some("blob missing"));
    let (_, config, _) = image(registry, t, "d/config-missing");
    remove(&t.blob(&config));
    t.case("d/config-missing", None, Some("blob missing"));
    let (_, _, layer) = image(registry, t, "d/layer-not-linked");
    remove(&t.layer_link("d/layer-not-linked", &layer));
    t.case("d/layer-not-linked", None, Some("blob not linked"));
    let (_, _, layer) = image(registry, t, "d/layer-link-empty");
    write(&t.layer_link("d/layer-link-empty", &layer), b"");
    t.case("d/layer-link-empty", None, Some("layer link invalid"));

    // Indexes with a broken child.
    let children = index(registry, t, "d/index-child-revision-missing");
    remove(&t.revision_link("d/index-child-revision-missing", &children[1]));
    t.case("d/index-child-revision-missing", None, Some("index child not pullable"));
    let children = index(registry, t, "d/index-child-blob-missing");
    remove(&t.blob(&children[0]));
    t.case("d/index-child-blob-missing", None, Some("index child not pullable"));
    let children = index(registry, t, "d/index-child-layer-missing");
    let child_layer = t.manifest(&children[1])["layers"][0]["digest"].as_str().unwrap().to_string();
    remove(&t.blob(&child_layer));
    t.case("d/index-child-layer-missing", None, Some("index child not pullable"));

    // Harmless leftovers: an upload never finished, stray files beside and inside the layout.
    image(registry, t, "ok/stray-upload");
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v2/ok/stray-upload/blobs/uploads/", registry.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 202, "an upload left open");
    t.case("ok/stray-upload", None, None);
    write(&t.v2().join(".lock"), b"");
    write(&t.root.join("docker/registry/README"), b"hand notes");
    write(&t.v2().join("blobs/sha256/zz/not-a-digest/data"), b"stray");
    write(&t.v2().join("repositories/ok/oci/_manifests/revisions/sha256/not-hex/link"), b"stray");
    tree
}

/// (repository, tag) pairs the registry serves: `tags/list`, then a manifest GET that succeeds.
fn served(registry: &Registry, tree: &Tree) -> BTreeSet<(String, String)> {
    let repositories: BTreeSet<&str> =
        tree.cases.iter().map(|c| c.repository.as_str()).chain(["d/tags-folder-missing"]).collect();
    let mut served = BTreeSet::new();
    for repository in repositories {
        for tag in registry.tags(repository) {
            if registry.serves_manifest(repository, &tag) {
                served.insert((repository.to_string(), tag));
            }
        }
    }
    served
}

/// The subset of `tags` that skopeo copies out of the registry, every child of an index included.
fn skopeo_pulls(registry: &Registry, tags: &BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    let host = registry.url.trim_start_matches("http://");
    let copies = tempfile::tempdir().unwrap();
    tags.iter()
        .enumerate()
        .filter(|(i, (repository, tag))| {
            let output = Command::new("skopeo")
                .args(["copy", "--all", "--src-tls-verify=false"])
                .arg(format!("docker://{host}/{repository}:{tag}"))
                .arg(format!("dir:{}", copies.path().join(i.to_string()).display()))
                .output()
                .expect("running skopeo (scripts/install-servers.sh installs it)");
            output.status.success()
        })
        .map(|(_, pair)| pair.clone())
        .collect()
}

/// (repository, tag) pairs.
type Tags = BTreeSet<(String, String)>;
/// Error records by (repository, tag): (reason, key).
type Errors = BTreeMap<(String, String), (String, String)>;

/// A scan's tags, and its error records by (repository, tag) with their reason and key.
fn scan(source: &str, deep: bool, env: &[(&str, String)]) -> (Tags, Errors) {
    let mut args = vec!["scan", source];
    if deep {
        args.push("--deep");
    }
    let output = rehydrate_with_env(&args, env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(matches!(output.status.code(), Some(3)), "{args:?}: partial, as the corpus is damaged: {stderr}");
    let lines = inventory_lines(&output.stdout);
    let tags = tag_records(&lines).into_iter().map(|(repository, tag, _)| (repository, tag)).collect();
    let mut errors = BTreeMap::new();
    for line in lines.iter().filter(|l| l.get("error").is_some()) {
        let (Some(repository), Some(tag)) = (line["repository"].as_str(), line["tag"].as_str()) else {
            panic!("{args:?}: an error record names no tag: {line}");
        };
        let reason = line["reason"].as_str().unwrap_or_else(|| panic!("{args:?}: no reason in {line}"));
        let key = line["key"].as_str().unwrap().to_string();
        errors.insert((repository.to_string(), tag.to_string()), (reason.to_string(), key));
    }
    assert!(stderr.contains("not listed as tags"), "{args:?}: the summary counts reasons: {stderr}");
    assert!(stderr.contains("storage requests per tag"), "{args:?}: the summary shows the cost: {stderr}");
    (tags, errors)
}

/// Every case's reason, as an error record naming a key of its repository.
fn assert_reasons(tree: &Tree, errors: &Errors, reason_of: impl Fn(&Case) -> Option<&'static str>, label: &str) {
    let mut expected = BTreeMap::new();
    for case in &tree.cases {
        if let Some(reason) = reason_of(case) {
            expected.insert((case.repository.clone(), TAG.to_string()), reason.to_string());
        }
    }
    let found: BTreeMap<_, _> = errors.iter().map(|(pair, (reason, _))| (pair.clone(), reason.clone())).collect();
    assert_eq!(found, expected, "{label}: one error record per damaged tag, with its reason");
    for ((repository, _), (_, key)) in errors {
        assert!(
            key.contains(&format!("repositories/{repository}/")) || key.contains("/blobs/"),
            "{label}: the record of {repository} names its key: {key}"
        );
    }
}

fn pairs(tree: &Tree, listed: impl Fn(&Case) -> bool) -> BTreeSet<(String, String)> {
    tree.cases.iter().filter(|c| listed(c)).map(|c| (c.repository.clone(), TAG.to_string())).collect()
}

#[test]
fn the_inventory_lists_what_the_registry_serves_and_deep_what_a_client_can_pull() {
    let dir = tempfile::tempdir().unwrap();
    let tree = {
        let writer = Registry::start(dir.path());
        build(&writer, dir.path())
    };
    assert!(tree.cases.iter().filter(|c| c.deep.is_some()).count() >= 25, "at least 25 kinds of damage");
    let source = dir.path().to_str().unwrap();
    let registry = Registry::start(dir.path());
    let served_on_disk = served(&registry, &tree);
    assert_eq!(served_on_disk, pairs(&tree, |c| c.default.is_none()), "the corpus's idea of what is served holds");
    let pulled = skopeo_pulls(&registry, &served_on_disk);
    let bit_rot = ("d/manifest-bit-rot".to_string(), TAG.to_string());
    assert!(pulled.contains(&bit_rot), "skopeo takes a rotten manifest by tag");

    // On disk: the default scan lists exactly what the registry serves; --deep what skopeo pulls, less
    // the rotten manifest.
    let (tags, errors) = scan(source, false, &[]);
    assert_eq!(tags, served_on_disk, "disk: the default scan's tags are the registry's");
    assert_reasons(&tree, &errors, |c| c.default, "disk, default");
    let (deep_tags, deep_errors) = scan(source, true, &[]);
    let mut expected_deep = pulled.clone();
    expected_deep.remove(&bit_rot);
    assert_eq!(deep_tags, expected_deep, "disk: --deep's tags are what skopeo pulls");
    assert_reasons(&tree, &deep_errors, |c| c.deep, "disk, deep");

    // sync --deep pushes exactly those.
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let sync = rehydrate(&["sync", source, &target.url, "--plain-http", "--no-journal", "--deep"]);
    assert_eq!(sync.status.code(), Some(3), "{}", String::from_utf8_lossy(&sync.stderr));
    let landed: BTreeSet<_> = target.inventory().into_iter().map(|(repository, tag, _)| (repository, tag)).collect();
    assert_eq!(landed, expected_deep, "sync --deep pushes what scan --deep lists");
    drop(registry);

    // On S3, through the registry's own S3 driver.
    let moto = Moto::start();
    moto.create_bucket("damaged");
    moto.put_tree("damaged", dir.path());
    let registry = Registry::start_on_s3(&moto.url, "damaged");
    let served_on_s3 = served(&registry, &tree);
    assert_eq!(served_on_s3, served_on_disk, "the registry serves the same on S3");
    assert_eq!(skopeo_pulls(&registry, &served_on_s3), pulled, "skopeo pulls the same on S3");
    let (tags, errors) = scan("s3://damaged", false, &moto.env());
    let read_to_tell = pairs(&tree, |c| c.default.is_some_and(|r| MANIFEST_CONTENT_REASONS.contains(&r)));
    let expected: BTreeSet<_> = served_on_s3.union(&read_to_tell).cloned().collect();
    assert_eq!(tags, expected, "s3: the default scan lists what is served, and what only a read would refuse");
    assert_reasons(&tree, &errors, |c| c.default.filter(|r| !MANIFEST_CONTENT_REASONS.contains(r)), "s3, default");
    let (deep_tags, deep_errors) = scan("s3://damaged", true, &moto.env());
    assert_eq!(deep_tags, expected_deep, "s3: --deep's tags are what skopeo pulls");
    assert_reasons(&tree, &deep_errors, |c| c.deep, "s3, deep");
}
