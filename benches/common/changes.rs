//! Changes written into a storage tree as the registry writes them (links, index entries, revisions,
//! layer links): what a live source does between two runs.

use std::collections::BTreeSet;
use std::path::Path;

use rehydrate::layout;
use rehydrate::synth::TruthRecord;
use serde_json::Value;

fn write_link(root: &Path, key: &str, digest: &str) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, digest).unwrap();
}

/// Links `digest` into `repository` as the registry does on a push: its revision, its blobs in `_layers`.
fn link_manifest(root: &Path, repository: &str, digest: &str) {
    let digest_value = layout::Digest::parse(digest).unwrap();
    write_link(root, &layout::revision_link_key(repository, &digest_value), digest);
    let hex = digest.trim_start_matches("sha256:");
    let manifest_path = root.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    let blobs = manifest["layers"].as_array().unwrap().iter().chain(std::iter::once(&manifest["config"]));
    for blob in blobs {
        let blob = blob["digest"].as_str().unwrap();
        let key = format!("{}{repository}/_layers/sha256/{}/link", layout::repositories_prefix(), &blob[7..]);
        write_link(root, &key, blob);
    }
}

/// Points `repository:tag` at `digest`, as a push by tag writes it.
fn tag(root: &Path, repository: &str, tag: &str, digest: &str) {
    link_manifest(root, repository, digest);
    let index = format!(
        "{}{repository}/_manifests/tags/{tag}/index/sha256/{}/link",
        layout::repositories_prefix(),
        &digest[7..]
    );
    write_link(root, &index, digest);
    let current = layout::tag_current_link_key(repository, tag);
    write_link(root, &current, digest);
}

/// Changes 1% of the tags: every 100th repository, new, moved and deleted in turn. Returns the
/// repositories changed.
pub fn change_one_percent(root: &Path, truth: &[TruthRecord]) -> BTreeSet<String> {
    let digests: Vec<&str> = truth.iter().map(|t| t.digest.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    let mut changed = BTreeSet::new();
    for (n, record) in truth.iter().step_by(100).enumerate() {
        let other = digests.iter().find(|d| **d != record.digest).unwrap();
        match n % 3 {
            0 => tag(root, &record.repository, "new", other),
            1 => tag(root, &record.repository, &record.tag, other),
            _ => {
                let key = layout::tag_current_link_key(&record.repository, &record.tag);
                let tag_dir = root.join(key).parent().unwrap().parent().unwrap().to_path_buf();
                std::fs::remove_dir_all(tag_dir).unwrap();
            }
        }
        changed.insert(record.repository.clone());
    }
    changed
}
