//! A corpus of broken and hostile storage, each case with its expected outcome, synced in one run into
//! the real registry next to intact repositories. Every case is either handled correctly (its tag
//! lands) or reported by a clear error naming the item; the intact repositories all land; nothing
//! corrupt reaches the target; the exit code says the run was partial and the summary counts every
//! failure. `docs/reliability.md` lists the same table.

mod support;

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rehydrate::synth::{generate, SynthSpec};
use serde_json::json;
use support::servers::Moto;
use support::*;

const EXIT_PARTIAL: i32 = 3;
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MANY_TAGS: usize = 10_000;

/// What must come of a case.
#[derive(Debug)]
enum Expect {
    /// The tag lands on the target with its digest.
    Lands { repository: String, tag: String },
    /// Every one of these tags lands.
    AllLand { repository: String, tags: usize },
    /// The scan reports an error record for this key (the source is unreadable there).
    SourceError { key: String, words: &'static str },
    /// The tag fails with an error naming it; nothing of it is pushed.
    TagFails { label: String, words: &'static str },
}

struct Case {
    name: &'static str,
    expect: Expect,
}

/// A storage root under construction, with helpers that write what the registry would have written.
struct Corpus {
    root: PathBuf,
    cases: Vec<Case>,
}

impl Corpus {
    fn repositories(&self) -> PathBuf {
        self.root.join("docker/registry/v2/repositories")
    }

    fn write(&self, relative: &Path, bytes: &[u8]) {
        let path = self.root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Stores a blob under its own digest (or under `digest` when given: a corrupt blob).
    fn blob(&self, bytes: &[u8], digest: Option<&str>) -> String {
        let digest = digest.map(str::to_string).unwrap_or_else(|| sha256(bytes));
        let hex = digest.trim_start_matches("sha256:");
        self.write(&PathBuf::from(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])), bytes);
        digest
    }

    /// Points `repository:tag` at `digest`, with the index entry and revision link the registry writes.
    fn tag(&self, repository: &str, tag: &str, digest: &str) {
        let hex = digest.trim_start_matches("sha256:");
        let base = PathBuf::from(format!("docker/registry/v2/repositories/{repository}/_manifests"));
        self.write(&base.join(format!("tags/{tag}/current/link")), digest.as_bytes());
        self.write(&base.join(format!("tags/{tag}/index/sha256/{hex}/link")), digest.as_bytes());
        self.write(&base.join(format!("revisions/sha256/{hex}/link")), digest.as_bytes());
    }

    /// The manifest of an image with these layers (each stored unless `store_layers` is false).
    fn image_manifest(&self, seed: &str, layers: &[Vec<u8>], store_layers: bool) -> Vec<u8> {
        let config =
            serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": {"Labels": {"seed": seed}}}))
                .unwrap();
        let config_digest = self.blob(&config, None);
        let layers: Vec<_> = layers
            .iter()
            .map(|layer| {
                let digest = if store_layers { self.blob(layer, None) } else { sha256(layer) };
                json!({"mediaType": OCI_LAYER, "digest": digest, "size": layer.len()})
            })
            .collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers,
        }))
        .unwrap()
    }

    /// Stores an intact image and returns its manifest digest.
    fn image(&self, seed: &str) -> String {
        let manifest = self.image_manifest(seed, &[format!("layer {seed}").into_bytes()], true);
        self.blob(&manifest, None)
    }

    fn key(repository_relative: &str) -> String {
        format!("docker/registry/v2/repositories/{repository_relative}")
    }

    fn case(&mut self, name: &'static str, expect: Expect) {
        self.cases.push(Case { name, expect });
    }

    fn lands(&mut self, name: &'static str, repository: &str, tag: &str) {
        self.case(name, Expect::Lands { repository: repository.into(), tag: tag.into() });
    }

    fn fails(&mut self, name: &'static str, repository: &str, tag: &str, words: &'static str) {
        self.case(name, Expect::TagFails { label: format!("{repository}:{tag}"), words });
    }

    fn source_error(&mut self, name: &'static str, relative: &str, words: &'static str) {
        self.case(name, Expect::SourceError { key: Corpus::key(relative), words });
    }

    /// A tag the registry would not serve because of its manifest blob: an error record naming the blob.
    fn unserved_manifest(&mut self, name: &'static str, digest: &str, words: &'static str) {
        let hex = digest.trim_start_matches("sha256:");
        let key = format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]);
        self.case(name, Expect::SourceError { key, words });
    }
}

