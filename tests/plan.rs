//! `rehydrate plan`: per target project, what a sync would put there, before a run of days. Checked
//! against the Harbor emulator: names Harbor refuses come with a mapping that works, a `--flatten` that
//! maps two repositories onto one is a collision, quotas and proxy-cache projects are read from Harbor's
//! API, the plan writes nothing, and the bytes it gives each project equal what Harbor's quota counts
//! after the real sync.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use support::harbor::HarborEmulator;
use support::harbor_target::TestHarbor;
use support::images::*;
use support::*;

const EXIT_PARTIAL: i32 = 3;

fn plan(args: &[&str], harbor: &HarborEmulator) -> (Option<i32>, Value, String) {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--plain-http", "--format", "json"]);
    let output = rehydrate_with_env(&all, &harbor.env_admin());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let document = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (output.status.code(), document, stderr)
}

fn projects(document: &Value) -> BTreeMap<String, Value> {
    document["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["project"].as_str().unwrap().to_string(), p.clone()))
        .collect()
}

#[test]
fn a_plan_names_what_harbor_would_refuse_and_counts_bytes_as_its_quota_does() {
    let fixture = written_fixture();
    for repository in ["org--x/app", "my__org/app", "alpine"] {
        push_image(&fixture.registry, repository, Some("v1"), Kind::Oci, repository);
    }
    let root = fixture.root();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = HarborEmulator::start(harbor_dir.path());

    // Names Harbor refuses, each with a mapping that works.
    let (code, document, stderr) = plan(&[root, &harbor.url], &harbor);
    assert_eq!(code, Some(EXIT_PARTIAL), "{stderr}");
    let refused: BTreeMap<String, String> = document["refused_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["source"].as_str().unwrap().to_string(), r["suggestion"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        refused.keys().cloned().collect::<BTreeSet<_>>(),
        ["alpine", "my__org/app", "org--x/app"].map(String::from).into()
    );
    assert!(refused["org--x/app"].contains("--dest-namespace org-x --flatten 1"), "{refused:?}");
    assert!(refused["my__org/app"].contains("--dest-namespace my_org --flatten 1"), "{refused:?}");
    assert!(refused["alpine"].contains("--dest-namespace library"), "{refused:?}");
    assert_eq!(document["totals"]["fits"], false);
    {
        let state = harbor.state.lock().unwrap();
        assert!(state.projects.is_empty() && state.manifests_accepted.is_empty(), "a plan writes nothing");
        let writes: u64 = state
            .requests
            .iter()
            .filter(|(k, _)| !k.starts_with("GET") && !k.starts_with("HEAD"))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(writes, 0, "only reads: {:?}", state.requests);
    }

    // A flattening that maps two repositories onto one: each collision is named.
    let (code, document, _) = plan(&[root, &harbor.url, "--dest-namespace", "flat", "--flatten", "-1"], &harbor);
    assert_eq!(code, Some(EXIT_PARTIAL));
    let collisions: BTreeSet<(String, BTreeSet<String>)> = document["collisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let sources = c["sources"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
            (c["target"].as_str().unwrap().to_string(), sources)
        })
        .collect();
    assert!(
        collisions
            .iter()
            .any(|(target, sources)| target == "flat/a" && sources.contains("nest/a") && sources.contains("sort/a")),
        "{collisions:?}"
    );
    assert!(collisions.iter().any(|(target, _)| target == "flat/b"), "nest/a/b and sort/a/b: {collisions:?}");

    // Quota and proxy cache, read from Harbor: a project over its quota does not fit.
    let valid = ["--exclude", "{alpine,org--x/**,my__org/**}"];
    harbor.add_project("library");
    harbor.add_project("sort");
    {
        let mut state = harbor.state.lock().unwrap();
        state.quotas.insert("library".into(), 100);
        state.proxy_cache.insert("sort".into());
    }
    let mut args = vec![root, harbor.url.as_str()];
    args.extend_from_slice(&valid);
    let (code, document, stderr) = plan(&args, &harbor);
    assert_eq!(code, Some(EXIT_PARTIAL), "{stderr}");
    let by_project = projects(&document);
    let library = &by_project["library"];
    assert_eq!(
        (library["exists"].as_bool(), library["quota_limit"].as_u64(), library["fits"].as_bool()),
        (Some(true), Some(100), Some(false))
    );
    assert_eq!(by_project["sort"]["proxy_cache"], true);
    assert_eq!(by_project["team-a"]["exists"], false);
    assert_eq!(by_project["team-a"]["fits"], true);

    // The quotas lifted and the proxy cache gone, it fits; after the real sync, Harbor's quota usage of
    // every project equals the plan's bytes.
    {
        let mut state = harbor.state.lock().unwrap();
        state.quotas.clear();
        state.proxy_cache.clear();
    }
    let (code, document, stderr) = plan(&args, &harbor);
    assert_eq!(code, Some(0), "{stderr}");
    let planned = projects(&document);
    let mut sync = vec!["sync", root, harbor.url.as_str(), "--plain-http", "--no-journal"];
    sync.extend_from_slice(&valid);
    let synced = rehydrate_with_env(&sync, &harbor.env_admin());
    assert!(synced.status.success(), "{}", String::from_utf8_lossy(&synced.stderr));
    let state = harbor.state.lock().unwrap();
    for (project, plan) in &planned {
        assert_eq!(
            plan["bytes"].as_u64().unwrap(),
            state.usage(project),
            "project {project}: plan against Harbor's quota"
        );
    }
    let tags: u64 = planned.values().map(|p| p["tags"].as_u64().unwrap()).sum();
    assert_eq!(tags as usize, FIXTURE_TAGS);
}

