//! The soak (run by hand): a sync into the Harbor emulator through the fault-injecting proxy (one
//! request in ten failing, every kind of fault in turn, and every other large body cut), SIGKILLed at
//! random moments again and again, started again each time, then let finish. At the end: `verify`
//! passes, every blob on the target hashes to its digest, and no manifest was accepted twice.
//!
//! `cargo bench --bench soak` (`REHYDRATE_SOAK_KILLS`, default 25; `REHYDRATE_SOAK_SEED` to replay a
//! run; `REHYDRATE_SOAK_REPOS`, default 700). `scripts/soak.sh` runs it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use rehydrate::synth::{generate, SynthSpec};
use support::fault_proxy::{every_target_fault, FaultProxy};
use support::harbor::HarborEmulator;
use support::{assert_blobs_intact, rehydrate_with_env, run_and_kill};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map(|v| v.parse().expect("a number")).unwrap_or(default)
}

/// xorshift: kill moments that a seed replays.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn main() {
    let kills = env_number("REHYDRATE_SOAK_KILLS", 25);
    let repositories = env_number("REHYDRATE_SOAK_REPOS", 700) as usize;
    let seed = env_number(
        "REHYDRATE_SOAK_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    );
    let mut random = seed | 1;
    println!("soak: {repositories} repositories, {kills} kills, seed {seed}");

    let source = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        repositories,
        tags_per_repository: 2,
        images: 60,
        layer_bytes: 1200 << 10,
        layers_per_image: 2,
        ..SynthSpec::default()
    };
    let truth: Vec<_> =
        generate(source.path(), &spec, 2).unwrap().into_iter().filter(|t| !t.repository.starts_with("org--")).collect();
    let harbor_dir = tempfile::tempdir().unwrap();
    let harbor = HarborEmulator::start(harbor_dir.path());
    let plan = every_target_fault(Duration::from_secs(2), Duration::from_secs(5));
    let proxy = FaultProxy::start(&harbor.url, "/", 10, plan);
    proxy.state.lock().unwrap().large_body_reset_every = 3;
    let journal = tempfile::tempdir().unwrap();
    let journal_path = journal.path().join("journal.redb");
    let root = source.path().to_str().unwrap().to_string();
    let command = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rehydrate"));
        command
            .args([
                "sync",
                &root,
                &proxy.url,
                "--plain-http",
                "--exclude",
                "org--*/**",
                "--stall-timeout",
                "1",
                "--chunk-size",
                "1048576",
            ])
            .arg("--journal")
            .arg(&journal_path)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .envs(harbor.env_admin());
        command
    };
    let landed = || harbor.state.lock().unwrap().tags.len();

    let started = Instant::now();
    let mut killed = 0;
    let mut round = 0;
    // Until the asked number of kills has landed (a run that finishes before its moment is no kill).
    while killed < kills && landed() < truth.len() {
        round += 1;
        // A random moment between 50 ms and 4 s into the run: during startup, listing, uploads,
        // manifest PUTs, journal writes.
        let after = Duration::from_millis(50 + next_random(&mut random) % 3950);
        let begun = Instant::now();
        let before = landed();
        if run_and_kill(command(), Duration::from_secs(120), || begun.elapsed() >= after) {
            killed += 1;
            println!(
                "kill {killed:>2} (run {round}): after {:>5} ms, {:>4} -> {:>4} of {} tags on the target",
                after.as_millis(),
                before,
                landed(),
                truth.len()
            );
        } else {
            println!("run {round}: finished before its kill at {} ms", after.as_millis());
        }
    }
    let last = command().output().unwrap();
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success(), "the last run: {stderr}");
    println!("last run: {}", stderr.lines().rev().find(|l| l.starts_with("sync finished")).unwrap_or_default());

    proxy.stop_faults();
    let injected = proxy.state.lock().unwrap().injected.clone();
    let pushed_twice = harbor.state.lock().unwrap().pushed_twice();
    assert!(pushed_twice.is_empty(), "manifests accepted twice: {pushed_twice:?}");
    assert_eq!(landed(), truth.len(), "every tag is on the target");
    let verify = rehydrate_with_env(
        &["verify", &root, &harbor.url, "--plain-http", "--exclude", "org--*/**"],
        &harbor.env_admin(),
    );
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let blobs = assert_blobs_intact(&harbor.registry.root);
    println!(
        "\nsoak passed in {:.0} s (seed {seed}): {killed} kills, faults injected {injected:?}; {} tags verified, {blobs} blobs on the target all intact, no manifest accepted twice",
        started.elapsed().as_secs_f64(),
        truth.len()
    );
}
