//! Prometheus metrics (`--metrics-addr`): request counts by side, operation and status, request latency
//! histograms, and the run's own counters (read from `progress::Live` when scraped), served as the text
//! exposition format on `GET /metrics` by a small thread.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    /// (metric name, rendered labels) -> value.
    counters: BTreeMap<(&'static str, String), u64>,
    histograms: BTreeMap<(&'static str, String), Histogram>,
}

static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.get_or_init(Mutex::default).lock().expect("metrics poisoned")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Records one HTTP request: its outcome (a status code, or `error`) and how long it took.
pub fn record_request(side: &str, operation: &str, status: &str, elapsed: Duration) {
    let mut registry = registry();
    *registry
        .counters
        .entry(("rehydrate_requests_total", labels(&[("side", side), ("operation", operation), ("status", status)])))
        .or_default() += 1;
    let histogram = registry
        .histograms
        .entry(("rehydrate_request_duration_seconds", labels(&[("side", side), ("operation", operation)])))
        .or_default();
    let seconds = elapsed.as_secs_f64();
    for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter_mut()) {
        if seconds <= *bound {
            *count += 1;
        }
    }
    histogram.count += 1;
    histogram.sum += seconds;
}

/// A counter or gauge line, with its `# TYPE` line.
pub fn write_metric(out: &mut String, name: &str, kind: &str, help: &str, values: &[(&[(&str, &str)], u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (pairs, value) in values {
        match pairs.is_empty() {
            true => {
                let _ = writeln!(out, "{name} {value}");
            }
            false => {
                let _ = writeln!(out, "{name}{{{}}} {value}", labels(pairs));
            }
        }
    }
}

/// The request metrics, in the text exposition format.
pub fn render_requests(out: &mut String) {
    let registry = registry();
    let _ = writeln!(out, "# HELP rehydrate_requests_total HTTP requests sent, by side (storage or target), operation and status.\n# TYPE rehydrate_requests_total counter");
    for ((name, labels), value) in &registry.counters {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
    let _ = writeln!(out, "# HELP rehydrate_request_duration_seconds Time to each HTTP answer's headers.\n# TYPE rehydrate_request_duration_seconds histogram");
    for ((name, labels), histogram) in &registry.histograms {
        for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", histogram.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
    }
}

/// Serves `GET /metrics` on `address` from a thread, for the life of the process. `run_metrics` writes
/// the run's counters at each scrape.
pub fn serve(address: SocketAddr, run_metrics: impl Fn(&mut String) + Send + 'static) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            // The whole request head is read before answering: closing a socket with unread bytes
            // would reset the connection under the client.
            let mut reader = BufReader::new(&stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let response = if request_line.starts_with("GET /metrics") {
                let mut body = String::new();
                run_metrics(&mut body);
                render_requests(&mut body);
                format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            };
            let _ = stream.write_all(response.as_bytes());
        }
    })?;
    Ok(bound)
}
