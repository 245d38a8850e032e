//! `rehydrate plan`: another consumer of the selected tags, which reads instead of pushing. Per target
//! project it counts repositories, tags, untagged manifests and the bytes Harbor's quota would charge
//! (each blob and manifest once per project), reading each manifest once per digest from the storage;
//! against a Harbor it adds whether the project exists, its quota limit and usage, the headroom, whether
//! the plan fits, and whether it is a proxy-cache project. It lists every source name Harbor would
//! refuse, with a mapping that would work, and every collision (two source repositories mapped onto one
//! target repository). Nothing is written anywhere.
//!
//! Memory stays flat: the only state per item is on disk, in a scratch database removed at the end
//! (`Scratch`): which blobs each project holds, which blobs move, which manifests were read, which source
//! repository each target repository came from. The counts are exact.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::record::Record;
use super::select::Planned;
use super::{Consumer, Target};
use crate::copy::manifest::Manifest;
use crate::copy::{cosign_subject, Copier};
use crate::layout::Digest;
use crate::registry::harbor::project_of;
use crate::report::units::human_bytes;
use crate::run::Outcome;

mod names;
mod render;
mod scratch;

use names::refused_name;
use render::{print_json, print_table, Totals};
use scratch::Scratch;

/// How the plan is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// A table for people.
    Table,
    /// One JSON document for tools.
    Json,
}

/// Manifest digest -> what it references (JSON of `ManifestFacts`).
const MANIFESTS: TableDefinition<&str, &str> = TableDefinition::new("manifests");
/// `project \0 digest` -> size: what each project would hold.
const HELD: TableDefinition<&str, u64> = TableDefinition::new("held");
/// Digest -> size: what crosses the network once.
const MOVED: TableDefinition<&str, u64> = TableDefinition::new("moved");
/// `target \0 source` of every collision already reported.
const COLLISIONS: TableDefinition<&str, u64> = TableDefinition::new("collisions");
/// Target repository -> the source repository mapped onto it.
const TARGETS: TableDefinition<&str, &str> = TableDefinition::new("targets");

/// Writes are committed in batches of this many, without syncing (the database is scratch).
const BATCH: u32 = 10_000;

/// What a manifest references, as the plan needs it.
#[derive(Serialize, Deserialize)]
struct ManifestFacts {
    size: u64,
    /// Manifests pushed before it: an index's children, its subject.
    manifests: Vec<String>,
    /// Blobs (config, layers) with their sizes.
    blobs: Vec<(String, u64)>,
}

/// What one target project would hold.
#[derive(Debug, Default, Serialize)]
pub struct ProjectPlan {
    pub repositories: u64,
    pub tags: u64,
    pub untagged: u64,
    /// Bytes as Harbor's quota counts them: each blob and manifest once per project.
    pub bytes: u64,
    /// Tags whose manifests could not be read from the storage (their bytes are missing).
    pub unreadable: u64,
    #[serde(flatten)]
    pub harbor: Option<HarborView>,
}

/// What the target Harbor says of a project.
#[derive(Debug, Serialize)]
pub struct HarborView {
    pub exists: bool,
    /// Whether the account may read the project (a robot needs Harbor's `project: read` right); when it
    /// may not, whether it exists and its settings are unknown.
    pub readable: bool,
    pub proxy_cache: bool,
    /// The storage quota (`None`: unlimited) and its usage.
    pub quota_limit: Option<u64>,
    pub quota_used: u64,
    pub headroom: Option<u64>,
    pub fits: bool,
}

/// A source name Harbor would refuse, and a mapping that would work. Names refused for their project
/// are one entry per project (`source` the first of them, `repositories` how many).
#[derive(Debug, Serialize)]
pub struct RefusedName {
    pub source: String,
    pub target: String,
    pub reason: String,
    pub suggestion: String,
    pub repositories: u64,
    #[serde(skip)]
    project_wide: bool,
}

/// Two source repositories mapped onto one target repository.
#[derive(Debug, Serialize)]
pub struct Collision {
    pub target: String,
    pub sources: [String; 2],
}

