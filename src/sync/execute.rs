//! Copy or verify: each selected tag becomes a task, at most `--push-concurrency` at once; the scan is
//! held back while they are all busy. Tasks report to the `Record` as they finish.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::gone::{self, GoneTag};
use super::record::{GoneReport, Record, TagReport};
use super::select::Planned;
use super::stops::{project_of, Stops};
use super::target::Target;
use super::{Consumer, SyncMode};
use crate::copy::{Copier, CopyError, Replace, TagOutcome};
use crate::layout::Digest;
use crate::registry::harbor::{Harbor, ProjectReady};
use crate::run::Outcome;

/// What every task needs.
#[derive(Clone)]
pub struct TaskContext {
    pub copier: Arc<Copier>,
    pub target: Target,
    pub mode: SyncMode,
    pub override_tags: bool,
    /// Delete tags gone from the source (`--delete`), where that is safe.
    pub delete: bool,
    /// What Harbor's refusals have closed.
    pub stops: Arc<Stops>,
}

/// What a task reports.
pub enum Report {
    Tag(TagReport),
    Gone(GoneReport),
}

impl Record {
    fn report(&mut self, report: Report) {
        match report {
            Report::Tag(report) => self.tag_finished(report),
            Report::Gone(report) => self.gone_finished(report),
        }
    }
}

/// The tasks in flight, under the push limit.
pub struct Tasks {
    context: TaskContext,
    slots: Arc<Semaphore>,
    running: JoinSet<Report>,
}

impl Tasks {
    pub fn new(context: TaskContext, push_concurrency: usize) -> Tasks {
        Tasks { context, slots: Arc::new(Semaphore::new(push_concurrency)), running: JoinSet::new() }
    }
}

impl Consumer for Tasks {
    fn collect(&mut self, record: &mut Record) {
        while let Some(done) = self.running.try_join_next() {
            record.report(done.expect("a copy task panicked"));
        }
    }

    async fn take(&mut self, planned: Planned, record: &mut Record) {
        record.tag_started(&planned.found.repository);
        let permit = self.slots.clone().acquire_owned().await.expect("never closed");
        let context = self.context.clone();
        self.running.spawn(async move {
            let result = run_task(&context, &planned).await;
            drop(permit);
            Report::Tag(TagReport { planned, result })
        });
    }

    async fn gone(&mut self, gone: GoneTag, record: &mut Record) {
        if !self.context.delete {
            return record.gone_kept(&gone);
        }
        record.gone_started(&gone);
        let permit = self.slots.clone().acquire_owned().await.expect("never closed");
        let target = self.context.target.clone();
        self.running.spawn(async move {
            let result = gone::remove(&target, &gone).await;
            drop(permit);
            Report::Gone(GoneReport { gone, result })
        });
    }

    async fn finish(mut self, record: &mut Record) -> Outcome {
        while let Some(done) = self.running.join_next().await {
            record.report(done.expect("a copy task panicked"));
        }
        Outcome::Complete
    }
}

/// One tag, unless a refusal closed its project or the run; what it meets may close them in turn.
async fn run_task(context: &TaskContext, planned: &Planned) -> Result<TagOutcome, CopyError> {
    if let Some(refused) = context.stops.refusal_before(&planned.target_repository) {
        return Err(refused);
    }
    let result = copy_or_verify(context, planned).await;
    if let Err(error) = &result {
        context.stops.after(&planned.target_repository, error);
    }
    result
}

async fn copy_or_verify(context: &TaskContext, planned: &Planned) -> Result<TagOutcome, CopyError> {
    let (repository, digest) = (&planned.target_repository, &planned.found.digest);
    match context.mode {
        SyncMode::Sync => {
            let harbor = context.target.harbor.as_deref();
            let replace = match (&planned.previous, context.override_tags) {
                (_, true) => Replace::Any,
                (Some(previous), false) => Replace::Only(previous.clone()),
                (None, false) => Replace::Never,
            };
            copy_one(&context.copier, harbor, repository, planned.found.tag.as_deref(), digest, &replace).await
        }
        SyncMode::Verify => verify_one(&context.copier, repository, planned.reference(), digest).await,
    }
}

async fn copy_one(
    copier: &Copier,
    harbor: Option<&Harbor>,
    repository: &str,
    tag: Option<&str>,
    digest: &Digest,
    replace: &Replace,
) -> Result<TagOutcome, CopyError> {
    if let Some(harbor) = harbor {
        let project = project_of(repository);
        if harbor.ensure_project(project).await? == ProjectReady::Created {
            // Harbor ignores a token issued before its project was created.
            copier.target().forget_tokens_for(project).await;
        }
    }
    match tag {
        Some(tag) => copier.copy_tag(repository, tag, digest, replace).await,
        None => copier.copy_untagged(repository, digest).await,
    }
}

async fn verify_one(
    copier: &Copier,
    repository: &str,
    reference: &str,
    digest: &Digest,
) -> Result<TagOutcome, CopyError> {
    match copier.target_manifest(repository, reference).await? {
        Some(found) if &found.digest == digest && found.pull_blocked => Ok(TagOutcome::PullBlocked),
        Some(found) if &found.digest == digest => Ok(TagOutcome::AlreadyThere),
        Some(found) => {
            Err(CopyError::Target(format!("the target's tag points at {}, the source's at {digest}", found.digest)))
        }
        None => Err(CopyError::Target("missing on the target".to_string())),
    }
}
