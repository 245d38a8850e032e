//! Side-by-side benchmark of enumerating a registry stored in S3 (run by hand, not in CI):
//!
//!   (a) the registry's own enumeration path, the real registry on its S3 driver over the bucket:
//!       `_catalog?n=1000` pages, `tags/list` per repository, a manifest HEAD per tag;
//!   (b) `rehydrate scan s3://...` at 1, 4 and 16 concurrent listings.
//!
//! Storage requests are counted at the server: moto logs one line per request it answers, and the log
//! is read between phases. Both go through a proxy that holds each answer back by a fixed round trip
//! (`REHYDRATE_BENCH_LATENCY_MS`, default 10), as a network between a client and a cloud store does:
//! on loopback moto answers in about a millisecond, which no real store does. `cargo bench --bench scan_s3` (size from `REHYDRATE_BENCH_S3_REPOS`, default
//! 1000: moto answers each listing in time proportional to the whole bucket, see docs/benchmarks.md).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::latency::latency_proxy;
use rehydrate::synth::{generate, SynthSpec};
use support::servers::Moto;
use support::Registry;

const BUCKET: &str = "registry";
const PEER_CONCURRENCY: usize = 10;

/// Requests moto has answered so far, by kind, read from its log.
#[derive(Debug, Default, Clone, Copy)]
struct Requests {
    lists: usize,
    reads: usize,
    other: usize,
}

impl Requests {
    fn total(&self) -> usize {
        self.lists + self.reads + self.other
    }

    fn since(self, before: Requests) -> Requests {
        Requests {
            lists: self.lists - before.lists,
            reads: self.reads - before.reads,
            other: self.other - before.other,
        }
    }
}

fn count_requests(log: &std::path::Path) -> Requests {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut requests = Requests::default();
    for line in text.lines() {
        let line = strip_colours(line);
        let Some(request) = line.split('"').nth(1) else { continue };
        let mut words = request.split(' ');
        let (Some(method), Some(target)) = (words.next(), words.next()) else { continue };
        let path = target.split('?').next().unwrap_or_default();
        let is_bucket = path.trim_matches('/') == BUCKET;
        match method {
            "GET" if is_bucket && target.contains("list-type") => requests.lists += 1,
            "GET" if is_bucket => requests.lists += 1,
            "GET" | "HEAD" => requests.reads += 1,
            _ => requests.other += 1,
        }
    }
    requests
}

/// Removes the terminal colour codes werkzeug puts around some request lines.
fn strip_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The registry's enumeration path; returns (time, tags found).
fn registry_path(registry: &Registry) -> (Duration, usize) {
    let started = Instant::now();
    let (found, _) = registry.enumerate(1000, PEER_CONCURRENCY);
    (started.elapsed(), found.len())
}

fn main() {
    let repositories: usize =
        std::env::var("REHYDRATE_BENCH_S3_REPOS").ok().map(|v| v.parse().unwrap()).unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec { repositories, tags_per_repository: 3, images: 64, ..SynthSpec::default() };
    let truth = generate(dir.path(), &spec, 2).unwrap();

    let latency_ms: u64 = std::env::var("REHYDRATE_BENCH_LATENCY_MS").ok().map(|v| v.parse().unwrap()).unwrap_or(10);
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    eprintln!("uploading the tree to moto ...");
    moto.put_tree(BUCKET, dir.path());
    let log = moto.log_path();
    let proxy_runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = latency_proxy(&proxy_runtime, &moto.url, Duration::from_millis(latency_ms));

    let mut rows = Vec::new();
    let before = count_requests(&log);
    let registry = Registry::start_on_s3(&endpoint, BUCKET);
    let (peer_time, peer_tags) = registry_path(&registry);
    drop(registry);
    let peer = count_requests(&log).since(before);
    assert_eq!(peer_tags, truth.len(), "the registry must answer every tag");
    rows.push(("registry: catalog + tags/list + HEAD".to_string(), peer_time, peer));

    let rehydrate = env!("CARGO_BIN_EXE_rehydrate");
    for (concurrency, deep) in [(1, false), (4, false), (16, false), (16, true)] {
        let before = count_requests(&log);
        let started = Instant::now();
        let concurrency_text = concurrency.to_string();
        let mut args =
            vec!["scan".to_string(), format!("s3://{BUCKET}"), "--list-concurrency".into(), concurrency_text];
        if deep {
            args.push("--deep".into());
        }
        let output = Command::new(rehydrate)
            .args(&args)
            .env_clear()
            .envs(moto.env())
            .env("AWS_ENDPOINT_URL", &endpoint)
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).lines().count(),
            truth.len(),
            "rehydrate must find every tag"
        );
        let deep_text = if deep { " --deep" } else { "" };
        rows.push((
            format!("rehydrate scan{deep_text}, {concurrency} listings at once"),
            elapsed,
            count_requests(&log).since(before),
        ));
    }

    let peer_total = rows[0].2.total() as f64;
    println!(
        "\n{repositories} repositories, {} tags, on moto (S3) behind a {latency_ms} ms round trip, requests counted at the server\n",
        truth.len()
    );
    println!(
        "| enumeration | wall time | LIST | GET/HEAD | requests per repository | fewer requests than the registry |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, time, requests) in &rows {
        println!(
            "| {name} | {:.2} s | {} | {} | {:.2} | {:.1}x |",
            time.as_secs_f64(),
            requests.lists,
            requests.reads,
            requests.total() as f64 / repositories as f64,
            peer_total / requests.total() as f64
        );
    }
    let manifests: std::collections::BTreeSet<&str> = truth.iter().map(|t| t.digest.as_str()).collect();
    println!(
        "\n--deep reads each of the {} distinct manifests once; beyond the scan's listings it lists blobs/ \
         once (a page per 1,000 blobs) to know which blobs are present",
        manifests.len()
    );
    let single = rows[1].1.as_secs_f64();
    println!(
        "\nspeed-up from 1 to 4 listings: {:.1}x; 1 to 16: {:.1}x",
        single / rows[2].1.as_secs_f64(),
        single / rows[3].1.as_secs_f64()
    );
}
