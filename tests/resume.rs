//! A sync killed part-way (SIGKILL, at moments it does not choose) and started again ends with a
//! verified target, and no finished tag is ever pushed twice: the journal and the target's own state
//! carry the run across the kills.

mod support;

use std::process::Command;
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
    let args = |program: &mut Command| {
        program
            .args(["sync", root, &harbor.url, "--plain-http", "--exclude", "org--*/**", "--push-concurrency", "2"])
            .arg("--journal")
            .arg(&journal_path)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .envs(harbor.env_admin());
    };
    let accepted = || harbor.state.lock().unwrap().tags.len();

    // Three runs killed at growing progress: 10%, 35%, 60% of the tags on the target.
    for share in [0.10, 0.35, 0.60] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rehydrate"));
        args(&mut command);
        let goal = (truth.len() as f64 * share) as usize;
        assert!(
            run_and_kill(command, Duration::from_secs(60), || accepted() >= goal),
            "killed before the end ({share})"
        );
        assert!(accepted() < truth.len(), "killed before the end ({share})");
    }

    let mut command = Command::new(env!("CARGO_BIN_EXE_rehydrate"));
    args(&mut command);
    let last = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success(), "{stderr}");
    // The journal carried the work across the kills: finished repositories are not even listed again.
    assert!(
        stderr.contains("repositories were finished by an earlier run"),
        "finished repositories were not listed again: {stderr}"
    );

    let pushed_twice: Vec<_> = harbor
        .state
        .lock()
        .unwrap()
        .manifests_accepted
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(pushed_twice.is_empty(), "pushed twice: {pushed_twice:?}");
    assert_eq!(accepted(), truth.len(), "every tag is on the target");
    let verify = rehydrate_with_env(
        &["verify", root, &harbor.url, "--plain-http", "--exclude", "org--*/**"],
        &harbor.env_admin(),
    );
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    assert!(assert_blobs_intact(&harbor.registry.root) > 0, "the target holds only intact blobs");
    // Once more: every repository is finished, none is listed again, nothing is sent.
    let mut command = Command::new(env!("CARGO_BIN_EXE_rehydrate"));
    args(&mut command);
    let again = command.output().unwrap();
    let again_stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{again_stderr}");
    // Every repository, the excluded ones too (finished with nothing to do under this selection).
    assert!(
        again_stderr.contains(&format!("{} repositories were finished by an earlier run", spec.repositories)),
        "{again_stderr}"
    );
    assert!(again_stderr.contains(" 0 pushed"), "{again_stderr}");
    let (full_lists, full_reads) = request_counts(&rehydrate(&["scan", root]).stderr);
    let (again_lists, again_reads) = request_counts(&again.stderr);
    assert_eq!(again_reads, 0, "no tag link is read again ({full_reads} in a full scan)");
    assert!(
        again_lists + 200 <= full_lists,
        "no tags folder is listed again: {again_lists} listings against {full_lists}"
    );
    let status = rehydrate(&["status", "--journal", journal_path.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("{} tags finished on the target", truth.len())));
}
