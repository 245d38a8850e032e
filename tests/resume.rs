//! A sync killed part-way (SIGKILL, at moments it does not choose) and started again ends with a
//! verified target, and no finished tag is ever pushed twice: the journal and the target's own state
//! carry the run across the kills.

mod support;

use std::time::Duration;

use rehydrate::synth::{generate, SynthSpec};
use support::harbor::HarborEmulator;
use support::*;

#[test]
fn killed_runs_resume_without_pushing_anything_twice() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        repositories: 240,
        tags_per_repository: 1,
        images: 40,
        layer_bytes: 64 << 10,
        ..SynthSpec::default()
    };
    let truth: Vec<_> =
        generate(dir.path(), &spec, 2).unwrap().into_iter().filter(|t| !t.repository.starts_with("org--")).collect();
    let root = dir.path().to_str().unwrap();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = HarborEmulator::start(harbor_dir.path());
    let journal = tempfile::tempdir().unwrap();
    let journal_path = journal.path().join("journal.redb");
    let command = || harbor.sync_command(root, &journal_path, &["--exclude", "org--*/**", "--push-concurrency", "2"]);
    let accepted = || harbor.state.lock().unwrap().tags.len();

    // Three runs killed at growing progress: 10%, 35%, 60% of the tags on the target.
    for share in [0.10, 0.35, 0.60] {
        let command = command();
        let goal = (truth.len() as f64 * share) as usize;
        assert!(
            run_and_kill(command, Duration::from_secs(60), || accepted() >= goal),
            "killed before the end ({share})"
        );
        assert!(accepted() < truth.len(), "killed before the end ({share})");
    }

    let last = command().output().unwrap();
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success(), "{stderr}");
    // The journal carried the work across the kills: finished repositories are not even listed again.
    assert!(
        stderr.contains("repositories were finished by an earlier run"),
        "finished repositories were not listed again: {stderr}"
    );

    let pushed_twice = harbor.state.lock().unwrap().pushed_twice();
    assert!(pushed_twice.is_empty(), "pushed twice: {pushed_twice:?}");
    assert_eq!(accepted(), truth.len(), "every tag is on the target");
    let verify = rehydrate_with_env(
        &["verify", root, &harbor.url, "--plain-http", "--exclude", "org--*/**"],
        &harbor.env_admin(),
    );
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    assert!(assert_blobs_intact(&harbor.registry.root) > 0, "the target holds only intact blobs");
    // Once more: the last run finished, so this one is a catch-up. It lists every repository again,
    // skips every tag from the journal, sends nothing and asks the target nothing about a tag.
    let target_requests = || {
        harbor
            .state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(kind, _)| kind.ends_with(" manifest") || kind.ends_with(" blob") || kind.ends_with(" upload"))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let before = target_requests();
    let again = command().output().unwrap();
    let again_stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{again_stderr}");
    assert!(again_stderr.contains("pass 2 catches up"), "{again_stderr}");
    assert!(
        again_stderr.contains(&format!("0 new, 0 moved, {} unchanged (skipped without a request)", truth.len())),
        "{again_stderr}"
    );
    assert_eq!(target_requests(), before, "no request to the target about any tag");
    let (full_lists, _) = request_counts(&rehydrate(&["scan", root]).stderr);
    let (again_lists, _) = request_counts(&again.stderr);
    assert_eq!(again_lists, full_lists, "a catch-up lists every repository again");
    let status = rehydrate(&["status", "--journal", journal_path.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains(&format!("{} tags finished on the target", truth.len())), "{said}");
    assert!(said.contains("pass 2 finished: the next run catches up"), "{said}");
}
