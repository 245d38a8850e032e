//! The plan's exact sets, kept on disk (a scratch redb database removed when dropped), so that memory
//! stays flat whatever the registry's size.

use super::*;

/// Exact sets kept on disk, removed when dropped.
pub(super) struct Scratch {
    dir: PathBuf,
    db: Database,
    open: Option<WriteTransaction>,
    pending: u32,
}

impl Scratch {
    pub(super) fn create() -> anyhow::Result<Scratch> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("rehydrate-plan-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let db = Database::builder().set_cache_size(16 << 20).create(dir.join("plan.redb"))?;
        Ok(Scratch { dir, db, open: None, pending: 0 })
    }

    /// The open write transaction (one batch).
    pub(super) fn transaction(&mut self) -> anyhow::Result<&WriteTransaction> {
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
    pub(super) fn add(&mut self, table: TableDefinition<&str, u64>, key: &str, size: u64) -> anyhow::Result<bool> {
        let transaction = self.transaction()?;
        let mut opened = transaction.open_table(table)?;
        let added = opened.insert(key, size)?.is_none();
        Ok(added)
    }

    /// Sets `key` unless it is set; the value it had.
    pub(super) fn set_once(
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

    pub(super) fn get(&mut self, table: TableDefinition<&str, &str>, key: &str) -> anyhow::Result<Option<String>> {
        let transaction = self.transaction()?;
        let opened = transaction.open_table(table)?;
        let found = opened.get(key)?.map(|value| value.value().to_string());
        Ok(found)
    }

    pub(super) fn put(&mut self, table: TableDefinition<&str, &str>, key: &str, value: &str) -> anyhow::Result<()> {
        let transaction = self.transaction()?;
        let mut opened = transaction.open_table(table)?;
        opened.insert(key, value)?;
        Ok(())
    }

    pub(super) fn count(&mut self, table: TableDefinition<&str, u64>) -> anyhow::Result<(u64, u64)> {
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
