//! Disaster recovery: Harbor lost its database, its bucket survived, a new Harbor serves the same
//! storage. The Harbor emulator stands in front of a real registry serving the very tree that is
//! scanned, with an empty project and artifact state (so, as in Harbor, every blob HEAD answers 404).

mod support;

use std::path::PathBuf;

use std::collections::BTreeSet;

use support::harbor::*;
use support::harbor_target::{exclusive, TestHarbor};
use support::images::*;
use support::*;

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Leaves the storage as Harbor 2.15 and later write it: no `_manifests/tags` folder anywhere.
fn remove_tag_folders(root: &std::path::Path) {
    let tag_folders: BTreeSet<PathBuf> = support::servers::walk_files(&root.join("docker/registry/v2/repositories"))
        .into_iter()
        .filter_map(|file| {
            let text = file.to_str().unwrap();
            text.find("/_manifests/tags/").map(|at| PathBuf::from(&text[..at + "/_manifests/tags".len()]))
        })
        .collect();
    for folder in tag_folders {
        std::fs::remove_dir_all(folder).unwrap();
    }
}

fn uploads(harbor: &HarborEmulator) -> u64 {
    ["POST upload", "PATCH upload", "PUT upload"].iter().map(|kind| harbor.count(kind)).sum()
}

#[test]
fn in_place_restores_every_tag_without_moving_a_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, facts) = {
        let original = Registry::start(dir.path());
        let facts = push_fixture(&original);
        (original.inventory(), facts)
    };
    let root = dir.path().to_str().unwrap();
    let harbor = HarborEmulator::start(dir.path());
    assert!(harbor.state.lock().unwrap().blobs.is_empty(), "the database is gone");

    let output = rehydrate_with_env(
        &["sync", root, &harbor.url, "--plain-http", "--in-place", "--untagged"],
        &harbor.env_admin(),
    );
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("blobs: 0 uploaded (0 B)"), "{stderr}");
    assert_eq!(uploads(&harbor), 0, "no upload request reached Harbor");

    let tags: BTreeSet<(String, String, String)> =
        harbor.state.lock().unwrap().tags.iter().map(|((r, t), d)| (r.clone(), t.clone(), d.clone())).collect();
    assert_eq!(tags, expected, "every tag is back, with its digest");
    let artifacts = harbor.state.lock().unwrap().artifacts.clone();
    for (repository, digest) in &facts.untagged {
        assert!(artifacts.contains(&(repository.clone(), digest.clone())), "{repository}@{digest} restored by digest");
    }

    let verify = rehydrate_with_env(&["verify", root, &harbor.url, "--plain-http"], &harbor.env_admin());
    assert!(verify.status.success(), "{}", stderr_of(&verify));
    let host = harbor.url.trim_start_matches("http://");
    skopeo_reads_back(host, &expected, Some(&format!("{ADMIN}:{ADMIN_PASSWORD}")));
}

#[test]
fn a_bucket_without_tags_is_restored_by_digest_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let facts = {
        let original = Registry::start(dir.path());
        push_fixture(&original)
    };
    // Harbor 2.15 and later keep tags in the database only: the bucket has no _manifests/tags at all.
    remove_tag_folders(dir.path());
    let harbor = HarborEmulator::start(dir.path());
    let output = rehydrate_with_env(
        &["sync", dir.path().to_str().unwrap(), &harbor.url, "--plain-http", "--in-place", "--untagged"],
        &harbor.env_admin(),
    );
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("tag names cannot be recovered"), "{stderr}");
    assert_eq!(uploads(&harbor), 0);
    let artifacts = harbor.state.lock().unwrap().artifacts.clone();
    for (repository, digest) in &facts.untagged {
        assert!(artifacts.contains(&(repository.clone(), digest.clone())));
    }
    assert!(artifacts.len() >= 17, "every manifest of the bucket, by digest: {}", artifacts.len());
}

#[test]
fn tags_exported_from_harbor_come_back_with_a_rebuild_from_a_tagless_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let original = Registry::start(dir.path());
        push_fixture(&original);
        original.inventory()
    };
    let root = dir.path().to_str().unwrap();
    // The Harbor before the loss holds every tag; its tags are exported on a schedule.
    let before_dir = tempfile::tempdir().unwrap();
    let before = HarborEmulator::start(before_dir.path());
    let sync = rehydrate_with_env(&["sync", root, &before.url, "--plain-http", "--no-journal"], &before.env_admin());
    assert!(sync.status.success(), "{}", stderr_of(&sync));
    let exports = tempfile::tempdir().unwrap();
    let export = exports.path().join("tags.jsonl");
    let output = rehydrate_with_env(
        &["export-tags", &before.url, "--plain-http", "--output", export.to_str().unwrap()],
        &before.env_admin(),
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains(&format!("exported {} tags", expected.len())), "{}", stderr_of(&output));

    // The bucket as Harbor 2.15 leaves it (no tag folders), served by a Harbor that lost its database.
    remove_tag_folders(dir.path());
    let harbor = HarborEmulator::start(dir.path());
    let args = ["sync", root, &harbor.url, "--plain-http", "--in-place", "--untagged", "--no-journal", "--tags-from"];
    let mut args = args.to_vec();
    args.push(export.to_str().unwrap());
    let output = rehydrate_with_env(&args, &harbor.env_admin());
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(uploads(&harbor), 0, "no blob byte moved");
    let tags: BTreeSet<(String, String, String)> =
        harbor.state.lock().unwrap().tags.iter().map(|((r, t), d)| (r.clone(), t.clone(), d.clone())).collect();
    assert_eq!(tags, expected, "every tag is back, at its digest");

    // Without --untagged there is nothing to give tags back to: said plainly.
    let refused = rehydrate_with_env(
        &["sync", root, &harbor.url, "--plain-http", "--tags-from", export.to_str().unwrap()],
        &harbor.env_admin(),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
    assert!(stderr_of(&refused).contains("--untagged"), "{}", stderr_of(&refused));
}

