//! Skip: a tag the journal holds as finished on the target with the same digest costs no request. One
//! it holds at another digest has moved at the source since: it goes on, knowing the digest rehydrate
//! set, so that the target's tag may follow the source.

use super::select::Planned;
use crate::journal::{Journal, JournalError};
use crate::layout::Digest;

/// The planned copy still to do, or `None` when the journal has it finished at this digest.
pub fn unless_journaled(journal: Option<&Journal>, mut planned: Planned) -> Result<Option<Planned>, JournalError> {
    let Some(journal) = journal else { return Ok(Some(planned)) };
    match journal.tag(&planned.target_repository, planned.reference())? {
        Some(record) if record.digest == planned.found.digest.as_str() => Ok(None),
        Some(record) => {
            planned.previous = Digest::parse(&record.digest).ok();
            Ok(Some(planned))
        }
        None => Ok(Some(planned)),
    }
}
