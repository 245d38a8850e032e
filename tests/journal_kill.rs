//! The journal survives a kill during its own write: a child process commits batches of records as fast
//! as it can and is SIGKILLed at moments it does not choose, many times over the same file. Each time,
//! the journal reopens, and it holds whole batches only: every record of a batch, or none of it.

use std::process::{Command, Stdio};
use std::time::Duration;

use rehydrate::journal::Journal;

const CHILD_ENV: &str = "REHYDRATE_JOURNAL_WRITER";
const BATCH: usize = 200;

/// In the child: commit batch after batch until killed. Batch `b` holds tags `b-0` .. `b-199`.
fn write_forever(path: &str) -> ! {
    let journal = Journal::open(std::path::Path::new(path)).unwrap();
    let start = journal.finished_tags().unwrap() as usize / BATCH;
    for batch in start.. {
        for i in 0..BATCH {
            journal.record("repo", &format!("{batch}-{i}"), "sha256:aa", true);
            journal.record_blob(&format!("sha256:{batch}-{i}"), "repo");
        }
        journal.flush().unwrap();
    }
    unreachable!()
}

#[test]
fn the_journal_reopens_whole_after_kills_during_commits() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        write_forever(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let mut previous = 0;
    for round in 0..12u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "the_journal_reopens_whole_after_kills_during_commits", "--nocapture"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a different moment each round, while commits are going on.
        std::thread::sleep(Duration::from_millis(150 + round * 37 % 200));
        child.kill().unwrap();
        child.wait().unwrap();

        let journal =
            Journal::open(&path).unwrap_or_else(|e| panic!("round {round}: the journal does not reopen: {e}"));
        let tags = journal.finished_tags().unwrap();
        assert_eq!(tags % BATCH as u64, 0, "round {round}: only whole batches are kept ({tags} records)");
        assert_eq!(journal.blobs_on_target().unwrap(), tags, "round {round}: both tables of a batch commit together");
        assert!(tags >= previous, "round {round}: nothing committed is lost ({tags} after {previous})");
        let batches = tags / BATCH as u64;
        if batches > 0 {
            assert!(journal.is_done("repo", &format!("{}-{}", batches - 1, BATCH - 1), "sha256:aa").unwrap());
        }
        previous = tags;
    }
    assert!(previous > 0, "the writer committed batches between kills");
}
