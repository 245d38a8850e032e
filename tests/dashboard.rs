//! The Grafana dashboard in `deploy/` draws what a run exports: a real Prometheus (Debian's package)
//! scrapes a real sync every second, and every query of every panel returns data over the run.

mod support;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use rehydrate::synth::{generate, SynthSpec};
use serde_json::Value;
use support::servers::Prometheus;
use support::*;

const DASHBOARD: &str = "deploy/grafana-dashboard.json";

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Every query of the dashboard, with its panel's title, as Grafana sends it for "all jobs" and a
/// 10-second rate interval.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "progress, ETA, rates, refusals, windows, retries, errors, requests...");
    let mut queries = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap().to_string();
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty()).unwrap_or_else(|| panic!("{title}"));
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains("job=~\"$job\""), "{title}: every query follows the job chosen: {expr}");
            queries.push((title.clone(), expr.replace("$job", ".*").replace("$__rate_interval", "10s")));
        }
    }
    queries
}

#[test]
fn every_panel_of_the_dashboard_shows_a_real_sync() {
    let queries = dashboard_queries();
    let source = tempfile::tempdir().unwrap();
    generate(
        source.path(),
        &SynthSpec { repositories: 24, tags_per_repository: 2, images: 6, ..Default::default() },
        1,
    )
    .unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let target = Registry::start(target_dir.path());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let prometheus = Prometheus::start(&metrics_addr);

    // Held to 25 requests a second, the run lasts long enough for several scrapes.
    let start = now();
    let output = Command::new(env!("CARGO_BIN_EXE_rehydrate"))
        .args(["sync", source.path().to_str().unwrap(), &target.url, "--plain-http", "--no-journal"])
        .args(["--max-requests-per-second", "25", "--metrics-addr", &metrics_addr])
        .env("XDG_STATE_HOME", source.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let end = now();
    assert!(
        prometheus.values("rehydrate_tags_total", start, end).len() >= 3,
        "Prometheus scraped the run several times"
    );

    for (title, query) in queries {
        let values = prometheus.values(&query, start, end);
        assert!(values.iter().any(|v| v.is_finite()), "panel {title:?}: {query} returned no data");
    }
    // The progress panel climbs from nothing towards every tag done.
    let done = prometheus.values(&dashboard_queries()[0].1, start, end);
    assert!(done.iter().all(|v| (0.0..=1.0).contains(v)), "{done:?}");
    assert!(done.iter().any(|v| *v > 0.0), "{done:?}");
}
