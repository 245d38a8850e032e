//! A sync at scale, side by side with the catalog path (run by hand): synthetic layouts of 10,000 and
//! 300,000 repositories (one tag each) synced into the real registry (Debian `docker-registry`).
//!
//!   (a) the peer: Harbor-style replication learns what to copy from `_catalog?n=1000` pages, so its
//!       first push cannot come before the whole catalog is read (the real registry serving the layout
//!       answers it; its tags/list and HEAD per repository, which also come before, are not even counted);
//!   (b) `rehydrate sync` into an empty registry, with its default journal: time to the first pushed
//!       tag, total time, when the listing ended, the share of the run in which listing and pushing
//!       overlap, and its peak memory (VmHWM, polled).
//!
//! `cargo bench --bench scale` (`REHYDRATE_BENCH_SCALE_SIZES`, default `10000,300000`;
//! `REHYDRATE_BENCH_DIR` for where the trees go, default `target/bench-data`; `scripts/bench-scale.sh`
//! puts them on an ext4 image with inline data, since 300,000 repositories take tens of GiB in 4 KiB
//! blocks). Trees are generated once and reused.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bench_dir, cached_tree, run_measured, sizes_from_env, SyncFigures, MEASURED_SYNC};
use rehydrate::synth::SynthSpec;
use support::Registry;

/// `repositories` repositories with one tag each, generated once; the root and the tag count.
fn tree(repositories: usize) -> (PathBuf, usize) {
    cached_tree(
        &format!("scale-{repositories}"),
        &SynthSpec { repositories, tags_per_repository: 1, images: 64, ..SynthSpec::default() },
    )
}

/// The peer's earliest first push: the moment its catalog walk is complete.
fn catalog_complete(registry: &Registry) -> (Duration, usize) {
    let started = Instant::now();
    let names = registry.catalog_with_page_size(1000);
    (started.elapsed(), names.len())
}

struct SyncRun {
    wall: Duration,
    peak_kib: u64,
    figures: SyncFigures,
}

fn sync(source: &std::path::Path, target: &Registry, journal: &std::path::Path) -> SyncRun {
    let run = run_measured(
        Command::new(env!("CARGO_BIN_EXE_rehydrate"))
            .arg("sync")
            .arg(source)
            .arg(&target.url)
            .arg("--plain-http")
            .args(MEASURED_SYNC)
            .arg("--journal")
            .arg(journal),
    );
    SyncRun { wall: run.wall, peak_kib: run.peak_kib, figures: SyncFigures::from_log(&run.stderr) }
}

fn main() {
    let sizes = sizes_from_env("REHYDRATE_BENCH_SCALE_SIZES", "10000,300000");
    let mut rows = Vec::new();
    for &size in &sizes {
        let (root, tags) = tree(size);

        let peer = Registry::start(&root);
        let (peer_first, names) = catalog_complete(&peer);
        drop(peer);
        assert_eq!(names, size, "the registry's catalog holds every repository");
        eprintln!("{size}: the catalog was complete after {:.1} s", peer_first.as_secs_f64());

        let target_dir = bench_dir().join(format!("scale-{size}-target"));
        let _ = std::fs::remove_dir_all(&target_dir);
        std::fs::create_dir_all(&target_dir).unwrap();
        let target = Registry::start(&target_dir);
        let run = sync(&root, &target, &target_dir.join("journal.redb"));
        drop(target);
        let _ = std::fs::remove_dir_all(&target_dir);
        assert_eq!((run.figures.pushed, run.figures.failed), (tags as u64, 0), "every tag pushed");

        let overlap = (run.figures.listing_finished - run.figures.first_push).max(0.0) / run.figures.total;
        let row = format!(
            "| {size} | {tags} | {:.1} s | {:.2} s | {:.0}x | {:.1} s ({:.0} tags/s) | {:.1} s | {:.0}% | {:.1} MiB |",
            peer_first.as_secs_f64(),
            run.figures.first_push,
            peer_first.as_secs_f64() / run.figures.first_push,
            run.wall.as_secs_f64(),
            tags as f64 / run.wall.as_secs_f64(),
            run.figures.listing_finished,
            overlap * 100.0,
            run.peak_kib as f64 / 1024.0
        );
        eprintln!("{row}");
        rows.push(row);
    }
    println!("\n| repositories | tags | (a) catalog complete: the peer's earliest first push | (b) rehydrate: first tag pushed | a/b | (b) whole sync | (b) listing finished | listing and pushes overlap | (b) peak RSS |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
