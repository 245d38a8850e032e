//! Record: every outcome lands here: the run's counters, the problems printed, the journal (finished
//! tags, repositories once their listing and their last tag are done, repositories seen), and the tags
//! gone from the source.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::gone::{self, GoneTag, Removal};
use super::select::{Found, Planned};
use super::stops::Stops;
use super::SyncMode;
use crate::copy::{CopyError, TagOutcome};
use crate::filter::NameMapping;
use crate::journal::{Journal, JournalError};
use crate::registry::refusal::RefusalClass;
use crate::run::live::{bump, get, Live};
use crate::run::ProblemPrinter;
use crate::scan::{ItemError, ScanItem};

/// What one tag's task reports back.
pub struct TagReport {
    pub planned: Planned,
    pub result: Result<TagOutcome, CopyError>,
}

/// What a task deleting a gone tag reports back.
pub struct GoneReport {
    pub gone: GoneTag,
    pub result: Result<Removal, CopyError>,
}

/// The journal of a run, and the pass the run is in.
pub struct JournalRun {
    pub journal: Arc<Journal>,
    pub pass: u64,
    /// Repositories finished in this pass are recorded under this selection.
    pub selection: String,
    /// The pass before listed the same source and shard: repositories it saw and this pass does not
    /// are gone from the source.
    pub look_for_unseen: bool,
}

/// Where a sync run keeps its accounts.
pub struct Record {
    pub live: Arc<Live>,
    journal: Option<JournalRun>,
    mapping: NameMapping,
    mode: SyncMode,
    printer: ProblemPrinter,
    open: OpenRepositories,
    /// What Harbor's refusals have closed (shared with the tasks).
    pub stops: Arc<Stops>,
    /// The listing failed as a whole: what was counted is not all there is.
    pub listing_failed: bool,
}

