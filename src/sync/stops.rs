//! Stops: what Harbor's refusals close for the rest of a run. A refusal by quota, by a proxy-cache
//! project or by missing permissions closes its project: its remaining tags are refused without a
//! request. Read-only mode closes the whole run: it stops taking tags at once, and its pass stays open,
//! so that the same command carries on once Harbor takes writes again.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::copy::CopyError;
use crate::registry::harbor::project_of;
use crate::registry::refusal::{self, RefusalClass};
use crate::report::units::human_bytes;

#[derive(Default)]
pub struct Stops {
    projects: Mutex<HashMap<String, (RefusalClass, String)>>,
    run: OnceLock<String>,
}

impl Stops {
    /// The refusal a tag of `repository` gets without a request, if its project or the run is closed.
    pub fn refusal_before(&self, repository: &str) -> Option<CopyError> {
        if let Some(message) = self.run.get() {
            return Some(CopyError::Refused {
                class: RefusalClass::ReadOnly,
                message: format!("not tried: {message}"),
            });
        }
        let project = project_of(repository);
        let projects = self.projects.lock().expect("stops poisoned");
        let (class, message) = projects.get(project)?;
        Some(CopyError::Refused {
            class: *class,
            message: format!("not tried: project {project} was refused earlier: {message}"),
        })
    }

    /// Closes what a refusal closes; true when it closed the run just now.
    pub fn after(&self, repository: &str, error: &CopyError) -> bool {
        let CopyError::Refused { class, message } = error else { return false };
        if *class == RefusalClass::ReadOnly {
            return self.run.set(message.clone()).is_ok();
        }
        if class.stops_the_project() {
            let why = match (class, refusal::quota_shortfall(message)) {
                (RefusalClass::Quota, Some(missing)) => {
                    format!("over its storage quota, {} were missing ({})", human_bytes(missing), short(message))
                }
                _ => short(message),
            };
            let mut projects = self.projects.lock().expect("stops poisoned");
            projects.entry(project_of(repository).to_string()).or_insert((*class, why));
        }
        false
    }

    pub fn run_stopped(&self) -> bool {
        self.run.get().is_some()
    }
}

/// A refusal's message without the repetition Harbor's answers carry, for the tags refused after it.
fn short(message: &str) -> String {
    message.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(class: RefusalClass) -> CopyError {
        CopyError::Refused { class, message: "m".into() }
    }

    #[test]
    fn a_project_refusal_closes_the_project_and_read_only_the_run() {
        let stops = Stops::default();
        assert!(stops.refusal_before("p/r").is_none());
        assert!(!stops.after("p/r", &refused(RefusalClass::Immutable)), "an immutable tag is the tag's own matter");
        assert!(stops.refusal_before("p/other").is_none());
        let quota =
            "adding 21.0 MiB of storage resource, which when updated to current usage of 990.0 MiB will exceed \
                     the configured upper limit of 1000.0 MiB.";
        stops.after("p/r", &CopyError::Refused { class: RefusalClass::Quota, message: quota.into() });
        let later = stops.refusal_before("p/other").unwrap();
        assert_eq!(later.refusal(), Some(RefusalClass::Quota));
        assert!(later.to_string().contains("11.0 MiB were missing"), "{later}");
        assert!(stops.refusal_before("q/r").is_none(), "other projects go on");
        assert!(stops.after("q/r", &refused(RefusalClass::ReadOnly)), "the first read-only refusal stops the run");
        assert!(!stops.after("q/r", &refused(RefusalClass::ReadOnly)), "once");
        assert!(stops.run_stopped());
        assert_eq!(stops.refusal_before("z/r").and_then(|e| e.refusal()), Some(RefusalClass::ReadOnly));
    }
}
