//! `rehydrate plan` at scale beside `rehydrate scan` of the same tree (run by hand): synthetic layouts
//! (one tag per repository, 64 images shared across repositories, as base images are), the plan against
//! an empty real registry. Time and peak memory of each: the plan reads every manifest once per digest
//! and keeps its per-project sets on disk, so its memory must stay flat like the scan's.
//!
//! `cargo bench --bench plan` (`REHYDRATE_BENCH_PLAN_SIZES`, default `10000,300000`; trees are cached
//! under `REHYDRATE_BENCH_DIR`, shared with the scale benchmark: `scripts/bench-scale.sh` shows how to put
//! 300,000 repositories on an ext4 image with inline data).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cached_tree, sizes_from_env, wait_with_peak_rss};
use rehydrate::synth::SynthSpec;
use support::Registry;

/// Runs rehydrate with its output thrown away: wall time, peak memory (KiB), and its last line of
/// standard output.
fn run(args: &[&str]) -> (Duration, u64, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rehydrate"))
        .args(args)
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peak = wait_with_peak_rss(&mut child);
    let wall = started.elapsed();
    let status = child.wait().unwrap();
    assert!(status.code() != Some(1), "rehydrate {args:?} failed");
    let stdout = std::fs::read_to_string(out.path()).unwrap();
    (wall, peak, stdout.lines().last().unwrap_or_default().to_string())
}

fn main() {
    let sizes = sizes_from_env("REHYDRATE_BENCH_PLAN_SIZES", "10000,300000");
    println!("| repositories | scan | scan peak | plan | plan peak | plan / scan | the plan's last line |");
    println!("|---|---|---|---|---|---|---|");
    for size in sizes {
        let (root, _) = cached_tree(
            &format!("scale-{size}"),
            &SynthSpec { repositories: size, tags_per_repository: 1, images: 64, ..SynthSpec::default() },
        );
        let source = root.to_str().unwrap();
        let target_dir = tempfile::tempdir().unwrap();
        let target = Registry::start(target_dir.path());
        let (scan, scan_peak, _) = run(&["scan", source, "--output", "/dev/null"]);
        let (plan, plan_peak, last) = run(&["plan", source, &target.url, "--plain-http"]);
        println!(
            "| {size} | {:.2} s | {:.1} MiB | {:.2} s | {:.1} MiB | {:.2}x | {last} |",
            scan.as_secs_f64(),
            scan_peak as f64 / 1024.0,
            plan.as_secs_f64(),
            plan_peak as f64 / 1024.0,
            plan.as_secs_f64() / scan.as_secs_f64()
        );
    }
}
