//! Skip: a tag the journal holds as finished on the target with the same digest costs no request.

use super::select::Planned;
use crate::journal::{Journal, JournalError};

/// Whether an earlier run (or this one) finished this tag with this digest.
pub fn is_journaled(journal: Option<&Journal>, planned: &Planned) -> Result<bool, JournalError> {
    match journal {
        Some(journal) => {
            journal.is_done(&planned.target_repository, planned.reference(), planned.found.digest.as_str())
        }
        None => Ok(false),
    }
}
