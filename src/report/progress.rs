//! The progress reporter: a status line redrawn four times a second on a terminal, or a plain (or JSON)
//! progress line every `--progress-interval` seconds otherwise, from a [`View`] of the run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shell::Shell;

/// What a progress line is made of; the run's counters implement it.
pub trait View: Send + Sync + 'static {
    /// One line of progress; `rate` is the recent upload rate in bytes per second.
    fn line(&self, rate: f64) -> String;
    /// The same as fields, for JSON progress lines.
    fn fields(&self) -> Vec<(&'static str, serde_json::Value)>;
    /// Bytes copied so far (the rate is drawn from it).
    fn bytes_done(&self) -> u64;
}

/// The thread drawing progress until stopped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    /// Starts reporting: a status line on a terminal, else a line every `interval` (none when zero).
    pub fn start(view: Arc<dyn View>, shell: Arc<Shell>, interval: Duration) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let terminal = shell.is_terminal();
        if !terminal && interval.is_zero() {
            return Reporter { stop, thread: None };
        }
        let tick = if terminal { Duration::from_millis(250) } else { interval };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let mut last = (Instant::now(), view.bytes_done());
                let mut rate = 0.0;
                while !sleep_unless_stopped(&flag, tick) {
                    let now = (Instant::now(), view.bytes_done());
                    let seconds = now.0.duration_since(last.0).as_secs_f64();
                    if seconds > 0.0 {
                        // Smoothed over about two seconds on a terminal.
                        let recent = (now.1 - last.1) as f64 / seconds;
                        rate = if terminal { rate * 0.875 + recent * 0.125 } else { recent };
                    }
                    last = now;
                    if terminal {
                        shell.status(view.line(rate));
                    } else {
                        super::log::info_with(format!("progress: {}", view.line(rate)), &view.fields());
                    }
                }
                shell.clear_status();
            })
            .expect("starting the progress thread");
        Reporter { stop, thread: Some(thread) }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sleeps `time` in short steps; true as soon as `stop` is set.
fn sleep_unless_stopped(stop: &AtomicBool, time: Duration) -> bool {
    let until = Instant::now() + time;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    stop.load(Ordering::Relaxed)
}

/// A bar of `width` cells filled by `done` of `total`.
pub fn bar(done: u64, total: u64, width: u64) -> String {
    let filled = (done.min(total) * width / total.max(1)) as usize;
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width as usize - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_with_progress() {
        assert_eq!(bar(0, 10, 10), "[..........]");
        assert_eq!(bar(5, 10, 10), "[#####.....]");
        assert_eq!(bar(12, 10, 10), "[##########]");
    }
}
