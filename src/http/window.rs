//! How many requests may be in flight to each side (the target, the storage): a window that adapts to
//! what the server says, as TCP's congestion window does.
//!
//! The window starts small and grows by one for every request answered (doubling each round trip) until
//! the server first pushes back, then by one per window's worth of answers. A push-back (429, 503, a
//! connection reset or refused) halves it, at most once per round trip (the answers to requests sent
//! before the cut say nothing new). `--push-concurrency` is the target's ceiling; `--fixed-window` keeps
//! the window at the ceiling, as before. `Retry-After` is honoured by the retry itself (`retry::Backoff`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// What an answer says about the server's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered (whatever the status, save the two below): room to grow.
    Answered,
    /// 429, 503, or the connection reset or refused: too much in flight.
    PushedBack,
    /// Neither (another server error): no change.
    Neutral,
}

/// The window of one side.
pub struct Window {
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug)]
struct State {
    /// Requests allowed in flight; fractional so that congestion avoidance grows by 1/window per answer.
    size: f64,
    ceiling: f64,
    /// Growth doubles per round trip until the first push-back.
    slow_start: bool,
    in_flight: usize,
    /// When the window was last cut, and the smoothed round trip that decides when it may be cut again.
    last_cut: Option<Instant>,
    round_trip: Duration,
    cuts: u64,
    fixed: bool,
}

/// The smallest window: one request is always allowed.
const FLOOR: f64 = 1.0;
/// Where the window starts.
const INITIAL: f64 = 4.0;

impl Window {
    pub fn new(ceiling: usize, fixed: bool) -> Window {
        let ceiling = (ceiling.max(1)) as f64;
        let size = if fixed { ceiling } else { INITIAL.min(ceiling) };
        Window {
            state: Mutex::new(State {
                size,
                ceiling,
                slow_start: true,
                in_flight: 0,
                last_cut: None,
                round_trip: Duration::from_millis(50),
                cuts: 0,
                fixed,
            }),
            freed: Notify::new(),
        }
    }

    /// Waits for room in the window; the permit gives it back when dropped.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let notified = self.freed.notified();
            {
                let mut state = self.lock();
                if (state.in_flight as f64) < state.size.floor().max(FLOOR) {
                    state.in_flight += 1;
                    return Permit { window: self, sent: Instant::now() };
                }
            }
            notified.await;
        }
    }

    /// Learns from one answer.
    fn learn(&self, signal: Signal, sent: Instant, now: Instant) {
        let mut state = self.lock();
        let latency = now.saturating_duration_since(sent);
        state.round_trip = (state.round_trip * 7 + latency) / 8;
        if state.fixed {
            return;
        }
        match signal {
            Signal::Answered if state.slow_start => state.size = (state.size + 1.0).min(state.ceiling),
            Signal::Answered => state.size = (state.size + 1.0 / state.size).min(state.ceiling),
            Signal::PushedBack => {
                // Answers to requests sent before the last cut do not count against the new window.
                let recent = state.last_cut.is_some_and(|cut| sent < cut || now - cut < state.round_trip);
                if !recent {
                    state.size = (state.size / 2.0).max(FLOOR);
                    state.slow_start = false;
                    state.last_cut = Some(now);
                    state.cuts += 1;
                }
            }
            Signal::Neutral => {}
        }
    }

    /// The window now (requests allowed in flight).
    pub fn size(&self) -> usize {
        self.lock().size.floor().max(FLOOR) as usize
    }

    /// How many times the window was halved.
    pub fn cuts(&self) -> u64 {
        self.lock().cuts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("window poisoned")
    }
}

/// Room for one request in flight.
pub struct Permit<'a> {
    window: &'a Window,
    sent: Instant,
}

impl Permit<'_> {
    /// Gives the room back, with what the answer said.
    pub fn answered(self, signal: Signal) {
        self.window.learn(signal, self.sent, Instant::now());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.window.lock().in_flight -= 1;
        self.window.freed.notify_waiters();
    }
}

/// What a request's outcome says about the server's load.
pub fn signal_of(outcome: &reqwest::Result<reqwest::Response>) -> Signal {
    use reqwest::StatusCode;
    match outcome {
        Ok(response) => match response.status() {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Signal::PushedBack,
            status if status.is_server_error() => Signal::Neutral,
            _ => Signal::Answered,
        },
        Err(error) if error.is_connect() || error.is_request() => Signal::PushedBack,
        Err(_) => Signal::Neutral,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_fast_then_halves_once_per_round_trip_then_grows_slowly() {
        let window = Window::new(32, false);
        let start = Instant::now();
        assert_eq!(window.size(), 4, "starts small");
        for _ in 0..8 {
            window.learn(Signal::Answered, start, start);
        }
        assert_eq!(window.size(), 12, "slow start: one more per answer");
        let later = start + Duration::from_secs(1);
        window.learn(Signal::PushedBack, later, later);
        assert_eq!(window.size(), 6, "halved");
        window.learn(Signal::PushedBack, start, later + Duration::from_millis(1));
        assert_eq!(window.size(), 6, "an answer to a request sent before the cut does not cut again");
        for _ in 0..6 {
            window.learn(Signal::Answered, later, later);
        }
        assert_eq!(window.size(), 6, "after a cut, one more per window's worth of answers");
        window.learn(Signal::Answered, later, later);
        assert_eq!(window.size(), 7);
        assert_eq!(window.cuts(), 1);
    }

    #[test]
    fn never_below_one_nor_above_the_ceiling_and_fixed_stays() {
        let window = Window::new(3, false);
        let mut now = Instant::now();
        for _ in 0..10 {
            now += Duration::from_secs(1);
            window.learn(Signal::PushedBack, now, now);
        }
        assert_eq!(window.size(), 1);
        for _ in 0..100 {
            window.learn(Signal::Answered, now, now);
        }
        assert_eq!(window.size(), 3);
        let fixed = Window::new(32, true);
        fixed.learn(Signal::PushedBack, now, now);
        assert_eq!(fixed.size(), 32);
    }

    #[tokio::test]
    async fn holds_requests_beyond_the_window() {
        let window = Window::new(2, true);
        let first = window.acquire().await;
        let _second = window.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(50), window.acquire()).await;
        assert!(third.is_err(), "a third request waits");
        first.answered(Signal::Answered);
        let third = tokio::time::timeout(Duration::from_millis(500), window.acquire()).await;
        assert!(third.is_ok(), "and goes when one comes back");
    }
}
