//! Numbers for people.

use std::time::Duration;

/// Formats a duration for people: `850ms`, `12.3s`, `4m05s`.
pub fn human_duration(elapsed: Duration) -> String {
    let millis = elapsed.as_millis();
    match millis {
        0..=999 => format!("{millis}ms"),
        1000..=59_999 => format!("{:.1}s", elapsed.as_secs_f64()),
        _ => format!("{}m{:02}s", millis / 60_000, (millis / 1000) % 60),
    }
}

/// Formats a byte count for people: `512 B`, `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human_duration(Duration::from_millis(245_000)), "4m05s");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 19), "1.5 MiB");
    }
}
