//! Synthetic registry layouts for tests and benchmarks: writes, byte for byte, the tree the registry's
//! filesystem driver writes (blobs, layer links, revision links, tag index and current links) for any
//! number of repositories, and returns the truth: every (repository, tag, digest) it wrote.
//!
//! The names mix the shapes that trip walkers: a namespace holding a large share of all repositories,
//! nested repositories under other repositories, deep paths, and every separator (`-`, `.`, `_`, `__`).
//! Some tags are re-pointed (two index entries), some repositories have untagged revisions and the
//! empty revision folders that a deleted manifest leaves behind. `tests/synth_matches_registry.rs` checks
//! that the real registry serving a generated tree answers exactly the truth.

use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::layout::{self, Digest};

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub repositories: usize,
    pub tags_per_repository: usize,
    /// Distinct images the tags draw from (shared across repositories, as base images are).
    pub images: usize,
    /// Bytes in each layer blob.
    pub layer_bytes: usize,
    /// Layers in each image.
    pub layers_per_image: usize,
    pub seed: u64,
}

impl Default for SynthSpec {
    fn default() -> SynthSpec {
        SynthSpec {
            repositories: 1000,
            tags_per_repository: 3,
            images: 64,
            layer_bytes: 512,
            layers_per_image: 2,
            seed: 1,
        }
    }
}

/// One tag the generated tree holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TruthRecord {
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

/// splitmix64: a tiny, well-mixed deterministic hash, so that a seed fully decides the tree.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The name of repository `i`. About a third of all repositories share one namespace (`bigns/`), so
/// that a walker must split inside a namespace; every 50th is nested under the repository before it.
pub fn repository_name(i: usize) -> String {
    if i % 50 == 7 {
        return format!("{}/nested", repository_name(i - 1));
    }
    match i % 10 {
        0..=2 => format!("bigns/svc-{i}"),
        3 => format!("team{}/group.{}/app_{i}", i % 97, i % 7),
        4 => format!("org--{}/img__{i}", i % 500),
        5 => format!("lib{}/a.b-c/d/e/f/{i}", i % 50),
        _ => format!("ns{}/repo{i}", i % 1000),
    }
}

fn tag_name(t: usize) -> String {
    if t == 0 {
        "latest".to_string()
    } else {
        format!("v{t}.0")
    }
}

/// One image of the pool: its manifest bytes and the blobs it references.
struct Image {
    manifest: Vec<u8>,
    digest: Digest,
    /// Config and layers, the blobs a repository links under `_layers`.
    blobs: Vec<Digest>,
}

fn layer_bytes(spec: &SynthSpec, index: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(spec.layer_bytes);
    let mut state = mix(spec.seed ^ (index as u64).wrapping_mul(0x1000_0001));
    while bytes.len() < spec.layer_bytes {
        state = mix(state);
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(spec.layer_bytes);
    bytes
}

/// Where a generated tree goes: files under a storage root, or objects on their way to a bucket.
pub trait Sink: Sync {
    /// Stores `bytes` at `key`, a storage key relative to the root.
    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()>;
    /// Leaves an empty folder at `key`, as the filesystem driver does after a delete. Object stores
    /// have no folders: by default, nothing.
    fn empty_folder(&self, _key: &str) -> io::Result<()> {
        Ok(())
    }
}

/// A storage root on disk, written file by file as the registry's filesystem driver writes it.
pub struct Folder<'a>(pub &'a Path);

impl Sink for Folder<'_> {
    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.0.join(key);
        fs::create_dir_all(path.parent().expect("a storage key has a parent"))?;
        fs::write(path, bytes)
    }

    fn empty_folder(&self, key: &str) -> io::Result<()> {
        fs::create_dir_all(self.0.join(key))
    }
}

/// Writes a blob's bytes where the registry keeps them.
fn write_blob(sink: &dyn Sink, bytes: &[u8]) -> io::Result<Digest> {
    let digest = Digest::sha256_of(bytes);
    sink.put(&layout::blob_data_key(&digest), bytes)?;
    Ok(digest)
}

