//! The journal: an embedded database (redb) of the tags finished on the target, so that a run stopped
//! part-way (crash, kill, Ctrl-C) carries on where it was: finished tags are not fetched, checked or
//! pushed again.
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
/// How often pending records are committed while a run goes on.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
#[error("journal {path}: {message}")]
pub struct JournalError {
    path: PathBuf,
    message: String,
}

pub struct Journal {
    path: PathBuf,
    db: Database,
    pending: Mutex<Vec<(String, String)>>,
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
        let db = Database::create(path).map_err(|e| fail(e.to_string()))?;
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

    /// True when this tag was finished on the target with this digest by an earlier (or this) run.
    pub fn is_done(&self, repository: &str, reference: &str, digest: &str) -> Result<bool, JournalError> {
        let read = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = read.open_table(TAGS).map_err(|e| self.fail(e))?;
        let found = table.get(key(repository, reference).as_str()).map_err(|e| self.fail(e))?;
        Ok(found.is_some_and(|value| value.value() == digest))
    }

    /// Notes a finished tag; it reaches the disk with the next flush.
    pub fn record(&self, repository: &str, reference: &str, digest: &str) {
        self.pending.lock().expect("journal poisoned").push((key(repository, reference), digest.to_string()));
    }

    /// Commits every pending record in one durable transaction.
    pub fn flush(&self) -> Result<(), JournalError> {
        let batch = std::mem::take(&mut *self.pending.lock().expect("journal poisoned"));
        if batch.is_empty() {
            return Ok(());
        }
        self.commit(batch)
    }

    fn commit(&self, batch: Vec<(String, String)>) -> Result<(), JournalError> {
        let mut write = self.db.begin_write().map_err(|e| self.fail(e))?;
        write.set_quick_repair(true);
        {
            let mut table = write.open_table(TAGS).map_err(|e| self.fail(e))?;
            for (key, digest) in &batch {
                table.insert(key.as_str(), digest.as_str()).map_err(|e| self.fail(e))?;
            }
        }
        write.commit().map_err(|e| self.fail(e))
    }

    /// How many tags the journal holds as finished.
    pub fn finished_tags(&self) -> Result<u64, JournalError> {
        let read = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = read.open_table(TAGS).map_err(|e| self.fail(e))?;
        table.len().map_err(|e| self.fail(e))
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
    let identity = format!("{source}\n{target}\n{shard}");
    let hash = identity.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    base.join(format!("journal-{hash:016x}.redb"))
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
    fn default_paths_differ_by_job() {
        let a = default_path("s3://a", "https://h", "0/1");
        assert_eq!(a, default_path("s3://a", "https://h", "0/1"));
        assert_ne!(a, default_path("s3://a", "https://h", "1/2"));
        assert_ne!(a, default_path("s3://b", "https://h", "0/1"));
    }
}
