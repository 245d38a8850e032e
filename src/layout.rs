//! The distribution storage layout, as pure functions: key names, the repository and tag grammars, and
//! link files. No I/O here: every rule can be pinned down by a unit test.
//!
//! See `docs/storage-layout.md` (and distribution's `registry/storage/paths.go`) for where each key lives.

use std::fmt;

use thiserror::Error;

/// Everything the registry writes lives under `<root>/docker/registry/v2/`.
pub const V2_DIR: &str = "docker/registry/v2";
/// Repositories live under this folder of `V2_DIR`.
pub const REPOSITORIES_DIR: &str = "repositories";
/// A repository folder holding this child is a repository (distribution 3 and later).
pub const MANIFESTS_MARKER: &str = "_manifests";
/// A repository folder holding this child is a repository (distribution 2.8 used this marker).
pub const LAYERS_MARKER: &str = "_layers";
/// The longest repository name distribution accepts.
pub const MAX_REPOSITORY_LEN: usize = 255;
/// The longest tag name distribution accepts.
pub const MAX_TAG_LEN: usize = 128;

/// The key prefix of the repositories folder, relative to the storage root.
pub fn repositories_prefix() -> String {
    format!("{V2_DIR}/{REPOSITORIES_DIR}/")
}

/// Key of the file that holds a tag's current digest.
pub fn tag_current_link_key(repository: &str, tag: &str) -> String {
    format!("{}{repository}/_manifests/tags/{tag}/current/link", repositories_prefix())
}

/// Key of the folder that holds every tag of a repository.
pub fn tags_dir_key(repository: &str) -> String {
    format!("{}{repository}/_manifests/tags/", repositories_prefix())
}

/// Key of a manifest revision's link file.
pub fn revision_link_key(repository: &str, digest: &Digest) -> String {
    format!("{}{repository}/_manifests/revisions/{}/{}/link", repositories_prefix(), digest.algorithm(), digest.hex())
}

/// Key of a blob's link in a repository's `_layers` (the registry serves only linked blobs).
pub fn layer_link_key(repository: &str, digest: &Digest) -> String {
    format!("{}{repository}/_layers/{}/{}/link", repositories_prefix(), digest.algorithm(), digest.hex())
}

/// The key of a blob's bytes (manifests are blobs too).
pub fn blob_data_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{V2_DIR}/blobs/{}/{}/{hex}/data", digest.algorithm(), &hex[..2])
}

/// The hash algorithms distribution accepts in digests, with the length of their hex encoding.
const ALGORITHMS: [(&str, usize); 3] = [("sha256", 64), ("sha384", 96), ("sha512", 128)];

/// A content digest, `algorithm:hex`, validated: a known algorithm and lowercase hex of its length.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a digest (or the content of a link file) was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("empty link file")]
    Empty,
    #[error("link file is {0} bytes, longer than any digest")]
    TooLong(usize),
    #[error("not a digest: {0:?}")]
    Malformed(String),
    #[error("unsupported digest algorithm {0:?}")]
    UnknownAlgorithm(String),
}

impl Digest {
    /// Parses `algorithm:hex`, accepting only lowercase hex of the algorithm's exact length.
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(DigestError::Malformed(text.to_string()));
        };
        let Some(&(_, hex_len)) = ALGORITHMS.iter().find(|(name, _)| *name == algorithm) else {
            return Err(DigestError::UnknownAlgorithm(algorithm.to_string()));
        };
        let is_lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if hex.len() != hex_len || !hex.bytes().all(is_lower_hex) {
            return Err(DigestError::Malformed(text.to_string()));
        }
        Ok(Digest(text.to_string()))
    }

    /// The digest of some bytes, as the registry computes it (sha256).
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        use sha2::{Digest as _, Sha256};
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map(|(a, _)| a).unwrap_or_default()
    }

    pub fn hex(&self) -> &str {
        self.0.split_once(':').map(|(_, h)| h).unwrap_or_default()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest link file worth reading: `sha512:` and 128 hex characters, with room for a stray newline.
pub const MAX_LINK_LEN: usize = 7 + 128 + 2;

/// Parses the content of a link file. Distribution writes exactly `sha256:<64 hex>` with no newline, and
/// reads nothing else: a trailing newline (a hand edit) makes it answer 500, so it is refused here too.
pub fn parse_link(content: &[u8]) -> Result<Digest, DigestError> {
    if content.is_empty() {
        return Err(DigestError::Empty);
    }
    if content.len() > MAX_LINK_LEN {
        return Err(DigestError::TooLong(content.len()));
    }
    let text = std::str::from_utf8(content)
        .map_err(|_| DigestError::Malformed(String::from_utf8_lossy(content).into_owned()))?;
    Digest::parse(text)
}

/// Why a repository or tag name was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("repository name component {0:?} breaks the grammar [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*")]
    Component(String),
    #[error("repository name is {0} characters, longer than 255")]
    RepositoryTooLong(usize),
    #[error("tag {0:?} breaks the grammar [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")]
    Tag(String),
}

/// Checks one path component of a repository name against distribution's grammar:
/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
pub fn check_component(component: &str) -> Result<(), NameError> {
    if is_valid_component(component.as_bytes()) {
        Ok(())
    } else {
        Err(NameError::Component(component.to_string()))
    }
}

