//! The journal: an embedded database (redb) of what is finished on the target, so that a run stopped
//! part-way (crash, kill, Ctrl-C) carries on where it was, and a later run catches up with a source that
//! kept changing:
//!
//! - tags finished (target repository, reference -> digest, and whether rehydrate pushed it or found it
//!   there): not fetched, checked or pushed again while the source has the same digest; a tag rehydrate
//!   set may follow the source to a new digest; only a tag rehydrate pushed may be deleted;
//! - runs, as passes: a run that reaches its end finishes its pass. The next run starts a new pass (a
//!   catch-up: every repository is listed again); a run started after one that was stopped part-way
//!   carries on the same pass;
//! - repositories finished in this pass (every selected tag done, none failed), under the selection they
//!   were made with: a resumed run does not even list their tags again;
//! - target repositories seen, with the last pass that saw them in the source: one not seen by a whole
//!   pass is gone from the source;
//! - blobs known to be on the target, with the repository holding them: later repositories mount them
//!   from there, and the copy engine's memory need not remember every blob of the registry.
//!
//! Records are written in batches (one transaction every `FLUSH_EVERY`, or at the end), each committed
//! durably with redb's quick repair, so a kill during a write loses at most the last batch. A tag that
//! finished after the last commit is found again on the next run, and its HEAD on the target (same
//! digest) skips it: nothing is ever pushed twice, whatever moment the process dies.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use thiserror::Error;

/// `target repository \0 reference` -> digest, followed by ` found` when rehydrate found it there.
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags_done");
/// Source repository -> the selection it was finished under, in the current pass.
const REPOSITORIES: TableDefinition<&str, &str> = TableDefinition::new("repositories_done");
/// Blob digest -> a target repository that holds it.
const BLOBS: TableDefinition<&str, &str> = TableDefinition::new("blobs_on_target");
/// Target repository -> the last pass whose listing saw it in the source.
const SEEN: TableDefinition<&str, &str> = TableDefinition::new("repositories_seen");
/// `pass` -> the current pass number; `state` -> `running` or `finished`; `scope` -> what it lists.
const RUNS: TableDefinition<&str, &str> = TableDefinition::new("runs");

/// The tables a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Tags,
    Repositories,
    Blobs,
    Seen,
    Runs,
}

impl Table {
    const ALL: [Table; 5] = [Table::Tags, Table::Repositories, Table::Blobs, Table::Seen, Table::Runs];

    fn definition(self) -> TableDefinition<'static, &'static str, &'static str> {
        match self {
            Table::Tags => TAGS,
            Table::Repositories => REPOSITORIES,
            Table::Blobs => BLOBS,
            Table::Seen => SEEN,
            Table::Runs => RUNS,
        }
    }
}

/// One change waiting for the next commit.
enum Change {
    Put(Table, String, String),
    Remove(Table, String),
}

impl Change {
    fn table(&self) -> Table {
        match self {
            Change::Put(table, ..) | Change::Remove(table, _) => *table,
        }
    }
}

/// What the journal holds of a tag on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub digest: String,
    /// Rehydrate pushed it (rather than finding it there with the same digest).
    pub pushed: bool,
}

impl TagRecord {
    fn parse(value: &str) -> TagRecord {
        match value.strip_suffix(" found") {
            Some(digest) => TagRecord { digest: digest.to_string(), pushed: false },
            None => TagRecord { digest: value.to_string(), pushed: true },
        }
    }

    fn encode(digest: &str, pushed: bool) -> String {
        if pushed {
            digest.to_string()
        } else {
            format!("{digest} found")
        }
    }
}

/// How a run starts, from what the journal says of the run before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStart {
    /// A new journal: the first pass.
    First,
    /// The run before was stopped part-way: this one carries on its pass.
    Resume { pass: u64 },
    /// The run before finished: a new pass lists every repository again.
    CatchUp { pass: u64 },
}

