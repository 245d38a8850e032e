//! `--shard K/N`: N runs together do exactly what one run does, each repository in exactly one run.

mod support;

use std::collections::BTreeSet;

use rehydrate::synth::{generate, SynthSpec};
use support::*;

type Tags = BTreeSet<(String, String, String)>;

fn scan_shard(root: &str, shard: &str, env: &[(&str, String)]) -> Tags {
    let output = rehydrate_with_env(&["scan", "--shard", shard, root], env);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    tag_records(&inventory_lines(&output.stdout))
}

#[test]
fn scan_shards_are_disjoint_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let truth: Tags = generate(dir.path(), &SynthSpec { repositories: 600, ..SynthSpec::default() }, 2)
        .unwrap()
        .into_iter()
        .map(|t| (t.repository, t.tag, t.digest))
        .collect();
    let root = dir.path().to_str().unwrap();
    for count in [1, 3, 7] {
        let mut union = Tags::new();
        for index in 0..count {
            let part = scan_shard(root, &format!("{index}/{count}"), &[]);
            assert!(!part.is_empty() || count > 100);
            assert!(union.is_disjoint(&part), "shard {index}/{count} overlaps another");
            union.extend(part);
        }
        assert_eq!(union, truth, "{count} shards together");
    }
    // K from the Kubernetes Indexed Job's environment.
    let from_env = scan_shard(root, "3", &[("JOB_COMPLETION_INDEX", "1".to_string())]);
    assert_eq!(from_env, scan_shard(root, "1/3", &[]));
    let output = rehydrate_with_env(&["scan", "--shard", "3", root], &[]);
    assert_eq!(output.status.code(), Some(1), "no index: a clear error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("JOB_COMPLETION_INDEX"));
    // Values out of range are command-line errors: exit code 2, with the usage line.
    for bad in [&["scan", "--shard", "5/3", root][..], &["scan", "--list-concurrency", "0", root][..]] {
        let output = rehydrate_with_env(bad, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("invalid value") && stderr.contains("Usage: rehydrate scan"), "{stderr}");
    }
    let output = rehydrate_with_env(&["sync", root, "https://harbor.example.com", "--push-concurrency", "0"], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn sync_shards_push_every_tag_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let truth: Tags =
        generate(dir.path(), &SynthSpec { repositories: 120, tags_per_repository: 2, ..SynthSpec::default() }, 2)
            .unwrap()
            .into_iter()
            .map(|t| (t.repository, t.tag, t.digest))
            .collect();
    let root = dir.path().to_str().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let mut pushed = 0;
    for index in 0..3 {
        let output = rehydrate(&["sync", "--shard", &format!("{index}/3"), root, &target.url, "--plain-http"]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        let count: u64 = stderr.split(" pushed").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
        assert!(stderr.contains(&format!("{count} pushed, 0 already there")), "no tag pushed twice: {stderr}");
        pushed += count;
    }
    assert_eq!(pushed as usize, truth.len());
    assert_eq!(target.inventory(), truth);
}
