//! Side-by-side benchmark of copying images from a registry's storage into a registry (run by hand):
//!
//!   (a) skopeo (Debian) copying every tag from a registry serving the storage into an empty registry,
//!       one image at a time (as `skopeo sync` copies), and 8 copies at once;
//!   (b) ocync (github clowdhaus/ocync: pipelined discovery and copy, adaptive concurrency, mount leader
//!       election), from the same registry into an empty registry, one mapping per repository, with its
//!       defaults (50 transfers at once) and without referrer discovery (none of the others copies
//!       referrers, and the source holds none). Built by hand from its source (docs/benchmarks.md says
//!       how), found at `REHYDRATE_BENCH_OCYNC` or as `ocync` on the PATH; the row is left out otherwise;
//!   (c) `rehydrate sync` from the storage itself into another empty registry (8 tags at once);
//!   (d) the floor: a plain copy of the blob files on the same disk (`cp -r`).
//!
//! Every registry is distribution v3.0.0 built with the current Go (`common::use_current_registry`
//! says why). Every registry speaks HTTPS with a certificate from a test CA (ocync speaks nothing else; each tool
//! trusts the CA, or skips verification where it cannot be given one: skopeo). Each tool copies into its
//! own empty registry, and every target is checked to hold every tag at its digest. On this machine the
//! receiving registry's CPU is what limits every tool, so its CPU time is shown for each row, and the
//! source registry's for the tools that read through it.
//!
//! `cargo bench --bench copy` (sizes from `REHYDRATE_BENCH_COPY_IMAGES`, default 200 images of 4 layers
//! drawn from a shared pool of 100 layers of 11 MiB: 1.1 GiB of distinct blobs).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cpu_time;
use rehydrate::synth::{generate, SynthSpec, TruthRecord};
use support::{test_ca, Registry};

const PARALLEL: usize = 8;

/// The certificate files every registry of the run uses.
struct Tls {
    ca: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

impl Tls {
    fn registry(&self, root: &Path) -> Registry {
        std::fs::create_dir_all(root).unwrap();
        Registry::start_tls(root, &self.certificate, &self.key)
    }
}

/// One measured copy.
struct Row {
    name: String,
    wall: Duration,
    receiver_cpu: Duration,
    source_cpu: Option<Duration>,
}

fn host(registry: &Registry) -> &str {
    registry.url.trim_start_matches("https://")
}

fn dir_bytes(dir: &Path) -> u64 {
    support::servers::walk_files(dir).iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum()
}

/// Checks that `target` holds every tag of the truth at its digest.
fn assert_complete(target: &Registry, truth: &[TruthRecord], tool: &str) {
    for record in truth {
        assert_eq!(
            target.head_manifest(&record.repository, &record.tag).as_deref(),
            Some(record.digest.as_str()),
            "{tool} did not copy {}:{}",
            record.repository,
            record.tag
        );
    }
}

/// Runs `copy` into a new empty registry under `root`; measures its time and the registries' CPU.
fn measure(
    name: &str,
    tls: &Tls,
    root: &Path,
    source: Option<&Registry>,
    truth: &[TruthRecord],
    copy: impl FnOnce(&Registry),
) -> Row {
    let target = tls.registry(root);
    let source_before = source.map(|source| cpu_time(source.pid()));
    let started = Instant::now();
    copy(&target);
    Command::new("sync").status().unwrap();
    let wall = started.elapsed();
    let receiver_cpu = cpu_time(target.pid());
    let source_cpu = source.zip(source_before).map(|(source, before)| cpu_time(source.pid()) - before);
    assert_complete(&target, truth, name);
    eprintln!("{name}: {:.1} s", wall.as_secs_f64());
    Row { name: name.to_string(), wall, receiver_cpu, source_cpu }
}

fn skopeo_all(source: &Registry, target: &Registry, truth: &[TruthRecord], parallel: usize) {
    common::skopeo_copy_all(host(source), host(target), truth, parallel);
}

/// The ocync binary, if one was built: `REHYDRATE_BENCH_OCYNC`, else `ocync` on the PATH.
fn ocync_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REHYDRATE_BENCH_OCYNC") {
        return Some(PathBuf::from(path));
    }
    let found = Command::new("ocync").arg("--version").output().is_ok_and(|output| output.status.success());
    found.then(|| PathBuf::from("ocync"))
}

/// ocync's configuration: the two registries, anonymous, and one mapping per repository, every tag.
fn ocync_config(source: &Registry, target: &Registry, truth: &[TruthRecord], cache: &Path) -> String {
    let mut repositories: Vec<&str> = truth.iter().map(|t| t.repository.as_str()).collect();
    repositories.dedup();
    let mut config = format!(
        "global:\n  cache_dir: {}\nregistries:\n  source:\n    url: {}\n    auth_type: anonymous\n  target:\n    url: {}\n    auth_type: anonymous\n\
         defaults:\n  source: source\n  targets: target\n  artifacts:\n    enabled: false\n  tags:\n    glob: \"*\"\nmappings:\n",
        cache.display(),
        host(source),
        host(target)
    );
    for repository in repositories {
        config.push_str(&format!("  - from: {repository}\n    to: {repository}\n"));
    }
    config
}

