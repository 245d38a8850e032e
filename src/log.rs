//! Everything rehydrate says on standard error: problems, notes, summaries, progress and (with
//! `--verbose`) one debug line per HTTP request. As text for people or as JSON lines for log pipelines
//! (`--log-format json`). On a terminal, a live status line stays at the bottom: each message clears
//! it, prints, and draws it again.
//!
//! Nothing secret is ever given to this module: request lines carry no query string (a SAS token or a
//! presigned URL lives there) and headers pass through `net::redacted_headers` first.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};

/// How messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people: `error: ...`, `warning: ...`.
    #[default]
    Text,
    /// One JSON object per line: `{"time", "level", "message", ...fields}`.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

struct Logger {
    format: LogFormat,
    max_level: Level,
    /// Standard error is a terminal: a status line may be drawn.
    terminal: bool,
    /// The status line currently drawn, if any.
    status: Mutex<Option<String>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger {
        format: LogFormat::Text,
        max_level: Level::Info,
        terminal: false,
        status: Mutex::new(None),
    })
}

/// Sets the format and level once, before anything is logged.
pub fn init(format: LogFormat, verbose: bool) {
    let terminal = std::io::stderr().is_terminal() && format == LogFormat::Text;
    let _ = LOGGER.set(Logger {
        format,
        max_level: if verbose { Level::Debug } else { Level::Info },
        terminal,
        status: Mutex::new(None),
    });
}

pub fn is_json() -> bool {
    logger().format == LogFormat::Json
}

/// Whether a live status line can be drawn (text on a terminal).
pub fn is_terminal() -> bool {
    logger().terminal
}

pub fn debug_enabled() -> bool {
    logger().max_level >= Level::Debug
}

pub fn error(message: impl std::fmt::Display) {
    write(Level::Error, &message.to_string(), &[]);
}

pub fn warn(message: impl std::fmt::Display) {
    write(Level::Warn, &message.to_string(), &[]);
}

pub fn info(message: impl std::fmt::Display) {
    write(Level::Info, &message.to_string(), &[]);
}

/// A debug message, built only when debug messages are on.
pub fn debug(message: impl FnOnce() -> String) {
    if debug_enabled() {
        write(Level::Debug, &message(), &[]);
    }
}

/// An info message with fields (JSON gets them as keys; text gets the message alone).
pub fn info_with(message: impl std::fmt::Display, fields: &[(&str, serde_json::Value)]) {
    write(Level::Info, &message.to_string(), fields);
}

/// Draws (or replaces) the status line; only on a terminal.
pub fn status(line: String) {
    let logger = logger();
    if !logger.terminal {
        return;
    }
    // A line wider than the terminal would wrap, and clearing would then leave its first part behind.
    let width = rustix::termios::tcgetwinsize(std::io::stderr()).map(|size| size.ws_col as usize).unwrap_or(0);
    let line: String = if width > 1 { line.chars().take(width - 1).collect() } else { line };
    let mut status = logger.status.lock().expect("status poisoned");
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{line}");
    let _ = err.flush();
    *status = Some(line);
}

/// Removes the status line for good (the summary follows).
pub fn clear_status() {
    let logger = logger();
    let mut status = logger.status.lock().expect("status poisoned");
    if status.take().is_some() {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

fn write(level: Level, message: &str, fields: &[(&str, serde_json::Value)]) {
    let logger = logger();
    if level > logger.max_level {
        return;
    }
    let line = match logger.format {
        LogFormat::Text => match level {
            Level::Info => message.to_string(),
            other => format!("{}: {message}", other.name()),
        },
        LogFormat::Json => {
            let mut object = serde_json::Map::new();
            object.insert("time".into(), rfc3339_now().into());
            object.insert("level".into(), level.name().into());
            object.insert("message".into(), message.into());
            for (key, value) in fields {
                object.insert((*key).to_string(), value.clone());
            }
            serde_json::Value::Object(object).to_string()
        }
    };
    // The status lock orders every write to standard error.
    let status = logger.status.lock().expect("status poisoned");
    let mut err = std::io::stderr().lock();
    match status.as_deref() {
        Some(current) => {
            let _ = write!(err, "\r\x1b[2K{line}\n{current}");
        }
        None => {
            let _ = writeln!(err, "{line}");
        }
    }
    let _ = err.flush();
}

/// The current UTC time as RFC 3339 with milliseconds.
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_millis())
}

/// Formats a UNIX time (days to civil date after Howard Hinnant's algorithm).
fn rfc3339(seconds: i64, millis: u32) -> String {
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_651_200, 5), "2026-11-26T00:00:00.005Z");
        assert_eq!(rfc3339(951_782_400 + 3_723, 999), "2000-02-29T01:02:03.999Z");
    }
}
