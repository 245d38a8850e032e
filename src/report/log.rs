//! Everything rehydrate says on standard error goes through `tracing`: problems, notes, summaries,
//! progress lines and (with `--verbose`) one debug line per HTTP request. This module installs the
//! subscriber that writes them, as text for people or as JSON lines for log pipelines (`--log-format
//! json`), through the [`Shell`], the one owner of the terminal.
//!
//! Nothing secret is ever given to a log line: request lines carry no query string (a SAS token or a
//! presigned URL lives there) and headers pass through `http::redacted_headers` first.

use std::fmt::Write as _;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use super::shell::Shell;

/// How messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people: `error: ...`, `warning: ...`.
    #[default]
    Text,
    /// One JSON object per line: `{"time", "level", "message", ...fields}`.
    Json,
}

/// The field through which `info_with` hands a JSON object of extra fields to the writer.
const EXTRA_FIELDS: &str = "fields";

/// Installs the process's subscriber (once; later calls change nothing) and returns the shell it
/// writes through. Only rehydrate's own events are written: the libraries' (HTTP, cloud SDKs) are not
/// meant for the operator.
pub fn init(format: LogFormat, verbose: bool) -> Arc<Shell> {
    let shell = Arc::new(Shell::new(format == LogFormat::Text));
    let level = if verbose { LevelFilter::DEBUG } else { LevelFilter::INFO };
    let writer = Writer { format, shell: shell.clone() };
    let filter = Targets::new().with_target(env!("CARGO_CRATE_NAME"), level);
    let _ = tracing_subscriber::registry().with(writer.with_filter(filter)).try_init();
    shell
}

pub fn error(message: impl std::fmt::Display) {
    tracing::error!("{message}");
}

pub fn warn(message: impl std::fmt::Display) {
    tracing::warn!("{message}");
}

pub fn info(message: impl std::fmt::Display) {
    tracing::info!("{message}");
}

/// With `--verbose`, each cause under an error, one debug line each (`caused by: ...`): the chain the
/// error keeps, level by level, where the message itself says them all in one line.
pub fn causes(error: &(dyn std::error::Error + 'static)) {
    if tracing::enabled!(Level::DEBUG) {
        let mut source = error.source();
        while let Some(cause) = source {
            tracing::debug!("caused by: {cause}");
            source = cause.source();
        }
    }
}

/// An info message with fields (JSON gets them as keys; text gets the message alone).
pub fn info_with(message: impl std::fmt::Display, fields: &[(&str, serde_json::Value)]) {
    let object: serde_json::Map<String, serde_json::Value> =
        fields.iter().map(|(key, value)| ((*key).to_string(), value.clone())).collect();
    tracing::info!(fields = %serde_json::Value::Object(object), "{message}");
}

/// The layer that turns events into lines.
struct Writer {
    format: LogFormat,
    shell: Arc<Shell>,
}

impl<S: Subscriber> Layer<S> for Writer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let line = match self.format {
            LogFormat::Text => text_line(level, &fields.message),
            LogFormat::Json => json_line(level, fields),
        };
        self.shell.print(&line);
    }
}

/// The name of a level as the lines say it.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        _ => "debug",
    }
}

fn text_line(level: Level, message: &str) -> String {
    match level {
        Level::INFO => message.to_string(),
        other => format!("{}: {message}", level_name(other)),
    }
}

fn json_line(level: Level, fields: Fields) -> String {
    let mut object = serde_json::Map::new();
    object.insert("time".into(), humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string().into());
    object.insert("level".into(), level_name(level).into());
    object.insert("message".into(), fields.message.into());
    object.extend(fields.extra);
    serde_json::Value::Object(object).to_string()
}

/// An event's message and extra fields.
#[derive(Default)]
struct Fields {
    message: String,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            EXTRA_FIELDS => {
                if let Ok(serde_json::Value::Object(extra)) = serde_json::from_str(&format!("{value:?}")) {
                    self.extra = extra;
                }
            }
            other => {
                self.extra.insert(other.to_string(), format!("{value:?}").into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_time_level_message_and_fields() {
        let mut extra = serde_json::Map::new();
        extra.insert("pushed".into(), 3.into());
        let line = json_line(Level::WARN, Fields { message: "m".into(), extra });
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "warning");
        assert_eq!(value["message"], "m");
        assert_eq!(value["pushed"], 3);
        assert!(value["time"].as_str().unwrap().ends_with('Z'), "{line}");
    }

    #[test]
    fn text_lines_name_the_level_save_for_info() {
        assert_eq!(text_line(Level::ERROR, "x"), "error: x");
        assert_eq!(text_line(Level::INFO, "x"), "x");
    }
}
