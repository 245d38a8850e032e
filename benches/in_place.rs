//! Disaster recovery benchmark (run by hand): rehydrating a Harbor in place (the target serves the very
//! storage that is scanned, its database empty) against a normal copy of the same images into an empty
//! Harbor. Both targets are the Harbor emulator in front of the real registry.
//!
//! `cargo bench --bench in_place` (sizes from `REHYDRATE_BENCH_DR_IMAGES`, default 500 images, and
//! `REHYDRATE_BENCH_DR_LAYER_MIB`, default 8: 3 layers each from a shared pool of 250).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use rehydrate::synth::{generate, SynthSpec};
use support::harbor::HarborEmulator;

fn sync(root: &std::path::Path, harbor: &HarborEmulator, extra: &[&str]) -> (f64, String) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_rehydrate"))
        // `org--N` repositories are valid distribution names but not valid Harbor project names
        // (Harbor allows one separator between alphanumerics): they would fail in both runs alike.
        .args(["sync", root.to_str().unwrap(), &harbor.url, "--plain-http", "--no-journal", "--exclude", "org--*/**"])
        .args(extra)
        .envs(harbor.env_admin())
        .output()
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (elapsed, stderr.lines().find(|l| l.starts_with("sync finished")).unwrap_or_default().to_string())
}

fn uploaded_bytes(summary: &str) -> String {
    summary.split("uploaded (").nth(1).and_then(|s| s.split(')').next()).unwrap_or("?").to_string()
}

fn main() {
    let images: usize = std::env::var("REHYDRATE_BENCH_DR_IMAGES").ok().map(|v| v.parse().unwrap()).unwrap_or(500);
    let layer_mib: usize = std::env::var("REHYDRATE_BENCH_DR_LAYER_MIB").ok().map(|v| v.parse().unwrap()).unwrap_or(8);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("bucket");
    let spec = SynthSpec {
        repositories: images,
        tags_per_repository: 1,
        images,
        layers_per_image: 3,
        layer_bytes: layer_mib << 20,
        seed: 11,
    };
    let truth = generate(&root, &spec, 2).unwrap();

    let fresh = HarborEmulator::start(&work.path().join("fresh"));
    let (copy_time, copy_summary) = sync(&root, &fresh, &[]);
    drop(fresh);
    let in_place = HarborEmulator::start(&root);
    let (in_place_time, in_place_summary) = sync(&root, &in_place, &["--in-place"]);
    let uploads: u64 = ["POST upload", "PATCH upload", "PUT upload"].iter().map(|k| in_place.count(k)).sum();

    let restored = truth.iter().filter(|t| !t.repository.starts_with("org--")).count();
    let tags = restored as f64;
    println!("\n{images} images, {restored} tags restored, 3 layers of {layer_mib} MiB each from a shared pool\n");
    println!("| rehydration | time | tags restored per second | blob bytes moved | upload requests |");
    println!("|---|---|---|---|---|");
    println!(
        "| normal copy into an empty Harbor | {copy_time:.2} s | {:.0} | {} | (all) |",
        tags / copy_time,
        uploaded_bytes(&copy_summary)
    );
    println!(
        "| in place, Harbor over the same storage | {in_place_time:.2} s | {:.0} | {} | {uploads} |",
        tags / in_place_time,
        uploaded_bytes(&in_place_summary)
    );
    println!("\nin place: {:.1}x the tags per second", copy_time / in_place_time);
}
