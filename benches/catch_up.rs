//! Catching up with a live source (run by hand): a synthetic layout of `REHYDRATE_BENCH_CATCHUP_REPOS`
//! repositories (default 100,000, one tag each) is synced into the real registry (Debian
//! `docker-registry`) with a journal; then 1% of the tags change in storage (new, moved and deleted in
//! equal parts, written as the registry writes them), and the catch-up runs side by side with:
//!
//!   (a) the same catch-up with a fresh journal (what a new journal costs: a HEAD per tag);
//!   (b) a peer-style re-check, as regsync and skopeo sync do it: `_catalog` pages, `tags/list` per
//!       repository and a manifest HEAD per tag on the source registry serving the tree, then a HEAD per
//!       tag on the target (the re-check alone; copying what changed would come on top);
//!   and the plain `rehydrate scan` of the same tree. `REHYDRATE_BENCH_CATCHUP_PEER=0` leaves (b) out.
//!
//! The target sits behind a counting proxy (`REHYDRATE_BENCH_TARGET_RTT_MS` adds a simulated round trip
//! per target request, default 0), which also records the paths, so that requests for unchanged tags are
//! counted. (a) gets its own copy of the target, taken after the first sync, so that both catch-ups
//! start from the same state; a warm-up scan before the measured runs puts the source tree back in the
//! page cache, which that copy emptied. `cargo bench --bench catch_up`, or `scripts/bench-scale.sh
//! catch_up` to keep the trees on an ext4 image with inline data (run as root: at 100,000 repositories
//! the source and two targets in 4 KiB blocks are more than the page cache holds).
//! `REHYDRATE_BENCH_CATCHUP_KEEP=1` keeps the trees, with the target and the journal as the first sync
//! left them (`target-after-first-sync`, `journal-after-first-sync.redb`), to run the catch-up again by hand.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::changes::change_one_percent;
use common::{bench_dir, cpu_time, wait_with_peak_rss, waited_children_cpu_time};
use rehydrate::synth::{generate, SynthSpec};
use serde_json::Value;
use support::fault_proxy::FaultProxy;
use support::Registry;

/// What one run cost.
struct Row {
    name: String,
    wall: Duration,
    listings: Option<u64>,
    reads: Option<u64>,
    target_requests: u64,
    unchanged_requests: Option<u64>,
    /// CPU time of rehydrate during the run.
    cpu: Option<Duration>,
    /// CPU time of the registries that answered the run (the target; for the peer, the source too).
    receiver_cpu: Option<Duration>,
    note: String,
}

/// (listings, link reads) from a summary's "storage requests" line.
fn storage_requests(stderr: &str) -> (u64, u64) {
    let line = stderr.lines().find(|l| l.contains("storage requests:")).expect("a storage requests line");
    let numbers: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    (numbers[0], numbers[1])
}

fn summary_fields(stderr: &str) -> BTreeMap<String, u64> {
    let summary: Value = stderr
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line.get("new").is_some())
        .expect("a JSON summary");
    ["new", "moved", "unchanged", "gone", "left_alone", "failed"]
        .iter()
        .map(|key| (key.to_string(), summary[key].as_u64().unwrap_or(0)))
        .collect()
}

/// What one rehydrate run took.
struct Run {
    wall: Duration,
    cpu: Duration,
    stderr: String,
    peak_kib: u64,
}

/// Runs rehydrate to its end.
fn rehydrate(args: &[&str]) -> Run {
    let log = tempfile::NamedTempFile::new().unwrap();
    let cpu_before = waited_children_cpu_time();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rehydrate"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let peak_kib = wait_with_peak_rss(&mut child);
    let wall = started.elapsed();
    let cpu = waited_children_cpu_time() - cpu_before;
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(child.wait().unwrap().code().unwrap_or(1) != 1, "rehydrate {args:?} failed: {stderr}");
    Run { wall, cpu, stderr, peak_kib }
}