fn descriptor(media_type: &str, digest: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest.as_str(), "size": size})
}

/// Builds image `k`: Docker schema 2 for even `k`, OCI for odd, with valid image configs.
fn build_image(sink: &dyn Sink, spec: &SynthSpec, k: usize, layer_pool: usize) -> io::Result<Image> {
    let oci = k % 2 == 1;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for l in 0..spec.layers_per_image {
        let bytes = layer_bytes(spec, (k * 7 + l * 13) % layer_pool);
        let digest = write_blob(sink, &bytes)?;
        diff_ids.push(digest.to_string());
        layers.push((digest, bytes.len()));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Labels": {"synthetic.image": k.to_string()}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = write_blob(sink, &config_bytes)?;
    let (manifest_type, config_type, layer_type) = if oci {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
        )
    } else {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": descriptor(config_type, &config_digest, config_bytes.len()),
        "layers": layers.iter().map(|(d, size)| descriptor(layer_type, d, *size)).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec_pretty(&manifest)?;
    let digest = write_blob(sink, &manifest)?;
    let mut blobs = vec![config_digest];
    blobs.extend(layers.into_iter().map(|(d, _)| d));
    Ok(Image { manifest, digest, blobs })
}

/// Writes a link file (`sha256:<hex>`, no newline) at `key`.
fn write_link(sink: &dyn Sink, key: &str, digest: &Digest) -> io::Result<()> {
    sink.put(key, digest.as_str().as_bytes())
}

/// Writes everything repository `i` holds; returns its tags.
fn write_repository(sink: &dyn Sink, spec: &SynthSpec, images: &[Image], i: usize) -> io::Result<Vec<TruthRecord>> {
    let name = repository_name(i);
    let pick =
        |salt: usize| &images[(mix(spec.seed ^ ((i as u64) << 20) ^ salt as u64) % images.len() as u64) as usize];
    let mut referenced: Vec<&Image> = Vec::new();
    let mut truth = Vec::new();
    for t in 0..spec.tags_per_repository {
        let tag = tag_name(t);
        let image = pick(t);
        // Every 5th repository's second tag was pushed twice: its index holds the old digest too.
        if t == 1 && i % 5 == 0 {
            let old = pick(t + 1000);
            write_link(
                sink,
                &format!(
                    "{}{name}/_manifests/tags/{tag}/index/sha256/{}/link",
                    layout::repositories_prefix(),
                    old.digest.hex()
                ),
                &old.digest,
            )?;
            referenced.push(old);
        }
        write_link(
            sink,
            &format!(
                "{}{name}/_manifests/tags/{tag}/index/sha256/{}/link",
                layout::repositories_prefix(),
                image.digest.hex()
            ),
            &image.digest,
        )?;
        write_link(sink, &layout::tag_current_link_key(&name, &tag), &image.digest)?;
        referenced.push(image);
        truth.push(TruthRecord { repository: name.clone(), tag, digest: image.digest.to_string() });
    }
    // Every 17th repository also holds an image pushed by digest only.
    if i % 17 == 0 {
        referenced.push(pick(2000));
    }
    for image in &referenced {
        write_link(sink, &layout::revision_link_key(&name, &image.digest), &image.digest)?;
        for blob in &image.blobs {
            write_link(
                sink,
                &format!("{}{name}/_layers/sha256/{}/link", layout::repositories_prefix(), blob.hex()),
                blob,
            )?;
        }
    }
    // Every 13th repository had a manifest deleted: the filesystem driver leaves its folder, empty.
    if i % 13 == 0 {
        let key = format!("{}{name}/_manifests/revisions/sha256/{}", layout::repositories_prefix(), "0".repeat(64));
        sink.empty_folder(&key)?;
    }
    Ok(truth)
}

/// Generates the tree under `root` (which becomes a storage root) and returns the truth, sorted.
/// Repositories are written by `threads` threads at once.
pub fn generate(root: &Path, spec: &SynthSpec, threads: usize) -> io::Result<Vec<TruthRecord>> {
    generate_into(&Folder(root), spec, 0..spec.repositories, threads)
}

/// Generates repositories `range` of the tree `spec` describes (with the blobs of every image) into
/// `sink` and returns their truth, sorted. A tree can so be written in parts: the repositories of
/// `0..n` are the same whatever `spec.repositories` says.
pub fn generate_into(
    sink: &dyn Sink,
    spec: &SynthSpec,
    range: std::ops::Range<usize>,
    threads: usize,
) -> io::Result<Vec<TruthRecord>> {
    assert!(spec.images > 0 && spec.layers_per_image > 0, "a synthetic layout needs images and layers");
    let layer_pool = (spec.images / 2).max(spec.layers_per_image * 2);
    let images: Vec<Image> =
        (0..spec.images).map(|k| build_image(sink, spec, k, layer_pool)).collect::<io::Result<_>>()?;
    debug_assert!(images.iter().all(|image| Digest::sha256_of(&image.manifest) == image.digest));
    let threads = threads.max(1);
    let mut truth: Vec<TruthRecord> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let images = &images;
                let range = range.clone();
                scope.spawn(move || -> io::Result<Vec<TruthRecord>> {
                    let mut truth = Vec::new();
                    // Interleaved so that nested repositories (i % 50 == 7) may be written before or after
                    // their parent: both orders must give the same tree.
                    for i in (range.start + w..range.end).step_by(threads) {
                        truth.extend(write_repository(sink, spec, images, i)?);
                    }
                    Ok(truth)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("generator thread panicked")).collect::<io::Result<Vec<_>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    truth.sort();
    Ok(truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar_and_are_unique() {
        let names: Vec<String> = (0..5000).map(repository_name).collect();
        for name in &names {
            layout::check_repository(name).unwrap();
        }
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names.iter().filter(|n| n.starts_with("bigns/")).count() > 1400);
        assert!(names.contains(&format!("{}/nested", repository_name(6))));
    }

    #[test]
    fn truth_has_one_record_per_tag() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = SynthSpec { repositories: 60, ..SynthSpec::default() };
        let truth = generate(tmp.path(), &spec, 3).unwrap();
        assert_eq!(truth.len(), 60 * 3);
        let again = generate(tempfile::tempdir().unwrap().path(), &spec, 1).unwrap();
        assert_eq!(truth, again, "the seed alone decides the tree");
    }

    #[test]
    fn a_tree_written_in_parts_is_the_tree_written_at_once() {
        let spec = SynthSpec { repositories: 40, ..SynthSpec::default() };
        let whole = tempfile::tempdir().unwrap();
        let truth = generate(whole.path(), &spec, 2).unwrap();
        let parts = tempfile::tempdir().unwrap();
        let mut truth_of_parts = generate_into(&Folder(parts.path()), &spec, 0..15, 1).unwrap();
        truth_of_parts.extend(generate_into(&Folder(parts.path()), &spec, 15..40, 3).unwrap());
        truth_of_parts.sort();
        assert_eq!(truth_of_parts, truth);
        let files = |root: &Path| -> Vec<(std::path::PathBuf, Vec<u8>)> {
            let mut files = Vec::new();
            let mut folders = vec![root.to_path_buf()];
            while let Some(folder) = folders.pop() {
                for entry in fs::read_dir(&folder).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        files.push((path.strip_prefix(root).unwrap().to_path_buf(), Vec::new()));
                        folders.push(path);
                    } else {
                        files.push((path.strip_prefix(root).unwrap().to_path_buf(), fs::read(&path).unwrap()));
                    }
                }
            }
            files.sort();
            files
        };
        assert_eq!(files(parts.path()), files(whole.path()));
    }
}
