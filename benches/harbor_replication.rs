//! Harbor's own replication beside `rehydrate sync`, into a real Harbor (run by hand, never in CI: it
//! needs a Harbor with its jobservice, given by `REHYDRATE_BENCH_HARBOR_URL` with an administrator's
//! `REHYDRATE_BENCH_HARBOR_USERNAME` (default `admin`) and `REHYDRATE_BENCH_HARBOR_PASSWORD`).
//!
//! A synthetic layout of `REHYDRATE_BENCH_REPLICATION_REPOS` repositories (default 10,000, one tag each,
//! 64 distinct images) is served by the real distribution registry (Debian `docker-registry`) behind a
//! counting proxy. Then, into fresh projects of that Harbor, with the same mapping (`X/<repository>`,
//! no flattening):
//!   (a) Harbor's replication: a registry endpoint for that registry, a pull policy, one manual
//!       execution, until it ends;
//!   (b) `rehydrate sync` of the same storage, with a journal, through a counting proxy to Harbor.
//! For each: the time until the first artifact is listed by Harbor's API (both polled the same way,
//! every 100 ms, anonymously: the projects are public), the whole run, the requests, the peak memory
//! (rehydrate's own; Harbor's jobservice and core, sampled). Then 1% of the tags change in storage (new,
//! moved, deleted) and (b) runs again as a catch-up with its journal, beside the same catch-up with a
//! fresh journal, and (a) runs again.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::changes::change_one_percent;
use common::{bench_dir, run_measured};
use rehydrate::synth::{generate, SynthSpec};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use support::fault_proxy::FaultProxy;
use support::Registry;

/// Harbor's REST API as an administrator.
struct HarborApi {
    url: String,
    username: String,
    password: String,
    client: Client,
}

impl HarborApi {
    fn from_env() -> HarborApi {
        let url = std::env::var("REHYDRATE_BENCH_HARBOR_URL").expect("REHYDRATE_BENCH_HARBOR_URL: a Harbor to use");
        HarborApi {
            url: url.trim_end_matches('/').to_string(),
            username: std::env::var("REHYDRATE_BENCH_HARBOR_USERNAME").unwrap_or_else(|_| "admin".into()),
            password: std::env::var("REHYDRATE_BENCH_HARBOR_PASSWORD").expect("REHYDRATE_BENCH_HARBOR_PASSWORD"),
            client: Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::blocking::Response {
        let request = self.client.request(method, self.url(path));
        let request = request.basic_auth(&self.username, Some(&self.password));
        self.send(request, body)
    }

    /// The URL of an API path.
    fn url(&self, path: &str) -> String {
        format!("{}/api/v2.0/{path}", self.url)
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder, body: Option<Value>) -> reqwest::blocking::Response {
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
        .send()
        .unwrap()
    }

    /// POSTs `body` and returns the id at the end of the answer's `Location`.
    fn create(&self, path: &str, body: Value) -> i64 {
        let response = self.call(reqwest::Method::POST, path, Some(body));
        assert_eq!(response.status().as_u16(), 201, "POST {path}: {}", response.text().unwrap_or_default());
        let location = response.headers()["location"].to_str().unwrap().to_string();
        location.rsplit('/').next().unwrap().parse().unwrap()
    }

    fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).json().unwrap_or(Value::Null)
    }

    /// Whether the public project `project` lists at least one repository holding an artifact. Asked
    /// anonymously: with a password, each poll would cost Harbor a password check (PBKDF2, 0.1 to 0.3 s
    /// of its CPU here), taken from the very runs measured, and lag the answer as much.
    fn has_an_artifact(&self, project: &str) -> bool {
        let url = self.url(&format!("projects/{project}/repositories?page_size=10"));
        let repositories: Value = self.send(self.client.get(url), None).json().unwrap_or(Value::Null);
        repositories.as_array().is_some_and(|r| r.iter().any(|r| r["artifact_count"].as_u64().unwrap_or(0) > 0))
    }

    /// The number of repositories project `project` holds.
    fn repositories(&self, project: &str) -> u64 {
        self.get(&format!("projects/{project}/summary"))["repo_count"].as_u64().unwrap_or(0)
    }
}

/// Polls Harbor's API every 100 ms from now until `stop`, for the first artifact in `project`.
fn watch_first_artifact(api: Arc<HarborApi>, project: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    let started = Instant::now();
    std::thread::spawn(move || loop {
        if api.has_an_artifact(&project) {
            return started.elapsed().as_secs_f64();
        }
        if stop.load(Ordering::Relaxed) {
            return f64::NAN;
        }
        std::thread::sleep(Duration::from_millis(100));
    })
}

