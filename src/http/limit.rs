//! Optional limits on what the run asks of the storage and the target: `--max-requests-per-second`
//! (every HTTP request, storage and target together) and `--max-bandwidth` (blob bytes copied per
//! second). Token buckets holding one second's worth; a large piece may overdraw the bucket and the
//! next taker waits for the debt to be paid back, so the average rate holds over any second or more.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimit {
    per_second: f64,
    /// (tokens available, may be negative; when they were counted).
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(per_second: f64) -> RateLimit {
        RateLimit { per_second, state: Mutex::new((per_second, Instant::now())) }
    }

    /// Waits until `amount` may be spent, then spends it.
    pub async fn take(&self, amount: f64) {
        loop {
            let wait = self.reserve(Instant::now(), amount);
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Spends `amount` at `now` if the bucket is not in debt (`None`), else says how long until it is.
    fn reserve(&self, now: Instant, amount: f64) -> Option<Duration> {
        let mut state = self.state.lock().expect("rate limit poisoned");
        let refill = now.saturating_duration_since(state.1).as_secs_f64() * self.per_second;
        state.0 = (state.0 + refill).min(self.per_second);
        state.1 = now.max(state.1);
        if state.0 >= 0.0 {
            state.0 -= amount;
            return None;
        }
        Some(Duration::from_secs_f64(-state.0 / self.per_second))
    }
}

/// Parses a byte rate: a number with an optional K, M, G or T suffix (powers of 1024), `B` or `iB`
/// allowed after it, and `/s` after that: `50M`, `1.5GiB/s`, `800000`.
pub fn parse_bytes_per_second(text: &str) -> Result<u64, String> {
    let trimmed = text.trim().trim_end_matches("/s");
    let number_end = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a byte rate such as 50M or 1G"))?;
    let scale = match unit.trim_end_matches("iB").trim_end_matches('B').to_ascii_uppercase().as_str() {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    let rate = (number * scale as f64) as u64;
    if rate == 0 {
        return Err(format!("{text:?}: the rate must be above zero"));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_rates_parse() {
        assert_eq!(parse_bytes_per_second("800000"), Ok(800_000));
        assert_eq!(parse_bytes_per_second("50M"), Ok(50 << 20));
        assert_eq!(parse_bytes_per_second("1.5GiB/s"), Ok(3 << 29));
        assert_eq!(parse_bytes_per_second("10kB"), Ok(10 << 10));
        assert!(parse_bytes_per_second("fast").is_err());
        assert!(parse_bytes_per_second("5X").is_err());
        assert!(parse_bytes_per_second("0").is_err());
    }

    #[test]
    fn a_bucket_gives_one_seconds_burst_then_the_rate() {
        let limit = RateLimit::new(100.0);
        let start = Instant::now();
        *limit.state.lock().unwrap() = (100.0, start);
        // One second's worth at once (the last take overdraws by 1)...
        for _ in 0..101 {
            assert_eq!(limit.reserve(start, 1.0), None);
        }
        // ...then the next waits 10 ms for the debt, and after 10 ms one more is allowed.
        assert_eq!(limit.reserve(start, 1.0), Some(Duration::from_millis(10)));
        assert_eq!(limit.reserve(start + Duration::from_millis(10), 1.0), None);
        // A large piece overdraws: the next taker waits for it to be paid back at the rate.
        let later = start + Duration::from_secs(5);
        assert_eq!(limit.reserve(later, 300.0), None);
        assert_eq!(limit.reserve(later, 1.0), Some(Duration::from_secs(2)));
    }
}