impl RunStart {
    pub fn pass(self) -> u64 {
        match self {
            RunStart::First => 1,
            RunStart::Resume { pass } | RunStart::CatchUp { pass } => pass,
        }
    }
}

/// The journal's page cache.
const JOURNAL_CACHE: usize = 16 << 20;
/// How often pending records are committed while a run goes on.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
#[error("journal {path}: {source}")]
pub struct JournalError {
    path: PathBuf,
    source: Box<dyn std::error::Error + Send + Sync>,
}

pub struct Journal {
    path: PathBuf,
    db: Database,
    pending: Mutex<Vec<Change>>,
}

fn key(repository: &str, reference: &str) -> String {
    format!("{repository}\0{reference}")
}

impl Journal {
    /// Opens (or creates) the journal at `path`, repairing it if a process died while writing it.
    pub fn open(path: &Path) -> Result<Arc<Journal>, JournalError> {
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| JournalError { path: path.to_path_buf(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| fail(e.into()))?;
        }
        // redb caches up to 1 GiB by default; the journal's point lookups and batched writes need
        // little, and the run's memory must stay flat whatever the registry's size.
        let db = Database::builder().set_cache_size(JOURNAL_CACHE).create(path).map_err(|e| fail(e.into()))?;
        let journal = Journal { path: path.to_path_buf(), db, pending: Mutex::new(Vec::new()) };
        journal.commit(Vec::new())?;
        Ok(Arc::new(journal))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> JournalError {
        JournalError { path: self.path.clone(), source: error.into() }
    }

    /// Runs `read` on a table; a table never written yet reads as `empty`.
    fn read<T>(
        &self,
        table: Table,
        empty: T,
        read: impl FnOnce(redb::ReadOnlyTable<&'static str, &'static str>) -> Result<T, redb::StorageError>,
    ) -> Result<T, JournalError> {
        let transaction = self.db.begin_read().map_err(|e| self.fail(e))?;
        match transaction.open_table(table.definition()) {
            Ok(opened) => read(opened).map_err(|e| self.fail(e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(error) => Err(self.fail(error)),
        }
    }

    fn lookup(&self, table: Table, key: &str) -> Result<Option<String>, JournalError> {
        self.read(table, None, |opened| Ok(opened.get(key)?.map(|value| value.value().to_string())))
    }

    fn note(&self, change: Change) {
        self.pending.lock().expect("journal poisoned").push(change);
    }

    /// What the journal holds of this tag on the target.
    pub fn tag(&self, repository: &str, reference: &str) -> Result<Option<TagRecord>, JournalError> {
        Ok(self.lookup(Table::Tags, &key(repository, reference))?.map(|value| TagRecord::parse(&value)))
    }

    /// True when this tag was finished on the target with this digest by an earlier (or this) run.
    pub fn is_done(&self, repository: &str, reference: &str, digest: &str) -> Result<bool, JournalError> {
        Ok(self.tag(repository, reference)?.is_some_and(|found| found.digest == digest))
    }

    /// Notes a finished tag (`pushed`: rehydrate put it there); it reaches the disk with the next flush.
    pub fn record(&self, repository: &str, reference: &str, digest: &str, pushed: bool) {
        self.note(Change::Put(Table::Tags, key(repository, reference), TagRecord::encode(digest, pushed)));
    }

    /// Forgets a tag: deleted from the target, or no longer rehydrate's there.
    pub fn forget_tag(&self, repository: &str, reference: &str) {
        self.note(Change::Remove(Table::Tags, key(repository, reference)));
    }

    /// Every tag the journal holds in one target repository: (reference, record).
    pub fn tags_of(&self, repository: &str) -> Result<Vec<(String, TagRecord)>, JournalError> {
        let (start, end) = (format!("{repository}\0"), format!("{repository}\u{1}"));
        self.read(Table::Tags, Vec::new(), |opened| {
            let mut tags = Vec::new();
            for entry in opened.range(start.as_str()..end.as_str())? {
                let (reference, value) = entry?;
                let reference = reference.value()[start.len()..].to_string();
                tags.push((reference, TagRecord::parse(value.value())));
            }
            Ok(tags)
        })
    }

    /// True when this pass finished this source repository under the same selection.
    pub fn is_repository_done(&self, repository: &str, selection: &str) -> Result<bool, JournalError> {
        Ok(self.lookup(Table::Repositories, repository)?.is_some_and(|found| found == selection))
    }

    /// Notes a source repository whose every selected tag is finished.
    pub fn record_repository(&self, repository: &str, selection: &str) {
        self.note(Change::Put(Table::Repositories, repository.to_string(), selection.to_string()));
    }

    /// Notes that this pass's listing saw a target repository in the source.
    pub fn record_seen(&self, repository: &str, pass: u64) {
        self.note(Change::Put(Table::Seen, repository.to_string(), pass.to_string()));
    }

    /// Forgets a target repository gone from the source whose tags are all settled.
    pub fn forget_seen(&self, repository: &str) {
        self.note(Change::Remove(Table::Seen, repository.to_string()));
    }

    /// Target repositories an earlier pass saw in the source and this pass did not.
    pub fn unseen_since(&self, pass: u64) -> Result<Vec<String>, JournalError> {
        self.read(Table::Seen, Vec::new(), |opened| {
            let mut unseen = Vec::new();
            for entry in opened.iter()? {
                let (repository, seen) = entry?;
                if seen.value().parse::<u64>().unwrap_or(0) < pass {
                    unseen.push(repository.value().to_string());
                }
            }
            Ok(unseen)
        })
    }

    /// A target repository the journal knows to hold this blob.
    pub fn blob_home(&self, digest: &str) -> Result<Option<String>, JournalError> {
        self.lookup(Table::Blobs, digest)
    }

    /// Notes a blob now on the target, in `repository`.
    pub fn record_blob(&self, digest: &str, repository: &str) {
        self.note(Change::Put(Table::Blobs, digest.to_string(), repository.to_string()));
    }

    /// The last pass and whether it finished; `None` for a journal no run has started in.
    pub fn last_pass(&self) -> Result<Option<(u64, bool)>, JournalError> {
        let Some(pass) = self.lookup(Table::Runs, "pass")? else { return Ok(None) };
        let finished = self.lookup(Table::Runs, "state")?.as_deref() == Some("finished");
        Ok(Some((pass.parse().unwrap_or(1), finished)))
    }

    /// Starts a run over `scope` (what it lists: source and shard): carries on the last pass if it was
    /// stopped part-way, or starts a new one (whose finished repositories start empty, so that every
    /// repository is listed again). Committed at once, so that a run killed from here on is known as
    /// stopped part-way. Also says whether the pass before listed the same scope: only then does a
    /// repository it saw and this one does not mean a repository gone from the source.
    pub fn begin_run(&self, scope: &str) -> Result<(RunStart, bool), JournalError> {
        let same_scope = self.lookup(Table::Runs, "scope")?.is_none_or(|last| last == scope);
        let start = match self.last_pass()? {
            None => RunStart::First,
            Some((pass, false)) => RunStart::Resume { pass },
            Some((pass, true)) => RunStart::CatchUp { pass: pass + 1 },
        };
        let mut transaction = self.db.begin_write().map_err(|e| self.fail(e))?;
        transaction.set_quick_repair(true);
        if let RunStart::CatchUp { .. } = start {
            transaction.delete_table(REPOSITORIES).map_err(|e| self.fail(e))?;
        }
        {
            let mut runs = transaction.open_table(RUNS).map_err(|e| self.fail(e))?;
            runs.insert("pass", start.pass().to_string().as_str()).map_err(|e| self.fail(e))?;
            runs.insert("state", "running").map_err(|e| self.fail(e))?;
            runs.insert("scope", scope).map_err(|e| self.fail(e))?;
        }
        transaction.commit().map_err(|e| self.fail(e))?;
        Ok((start, same_scope))
    }

    /// Notes that this run reached its end: the next run starts a new pass.
    pub fn finish_run(&self) {
        self.note(Change::Put(Table::Runs, "state".into(), "finished".into()));
    }

    /// Commits every pending record in one durable transaction.
    pub fn flush(&self) -> Result<(), JournalError> {
        let batch = std::mem::take(&mut *self.pending.lock().expect("journal poisoned"));
        if batch.is_empty() {
            return Ok(());
        }
        self.commit(batch)
    }

    fn commit(&self, batch: Vec<Change>) -> Result<(), JournalError> {
        let mut write = self.db.begin_write().map_err(|e| self.fail(e))?;
        write.set_quick_repair(true);
        for table in Table::ALL {
            let mut open = write.open_table(table.definition()).map_err(|e| self.fail(e))?;
            for change in batch.iter().filter(|change| change.table() == table) {
                match change {
                    Change::Put(_, key, value) => open.insert(key.as_str(), value.as_str()).map(drop),
                    Change::Remove(_, key) => open.remove(key.as_str()).map(drop),
                }
                .map_err(|e| self.fail(e))?;
            }
        }
        write.commit().map_err(|e| self.fail(e))
    }

    /// Commits pending records every `FLUSH_EVERY` until the returned task is aborted.
    pub fn start_flushing(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let journal = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_EVERY).await;
                let journal = journal.clone();
                let flushed = tokio::task::spawn_blocking(move || journal.flush()).await;
                if let Err(error) = flushed.expect("journal flush panicked") {
                    crate::report::log::warn(error);
                }
            }
        })
    }

    fn count(&self, table: Table) -> Result<u64, JournalError> {
        self.read(table, 0, |opened| opened.len())
    }

    /// How many tags the journal holds as finished.
    pub fn finished_tags(&self) -> Result<u64, JournalError> {
        self.count(Table::Tags)
    }

    /// How many source repositories the journal holds as finished.
    pub fn finished_repositories(&self) -> Result<u64, JournalError> {
        self.count(Table::Repositories)
    }

    /// How many blobs the journal knows to be on the target.
    pub fn blobs_on_target(&self) -> Result<u64, JournalError> {
        self.count(Table::Blobs)
    }
}

