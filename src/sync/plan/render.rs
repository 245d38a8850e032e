//! Writing the plan: a table for people, or one JSON document for tools.

use super::*;

#[derive(Serialize)]
pub(super) struct Totals {
    pub(super) projects: u64,
    pub(super) tags: u64,
    pub(super) bytes_to_move: u64,
    pub(super) blobs_to_move: u64,
    pub(super) estimated_requests: u64,
    pub(super) refused_names: u64,
    pub(super) collisions: u64,
    pub(super) fits: bool,
}

pub(super) fn print_json(planner: &Planner, totals: &Totals) {
    let document = serde_json::json!({
        "projects": planner.projects.iter().map(|(name, plan)| {
            let mut value = serde_json::to_value(plan).unwrap_or_default();
            value["project"] = name.clone().into();
            value
        }).collect::<Vec<_>>(),
        "refused_names": planner.refused_projects.values().chain(&planner.refused_names).collect::<Vec<_>>(),
        "collisions": planner.collisions,
        "totals": totals,
    });
    println!("{document}");
}

pub(super) fn print_table(planner: &Planner, totals: &Totals) {
    println!("{:<30} {:>8} {:>8} {:>9} {:>12}  harbor", "project", "repos", "tags", "untagged", "bytes");
    for (name, plan) in &planner.projects {
        let harbor = match &plan.harbor {
            None => String::new(),
            Some(view) => describe_harbor(view, plan.bytes),
        };
        println!(
            "{name:<30} {:>8} {:>8} {:>9} {:>12}  {harbor}",
            plan.repositories,
            plan.tags,
            plan.untagged,
            human_bytes(plan.bytes)
        );
    }
    for refused in planner.refused_projects.values().chain(&planner.refused_names) {
        let more = match refused.repositories {
            1 => String::new(),
            n => format!(" (and {} more repositories of the project)", n - 1),
        };
        println!(
            "refused name: {} -> {}{more}: {}; try {}",
            refused.source, refused.target, refused.reason, refused.suggestion
        );
    }
    for collision in &planner.collisions {
        println!(
            "collision: {} and {} both map to {}: one would overwrite the other",
            collision.sources[0], collision.sources[1], collision.target
        );
    }
    println!(
        "plan: {} projects, {} tags; {} in {} blobs and manifests to move; about {} requests; {} names Harbor would \
         refuse, {} collisions; {}",
        totals.projects,
        totals.tags,
        human_bytes(totals.bytes_to_move),
        totals.blobs_to_move,
        totals.estimated_requests,
        totals.refused_names,
        totals.collisions,
        if totals.fits { "it fits" } else { "it does NOT fit" }
    );
}

fn describe_harbor(view: &HarborView, bytes: u64) -> String {
    let exists = match (view.readable, view.exists) {
        (false, _) => "UNKNOWN: the account may not read it (Harbor's 'project: read' right)",
        (true, true) => "exists",
        (true, false) => "to create",
    };
    let quota = match (view.quota_limit, view.headroom) {
        (Some(limit), Some(room)) => {
            format!("quota {} used {} headroom {}", human_bytes(limit), human_bytes(view.quota_used), human_bytes(room))
        }
        _ => "no quota".into(),
    };
    let verdict = match (view.proxy_cache, view.fits) {
        _ if !view.readable => "cannot tell whether it fits".to_string(),
        (true, _) => "PROXY CACHE: takes no pushes".to_string(),
        (false, true) => "fits".into(),
        (false, false) => format!("does NOT fit: {} over", human_bytes(bytes - view.headroom.unwrap_or(0))),
    };
    format!("{exists}, {quota}, {verdict}")
}
