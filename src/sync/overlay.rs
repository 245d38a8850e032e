//! Tags given back to a rebuild (`sync --in-place --untagged --tags-from FILE`): the lines
//! `rehydrate export-tags` wrote (`{"repository", "tag", "digest"}`, as the inventory writes them).
//! Harbor 2.15 and later keep tag names only in their database, so after a lost database the storage
//! gives every manifest back by digest and this file gives back their tags: each untagged manifest the
//! scan finds in a repository also goes to the target under every tag the file names for it there.
//! Held in memory (about 100 bytes a tag).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::layout::Digest;

#[derive(Default)]
pub struct TagOverlay {
    /// (repository, digest) -> tags.
    tags: HashMap<(String, String), Vec<String>>,
}

#[derive(Deserialize)]
struct Line {
    repository: String,
    tag: String,
    digest: String,
}

impl TagOverlay {
    /// Reads an export; a line that is not a tag record is an error naming the file and line.
    pub fn load(path: &Path) -> anyhow::Result<TagOverlay> {
        let file = std::fs::File::open(path).with_context(|| format!("opening --tags-from {}", path.display()))?;
        let mut overlay = TagOverlay::default();
        for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let record: Line = serde_json::from_str(&line)
                .with_context(|| format!("{} line {}: not a tag record", path.display(), number + 1))?;
            Digest::parse(&record.digest)
                .with_context(|| format!("{} line {}: bad digest", path.display(), number + 1))?;
            overlay.tags.entry((record.repository, record.digest)).or_default().push(record.tag);
        }
        Ok(overlay)
    }

    /// The tags the export names for this manifest of this repository.
    pub fn tags_of(&self, repository: &str, digest: &Digest) -> &[String] {
        self.tags.get(&(repository.to_string(), digest.to_string())).map(Vec::as_slice).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_export_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        let path = dir.path().join("tags.jsonl");
        let lines = [
            serde_json::json!({"repository": "p/app", "tag": "v1", "digest": digest}).to_string(),
            serde_json::json!({"repository": "p/app", "tag": "latest", "digest": digest}).to_string(),
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let overlay = TagOverlay::load(&path).unwrap();
        assert_eq!(overlay.tags_of("p/app", &Digest::parse(&digest).unwrap()), ["v1", "latest"]);
        assert!(overlay.tags_of("p/other", &Digest::parse(&digest).unwrap()).is_empty());
        std::fs::write(&path, "{\"repository\": \"p/app\"}\n").unwrap();
        let error = format!("{:#}", TagOverlay::load(&path).err().unwrap());
        assert!(error.contains("line 1: not a tag record"), "{error}");
    }
}
