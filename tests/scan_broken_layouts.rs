//! Broken and hostile layouts: every problem is an error record naming its key, the scan goes on with the
//! rest, and the exit code says the run was partial.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::Path;

use rehydrate::synth::{generate, repository_name, SynthSpec};
use support::*;

const EXIT_PARTIAL: i32 = 3;
const REPOS: &str = "docker/registry/v2/repositories";

fn truth_set(truth: &[rehydrate::synth::TruthRecord]) -> BTreeSet<(String, String, String)> {
    truth.iter().map(|t| (t.repository.clone(), t.tag.clone(), t.digest.clone())).collect()
}

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

#[test]
fn each_broken_item_is_an_error_naming_its_key_and_the_rest_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    let truth = generate(&root, &SynthSpec { repositories: 200, ..SynthSpec::default() }, 2).unwrap();
    let mut expected = truth_set(&truth);
    let repos = root.join(REPOS);
    let broken_tag =
        |repository: &str, tag: &str, content: &[u8], expected: &mut BTreeSet<(String, String, String)>| {
            write(&repos.join(format!("{repository}/_manifests/tags/{tag}/current/link")), content);
            expected.retain(|(r, t, _)| !(r == repository && t == tag));
        };
    let (r1, r2, r3) = (repository_name(1), repository_name(2), repository_name(3));
    broken_tag(&r1, "latest", b"", &mut expected);
    broken_tag(&r2, "latest", b"not a digest at all", &mut expected);
    broken_tag(&r3, "latest", b"sha256:ABCDEF", &mut expected);
    // A name breaking the grammar, holding an otherwise valid repository.
    write(&repos.join("Bad_Name/x/_manifests/tags/t/current/link"), truth[0].digest.as_bytes());
    write(&repos.join("Bad_Name/x/_layers/sha256/00/link"), b"");
    // A tag name breaking the tag grammar.
    write(&repos.join(format!("{r1}/_manifests/tags/-bad/current/link")), truth[0].digest.as_bytes());
    // A tag folder that escapes the storage root through a symbolic link, and a folder link loop.
    let outside = dir.path().join("outside/current");
    write(&outside.join("link"), truth[0].digest.as_bytes());
    symlink(outside.parent().unwrap(), repos.join(format!("{r2}/_manifests/tags/evil"))).unwrap();
    symlink(".", repos.join("loop")).unwrap();
    // `current` itself is a link out of the root.
    std::fs::create_dir_all(repos.join(format!("{r3}/_manifests/tags/sneaky"))).unwrap();
    symlink(&outside, repos.join(format!("{r3}/_manifests/tags/sneaky/current"))).unwrap();
    // A half-written tag: an index entry but no current link (the registry lists it, cannot serve it).
    write(&repos.join(format!("{r1}/_manifests/tags/half/index/sha256/{}/link", "1".repeat(64))), b"");

    let output = rehydrate(&["scan", root.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_PARTIAL), "{stderr}");
    let lines = inventory_lines(&output.stdout);
    assert_eq!(tag_records(&lines), expected, "every intact tag is still reported");

    let errors: BTreeSet<(String, String)> = error_records(&lines).into_iter().collect();
    let key = |path: &str| format!("{REPOS}/{path}");
    let has_error = |key: &str, words: &str| errors.iter().any(|(k, m)| k == key && m.contains(words));
    assert!(has_error(&key(&format!("{r1}/_manifests/tags/latest/current/link")), "empty link"), "{errors:#?}");
    assert!(has_error(&key(&format!("{r2}/_manifests/tags/latest/current/link")), "not a digest"), "{errors:#?}");
    assert!(has_error(&key(&format!("{r3}/_manifests/tags/latest/current/link")), "not a digest"), "{errors:#?}");
    assert!(has_error(&key("Bad_Name/"), "breaks the grammar"), "{errors:#?}");
    assert!(has_error(&key(&format!("{r1}/_manifests/tags/-bad")), "breaks the grammar"), "{errors:#?}");
    assert!(has_error(&key(&format!("{r2}/_manifests/tags/evil")), "symbolic link not followed"), "{errors:#?}");
    assert!(has_error(&key("loop"), "symbolic link not followed"), "{errors:#?}");
    assert!(
        has_error(&key(&format!("{r3}/_manifests/tags/sneaky/current/link")), "symbolic link not followed"),
        "{errors:#?}"
    );
    assert!(has_error(&key(&format!("{r1}/_manifests/tags/half/current/link")), "no current/link"), "{errors:#?}");
    assert_eq!(errors.len(), 9, "{errors:#?}");
    assert!(stderr.contains("9 errors, 0 warnings"), "{stderr}");
    assert!(stderr.contains("PARTIAL"), "{stderr}");
}

#[test]
fn a_missing_storage_root_is_a_fatal_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = rehydrate(&["scan", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("docker/registry/v2/repositories"), "{stderr}");
}

#[test]
fn the_inventory_is_the_same_at_every_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let truth = generate(dir.path(), &SynthSpec { repositories: 1500, ..SynthSpec::default() }, 2).unwrap();
    for concurrency in ["1", "2", "7", "64"] {
        let output = rehydrate(&["scan", "--list-concurrency", concurrency, dir.path().to_str().unwrap()]);
        assert!(output.status.success());
        assert_eq!(tag_records(&inventory_lines(&output.stdout)), truth_set(&truth), "{concurrency} listings at once");
    }
}
