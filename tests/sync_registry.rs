//! `rehydrate sync` and `verify` into the real registry (Debian `docker-registry`): the registry-written
//! fixture lands tag for tag with the same digests, a re-run pushes nothing, filters and Harbor's name
//! mapping choose and rename, and broken or corrupt source data is a per-tag error that never reaches
//! the target.

mod support;

use std::collections::BTreeSet;

use support::images::*;
use support::*;

const EXIT_PARTIAL: i32 = 3;

fn sync(args: &[&str]) -> std::process::Output {
    let mut all = vec!["sync"];
    all.extend_from_slice(args);
    rehydrate(&all)
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The source fixture, written by one registry, and an empty target registry.
fn source_and_target() -> (WrittenFixture, tempfile::TempDir, Registry) {
    let fixture = written_fixture();
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    (fixture, target_dir, target)
}

#[test]
fn the_fixture_lands_with_every_digest_and_a_rerun_pushes_nothing() {
    let (fixture, _target_dir, target) = source_and_target();
    let source = &fixture.registry;
    let root = fixture.root();
    let expected = source.inventory();

    let first = sync(&[root, &target.url, "--plain-http"]);
    assert!(first.status.success(), "{}", stderr_of(&first));
    assert!(
        stderr_of(&first).contains(&format!("{FIXTURE_TAGS} pushed, 0 already there, 0 failed")),
        "{}",
        stderr_of(&first)
    );
    assert_eq!(target.inventory(), expected, "every tag, same digest");

    // Index children were pushed by digest before their index, and untagged referrers stay behind.
    let (arch, arch_tag, arch_digest) = expected.iter().find(|(r, _, _)| r == "multi/arch").unwrap().clone();
    assert_eq!(target.head_manifest(&arch, &arch_tag), Some(arch_digest));

    let verify = rehydrate(&["verify", root, &target.url, "--plain-http"]);
    assert!(verify.status.success(), "{}", stderr_of(&verify));
    assert!(stderr_of(&verify).contains(&format!("{FIXTURE_TAGS} match, 0 do not")));

    // A re-run without the journal HEADs each tag and finds it there.
    let again = sync(&[root, &target.url, "--plain-http", "--no-journal"]);
    assert!(again.status.success());
    let summary = stderr_of(&again);
    assert!(summary.contains(&format!("0 pushed, {FIXTURE_TAGS} already there")), "{summary}");
    assert!(summary.contains("blobs: 0 uploaded (0 B), 0 mounted"), "a re-run sends nothing: {summary}");
}

#[test]
fn verify_reports_what_is_missing_or_different() {
    let (fixture, _target_dir, target) = source_and_target();
    let root = fixture.root();
    let output = rehydrate(&["verify", root, &target.url, "--plain-http"]);
    assert_eq!(output.status.code(), Some(EXIT_PARTIAL));
    assert!(stderr_of(&output).contains(&format!("0 match, {FIXTURE_TAGS} do not")), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("missing on the target"));
}

#[test]
fn filters_and_harbor_name_mapping_choose_and_rename() {
    let (fixture, _target_dir, target) = source_and_target();
    let root = fixture.root();
    let output = sync(&[
        root,
        &target.url,
        "--plain-http",
        "--include",
        "sort/**",
        "--exclude",
        "sort/a.b",
        "--dest-namespace",
        "mirror",
        "--flatten",
        "1",
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let catalog: BTreeSet<String> = target.catalog().into_iter().collect();
    let expected: BTreeSet<String> =
        ["mirror/a", "mirror/a-b", "mirror/a/b", "mirror/a_b", "mirror/a0"].iter().map(|s| s.to_string()).collect();
    assert_eq!(catalog, expected);

    // Flatten everything to the last component, and keep only some tags.
    let output = sync(&[
        root,
        &target.url,
        "--plain-http",
        "--include",
        "nest/**",
        "--include-tag",
        "v1.*",
        "--dest-namespace",
        "flat",
        "--flatten",
        "-1",
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let catalog: BTreeSet<String> = target.catalog().into_iter().filter(|r| r.starts_with("flat/")).collect();
    assert_eq!(catalog, ["flat/a", "flat/b", "flat/e"].iter().map(|s| s.to_string()).collect());

    // A level beyond a repository's depth is a per-tag error, as in Harbor.
    let output = sync(&[
        root,
        &target.url,
        "--plain-http",
        "--include",
        "library/*",
        "--dest-namespace",
        "deep",
        "--flatten",
        "3",
    ]);
    assert_eq!(output.status.code(), Some(EXIT_PARTIAL));
    assert!(stderr_of(&output).contains("fewer than the flattening level 3"), "{}", stderr_of(&output));
}

#[test]
fn existing_tags_pointing_elsewhere_are_left_alone_unless_overridden() {
    let (fixture, _target_dir, target) = source_and_target();
    let root = fixture.root();
    let other = push_image(&target, "library/alpine", Some("latest"), Kind::Docker, "something else");
    let output = sync(&[root, &target.url, "--plain-http", "--include", "library/alpine"]);
    assert_eq!(output.status.code(), Some(EXIT_PARTIAL));
    assert!(stderr_of(&output).contains("left alone"), "{}", stderr_of(&output));
    assert_eq!(target.head_manifest("library/alpine", "latest"), Some(other));
    let output = sync(&[root, &target.url, "--plain-http", "--include", "library/alpine", "--override"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(target.head_manifest("library/alpine", "latest"), target.head_manifest("library/alpine", "3.19"));
}

/// Replaces a blob's bytes in the source storage with other bytes of the same length.
fn corrupt_blob(root: &std::path::Path, digest: &str) {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let path = root.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn corrupt_or_missing_source_data_never_reaches_the_target() {
    let (fixture, _target_dir, target) = source_and_target();
    let source = &fixture.registry;
    let root = source.root.as_path();
    // A layer of team-a/web.app:v1 corrupted in storage; the manifest of nest/a missing.
    let web = source.get_manifest_json("team-a/web.app", "v1");
    let layer = web["layers"][0]["digest"].as_str().unwrap().to_string();
    corrupt_blob(root, &layer);
    let nest = source.head_manifest("nest/a", "v1.0-rc_1").unwrap();
    let hex = nest.strip_prefix("sha256:").unwrap();
    std::fs::remove_file(root.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))).unwrap();

    let output = sync(&[root.to_str().unwrap(), &target.url, "--plain-http"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(EXIT_PARTIAL), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "team-a/web.app:v1 -> team-a/web.app:v1: blob {layer} in the source storage is corrupt"
        )),
        "{stderr}"
    );
    // The registry would not serve a tag whose manifest blob is gone: the scan says so, naming the blob.
    assert!(
        stderr.contains(&format!("nest/a:v1.0-rc_1 ({nest}): manifest unknown: the manifest blob is missing")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{} pushed, 0 already there, 1 failed", FIXTURE_TAGS - 2)), "{stderr}");
    assert!(stderr.contains("1 source errors"), "{stderr}");
    assert_eq!(target.head_manifest("team-a/web.app", "v1"), None);
    assert!(!target.blob_exists("team-a/web.app", &layer), "the corrupt blob never landed");
    assert!(target.head_manifest("team-a/web.app", "stable").is_some(), "the rest of the repository did");
}

#[test]
fn dry_run_pushes_nothing_and_says_what_it_would_do() {
    let (fixture, _target_dir, target) = source_and_target();
    let output = sync(&[fixture.root(), &target.url, "--plain-http", "--dry-run"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("would push library/alpine:3.19"), "{stdout}");
    assert!(stdout.contains(&format!("push {FIXTURE_TAGS} tags")), "{stdout}");
    assert!(target.catalog().is_empty(), "nothing was pushed");
}

#[test]
fn skopeo_reads_every_synced_tag_back_with_valid_digests() {
    let (fixture, _target_dir, target) = source_and_target();
    let source = &fixture.registry;
    let output = sync(&[fixture.root(), &target.url, "--plain-http"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let host = target.url.trim_start_matches("http://");
    skopeo_reads_back(host, &source.inventory(), None);
}

#[test]
fn large_blobs_go_up_in_chunks_and_land_intact() {
    let source_dir = tempfile::tempdir().unwrap();
    // Layers of 3 MiB, sent in chunks of 1 MiB (three PATCHes and a PUT each).
    let spec = rehydrate::synth::SynthSpec {
        repositories: 4,
        tags_per_repository: 1,
        images: 2,
        layer_bytes: 3 << 20,
        ..Default::default()
    };
    let truth = rehydrate::synth::generate(source_dir.path(), &spec, 1).unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let output = sync(&[source_dir.path().to_str().unwrap(), &target.url, "--plain-http", "--chunk-size", "1048576"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    for record in &truth {
        assert_eq!(target.head_manifest(&record.repository, &record.tag).as_deref(), Some(record.digest.as_str()));
        let manifest = target.get_manifest_json(&record.repository, &record.tag);
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        let bytes = reqwest::blocking::get(format!("{}/v2/{}/blobs/{layer}", target.url, record.repository))
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(bytes.len(), 3 << 20);
        assert_eq!(sha256(&bytes), layer, "the chunked upload reassembled the blob exactly");
    }
}