/// The largest resident memory (KiB) of the processes named `name`, sampled every 200 ms until `stop`.
fn watch_rss(name: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    // The kernel keeps the first 15 bytes of a process's name.
    let name = &name[..name.len().min(15)];
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
                if status.lines().next().is_some_and(|l| l.split_whitespace().nth(1) == Some(name)) {
                    let rss = status.lines().find(|l| l.starts_with("VmRSS:"));
                    let kib = rss.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0);
                    peak = u64::max(peak, kib);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        peak
    })
}

struct Row {
    run: &'static str,
    first: f64,
    total: f64,
    source_requests: String,
    target_requests: String,
    memory: String,
    note: String,
}

fn print(rows: &[Row]) {
    println!("| run | first artifact listed | whole run | source requests | requests to Harbor | peak memory | |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} s | {:.1} s | {} | {} | {} | {} |",
            r.run, r.first, r.total, r.source_requests, r.target_requests, r.memory, r.note
        );
    }
}

/// Requests a counting proxy has passed on so far.
fn requests(proxy: &FaultProxy) -> u64 {
    proxy.state.lock().unwrap().requests
}

/// Harbor's replication by `policy` (everything in the registry behind `source`) into `project`, one
/// manual execution until it ends.
fn replicate(api: &Arc<HarborApi>, policy: i64, project: &str, source: &FaultProxy, run: &'static str) -> Row {
    let before = requests(source);
    let stop = Arc::new(AtomicBool::new(false));
    let first = watch_first_artifact(api.clone(), project.to_string(), stop.clone());
    let [jobservice, core] = ["harbor_jobservice", "harbor_core"].map(|name| watch_rss(name, stop.clone()));
    let started = Instant::now();
    let execution = api.create("replication/executions", json!({"policy_id": policy}));
    // Every 2 s: each poll costs Harbor a password check, taken from its replication.
    let status = loop {
        std::thread::sleep(Duration::from_secs(2));
        let execution = api.get(&format!("replication/executions/{execution}"));
        let status = execution["status"].as_str().unwrap_or_default().to_string();
        if !["InProgress", "Pending", ""].contains(&status.as_str()) {
            break execution;
        }
    };
    let total = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    Row {
        run,
        first: first.join().unwrap(),
        total,
        source_requests: format!("{} (registry API)", requests(source) - before),
        target_requests: "- (inside Harbor)".into(),
        memory: format!(
            "jobservice {:.1} MiB, core {:.1} MiB",
            jobservice.join().unwrap() as f64 / 1024.0,
            core.join().unwrap() as f64 / 1024.0
        ),
        note: format!(
            "{}: {} tasks, {} succeeded, {} failed; {} repositories in the project",
            status["status"].as_str().unwrap_or_default(),
            status["total"],
            status["succeed"],
            status["failed"],
            api.repositories(project)
        ),
    }
}