/// Builds every case on top of an intact synthetic layout.
fn build_corpus(root: &Path) -> Corpus {
    let mut c = Corpus { root: root.to_path_buf(), cases: Vec::new() };
    let good = c.image("good");

    // Links.
    c.write(&PathBuf::from(Corpus::key("h/empty-link/_manifests/tags/t/current/link")), b"");
    c.source_error("empty link", "h/empty-link/_manifests/tags/t/current/link", "empty link");
    c.write(&PathBuf::from(Corpus::key("h/garbage-link/_manifests/tags/t/current/link")), b"\x00\xffgarbage\n");
    c.source_error("garbage link", "h/garbage-link/_manifests/tags/t/current/link", "not a digest");
    c.write(&PathBuf::from(Corpus::key("h/long-link/_manifests/tags/t/current/link")), &vec![b'a'; 1 << 20]);
    c.source_error("1 MiB link file", "h/long-link/_manifests/tags/t/current/link", "");
    std::fs::create_dir_all(c.repositories().join("h/link-folder/_manifests/tags/t/current/link")).unwrap();
    c.source_error("link that is a folder", "h/link-folder/_manifests/tags/t/current/link", "");
    c.tag("h/missing-manifest", "t", &sha256(b"no such manifest"));
    c.unserved_manifest("link to a missing blob", &sha256(b"no such manifest"), "manifest blob is missing");

    // Blobs and manifests.
    let layer = b"the true layer".to_vec();
    let manifest = c.image_manifest("corrupt-layer", std::slice::from_ref(&layer), false);
    c.blob(b"the fake layer", Some(&sha256(&layer)));
    let digest = c.blob(&manifest, None);
    c.tag("h/corrupt-layer", "t", &digest);
    c.fails("blob bytes not matching their digest", "h/corrupt-layer", "t", "is corrupt");
    let manifest = c.image_manifest("corrupt-manifest", &[b"x".to_vec()], true);
    let digest = c.blob(b"{\"schemaVersion\": 2}", Some(&sha256(&manifest)));
    c.tag("h/corrupt-manifest", "t", &digest);
    c.fails("manifest bytes not matching their digest", "h/corrupt-manifest", "t", "is corrupt");
    let mut huge = c.image_manifest("huge", &[b"y".to_vec()], true);
    huge.pop();
    huge.extend_from_slice(format!(",\"annotations\":{{\"pad\":\"{}\"}}}}", "p".repeat(4 << 20)).as_bytes());
    let digest = c.blob(&huge, None);
    c.tag("h/huge-manifest", "t", &digest);
    c.unserved_manifest("manifest over 4 MiB", &digest, "over the 4 MiB");
    let digest = c.blob(b"{\"schemaVersion\": 2, \"mediaType\": ", None);
    c.tag("h/invalid-json", "t", &digest);
    c.unserved_manifest("invalid JSON", &digest, "not valid JSON");
    let digest = c.blob(br#"{"schemaVersion": 2, "mediaType": "application/x-not-a-manifest"}"#, None);
    c.tag("h/unknown-type", "t", &digest);
    c.unserved_manifest("unknown media type", &digest, "unknown manifest media type");
    let digest =
        c.blob(br#"{"schemaVersion": 1, "name": "h/schema1", "tag": "t", "fsLayers": [], "history": []}"#, None);
    c.tag("h/schema1", "t", &digest);
    c.fails("Docker schema 1", "h/schema1", "t", "schema 1");
    let child = sha256(b"a child that is gone");
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": 20}]}))
    .unwrap();
    let digest = c.blob(&index, None);
    c.tag("h/index-child-missing", "t", &digest);
    c.fails("index whose child is missing", "h/index-child-missing", "t", "is missing from the source storage");
    let manifest = c.image_manifest("missing-layer", &[b"a layer never stored".to_vec()], false);
    let digest = c.blob(&manifest, None);
    c.tag("h/missing-layer", "t", &digest);
    c.fails("layer missing from storage", "h/missing-layer", "t", "is missing from the source storage");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&c.image_manifest("size", &[b"12345".to_vec()], true)).unwrap();
    manifest["layers"][0]["size"] = json!(99);
    let digest = c.blob(&serde_json::to_vec(&manifest).unwrap(), None);
    c.tag("h/size-mismatch", "t", &digest);
    c.fails("layer size not matching the manifest", "h/size-mismatch", "t", "the manifest says 99 bytes");
    let manifest = c.image_manifest("empty-layer", &[Vec::new()], true);
    let digest = c.blob(&manifest, None);
    c.tag("h/empty-layer", "t", &digest);
    c.lands("0-byte blob", "h/empty-layer", "t");

    // Tag folders.
    c.write(
        &PathBuf::from(Corpus::key(&format!(
            "h/half-tag/_manifests/tags/t/index/sha256/{}/link",
            good.trim_start_matches("sha256:")
        ))),
        good.as_bytes(),
    );
    c.source_error("tag folder without current/link", "h/half-tag/_manifests/tags/t/current/link", "no current/link");
    std::fs::create_dir_all(c.repositories().join("h/empty-tag/_manifests/tags/t")).unwrap();
    c.source_error("empty tag folder", "h/empty-tag/_manifests/tags/t/current/link", "no current/link");
    c.tag("h/bad-tag", "-dash-first", &good);
    c.source_error("tag name breaking the grammar", "h/bad-tag/_manifests/tags/-dash-first", "breaks the grammar");

    // Names.
    c.tag("H/Upper_Case", "t", &good);
    c.source_error("repository name breaking the grammar", "H/", "breaks the grammar");
    c.tag("h/a..b", "t", &good);
    c.source_error("repository name with `..`", "h/a..b/", "breaks the grammar");
    let raw = std::ffi::OsStr::from_bytes(b"h/latin1-\xe9t\xe9");
    std::fs::create_dir_all(c.repositories().join(raw).join("_manifests/tags/t/current")).unwrap();
    std::fs::write(c.repositories().join(raw).join("_manifests/tags/t/current/link"), good.as_bytes()).unwrap();
    c.source_error("non-UTF-8 repository name", "h/latin1-\u{fffd}t\u{fffd}", "not UTF-8");
    std::fs::create_dir_all(
        c.repositories()
            .join("h/latin1-tag/_manifests/tags")
            .join(std::ffi::OsStr::from_bytes(b"v\xff"))
            .join("current"),
    )
    .unwrap();
    std::fs::write(
        c.repositories().join("h/latin1-tag/_manifests/tags").join(std::ffi::OsStr::from_bytes(b"v\xff/current/link")),
        good.as_bytes(),
    )
    .unwrap();
    c.source_error("non-UTF-8 tag name", "h/latin1-tag/_manifests/tags/v\u{fffd}", "not UTF-8");

    // Symbolic links.
    symlink(".", c.repositories().join("h/loop")).unwrap();
    c.source_error("symbolic-link loop", "h/loop", "symbolic link not followed");
    let outside = root.parent().unwrap().join("outside/t/current");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("link"), good.as_bytes()).unwrap();
    std::fs::create_dir_all(c.repositories().join("h/escape/_manifests/tags")).unwrap();
    symlink(outside.parent().unwrap(), c.repositories().join("h/escape/_manifests/tags/t")).unwrap();
    c.source_error("symbolic link out of the root", "h/escape/_manifests/tags/t", "symbolic link not followed");

    // Scale and depth.
    let many = c.image("many");
    for i in 0..MANY_TAGS {
        c.tag("h/many-tags", &format!("t{i}"), &many);
    }
    c.case("10,000 tags in one repository", Expect::AllLand { repository: "h/many-tags".into(), tags: MANY_TAGS });
    let deep = "d1/d2/d3/d4/d5/d6/d7/d8/d9/d10";
    c.tag(deep, "t", &c.image("deep"));
    c.lands("10 levels of nesting", deep, "t");
    c
}

