//! Faults on both sides, injected by a proxy in front of real servers: one request in ten fails, with
//! every kind of failure in turn. Every image still lands and verifies, skopeo reads every one back
//! (checking every blob's digest), and the summary counts the retries.

mod support;

use std::time::Duration;

use support::fault_proxy::{every_target_fault, Fault, FaultProxy};
use support::harbor::*;
use support::images::*;
use support::servers::Moto;
use support::*;

/// The registry-written fixture plus three images with 3 MiB layers, so that blob transfers are long
/// enough to be cut in the middle (and go in 1 MiB chunks with `--chunk-size 1048576`), and one with a
/// 13 MiB layer, which an object store serves by ranges read at once (past 8 MiB).
fn fixture_with_large_blobs() -> (WrittenFixture, std::collections::BTreeSet<(String, String, String)>) {
    let fixture = written_fixture();
    for i in 0..3u64 {
        push_image_with_layer(
            &fixture.registry,
            "big/app",
            Some(&format!("v{i}")),
            Kind::Oci,
            &format!("big {i}"),
            noise(i, 3 << 20),
        );
    }
    push_image_with_layer(&fixture.registry, "big/app", Some("v3"), Kind::Oci, "big 3", noise(3, 13 << 20));
    let expected = fixture.registry.inventory();
    (fixture, expected)
}

/// Every kind of the plan (and the large-body cut `cut`) was injected. Every fault answered with a
/// status costs exactly one retry; a broken or stalled connection costs one too, except the odd one that
/// lands on a request the client had already abandoned. The summary must count them.
fn assert_every_fault_injected_and_retried(proxy: &FaultProxy, plan: &[Fault], cut: &str, stderr: &str) {
    let injected = proxy.state.lock().unwrap().injected.clone();
    eprintln!("injected {injected:?}\n{stderr}");
    for fault in plan.iter().map(Fault::name).chain([cut.to_string()]) {
        assert!(injected.contains_key(&fault), "{fault} was injected: {injected:?}");
    }
    let retries = retries_in(stderr);
    let answered: u64 =
        injected.iter().filter(|(name, _)| name.starts_with(|c: char| c.is_ascii_digit())).map(|(_, n)| n).sum();
    let total: u64 = injected.values().sum();
    assert!(retries >= answered && retries * 5 >= total * 4, "{retries} retries counted for {injected:?}: {stderr}");
}

/// The number before " retries" in a sync summary.
fn retries_in(stderr: &str) -> u64 {
    stderr.split(" retries").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn every_image_lands_through_target_faults() {
    let (fixture, expected) = fixture_with_large_blobs();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = HarborEmulator::start(harbor_dir.path());
    let plan = every_target_fault(Duration::from_secs(3), Duration::from_secs(30));
    let proxy = FaultProxy::start(&harbor.url, "/", 10, plan.clone());
    proxy.state.lock().unwrap().large_body_reset_every = 2;

    let args = [
        "sync",
        fixture.root(),
        &proxy.url,
        "--plain-http",
        "--no-journal",
        "--stall-timeout",
        "1",
        "--chunk-size",
        "1048576",
    ];
    let output = rehydrate_with_env(&args, &harbor.env_admin());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_every_fault_injected_and_retried(&proxy, &plan, "reset mid-upload", &stderr);

    let tags: std::collections::BTreeSet<(String, String, String)> =
        harbor.state.lock().unwrap().tags.iter().map(|((r, t), d)| (r.clone(), t.clone(), d.clone())).collect();
    assert_eq!(tags, expected);
    let verify = rehydrate_with_env(&["verify", fixture.root(), &harbor.url, "--plain-http"], &harbor.env_admin());
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let host = harbor.url.trim_start_matches("http://");
    skopeo_reads_back(host, &expected, Some(&format!("{ADMIN}:{ADMIN_PASSWORD}")));
}

#[test]
fn every_image_lands_through_storage_faults() {
    let (fixture, expected) = fixture_with_large_blobs();
    let moto = Moto::start();
    moto.create_bucket("registry");
    moto.put_tree("registry", &fixture.registry.root);
    let plan = vec![
        Fault::SlowDown,
        Fault::Reset,
        Fault::Stall(Duration::from_secs(3)),
        Fault::Status(500),
        Fault::StallMidBody(Duration::from_secs(30)),
    ];
    let proxy = FaultProxy::start(&moto.url, "/", 10, plan.clone());
    proxy.state.lock().unwrap().large_body_reset_every = 2;
    let env = moto.env_through(&proxy.url);

    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let output = rehydrate_with_env(
        &[
            "sync",
            "s3://registry",
            &target.url,
            "--plain-http",
            "--no-journal",
            "--stall-timeout",
            "1",
            "--chunk-size",
            "1048576",
        ],
        &env,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_every_fault_injected_and_retried(&proxy, &plan, "reset mid-download", &stderr);
    assert_eq!(target.inventory(), expected);

    proxy.stop_faults();
    let verify = rehydrate_with_env(&["verify", "s3://registry", &target.url, "--plain-http"], &env);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    skopeo_reads_back(target.url.trim_start_matches("http://"), &expected, None);
}
