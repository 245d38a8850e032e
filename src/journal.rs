//! The journal: an embedded database (redb) of what is finished on the target, so that a run stopped
//! part-way (crash, kill, Ctrl-C) carries on where it was:
//!
//! - tags finished (target repository, reference -> digest): not fetched, checked or pushed again;
//! - repositories finished (every selected tag done, none failed), under the selection they were made
//!   with: their tags are not even listed again, so the listing resumes near where it stopped (only the
//!   repository discovery, one request per thousand repositories on an object store, is repeated);
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

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};
use thiserror::Error;

/// `target repository \0 reference` -> digest.
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags_done");
/// Source repository -> the selection it was finished under.
const REPOSITORIES: TableDefinition<&str, &str> = TableDefinition::new("repositories_done");
/// Blob digest -> a target repository that holds it.
const BLOBS: TableDefinition<&str, &str> = TableDefinition::new("blobs_on_target");

/// The tables a record goes to.
#[derive(Debug, Clone, Copy)]
enum Table {
    Tags,
    Repositories,
    Blobs,
}

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static str> {
        match self {
            Table::Tags => TAGS,
            Table::Repositories => REPOSITORIES,
            Table::Blobs => BLOBS,
        }
    }
}
/// The journal's page cache.
const JOURNAL_CACHE: usize = 16 << 20;
/// How often pending records are committed while a run goes on.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
#[error("journal {path}: {message}")]
pub struct JournalError {
    path: PathBuf,
    message: String,
}

pub struct Journal {
    path: PathBuf,
    db: Database,
    pending: Mutex<Vec<(Table, String, String)>>,
}

fn key(repository: &str, reference: &str) -> String {
    format!("{repository}\0{reference}")
}

impl Journal {
    /// Opens (or creates) the journal at `path`, repairing it if a process died while writing it.
    pub fn open(path: &Path) -> Result<Arc<Journal>, JournalError> {
        let fail = |message: String| JournalError { path: path.to_path_buf(), message };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
        }
        // redb caches up to 1 GiB by default; the journal's point lookups and batched writes need
        // little, and the run's memory must stay flat whatever the registry's size.
        let db = Database::builder().set_cache_size(JOURNAL_CACHE).create(path).map_err(|e| fail(e.to_string()))?;
        let journal = Journal { path: path.to_path_buf(), db, pending: Mutex::new(Vec::new()) };
        journal.commit(Vec::new())?;
        Ok(Arc::new(journal))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, error: impl std::fmt::Display) -> JournalError {
        JournalError { path: self.path.clone(), message: error.to_string() }
    }

    fn lookup(&self, table: Table, key: &str) -> Result<Option<String>, JournalError> {
        let read = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = match read.open_table(table.definition()) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(self.fail(error)),
        };
        let found = table.get(key).map_err(|e| self.fail(e))?;
        Ok(found.map(|value| value.value().to_string()))
    }

    fn note(&self, table: Table, key: String, value: String) {
        self.pending.lock().expect("journal poisoned").push((table, key, value));
    }

    /// True when this tag was finished on the target with this digest by an earlier (or this) run.
    pub fn is_done(&self, repository: &str, reference: &str, digest: &str) -> Result<bool, JournalError> {
        Ok(self.lookup(Table::Tags, &key(repository, reference))?.is_some_and(|found| found == digest))
    }

    /// Notes a finished tag; it reaches the disk with the next flush.
    pub fn record(&self, repository: &str, reference: &str, digest: &str) {
        self.note(Table::Tags, key(repository, reference), digest.to_string());
    }

    /// True when an earlier run finished this source repository under the same selection.
    pub fn is_repository_done(&self, repository: &str, selection: &str) -> Result<bool, JournalError> {
        Ok(self.lookup(Table::Repositories, repository)?.is_some_and(|found| found == selection))
    }

    /// Notes a source repository whose every selected tag is finished.
    pub fn record_repository(&self, repository: &str, selection: &str) {
        self.note(Table::Repositories, repository.to_string(), selection.to_string());
    }

    /// A target repository known to hold this blob.
    pub fn blob_home(&self, digest: &str) -> Result<Option<String>, JournalError> {
        self.lookup(Table::Blobs, digest)
    }

    /// Notes a blob now on the target, in `repository`.
    pub fn record_blob(&self, digest: &str, repository: &str) {
        self.note(Table::Blobs, digest.to_string(), repository.to_string());
    }

    /// Commits every pending record in one durable transaction.
    pub fn flush(&self) -> Result<(), JournalError> {
        let batch = std::mem::take(&mut *self.pending.lock().expect("journal poisoned"));
        if batch.is_empty() {
            return Ok(());
        }
        self.commit(batch)
    }

    fn commit(&self, batch: Vec<(Table, String, String)>) -> Result<(), JournalError> {
        let mut write = self.db.begin_write().map_err(|e| self.fail(e))?;
        write.set_quick_repair(true);
        for table in [Table::Tags, Table::Repositories, Table::Blobs] {
            let mut open = write.open_table(table.definition()).map_err(|e| self.fail(e))?;
            for (_, key, value) in
                batch.iter().filter(|(t, _, _)| std::mem::discriminant(t) == std::mem::discriminant(&table))
            {
                open.insert(key.as_str(), value.as_str()).map_err(|e| self.fail(e))?;
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
                    crate::log::warn(error);
                }
            }
        })
    }

    fn count(&self, table: Table) -> Result<u64, JournalError> {
        let read = self.db.begin_read().map_err(|e| self.fail(e))?;
        match read.open_table(table.definition()) {
            Ok(table) => table.len().map_err(|e| self.fail(e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(error) => Err(self.fail(error)),
        }
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
            journal.record("p/r", "v1", "sha256:aa");
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
    fn default_paths_differ_by_job() {
        let a = default_path("s3://a", "https://h", "0/1");
        assert_eq!(a, default_path("s3://a", "https://h", "0/1"));
        assert_ne!(a, default_path("s3://a", "https://h", "1/2"));
        assert_ne!(a, default_path("s3://b", "https://h", "0/1"));
    }
}
