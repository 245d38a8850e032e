//! `rehydrate export-tags`: every tag a Harbor holds, as inventory lines, kept for a rebuild.
//!
//! Since v2.15 Harbor keeps tag names only in its database: its storage holds manifests by digest. A
//! rebuild after a lost database (`sync --in-place --untagged`) restores every artifact from the
//! storage, and with `--tags-from` the tags this command exported, by (repository, digest).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use url::Url;

use super::Outcome;
use crate::registry::credentials::Credentials;
use crate::registry::target::Target;

/// What to export, and where to.
pub struct ExportPlan {
    pub target: Url,
    pub credentials: Option<Credentials>,
    /// Which repositories' tags (all by default).
    pub repositories: crate::filter::NameFilter,
    pub ca_cert: Option<PathBuf>,
    /// The file to write (written whole to a temporary file, then renamed: a failed export leaves the
    /// previous one); standard output when `None`.
    pub output: Option<PathBuf>,
}

pub fn run_export_tags(plan: ExportPlan) -> anyhow::Result<Outcome> {
    tokio::runtime::Handle::current().block_on(export(plan))
}

async fn export(plan: ExportPlan) -> anyhow::Result<Outcome> {
    let target =
        Target::connect(&plan.target, plan.credentials.clone(), plan.ca_cert.as_deref(), None, Default::default())
            .await?;
    let harbor = target
        .harbor
        .with_context(|| format!("{} is not a Harbor: only Harbor keeps tags outside its storage", plan.target))?;
    let (mut out, temporary): (Box<dyn Write>, Option<PathBuf>) = match &plan.output {
        Some(path) => {
            let temporary = path.with_extension("partial");
            let file =
                std::fs::File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
            (Box::new(std::io::BufWriter::new(file)), Some(temporary))
        }
        None => (Box::new(std::io::BufWriter::new(std::io::stdout().lock())), None),
    };
    let mut written: std::io::Result<()> = Ok(());
    let count = harbor
        .each_tag(
            |repository| plan.repositories.accepts(repository),
            |repository, tag, digest| {
                if written.is_ok() {
                    let line = serde_json::json!({"repository": repository, "tag": tag, "digest": digest});
                    written = writeln!(out, "{line}");
                }
            },
        )
        .await?;
    written.and_then(|()| out.flush()).context("writing the tags")?;
    drop(out);
    if let (Some(temporary), Some(path)) = (temporary, &plan.output) {
        std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    }
    crate::report::log::info(format!("exported {count} tags from {}", plan.target));
    Ok(Outcome::Complete)
}