/// The default journal for a run: under `$XDG_STATE_HOME/rehydrate` (or `~/.local/state/rehydrate`, or
/// `.rehydrate-state` in the working directory when neither is set), named after what the run copies
/// where, so that runs of different jobs never share a journal and the same command finds its own.
pub fn default_path(source: &str, target: &str, shard: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .map(|dir| dir.join("rehydrate"))
        .unwrap_or_else(|| PathBuf::from(".rehydrate-state"));
    base.join(format!("journal-{}.redb", fingerprint(&format!("{source}\n{target}\n{shard}"))))
}

/// A short stable name for a text (FNV-1a, 64 bits, in hex): for file names and selections.
pub fn fingerprint(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopening_and_name_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/j.redb");
        {
            let journal = Journal::open(&path).unwrap();
            journal.record("p/r", "v1", "sha256:aa", true);
            assert!(!journal.is_done("p/r", "v1", "sha256:aa").unwrap(), "not before the flush");
            journal.flush().unwrap();
            assert!(journal.is_done("p/r", "v1", "sha256:aa").unwrap());
        }
        let journal = Journal::open(&path).unwrap();
        assert!(journal.is_done("p/r", "v1", "sha256:aa").unwrap());
        assert!(!journal.is_done("p/r", "v1", "sha256:bb").unwrap(), "a tag re-pointed in the source is copied again");
        assert!(!journal.is_done("p/r", "v2", "sha256:aa").unwrap());
        assert_eq!(journal.finished_tags().unwrap(), 1);
    }

    #[test]
    fn repositories_are_finished_under_one_selection_and_blobs_have_a_home() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.redb")).unwrap();
        assert!(!journal.is_repository_done("a/b", "sel1").unwrap(), "a new journal has no tables yet");
        assert_eq!(journal.blob_home("sha256:aa").unwrap(), None);
        journal.record_repository("a/b", "sel1");
        journal.record_blob("sha256:aa", "p/one");
        journal.flush().unwrap();
        assert!(journal.is_repository_done("a/b", "sel1").unwrap());
        assert!(!journal.is_repository_done("a/b", "sel2").unwrap(), "another selection lists it again");
        assert_eq!(journal.blob_home("sha256:aa").unwrap().as_deref(), Some("p/one"));
        assert_eq!(
            (
                journal.finished_repositories().unwrap(),
                journal.blobs_on_target().unwrap(),
                journal.finished_tags().unwrap()
            ),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_finished_run_makes_the_next_a_catch_up_and_a_stopped_one_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.redb");
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.last_pass().unwrap(), None);
        assert_eq!(journal.begin_run("s").unwrap().0, RunStart::First);
        journal.record_repository("a", "sel");
        journal.flush().unwrap();
        drop(journal);
        // Killed before its end: the same pass goes on, with its finished repositories.
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.last_pass().unwrap(), Some((1, false)));
        assert_eq!(journal.begin_run("s").unwrap().0, RunStart::Resume { pass: 1 });
        assert!(journal.is_repository_done("a", "sel").unwrap());
        journal.finish_run();
        journal.flush().unwrap();
        assert_eq!(journal.last_pass().unwrap(), Some((1, true)));
        // Finished: a new pass lists everything again, and a kill in it resumes that pass.
        assert_eq!(journal.begin_run("s").unwrap().0, RunStart::CatchUp { pass: 2 });
        assert!(!journal.is_repository_done("a", "sel").unwrap(), "a new pass lists every repository again");
        assert_eq!(journal.begin_run("s").unwrap().0, RunStart::Resume { pass: 2 });
        assert_eq!(journal.begin_run("another shard").unwrap(), (RunStart::Resume { pass: 2 }, false));
    }

    #[test]
    fn tags_say_who_put_them_there_and_can_be_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.redb")).unwrap();
        journal.record("p/r", "pushed", "sha256:aa", true);
        journal.record("p/r", "found", "sha256:bb", false);
        journal.record("p/r/deeper", "other", "sha256:cc", true);
        journal.record("p/q", "x", "sha256:dd", true);
        journal.flush().unwrap();
        let tags = journal.tags_of("p/r").unwrap();
        assert_eq!(
            tags,
            vec![
                ("found".to_string(), TagRecord { digest: "sha256:bb".into(), pushed: false }),
                ("pushed".to_string(), TagRecord { digest: "sha256:aa".into(), pushed: true }),
            ],
            "only this repository's tags, not a nested one's"
        );
        assert!(journal.is_done("p/r", "found", "sha256:bb").unwrap());
        journal.forget_tag("p/r", "pushed");
        journal.flush().unwrap();
        assert_eq!(journal.tag("p/r", "pushed").unwrap(), None);
        assert_eq!(journal.tags_of("p/r").unwrap().len(), 1);
    }

    #[test]
    fn repositories_unseen_by_a_pass_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.redb")).unwrap();
        assert!(journal.unseen_since(1).unwrap().is_empty(), "no table yet");
        journal.record_seen("p/old", 1);
        journal.record_seen("p/kept", 1);
        journal.record_seen("p/kept", 2);
        journal.flush().unwrap();
        assert_eq!(journal.unseen_since(2).unwrap(), vec!["p/old".to_string()]);
        journal.forget_seen("p/old");
        journal.flush().unwrap();
        assert!(journal.unseen_since(2).unwrap().is_empty());
    }

    #[test]
    fn default_paths_differ_by_job() {
        let a = default_path("s3://a", "https://h", "0/1");
        assert_eq!(a, default_path("s3://a", "https://h", "0/1"));
        assert_ne!(a, default_path("s3://a", "https://h", "1/2"));
        assert_ne!(a, default_path("s3://b", "https://h", "0/1"));
    }
}
