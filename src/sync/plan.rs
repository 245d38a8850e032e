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

/// Exact sets kept on disk, removed when dropped.
struct Scratch {
    dir: PathBuf,
    db: Database,
    open: Option<WriteTransaction>,
    pending: u32,
}

impl Scratch {
    fn create() -> anyhow::Result<Scratch> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("rehydrate-plan-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let db = Database::builder().set_cache_size(16 << 20).create(dir.join("plan.redb"))?;
        Ok(Scratch { dir, db, open: None, pending: 0 })
    }

    /// The open write transaction (one batch).
    fn transaction(&mut self) -> anyhow::Result<&WriteTransaction> {
        if self.pending >= BATCH {
            if let Some(done) = self.open.take() {
                done.commit()?;
            }
            self.pending = 0;
        }
        if self.open.is_none() {
            let mut transaction = self.db.begin_write()?;
            transaction.set_durability(Durability::None)?;
            self.open = Some(transaction);
        }
        self.pending += 1;
        Ok(self.open.as_ref().expect("just opened"))
    }

    /// Adds `key` to a set of sizes; true when it was not there yet.
    fn add(&mut self, table: TableDefinition<&str, u64>, key: &str, size: u64) -> anyhow::Result<bool> {
        let transaction = self.transaction()?;
        let mut opened = transaction.open_table(table)?;
        let added = opened.insert(key, size)?.is_none();
        Ok(added)
    }

    /// Sets `key` unless it is set; the value it had.
    fn set_once(
        &mut self,
        table: TableDefinition<&str, &str>,
        key: &str,
        value: &str,
    ) -> anyhow::Result<Option<String>> {
        let transaction = self.transaction()?;
        let mut opened = transaction.open_table(table)?;
        if let Some(existing) = opened.get(key)? {
            return Ok(Some(existing.value().to_string()));
        }
        opened.insert(key, value)?;
        Ok(None)
    }

    fn get(&mut self, table: TableDefinition<&str, &str>, key: &str) -> anyhow::Result<Option<String>> {
        let transaction = self.transaction()?;
        let opened = transaction.open_table(table)?;
        let found = opened.get(key)?.map(|value| value.value().to_string());
        Ok(found)
    }

    fn put(&mut self, table: TableDefinition<&str, &str>, key: &str, value: &str) -> anyhow::Result<()> {
        let transaction = self.transaction()?;
        let mut opened = transaction.open_table(table)?;
        opened.insert(key, value)?;
        Ok(())
    }

    fn count(&mut self, table: TableDefinition<&str, u64>) -> anyhow::Result<(u64, u64)> {
        if let Some(done) = self.open.take() {
            done.commit()?;
        }
        let read = self.db.begin_read()?;
        let opened = match read.open_table(table) {
            Ok(opened) => opened,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, 0)),
            Err(error) => return Err(error.into()),
        };
        let mut total = (0, 0);
        for entry in opened.iter()? {
            total = (total.0 + 1, total.1 + entry?.1.value());
        }
        Ok(total)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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

/// Why Harbor would refuse a target repository name, with a mapping that would work.
fn refused_name(source: &str, target: &str) -> Option<RefusedName> {
    let refused = |reason: String, suggestion: String| {
        let (source, target) = (source.into(), target.into());
        Some(RefusedName { source, target, reason, suggestion, repositories: 1, project_wide: false })
    };
    let project = project_of(target);
    if !target.contains('/') {
        return refused(
            "a one-component name has no project".into(),
            format!("--include '{source}' --dest-namespace library (or any project)"),
        );
    }
    if !crate::filter::is_harbor_project_name(project) {
        let fixed = harbor_project_name(project);
        let source_project = project_of(source);
        let mut name = refused(
            format!("{project:?} is not a valid Harbor project name (^[a-z0-9]+(?:[._-][a-z0-9]+)*$)"),
            format!("--include '{source_project}/**' --dest-namespace {fixed} --flatten 1"),
        )?;
        name.project_wide = true;
        return Some(name);
    }
    if target.len() > 255 {
        return refused(
            format!("{} characters: Harbor takes at most 255", target.len()),
            format!("--include '{source}' --dest-namespace {project} --flatten -1"),
        );
    }
    None
}