fn ocync_all(ocync: &Path, tls: &Tls, source: &Registry, target: &Registry, truth: &[TruthRecord]) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ocync.yaml");
    std::fs::write(&config, ocync_config(source, target, truth, &dir.path().join("cache"))).unwrap();
    let output = Command::new(ocync).arg("sync").arg("-c").arg(&config).env("SSL_CERT_FILE", &tls.ca).output().unwrap();
    assert!(
        output.status.success(),
        "ocync: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
}

fn rehydrate_all(source_root: &Path, tls: &Tls, target: &Registry) {
    let output = Command::new(env!("CARGO_BIN_EXE_rehydrate"))
        // No journal: each benchmark run starts from empty targets.
        .args(["sync", source_root.to_str().unwrap(), &target.url, "--no-journal", "--ca-cert"])
        .arg(&tls.ca)
        .args(["--push-concurrency", &PARALLEL.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// (d): copying the blob files themselves.
fn floor(source_root: &Path, work: &Path) -> Duration {
    let started = Instant::now();
    let status =
        Command::new("cp").arg("-r").arg(source_root.join("docker/registry/v2/blobs")).arg(work.join("floor")).status();
    assert!(status.unwrap().success());
    Command::new("sync").status().unwrap();
    started.elapsed()
}

fn print_table(rows: &[Row], blob_bytes: u64, images: usize, floor: Duration) {
    let is_peer = |row: &&Row| row.name.starts_with("(a)") || row.name.starts_with("(b)");
    let best_peer = rows.iter().filter(is_peer).map(|row| row.wall).min().unwrap();
    let mib_per_s = |d: Duration| blob_bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
    println!(
        "\n{images} images (4 layers each from a shared pool), {:.2} GiB of distinct blobs; every registry on HTTPS\n",
        blob_bytes as f64 / (1u64 << 30) as f64
    );
    println!(
        "| copy | time | throughput | receiving registry's CPU | source registry's CPU | against the fastest peer |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {:.1} s | {:.0} MiB/s | {:.1} s | {} | {:.2}x |",
            row.name,
            row.wall.as_secs_f64(),
            mib_per_s(row.wall),
            row.receiver_cpu.as_secs_f64(),
            row.source_cpu.map(|cpu| format!("{:.1} s", cpu.as_secs_f64())).unwrap_or_else(|| "-".into()),
            best_peer.as_secs_f64() / row.wall.as_secs_f64()
        );
    }
    println!(
        "| (d) floor: cp -r of the blob files | {:.1} s | {:.0} MiB/s | - | - | - |",
        floor.as_secs_f64(),
        mib_per_s(floor)
    );
}

fn main() {
    common::use_current_registry();
    let images: usize = std::env::var("REHYDRATE_BENCH_COPY_IMAGES").ok().map(|v| v.parse().unwrap()).unwrap_or(200);
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/copy");
    let _ = std::fs::remove_dir_all(&work);
    let source_root = work.join("source");
    let spec = SynthSpec {
        repositories: images,
        tags_per_repository: 1,
        images,
        layers_per_image: 4,
        layer_bytes: 11 << 20,
        seed: 7,
    };
    eprintln!("generating {images} images ...");
    let truth = generate(&source_root, &spec, 2).unwrap();
    let blob_bytes = dir_bytes(&source_root.join("docker/registry/v2/blobs"));
    std::fs::create_dir_all(work.join("tls")).unwrap();
    let (ca, certificate, key) = test_ca(&work.join("tls"));
    let tls = Tls { ca, certificate, key };
    let floor = floor(&source_root, &work);

    let source = tls.registry(&source_root);
    let mut rows = vec![
        measure("(a) skopeo, one image at a time", &tls, &work.join("skopeo-1"), Some(&source), &truth, |target| {
            skopeo_all(&source, target, &truth, 1)
        }),
        measure("(a) skopeo, 8 at once", &tls, &work.join("skopeo-8"), Some(&source), &truth, |target| {
            skopeo_all(&source, target, &truth, PARALLEL)
        }),
    ];
    match ocync_binary() {
        Some(ocync) => rows.push(measure(
            "(b) ocync, its defaults (50 at once)",
            &tls,
            &work.join("ocync"),
            Some(&source),
            &truth,
            |target| ocync_all(&ocync, &tls, &source, target, &truth),
        )),
        None => eprintln!("ocync not found (REHYDRATE_BENCH_OCYNC): its row is left out"),
    }
    drop(source);
    rows.push(measure(
        "(c) rehydrate sync, from the storage, 8 at once",
        &tls,
        &work.join("rehydrate"),
        None,
        &truth,
        |target| rehydrate_all(&source_root, &tls, target),
    ));
    print_table(&rows, blob_bytes, images, floor);
    let _ = std::fs::remove_dir_all(&work);
}
