//! Summarise: the closing lines of a sync or verify run (as text, or JSON fields with `--log-format json`).

use std::time::Instant;

use super::{SyncMode, SyncPlan};
use crate::registry::refusal::RefusalClass;
use crate::report::units::{human_bytes, human_duration};
use crate::run::live::{get, Live};
use crate::run::log_storage_requests;

pub fn print(plan: &SyncPlan, live: &Live, started: Instant) {
    let elapsed = human_duration(started.elapsed());
    let kind = plan.mode.kind();
    match kind {
        SyncMode::Sync => {
            crate::report::log::info_with(format!("sync finished in {elapsed}: {}", sync_totals(live)), &live.fields())
        }
        SyncMode::Verify => crate::report::log::info_with(
            format!("verify finished in {elapsed}: {}", verify_totals(live)),
            &live.fields(),
        ),
    }
    if matches!(&plan.mode, super::Mode::Sync(copying) if copying.journal.is_some()) {
        print_catch_up(live);
    }
    print_refusals(live);
    log_storage_requests(&live.requests);
    let resumed = get(&live.run.repositories_resumed);
    if resumed > 0 {
        crate::report::log::info(format!(
            "{resumed} repositories were finished by an earlier run (from the journal): their tags were not listed again"
        ));
    }
    print_timeline(kind, live, started);
    print_windows(&live.http);
    let counts = &live.run;
    if get(&counts.failed) > 0 || get(&counts.source_errors) > 0 || get(&counts.left_alone) > 0 || counts.refused() > 0
    {
        crate::report::log::info(format!(
            "the run is PARTIAL: {} tags failed, {} left alone, {} refused by Harbor's policies, {} source items could \
             not be read",
            get(&counts.failed),
            get(&counts.left_alone),
            counts.refused(),
            get(&counts.source_errors)
        ));
    }
}

/// Tags refused by Harbor's policies, by class; and those present whose pulls a policy blocks.
fn print_refusals(live: &Live) {
    let counts = &live.run;
    if counts.refused() > 0 {
        let by_class: Vec<String> = RefusalClass::ALL
            .iter()
            .filter(|class| get(counts.refusals_of(**class)) > 0)
            .map(|class| format!("{} {}", get(counts.refusals_of(*class)), class.name()))
            .collect();
        crate::report::log::info(format!("refused by Harbor's policies: {}", by_class.join(", ")));
    }
    if get(&counts.pull_blocked) > 0 {
        crate::report::log::info(format!(
            "{} tags are present with the right digest, pulls blocked by policy (content trust or vulnerability \
             prevention)",
            get(&counts.pull_blocked)
        ));
    }
}

/// What changed since the journal's last run: the figures an operator repeating a sync watches.
fn print_catch_up(live: &Live) {
    let counts = &live.run;
    let (moved, gone) = (get(&counts.moved), get(&counts.gone));
    crate::report::log::info(format!(
        "since the journal's last run: {} new, {moved} moved, {} unchanged (skipped without a request), {} left alone \
         (changed on the target), {gone} gone at the source, {} deleted",
        get(&counts.pushed) - moved,
        get(&counts.journaled),
        get(&counts.left_alone),
        get(&counts.deleted)
    ));
}

fn sync_totals(live: &Live) -> String {
    let (counts, copy) = (&live.run, &live.copy);
    let resumed = match get(&counts.repositories_resumed) {
        0 => String::new(),
        resumed => format!(" ({resumed} finished by an earlier run)"),
    };
    format!(
        "{} repositories{resumed}, {} tags selected ({} filtered out): {} pushed, {} already there, {} failed, \
         {} left alone ({} known finished from the journal); blobs: {} uploaded ({}), {} mounted, {} already on the target; \
         {} manifests pushed; {} source errors, {} warnings; {} retries",
        get(&counts.repositories) + get(&counts.repositories_resumed),
        selected(live),
        get(&counts.filtered),
        get(&counts.pushed),
        get(&counts.already_there) + get(&counts.journaled),
        get(&counts.failed),
        get(&counts.left_alone),
        get(&counts.journaled),
        get(&copy.blobs_uploaded),
        human_bytes(get(&copy.bytes_uploaded)),
        get(&copy.blobs_mounted),
        get(&copy.blobs_present),
        get(&copy.manifests_pushed),
        get(&counts.source_errors),
        get(&counts.warnings),
        live.http.retries(),
    )
}

fn verify_totals(live: &Live) -> String {
    let counts = &live.run;
    format!(
        "{} tags selected ({} filtered out): {} match, {} do not; {} of the matching present with pulls blocked by \
         policy; {} source errors",
        selected(live),
        get(&counts.filtered),
        get(&counts.verified) + get(&counts.pull_blocked),
        get(&counts.failed),
        get(&counts.pull_blocked),
        get(&counts.source_errors)
    )
}

fn selected(live: &Live) -> u64 {
    get(&live.run.tags_seen) - get(&live.run.filtered)
}

/// Where each side's adaptive window ended, and how often the servers made it halve.
fn print_windows(http: &crate::http::Context) {
    let Some(target) = http.window(crate::http::Side::Target) else { return };
    let storage = http.window(crate::http::Side::Storage);
    crate::report::log::info_with(
        format!(
            "windows: target {} in flight at the end, halved {} times; storage {}, halved {} times",
            target.size(),
            target.cuts(),
            storage.map(|w| w.size()).unwrap_or(0),
            storage.map(|w| w.cuts()).unwrap_or(0)
        ),
        &[
            ("window_target", target.size().into()),
            ("window_target_cuts", target.cuts().into()),
            ("window_storage", storage.map(|w| w.size()).unwrap_or(0).into()),
            ("window_storage_cuts", storage.map(|w| w.cuts()).unwrap_or(0).into()),
        ],
    );
}

fn print_timeline(mode: SyncMode, live: &Live, started: Instant) {
    let (Some(first), Some(listed)) = (live.first_done.get(), live.listing_finished.get()) else { return };
    crate::report::log::info_with(
        format!(
            "timeline: first tag {} after {}; listing finished after {}",
            if mode == SyncMode::Sync { "pushed" } else { "verified" },
            human_duration(*first),
            human_duration(*listed)
        ),
        &[
            ("first_done_seconds", first.as_secs_f64().into()),
            ("listing_finished_seconds", listed.as_secs_f64().into()),
            ("total_seconds", started.elapsed().as_secs_f64().into()),
        ],
    );
}