#[test]
fn every_hostile_case_has_its_expected_outcome_and_the_rest_lands() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    let truth =
        generate(&root, &SynthSpec { repositories: 40, tags_per_repository: 2, ..SynthSpec::default() }, 2).unwrap();
    let corpus = build_corpus(&root);
    assert!(corpus.cases.len() >= 20, "the corpus holds {} cases", corpus.cases.len());
    let source = root.to_str().unwrap();

    // The scan: every source problem is an error record naming its key.
    let scan = rehydrate(&["scan", source]);
    let scan_stderr = String::from_utf8_lossy(&scan.stderr);
    assert_eq!(scan.status.code(), Some(EXIT_PARTIAL), "{scan_stderr}");
    let errors = error_records(&inventory_lines(&scan.stdout));

    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let sync = rehydrate(&["sync", source, &target.url, "--plain-http", "--no-journal", "--push-concurrency", "16"]);
    let stderr = String::from_utf8_lossy(&sync.stderr);
    assert_eq!(sync.status.code(), Some(EXIT_PARTIAL), "{stderr}");

    let (mut source_errors, mut failed) = (0, 0);
    for case in &corpus.cases {
        let name = case.name;
        match &case.expect {
            Expect::Lands { repository, tag } => {
                assert!(target.head_manifest(repository, tag).is_some(), "{name}: {repository}:{tag} landed");
            }
            Expect::AllLand { repository, tags } => assert_eq!(target.tags(repository).len(), *tags, "{name}"),
            Expect::SourceError { key, words } => {
                source_errors += 1;
                let found = errors.iter().any(|(k, m)| k.starts_with(key.as_str()) && m.contains(words));
                assert!(found, "{name}: an error record for {key} saying {words:?}; errors: {errors:#?}");
                assert!(stderr.contains(&format!("error: {key}")), "{name}: the sync names {key}: {stderr}");
            }
            Expect::TagFails { label, words } => {
                failed += 1;
                let line = stderr
                    .lines()
                    .find(|l| l.starts_with(&format!("error: {label} -> ")))
                    .unwrap_or_else(|| panic!("{name}: no error for {label}: {stderr}"));
                assert!(line.contains(words), "{name}: {line}");
                let (repository, tag) = label.split_once(':').unwrap();
                assert!(target.head_manifest(repository, tag).is_none(), "{name}: nothing was pushed under {label}");
            }
        }
    }
    assert_eq!(errors.len(), source_errors, "one error record per source case: {errors:#?}");
    assert!(stderr.contains(&format!("{failed} failed")), "the summary counts {failed} failed tags: {stderr}");
    assert!(
        stderr.contains(&format!("{source_errors} source errors")),
        "the summary counts {source_errors} source errors: {stderr}"
    );
    assert!(stderr.contains("PARTIAL"), "{stderr}");

    // The corrupt layer never reached the target, in any repository.
    let corrupt = sha256(b"the true layer");
    assert!(!target.blob_exists("h/corrupt-layer", &corrupt));
    // Every intact synthetic tag landed with its digest.
    let landed = target.inventory();
    for record in &truth {
        assert!(
            landed.contains(&(record.repository.clone(), record.tag.clone(), record.digest.clone())),
            "{record:?} landed"
        );
    }
}