fn is_valid_component(bytes: &[u8]) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    // Each round: a run of [a-z0-9]+, then optionally a separator that must be followed by another run.
    loop {
        let run_start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == run_start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let separator_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator_ok = match &bytes[separator_start..i] {
            b"." | b"_" | b"__" => true,
            dashes => dashes.iter().all(|&b| b == b'-'),
        };
        if !separator_ok {
            return false;
        }
    }
}

/// Checks a whole repository name: valid components joined by `/`, at most 255 characters.
pub fn check_repository(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_REPOSITORY_LEN {
        return Err(NameError::RepositoryTooLong(name.len()));
    }
    name.split('/').try_for_each(check_component)
}

/// Checks a tag against distribution's grammar: `[\w][\w.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), NameError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && word(bytes[0])
        && bytes[1..].iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError::Tag(tag.to_string()))
    }
}

/// What a child folder of a (possible) repository folder is.
#[derive(Debug, PartialEq, Eq)]
pub enum ChildKind {
    /// `_manifests` or `_layers`: the parent is a repository.
    RepositoryMarker,
    /// Any other name starting with `_` (`_uploads`, or debris): never part of a name, never descended.
    Reserved,
    /// A further name component: a nested repository may lie below.
    Component,
}

/// Classifies a child of a folder under `repositories/`. A name component can never start with `_`, so the
/// markers cannot clash with a repository name.
pub fn classify_child(name: &[u8]) -> ChildKind {
    if name == MANIFESTS_MARKER.as_bytes() || name == LAYERS_MARKER.as_bytes() {
        ChildKind::RepositoryMarker
    } else if name.first() == Some(&b'_') {
        ChildKind::Reserved
    } else {
        ChildKind::Component
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "3b1c1d4f8c4e0c6e0b0f6f5d1a0c0f1e0d2a3b4c5d6e7f8091a2b3c4d5e6f708";

    #[test]
    fn parses_a_link_written_by_the_registry() {
        let digest = parse_link(format!("sha256:{HEX}").as_bytes()).unwrap();
        assert_eq!(digest.algorithm(), "sha256");
        assert_eq!(digest.hex(), HEX);
        assert_eq!(digest.as_str().len(), 71);
    }

    #[test]
    fn refuses_a_trailing_newline_as_the_registry_does() {
        assert!(parse_link(format!("sha256:{HEX}\n").as_bytes()).is_err());
        assert!(parse_link(format!("sha256:{HEX}\n\n").as_bytes()).is_err());
        assert!(parse_link(format!(" sha256:{HEX}").as_bytes()).is_err());
    }

    #[test]
    fn refuses_bad_links() {
        assert_eq!(parse_link(b""), Err(DigestError::Empty));
        assert!(matches!(parse_link(b"garbage"), Err(DigestError::Malformed(_))));
        assert!(matches!(parse_link(b"md5:abcd"), Err(DigestError::UnknownAlgorithm(_))));
        assert!(parse_link(format!("sha256:{}", HEX.to_uppercase()).as_bytes()).is_err());
        assert!(parse_link(format!("sha256:{}", &HEX[1..]).as_bytes()).is_err());
        assert!(parse_link(&[0xff, 0xfe, 0x00]).is_err());
        assert!(matches!(parse_link(&[b'a'; 4096]), Err(DigestError::TooLong(4096))));
    }

    #[test]
    fn accepts_longer_algorithms() {
        assert!(Digest::parse(&format!("sha512:{HEX}{HEX}")).is_ok());
        assert!(Digest::parse(&format!("sha384:{HEX}{}", &HEX[..32])).is_ok());
    }

    #[test]
    fn sha256_of_matches_known_value() {
        assert_eq!(
            Digest::sha256_of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn repository_grammar_matches_distribution() {
        for good in ["a", "library/alpine", "a-b", "a--b", "a.b", "a_b", "a__b", "0", "x/y/z/1-2.3__4"] {
            assert_eq!(check_repository(good), Ok(()), "{good}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "-a", "a-", "a.", ".a", "a..b", "a___b", "a._b", "a-.b", "_a", "a b", "a/B",
            "a/../b", "..", "é",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
        assert!(check_repository(&"a".repeat(255)).is_ok());
        assert_eq!(check_repository(&"a".repeat(256)), Err(NameError::RepositoryTooLong(256)));
    }

    #[test]
    fn tag_grammar_matches_distribution() {
        for good in ["latest", "v1.0", "1", "_x", "A-b.C_d", &"t".repeat(128)] {
            assert_eq!(check_tag(good), Ok(()), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b", &"t".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn markers_and_reserved_names() {
        assert_eq!(classify_child(b"_manifests"), ChildKind::RepositoryMarker);
        assert_eq!(classify_child(b"_layers"), ChildKind::RepositoryMarker);
        assert_eq!(classify_child(b"_uploads"), ChildKind::Reserved);
        assert_eq!(classify_child(b"_whatever"), ChildKind::Reserved);
        assert_eq!(classify_child(b"alpine"), ChildKind::Component);
    }

    #[test]
    fn keys_follow_paths_go() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(
            tag_current_link_key("a/b", "v1"),
            "docker/registry/v2/repositories/a/b/_manifests/tags/v1/current/link"
        );
        assert_eq!(
            revision_link_key("a", &d),
            format!("docker/registry/v2/repositories/a/_manifests/revisions/sha256/{HEX}/link")
        );
        assert_eq!(blob_data_key(&d), format!("docker/registry/v2/blobs/sha256/3b/{HEX}/data"));
        assert_eq!(tags_dir_key("a"), "docker/registry/v2/repositories/a/_manifests/tags/");
    }
}
