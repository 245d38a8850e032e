//! What the benchmarks share: where their data lives, generated trees kept between runs, and a
//! child's peak memory, a simulated round trip, a Garage server.
// Each benchmark uses what it needs of the shared helpers.
#![allow(dead_code)]

pub mod changes;
pub mod garage;
pub mod latency;

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rehydrate::synth::{generate, SynthSpec};

/// Where generated trees go: `REHYDRATE_BENCH_DIR`, or `target/bench-data`.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("REHYDRATE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"))
}

/// Generates (once) the tree `name` from `spec`, kept between runs; returns its root and tag count.
pub fn cached_tree(name: &str, spec: &SynthSpec) -> (PathBuf, usize) {
    let root = bench_dir().join(name);
    let marker = root.join("complete");
    if let Ok(count) = std::fs::read_to_string(&marker) {
        return (root, count.trim().parse().unwrap());
    }
    let _ = std::fs::remove_dir_all(&root);
    eprintln!("generating {} repositories under {} ...", spec.repositories, root.display());
    let started = Instant::now();
    let truth = generate(&root, spec, 2).unwrap();
    std::fs::write(&marker, truth.len().to_string()).unwrap();
    eprintln!("generated in {:.0} s", started.elapsed().as_secs_f64());
    (root, truth.len())
}

/// Waits for `child` to exit, polling its peak resident memory (`VmHWM`, KiB) meanwhile. `wait4`'s
/// `ru_maxrss` would also count this (large) benchmark process, which the child shares until `exec`.
pub fn wait_with_peak_rss(child: &mut Child) -> u64 {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    loop {
        if let Some(hwm) = std::fs::read_to_string(&status_path).ok().and_then(|s| vm_hwm_kib(&s)) {
            peak_kib = peak_kib.max(hwm);
        }
        if child.try_wait().unwrap().is_some() {
            return peak_kib;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A child run to its end: its wall time, peak resident memory (KiB), standard error and exit status.
pub struct MeasuredRun {
    pub wall: Duration,
    pub peak_kib: u64,
    pub stderr: String,
    pub status: ExitStatus,
}

/// Runs `command` to its end, its standard output dropped and its standard error kept (read as it comes,
/// so that a long log cannot stall the pipe), polling its peak memory meanwhile.
pub fn run_measured(command: &mut Command) -> MeasuredRun {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let peak_kib = wait_with_peak_rss(&mut child);
    let wall = started.elapsed();
    let status = child.wait().unwrap();
    MeasuredRun { wall, peak_kib, stderr: reader.join().unwrap(), status }
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The sizes a benchmark runs at: numbers separated by commas in the variable `name`, else `default`.
pub fn sizes_from_env(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse().unwrap_or_else(|_| panic!("{name}: numbers separated by commas")))
        .collect()
}

/// CPU time (user and system) process `pid` has used so far: on this machine a server (the receiving
/// registry, the S3 store) is what limits a run, so benchmarks show its CPU beside each tool.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (in parentheses, which may hold spaces): utime is the 12th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// CPU time (user and system) of every child process this one has waited for so far: the difference
/// across one waited-for run is that run's CPU.
pub fn waited_children_cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0, "getrusage");
    let seconds = |time: libc::timeval| Duration::new(time.tv_sec as u64, time.tv_usec as u32 * 1000);
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The flags of a measured sync: a JSON log to read its figures from (`SyncFigures`), no progress
/// lines, 16 pushes at once.
pub const MEASURED_SYNC: [&str; 6] = ["--log-format", "json", "--progress-interval", "0", "--push-concurrency", "16"];

/// What a sync's JSON log (`--log-format json`) says of its run: the timeline and the summary.
pub struct SyncFigures {
    pub first_push: f64,
    pub listing_finished: f64,
    pub total: f64,
    pub pushed: u64,
    pub failed: u64,
}

impl SyncFigures {
    /// Reads the `timeline` and `sync finished` lines of a sync's JSON log.
    pub fn from_log(stderr: &str) -> SyncFigures {
        let lines: Vec<serde_json::Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let find = |prefix: &str| {
            lines
                .iter()
                .find(|l| l["message"].as_str().unwrap_or_default().starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line: {stderr}"))
                .clone()
        };
        let (timeline, summary) = (find("timeline"), find("sync finished"));
        SyncFigures {
            first_push: timeline["first_done_seconds"].as_f64().unwrap(),
            listing_finished: timeline["listing_finished_seconds"].as_f64().unwrap(),
            total: timeline["total_seconds"].as_f64().unwrap(),
            pushed: summary["pushed"].as_u64().unwrap(),
            failed: summary["failed"].as_u64().unwrap(),
        }
    }
}

/// skopeo (Debian) copying every tag of `truth` from registry `from` to registry `to` (host:port,
/// HTTPS or plain HTTP), `parallel` copies at once, each tag as `skopeo sync` would copy it.
pub fn skopeo_copy_all(from: &str, to: &str, truth: &[rehydrate::synth::TruthRecord], parallel: usize) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| {
                while let Some(record) = truth.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                    let output = std::process::Command::new("skopeo")
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
}

/// The distribution release the copy benchmarks receive into, built with the Go on this machine.
const REGISTRY_MODULE: &str = "github.com/distribution/distribution/v3/cmd/registry@v3.0.0";

/// Points the registries of this benchmark (`support::Registry`, through `REHYDRATE_REGISTRY_BIN`) at
/// distribution v3.0.0 built with the current Go, once, into `target/bench-tools`, unless the variable
/// is set already. Why: Debian's `docker-registry` is built with Go 1.19, whose SHA-256 does not use the
/// CPU's SHA instructions; every upload is hashed on one core at about 250 MiB/s, and that alone set the
/// pace of every large-layer copy (8 s of its CPU for a 2 GiB layer, 3.3 s when built with Go 1.26).
/// Harbor's own registry images are built with a current Go. Without `go` on the PATH, Debian's is used
/// and a line says so.
pub fn use_current_registry() {
    if std::env::var_os("REHYDRATE_REGISTRY_BIN").is_some() {
        return;
    }
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-tools");
    let binary = tools.join("registry");
    if !binary.exists() {
        eprintln!("building {REGISTRY_MODULE} with go into {} ...", tools.display());
        let built = Command::new("go").args(["install", REGISTRY_MODULE]).env("GOBIN", &tools).status();
        if !built.is_ok_and(|status| status.success()) {
            eprintln!("could not build it (is go on the PATH?): the receiver is Debian's docker-registry (Go 1.19)");
            return;
        }
    }
    std::env::set_var("REHYDRATE_REGISTRY_BIN", &binary);
    // distribution v3 exports traces to localhost:4318 unless told not to.
    std::env::set_var("OTEL_TRACES_EXPORTER", "none");
}
