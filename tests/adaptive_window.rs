//! A target that sheds load: above N requests in flight it answers 429 (a rate-limiting proxy in front
//! of a shared Harbor does this). The real registry sits behind the fault proxy in that mode, with a
//! round trip added. With the adaptive window (the default) the run converges near N, lands every tag,
//! and meets far fewer 429s than a fixed window of 32 (`--fixed-window`). The storage side the same:
//! an S3 store (moto behind the proxy) that answers 503 SlowDown above N listings in flight.

mod support;

use rehydrate::synth::{generate, SynthSpec};
use support::fault_proxy::FaultProxy;
use support::servers::Moto;
use support::*;

/// Requests the target takes at once before it sheds load.
const LIMIT: usize = 6;
const CEILING: &str = "32";

struct Run {
    shed: u64,
    most_in_flight: usize,
    landed: usize,
    stderr: String,
    exit: Option<i32>,
}

/// The fault proxy in front of `upstream`, shedding load above `LIMIT` requests in flight (with 429s, or
/// as S3 does with 503 SlowDown), 20 ms added per request.
fn shedding_proxy(upstream: &str, shed_as_s3: bool) -> FaultProxy {
    let proxy = FaultProxy::start(upstream, "/", 0, Vec::new());
    {
        let mut state = proxy.state.lock().unwrap();
        state.max_in_flight = Some(LIMIT);
        state.shed_as_s3 = shed_as_s3;
        state.delay = std::time::Duration::from_millis(20);
    }
    proxy
}

fn sync_into_shedding_target(source: &str, extra: &[&str]) -> Run {
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let proxy = shedding_proxy(&target.url, false);
    let mut args = vec!["sync", source, &proxy.url, "--plain-http", "--no-journal", "--push-concurrency", CEILING];
    args.extend_from_slice(extra);
    let output = rehydrate(&args);
    let state = proxy.state.lock().unwrap();
    Run {
        shed: state.shed,
        most_in_flight: state.most_in_flight,
        landed: target.inventory().len(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        exit: output.status.code(),
    }
}

#[test]
fn the_window_converges_below_a_target_that_sheds_load_and_lands_everything() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec { repositories: 60, tags_per_repository: 1, images: 12, ..SynthSpec::default() };
    let truth = generate(dir.path(), &spec, 2).unwrap();
    let source = dir.path().to_str().unwrap();

    let adaptive = sync_into_shedding_target(source, &[]);
    assert_eq!(adaptive.exit, Some(0), "{}", adaptive.stderr);
    assert_eq!(adaptive.landed, truth.len(), "every tag landed");
    let window = number_before(&adaptive.stderr, "windows:", "in flight at the end");
    let cuts = number_before(&adaptive.stderr, "windows:", "times; storage");
    assert!((1..=2 * LIMIT as u64).contains(&window), "the window ended near {LIMIT}: {window}");
    assert!(cuts >= 1, "the target's 429s halved the window: {}", adaptive.stderr);

    let fixed = sync_into_shedding_target(source, &["--fixed-window"]);
    assert!(fixed.most_in_flight <= LIMIT && adaptive.most_in_flight <= LIMIT, "the proxy held its limit");
    let adaptive_retries = number_before(&adaptive.stderr, "sync finished", "retries");
    let fixed_retries = number_before(&fixed.stderr, "sync finished", "retries");
    eprintln!(
        "adaptive: {} 429s, {adaptive_retries} retries, window {window} after {cuts} cuts; fixed 32: {} 429s, \
         {fixed_retries} retries, {} of {} landed",
        adaptive.shed,
        fixed.shed,
        fixed.landed,
        truth.len()
    );
    assert!(adaptive.shed * 3 < fixed.shed, "far fewer 429s: adaptive {}, fixed {}", adaptive.shed, fixed.shed);
    assert!(adaptive_retries * 3 < fixed_retries, "far fewer retries: {adaptive_retries} against {fixed_retries}");
}

struct Scan {
    shed: u64,
    tags: usize,
    stderr: String,
}

fn scan_through_shedding_store(moto: &Moto, extra: &[&str]) -> Scan {
    let proxy = shedding_proxy(&moto.url, true);
    let env = moto.env_through(&proxy.url);
    let mut args = vec!["scan", "s3://shedding", "--list-concurrency", CEILING];
    args.extend_from_slice(extra);
    let output = rehydrate_with_env(&args, &env);
    let shed = proxy.state.lock().unwrap().shed;
    Scan {
        shed,
        tags: tag_records(&inventory_lines(&output.stdout)).len(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn the_storage_window_converges_below_a_store_that_sheds_load() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec { repositories: 120, tags_per_repository: 1, images: 8, ..SynthSpec::default() };
    let truth = generate(dir.path(), &spec, 2).unwrap();
    let moto = Moto::start();
    moto.create_bucket("shedding");
    moto.put_tree("shedding", dir.path());

    let adaptive = scan_through_shedding_store(&moto, &[]);
    assert_eq!(adaptive.tags, truth.len(), "every tag found: {}", adaptive.stderr);
    let window = number_before(&adaptive.stderr, "storage window:", "in flight at the end");
    let cuts = number_before(&adaptive.stderr, "storage window:", "times");
    assert!((1..=2 * LIMIT as u64).contains(&window), "the window ended near {LIMIT}: {window}");
    assert!(cuts >= 1, "the store's SlowDowns halved the window: {}", adaptive.stderr);

    let fixed = scan_through_shedding_store(&moto, &["--fixed-window"]);
    eprintln!(
        "adaptive: {} SlowDowns, window {window} after {cuts} cuts; fixed 32: {} SlowDowns",
        adaptive.shed, fixed.shed
    );
    assert!(adaptive.shed * 3 < fixed.shed, "far fewer SlowDowns: adaptive {}, fixed {}", adaptive.shed, fixed.shed);
}
