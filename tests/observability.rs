//! What a running sync tells its operator: JSON log lines (progress lines with counters, a summary with
//! the totals) and Prometheus metrics scraped while it runs. The run is held to 40 requests a second
//! (`--max-requests-per-second`) so that it lasts long enough to be watched.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rehydrate::synth::{generate, SynthSpec};
use serde_json::Value;
use support::*;

#[test]
fn a_json_logged_run_reports_progress_and_serves_metrics() {
    let source = tempfile::tempdir().unwrap();
    let truth = generate(
        source.path(),
        &SynthSpec { repositories: 24, tags_per_repository: 1, images: 6, ..SynthSpec::default() },
        1,
    )
    .unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_rehydrate"))
        .args(["sync", source.path().to_str().unwrap(), &target.url, "--plain-http", "--no-journal"])
        .args([
            "--log-format",
            "json",
            "--progress-interval",
            "1",
            "--max-requests-per-second",
            "40",
            "--metrics-addr",
            &metrics_addr,
        ])
        .env("XDG_STATE_HOME", source.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Scrape while the run lasts; keep the last answer.
    let client = reqwest::blocking::Client::new();
    let mut scraped = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut child = child;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        if let Ok(response) = client.get(format!("http://{metrics_addr}/metrics")).send() {
            scraped = response.text().unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    // OpenMetrics (prometheus-client): a counter's family is typed without `_total`, its samples keep it.
    assert!(scraped.contains("# TYPE rehydrate_requests counter"), "{scraped}");
    assert!(scraped.trim_end().ends_with("# EOF"), "{scraped}");
    assert!(
        scraped.contains(r#"rehydrate_requests_total{side="target",operation="PUT manifest",status="201"}"#),
        "{scraped}"
    );
    assert!(
        scraped
            .contains(r#"rehydrate_request_duration_seconds_bucket{le="+Inf",side="target",operation="PUT manifest"}"#),
        "{scraped}"
    );
    assert!(scraped.contains(r#"rehydrate_tags_total{outcome="pushed"}"#), "{scraped}");
    assert!(scraped.contains("rehydrate_bytes_uploaded_total"), "{scraped}");

    let lines: Vec<Value> =
        stderr.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))).collect();
    assert!(lines.iter().all(|l| l["time"].is_string() && l["level"].is_string() && l["message"].is_string()));
    let progress: Vec<&Value> =
        lines.iter().filter(|l| l["message"].as_str().unwrap().starts_with("progress:")).collect();
    assert!(!progress.is_empty(), "progress lines: {stderr}");
    assert!(progress.iter().all(|p| p["pushed"].is_u64() && p["tags_seen"].is_u64()), "{progress:?}");
    let summary =
        lines.iter().find(|l| l["message"].as_str().unwrap().starts_with("sync finished")).expect("a summary");
    assert_eq!(summary["pushed"].as_u64(), Some(truth.len() as u64), "{summary}");
    assert_eq!(summary["failed"].as_u64(), Some(0));
    assert_eq!(target.inventory().len(), truth.len());
}
