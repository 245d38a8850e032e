//! Gone: tags the journal holds that the source no longer lists. They are found per repository at the
//! end of its listing (a tag deleted, or a repository emptied), and, at the end of a whole pass, in
//! target repositories the pass did not see at all (a repository deleted). Each is reported; with
//! `--delete` it is removed from the target, but only when rehydrate pushed it and the target's tag still
//! holds the digest rehydrate pushed: on Harbor by its tag-deletion API (the artifact stays for Harbor's
//! own retention), on a plain registry by a manifest DELETE, only when no other tag of the repository
//! points at that digest (the DELETE would take that tag too).

use std::collections::HashSet;

use crate::copy::CopyError;
use crate::journal::{Journal, JournalError, TagRecord};
use crate::layout::Digest;
use crate::registry::target::Target;

/// A tag on the target that its source no longer has.
#[derive(Debug, Clone)]
pub struct GoneTag {
    /// The source repository, when it is still listed (a tag deleted from it); `None` when the whole
    /// repository is gone.
    pub source_repository: Option<String>,
    pub target_repository: String,
    pub tag: String,
    pub record: TagRecord,
}

impl GoneTag {
    pub fn label(&self) -> String {
        format!("{}:{} ({})", self.target_repository, self.tag, self.record.digest)
    }
}

/// What became of a gone tag on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    /// Someone else deleted it already.
    AlreadyGone,
    /// It points at another digest now: not rehydrate's any more, left alone.
    ChangedOnTarget(Digest),
    /// Another tag points at the same digest, which a plain registry can only delete with its tags.
    StillReferenced {
        by: String,
    },
    /// Rehydrate found it there and did not push it: never deleted.
    NotPushedByRehydrate,
}

impl Removal {
    /// Whether the journal should stop holding the tag as rehydrate's.
    pub fn settles_the_tag(&self) -> bool {
        matches!(self, Removal::Deleted | Removal::AlreadyGone | Removal::ChangedOnTarget(_))
    }
}

impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removal::Deleted => write!(f, "deleted from the target"),
            Removal::AlreadyGone => write!(f, "already gone from the target"),
            Removal::ChangedOnTarget(now) => write!(f, "not deleted: the target's tag was changed to {now}"),
            Removal::StillReferenced { by } => {
                write!(f, "not deleted: tag {by} points at the same manifest, which a registry deletes with its tags")
            }
            Removal::NotPushedByRehydrate => {
                write!(f, "not deleted: rehydrate found it on the target, did not push it")
            }
        }
    }
}

/// The journal's tags of `target_repository` that the source's listing (`listed`) no longer has.
/// Untagged manifests (references by digest) are left out.
pub fn in_repository(
    journal: &Journal,
    source_repository: Option<&str>,
    target_repository: &str,
    listed: &HashSet<String>,
) -> Result<Vec<GoneTag>, JournalError> {
    let tags = journal.tags_of(target_repository)?;
    let gone =
        tags.into_iter().filter(|(reference, _)| !reference.starts_with("sha256:") && !listed.contains(reference));
    Ok(gone
        .map(|(tag, record)| GoneTag {
            source_repository: source_repository.map(str::to_string),
            target_repository: target_repository.to_string(),
            tag,
            record,
        })
        .collect())
}

/// Every tag of the target repositories that an earlier pass saw in the source and this one did not.
/// A repository with no tag left in the journal is forgotten.
pub fn in_unseen_repositories(journal: &Journal, pass: u64) -> Result<Vec<GoneTag>, JournalError> {
    let mut gone = Vec::new();
    for repository in journal.unseen_since(pass)? {
        let tags = in_repository(journal, None, &repository, &HashSet::new())?;
        if tags.is_empty() {
            journal.forget_seen(&repository);
        }
        gone.extend(tags);
    }
    Ok(gone)
}

/// Deletes a gone tag from the target where that is safe, and says what became of it.
pub async fn remove(target: &Target, gone: &GoneTag) -> Result<Removal, CopyError> {
    if !gone.record.pushed {
        return Ok(Removal::NotPushedByRehydrate);
    }
    let pushed = Digest::parse(&gone.record.digest).map_err(|e| CopyError::Target(e.to_string()))?;
    let repository = &gone.target_repository;
    match target.registry.manifest_digest(repository, &gone.tag).await? {
        None => return Ok(Removal::AlreadyGone),
        Some(now) if now != pushed => return Ok(Removal::ChangedOnTarget(now)),
        Some(_) => {}
    }
    match &target.harbor {
        Some(harbor) => {
            harbor.delete_tag(repository, &pushed, &gone.tag).await.map_err(|e| CopyError::Target(e.to_string()))?
        }
        None => {
            if let Some(by) = other_tag_at(target, repository, &gone.tag, &pushed).await? {
                return Ok(Removal::StillReferenced { by });
            }
            target.registry.delete_manifest(repository, &pushed).await?;
        }
    }
    Ok(Removal::Deleted)
}

/// Another tag of the repository that points at `digest`, if any.
async fn other_tag_at(
    target: &Target,
    repository: &str,
    tag: &str,
    digest: &Digest,
) -> Result<Option<String>, CopyError> {
    for other in target.registry.tags(repository).await? {
        if other != tag && target.registry.manifest_digest(repository, &other).await?.as_ref() == Some(digest) {
            return Ok(Some(other));
        }
    }
    Ok(None)
}
