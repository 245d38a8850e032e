//! Faults on the target: with one request in ten failing (503, or 429 with `Retry-After`), every image
//! still lands and verifies, and the summary counts the retries.

mod support;

use support::harbor::*;
use support::images::*;
use support::*;

#[test]
fn every_image_lands_through_injected_faults() {
    let fixture = written_fixture();
    let expected = fixture.registry.inventory();
    let root = fixture.root();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = HarborEmulator::start(harbor_dir.path());
    harbor.state.lock().unwrap().fault_every = 10;

    let output = rehydrate_with_env(&["sync", root, &harbor.url, "--plain-http", "--no-journal"], &harbor.env_admin());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let injected = harbor.state.lock().unwrap().faults_injected;
    assert!(injected >= 10, "faults were injected: {injected}");
    let retries: u64 = stderr.split(" retries").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(retries >= injected, "every fault was retried and counted: {retries} retries for {injected} faults");

    harbor.state.lock().unwrap().fault_every = 0;
    let tags: std::collections::BTreeSet<(String, String, String)> =
        harbor.state.lock().unwrap().tags.iter().map(|((r, t), d)| (r.clone(), t.clone(), d.clone())).collect();
    assert_eq!(tags, expected);
    let verify = rehydrate_with_env(&["verify", root, &harbor.url, "--plain-http"], &harbor.env_admin());
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let host = harbor.url.trim_start_matches("http://");
    skopeo_reads_back(host, &expected, Some(&format!("{ADMIN}:{ADMIN_PASSWORD}")));
}
