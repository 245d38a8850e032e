//! What every command's run shares: its outcome (for the exit code), how it reports to its operator
//! (progress, metrics, problems printed as they come), and the storage-requests line of its summary.
//! The scan command's run is `scan.rs`; the sync and verify runs are `crate::sync`.

pub mod export;
pub mod inventory;
pub mod live;
pub mod scan;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::http::Side;
use crate::report::progress::Reporter;
use crate::report::shell::Shell;
use crate::run::live::{get, Live, LiveMetrics};
use crate::scan::RequestCounts;

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every item was handled.
    Complete,
    /// The run finished, but some items had errors (each reported, and counted in the summary).
    Partial,
}

/// What the run tells its operator while it runs.
#[derive(Debug, Clone, Default)]
pub struct Reporting {
    /// Where lines and the status line go.
    pub shell: Arc<Shell>,
    /// Print only the summary, not each problem.
    pub quiet: bool,
    /// Off a terminal: a progress line this often (never when zero).
    pub progress_interval: Duration,
    /// Serve Prometheus metrics here.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Starts the metrics endpoint (when asked) and the progress reporter over `live`.
pub fn start_reporting(live: &Arc<Live>, reporting: &Reporting) -> anyhow::Result<Reporter> {
    if let Some(address) = reporting.metrics_addr {
        let mut registry = prometheus_client::registry::Registry::default();
        live.http.metrics.register(&mut registry);
        registry.register_collector(Box::new(LiveMetrics(live.clone())));
        let bound = crate::report::metrics::serve(address, registry)
            .with_context(|| format!("serving metrics on {address}"))?;
        crate::report::log::info(format!("metrics: http://{bound}/metrics"));
    }
    Ok(Reporter::start(live.clone(), reporting.shell.clone(), reporting.progress_interval))
}

/// How many problems are printed on standard error one by one; past that, they are only in the
/// inventory and the summary, so that a badly broken registry does not drown the terminal.
const PROBLEMS_PRINTED: u64 = 100;

/// Prints problems as they come, up to `PROBLEMS_PRINTED`.
pub struct ProblemPrinter {
    quiet: bool,
    pub printed: u64,
}

impl ProblemPrinter {
    pub fn new(quiet: bool) -> ProblemPrinter {
        ProblemPrinter { quiet, printed: 0 }
    }

    pub fn error(&mut self, message: impl std::fmt::Display) {
        if self.room() {
            crate::report::log::error(message);
        }
    }

    pub fn warning(&mut self, message: impl std::fmt::Display) {
        if self.room() {
            crate::report::log::warn(message);
        }
    }

    /// Whether one more problem may be printed (and counts it).
    fn room(&mut self) -> bool {
        let room = !self.quiet && self.printed < PROBLEMS_PRINTED;
        self.printed += room as u64;
        room
    }
}

/// Where the storage side's adaptive window ended and how often the store made it halve (a scan has
/// only that side; a sync reports both in its `windows:` line).
pub fn log_storage_window(http: &crate::http::Context) {
    let Some(storage) = http.window(Side::Storage) else { return };
    crate::report::log::info_with(
        format!("storage window: {} in flight at the end, halved {} times", storage.size(), storage.cuts()),
        &[("window_storage", storage.size().into()), ("window_storage_cuts", storage.cuts().into())],
    );
}

/// The storage requests a run made (scan and sync summaries alike).
pub fn log_storage_requests(requests: &RequestCounts) {
    crate::report::log::info(format!(
        "storage requests: {} listings, {} reads (links, manifests, blob checks on disk); {} entries seen",
        get(&requests.lists),
        get(&requests.reads),
        get(&requests.entries)
    ));
}
