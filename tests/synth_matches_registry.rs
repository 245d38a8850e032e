//! The synthetic layout generator is only worth its benchmarks if the real registry agrees with it:
//! serve a generated tree with `docker-registry` and compare its answers with the generator's truth.

mod support;

use std::collections::BTreeSet;

use rehydrate::synth::{generate, repository_name, SynthSpec};
use support::*;

#[test]
fn the_registry_serving_a_generated_tree_answers_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec { repositories: 260, tags_per_repository: 3, ..SynthSpec::default() };
    let truth = generate(dir.path(), &spec, 2).unwrap();
    let registry = Registry::start(dir.path());

    let catalog: BTreeSet<String> = registry.catalog().into_iter().collect();
    let names: BTreeSet<String> = (0..spec.repositories).map(repository_name).collect();
    assert_eq!(catalog, names);

    let truth: BTreeSet<(String, String, String)> =
        truth.into_iter().map(|t| (t.repository, t.tag, t.digest)).collect();
    assert_eq!(truth.len(), 260 * 3);
    assert_eq!(registry.inventory(), truth);

    // And the registry serves the manifests themselves with the digests it claims.
    let (repository, tag, digest) = truth.iter().next().unwrap();
    let manifest = reqwest::blocking::Client::new()
        .get(format!("{}/v2/{repository}/manifests/{tag}", registry.url))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&sha256(&manifest), digest);

    let scan = rehydrate(&["scan", dir.path().to_str().unwrap()]);
    assert!(scan.status.success());
    assert_eq!(tag_records(&inventory_lines(&scan.stdout)), truth);
}