impl Record {
    pub fn new(
        live: Arc<Live>,
        mode: SyncMode,
        journal: Option<JournalRun>,
        mapping: NameMapping,
        quiet: bool,
    ) -> Record {
        Record {
            live,
            journal,
            mapping,
            mode,
            printer: ProblemPrinter::new(quiet),
            open: OpenRepositories::default(),
            stops: Arc::default(),
            listing_failed: false,
        }
    }

    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref().map(|run| run.journal.as_ref())
    }

    /// Counts an item that is not a tag: repositories opening and ending, problems of the source.
    pub fn bookkeeping(&mut self, item: ScanItem) {
        let counts = &self.live.run;
        match item {
            ScanItem::Repository { name } => {
                bump(&counts.repositories);
                self.seen(&name);
                self.open.opened(&name);
            }
            ScanItem::RepositoryEnd { name } => {
                let clean = self.open.listed(&name);
                self.finished(&name, clean);
            }
            ScanItem::Resumed { name } => {
                bump(&counts.repositories_resumed);
                self.seen(&name);
            }
            ScanItem::Error(problem) => self.source_error(problem),
            ScanItem::Warning(problem) => {
                bump(&counts.warnings);
                self.still_listed(&problem);
                self.printer.warning(problem);
            }
            ScanItem::Tag { .. } | ScanItem::Untagged { .. } => unreachable!("tags are selected, not kept"),
        }
    }

    /// Notes in the journal that this pass saw the repository in the source.
    fn seen(&self, repository: &str) {
        if let (Some(run), Ok(target)) = (&self.journal, self.mapping.map(repository)) {
            run.journal.record_seen(&target, run.pass);
        }
    }

    fn source_error(&mut self, problem: ItemError) {
        bump(&self.live.run.source_errors);
        if let Some(repository) = &problem.repository {
            self.open.source_problem(repository);
        }
        self.still_listed(&problem);
        self.printer.error(problem);
    }

    /// A tag the listing saw but could not resolve (a bad or missing link) is broken, not gone.
    fn still_listed(&mut self, problem: &ItemError) {
        if let (Some(repository), Some(tag), true) = (&problem.repository, &problem.tag, self.journal.is_some()) {
            self.open.listed_tag(repository, tag);
        }
    }

    /// Counts a found tag (and an untagged manifest as such), and remembers that its repository still
    /// lists it, to tell which of the journal's tags are gone.
    pub fn tag_seen(&mut self, found: &Found) {
        bump(&self.live.run.tags_seen);
        match &found.tag {
            Some(tag) if self.journal.is_some() => self.open.listed_tag(&found.repository, tag),
            Some(_) => {}
            None => bump(&self.live.run.untagged),
        }
    }

    pub fn filtered(&self) {
        bump(&self.live.run.filtered);
    }

    /// A tag whose repository has no name on the target: a failure of that tag and its repository.
    pub fn unmappable(&mut self, repository: &str, message: String) {
        bump(&self.live.run.failed);
        self.open.failed(repository);
        self.printer.error(message);
    }

    /// A tag the journal holds as finished with this digest: nothing to do.
    pub fn journaled(&self) {
        bump(&self.live.run.journaled);
    }

    /// A tag handed to a task: its repository is not finished before the task reports.
    pub fn tag_started(&mut self, repository: &str) {
        self.open.tag_started(repository);
    }

    /// A task's report: journal, counters, problems, and the repository when it was its last tag.
    pub fn tag_finished(&mut self, report: TagReport) {
        let planned = &report.planned;
        let ok = report.result.is_ok();
        if let (Some(journal), Ok(outcome)) = (self.journal(), &report.result) {
            let pushed = *outcome == TagOutcome::Pushed;
            journal.record(&planned.target_repository, planned.reference(), planned.found.digest.as_str(), pushed);
        }
        self.count(report.result, planned);
        let repository = &report.planned.found.repository;
        let clean = self.open.tag_finished(repository, ok);
        self.finished(repository, clean);
    }

    fn count(&mut self, result: Result<TagOutcome, CopyError>, planned: &Planned) {
        let counts = &self.live.run;
        match (result, self.mode) {
            (Ok(TagOutcome::Pushed), _) => {
                self.live.mark_done();
                bump(&counts.pushed);
                if planned.previous.is_some() {
                    bump(&counts.moved);
                }
            }
            (Ok(TagOutcome::AlreadyThere), SyncMode::Sync) => bump(&counts.already_there),
            (Ok(TagOutcome::AlreadyThere), SyncMode::Verify) => {
                self.live.mark_done();
                bump(&counts.verified)
            }
            (Ok(TagOutcome::PullBlocked), _) => {
                bump(&counts.pull_blocked);
                self.printer.warning(format!("{}: present, pulls blocked by policy", planned.label()));
            }
            (Err(CopyError::Refused { class: RefusalClass::ReadOnly, message }), _) => {
                if get(counts.refusals_of(RefusalClass::ReadOnly)) == 0 {
                    crate::report::log::error(format!(
                        "Harbor is in read-only mode ({message}): the run stops here, its journal committed; run the \
                         same command again once Harbor takes writes, and it carries on"
                    ));
                }
                bump(counts.refusals_of(RefusalClass::ReadOnly));
            }
            (Err(error @ CopyError::Refused { .. }), _) => {
                bump(counts.refusals_of(error.refusal().expect("a refusal")));
                self.printer.error(format!("{}: {error}", planned.label()));
            }
            (Err(error @ CopyError::TagDiffers { .. }), _) => {
                bump(&counts.left_alone);
                self.printer.error(format!("{}: {error}", planned.label()));
            }
            (Err(error), _) => {
                bump(&counts.failed);
                self.printer.error(format!("{}: {error}", planned.label()));
                crate::report::log::causes(&error);
            }
        }
    }

    /// A repository whose listing and tags are all done: journaled when clean, so that a resumed run
    /// does not list it again.
    fn finished(&self, repository: &str, clean: Option<bool>) {
        if let (Some(run), Some(true)) = (&self.journal, clean) {
            run.journal.record_repository(repository, &run.selection);
        }
    }

    pub fn problem(&mut self, message: impl std::fmt::Display) {
        self.printer.error(message);
    }

    /// The journal's tags of this repository that its listing, now ended, no longer has. None when the
    /// listing met a problem: a tag it could not read is not gone.
    pub fn gone_in(&self, repository: &str) -> Result<Vec<GoneTag>, JournalError> {
        let (Some(journal), Some(open)) = (self.journal(), self.open.0.get(repository)) else { return Ok(Vec::new()) };
        let Ok(target) = self.mapping.map(repository) else { return Ok(Vec::new()) };
        if open.source_problem {
            return Ok(Vec::new());
        }
        gone::in_repository(journal, Some(repository), &target, &open.listed_tags)
    }

    /// At the end of a pass whose listing was whole: the tags of target repositories it did not see.
    pub fn gone_from_unseen_repositories(&self) -> Result<Vec<GoneTag>, JournalError> {
        let Some(run) = self.journal.as_ref().filter(|run| run.look_for_unseen) else { return Ok(Vec::new()) };
        if get(&self.live.run.source_errors) > 0 {
            crate::report::log::warn("repositories gone from the source are not looked for: the listing had errors");
            return Ok(Vec::new());
        }
        // What this pass saw must be committed before it is compared: a repository seen since the last
        // commit would otherwise look gone.
        run.journal.flush()?;
        gone::in_unseen_repositories(&run.journal, run.pass)
    }

    /// A gone tag kept on the target (no `--delete`): counted and reported, one line (or JSON object)
    /// each, and kept in the journal so that later runs report it too.
    pub fn gone_kept(&mut self, gone: &GoneTag) {
        bump(&self.live.run.gone);
        report_gone(gone, "kept on the target (sync --delete deletes it)", "kept");
    }

    /// A task deleting a gone tag was started: its repository is not finished before it reports.
    pub fn gone_started(&mut self, gone: &GoneTag) {
        if let Some(repository) = &gone.source_repository {
            self.open.tag_started(repository);
        }
    }

    pub fn gone_finished(&mut self, report: GoneReport) {
        bump(&self.live.run.gone);
        let gone = &report.gone;
        let ok = report.result.is_ok();
        match &report.result {
            Ok(removal) => {
                if *removal == Removal::Deleted {
                    bump(&self.live.run.deleted);
                }
                if let (Some(journal), true) = (self.journal(), removal.settles_the_tag()) {
                    journal.forget_tag(&gone.target_repository, &gone.tag);
                }
                report_gone(gone, &removal.to_string(), if *removal == Removal::Deleted { "deleted" } else { "kept" });
            }
            Err(error) => {
                bump(&self.live.run.failed);
                self.printer.error(format!("gone at the source: {}: deleting it failed: {error}", gone.label()));
            }
        }
        if let Some(repository) = &gone.source_repository {
            let clean = self.open.tag_finished(repository, ok);
            self.finished(repository, clean);
        }
    }
}

