//! The deploy files are checked like code: every Kubernetes manifest in `deploy/` against the Kubernetes
//! schemas (kubernetes-validate, strict: an unknown field is an error, offline), the Dockerfile with
//! hadolint. Both come from PyPI through `scripts/install-servers.sh`. A broken manifest and a broken
//! Dockerfile are fed to the same checkers first, so the test cannot pass with a checker that accepts
//! anything.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::servers::{installed, servers_dir};

fn tool(name: &str) -> PathBuf {
    installed(servers_dir().join("venv/bin").join(name))
}

/// Runs a checker on a file: (passed, what it said).
fn check(tool_name: &str, args: &[&str], file: &Path) -> (bool, String) {
    let output = Command::new(tool(tool_name)).args(args).arg(file).output().expect("running the checker");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

#[test]
fn kubernetes_manifests_match_the_kubernetes_schemas() {
    let scratch = tempfile::tempdir().unwrap();
    let broken = scratch.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  completionz: 3\n  template: \
         {spec: {restartPolicy: Never, containers: [{name: a, image: b}]}}\n",
    )
    .unwrap();
    let (passed, said) = check("kubernetes-validate", &["--strict"], &broken);
    assert!(!passed && said.contains("completionz"), "the checker must refuse an unknown field: {said}");

    let mut manifests: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 2, "deploy/ holds the Indexed Job and the catch-up CronJob: {manifests:?}");
    for manifest in manifests {
        let (passed, said) = check("kubernetes-validate", &["--strict"], &manifest);
        assert!(passed, "{}: {said}", manifest.display());
        assert!(said.contains("passed"), "{}: {said}", manifest.display());
    }
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let scratch = tempfile::tempdir().unwrap();
    let broken = scratch.path().join("Dockerfile");
    std::fs::write(&broken, "FROM debian\nRUN cd /tmp && apt-get install curl\n").unwrap();
    let (passed, said) = check("hadolint", &[], &broken);
    assert!(!passed && said.contains("DL"), "the checker must refuse a bad Dockerfile: {said}");

    let (passed, said) = check("hadolint", &[], &deploy_dir().join("Dockerfile"));
    assert!(passed, "deploy/Dockerfile: {said}");
}
