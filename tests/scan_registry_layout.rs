//! The scan against layouts written by the real distribution registry: the inventory must be exactly what
//! that registry itself answers (`_catalog`, `tags/list`, and each tag's `Docker-Content-Digest`).

mod support;

use std::collections::BTreeSet;

use support::images::*;
use support::*;

fn storage_root(fixture: &WrittenFixture) -> String {
    fixture.root().to_string()
}

#[test]
fn inventory_equals_what_the_registry_answers() {
    let fixture = written_fixture();
    let expected = fixture.registry.inventory();
    assert_eq!(expected.len(), 17, "the fixture itself: {expected:#?}");

    for args in [vec!["scan"], vec!["scan", "--untagged"], vec!["scan", "--list-concurrency", "1"]] {
        let root = storage_root(&fixture);
        let mut args = args.clone();
        args.push(&root);
        let output = rehydrate(&args);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        let lines = inventory_lines(&output.stdout);
        assert_eq!(tag_records(&lines), expected, "{args:?}");
        assert!(error_records(&lines).is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("17 repositories, 17 tags"), "{stderr}");
    }

    let inventory = tag_records(&inventory_lines(&rehydrate(&["scan", &storage_root(&fixture)]).stdout));
    let stable = inventory.iter().find(|(r, t, _)| r == "team-a/web.app" && t == "stable").unwrap();
    assert_eq!(stable.2, fixture.facts.restagged, "a re-pointed tag reports its current digest");
    for digest in &fixture.facts.deleted {
        assert!(inventory.iter().all(|(_, _, d)| d != digest), "deleted {digest} must not be reported");
    }
    assert!(inventory.iter().all(|(r, _, _)| r != "gone/repo" && r != "blobsonly/repo"));
}

#[test]
fn untagged_lists_exactly_the_manifests_no_tag_points_at() {
    let fixture = written_fixture();
    let output = rehydrate(&["scan", "--untagged", &storage_root(&fixture)]);
    assert!(output.status.success());
    let lines = inventory_lines(&output.stdout);
    assert_eq!(untagged_records(&lines), fixture.facts.untagged);
    // The deleted manifests left empty revision folders behind: they are debris, not manifests.
    let debris = fixture.registry.root.join(format!(
        "docker/registry/v2/repositories/team-a/web.app/_manifests/revisions/sha256/{}",
        fixture.facts.deleted[0].strip_prefix("sha256:").unwrap()
    ));
    assert!(debris.is_dir() && !debris.join("link").exists(), "the registry leaves the folder of a deleted manifest");
}

#[test]
fn both_repository_markers_are_accepted() {
    let fixture = written_fixture();
    let expected = fixture.registry.inventory();
    // distribution 3 writes no `_layers` for a repository that only received manifests: only `_manifests`.
    let nest = fixture.registry.root.join("docker/registry/v2/repositories/nest/a/_layers");
    std::fs::remove_dir_all(&nest).unwrap();
    let output = rehydrate(&["scan", &storage_root(&fixture)]);
    assert_eq!(tag_records(&inventory_lines(&output.stdout)), expected);
    // `blobsonly/repo` has only `_layers` (the 2.8 marker): it is a repository, with no tags.
    assert!(String::from_utf8_lossy(&output.stderr).contains("17 repositories"));
}

#[test]
fn csv_and_output_file_carry_the_same_inventory() {
    let fixture = written_fixture();
    let expected = fixture.registry.inventory();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("inventory.csv");
    let output = rehydrate(&["scan", "--format", "csv", "--output", path.to_str().unwrap(), &storage_root(&fixture)]);
    assert!(output.status.success());
    assert!(output.stdout.is_empty(), "with --output nothing goes to stdout");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("repository,tag,digest,error"));
    let records: BTreeSet<(String, String, String)> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 4, "{line}");
            assert_eq!(fields[3], "", "{line}");
            (fields[0].to_string(), fields[1].to_string(), fields[2].to_string())
        })
        .collect();
    assert_eq!(records, expected);
}
