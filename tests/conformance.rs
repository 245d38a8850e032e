//! One fixture, one expected inventory, every storage backend: the filesystem, S3 (moto, written by the
//! real registry through its own S3 driver), GCS (fake-gcs-server) and Azure Blob (Azurite, with and
//! without the leading `/` that distribution 2.8 wrote), the last two loaded with the registry-written
//! tree. Every backend must produce the identical inventory, with the request counts each store allows.

mod support;

use std::collections::BTreeSet;

use support::images::*;
use support::servers::*;
use support::*;

type Tags = BTreeSet<(String, String, String)>;
type Untagged = BTreeSet<(String, String)>;

/// Scans `source` twice (with and without `--untagged`); checks both inventories and returns the
/// request counts of the plain scan.
fn check_backend(
    name: &str,
    source: &str,
    extra: &[&str],
    env: &[(&str, String)],
    tags: &Tags,
    untagged: &Untagged,
) -> (u64, u64) {
    let run = |more: &[&str]| {
        let mut args = vec!["scan"];
        args.extend_from_slice(more);
        args.extend_from_slice(extra);
        args.push(source);
        let output = rehydrate_with_env(&args, env);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{name}: {args:?}: {stderr}");
        (inventory_lines(&output.stdout), output.stderr)
    };
    let (lines, stderr) = run(&[]);
    assert_eq!(&tag_records(&lines), tags, "{name}: tags");
    assert!(untagged_records(&lines).is_empty(), "{name}");
    assert!(error_records(&lines).is_empty(), "{name}: {:?}", error_records(&lines));
    let summary = String::from_utf8_lossy(&stderr);
    assert!(
        summary.contains(&format!("{FIXTURE_REPOSITORIES} repositories, {FIXTURE_TAGS} tags")),
        "{name}: {summary}"
    );
    let (with_untagged, _) = run(&["--untagged"]);
    assert_eq!(&tag_records(&with_untagged), tags, "{name}: tags with --untagged");
    assert_eq!(&untagged_records(&with_untagged), untagged, "{name}: untagged");
    if !name.starts_with("filesystem") {
        // Pages of two keys: the repositories listing is cut into ranges listed concurrently, every
        // tag listing takes several pages; and the folder walk used for stores that do not roll up.
        for variant in [
            &["--list-page-size", "2", "--list-concurrency", "8"][..],
            &["--discovery", "walk"],
            &["--discovery", "walk", "--list-page-size", "1"],
        ] {
            let (lines, _) = run(variant);
            assert_eq!(&tag_records(&lines), tags, "{name}: {variant:?}");
            assert!(error_records(&lines).is_empty(), "{name}: {variant:?}");
        }
    }
    request_counts(&stderr)
}

