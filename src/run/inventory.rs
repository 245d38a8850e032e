//! Writing what a scan found: an inventory (JSON Lines or CSV) and a summary with counts.

use std::io::{self, Write};

use serde::Serialize;

use crate::scan::{ItemError, ScanItem};

/// The inventory's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object a line: `{"repository","tag","digest"}` (`"tag": null` for untagged manifests),
    /// or `{"key","repository","tag","error"}` for an item that could not be read.
    Jsonl,
    /// `repository,tag,digest,error` with a header line; `tag` empty for untagged, `error` set on errors.
    Csv,
}

#[derive(Serialize)]
struct TagRecord<'a> {
    repository: &'a str,
    tag: Option<&'a str>,
    digest: &'a str,
}

/// Writes inventory records in one format.
pub struct InventoryWriter<W: Write> {
    out: W,
    format: Format,
}

impl<W: Write> InventoryWriter<W> {
    pub fn new(mut out: W, format: Format) -> io::Result<InventoryWriter<W>> {
        if format == Format::Csv {
            writeln!(out, "repository,tag,digest,error")?;
        }
        Ok(InventoryWriter { out, format })
    }

    /// Writes the record of one item; repositories and warnings have none (they go to the summary).
    pub fn write(&mut self, item: &ScanItem) -> io::Result<()> {
        match item {
            ScanItem::Tag { repository, tag, digest } => self.write_tag(repository, Some(tag), digest.as_str()),
            ScanItem::Untagged { repository, digest } => self.write_tag(repository, None, digest.as_str()),
            ScanItem::Error(error) => self.write_error(error),
            ScanItem::Repository { .. }
            | ScanItem::RepositoryEnd { .. }
            | ScanItem::Resumed { .. }
            | ScanItem::Warning(_) => Ok(()),
        }
    }

    fn write_tag(&mut self, repository: &str, tag: Option<&str>, digest: &str) -> io::Result<()> {
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, &TagRecord { repository, tag, digest })?;
                self.out.write_all(b"\n")
            }
            // Names and tags follow grammars without commas or quotes: no quoting needed.
            Format::Csv => writeln!(self.out, "{repository},{},{digest},", tag.unwrap_or_default()),
        }
    }

    fn write_error(&mut self, error: &ItemError) -> io::Result<()> {
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, error)?;
                self.out.write_all(b"\n")
            }
            Format::Csv => writeln!(
                self.out,
                "{},{},,{}",
                csv_field(error.repository.as_deref().unwrap_or_default()),
                csv_field(error.tag.as_deref().unwrap_or_default()),
                csv_field(&error.to_string())
            ),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Counts of what a scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub repositories: u64,
    pub tags: u64,
    pub untagged: u64,
    pub errors: u64,
    pub warnings: u64,
    /// Tags (and untagged manifests) the registry would not serve or a client could not pull, by reason.
    pub unpullable: std::collections::BTreeMap<&'static str, u64>,
}

impl Counts {
    pub fn count(&mut self, item: &ScanItem) {
        match item {
            ScanItem::Repository { .. } => self.repositories += 1,
            ScanItem::Tag { .. } => self.tags += 1,
            ScanItem::Untagged { .. } => self.untagged += 1,
            ScanItem::Error(error) => {
                self.errors += 1;
                if let Some(reason) = error.reason {
                    *self.unpullable.entry(reason).or_default() += 1;
                }
            }
            ScanItem::Warning(_) => self.warnings += 1,
            ScanItem::RepositoryEnd { .. } | ScanItem::Resumed { .. } => {}
        }
    }

    /// Shows these counts to the live view of the run (progress and metrics).
    pub fn publish(&self, run: &crate::run::live::RunCounters) {
        use std::sync::atomic::Ordering::Relaxed;
        run.repositories.store(self.repositories, Relaxed);
        run.tags_seen.store(self.tags, Relaxed);
        run.untagged.store(self.untagged, Relaxed);
        run.source_errors.store(self.errors, Relaxed);
        run.warnings.store(self.warnings, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Digest;

    fn items() -> Vec<ScanItem> {
        let digest = Digest::sha256_of(b"x");
        vec![
            ScanItem::Repository { name: "a/b".into() },
            ScanItem::Tag { repository: "a/b".into(), tag: "v1".into(), digest: digest.clone() },
            ScanItem::Untagged { repository: "a/b".into(), digest },
            ScanItem::Error(ItemError::new("k/l", "bad, \"really\"").in_repository("a/b").for_tag("t")),
        ]
    }

    fn render(format: Format) -> String {
        let mut writer = InventoryWriter::new(Vec::new(), format).unwrap();
        for item in items() {
            writer.write(&item).unwrap();
        }
        String::from_utf8(writer.into_inner()).unwrap()
    }

    #[test]
    fn jsonl_records() {
        let hex = Digest::sha256_of(b"x");
        let expected = format!(
            "{{\"repository\":\"a/b\",\"tag\":\"v1\",\"digest\":\"{hex}\"}}\n\
             {{\"repository\":\"a/b\",\"tag\":null,\"digest\":\"{hex}\"}}\n\
             {{\"key\":\"k/l\",\"repository\":\"a/b\",\"tag\":\"t\",\"error\":\"bad, \\\"really\\\"\"}}\n"
        );
        assert_eq!(render(Format::Jsonl), expected);
    }

    #[test]
    fn csv_records() {
        let hex = Digest::sha256_of(b"x");
        let expected =
            format!("repository,tag,digest,error\na/b,v1,{hex},\na/b,,{hex},\na/b,t,,\"k/l: bad, \"\"really\"\"\"\n");
        assert_eq!(render(Format::Csv), expected);
    }

    #[test]
    fn counts_every_kind() {
        let mut counts = Counts::default();
        items().iter().for_each(|item| counts.count(item));
        assert_eq!(counts, Counts { repositories: 1, tags: 1, untagged: 1, errors: 1, ..Counts::default() });
    }
}
