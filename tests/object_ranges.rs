//! The repositories listing of an object store cut into key ranges: with small pages and many listings at
//! once the ranges are cut again and again, and the inventory must still be exactly the truth, with no
//! repository listed twice. Runs on moto, the one server here that honours start-after with `/_`.

mod support;

use std::collections::BTreeSet;

use rehydrate::synth::{generate, SynthSpec};
use support::servers::Moto;
use support::*;

#[test]
fn cut_ranges_cover_every_repository_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        SynthSpec { repositories: 150, tags_per_repository: 2, images: 8, layers_per_image: 1, ..SynthSpec::default() };
    let truth: BTreeSet<(String, String, String)> =
        generate(dir.path(), &spec, 2).unwrap().into_iter().map(|t| (t.repository, t.tag, t.digest)).collect();
    let moto = Moto::start();
    moto.create_bucket("ranges");
    moto.put_tree("ranges", dir.path());

    for (page_size, concurrency) in [("1000", "1"), ("7", "1"), ("7", "8"), ("3", "32")] {
        let output = rehydrate_with_env(
            &["scan", "s3://ranges", "--list-page-size", page_size, "--list-concurrency", concurrency],
            &moto.env(),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let lines = inventory_lines(&output.stdout);
        assert_eq!(tag_records(&lines), truth, "pages of {page_size}, {concurrency} at once");
        assert_eq!(lines.len(), truth.len(), "no tag reported twice");
        assert!(stderr.contains("150 repositories"), "no repository reported twice: {stderr}");
        let (lists, reads) = request_counts(&output.stderr);
        assert_eq!(reads, 0, "moto lists MD5 ETags");
        // One listing per repository, plus the repositories listing: its pages, the probe's check, and
        // the cost of cutting (a cut range may end with a page that reaches past it, or be empty; with
        // pages of a few keys the density that decides a cut is noisy, the worst case). A runaway of
        // cuts would blow this bound; at 1,000 keys a page the overhead is a few listings in all.
        let pages = 150usize.div_ceil(page_size.parse().unwrap()) as u64;
        let workers: u64 = concurrency.parse().unwrap();
        assert!(
            lists <= 150 + 6 * pages + workers + 2,
            "pages of {page_size}, {concurrency} at once: {lists} listings"
        );
        if page_size == "1000" {
            assert_eq!(lists, 151, "one listing for all repositories, one per repository");
        }
    }

    // Shards split the object-store scan the same way: disjoint, and together complete.
    let mut union = BTreeSet::new();
    for index in 0..3 {
        let output = rehydrate_with_env(
            &["scan", "s3://ranges", "--shard", &format!("{index}/3"), "--list-page-size", "7"],
            &moto.env(),
        );
        assert!(output.status.success());
        let part = tag_records(&inventory_lines(&output.stdout));
        assert!(union.is_disjoint(&part));
        union.extend(part);
    }
    assert_eq!(union, truth);

    // And the copy reads its manifests and blobs from S3 too.
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let output = rehydrate_with_env(&["sync", "s3://ranges", &target.url, "--plain-http", "--no-journal"], &moto.env());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(target.inventory(), truth, "synced from S3, every tag with its digest");
}

/// A repository's listing asks for 100 keys first (cheap on stores whose answer time follows the keys
/// asked for); a repository holding more pays exactly one more listing per full page, and loses nothing.
#[test]
fn a_large_repository_is_listed_past_its_small_first_page() {
    let dir = tempfile::tempdir().unwrap();
    // 80 tags: 160 keys under `_manifests/tags/`, plus the revisions.
    let spec = SynthSpec { repositories: 3, tags_per_repository: 80, images: 8, ..SynthSpec::default() };
    let truth: BTreeSet<(String, String, String)> =
        generate(dir.path(), &spec, 1).unwrap().into_iter().map(|t| (t.repository, t.tag, t.digest)).collect();
    let moto = Moto::start();
    moto.create_bucket("large");
    moto.put_tree("large", dir.path());

    let output = rehydrate_with_env(&["scan", "s3://large"], &moto.env());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(tag_records(&inventory_lines(&output.stdout)), truth);
    let (lists, _) = request_counts(&output.stderr);
    assert_eq!(lists, 1 + 3 * 2, "the repositories listing, then two pages per repository");
}