#[test]
fn every_backend_produces_the_identical_inventory() {
    // The filesystem layout, written by the registry, and what the registry itself answers.
    let dir = tempfile::tempdir().unwrap();
    let fs_registry = Registry::start(dir.path());
    let facts = push_fixture(&fs_registry);
    let tags = fs_registry.inventory();
    assert_eq!(tags.len(), FIXTURE_TAGS);
    let root = dir.path().to_str().unwrap();
    check_backend("filesystem", root, &[], &[], &tags, &facts.untagged);

    // S3: the registry writes the same fixture through its S3 driver.
    let moto = Moto::start();
    moto.create_bucket("registry");
    let s3_registry = Registry::start_on_s3(&moto.url, "registry");
    push_fixture(&s3_registry);
    assert_eq!(s3_registry.inventory(), tags, "the registry on S3 answers what it answers on disk");
    drop(s3_registry);
    let (lists, reads) = check_backend("s3", "s3://registry", &[], &moto.env(), &tags, &facts.untagged);
    // One listing finds every repository (the store rolls keys up at `/_`), one lists each repository's
    // tags, and moto lists MD5 ETags: no tag needs a read.
    assert_eq!((lists, reads), (1 + FIXTURE_REPOSITORIES as u64, 0), "s3 requests");
    // The same through --endpoint instead of AWS_ENDPOINT_URL.
    let mut env = moto.env();
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    check_backend("s3 --endpoint", "s3://registry/", &["--endpoint", &moto.url], &env, &tags, &facts.untagged);
    // A root under which nothing lies is a fatal error that says so.
    let output = rehydrate_with_env(&["scan", "s3://registry/wrong/root"], &moto.env());
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("nothing under registry/wrong/root/docker/registry/v2/repositories/"));

    let objects = tree_objects(dir.path());
    let client = reqwest::blocking::Client::new();

    // GCS: the registry-written tree loaded into fake-gcs-server, under a root folder.
    let gcs = FakeGcs::start();
    gcs.create_bucket("registry");
    for (key, bytes) in &objects {
        gcs.put(&client, "registry", &format!("some/root/{key}"), bytes.clone());
    }
    let gcs_env = [("STORAGE_EMULATOR_HOST", gcs.url.clone())];
    let (lists, reads) = check_backend("gcs", "gs://registry/some/root", &[], &gcs_env, &tags, &facts.untagged);
    // fake-gcs-server cuts rolled-up prefixes after the `/`: one more listing confirms the roll-up.
    assert_eq!((lists, reads), (2 + FIXTURE_REPOSITORIES as u64, 0), "gcs requests");

    // Azure: the same tree, once as distribution 3 names it and once with 2.8's leading slash.
    let azurite = Azurite::start();
    for (container, leading) in [("registry", ""), ("legacy", "/")] {
        azurite.create_container(container);
        for (key, bytes) in &objects {
            azurite.put(&client, container, &format!("{leading}{key}"), bytes.clone());
        }
        let source = format!("az://{container}");
        let (lists, reads) = check_backend(
            &format!("azure {container}"),
            &source,
            &["--endpoint", &azurite.url],
            &azurite.env(),
            &tags,
            &facts.untagged,
        );
        assert_eq!(reads, 0, "azure {container}: Azurite lists Content-MD5, so no tag needs a read");
        assert!(lists <= 2 + 1 + FIXTURE_REPOSITORIES as u64, "azure {container}: {lists} listings");
    }

    // The ecosystem's own ways to point at Azurite, without --endpoint: object_store's
    // AZURITE_BLOB_STORAGE_URL beside AZURE_STORAGE_USE_EMULATOR, and a connection string as the Azure
    // CLI takes it (account, key, blob endpoint).
    let base = azurite.url.trim_end_matches(&format!("/{AZURITE_ACCOUNT}")).to_string();
    let emulator_env = [("AZURE_STORAGE_USE_EMULATOR", "true".to_string()), ("AZURITE_BLOB_STORAGE_URL", base)];
    check_backend("azure AZURITE_BLOB_STORAGE_URL", "az://registry", &[], &emulator_env, &tags, &facts.untagged);
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={};",
        azurite.url
    );
    let connection_env = [("AZURE_STORAGE_CONNECTION_STRING", connection)];
    check_backend("azure connection string", "az://legacy", &[], &connection_env, &tags, &facts.untagged);

    // The copy reads manifests and blobs by their raw names: 2.8's leading `/` on Azure, a root on GCS.
    for (source, env) in
        [("az://legacy".to_string(), azurite.env()), ("gs://registry/some/root".to_string(), gcs_env.to_vec())]
    {
        let target_dir = tempfile::tempdir().unwrap();
        let target = Registry::start(target_dir.path());
        let mut args = vec!["sync", source.as_str(), target.url.as_str(), "--plain-http", "--no-journal"];
        if source.starts_with("az://") {
            args.extend(["--endpoint", azurite.url.as_str()]);
        }
        let output = rehydrate_with_env(&args, &env);
        assert!(output.status.success(), "{source}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(target.inventory(), tags, "synced from {source}");
    }
}
