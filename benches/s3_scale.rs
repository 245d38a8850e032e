//! S3 at scale on a real server (run by hand: `scripts/bench-s3-scale.sh`, which installs Garage).
//!
//! Synthetic layouts of `REHYDRATE_BENCH_GARAGE_SIZES` repositories (default `20000,100000`, 3 tags
//! each, about 18 keys per repository) are loaded once into Garage, one bucket per size, kept in
//! `target/bench-data/garage` between runs. Requests are counted at the server (Garage's own counters,
//! by S3 operation), and clients reach it through a proxy that holds each answer back by a simulated
//! round trip (`REHYDRATE_BENCH_LATENCY_MS`, default 10). Side by side, at each size:
//!
//!   (a) the registry's own enumeration path: Debian `docker-registry` on its S3 driver over the same
//!       bucket, `_catalog?n=1000` pages, `tags/list` per repository, a manifest HEAD per tag, 10
//!       repositories at once (at sizes up to `REHYDRATE_BENCH_GARAGE_PEER_MAX`, default 20000). Its
//!       catalog re-walks the storage tree from the start for every page, so it is stopped after
//!       `REHYDRATE_BENCH_GARAGE_PEER_CAP_S` seconds (default 300) and finished from the known names
//!       (tags/list and HEADs measured as they come), its figures then lower bounds;
//!   (b) `rehydrate scan s3://...`, 16 listings at once: time, requests, peak memory;
//!   (c) `rehydrate sync` from the bucket into the real registry, one shard of 1,000 repositories'
//!       worth (`--shard 0/N`: the discovery covers the whole bucket, the pushes stay comparable across
//!       sizes): time to the first pushed tag, peak memory;
//!   (d) the logic of the range-cutting and shard tests, on Garage directly: scans with small pages and
//!       32 listings at once (ranges cut again and again), and 3 shards, each equal to the truth with
//!       every repository and tag exactly once.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::garage::{Garage, REGION};
use common::latency::latency_proxy;
use common::{bench_dir, sizes_from_env, wait_with_peak_rss, SyncFigures, MEASURED_SYNC};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use rehydrate::synth::{generate_into, Sink, SynthSpec, TruthRecord};
use support::{inventory_lines, rehydrate_command, tag_records, Registry};

/// Listings rehydrate runs at once in the measured scan, and repositories the peer asks for at once.
const LISTINGS: &str = "16";
const PEER_CONCURRENCY: usize = 10;

fn spec(repositories: usize) -> SynthSpec {
    SynthSpec { repositories, tags_per_repository: 3, images: 64, ..SynthSpec::default() }
}

/// A sink that keeps nothing: generating into it gives the truth of a tree without writing it.
struct Discard;

