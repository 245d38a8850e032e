//! Large blobs through a cut connection, against the real registry: an upload cut in the middle goes on
//! at the offset the target reports (not from the first byte, not as if nothing had gone), a target that
//! forgot the session gets a fresh one, a corrupt blob is refused after a resume too, and a target that
//! answers 503 to everything gets exactly the documented number of tries per operation.

mod support;

use support::fault_proxy::{Fault, FaultProxy};
use support::images::*;
use support::*;

const MIB: usize = 1 << 20;
/// The layer of the test image: ten chunks of `--chunk-size 1048576`, and a bit.
const LAYER: usize = 10 * MIB + 12_345;

struct Setup {
    _source_dir: tempfile::TempDir,
    source: Registry,
    _target_dir: tempfile::TempDir,
    target: Registry,
    proxy: FaultProxy,
    layer_digest: String,
    manifest_digest: String,
}

/// A source registry holding `big/app:v1` (one layer of `LAYER` bytes), and an empty target behind a
/// fault proxy that cuts the upload bytes at 60% of the layer.
fn setup(forward_the_cut: bool) -> Setup {
    let source_dir = tempfile::tempdir().unwrap();
    let source = Registry::start(source_dir.path());
    let layer = noise(7, LAYER);
    let layer_digest = sha256(&layer);
    let (manifest_digest, _) = push_image_with_layer(&source, "big/app", Some("v1"), Kind::Oci, "big", layer);
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let proxy = FaultProxy::start(&target.url, "/", 0, vec![]);
    {
        let mut state = proxy.state.lock().unwrap();
        state.cut_upload_at = Some(LAYER as u64 * 6 / 10);
        state.cut_upload_forwards = forward_the_cut;
        state.paths = Some(Default::default());
    }
    Setup { _source_dir: source_dir, source, _target_dir: target_dir, target, proxy, layer_digest, manifest_digest }
}

fn sync_through_proxy(setup: &Setup) -> std::process::Output {
    let root = setup.source.root.display().to_string();
    rehydrate(&[
        "sync",
        &root,
        &setup.proxy.url,
        "--plain-http",
        "--no-journal",
        "--chunk-size",
        "1048576",
        "--verbose",
    ])
}

/// The layer is on the target byte for byte, and the tag at its digest.
fn assert_landed(setup: &Setup) {
    let served = target_blob_digest(&setup.target, "big/app", &setup.layer_digest);
    assert_eq!(served.as_deref(), Some(&*setup.layer_digest), "the layer as the target serves it");
    assert_eq!(setup.target.head_manifest("big/app", "v1").as_deref(), Some(&*setup.manifest_digest));
}

/// The blob's bytes as the target serves them, hashed.
fn target_blob_digest(target: &Registry, repository: &str, digest: &str) -> Option<String> {
    let response = reqwest::blocking::get(format!("{}/v2/{repository}/blobs/{digest}", target.url)).unwrap();
    response.status().is_success().then(|| sha256(&response.bytes().unwrap()))
}

/// Syncs through the proxy, which cuts one upload: the run succeeds; its stderr, and the upload bytes
/// the target was sent in all.
fn sync_with_one_cut(setup: &Setup) -> (String, u64) {
    let output = sync_through_proxy(setup);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let state = setup.proxy.state.lock().unwrap();
    assert_eq!(state.injected.get("cut upload"), Some(&1), "{:?}", state.injected);
    (stderr, state.upload_bytes)
}

fn requests_of(proxy: &FaultProxy, method: &str, path_part: &str) -> u64 {
    let state = proxy.state.lock().unwrap();
    let paths = state.paths.as_ref().unwrap();
    paths.iter().filter(|(key, _)| key.starts_with(method) && key.contains(path_part)).map(|(_, n)| n).sum()
}

#[test]
fn an_upload_cut_at_60_percent_goes_on_at_the_targets_offset() {
    let setup = setup(false);
    let (stderr, sent) = sync_with_one_cut(&setup);

    // The target was asked where the session stands, and the rest went from there: in all, less than
    // the blob and one chunk (a restart from the first byte would cost 60% more).
    assert!(requests_of(&setup.proxy, "GET", "/blobs/uploads/") >= 1, "the upload's status was asked");
    let config_and_layer = LAYER as u64 + 1_000;
    assert!(sent > LAYER as u64, "the cut bytes are counted too: {sent}");
    assert!(sent < config_and_layer + MIB as u64, "{sent} bytes sent for a {LAYER}-byte layer");
    assert!(stderr.contains("the upload goes on at byte"), "{stderr}");
    // The summary counts requests made again: the one cut PATCH, sent again from the target's offset.
    assert_eq!(number_before(&stderr, "sync finished", "retries"), 1, "{stderr}");

    assert_landed(&setup);
}

