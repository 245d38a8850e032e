//! Into a Harbor full of policies (the emulator, following Harbor v2.15.2's middlewares): in one sync,
//! beside a healthy project, a project over its storage quota, an immutable rule with a tag already
//! there (same digest) and a re-pointed one, a proxy-cache project, a content-trust project, and a
//! robot pushing outside its projects. Each refused item is named with its class, counted by class,
//! never asked again; the healthy project lands and verifies; after the quota is raised the same command
//! completes that project. Read-only mode switched on in the middle of a run stops it at once, with one
//! message, and the same command later finishes with nothing pushed twice.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::harbor_target::{self, TestHarbor};
use support::images::*;
use support::*;

const EXIT_PARTIAL: i32 = 3;

fn env_of(user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![("REHYDRATE_TARGET_USERNAME", user.to_string()), ("REHYDRATE_TARGET_PASSWORD", password.to_string())]
}

/// The JSON summary's refusals by class.
fn refusals(stderr: &[u8]) -> BTreeMap<String, u64> {
    let summary = String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line.get("refusals").is_some())
        .expect("a JSON summary");
    summary["refusals"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// A layer of `len` bytes that no other image shares.
fn push_sized(registry: &Registry, repository: &str, tag: &str, seed: u64, len: usize) -> String {
    push_image_with_layer(registry, repository, Some(tag), Kind::Oci, &format!("{repository}:{tag}"), noise(seed, len))
        .0
}

/// Requests that reached Harbor's `/v2/` under `project`, and their answers (through the counting proxy).
fn answered(harbor: &TestHarbor, project: &str, status: u16) -> u64 {
    let under = format!(" /v2/{project}/");
    harbor
        .answers()
        .iter()
        .filter(|(k, _)| k.contains(&under) && k.ends_with(&format!(" {status}")))
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn every_refusal_by_policy_is_handled_by_its_class() {
    let _whole_harbor = harbor_target::shared();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(harbor_dir.path(), "policies");
    let [team, small, frozen, cache, signed, other] =
        ["team", "small", "frozen", "cache", "signed", "other"].map(|name| harbor.project_name(name));
    let repo = |project: &str, name: &str| format!("{project}/{name}");

    let source_dir = tempfile::tempdir().unwrap();
    let source = Registry::start(source_dir.path());
    for tag in ["v1", "v2"] {
        push_image(&source, &repo(&team, "app"), Some(tag), Kind::Oci, &format!("team {tag}"));
    }
    for (n, name) in ["a", "b", "c"].iter().enumerate() {
        push_sized(&source, &repo(&small, name), "v1", n as u64 + 1, 2000);
    }
    push_image(&source, &repo(&frozen, "app"), Some("v1"), Kind::Oci, "frozen v1");
    push_image(&source, &repo(&frozen, "app"), Some("v2"), Kind::Oci, "frozen v2, re-pointed at the source");
    push_image(&source, &repo(&cache, "app"), Some("v1"), Kind::Oci, "cache");
    push_image(&source, &repo(&signed, "app"), Some("v1"), Kind::Oci, "signed");
    push_image(&source, &repo(&other, "app"), Some("v1"), Kind::Oci, "other");
    let root = source.root.to_str().unwrap().to_string();

    // Before the policies: frozen and signed already hold tags (frozen/app:v2 at another digest).
    let earlier_dir = tempfile::tempdir().unwrap();
    let earlier = Registry::start(earlier_dir.path());
    push_image(&earlier, &repo(&frozen, "app"), Some("v1"), Kind::Oci, "frozen v1");
    push_image(&earlier, &repo(&frozen, "app"), Some("v2"), Kind::Oci, "frozen v2, as it was");
    push_image(&earlier, &repo(&signed, "app"), Some("v1"), Kind::Oci, "signed");
    let earlier_root = earlier.root.to_str().unwrap().to_string();
    let pre =
        rehydrate_with_env(&["sync", &earlier_root, &harbor.url, "--plain-http", "--no-journal"], &harbor.env_admin());
    assert!(pre.status.success(), "{}", String::from_utf8_lossy(&pre.stderr));
    harbor.proxy_cache_project(&cache, &source.url);
    harbor.content_trust(&signed);
    harbor.immutable_rule(&frozen, "v*");
    harbor.set_quota(&small, 3000);
    // A robot's rights name existing projects.
    harbor.ensure_project_for_robot(&team);
    let (robot_name, robot_secret) =
        harbor.limited_robot(&[team.clone(), small.clone(), frozen.clone(), cache.clone(), signed.clone()]);
    let answers_before = harbor.answers().len();

    let robot = env_of(&robot_name, &robot_secret);
    let args = ["sync", &root, &harbor.url, "--plain-http", "--override", "--no-journal", "--push-concurrency", "1"];
    let mut json_args = args.to_vec();
    json_args.extend(["--log-format", "json"]);
    let run = rehydrate_with_env(&json_args, &robot);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(EXIT_PARTIAL), "{stderr}");
    let expected = [("quota", 2), ("immutable", 1), ("read_only", 0), ("proxy_cache", 1), ("permission", 1)];
    assert_eq!(refusals(&run.stderr), counts(&expected), "{stderr}");

    // Each refused item is named with its class.
    for (item, class) in [
        (repo(&frozen, "app:v2"), "immutable"),
        (repo(&cache, "app:v1"), "proxy_cache"),
        (repo(&other, "app:v1"), "permission"),
    ] {
        assert!(stderr.contains(&format!("{item} -> {item}: refused by Harbor ({class})")), "{item}: {stderr}");
    }
    assert!(stderr.contains("a robot needs Harbor's 'repository:"), "the permission refusal names the right: {stderr}");
    assert!(stderr.contains("is a proxy-cache project"), "{stderr}");
    assert!(
        stderr.contains("was refused earlier: over its storage quota,") && stderr.contains("were missing"),
        "{stderr}"
    );
    let blocked = repo(&signed, "app:v1");
    assert!(stderr.contains(&format!("{blocked} -> {blocked}: present, pulls blocked by policy")), "{stderr}");
    // Nothing Harbor refused by policy was asked again (a 401 carries a challenge, answered once with a
    // new token), and the proxy-cache project was never pushed to: the project API told it first.
    let answers = harbor.answers();
    assert!(answers.len() > answers_before);
    let repeated: Vec<_> = answers
        .iter()
        .filter(|(k, n)| (k.ends_with(" 403") || k.ends_with(" 412")) && **n > 1 || k.ends_with(" 401") && **n > 2)
        .collect();
    assert!(repeated.is_empty(), "asked again after a refusal: {repeated:?}");
    assert!(answers.keys().all(|k| !k.contains(&format!(" /v2/{cache}/"))), "no request into the proxy cache");
    assert_eq!(answered(&harbor, &small, 403), 1, "the third tag of the full project was not even tried");
    let tags = harbor.tags();
    let small_tags: Vec<_> = tags.iter().filter(|(r, _, _)| r.starts_with(&format!("{small}/"))).collect();
    assert_eq!(small_tags.len(), 1, "one image fits the quota: {small_tags:?}");
    assert!(harbor.usage(&small) <= 3000);
    let frozen_v2 = tags.iter().find(|(r, t, _)| r == &repo(&frozen, "app") && t == "v2").map(|(_, _, d)| d.clone());
    assert_ne!(frozen_v2, source.head_manifest(&repo(&frozen, "app"), "v2"), "the immutable tag kept its digest");

    // The healthy project is complete and verifies; verify reads the signed one through the API.
    let include = format!("{{{team},{signed}}}/**");
    let verify =
        rehydrate_with_env(&["verify", &root, &harbor.url, "--plain-http", "--include", &include], &harbor.env_admin());
    let verified = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{verified}");
    assert!(
        verified.contains("3 match, 0 do not; 1 of the matching present with pulls blocked by policy"),
        "{verified}"
    );

    // The quota raised, the same command completes the project.
    harbor.set_quota(&small, 1 << 20);
    let again = rehydrate_with_env(&json_args, &robot);
    let expected = [("quota", 0), ("immutable", 1), ("read_only", 0), ("proxy_cache", 1), ("permission", 1)];
    assert_eq!(refusals(&again.stderr), counts(&expected), "{}", String::from_utf8_lossy(&again.stderr));
    let small_tags = harbor.tags().iter().filter(|(r, _, _)| r.starts_with(&format!("{small}/"))).count();
    assert_eq!(small_tags, 3);
}

#[test]
fn read_only_mode_stops_the_run_at_once_and_the_same_command_finishes_later() {
    // Read-only mode is the whole Harbor's: no other test of this binary runs meanwhile.
    let _whole_harbor = harbor_target::exclusive();
    let fixture = written_fixture();
    for n in 0..30 {
        push_image(
            &fixture.registry,
            &format!("bulk/r{}", n % 10),
            Some(&format!("t{n}")),
            Kind::Oci,
            &format!("bulk {n}"),
        );
    }
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(harbor_dir.path(), "read_only");
    let journal_dir = tempfile::tempdir().unwrap();
    let journal = journal_dir.path().join("j.redb");
    let mut args: Vec<String> =
        ["sync", fixture.root(), &harbor.url, "--plain-http", "--push-concurrency", "2"].map(String::from).to_vec();
    args.extend(harbor.mapping_args());
    args.extend(["--journal".to_string(), journal.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let command = || rehydrate_command(&args, &harbor.env_admin());
    let mut child = command().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let accepted = || harbor.manifests_accepted().len();
    while accepted() < 10 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before read-only mode");
        std::thread::sleep(Duration::from_millis(2));
    }
    harbor.set_read_only(true);
    let requests_then = harbor.requests();
    let output = child.wait_with_output().unwrap();
    harbor.set_read_only(false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_PARTIAL), "{stderr}");
    assert_eq!(stderr.matches("Harbor is in read-only mode").count(), 1, "one clear message: {stderr}");
    let after = harbor.requests() - requests_then;
    // The tasks in flight (2, and one more taken before the first refusal is seen) stop at their first
    // refused writes (an image's two blobs go up at once, so two each at most): no task started after
    // that asks anything. Before its writes a task may read (a token, the tag, its blobs), so each is
    // allowed a handful of requests.
    let refused_writes = harbor.refused_writes(403);
    assert!((1..=3 * 2).contains(&refused_writes), "{refused_writes} writes refused: {stderr}");
    assert!(after <= 3 * 6, "{after} requests after read-only mode was switched on: {stderr}");
    let landed = accepted();
    assert!(landed < FIXTURE_TAGS + 30, "stopped before the end");
    let status = rehydrate(&["status", "--journal", journal.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("stopped part-way: the next run resumes it"));

    let last = command().output().unwrap();
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success(), "{stderr}");
    assert!(stderr.contains("resuming pass 1"), "{stderr}");
    let twice: Vec<(String, u64)> = harbor.manifests_accepted().into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "pushed twice: {twice:?}");
    let mut expected = fixture.registry.inventory();
    expected.retain(|(r, _, _)| !r.is_empty());
    assert_eq!(harbor.tags(), harbor.mapped(&expected));
}