/// `rehydrate sync` of `source_root` into `project` through `target` (a counting proxy) with `journal`.
fn sync(
    api: &Arc<HarborApi>,
    source_root: &str,
    target: &FaultProxy,
    project: &str,
    journal: &str,
    run: &'static str,
) -> Row {
    let before = requests(target);
    let stop = Arc::new(AtomicBool::new(false));
    let first = watch_first_artifact(api.clone(), project.to_string(), stop.clone());
    let measured = run_measured(
        Command::new(env!("CARGO_BIN_EXE_rehydrate"))
            .args(["sync", source_root, &target.url, "--plain-http", "--dest-namespace", project, "--flatten", "0"])
            .args(["--journal", journal, "--log-format", "json", "--progress-interval", "0"])
            .env("REHYDRATE_TARGET_USERNAME", &api.username)
            .env("REHYDRATE_TARGET_PASSWORD", &api.password),
    );
    stop.store(true, Ordering::Relaxed);
    let (log, peak, total) = (measured.stderr, measured.peak_kib, measured.wall.as_secs_f64());
    let summary: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"].as_str().unwrap_or_default().starts_with("sync finished"))
        .unwrap_or_else(|| panic!("no summary: {log}"));
    let timeline: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"].as_str().unwrap_or_default().starts_with("timeline"))
        .unwrap_or(Value::Null);
    let storage: String = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"].as_str().unwrap_or_default().starts_with("storage requests"))
        .and_then(|l| l["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    Row {
        run,
        first: first.join().unwrap(),
        total,
        source_requests: storage.trim_start_matches("storage requests: ").split(" (").next().unwrap_or("").to_string(),
        target_requests: (requests(target) - before).to_string(),
        memory: format!("{:.1} MiB", peak as f64 / 1024.0),
        note: format!(
            "first push after {:.2} s by its own clock; {} pushed ({} new, {} moved), {} already there, {} \
             unchanged from the journal, {} gone, {} failed",
            timeline["first_done_seconds"].as_f64().unwrap_or(f64::NAN),
            summary["pushed"],
            summary["new"],
            summary["moved"],
            summary["already_there"],
            summary["unchanged"],
            summary["gone"],
            summary["failed"]
        ),
    }
}

fn main() {
    let api = Arc::new(HarborApi::from_env());
    let repositories: usize =
        std::env::var("REHYDRATE_BENCH_REPLICATION_REPOS").ok().map(|v| v.parse().unwrap()).unwrap_or(10_000);
    let work = bench_dir().join(format!("harbor-replication-{repositories}"));
    let _ = std::fs::remove_dir_all(&work);
    let source_root = work.join("source");
    std::fs::create_dir_all(&source_root).unwrap();
    eprintln!("generating {repositories} repositories ...");
    let spec = SynthSpec { repositories, tags_per_repository: 1, images: 64, ..SynthSpec::default() };
    let truth = generate(&source_root, &spec, 2).unwrap();
    // Harbor refuses some synthetic names (a project name with `--`): both runs leave them out alike,
    // Harbor by failing their tasks, rehydrate by failing their tags; counted in the notes.
    let registry = Registry::start(&source_root);
    let source = FaultProxy::start(&registry.url, "/", 0, Vec::new());
    let target = FaultProxy::start(&api.url, "/", 0, Vec::new());
    let suffix = std::process::id();
    let (replicated, synced) = (format!("bench-replication-{suffix}"), format!("bench-rehydrate-{suffix}"));
    for project in [&replicated, &synced] {
        // Public, so that the first artifact can be watched for without a password.
        api.create("projects", json!({"project_name": project, "metadata": {"public": "true"}}));
    }
    let endpoint = api.create(
        "registries",
        json!({"name": format!("bench-source-{suffix}"), "type": "docker-registry", "url": source.url, "insecure": true}),
    );
    let policy = api.create(
        "replication/policies",
        json!({
            "name": format!("bench-{suffix}"), "src_registry": {"id": endpoint}, "dest_namespace": replicated,
            "dest_namespace_replace_count": 0, "trigger": {"type": "manual"}, "enabled": true, "override": true,
            "filters": [], "speed": -1, "copy_by_chunk": false,
        }),
    );
    let source_root = source_root.to_str().unwrap();
    let journal = work.join("journal.redb");
    let journal = journal.to_str().unwrap();
    let rows = Mutex::new(Vec::new());
    let record = |row: Row| {
        print(std::slice::from_ref(&row));
        rows.lock().unwrap().push(row);
    };

    eprintln!("(a) Harbor's replication ...");
    record(replicate(&api, policy, &replicated, &source, "(a) Harbor replication"));
    eprintln!("(b) rehydrate sync ...");
    record(sync(&api, source_root, &target, &synced, journal, "(b) rehydrate sync"));

    let changed = change_one_percent(std::path::Path::new(source_root), &truth);
    eprintln!("{} repositories changed; catch-ups ...", changed.len());
    record(sync(&api, source_root, &target, &synced, journal, "(b) catch-up, the same journal"));
    let fresh = work.join("fresh.redb");
    record(sync(&api, source_root, &target, &synced, fresh.to_str().unwrap(), "(b) catch-up, a fresh journal"));
    record(replicate(&api, policy, &replicated, &source, "(a) Harbor replication again"));

    let rows = rows.into_inner().unwrap();
    println!("\n{repositories} repositories, {} tags; Harbor at {}", truth.len(), api.url);
    print(&rows);
    println!(
        "\nratios: whole run (a)/(b) {:.1}x, first artifact (a)/(b) {:.1}x, catch-up fresh/same journal {:.1}x, \
         Harbor's re-run / catch-up {:.1}x",
        rows[0].total / rows[1].total,
        rows[0].first / rows[1].first,
        rows[3].total / rows[2].total,
        rows[4].total / rows[2].total
    );
}