#[test]
fn a_cut_whose_first_bytes_reached_the_registry_goes_on_at_its_offset_too() {
    // The cut request's first bytes reach the registry before the connection breaks: distribution 2.8
    // keeps the session consistent, and the upload goes on where it says.
    let setup = setup(true);
    let (stderr, sent) = sync_with_one_cut(&setup);
    assert!(sent < LAYER as u64 + 1_000 + MIB as u64, "{sent} bytes sent for a {LAYER}-byte layer");
    assert!(stderr.contains("the upload goes on at byte"), "{stderr}");
    assert_landed(&setup);
}

#[test]
fn a_target_that_forgot_the_session_gets_a_fresh_upload() {
    let setup = setup(false);
    setup.proxy.state.lock().unwrap().forget_upload_sessions = true;
    let (_, sent) = sync_with_one_cut(&setup);
    assert!(sent > LAYER as u64 * 3 / 2, "the layer went again from its first byte: {sent}");
    assert!(sent < LAYER as u64 * 2, "once again, not more: {sent}");
    assert!(requests_of(&setup.proxy, "POST", "/blobs/uploads/") >= 3, "a new session was opened");
    assert_landed(&setup);
}

#[test]
fn a_corrupt_large_blob_is_refused_after_a_resume_too() {
    let setup = setup(false);
    // One byte rots near the end of the layer in the source storage.
    let hex = setup.layer_digest.trim_start_matches("sha256:");
    let data = setup.source.root.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[LAYER - 100] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let output = sync_through_proxy(&setup);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "partial: {stderr}");
    assert_eq!(setup.proxy.state.lock().unwrap().injected.get("cut upload"), Some(&1), "{stderr}");
    assert!(stderr.contains("is corrupt"), "{stderr}");
    assert!(stderr.contains(&setup.layer_digest), "the error names the blob: {stderr}");
    assert!(!setup.target.blob_exists("big/app", &setup.layer_digest), "no corrupt byte completes an upload");
    assert_eq!(setup.target.head_manifest("big/app", "v1"), None);
}

#[test]
fn a_target_answering_503_to_everything_gets_the_documented_tries_per_operation() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = Registry::start(source_dir.path());
    push_image(&source, "small/app", Some("v1"), Kind::Oci, "small");
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let proxy = FaultProxy::start(&target.url, "/", 1, vec![Fault::Status(503)]);
    proxy.state.lock().unwrap().paths = Some(Default::default());

    let root = source.root.display().to_string();
    let output = rehydrate(&["sync", &root, &proxy.url, "--plain-http", "--no-journal"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let paths = proxy.state.lock().unwrap().paths.clone().unwrap();
    assert!(!paths.is_empty());
    // docs/operations.md: 5 tries per operation (the first and 4 more), each request of an operation the same one.
    for (request, count) in &paths {
        assert_eq!(*count, 5, "{request} was tried {count} times: {paths:?}\n{stderr}");
    }
}

#[test]
fn a_store_answering_slow_down_to_everything_gets_the_documented_tries_per_read() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = Registry::start(source_dir.path());
    push_image(&source, "small/app", Some("v1"), Kind::Oci, "small");
    let moto = support::servers::Moto::start();
    moto.create_bucket("registry");
    moto.put_tree("registry", &source.root);
    let proxy = FaultProxy::start(&moto.url, "/", 1, vec![Fault::SlowDown]);
    proxy.state.lock().unwrap().paths = Some(Default::default());

    let output = rehydrate_with_env(&["scan", "s3://registry"], &moto.env_through(&proxy.url));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let state = proxy.state.lock().unwrap();
    assert!(state.requests >= 5, "{stderr}");
    // Every listing and read is one operation of 5 tries; S3's own retries never stack on ours.
    assert_eq!(state.requests % 5, 0, "{} requests: {:?}\n{stderr}", state.requests, state.paths);
    assert_eq!(state.injected.get("503 SlowDown"), Some(&state.requests));
}
