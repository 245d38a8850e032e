//! The request metrics of a run, on `prometheus-client`: requests by side, operation and outcome, and
//! the time to each answer's headers. The reporting layer registers them beside the run's own counters.

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Side;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// How a request ended: an HTTP status, or no answer at all.
#[derive(Debug, Clone, Copy)]
pub enum Status {
    Code(u16),
    Error,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Code(code) => write!(f, "{code}"),
            Status::Error => f.write_str("error"),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    side: &'static str,
    operation: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    side: &'static str,
    operation: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Requests and their latencies.
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics { requests: Family::default(), latency: Family::new_with_constructor(latency_histogram) }
    }
}

impl RequestMetrics {
    /// Records one request: its outcome and how long it took.
    pub fn record(&self, side: Side, operation: &'static str, status: Status, elapsed: Duration) {
        let side = side.name();
        self.requests.get_or_create(&RequestLabels { side, operation, status: status.to_string() }).inc();
        self.latency.get_or_create(&OperationLabels { side, operation }).observe(elapsed.as_secs_f64());
    }

    /// Adds them to a registry (the families are shared, not copied).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rehydrate_requests",
            "HTTP requests sent, by side (storage or target), operation and status",
            self.requests.clone(),
        );
        registry.register(
            "rehydrate_request_duration_seconds",
            "Time to each HTTP answer's headers",
            self.latency.clone(),
        );
    }
}
