//! Harbor's naming rules as the plan applies them: why a target name would be refused, and a mapping
//! that would work.

use super::*;

/// Why Harbor would refuse a target repository name, with a mapping that would work.
pub(super) fn refused_name(source: &str, target: &str) -> Option<RefusedName> {
    let refused = |reason: String, suggestion: String| {
        let (source, target) = (source.into(), target.into());
        Some(RefusedName { source, target, reason, suggestion, repositories: 1, project_wide: false })
    };
    let project = project_of(target);
    if !target.contains('/') {
        return refused(
            "a one-component name has no project".into(),
            format!("--include '{source}' --dest-namespace library (or any project)"),
        );
    }
    if !crate::filter::is_harbor_project_name(project) {
        let fixed = harbor_project_name(project);
        let source_project = project_of(source);
        let mut name = refused(
            format!("{project:?} is not a valid Harbor project name (^[a-z0-9]+(?:[._-][a-z0-9]+)*$)"),
            format!("--include '{source_project}/**' --dest-namespace {fixed} --flatten 1"),
        )?;
        name.project_wide = true;
        return Some(name);
    }
    if target.len() > 255 {
        return refused(
            format!("{} characters: Harbor takes at most 255", target.len()),
            format!("--include '{source}' --dest-namespace {project} --flatten -1"),
        );
    }
    None
}

/// A valid Harbor project name close to `name`: separator runs (`__`, `--`, `-_`) become one.
fn harbor_project_name(name: &str) -> String {
    let mut fixed = String::new();
    for c in name.chars() {
        let separator = matches!(c, '.' | '_' | '-');
        if separator && (fixed.is_empty() || fixed.ends_with(['.', '_', '-'])) {
            continue;
        }
        fixed.push(c);
    }
    let trimmed = fixed.trim_end_matches(['.', '_', '-']);
    if trimmed.is_empty() {
        "library".into()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_harbor_refuses_come_with_a_mapping_that_works() {
        assert!(refused_name("a/b", "a/b").is_none());
        let one = refused_name("alpine", "alpine").unwrap();
        assert!(one.suggestion.contains("--dest-namespace library"), "{one:?}");
        let separators = refused_name("org--x/app", "org--x/app").unwrap();
        assert!(
            separators.suggestion.contains("--include 'org--x/**' --dest-namespace org-x --flatten 1"),
            "{separators:?}"
        );
        let long = format!("p/{}", "a".repeat(260));
        assert!(refused_name(&long, &long).unwrap().reason.contains("at most 255"));
        assert_eq!(harbor_project_name("my__org"), "my_org");
        assert_eq!(harbor_project_name("a-_-b"), "a-b");
    }
}
