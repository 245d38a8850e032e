//! The dry run: the same stream of selected tags, consumed by reading instead of pushing. It says what
//! would be created and pushed, and how many blob bytes would move (each blob counted once).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::record::Record;
use super::select::Planned;
use super::{Consumer, Target};
use crate::copy::manifest::Manifest;
use crate::copy::Copier;
use crate::layout::Digest;
use crate::report::units::human_bytes;
use crate::run::Outcome;

pub struct DryRun {
    copier: Arc<Copier>,
    target: Target,
    projects: BTreeSet<String>,
    repositories: BTreeSet<String>,
    tags: u64,
    already_there: u64,
    blobs: HashSet<Digest>,
    bytes: u64,
}

impl DryRun {
    pub fn new(copier: Arc<Copier>, target: Target) -> DryRun {
        DryRun {
            copier,
            target,
            projects: BTreeSet::new(),
            repositories: BTreeSet::new(),
            tags: 0,
            already_there: 0,
            blobs: HashSet::new(),
            bytes: 0,
        }
    }

    /// Adds every blob of the image (or index) at `digest` to the bytes that would move.
    async fn count_blobs(&mut self, digest: &Digest, planned: &Planned, record: &mut Record) {
        let mut pending = vec![digest.clone()];
        while let Some(manifest_digest) = pending.pop() {
            match self.copier.read_manifest(&manifest_digest).await {
                Ok((Manifest::Index { children, .. }, _)) => pending.extend(children.into_iter().map(|c| c.digest)),
                Ok((Manifest::Image { blobs, .. }, _)) => {
                    for blob in blobs {
                        if self.blobs.insert(blob.digest) {
                            self.bytes += blob.size;
                        }
                    }
                }
                Err(error) => record.problem(format!("{}: {error}", planned.found.label())),
            }
        }
    }
}

impl Consumer for DryRun {
    async fn take(&mut self, planned: Planned, record: &mut Record) {
        let (repository, reference, digest) = (&planned.target_repository, planned.reference(), &planned.found.digest);
        if let Ok(Some(existing)) = self.target.registry.manifest_digest(repository, reference).await {
            if &existing == digest {
                self.already_there += 1;
                return;
            }
        }
        if self.target.harbor.is_some() {
            self.projects.insert(crate::registry::harbor::project_of(repository).to_string());
        }
        self.repositories.insert(repository.to_string());
        self.tags += 1;
        println!("would push {repository}:{reference} ({digest})");
        self.count_blobs(digest, &planned, record).await;
    }

    async fn finish(self, _record: &mut Record) -> Outcome {
        let projects = match self.target.harbor {
            Some(_) => format!(
                "create up to {} projects ({}), ",
                self.projects.len(),
                self.projects.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            None => String::new(),
        };
        println!(
            "dry run: would {projects}push {} tags into {} repositories, move up to {} blobs ({}); {} tags already there",
            self.tags,
            self.repositories.len(),
            self.blobs.len(),
            human_bytes(self.bytes),
            self.already_there
        );
        Outcome::Complete
    }
}
