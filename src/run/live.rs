//! The live view of a run: its counters (shared by the pipeline that counts them, the progress
//! reporter, the metrics endpoint and the final summary), its progress line and fields, and its
//! metrics, read when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::copy::CopyCounts;
use crate::http::{self, Side};
use crate::registry::refusal::RefusalClass;
use crate::report::metrics::{counter, gauge, Labels};
use crate::report::progress::{bar, View};
use crate::report::units::{human_bytes, human_duration};
use crate::scan::RequestCounts;

/// Counts of a run, as they grow.
#[derive(Debug, Default)]
pub struct RunCounters {
    pub repositories: AtomicU64,
    /// Repositories an earlier run finished, whose tags were not listed again.
    pub repositories_resumed: AtomicU64,
    pub tags_seen: AtomicU64,
    pub untagged: AtomicU64,
    pub filtered: AtomicU64,
    pub pushed: AtomicU64,
    pub already_there: AtomicU64,
    pub verified: AtomicU64,
    /// Tags the journal says an earlier run finished: skipped without a request.
    pub journaled: AtomicU64,
    /// Pushed tags that rehydrate had set to another digest before (the source moved them).
    pub moved: AtomicU64,
    /// Target tags pointing elsewhere, changed by someone else (or never set by rehydrate): not touched.
    pub left_alone: AtomicU64,
    /// Tags the journal holds that the source no longer has, and those deleted from the target.
    pub gone: AtomicU64,
    pub deleted: AtomicU64,
    /// Tags refused by Harbor's policies, by class (in `RefusalClass::ALL`'s order).
    pub refusals: [AtomicU64; 5],
    /// Tags present with the right digest whose pulls a Harbor policy blocks.
    pub pull_blocked: AtomicU64,
    pub failed: AtomicU64,
    pub source_errors: AtomicU64,
    pub warnings: AtomicU64,
}

impl RunCounters {
    /// The counter of one refusal class.
    pub fn refusals_of(&self, class: RefusalClass) -> &AtomicU64 {
        let index = RefusalClass::ALL.iter().position(|c| *c == class).expect("every class is listed");
        &self.refusals[index]
    }

    /// Tags refused by any policy.
    pub fn refused(&self) -> u64 {
        self.refusals.iter().map(get).sum()
    }
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Everything a live view of the run reads.
pub struct Live {
    pub what: &'static str,
    pub run: RunCounters,
    pub requests: Arc<RequestCounts>,
    pub copy: Arc<CopyCounts>,
    /// The run's HTTP state: retries and windows.
    pub http: Arc<http::Context>,
    pub started: Instant,
    /// When the first tag was pushed (or verified), from the start.
    pub first_done: OnceLock<Duration>,
    /// When the listing ended, from the start.
    pub listing_finished: OnceLock<Duration>,
}

impl Live {
    /// A live view of a run that started at `started` (times are counted from there).
    pub fn new(
        what: &'static str,
        started: Instant,
        requests: Arc<RequestCounts>,
        copy: Arc<CopyCounts>,
        http: Arc<http::Context>,
    ) -> Live {
        Live {
            what,
            run: RunCounters::default(),
            requests,
            copy,
            http,
            started,
            first_done: OnceLock::new(),
            listing_finished: OnceLock::new(),
        }
    }

    pub fn mark_done(&self) {
        self.first_done.get_or_init(|| self.started.elapsed());
    }

    pub fn mark_listing_finished(&self) {
        self.listing_finished.get_or_init(|| self.started.elapsed());
    }

    /// Tags handled so far, whatever their outcome.
    fn tags_done(&self) -> u64 {
        let r = &self.run;
        get(&r.pushed)
            + get(&r.already_there)
            + get(&r.verified)
            + get(&r.journaled)
            + get(&r.failed)
            + get(&r.left_alone)
            + r.refused()
            + get(&r.pull_blocked)
    }

