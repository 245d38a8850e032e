//! Harbor restarting under a sync: its core, then its database. The run rides it out or stops cleanly
//! (exit 0 or 3, never a crash); the same command then completes; no manifest is pushed twice and
//! nothing is lost (verify agrees). Against the emulator a restart is 3 s in which every request is
//! answered 503; against a real Harbor, the commands `REHYDRATE_TEST_HARBOR_RESTART_CORE` and
//! `REHYDRATE_TEST_HARBOR_RESTART_DB` do it (`scripts/test-against-harbor.sh`).

mod support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rehydrate::synth::{generate, SynthSpec};
use support::harbor_target::{exclusive, TestHarbor};
use support::*;

/// Manifests Harbor accepted into `project` so far.
fn accepted_in(harbor: &TestHarbor, project: &str) -> u64 {
    let prefix = format!("/v2/{project}/");
    harbor.manifests_accepted().iter().filter(|(path, _)| path.starts_with(&prefix)).map(|(_, n)| n).sum()
}

fn sync_through_a_restart(harbor: &TestHarbor, restart: fn(&TestHarbor) -> bool, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let spec = SynthSpec { repositories: 150, tags_per_repository: 1, images: 20, seed: 7, ..SynthSpec::default() };
    let truth = generate(&source, &spec, 2).unwrap();
    let project = harbor.project_name(what);
    let journal = dir.path().join("journal");
    let args = [
        "sync",
        source.to_str().unwrap(),
        &harbor.url,
        "--plain-http",
        "--journal",
        journal.to_str().unwrap(),
        "--dest-namespace",
        &project,
    ];

    let mut first =
        rehydrate_command(&args, &harbor.env_admin()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while accepted_in(harbor, &project) < 30 && Instant::now() < deadline && first.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(first.try_wait().unwrap().is_none(), "the {what} restart lands in the middle of the sync");
    let restarted = restart(harbor);
    let first = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(matches!(first.status.code(), Some(0 | 3)), "rode it out or stopped cleanly: {stderr}");
    let summary = stderr.lines().find(|line| line.starts_with("sync finished")).unwrap_or_default();
    eprintln!("{what} restarted: the first run exited {:?}: {summary}", first.status.code());
    if !restarted {
        return;
    }
    if !harbor.is_real() {
        let outage = harbor.proxy.state.lock().unwrap().injected.get("outage 503").copied().unwrap_or(0);
        assert!(outage > 0, "requests met the restart: {stderr}");
    }

    let second = rehydrate_with_env(&args, &harbor.env_admin());
    assert!(second.status.success(), "the same command completes: {}", String::from_utf8_lossy(&second.stderr));
    let expected: BTreeSet<(String, String, String)> =
        truth.iter().map(|t| (format!("{project}/{}", t.repository), t.tag.clone(), t.digest.clone())).collect();
    let landed: BTreeSet<_> =
        harbor.tags().into_iter().filter(|(r, _, _)| r.starts_with(&format!("{project}/"))).collect();
    assert_eq!(landed, expected, "nothing lost");
    let twice: Vec<_> = harbor
        .manifests_accepted()
        .into_iter()
        .filter(|(path, n)| path.starts_with(&format!("/v2/{project}/")) && *n > 1)
        .collect();
    assert!(twice.is_empty(), "no manifest pushed twice: {twice:?}");
    let verify = rehydrate_with_env(
        &["verify", source.to_str().unwrap(), &harbor.url, "--plain-http", "--dest-namespace", &project],
        &harbor.env_admin(),
    );
    assert!(verify.status.success(), "verify agrees: {}", String::from_utf8_lossy(&verify.stderr));
}

#[test]
fn a_sync_through_harbor_restarts_completes_without_pushing_twice() {
    let _whole = exclusive();
    let storage = tempfile::tempdir().unwrap();
    let harbor = TestHarbor::start(storage.path(), "restarts");
    sync_through_a_restart(&harbor, TestHarbor::restart_core, "core");
    sync_through_a_restart(&harbor, TestHarbor::restart_database, "database");
}