/// A valid Harbor project name close to `name`: separator runs (`__`, `--`, `-_`) become one.
fn harbor_project_name(name: &str) -> String {
    let mut fixed = String::new();
    for c in name.chars() {
        let separator = matches!(c, '.' | '_' | '-');
        if separator && (fixed.is_empty() || fixed.ends_with(['.', '_', '-'])) {
            continue;
        }
        fixed.push(c);
    }
    let trimmed = fixed.trim_end_matches(['.', '_', '-']);
    if trimmed.is_empty() {
        "library".into()
    } else {
        trimmed.to_string()
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

#[derive(Serialize)]
struct Totals {
    projects: u64,
    tags: u64,
    bytes_to_move: u64,
    blobs_to_move: u64,
    estimated_requests: u64,
    refused_names: u64,
    collisions: u64,
    fits: bool,
}

fn print_json(planner: &Planner, totals: &Totals) {
    let document = serde_json::json!({
        "projects": planner.projects.iter().map(|(name, plan)| {
            let mut value = serde_json::to_value(plan).unwrap_or_default();
            value["project"] = name.clone().into();
            value
        }).collect::<Vec<_>>(),
        "refused_names": planner.refused_projects.values().chain(&planner.refused_names).collect::<Vec<_>>(),
        "collisions": planner.collisions,
        "totals": totals,
    });
    println!("{document}");
}

fn print_table(planner: &Planner, totals: &Totals) {
    println!("{:<30} {:>8} {:>8} {:>9} {:>12}  harbor", "project", "repos", "tags", "untagged", "bytes");
    for (name, plan) in &planner.projects {
        let harbor = match &plan.harbor {
            None => String::new(),
            Some(view) => describe_harbor(view, plan.bytes),
        };
        println!(
            "{name:<30} {:>8} {:>8} {:>9} {:>12}  {harbor}",
            plan.repositories,
            plan.tags,
            plan.untagged,
            human_bytes(plan.bytes)
        );
    }
    for refused in planner.refused_projects.values().chain(&planner.refused_names) {
        let more = match refused.repositories {
            1 => String::new(),
            n => format!(" (and {} more repositories of the project)", n - 1),
        };
        println!(
            "refused name: {} -> {}{more}: {}; try {}",
            refused.source, refused.target, refused.reason, refused.suggestion
        );
    }
    for collision in &planner.collisions {
        println!(
            "collision: {} and {} both map to {}: one would overwrite the other",
            collision.sources[0], collision.sources[1], collision.target
        );
    }
    println!(
        "plan: {} projects, {} tags; {} in {} blobs and manifests to move; about {} requests; {} names Harbor would \
         refuse, {} collisions; {}",
        totals.projects,
        totals.tags,
        human_bytes(totals.bytes_to_move),
        totals.blobs_to_move,
        totals.estimated_requests,
        totals.refused_names,
        totals.collisions,
        if totals.fits { "it fits" } else { "it does NOT fit" }
    );
}

fn describe_harbor(view: &HarborView, bytes: u64) -> String {
    let exists = match (view.readable, view.exists) {
        (false, _) => "UNKNOWN: the account may not read it (Harbor's 'project: read' right)",
        (true, true) => "exists",
        (true, false) => "to create",
    };
    let quota = match (view.quota_limit, view.headroom) {
        (Some(limit), Some(room)) => {
            format!("quota {} used {} headroom {}", human_bytes(limit), human_bytes(view.quota_used), human_bytes(room))
        }
        _ => "no quota".into(),
    };
    let verdict = match (view.proxy_cache, view.fits) {
        _ if !view.readable => "cannot tell whether it fits".to_string(),
        (true, _) => "PROXY CACHE: takes no pushes".to_string(),
        (false, true) => "fits".into(),
        (false, false) => format!("does NOT fit: {} over", human_bytes(bytes - view.headroom.unwrap_or(0))),
    };
    format!("{exists}, {quota}, {verdict}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_harbor_refuses_come_with_a_mapping_that_works() {
        assert!(refused_name("a/b", "a/b").is_none());
        let one = refused_name("alpine", "alpine").unwrap();
        assert!(one.suggestion.contains("--dest-namespace library"), "{one:?}");
        let separators = refused_name("org--x/app", "org--x/app").unwrap();
        assert!(
            separators.suggestion.contains("--include 'org--x/**' --dest-namespace org-x --flatten 1"),
            "{separators:?}"
        );
        let long = format!("p/{}", "a".repeat(260));
        assert!(refused_name(&long, &long).unwrap().reason.contains("at most 255"));
        assert_eq!(harbor_project_name("my__org"), "my_org");
        assert_eq!(harbor_project_name("a-_-b"), "a-b");
    }
}