    /// One line of progress; `rate` is the recent upload rate in bytes per second.
    pub fn line(&self, rate: f64) -> String {
        let r = &self.run;
        let mut line = format!("[{}] ", human_duration(self.started.elapsed()));
        let seen = get(&r.tags_seen);
        let listing = if self.listing_finished.get().is_some() { "listed" } else { "listing" };
        let _ = write!(
            line,
            "{listing}: {} repositories, {} tags",
            get(&r.repositories) + get(&r.repositories_resumed),
            seen
        );
        if self.what != "scan" {
            let selected = seen - get(&r.filtered);
            let done = self.tags_done();
            if self.listing_finished.get().is_some() && selected > 0 {
                let _ = write!(line, " | {} {done}/{selected} ({}%)", bar(done, selected, 20), done * 100 / selected);
            } else {
                let _ = write!(line, " | done {done}");
            }
            let _ = write!(
                line,
                " (pushed {}, present {}, failed {})",
                get(&r.pushed),
                get(&r.already_there) + get(&r.journaled) + get(&r.verified),
                get(&r.failed)
            );
            let _ = write!(
                line,
                " | {} uploaded, {}/s",
                human_bytes(get(&self.copy.bytes_uploaded)),
                human_bytes(rate as u64)
            );
        }
        let errors = get(&r.source_errors) + if self.what == "scan" { 0 } else { get(&r.failed) };
        let _ = write!(line, " | {errors} errors, {} retries", self.http.retries());
        if let Some(target) = self.http.window(Side::Target).filter(|_| self.what != "scan") {
            let _ = write!(line, " | window {}", target.size());
        }
        line
    }

    /// The same as fields, for JSON progress lines.
    pub fn fields(&self) -> Vec<(&'static str, serde_json::Value)> {
        let r = &self.run;
        vec![
            ("elapsed_seconds", self.started.elapsed().as_secs().into()),
            ("listing_finished", self.listing_finished.get().is_some().into()),
            ("repositories", (get(&r.repositories) + get(&r.repositories_resumed)).into()),
            ("tags_seen", get(&r.tags_seen).into()),
            ("filtered", get(&r.filtered).into()),
            ("pushed", get(&r.pushed).into()),
            ("already_there", (get(&r.already_there) + get(&r.journaled)).into()),
            ("verified", get(&r.verified).into()),
            ("failed", get(&r.failed).into()),
            ("new", (get(&r.pushed) - get(&r.moved)).into()),
            ("moved", get(&r.moved).into()),
            ("unchanged", get(&r.journaled).into()),
            ("left_alone", get(&r.left_alone).into()),
            ("gone", get(&r.gone).into()),
            ("deleted", get(&r.deleted).into()),
            ("refused", r.refused().into()),
            ("refusals", self.refusal_fields()),
            ("pull_blocked", get(&r.pull_blocked).into()),
            ("source_errors", get(&r.source_errors).into()),
            ("bytes_uploaded", get(&self.copy.bytes_uploaded).into()),
            ("retries", self.http.retries().into()),
            ("window_target", self.http.window(Side::Target).map(|w| w.size()).into()),
            ("window_storage", self.http.window(Side::Storage).map(|w| w.size()).into()),
        ]
    }

    /// Refusals by class, as a JSON object.
    fn refusal_fields(&self) -> serde_json::Value {
        let by_class =
            RefusalClass::ALL.iter().map(|class| (class.name().to_string(), get(self.run.refusals_of(*class)).into()));
        serde_json::Value::Object(by_class.collect())
    }

    /// The run's counters as metric families, read at each scrape.
    fn encode_metrics(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        self.encode_listing_metrics(encoder)?;
        self.encode_tag_metrics(encoder)?;
        self.encode_copy_metrics(encoder)
    }

    /// What the listing found and what it cost.
    fn encode_listing_metrics(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let (r, requests) = (&self.run, &self.requests);
        counter(
            encoder,
            "rehydrate_repositories",
            "Repositories found in the storage (resumed: finished by an earlier run).",
            &[(&[("state", "listed")], get(&r.repositories)), (&[("state", "resumed")], get(&r.repositories_resumed))],
        )?;
        counter(
            encoder,
            "rehydrate_keys_listed",
            "Storage keys (or folder entries) seen by listings.",
            &[(&[], get(&requests.entries))],
        )?;
        counter(
            encoder,
            "rehydrate_storage_operations",
            "Storage listings and link reads made by the scan.",
            &[(&[("kind", "list")], get(&requests.lists)), (&[("kind", "read")], get(&requests.reads))],
        )
    }

