//! Select: a tag the scan found is kept or filtered out (`--include`, `--exclude`, tag filters), and is
//! given its name on the target (`--dest-namespace`, `--flatten`).

use crate::filter::{NameFilter, NameMapping};
use crate::layout::Digest;
use crate::scan::ScanItem;

/// Which repositories and tags are taken, and where they land.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub repositories: NameFilter,
    pub tags: NameFilter,
    pub mapping: NameMapping,
}

/// A tag (or, with `tag` `None`, an untagged manifest) that the scan found in the source.
#[derive(Debug, Clone)]
pub struct Found {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Digest,
}

impl Found {
    /// The tag or untagged manifest an item names; any other item is handed back.
    pub fn from_item(item: ScanItem) -> Result<Found, ScanItem> {
        match item {
            ScanItem::Tag { repository, tag, digest } => Ok(Found { repository, tag: Some(tag), digest }),
            ScanItem::Untagged { repository, digest } => Ok(Found { repository, tag: None, digest }),
            other => Err(other),
        }
    }

    /// `repository:tag` or `repository@digest`, as problems name it.
    pub fn label(&self) -> String {
        match &self.tag {
            Some(tag) => format!("{}:{tag}", self.repository),
            None => format!("{}@{}", self.repository, self.digest),
        }
    }
}

/// A selected tag with its place on the target.
#[derive(Debug, Clone)]
pub struct Planned {
    pub found: Found,
    pub target_repository: String,
    /// The digest rehydrate set this target tag to in an earlier run, when the source has moved on
    /// from it (the journal says so): the tag may follow the source if the target still holds it.
    pub previous: Option<Digest>,
}

impl Planned {
    /// What the target knows it by: the tag, or the digest of an untagged manifest.
    pub fn reference(&self) -> &str {
        self.found.tag.as_deref().unwrap_or(self.found.digest.as_str())
    }

    /// `source:tag -> target:tag`, as results name it.
    pub fn label(&self) -> String {
        let separator = if self.found.tag.is_some() { ':' } else { '@' };
        format!("{} -> {}{separator}{}", self.found.label(), self.target_repository, self.reference())
    }
}

/// What the selection made of a found tag.
pub enum Selected {
    Planned(Planned),
    /// A filter left it out.
    Filtered,
    /// Its repository's name cannot be mapped onto the target (the message says why).
    Unmappable {
        repository: String,
        message: String,
    },
}

impl Selection {
    pub fn select(&self, found: Found) -> Selected {
        let tag_accepted = found.tag.as_deref().is_none_or(|tag| self.tags.accepts(tag));
        if !self.repositories.accepts(&found.repository) || !tag_accepted {
            return Selected::Filtered;
        }
        match self.mapping.map(&found.repository) {
            Ok(target_repository) => Selected::Planned(Planned { found, target_repository, previous: None }),
            Err(error) => {
                Selected::Unmappable { message: format!("{}: {error}", found.label()), repository: found.repository }
            }
        }
    }

    /// A short stable name for this selection: repositories finished under another one are listed again.
    pub fn fingerprint(&self, extra: &str) -> String {
        crate::journal::fingerprint(&format!("{self:?} {extra}"))
    }
}