/// Requests the proxy recorded for manifests of repositories that did not change.
fn unchanged_manifest_requests(proxy: &FaultProxy, changed: &BTreeSet<String>) -> u64 {
    let state = proxy.state.lock().unwrap();
    let paths = state.paths.as_ref().unwrap();
    paths
        .iter()
        .filter_map(|(path, n)| {
            let rest = path.split_once(" /v2/")?.1;
            let (repository, _) = rest.split_once("/manifests/")?;
            (!changed.contains(repository)).then_some(*n)
        })
        .sum()
}

/// A sync into `target` (through `proxy`), with what it cost both sides.
fn catch_up_row(
    name: &str,
    (target, proxy): (&Registry, &FaultProxy),
    args: &[&str],
    changed: &BTreeSet<String>,
) -> (Row, BTreeMap<String, u64>) {
    {
        let mut state = proxy.state.lock().unwrap();
        state.requests = 0;
        state.paths = Some(BTreeMap::new());
    }
    let receiver_before = cpu_time(target.pid());
    let Run { wall, cpu, stderr, peak_kib } = rehydrate(args);
    let receiver_cpu = cpu_time(target.pid()) - receiver_before;
    let (listings, reads) = storage_requests(&stderr);
    let fields = summary_fields(&stderr);
    let target_requests = proxy.state.lock().unwrap().requests;
    let row = Row {
        name: name.to_string(),
        wall,
        cpu: Some(cpu),
        receiver_cpu: Some(receiver_cpu),
        listings: Some(listings),
        reads: Some(reads),
        target_requests,
        unchanged_requests: Some(unchanged_manifest_requests(proxy, changed)),
        note: format!(
            "{} new, {} moved, {} unchanged from the journal, {} gone; peak {:.1} MiB",
            fields["new"],
            fields["moved"],
            fields["unchanged"],
            fields["gone"],
            peak_kib as f64 / 1024.0
        ),
    };
    (row, fields)
}

/// The peer: catalog, tags/list and a HEAD per tag on the source registry, then a HEAD per tag on the
/// target, `concurrency` at once.
fn peer_recheck(source_root: &Path, target: &Registry, concurrency: usize) -> Row {
    let source = Registry::start(source_root);
    let receivers_before = cpu_time(source.pid()) + cpu_time(target.pid());
    let started = Instant::now();
    let (found, _) = source.enumerate(1000, concurrency);
    let found: Vec<_> = found.into_iter().collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                while let Some((repository, tag, _)) =
                    found.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    target.head_manifest(repository, tag);
                }
            });
        }
    });
    let wall = started.elapsed();
    let receivers_cpu = cpu_time(source.pid()) + cpu_time(target.pid()) - receivers_before;
    let repositories = found.iter().map(|(r, _, _)| r).collect::<BTreeSet<_>>().len();
    Row {
        name: "(b) peer re-check: catalog + tags/list + HEAD per tag, then HEAD per tag on the target".into(),
        wall,
        // The peer's client is this process's own threads: only the registries' CPU is shown.
        cpu: None,
        receiver_cpu: Some(receivers_cpu),
        listings: None,
        reads: None,
        target_requests: found.len() as u64,
        unchanged_requests: None,
        note: format!(
            "{} source requests ({} repositories, {} tags); copies not included",
            found.len() + repositories + repositories / 1000 + 1,
            repositories,
            found.len()
        ),
    }
}

/// The target "at most 1.5x the plain scan plus the changed tags' copy time", with the copy time of the
/// changed tags taken at the first full sync's rate (`tags_per_second`) on the same receiver.
fn print_scan_bound(catch_up: &Row, scan: &Row, copies: u64, tags_per_second: f64) {
    let copy_time = copies as f64 / tags_per_second;
    let bound = 1.5 * scan.wall.as_secs_f64() + copy_time;
    let took = catch_up.wall.as_secs_f64();
    println!(
        "1.5 x plain scan ({:.2} s) + {copies} copies at the first sync's {tags_per_second:.0} tags/s ({copy_time:.2} s) \
         = {bound:.2} s; the catch-up took {took:.2} s: {}",
        scan.wall.as_secs_f64(),
        if took <= bound { "met" } else { "not met" }
    );
}

