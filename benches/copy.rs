//! Side-by-side benchmark of copying images from a registry's storage into a registry (run by hand):
//!
//!   (a) skopeo (Debian) copying every tag from a registry serving the storage into an empty registry,
//!       one image at a time (as `skopeo sync` copies), and 8 copies at once;
//!   (b) `rehydrate sync` from the storage itself into another empty registry (8 tags at once);
//!   (c) the floor: a plain copy of the blob files on the same disk (`cp -r`).
//!
//! `cargo bench --bench copy` (sizes from `REHYDRATE_BENCH_COPY_IMAGES`, default 200 images of 4 layers
//! drawn from a shared pool of 100 layers of 11 MiB: 1.1 GiB of distinct blobs).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rehydrate::synth::{generate, SynthSpec, TruthRecord};
use support::Registry;

const PARALLEL: usize = 8;

fn dir_bytes(dir: &Path) -> u64 {
    support::servers::walk_files(dir).iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum()
}

fn skopeo_all(source: &Registry, target: &Registry, truth: &[TruthRecord], parallel: usize) -> Duration {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let (from, to) = (source.url.trim_start_matches("http://"), target.url.trim_start_matches("http://"));
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| {
                while let Some(record) = truth.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let output = Command::new("skopeo")
                        .args([
                            "copy",
                            "--all",
                            "--preserve-digests",
                            "--src-tls-verify=false",
                            "--dest-tls-verify=false",
                        ])
                        .arg(format!("docker://{from}/{}:{}", record.repository, record.tag))
                        .arg(format!("docker://{to}/{}:{}", record.repository, record.tag))
                        .output()
                        .unwrap();
                    assert!(output.status.success(), "skopeo: {}", String::from_utf8_lossy(&output.stderr));
                }
            });
        }
    });
    started.elapsed()
}

fn main() {
    let images: usize = std::env::var("REHYDRATE_BENCH_COPY_IMAGES").ok().map(|v| v.parse().unwrap()).unwrap_or(200);
    let work = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/copy");
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
    eprintln!("{} distinct blob bytes", blob_bytes);

    // (c) the floor: copying the blob files themselves.
    let floor_started = Instant::now();
    let status = Command::new("cp")
        .arg("-r")
        .arg(source_root.join("docker/registry/v2/blobs"))
        .arg(work.join("floor"))
        .status()
        .unwrap();
    assert!(status.success());
    Command::new("sync").status().unwrap();
    let floor = floor_started.elapsed();

    // (a) skopeo, from the registry serving the storage.
    let source = Registry::start(&source_root);
    let serial_target = Registry::start(&work.join("skopeo-serial-target"));
    let skopeo_serial = skopeo_all(&source, &serial_target, &truth, 1);
    Command::new("sync").status().unwrap();
    drop(serial_target);
    let skopeo_target = Registry::start(&work.join("skopeo-target"));
    let skopeo = skopeo_all(&source, &skopeo_target, &truth, PARALLEL);
    Command::new("sync").status().unwrap();
    drop(source);

    // (b) rehydrate, from the storage.
    let target = Registry::start(&work.join("rehydrate-target"));
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_rehydrate"))
        // No journal: each benchmark run starts from empty targets.
        .args([
            "sync",
            source_root.to_str().unwrap(),
            &target.url,
            "--plain-http",
            "--no-journal",
            "--push-concurrency",
            &PARALLEL.to_string(),
        ])
        .output()
        .unwrap();
    Command::new("sync").status().unwrap();
    let rehydrate = started.elapsed();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for record in &truth {
        assert_eq!(target.head_manifest(&record.repository, &record.tag).as_deref(), Some(record.digest.as_str()));
        assert_eq!(
            skopeo_target.head_manifest(&record.repository, &record.tag).as_deref(),
            Some(record.digest.as_str())
        );
    }

    let mib_per_s = |d: Duration| blob_bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
    println!(
        "\n{images} images (4 layers each from a shared pool), {:.2} GiB of distinct blobs, {PARALLEL} at once\n",
        blob_bytes as f64 / (1u64 << 30) as f64
    );
    println!("| copy | time | throughput | vs skopeo, one at a time | vs skopeo, 8 at once | vs the floor |");
    println!("|---|---|---|---|---|---|");
    let rows = [
        ("(a) skopeo, registry to registry, one image at a time", skopeo_serial),
        ("(a) skopeo, registry to registry, 8 at once", skopeo),
        ("(b) rehydrate sync, storage to registry, 8 at once", rehydrate),
        ("(c) floor: cp -r of the blob files", floor),
    ];
    for (name, time) in rows {
        println!(
            "| {name} | {:.1} s | {:.0} MiB/s | {:.1}x | {:.1}x | {:.2}x |",
            time.as_secs_f64(),
            mib_per_s(time),
            skopeo_serial.as_secs_f64() / time.as_secs_f64(),
            skopeo.as_secs_f64() / time.as_secs_f64(),
            floor.as_secs_f64() / time.as_secs_f64()
        );
    }
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
}