    /// What became of the tags, and the problems met on the way.
    fn encode_tag_metrics(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let r = &self.run;
        counter(
            encoder,
            "rehydrate_tags",
            "Tags (and untagged manifests) by outcome.",
            &[
                (&[("outcome", "seen")], get(&r.tags_seen)),
                (&[("outcome", "filtered")], get(&r.filtered)),
                (&[("outcome", "pushed")], get(&r.pushed)),
                (&[("outcome", "already_there")], get(&r.already_there)),
                (&[("outcome", "journaled")], get(&r.journaled)),
                (&[("outcome", "moved")], get(&r.moved)),
                (&[("outcome", "left_alone")], get(&r.left_alone)),
                (&[("outcome", "gone")], get(&r.gone)),
                (&[("outcome", "deleted")], get(&r.deleted)),
                (&[("outcome", "verified")], get(&r.verified)),
                (&[("outcome", "failed")], get(&r.failed)),
            ],
        )?;
        counter(
            encoder,
            "rehydrate_errors",
            "Items that failed: unreadable source items and failed tags.",
            &[(&[("kind", "source")], get(&r.source_errors)), (&[("kind", "tag")], get(&r.failed))],
        )?;
        let labels: Vec<[(&str, &str); 1]> = RefusalClass::ALL.iter().map(|c| [("class", c.name())]).collect();
        let samples: Vec<(Labels, u64)> =
            labels.iter().zip(RefusalClass::ALL).map(|(labels, c)| (&labels[..], get(r.refusals_of(c)))).collect();
        counter(encoder, "rehydrate_refusals", "Tags refused by Harbor's policies, by class.", &samples)?;
        counter(encoder, "rehydrate_warnings", "Items skipped with a warning.", &[(&[], get(&r.warnings))])
    }

    /// What was put on the target, and the retries it took.
    fn encode_copy_metrics(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let c = &self.copy;
        counter(
            encoder,
            "rehydrate_blobs",
            "Blobs put on the target, by how.",
            &[
                (&[("how", "uploaded")], get(&c.blobs_uploaded)),
                (&[("how", "mounted")], get(&c.blobs_mounted)),
                (&[("how", "present")], get(&c.blobs_present)),
            ],
        )?;
        counter(
            encoder,
            "rehydrate_bytes_uploaded",
            "Blob bytes uploaded to the target.",
            &[(&[], get(&c.bytes_uploaded))],
        )?;
        counter(
            encoder,
            "rehydrate_manifests_pushed",
            "Manifests PUT on the target.",
            &[(&[], get(&c.manifests_pushed))],
        )?;
        counter(
            encoder,
            "rehydrate_retries",
            "Requests tried again (storage and target).",
            &[(&[], self.http.retries())],
        )?;
        self.encode_window_metrics(encoder)
    }

    /// Each side's adaptive window: its size now, and how often it was halved.
    fn encode_window_metrics(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let sides = [Side::Target, Side::Storage].map(|side| (side, self.http.window(side)));
        let sizes: Vec<(Labels, u64)> =
            sides.iter().filter_map(|(side, window)| window.map(|w| (side_label(*side), w.size() as u64))).collect();
        gauge(encoder, "rehydrate_window", "Requests allowed in flight, by side.", &sizes)?;
        let cuts: Vec<(Labels, u64)> =
            sides.iter().filter_map(|(side, window)| window.map(|w| (side_label(*side), w.cuts()))).collect();
        counter(encoder, "rehydrate_window_cuts", "Times a side's window was halved.", &cuts)
    }
}

impl View for Live {
    fn line(&self, rate: f64) -> String {
        Live::line(self, rate)
    }

    fn fields(&self) -> Vec<(&'static str, serde_json::Value)> {
        Live::fields(self)
    }

    fn bytes_done(&self) -> u64 {
        get(&self.copy.bytes_uploaded)
    }
}

/// The run's counters, registered in the metrics registry.
pub struct LiveMetrics(pub Arc<Live>);

impl std::fmt::Debug for LiveMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveMetrics({})", self.0.what)
    }
}

impl Collector for LiveMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        self.0.encode_metrics(&mut encoder)
    }
}

/// The label set naming a side.
fn side_label(side: Side) -> Labels<'static> {
    match side {
        Side::Target => &[("side", "target")],
        Side::Storage => &[("side", "storage")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_line_names_what_is_done() {
        let live = Live::new("sync", Instant::now(), Arc::default(), Arc::default(), Arc::default());
        live.run.tags_seen.store(10, Ordering::Relaxed);
        live.run.pushed.store(4, Ordering::Relaxed);
        live.run.failed.store(1, Ordering::Relaxed);
        live.mark_listing_finished();
        let line = live.line(0.0);
        assert!(line.contains("listed: 0 repositories, 10 tags"), "{line}");
        assert!(line.contains("5/10 (50%)"), "{line}");
        assert!(line.contains("pushed 4, present 0, failed 1"), "{line}");
    }
}
