//! Fixed against adaptive concurrency toward a target that sheds load: the real registry behind the
//! fault proxy, which answers 429 above `REHYDRATE_BENCH_WINDOW_LIMIT` requests in flight (default 8)
//! and adds `REHYDRATE_BENCH_TARGET_RTT_MS` (default 20) to every request. The same synthetic layout
//! (`REHYDRATE_BENCH_WINDOW_REPOS` repositories, default 400, one tag each) is synced into an empty
//! registry with `--push-concurrency 32`, once with the adaptive window and once with `--fixed-window`.
//! `cargo bench --bench window`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rehydrate::synth::{generate, SynthSpec};
use support::fault_proxy::FaultProxy;
use support::{number_before, Registry};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map(|v| v.parse().unwrap()).unwrap_or(default)
}

fn main() {
    let repositories = env_number("REHYDRATE_BENCH_WINDOW_REPOS", 400) as usize;
    let limit = env_number("REHYDRATE_BENCH_WINDOW_LIMIT", 8) as usize;
    let rtt = Duration::from_millis(env_number("REHYDRATE_BENCH_TARGET_RTT_MS", 20));
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec { repositories, tags_per_repository: 1, images: 32, ..SynthSpec::default() };
    let truth = generate(dir.path(), &spec, 2).unwrap();
    let source = dir.path().to_str().unwrap();
    let rehydrate = env!("CARGO_BIN_EXE_rehydrate");

    let mut rows = Vec::new();
    for (name, extra) in [("fixed window of 32", vec!["--fixed-window"]), ("adaptive window, ceiling 32", vec![])] {
        let target_dir = tempfile::tempdir().unwrap();
        let target = Registry::start(target_dir.path());
        let proxy = FaultProxy::start(&target.url, "/", 0, Vec::new());
        {
            let mut state = proxy.state.lock().unwrap();
            state.max_in_flight = Some(limit);
            state.delay = rtt;
        }
        let started = Instant::now();
        let mut args = vec!["sync", source, &proxy.url, "--plain-http", "--no-journal", "--push-concurrency", "32"];
        args.extend(extra);
        let output = std::process::Command::new(rehydrate).args(&args).output().unwrap();
        let wall = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let state = proxy.state.lock().unwrap();
        let landed = target.inventory().len();
        rows.push(format!(
            "| {name} | {:.2} s | {} | {} | {} | {} of {} | {} |",
            wall.as_secs_f64(),
            state.requests - state.shed,
            state.shed,
            number_before(&stderr, "sync finished", "retries"),
            landed,
            truth.len(),
            number_before(&stderr, "windows:", "in flight at the end"),
        ));
    }
    println!(
        "\n{repositories} repositories, one tag each; the target answers 429 above {limit} requests in flight; \
         {} ms added per request\n",
        rtt.as_millis()
    );
    println!("| run | wall time | requests answered | 429s | retries | tags landed | window at the end |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
