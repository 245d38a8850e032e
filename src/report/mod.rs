//! The reporting layer: what a run tells its operator. Log lines on `tracing` (`log`), written through
//! the one owner of the terminal (`shell`); the progress reporter (`progress`) over a view the run
//! gives it; the Prometheus endpoint (`metrics`); numbers for people (`units`). It knows nothing of
//! registries or storage: the domain hands it lines, fields and metric families.

pub mod log;
pub mod metrics;
pub mod progress;
pub mod shell;
pub mod units;