/// Names printed one by one; past that, only counted.
const LISTED: usize = 1000;

pub struct Planner {
    copier: Arc<Copier>,
    target: Target,
    format: PlanFormat,
    scratch: Scratch,
    projects: BTreeMap<String, ProjectPlan>,
    refused_names: Vec<RefusedName>,
    /// Names refused for their project, one entry per project.
    refused_projects: BTreeMap<String, RefusedName>,
    refused_count: u64,
    collisions: Vec<Collision>,
    collision_count: u64,
    tags: u64,
}

impl Planner {
    pub fn new(copier: Arc<Copier>, target: Target, format: PlanFormat) -> anyhow::Result<Planner> {
        Ok(Planner {
            copier,
            target,
            format,
            scratch: Scratch::create()?,
            projects: BTreeMap::new(),
            refused_names: Vec::new(),
            refused_projects: BTreeMap::new(),
            refused_count: 0,
            collisions: Vec::new(),
            collision_count: 0,
            tags: 0,
        })
    }

    /// A target repository seen for the first time (its name checked), or again from another source
    /// repository (a collision).
    fn note_repository(&mut self, planned: &Planned) -> anyhow::Result<()> {
        let (source, target) = (&planned.found.repository, &planned.target_repository);
        match self.scratch.set_once(TARGETS, target, source)? {
            None => {
                self.projects.entry(project_of(target).to_string()).or_default().repositories += 1;
                if let Some(refused) = refused_name(source, target) {
                    self.refused_count += 1;
                    if refused.project_wide {
                        let project = project_of(target).to_string();
                        self.refused_projects
                            .entry(project)
                            .or_insert(RefusedName { repositories: 0, ..refused })
                            .repositories += 1;
                    } else if self.refused_names.len() < LISTED {
                        self.refused_names.push(refused);
                    }
                }
            }
            Some(first) if &first != source => {
                let pair = format!("{target}\0{source}");
                if self.scratch.add(COLLISIONS, &pair, 0)? {
                    self.collision_count += 1;
                    if self.collisions.len() < LISTED {
                        self.collisions.push(Collision { target: target.clone(), sources: [first, source.clone()] });
                    }
                }
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// What a manifest references: from the scratch database, or read (once) from the storage.
    async fn facts(&mut self, digest: &Digest) -> Result<ManifestFacts, crate::copy::CopyError> {
        if let Some(facts) = self.scratch.get(MANIFESTS, digest.as_str()).ok().flatten() {
            if let Ok(facts) = serde_json::from_str(&facts) {
                return Ok(facts);
            }
        }
        let (manifest, bytes) = self.copier.read_manifest(digest).await?;
        let mut manifests: Vec<String> = manifest.subject().map(|s| s.digest.to_string()).into_iter().collect();
        let blobs = match &manifest {
            Manifest::Index { children, .. } => {
                manifests.extend(children.iter().map(|c| c.digest.to_string()));
                Vec::new()
            }
            Manifest::Image { blobs, .. } => blobs.iter().map(|b| (b.digest.to_string(), b.size)).collect(),
        };
        let facts = ManifestFacts { size: bytes.len() as u64, manifests, blobs };
        let text = serde_json::to_string(&facts).map_err(|e| crate::copy::CopyError::Storage(e.to_string()))?;
        self.scratch
            .put(MANIFESTS, digest.as_str(), &text)
            .map_err(|e| crate::copy::CopyError::Storage(e.to_string()))?;
        Ok(facts)
    }

    /// Charges one blob (or manifest) to a project, once, and to the bytes that move, once.
    fn charge(&mut self, project: &str, digest: &str, size: u64) -> anyhow::Result<()> {
        if self.scratch.add(HELD, &format!("{project}\0{digest}"), size)? {
            self.projects.entry(project.to_string()).or_default().bytes += size;
        }
        self.scratch.add(MOVED, digest, size)?;
        Ok(())
    }

    /// Charges everything pushing `digest` into `project` would put there, as the copy pushes it.
    async fn charge_graph(&mut self, project: &str, roots: Vec<Digest>) -> Result<(), crate::copy::CopyError> {
        let mut pending = roots;
        let mut walked = 0;
        while let Some(digest) = pending.pop() {
            walked += 1;
            if walked > 10_000 {
                break; // a reference loop in broken storage; the copy would refuse it too
            }
            let facts = self.facts(&digest).await?;
            let charged = std::iter::once((digest.to_string(), facts.size)).chain(facts.blobs.iter().cloned());
            for (blob, size) in charged.collect::<Vec<_>>() {
                self.charge(project, &blob, size).map_err(|e| crate::copy::CopyError::Storage(e.to_string()))?;
            }
            pending.extend(facts.manifests.iter().filter_map(|d| Digest::parse(d).ok()));
        }
        Ok(())
    }

    /// Asks the target Harbor about each project.
    async fn ask_harbor(&mut self) {
        let Some(harbor) = self.target.harbor.clone() else { return };
        for (name, project) in self.projects.iter_mut() {
            let (info, readable) = match harbor.project(name).await {
                Ok(info) => (info, true),
                Err(_) => (None, false),
            };
            let (limit, used) = harbor.quota(name).await.ok().flatten().unwrap_or((None, 0));
            let headroom = limit.map(|limit| limit.saturating_sub(used));
            let proxy_cache = info.as_ref().is_some_and(|info| info.is_proxy_cache());
            project.harbor = Some(HarborView {
                exists: info.is_some(),
                readable,
                proxy_cache,
                quota_limit: limit,
                quota_used: used,
                headroom,
                // A project the account may not read may be full or a proxy cache: no promise.
                fits: readable && !proxy_cache && headroom.is_none_or(|room| project.bytes <= room),
            });
        }
    }

    fn fits(&self) -> bool {
        let projects_fit =
            self.projects.values().all(|p| p.unreadable == 0 && p.harbor.as_ref().is_none_or(|h| h.fits));
        projects_fit && self.refused_count == 0 && self.collision_count == 0
    }
}

impl Consumer for Planner {
    async fn take(&mut self, planned: Planned, record: &mut Record) {
        if let Err(error) = self.note_repository(&planned) {
            record.problem(format!("plan: {error}"));
        }
        let project = project_of(&planned.target_repository).to_string();
        let entry = self.projects.entry(project.clone()).or_default();
        match &planned.found.tag {
            Some(_) => entry.tags += 1,
            None => entry.untagged += 1,
        }
        self.tags += 1;
        let mut roots = vec![planned.found.digest.clone()];
        // A cosign-style tag pushes its subject first, when the storage holds it.
        if let Some(subject) = planned.found.tag.as_deref().and_then(cosign_subject) {
            if self.facts(&subject).await.is_ok() {
                roots.push(subject);
            }
        }
        if let Err(error) = self.charge_graph(&project, roots).await {
            self.projects.entry(project).or_default().unreadable += 1;
            record.problem(format!("{}: {error}", planned.found.label()));
        }
    }

    async fn finish(mut self, record: &mut Record) -> Outcome {
        if record.listing_failed {
            return Outcome::Partial; // a plan of part of the storage would understate everything
        }
        self.ask_harbor().await;
        let (held, _) = self.scratch.count(HELD).unwrap_or_default();
        let (moved_blobs, moved_bytes) = self.scratch.count(MOVED).unwrap_or_default();
        let totals = Totals {
            projects: self.projects.len() as u64,
            tags: self.tags,
            bytes_to_move: moved_bytes,
            blobs_to_move: moved_blobs,
            // A HEAD and a PUT per tag; a HEAD and a mount or upload per blob of each project; a PUT of
            // the bytes of each blob that moves; a creation and a look per project.
            estimated_requests: self.tags * 2 + held * 2 + moved_blobs + self.projects.len() as u64 * 2,
            refused_names: self.refused_count,
            collisions: self.collision_count,
            fits: self.fits(),
        };
        match self.format {
            PlanFormat::Json => print_json(&self, &totals),
            PlanFormat::Table => print_table(&self, &totals),
        }
        if totals.fits {
            Outcome::Complete
        } else {
            Outcome::Partial
        }
    }
}
