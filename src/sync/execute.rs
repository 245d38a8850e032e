//! Copy or verify: each selected tag becomes a task, at most `--push-concurrency` at once, the next ones
//! queued for a slot; the scan is held back while that queue is full. Tasks report to the `Record` as they finish.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::gone::{self, GoneTag};
use super::record::{GoneReport, Record, TagReport};
use super::select::Planned;
use super::stops::Stops;
use super::{Consumer, SyncMode};
use crate::copy::{Copier, CopyError, Replace, TagOutcome};
use crate::layout::Digest;
use crate::registry::control::ControlError;
use crate::registry::harbor::{project_of, Harbor};
use crate::registry::target::Target;
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

/// How many tags may wait for a free slot, per slot. A catch-up finds its few changed tags among many
/// unchanged ones, which the journal skips at once: were the listing held back as soon as every slot is
/// busy, a handful of slow copies would stall it (measured at 100,000 repositories, 1% changed: the
/// catch-up took 6.6 s, its listing 6.2 s, where the plain scan takes 1.6 s; with this queue 5.2 to 5.9 s).
/// Each queued task holds its future: 64 per slot listed no faster overall and raised the peak of a
/// fresh-journal run from 54 to 78 MiB.
const QUEUED_PER_SLOT: usize = 16;

/// The tasks taken and not yet reported: at most `--push-concurrency` copying, the rest queued for a slot.
pub struct Tasks {
    context: TaskContext,
    /// Tasks copying (or deleting) at once.
    slots: Arc<Semaphore>,
    /// One permit per task taken and not finished (copying or queued): while all are out, `take` waits,
    /// and with it the listing.
    taken: Arc<Semaphore>,
    running: JoinSet<Report>,
}

impl Tasks {
    pub fn new(context: TaskContext, push_concurrency: usize) -> Tasks {
        Tasks {
            context,
            slots: Arc::new(Semaphore::new(push_concurrency)),
            taken: Arc::new(Semaphore::new(push_concurrency * (1 + QUEUED_PER_SLOT))),
            running: JoinSet::new(),
        }
    }

    /// Runs `task` in a free slot, once there is one; the caller waits only while the queue is full.
    async fn spawn<F>(&mut self, task: F)
    where
        F: std::future::Future<Output = Report> + Send + 'static,
    {
        let taken = self.taken.clone().acquire_owned().await.expect("never closed");
        let slots = self.slots.clone();
        self.running.spawn(async move {
            let slot = slots.acquire_owned().await.expect("never closed");
            let report = task.await;
            drop((slot, taken));
            report
        });
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
        let context = self.context.clone();
        self.spawn(async move {
            let result = run_task(&context, &planned).await;
            Report::Tag(TagReport { planned, result })
        })
        .await;
    }

    async fn gone(&mut self, gone: GoneTag, record: &mut Record) {
        if !self.context.delete {
            return record.gone_kept(&gone);
        }
        record.gone_started(&gone);
        let target = self.context.target.clone();
        self.spawn(async move {
            let result = gone::remove(&target, &gone).await;
            Report::Gone(GoneReport { gone, result })
        })
        .await;
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
        // The project's token is asked for while the project is made or checked; Harbor ignores a token
        // issued before its project was created.
        harbor
            .ensure_project(
                project,
                || copier.target().warm_token(repository),
                || copier.target().forget_tokens_for(project),
            )
            .await
            .map_err(|error| CopyError::from(ControlError::from(error)))?;
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
