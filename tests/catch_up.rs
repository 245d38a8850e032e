//! Migrating a live registry: after a full sync the source keeps changing (new tags and repositories,
//! re-pointed tags, deleted tags, an emptied repository, a repository removed from storage), a third
//! party changes a tag on the target, and the same command is run again. The catch-up brings the target
//! up to date exactly, costs no target request for unchanged tags, leaves the third party's tag alone,
//! reports what is gone, and deletes it only with `--delete` (by Harbor's API, or by digest on a plain
//! registry when no other tag points at it). Also across a SIGKILL in the middle of a catch-up, and
//! with three shards, each with its own journal.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::harbor::HarborEmulator;
use support::harbor_target::TestHarbor;
use support::images::*;
use support::*;

const EXIT_PARTIAL: i32 = 3;

type Tags = BTreeSet<(String, String, String)>;

/// The source's extra repositories, beside the fixture: what the catch-up is about.
struct LiveSource {
    fixture: WrittenFixture,
}

impl LiveSource {
    fn new() -> LiveSource {
        let fixture = written_fixture();
        let r = &fixture.registry;
        for (repository, tag) in [
            ("app/keep", "v1"),
            ("app/keep", "v2"),
            ("app/move", "latest"),
            ("app/del", "old"),
            ("app/del", "stay"),
            ("app/empty", "only"),
            ("app/third", "t"),
            ("app/vanish", "x"),
        ] {
            push_image(r, repository, Some(tag), Kind::Oci, &format!("{repository}:{tag}"));
        }
        LiveSource { fixture }
    }

    fn root(&self) -> &str {
        self.fixture.root()
    }

    fn registry(&self) -> &Registry {
        &self.fixture.registry
    }

    /// The pushes and deletions of a registry in use, between two runs: 2 new tags (one in a new
    /// repository), 2 re-pointed, 3 gone (a tag deleted, a repository emptied, one removed from storage).
    fn change(&self) {
        let r = self.registry();
        push_image(r, "app/keep", Some("v3"), Kind::Oci, "app/keep:v3");
        push_image(r, "app/new", Some("n"), Kind::Oci, "app/new:n");
        push_image(r, "app/move", Some("latest"), Kind::Oci, "app/move:latest, moved");
        push_image(r, "app/third", Some("t"), Kind::Oci, "app/third:t, moved");
        for (repository, tag) in [("app/del", "old"), ("app/empty", "only")] {
            let digest = r.head_manifest(repository, tag).unwrap();
            r.delete_manifest(repository, &digest);
        }
        std::fs::remove_dir_all(Path::new(self.root()).join("docker/registry/v2/repositories/app/vanish")).unwrap();
    }
}

/// The tags that are gone from the source after `LiveSource::change`.
const GONE: [(&str, &str); 3] = [("app/del", "old"), ("app/empty", "only"), ("app/vanish", "x")];

fn harbor_tags(harbor: &HarborEmulator) -> Tags {
    let state = harbor.state.lock().unwrap();
    state.tags.iter().map(|((repository, tag), digest)| (repository.clone(), tag.clone(), digest.clone())).collect()
}

fn sync_into(harbor: &HarborEmulator, args: &[&str]) -> std::process::Output {
    let mut all = vec!["sync"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[&harbor.url, "--plain-http"]);
    rehydrate_with_env(&all, &harbor.env_admin())
}

/// `sync ARGS` into the test's Harbor (the emulator or a real one), with the test's mapping.
fn sync_into_test_harbor(harbor: &TestHarbor, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = vec!["sync".into()];
    all.extend(args.iter().map(|s| s.to_string()));
    all.extend([harbor.url.clone(), "--plain-http".into()]);
    all.extend(harbor.mapping_args());
    rehydrate_with_env(&all.iter().map(String::as_str).collect::<Vec<_>>(), &harbor.env_admin())
}

/// Requests the Harbor saw for a source tag's manifest path (HEAD, GET, PUT).
fn manifest_requests(harbor: &TestHarbor, repository: &str, tag: &str) -> u64 {
    harbor.requests_ending(&format!(" /v2/{}/manifests/{tag}", harbor.target_repository(repository)))
}

