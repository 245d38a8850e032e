//! `rehydrate status`: what a sync's journal records as finished.

use std::path::Path;

use super::Outcome;

pub fn print(path: &Path) -> anyhow::Result<Outcome> {
    if !path.exists() {
        anyhow::bail!("no journal at {}", path.display());
    }
    let journal = crate::journal::Journal::open(path)?;
    println!(
        "{}: {} tags finished on the target, {} source repositories finished in this pass, {} blobs known on the \
         target",
        journal.path().display(),
        journal.finished_tags()?,
        journal.finished_repositories()?,
        journal.blobs_on_target()?
    );
    println!(
        "{}",
        match journal.last_pass()? {
            None => "no run yet: the next run is the first pass".to_string(),
            Some((pass, true)) => format!(
                "pass {pass} finished: the next run catches up (lists every repository again; tags unchanged at \
                 the source are skipped without a request)"
            ),
            Some((pass, false)) => format!(
                "pass {pass} was stopped part-way: the next run resumes it (repositories it finished are not \
                 listed again)"
            ),
        }
    );
    Ok(Outcome::Complete)
}