/// One line per gone tag (a JSON object with `--log-format json`).
fn report_gone(gone: &GoneTag, what: &str, action: &str) {
    crate::report::log::info_with(
        format!("gone at the source: {}: {what}", gone.label()),
        &[
            ("gone", true.into()),
            ("repository", gone.target_repository.clone().into()),
            ("tag", gone.tag.clone().into()),
            ("digest", gone.record.digest.clone().into()),
            ("action", action.into()),
        ],
    );
}

/// Repositories whose listing or tags are still in flight. A repository is finished once its listing
/// ended and its last tag is done: cleanly (`Some(true)`, recorded in the journal so that a resumed run
/// does not list it again) or with a failure (`Some(false)`). Only open repositories are held, so the
/// map stays as small as the work in flight.
#[derive(Default)]
struct OpenRepositories(HashMap<String, OpenRepository>);

#[derive(Default)]
struct OpenRepository {
    pending: u64,
    failed: bool,
    listed: bool,
    /// The source named a problem in this repository: its listing may be incomplete.
    source_problem: bool,
    /// Tags the listing found (only while a journal is kept, to tell which of its tags are gone).
    listed_tags: HashSet<String>,
}

impl OpenRepositories {
    fn opened(&mut self, repository: &str) {
        self.0.entry(repository.to_string()).or_default();
    }

    fn tag_started(&mut self, repository: &str) {
        self.0.entry(repository.to_string()).or_default().pending += 1;
    }

    fn failed(&mut self, repository: &str) {
        if let Some(open) = self.0.get_mut(repository) {
            open.failed = true;
        }
    }

    fn source_problem(&mut self, repository: &str) {
        if let Some(open) = self.0.get_mut(repository) {
            open.failed = true;
            open.source_problem = true;
        }
    }

    fn listed_tag(&mut self, repository: &str, tag: &str) {
        if let Some(open) = self.0.get_mut(repository) {
            open.listed_tags.insert(tag.to_string());
        }
    }

    fn tag_finished(&mut self, repository: &str, ok: bool) -> Option<bool> {
        let open = self.0.get_mut(repository)?;
        open.pending = open.pending.saturating_sub(1);
        open.failed |= !ok;
        self.settle(repository)
    }

    fn listed(&mut self, repository: &str) -> Option<bool> {
        self.0.get_mut(repository)?.listed = true;
        self.settle(repository)
    }

    fn settle(&mut self, repository: &str) -> Option<bool> {
        let open = self.0.get(repository)?;
        if !open.listed || open.pending > 0 {
            return None;
        }
        self.0.remove(repository).map(|open| !open.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_is_finished_when_listed_and_its_last_tag_is_done() {
        let mut open = OpenRepositories::default();
        open.opened("a");
        open.tag_started("a");
        open.tag_started("a");
        assert_eq!(open.tag_finished("a", true), None, "not listed yet");
        assert_eq!(open.listed("a"), None, "a tag is still in flight");
        assert_eq!(open.tag_finished("a", true), Some(true));
        assert!(open.0.is_empty(), "a finished repository is forgotten");

        open.opened("b");
        open.tag_started("b");
        open.tag_finished("b", false);
        assert_eq!(open.listed("b"), Some(false), "a failed tag keeps it from the journal");

        open.opened("c");
        open.source_problem("c");
        assert_eq!(open.listed("c"), Some(false), "a source error too");
        open.opened("d");
        assert_eq!(open.listed("d"), Some(true), "a repository with nothing selected is finished");
    }
}