/// Bytes of every blob the storage at `root` holds (a path; `None` for a bucket).
fn blob_bytes(root: &str) -> Option<u64> {
    let blobs = std::path::Path::new(root).join("docker/registry/v2/blobs");
    blobs.is_dir().then(|| support::servers::walk_files(&blobs).iter().map(|f| f.metadata().unwrap().len()).sum())
}

/// Disaster recovery through Harbor itself (the emulator, or a real Harbor given its storage and a way
/// to drop its database: `REHYDRATE_TEST_HARBOR_STORAGE`, `REHYDRATE_TEST_HARBOR_RESET_DB`). Images
/// are pushed through Harbor into two projects (an index, a referrer, untagged manifests), its tags are
/// exported, then Harbor loses its database and is rebuilt in place from its own storage: every
/// repository, artifact and tag is listed again at the same digest, and no blob byte moved.
#[test]
fn a_harbor_that_lost_its_database_is_rebuilt_from_its_own_storage() {
    let _whole = exclusive();
    let harbor_storage = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(harbor_storage.path(), "rebuild");
    let Some(storage) = harbor.storage() else {
        eprintln!(
            "against a real Harbor, left out: the rebuild (set REHYDRATE_TEST_HARBOR_STORAGE to its storage root)"
        );
        return;
    };
    let source = tempfile::tempdir().unwrap();
    let facts = push_fixture(&Registry::start(source.path()));
    let (one, two) = (harbor.project_name("one"), harbor.project_name("two"));
    for (project, selection) in [(&one, "--include"), (&two, "--exclude")] {
        let args = ["sync", source.path().to_str().unwrap(), &harbor.url, "--plain-http", "--untagged", "--no-journal"];
        let mut args = args.to_vec();
        args.extend(["--dest-namespace", project.as_str(), selection, "{library,multi}/**"]);
        let pushed = rehydrate_with_env(&args, &harbor.env_admin());
        assert!(pushed.status.success(), "{}", stderr_of(&pushed));
    }
    let tags = harbor.tags();
    let artifacts = harbor.artifacts();
    let projects: BTreeSet<String> = artifacts.iter().map(|(r, _)| r.split('/').next().unwrap().to_string()).collect();
    assert_eq!(projects, BTreeSet::from([one.clone(), two.clone()]), "two projects");
    for (repository, digest) in &facts.untagged {
        let in_project =
            if repository.starts_with("library/") || repository.starts_with("multi/") { &one } else { &two };
        let target = (format!("{in_project}/{repository}"), digest.clone());
        assert!(artifacts.contains(&target), "untagged {target:?} pushed: {artifacts:?}");
    }

    // The tags, exported on a schedule before the loss (Harbor 2.15 keeps them only in its database).
    let exports = tempfile::tempdir().unwrap();
    let export = exports.path().join("tags.jsonl");
    let (include_one, include_two) = (format!("{one}/**"), format!("{two}/**"));
    let exported = rehydrate_with_env(
        &[
            "export-tags",
            &harbor.url,
            "--plain-http",
            "--output",
            export.to_str().unwrap(),
            "--include",
            &include_one,
            "--include",
            &include_two,
        ],
        &harbor.env_admin(),
    );
    assert!(exported.status.success(), "{}", stderr_of(&exported));
    let bytes_before = blob_bytes(&storage);
    let uploads_before: u64 = ["POST upload", "PATCH upload", "PUT upload"].iter().map(|k| harbor.count(k)).sum();

    if !harbor.lose_database() {
        return;
    }
    assert!(harbor.tags().is_empty() && harbor.artifacts().is_empty(), "the database is gone");
    let args = ["sync", &storage, &harbor.url, "--plain-http", "--in-place", "--untagged", "--no-journal"];
    let mut args = args.to_vec();
    args.extend(["--tags-from", export.to_str().unwrap(), "--include", &include_one, "--include", &include_two]);
    let rebuilt = rehydrate_with_env(&args, &harbor.env_admin());
    assert!(rebuilt.status.success(), "{}", stderr_of(&rebuilt));

    assert_eq!(harbor.artifacts(), artifacts, "every repository and artifact is back, at its digest");
    assert_eq!(harbor.tags(), tags, "every tag is back, at its digest");
    let uploads_after: u64 = ["POST upload", "PATCH upload", "PUT upload"].iter().map(|k| harbor.count(k)).sum();
    assert_eq!(uploads_after, uploads_before, "no upload reached Harbor");
    assert_eq!(blob_bytes(&storage), bytes_before, "no blob byte moved");
    let verify = rehydrate_with_env(
        &[
            "verify",
            &storage,
            &harbor.url,
            "--plain-http",
            "--untagged",
            "--include",
            &include_one,
            "--include",
            &include_two,
        ],
        &harbor.env_admin(),
    );
    assert!(verify.status.success(), "{}", stderr_of(&verify));
}