impl Sink for Discard {
    fn put(&self, _key: &str, _bytes: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that hands each object to the uploader.
struct Upload(tokio::sync::mpsc::Sender<(String, Vec<u8>)>);

impl Sink for Upload {
    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        self.0.blocking_send((key.to_string(), bytes.to_vec())).map_err(|_| io::Error::other("the uploader stopped"))
    }
}

/// Loads the tree of `repositories` repositories into `bucket` (once: a marker file says it is
/// complete), generating objects while 64 uploads run at once. Returns the number of keys.
fn load(garage: &Garage, bucket: &str, repositories: usize) -> u64 {
    let marker = bench_dir().join(format!("garage/loaded-{bucket}"));
    if let Ok(keys) = std::fs::read_to_string(&marker) {
        return keys.trim().parse().unwrap();
    }
    garage.create_bucket(bucket);
    eprintln!("loading {repositories} repositories into Garage bucket {bucket} ...");
    let started = Instant::now();
    let store = garage.store(bucket);
    let (sender, receiver) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(10_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let uploads = runtime.spawn(async move {
        let objects =
            futures::stream::unfold(receiver, |mut receiver| async { Some((receiver.recv().await?, receiver)) });
        let mut count = 0u64;
        let mut puts = objects
            .map(|(key, bytes)| {
                let store = &store;
                async move { store.put(&object_store::path::Path::from(key.as_str()), bytes.into()).await.unwrap() }
            })
            .buffer_unordered(64)
            .boxed();
        while puts.next().await.is_some() {
            count += 1;
            if count % 200_000 == 0 {
                eprintln!("  {count} keys, {:.0} keys/s", count as f64 / started.elapsed().as_secs_f64());
            }
        }
        count
    });
    generate_into(&Upload(sender), &spec(repositories), 0..repositories, 1).unwrap();
    let keys = runtime.block_on(uploads).unwrap();
    eprintln!("loaded {keys} keys in {:.0} s", started.elapsed().as_secs_f64());
    std::fs::write(&marker, keys.to_string()).unwrap();
    keys
}

/// Requests Garage answered, by kind.
#[derive(Clone, Copy, Default)]
struct Requests {
    lists: u64,
    reads: u64,
    other: u64,
}

impl Requests {
    fn of(counts: &BTreeMap<String, u64>) -> Requests {
        let mut requests = Requests::default();
        for (operation, count) in counts {
            match operation.as_str() {
                "ListObjectsV2" | "ListObjects" => requests.lists += count,
                "GetObject" | "HeadObject" => requests.reads += count,
                _ => requests.other += count,
            }
        }
        requests
    }

    fn since(self, before: Requests) -> Requests {
        Requests {
            lists: self.lists - before.lists,
            reads: self.reads - before.reads,
            other: self.other - before.other,
        }
    }

    fn total(self) -> u64 {
        self.lists + self.reads + self.other
    }
}

/// Runs rehydrate against the store at `endpoint` with `args`; returns its time, stdout, stderr and
/// peak memory (KiB). Stdout goes to a file: a 300,000-line inventory must not stall the pipe.
fn run_rehydrate(garage: &Garage, endpoint: &str, args: &[&str]) -> (Duration, Vec<u8>, String, u64) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let mut child = rehydrate_command(args, &garage.env(endpoint))
        .stdout(Stdio::from(out.reopen().unwrap()))
        .stderr(Stdio::from(err.reopen().unwrap()))
        .spawn()
        .unwrap();
    let peak_kib = wait_with_peak_rss(&mut child);
    let wall = started.elapsed();
    let stderr = std::fs::read_to_string(err.path()).unwrap();
    assert!(child.wait().unwrap().success(), "rehydrate {args:?}: {stderr}");
    (wall, std::fs::read(out.path()).unwrap(), stderr, peak_kib)
}

type TagSet = BTreeSet<(String, String, String)>;

fn truth_set(truth: &[TruthRecord]) -> TagSet {
    truth.iter().map(|t| (t.repository.clone(), t.tag.clone(), t.digest.clone())).collect()
}

/// Checks an inventory against the truth: the same tags, each exactly once.
fn exactly_once(stdout: &[u8], truth: &TagSet, what: &str) -> TagSet {
    let lines = inventory_lines(stdout);
    let tags = tag_records(&lines);
    assert_eq!(lines.len(), tags.len(), "{what}: a tag reported twice, or an error");
    assert!(tags.is_subset(truth), "{what}: a tag that is not in the tree");
    tags
}

/// One row of the enumeration table.
struct Row {
    name: String,
    wall: Duration,
    requests: Requests,
    peak_kib: Option<u64>,
    /// Whether the run finished; the registry's path is stopped at a time cap, its figures then bounds.
    finished: bool,
    /// CPU time Garage spent answering this run (with the registry's path: the registry's own beside).
    server_cpu: Duration,
}

/// (a): the registry on its S3 driver enumerating the bucket through the round-trip proxy, stopped
/// when `cap` has passed (its catalog re-walks the storage for every page of 1,000: at 20,000
/// repositories a full walk would take hours).
fn registry_path(garage: &Garage, endpoint: &str, bucket: &str, truth: &TagSet, cap: Duration) -> Row {
    let registry = Registry::start_on_s3_with(endpoint, bucket, REGION, garage.credentials());
    let before = Requests::of(&garage.requests());
    let cpu_before = garage.cpu_time();
    let started = Instant::now();
    let (repositories, complete) = registry.catalog_until(1000, Some(started + cap));
    let catalog = started.elapsed();
    // A stopped catalog is finished from the names the benchmark knows, so that the tags/list and HEAD
    // per tag that must follow are measured too.
    let names: Vec<String> = match complete {
        true => repositories.clone(),
        false => truth.iter().map(|(r, _, _)| r.clone()).collect::<BTreeSet<_>>().into_iter().collect(),
    };
    let found = registry.tags_of(&names, PEER_CONCURRENCY);
    let wall = started.elapsed();
    let requests = Requests::of(&garage.requests()).since(before);
    let server_cpu = garage.cpu_time() - cpu_before;
    assert_eq!(&found, truth, "the registry must answer every tag");
    eprintln!(
        "  registry path: {:.1} s, catalog {} after {:.1} s ({} repositories)",
        wall.as_secs_f64(),
        if complete { "complete" } else { "stopped" },
        catalog.as_secs_f64(),
        repositories.len()
    );
    let name = if complete {
        "(a) registry: catalog + tags/list + HEAD per tag".to_string()
    } else {
        format!(
            "(a) registry: catalog stopped at {:.0} s ({} of {} repositories), then tags/list + HEAD per tag for all",
            cap.as_secs_f64(),
            repositories.len(),
            names.len()
        )
    };
    Row { name, wall, requests, peak_kib: None, finished: complete, server_cpu }
}

/// (b): `rehydrate scan` of the bucket through the round-trip proxy.
fn scan_row(garage: &Garage, endpoint: &str, bucket: &str, truth: &TagSet) -> Row {
    let before = Requests::of(&garage.requests());
    let cpu_before = garage.cpu_time();
    let url = format!("s3://{bucket}");
    let (wall, stdout, _, peak_kib) = run_rehydrate(garage, endpoint, &["scan", &url, "--list-concurrency", LISTINGS]);
    let requests = Requests::of(&garage.requests()).since(before);
    let server_cpu = garage.cpu_time() - cpu_before;
    assert_eq!(&exactly_once(&stdout, truth, "scan"), truth, "the scan finds every tag");
    let name = format!("(b) rehydrate scan, {LISTINGS} listings at once");
    Row { name, wall, requests, peak_kib: Some(peak_kib), finished: true, server_cpu }
}

/// What (c) measured.
struct SyncRun {
    shards: usize,
    figures: SyncFigures,
    peak_kib: u64,
}

/// (c): `rehydrate sync --shard 0/N` from the bucket into an empty registry on disk.
fn sync_shard(garage: &Garage, endpoint: &str, bucket: &str, repositories: usize) -> SyncRun {
    let shards = (repositories / 1000).max(1);
    let target_dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let target = Registry::start(target_dir.path());
    let (url, shard, journal) =
        (format!("s3://{bucket}"), format!("0/{shards}"), target_dir.path().join("journal.redb"));
    let mut args =
        vec!["sync", &url, &target.url, "--plain-http", "--shard", &shard, "--journal", journal.to_str().unwrap()];
    args.extend(MEASURED_SYNC);
    let (_, _, stderr, peak_kib) = run_rehydrate(garage, endpoint, &args);
    let figures = SyncFigures::from_log(&stderr);
    assert_eq!(figures.failed, 0, "the sync failed tags: {stderr}");
    SyncRun { shards, figures, peak_kib }
}

/// (d): ranges cut again and again, and 3 shards, straight to Garage: each repository exactly once.
fn check_ranges_and_shards(garage: &Garage, bucket: &str, truth: &TagSet) -> String {
    let url = format!("s3://{bucket}");
    let (wall, stdout, stderr, _) =
        run_rehydrate(garage, &garage.url, &["scan", &url, "--list-page-size", "100", "--list-concurrency", "32"]);
    assert_eq!(&exactly_once(&stdout, truth, "small pages"), truth, "pages of 100, 32 listings at once");
    let repositories = truth.iter().map(|(r, _, _)| r).collect::<BTreeSet<_>>().len();
    assert!(stderr.contains(&format!("{repositories} repositories")), "a repository reported twice: {stderr}");
    let mut union = TagSet::new();
    for index in 0..3 {
        let shard = format!("{index}/3");
        let (_, stdout, _, _) = run_rehydrate(garage, &garage.url, &["scan", &url, "--shard", &shard]);
        let part = exactly_once(&stdout, truth, &shard);
        assert!(union.is_disjoint(&part), "shard {shard} overlaps another");
        union.extend(part);
    }
    assert_eq!(&union, truth, "the 3 shards together hold every tag");
    format!(
        "pages of 100 with 32 listings at once ({:.1} s) and 3 shards: every one of {repositories} repositories and {} tags exactly once",
        wall.as_secs_f64(),
        truth.len()
    )
}

fn main() {
    let sizes = sizes_from_env("REHYDRATE_BENCH_GARAGE_SIZES", "20000,100000");
    let peer_max = sizes_from_env("REHYDRATE_BENCH_GARAGE_PEER_MAX", "20000")[0];
    let latency_ms = sizes_from_env("REHYDRATE_BENCH_LATENCY_MS", "10")[0] as u64;
    let peer_cap = Duration::from_secs(sizes_from_env("REHYDRATE_BENCH_GARAGE_PEER_CAP_S", "300")[0] as u64);
    let garage = Garage::start(&bench_dir().join("garage"));
    let proxy_runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = latency_proxy(&proxy_runtime, &garage.url, Duration::from_millis(latency_ms));

    let mut tables = Vec::new();
    for &size in &sizes {
        let bucket = format!("scale-{size}");
        let keys = load(&garage, &bucket, size);
        let truth = truth_set(&generate_into(&Discard, &spec(size), 0..size, 2).unwrap());
        let mut rows = Vec::new();
        if size <= peer_max {
            rows.push(registry_path(&garage, &endpoint, &bucket, &truth, peer_cap));
        }
        rows.push(scan_row(&garage, &endpoint, &bucket, &truth));
        eprintln!("  scan: {:.1} s", rows.last().unwrap().wall.as_secs_f64());
        let sync = sync_shard(&garage, &endpoint, &bucket, size);
        eprintln!("  sync shard: first push {:.2} s", sync.figures.first_push);
        let checks = check_ranges_and_shards(&garage, &bucket, &truth);
        tables.push((size, keys, truth.len(), rows, sync, checks));
    }

    println!("\nGarage 2.5.0 (S3), single node on loopback; {latency_ms} ms round trip per request; requests counted by the server\n");
    println!("| repositories | keys | tags | enumeration | wall time | LIST | GET/HEAD | requests per repository | Garage CPU | peak RSS | fewer requests than (a) | faster than (a) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (size, keys, tags, rows, _, _) in &tables {
        let peer = rows.first().filter(|row| row.name.starts_with("(a)"));
        for row in rows {
            // Against a stopped peer, its figures and the ratios are lower bounds.
            let bound = |row: &Row| if row.finished { "" } else { "> " };
            let (fewer, faster) = match peer {
                Some(peer) if !row.name.starts_with("(a)") => (
                    format!("{}{:.1}x", bound(peer), peer.requests.total() as f64 / row.requests.total() as f64),
                    format!("{}{:.1}x", bound(peer), peer.wall.as_secs_f64() / row.wall.as_secs_f64()),
                ),
                _ => ("-".into(), "-".into()),
            };
            println!(
                "| {size} | {keys} | {tags} | {} | {}{:.1} s | {}{} | {}{} | {}{:.2} | {:.1} s | {} | {fewer} | {faster} |",
                row.name,
                bound(row),
                row.wall.as_secs_f64(),
                bound(row),
                row.requests.lists,
                bound(row),
                row.requests.reads,
                bound(row),
                row.requests.total() as f64 / *size as f64,
                row.server_cpu.as_secs_f64(),
                row.peak_kib.map(|kib| format!("{:.1} MiB", kib as f64 / 1024.0)).unwrap_or_else(|| "-".into()),
            );
        }
    }
    println!("\n| repositories | (c) sync --shard 0/N from the bucket | first tag pushed | listing finished | whole run | tags pushed | peak RSS |");
    println!("|---|---|---|---|---|---|---|");
    for (size, _, _, _, sync, _) in &tables {
        println!(
            "| {size} | 0/{} | {:.2} s | {:.1} s | {:.1} s | {} | {:.1} MiB |",
            sync.shards,
            sync.figures.first_push,
            sync.figures.listing_finished,
            sync.figures.total,
            sync.figures.pushed,
            sync.peak_kib as f64 / 1024.0
        );
    }
    println!();
    for (size, _, _, _, _, checks) in &tables {
        println!("(d) at {size}: {checks}");
    }
}