#[test]
fn object_keys_with_dot_dot_and_double_slashes_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let truth = generate(dir.path(), &SynthSpec { repositories: 6, tags_per_repository: 1, ..SynthSpec::default() }, 1)
        .unwrap();
    let moto = Moto::start();
    moto.create_bucket("registry");
    moto.put_tree("registry", dir.path());
    let digest = truth[0].digest.as_bytes();
    let repositories = "docker/registry/v2/repositories";
    let dot_dot = format!("{repositories}/h/../escape/_manifests/tags/t/current/link");
    let double = format!("{repositories}/h//double/_manifests/tags/t/current/link");
    let dot_dot_tag = format!("{repositories}/h/ok/_manifests/tags/../../../../x/current/link");
    moto.put_raw_keys("registry", &[(&dot_dot, digest), (&double, digest), (&dot_dot_tag, digest)]);

    let scan = rehydrate_with_env(&["scan", "s3://registry"], &moto.env());
    let stderr = String::from_utf8_lossy(&scan.stderr);
    assert_eq!(scan.status.code(), Some(EXIT_PARTIAL), "{stderr}");
    let lines = inventory_lines(&scan.stdout);
    let errors = error_records(&lines);
    for key in [
        format!("{repositories}/h/../"),
        format!("{repositories}/h//double/"),
        format!("{repositories}/h/ok/_manifests/tags/.."),
    ] {
        assert!(
            errors.iter().any(|(k, m)| k.starts_with(&key) && m.contains("grammar")),
            "an error names {key}: {errors:#?}"
        );
    }
    let expected: BTreeSet<_> = truth.iter().map(|t| (t.repository.clone(), t.tag.clone(), t.digest.clone())).collect();
    assert_eq!(tag_records(&lines), expected, "the intact repositories are all scanned");
}