/// The receiver shares this machine's cores with rehydrate: a run cannot take less than the CPU both
/// used, spread over every core. Says what that bound allows the catch-up against (a) here.
fn print_cpu_bound(catch_up: &Row, fresh: &Row) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let used = catch_up.cpu.unwrap_or_default() + catch_up.receiver_cpu.unwrap_or_default();
    let floor = used.as_secs_f64() / cores;
    println!(
        "CPU: the catch-up used {:.2} s (rehydrate {:.2} s, receiving registry {:.2} s); on {cores} cores it cannot take \
         less than {floor:.2} s here, so (a) / catch-up cannot exceed {:.1}x on this machine",
        used.as_secs_f64(),
        catch_up.cpu.unwrap_or_default().as_secs_f64(),
        catch_up.receiver_cpu.unwrap_or_default().as_secs_f64(),
        fresh.wall.as_secs_f64() / floor
    );
}

fn main() {
    let repositories: usize =
        std::env::var("REHYDRATE_BENCH_CATCHUP_REPOS").ok().map(|v| v.parse().unwrap()).unwrap_or(100_000);
    let rtt_ms: u64 = std::env::var("REHYDRATE_BENCH_TARGET_RTT_MS").ok().map(|v| v.parse().unwrap()).unwrap_or(0);
    let work = bench_dir().join(format!("catch-up-{repositories}"));
    let _ = std::fs::remove_dir_all(&work);
    let (source_root, target_root, copy_root) = (work.join("source"), work.join("target"), work.join("target-copy"));
    for dir in [&source_root, &target_root, &copy_root] {
        std::fs::create_dir_all(dir).unwrap();
    }
    eprintln!("generating {repositories} repositories ...");
    let spec = SynthSpec { repositories, tags_per_repository: 1, images: 64, ..SynthSpec::default() };
    let truth = generate(&source_root, &spec, 2).unwrap();
    let source = source_root.to_str().unwrap();

    let target = Registry::start(&target_root);
    // The first sync is set-up, not measured: no simulated round trip.
    let proxy = FaultProxy::start(&target.url, "/", 0, Vec::new());
    let journal = work.join("journal.redb");
    let journal = journal.to_str().unwrap();
    let sync_args = |target: &str, journal: &str| -> Vec<String> {
        [
            "sync",
            source,
            target,
            "--plain-http",
            "--journal",
            journal,
            "--log-format",
            "json",
            "--push-concurrency",
            "16",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    eprintln!("the first, full sync ...");
    let args = sync_args(&proxy.url, journal);
    let first = rehydrate(&args.iter().map(String::as_str).collect::<Vec<_>>()).wall;
    eprintln!("full sync: {:.1} s", first.as_secs_f64());
    drop(target);
    let copied = Command::new("cp").args(["-a", "--reflink=auto"]).arg(target_root.join(".")).arg(&copy_root).status();
    assert!(copied.unwrap().success(), "copying the target for (a)");
    let keep = std::env::var("REHYDRATE_BENCH_CATCHUP_KEEP").is_ok_and(|value| value == "1");
    if keep {
        std::fs::copy(journal, work.join("journal-after-first-sync.redb")).unwrap();
        let copied = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(&copy_root)
            .arg(work.join("target-after-first-sync"))
            .status();
        assert!(copied.unwrap().success(), "keeping the target after the first sync");
    }
    let target = Registry::start(&target_root);
    let proxy = FaultProxy::start(&target.url, "/", 0, Vec::new());
    proxy.state.lock().unwrap().delay = Duration::from_millis(rtt_ms);

    let changed = change_one_percent(&source_root, &truth);
    // The copy of the target above pushed the source tree out of the page cache; every measured run
    // should find it as a scan run just before it would (the plain scan below is measured warm too).
    eprintln!("{} tags changed; a warm-up scan, then the catch-up ...", changed.len());
    rehydrate(&["scan", source, "--output", "/dev/null"]);
    let args = sync_args(&proxy.url, journal);
    let (catch_up, fields) = catch_up_row(
        "catch-up (the same journal)",
        (&target, &proxy),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &changed,
    );
    assert_eq!(fields["failed"], 0, "the catch-up failed tags");

    let plain_scan = rehydrate(&["scan", source, "--output", "/dev/null"]);
    let (scan_listings, scan_reads) = storage_requests(&plain_scan.stderr);
    let scan = Row {
        name: "plain scan of the same tree".into(),
        wall: plain_scan.wall,
        cpu: Some(plain_scan.cpu),
        receiver_cpu: None,
        listings: Some(scan_listings),
        reads: Some(scan_reads),
        target_requests: 0,
        unchanged_requests: None,
        note: String::new(),
    };

    let copy_target = Registry::start(&copy_root);
    let copy_proxy = FaultProxy::start(&copy_target.url, "/", 0, Vec::new());
    copy_proxy.state.lock().unwrap().delay = Duration::from_millis(rtt_ms);
    let fresh = work.join("fresh-journal.redb");
    let args = sync_args(&copy_proxy.url, fresh.to_str().unwrap());
    let (fresh_row, _) = catch_up_row(
        "(a) the same catch-up with a fresh journal",
        (&copy_target, &copy_proxy),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &changed,
    );
    // (b) takes minutes at 100,000 repositories and does not depend on rehydrate: it can be left out.
    let run_peer = std::env::var("REHYDRATE_BENCH_CATCHUP_PEER").map_or(true, |value| value != "0");
    let peer = run_peer.then(|| peer_recheck(&source_root, &copy_target, 8));

    println!(
        "\n{repositories} repositories, {} tags; {} changed (new, moved, deleted in equal parts); target: the real \
         registry, {rtt_ms} ms added per target request; first full sync {:.1} s\n",
        truth.len(),
        changed.len(),
        first.as_secs_f64()
    );
    println!(
        "| run | wall time | storage listings | link reads | target requests | of them for unchanged tags | CPU: \
         rehydrate | CPU: receiver | |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let show = |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    let seconds = |value: Option<Duration>| value.map(|v| format!("{:.2} s", v.as_secs_f64())).unwrap_or("-".into());
    for row in [Some(&catch_up), Some(&scan), Some(&fresh_row), peer.as_ref()].into_iter().flatten() {
        println!(
            "| {} | {:.2} s | {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            row.wall.as_secs_f64(),
            show(row.listings),
            show(row.reads),
            row.target_requests,
            show(row.unchanged_requests),
            seconds(row.cpu),
            seconds(row.receiver_cpu),
            row.note
        );
    }
    let peer_ratio = peer.map(|peer| format!("{:.1}x", peer.wall.as_secs_f64() / catch_up.wall.as_secs_f64()));
    println!(
        "\ncatch-up / plain scan: {:.2}x; (a) / catch-up: {:.1}x; (b) / catch-up: {}",
        catch_up.wall.as_secs_f64() / scan.wall.as_secs_f64(),
        fresh_row.wall.as_secs_f64() / catch_up.wall.as_secs_f64(),
        peer_ratio.unwrap_or_else(|| "not run".into())
    );
    let copies = fields["new"] + fields["moved"];
    print_scan_bound(&catch_up, &scan, copies, truth.len() as f64 / first.as_secs_f64());
    print_cpu_bound(&catch_up, &fresh_row);
    if keep {
        eprintln!(
            "kept {} (target-after-first-sync and journal-after-first-sync.redb: the state after the first sync)",
            work.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(PathBuf::from(&work));
    }
}