#[test]
fn against_a_plain_registry_a_plan_has_no_projects_to_check() {
    let fixture = written_fixture();
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let output = rehydrate(&["plan", fixture.root(), &target.url, "--plain-http"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("{FIXTURE_TAGS} tags")) && stdout.contains("it fits"), "{stdout}");
    assert!(!stdout.contains("quota"), "a plain registry has no quotas: {stdout}");
    assert!(target.catalog().is_empty(), "nothing written");
}

/// The same promises against whichever Harbor the suite is given (a real one with
/// `REHYDRATE_TEST_HARBOR_URL`): a plan writes nothing, reads a project's quota, and the bytes it gives
/// each project are what that Harbor's quota counts after the real sync.
#[test]
fn the_plans_bytes_are_what_the_harbors_quota_counts() {
    let fixture = written_fixture();
    let root = fixture.root();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(harbor_dir.path(), "plan");
    let with_mapping = |verb: &'static str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [verb, root, &harbor.url, "--plain-http"].map(String::from).to_vec();
        args.extend(harbor.mapping_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rehydrate_with_env(&args, &harbor.env_admin())
    };
    let plan_of = |output: &std::process::Output| -> BTreeMap<String, Value> {
        let stderr = String::from_utf8_lossy(&output.stderr);
        projects(&serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}")))
    };

    // A quota one byte short on one project that exists: that project does not fit.
    let first = plan_of(&run(with_mapping("plan", &["--format", "json"])));
    let project = first.keys().next().unwrap().clone();
    let short = first[&project]["bytes"].as_u64().unwrap() - 1;
    harbor.set_quota(&project, short);
    let output = run(with_mapping("plan", &["--format", "json"]));
    assert_eq!(output.status.code(), Some(EXIT_PARTIAL), "{}", String::from_utf8_lossy(&output.stderr));
    let planned = plan_of(&output);
    assert_eq!(
        (planned[&project]["exists"].as_bool(), planned[&project]["quota_limit"].as_u64()),
        (Some(true), Some(short))
    );
    assert_eq!(planned[&project]["fits"], false);
    let writes: u64 = harbor
        .answers()
        .iter()
        .filter(|(answer, _)| !answer.starts_with("GET ") && !answer.starts_with("HEAD "))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(writes, 0, "a plan writes nothing: {:?}", harbor.answers());

    // The quota lifted, it fits; after the sync, each project's usage equals its bytes.
    harbor.lift_quota(&project);
    let output = run(with_mapping("plan", &["--format", "json"]));
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let planned = plan_of(&output);
    let synced = run(with_mapping("sync", &["--no-journal"]));
    assert!(synced.status.success(), "{}", String::from_utf8_lossy(&synced.stderr));
    for (project, plan) in &planned {
        assert_eq!(plan["bytes"].as_u64().unwrap(), harbor.usage(project), "project {project}: plan against quota");
    }
    let tags: u64 = planned.values().map(|p| p["tags"].as_u64().unwrap()).sum();
    assert_eq!(tags as usize, FIXTURE_TAGS);
}
