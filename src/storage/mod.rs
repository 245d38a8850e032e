//! Where a registry's storage lives, and how to reach it.
//!
//! One backend a file: `fs` for a storage root on a (local or mounted) filesystem, `object/` for S3,
//! GCS and Azure Blob.

pub mod blobs;
pub mod fs;
pub mod object;

pub use blobs::BlobStore;
pub use object::Cloud;

use std::path::PathBuf;

use thiserror::Error;

/// A storage root given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder holding `docker/registry/v2` (`file:///path` or a plain path).
    Filesystem(PathBuf),
    /// A bucket (or container) and the root inside it (the registry's `rootdirectory`, often empty):
    /// `s3://bucket/root`, `gs://bucket/root`, `az://container/root`.
    Object { cloud: Cloud, bucket: String, root: String },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    #[error(
        "unsupported source scheme {scheme:?} in {source_text:?}: use s3://, gs://, az://, file:/// or a plain path"
    )]
    UnknownScheme { scheme: String, source_text: String },
    #[error("file:// source {0:?} must name an absolute path (file:///var/lib/registry)")]
    RelativeFileUrl(String),
    #[error("source {0:?} names no bucket (s3://bucket/root)")]
    NoBucket(String),
}

impl Source {
    /// Parses `s3://`, `gs://`, `az://` URLs, `file:///path` or a plain path. Scheme names are matched
    /// case-insensitively.
    pub fn parse(text: &str) -> Result<Source, SourceError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Source::Filesystem(PathBuf::from(text)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" if rest.starts_with('/') => Ok(Source::Filesystem(PathBuf::from(rest))),
            "file" => Err(SourceError::RelativeFileUrl(text.to_string())),
            "s3" | "s3a" => Source::object(Cloud::S3, rest, text),
            "gs" | "gcs" => Source::object(Cloud::Gcs, rest, text),
            "az" | "azure" | "abfs" => Source::object(Cloud::Azure, rest, text),
            _ => Err(SourceError::UnknownScheme { scheme: scheme.to_string(), source_text: text.to_string() }),
        }
    }
}

impl Source {
    fn object(cloud: Cloud, rest: &str, text: &str) -> Result<Source, SourceError> {
        let (bucket, root) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(SourceError::NoBucket(text.to_string()));
        }
        Ok(Source::Object { cloud, bucket: bucket.to_string(), root: normalize_root(root) })
    }
}

/// The root inside a bucket as a key prefix: no leading or doubled slashes, one trailing slash
/// (or empty for the bucket's top).
fn normalize_root(root: &str) -> String {
    let parts: Vec<&str> = root.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{}/", parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_object_store_urls() {
        let s3 =
            |bucket: &str, root: &str| Source::Object { cloud: Cloud::S3, bucket: bucket.into(), root: root.into() };
        assert_eq!(Source::parse("s3://b"), Ok(s3("b", "")));
        assert_eq!(Source::parse("s3://b/"), Ok(s3("b", "")));
        assert_eq!(Source::parse("s3://b/reg/root/"), Ok(s3("b", "reg/root/")));
        assert_eq!(Source::parse("s3://b//reg"), Ok(s3("b", "reg/")));
        assert!(matches!(Source::parse("gs://b/x"), Ok(Source::Object { cloud: Cloud::Gcs, .. })));
        assert!(matches!(Source::parse("az://c"), Ok(Source::Object { cloud: Cloud::Azure, .. })));
        assert!(matches!(Source::parse("s3:///x"), Err(SourceError::NoBucket(_))));
    }

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
