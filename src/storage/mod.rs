//! Where a registry's storage lives, and how to reach it.
//!
//! One backend a file: `fs` for a storage root on a (local or mounted) filesystem. The object stores
//! (S3, GCS, Azure Blob) join here behind the same source syntax.

pub mod fs;

use std::path::PathBuf;

use thiserror::Error;

/// A storage root given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder holding `docker/registry/v2` (`file:///path` or a plain path).
    Filesystem(PathBuf),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("unsupported source scheme {scheme:?} in {source_text:?}: use file:///path or a plain path")]
    UnknownScheme { scheme: String, source_text: String },
    #[error("file:// source {0:?} must name an absolute path (file:///var/lib/registry)")]
    RelativeFileUrl(String),
}

impl Source {
    /// Parses `file:///path` or a plain path. Scheme names are matched case-insensitively.
    pub fn parse(text: &str) -> Result<Source, SourceError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Source::Filesystem(PathBuf::from(text)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" if rest.starts_with('/') => Ok(Source::Filesystem(PathBuf::from(rest))),
            "file" => Err(SourceError::RelativeFileUrl(text.to_string())),
            _ => Err(SourceError::UnknownScheme { scheme: scheme.to_string(), source_text: text.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_file_urls() {
        assert_eq!(Source::parse("/var/lib/registry"), Ok(Source::Filesystem("/var/lib/registry".into())));
        assert_eq!(Source::parse("data"), Ok(Source::Filesystem("data".into())));
        assert_eq!(Source::parse("file:///srv/reg"), Ok(Source::Filesystem("/srv/reg".into())));
        assert_eq!(Source::parse("FILE:///srv/reg"), Ok(Source::Filesystem("/srv/reg".into())));
        assert!(matches!(Source::parse("file://relative"), Err(SourceError::RelativeFileUrl(_))));
        assert!(matches!(Source::parse("ftp://x/y"), Err(SourceError::UnknownScheme { .. })));
    }
}
