//! A large blob is read from an object store by several ranged GETs at once (past its first 4 MiB),
//! on every object store: S3 (moto), GCS (fake-gcs-server) and Azure Blob (Azurite). The layer lands
//! byte-exact in the real registry, and the store was asked for it more than once, by ranges.

mod support;

use support::fault_proxy::FaultProxy;
use support::images::*;
use support::servers::*;
use support::*;

/// Past 8 MiB a blob is read by ranges of 4 MiB; this one ends in a short last range.
const LAYER: usize = (21 << 20) + 4321;

type Tags = std::collections::BTreeSet<(String, String, String)>;

/// Syncs `source` (reached through `proxy`) into an empty registry; checks that `layer` landed whole
/// and was read by ranges.
fn check(name: &str, source: &str, args: &[&str], env: &[(&str, String)], proxy: &FaultProxy, image: &(Tags, Vec<u8>)) {
    let (expected, layer) = image;
    proxy.state.lock().unwrap().paths = Some(Default::default());
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let mut all = vec!["sync", source, &target.url, "--plain-http", "--no-journal"];
    all.extend_from_slice(args);
    let output = rehydrate_with_env(&all, env);
    assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(&target.inventory(), expected, "{name}");
    let digest = sha256(layer);
    let url = format!("{}/v2/big/app/blobs/{digest}", target.url);
    let landed = reqwest::blocking::get(url).unwrap().bytes().unwrap();
    assert!(landed[..] == layer[..], "{name}: the layer landed byte-exact");

    let paths = proxy.state.lock().unwrap().paths.clone().unwrap();
    let hex = digest.trim_start_matches("sha256:");
    let layer_reads: u64 =
        paths.iter().filter(|(path, _)| path.starts_with("GET") && path.contains(hex)).map(|(_, n)| n).sum();
    // The first answer, then the ranges from 4, 8, 12, 16 and 20 MiB.
    assert!(layer_reads >= 6, "{name}: the layer was read by ranges: {paths:?}");
}

#[test]
fn a_large_blob_is_read_by_ranges_from_every_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let layer = noise(21, LAYER);
    push_image_with_layer(&registry, "big/app", Some("v1"), Kind::Oci, "ranged", layer.clone());
    let image = (registry.inventory(), layer);
    drop(registry);
    let objects = tree_objects(dir.path());
    let client = reqwest::blocking::Client::new();

    let moto = Moto::start();
    moto.create_bucket("registry");
    moto.put_tree("registry", dir.path());
    let proxy = FaultProxy::start(&moto.url, "/", 0, Vec::new());
    check("s3", "s3://registry", &[], &moto.env_through(&proxy.url), &proxy, &image);

    let gcs = FakeGcs::start();
    gcs.create_bucket("registry");
    for (key, bytes) in &objects {
        gcs.put(&client, "registry", key, bytes.clone());
    }
    let proxy = FaultProxy::start(&gcs.url, "/", 0, Vec::new());
    check("gcs", "gs://registry", &[], &[("STORAGE_EMULATOR_HOST", proxy.url.clone())], &proxy, &image);

    let azurite = Azurite::start();
    azurite.create_container("registry");
    for (key, bytes) in &objects {
        azurite.put(&client, "registry", key, bytes.clone());
    }
    let base = azurite.url.trim_end_matches(&format!("/{AZURITE_ACCOUNT}")).to_string();
    let proxy = FaultProxy::start(&base, "/", 0, Vec::new());
    let endpoint = format!("{}/{AZURITE_ACCOUNT}", proxy.url);
    check("azure", "az://registry", &["--endpoint", &endpoint], &azurite.env(), &proxy, &image);
}