/// The JSON objects of a `--log-format json` run's standard error.
fn json_lines(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr).lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

fn summary_counts(lines: &[Value]) -> BTreeMap<String, u64> {
    let summary = lines.iter().rev().find(|line| line.get("new").is_some()).expect("a JSON summary");
    ["new", "moved", "unchanged", "left_alone", "gone", "deleted"]
        .iter()
        .map(|key| (key.to_string(), summary[key].as_u64().unwrap()))
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The third party: someone else's push of the same tag into the target (another source, another
/// journal, --override), so that the target's tag no longer holds what rehydrate set.
fn third_party_repoints(harbor: &TestHarbor) -> String {
    let dir = tempfile::tempdir().unwrap();
    let other = Registry::start(dir.path());
    let digest = push_image(&other, "app/third", Some("t"), Kind::Docker, "the third party's own image");
    let root = other.root.to_str().unwrap().to_string();
    let output = sync_into_test_harbor(harbor, &[&root, "--no-journal", "--override", "--include", "app/third"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    digest
}

#[test]
fn a_catch_up_follows_the_live_source_exactly_and_deletes_only_when_asked() {
    let source = LiveSource::new();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(harbor_dir.path(), "catch_up");
    let journal_dir = tempfile::tempdir().unwrap();
    let journal = journal_dir.path().join("journal.redb");
    let journal = journal.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![source.root(), "--journal", journal, "--log-format", "json"];
        args.extend_from_slice(extra);
        sync_into_test_harbor(&harbor, &args)
    };

    let first = run(&[]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let before = source.registry().inventory();
    assert_eq!(harbor.tags(), harbor.mapped(&before));
    let unchanged: Vec<(String, String, String)> = before
        .iter()
        .filter(|(repository, tag, _)| {
            !GONE.contains(&(repository.as_str(), tag.as_str()))
                && !["app/move", "app/third"].contains(&repository.as_str())
        })
        .cloned()
        .collect();

    source.change();
    let third_party = third_party_repoints(&harbor);
    let requests_before: Vec<u64> = unchanged.iter().map(|(r, t, _)| manifest_requests(&harbor, r, t)).collect();
    let accepted_before = harbor.manifests_accepted();

    // The catch-up, without --delete: exit partial (the third party's tag is left alone and reported).
    let second = run(&[]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(EXIT_PARTIAL), "{stderr}");
    assert!(stderr.contains("pass 2 catches up"), "{stderr}");
    let lines = json_lines(&second.stderr);
    let expected = [
        ("new", 2),
        ("moved", 1),
        ("unchanged", unchanged.len() as u64),
        ("left_alone", 1),
        ("gone", 3),
        ("deleted", 0),
    ];
    assert_eq!(summary_counts(&lines), counts(&expected), "{stderr}");
    let gone_lines: BTreeSet<(String, String)> = lines
        .iter()
        .filter(|line| line["gone"] == true)
        .map(|line| (line["repository"].as_str().unwrap().to_string(), line["tag"].as_str().unwrap().to_string()))
        .collect();
    let gone: BTreeSet<(String, String)> =
        GONE.iter().map(|(r, t)| (harbor.target_repository(r), t.to_string())).collect();
    assert_eq!(gone_lines, gone, "one JSON line per gone tag");
    let left_alone = format!("app/third:t -> {}:t: the target's tag points at", harbor.target_repository("app/third"));
    assert!(stderr.contains(&left_alone), "{stderr}");

    // Unchanged tags cost no request at the target; nothing was pushed twice.
    let requests_after: Vec<u64> = unchanged.iter().map(|(r, t, _)| manifest_requests(&harbor, r, t)).collect();
    assert_eq!(requests_before, requests_after, "no request for an unchanged tag");
    for (path, count) in harbor.manifests_accepted() {
        let earlier = accepted_before.get(&path).copied().unwrap_or(0);
        assert!(count - earlier <= 1, "{path} pushed {} times in one run", count - earlier);
    }

    // The target: the source, plus the gone tags (kept), with the third party's tag untouched.
    let now = source.registry().inventory();
    let mut expected_target: Tags = now.iter().filter(|(r, _, _)| r != "app/third").cloned().collect();
    expected_target.extend(before.iter().filter(|(r, t, _)| GONE.contains(&(r.as_str(), t.as_str()))).cloned());
    expected_target.insert(("app/third".into(), "t".into(), third_party.clone()));
    assert_eq!(harbor.tags(), harbor.mapped(&expected_target));

    // With --delete: exactly the source, still without touching the third party's tag.
    let third = run(&["--delete"]);
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert_eq!(third.status.code(), Some(EXIT_PARTIAL), "{stderr}");
    let expected = [
        ("new", 0),
        ("moved", 0),
        ("unchanged", unchanged.len() as u64 + 3),
        ("left_alone", 1),
        ("gone", 3),
        ("deleted", 3),
    ];
    assert_eq!(summary_counts(&json_lines(&third.stderr)), counts(&expected), "{stderr}");
    let mut exact: Tags = now.iter().filter(|(r, _, _)| r != "app/third").cloned().collect();
    exact.insert(("app/third".into(), "t".into(), third_party));
    assert_eq!(harbor.tags(), harbor.mapped(&exact));
    let deleted = harbor.tags_deleted();
    assert_eq!(deleted.keys().cloned().collect::<BTreeSet<_>>(), gone, "deleted through Harbor's tag API");
    assert!(deleted.values().all(|n| *n == 1), "each once: {deleted:?}");

    // Nothing changed since: nothing gone, nothing pushed.
    let fourth = run(&["--delete"]);
    let expected = [
        ("new", 0),
        ("moved", 0),
        ("unchanged", unchanged.len() as u64 + 3),
        ("left_alone", 1),
        ("gone", 0),
        ("deleted", 0),
    ];
    assert_eq!(summary_counts(&json_lines(&fourth.stderr)), counts(&expected));

    let status = rehydrate(&["status", "--journal", journal]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains("pass 4 finished: the next run catches up"), "{said}");
}

#[test]
fn deleting_from_a_plain_registry_spares_a_manifest_another_tag_points_at() {
    let fixture = written_fixture();
    let r = &fixture.registry;
    let shared = push_image(r, "app/shared", Some("a"), Kind::Oci, "shared");
    push_image(r, "app/shared", Some("b"), Kind::Oci, "shared");
    push_image(r, "app/solo", Some("x"), Kind::Oci, "solo");
    push_image(r, "app/solo", Some("y"), Kind::Oci, "solo-y");
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let journal_dir = tempfile::tempdir().unwrap();
    let journal = journal_dir.path().join("j.redb");
    let journal = journal.to_str().unwrap();
    let sync = |extra: &[&str]| {
        let mut args = vec!["sync", fixture.root(), &target.url, "--plain-http", "--journal", journal];
        args.extend_from_slice(extra);
        rehydrate(&args)
    };
    assert!(sync(&[]).status.success());

    // At the source: tag `a` removed by hand (its folder), `x` deleted through the API.
    std::fs::remove_dir_all(
        Path::new(fixture.root()).join("docker/registry/v2/repositories/app/shared/_manifests/tags/a"),
    )
    .unwrap();
    let solo = r.head_manifest("app/solo", "x").unwrap();
    r.delete_manifest("app/solo", &solo);

    let output = sync(&["--delete"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("2 gone at the source, 1 deleted"), "{stderr}");
    assert!(stderr.contains("app/shared:a"), "{stderr}");
    assert!(stderr.contains("not deleted: tag b points at the same manifest"), "{stderr}");
    assert_eq!(target.head_manifest("app/shared", "a"), Some(shared.clone()), "a shares its manifest with b");
    assert_eq!(target.head_manifest("app/shared", "b"), Some(shared));
    assert_eq!(target.head_manifest("app/solo", "x"), None, "deleted by digest");
    assert!(target.head_manifest("app/solo", "y").is_some());
}

#[test]
fn a_catch_up_killed_in_the_middle_finishes_without_pushing_anything_twice() {
    let source = LiveSource::new();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = HarborEmulator::start(harbor_dir.path());
    let journal_dir = tempfile::tempdir().unwrap();
    let journal = journal_dir.path().join("journal.redb");
    let command = || harbor.sync_command(source.root(), &journal, &["--push-concurrency", "1"]);
    assert!(command().output().unwrap().status.success());

    // Many new tags since: the catch-up has work enough to be killed in the middle of it.
    source.change();
    for n in 0..40 {
        push_image(
            source.registry(),
            &format!("app/wave{}", n % 8),
            Some(&format!("t{n}")),
            Kind::Oci,
            &format!("w{n}"),
        );
    }
    let accepted = || harbor.state.lock().unwrap().manifests_accepted.len();
    let start = accepted();
    assert!(run_and_kill(command(), Duration::from_secs(60), || accepted() >= start + 15), "killed in the middle");
    assert!(accepted() < start + 42, "killed before the end of the catch-up");

    let last = command().output().unwrap();
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success(), "{stderr}");
    assert!(stderr.contains("resuming pass 2"), "{stderr}");
    // The moved tags were accepted once at each digest: twice is right for them.
    let mut twice = harbor.state.lock().unwrap().pushed_twice();
    twice.retain(|(repository, _)| repository != "app/move" && repository != "app/third");
    assert!(twice.is_empty(), "pushed twice: {twice:?}");
    let mut expected = source.registry().inventory();
    expected.extend(harbor_tags(&harbor).into_iter().filter(|(r, t, _)| GONE.contains(&(r.as_str(), t.as_str()))));
    assert_eq!(harbor_tags(&harbor), expected, "the source, plus the gone tags kept");
}

#[test]
fn shards_catch_up_independently_each_with_its_own_journal() {
    let source = LiveSource::new();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = HarborEmulator::start(harbor_dir.path());
    let journals = tempfile::tempdir().unwrap();
    let run_shards = |extra: &[&str]| -> Vec<BTreeMap<String, u64>> {
        (0..3)
            .map(|k| {
                let shard = format!("{k}/3");
                let journal = journals.path().join(format!("shard-{k}.redb"));
                let mut args = vec![source.root(), "--shard", &shard, "--log-format", "json"];
                args.extend_from_slice(&["--journal", journal.to_str().unwrap()]);
                args.extend_from_slice(extra);
                let output = sync_into(&harbor, &args);
                assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
                summary_counts(&json_lines(&output.stderr))
            })
            .collect()
    };
    run_shards(&[]);
    assert_eq!(harbor_tags(&harbor), source.registry().inventory());
    let before = source.registry().inventory();
    source.change();
    let per_shard = run_shards(&["--delete"]);
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for counts in &per_shard {
        for (key, value) in counts {
            *total.entry(key.clone()).or_default() += value;
        }
    }
    let unchanged = before.len() as u64 - 3 - 2;
    let expected = [("new", 2), ("moved", 2), ("unchanged", unchanged), ("left_alone", 0), ("gone", 3), ("deleted", 3)];
    assert_eq!(total, counts(&expected), "per shard: {per_shard:?}");
    assert_eq!(harbor_tags(&harbor), source.registry().inventory(), "the shards together: exactly the source");

    // Shard 0's journal given to shard 1 by mistake: shard 0's repositories are not in shard 1's listing,
    // which must not make them look gone (and deleted).
    let journal = journals.path().join("shard-0.redb");
    let args =
        [source.root(), "--shard", "1/3", "--log-format", "json", "--delete", "--journal", journal.to_str().unwrap()];
    let output = sync_into(&harbor, &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("its last pass listed another source or shard"), "{stderr}");
    assert_eq!(summary_counts(&json_lines(&output.stderr))["deleted"], 0, "{stderr}");
    assert_eq!(harbor_tags(&harbor), source.registry().inventory(), "nothing deleted");
}
