//! Record: every outcome lands here: the run's counters, the problems printed, the journal (finished
//! tags, and repositories once their listing and their last tag are done).

use std::collections::HashMap;
use std::sync::Arc;

use super::select::{Found, Planned};
use super::SyncMode;
use crate::copy::{CopyError, TagOutcome};
use crate::journal::Journal;
use crate::progress::{bump, Live};
use crate::run::ProblemPrinter;
use crate::scan::{ItemError, ScanItem};

/// What one tag's task reports back.
pub struct TagReport {
    pub planned: Planned,
    pub result: Result<TagOutcome, CopyError>,
}

/// Where a sync run keeps its accounts.
pub struct Record {
    pub live: Arc<Live>,
    pub journal: Option<Arc<Journal>>,
    mode: SyncMode,
    printer: ProblemPrinter,
    open: OpenRepositories,
    /// The selection repositories are finished under (see `Journal::is_repository_done`).
    selection: String,
}

impl Record {
    pub fn new(
        live: Arc<Live>,
        mode: SyncMode,
        journal: Option<Arc<Journal>>,
        selection: String,
        quiet: bool,
    ) -> Record {
        Record {
            live,
            journal,
            mode,
            printer: ProblemPrinter::new(quiet),
            open: OpenRepositories::default(),
            selection,
        }
    }

    /// Counts an item that is not a tag: repositories opening and ending, problems of the source.
    pub fn bookkeeping(&mut self, item: ScanItem) {
        let counts = &self.live.run;
        match item {
            ScanItem::Repository { name } => {
                bump(&counts.repositories);
                self.open.opened(&name);
            }
            ScanItem::RepositoryEnd { name } => {
                let clean = self.open.listed(&name);
                self.finished(&name, clean);
            }
            ScanItem::Resumed { .. } => bump(&counts.repositories_resumed),
            ScanItem::Error(problem) => self.source_error(problem),
            ScanItem::Warning(problem) => {
                bump(&counts.warnings);
                self.printer.warning(problem);
            }
            ScanItem::Tag { .. } | ScanItem::Untagged { .. } => unreachable!("tags are selected, not kept"),
        }
    }

    fn source_error(&mut self, problem: ItemError) {
        bump(&self.live.run.source_errors);
        if let Some(repository) = &problem.repository {
            self.open.failed(repository);
        }
        self.printer.error(problem);
    }

    /// Counts a found tag, and an untagged manifest as such.
    pub fn tag_seen(&self, found: &Found) {
        bump(&self.live.run.tags_seen);
        if found.tag.is_none() {
            bump(&self.live.run.untagged);
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
    pub fn tag_started(&mut self, planned: &Planned) {
        self.open.tag_started(&planned.found.repository);
    }

    /// A task's report: journal, counters, problems, and the repository when it was its last tag.
    pub fn tag_finished(&mut self, report: TagReport) {
        let ok = report.result.is_ok();
        if let (Some(journal), true) = (&self.journal, ok) {
            let planned = &report.planned;
            journal.record(&planned.target_repository, planned.reference(), planned.found.digest.as_str());
        }
        self.count(report.result, &report.planned);
        let repository = &report.planned.found.repository;
        let clean = self.open.tag_finished(repository, ok);
        self.finished(repository, clean);
    }

    fn count(&mut self, result: Result<TagOutcome, CopyError>, planned: &Planned) {
        let counts = &self.live.run;
        match (result, self.mode) {
            (Ok(TagOutcome::Pushed), _) => {
                self.live.mark_done();
                bump(&counts.pushed)
            }
            (Ok(TagOutcome::AlreadyThere), SyncMode::Sync) => bump(&counts.already_there),
            (Ok(TagOutcome::AlreadyThere), SyncMode::Verify) => {
                self.live.mark_done();
                bump(&counts.verified)
            }
            (Err(error), _) => {
                bump(&counts.failed);
                self.printer.error(format!("{}: {error}", planned.label()));
            }
        }
    }

    /// A repository whose listing and tags are all done: journaled when clean, so that a resumed run
    /// does not list it again.
    fn finished(&self, repository: &str, clean: Option<bool>) {
        if let (Some(journal), Some(true)) = (&self.journal, clean) {
            journal.record_repository(repository, &self.selection);
        }
    }

    pub fn problem(&mut self, message: impl std::fmt::Display) {
        self.printer.error(message);
    }
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
        open.failed("c");
        assert_eq!(open.listed("c"), Some(false), "a source error too");
        open.opened("d");
        assert_eq!(open.listed("d"), Some(true), "a repository with nothing selected is finished");
    }
}
