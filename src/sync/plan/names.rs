//! Harbor's naming rules (`registry::harbor::name_refusal`) as the plan applies them: each refused
//! target name with a mapping that would work.

use super::*;
use crate::registry::harbor::{self, NameRefusal};

/// Why Harbor would refuse a target repository name, with a mapping that would work.
pub(super) fn refused_name(source: &str, target: &str) -> Option<RefusedName> {
    let refusal = harbor::name_refusal(target)?;
    let project = project_of(target);
    let suggestion = match &refusal {
        NameRefusal::NoProject => format!("--include '{source}' --dest-namespace library (or any project)"),
        NameRefusal::BadProject { fixed, .. } => {
            format!("--include '{}/**' --dest-namespace {fixed} --flatten 1", project_of(source))
        }
        NameRefusal::TooLong(_) => format!("--include '{source}' --dest-namespace {project} --flatten -1"),
    };
    let (source, target) = (source.into(), target.into());
    let project_wide = matches!(refusal, NameRefusal::BadProject { .. });
    Some(RefusedName { source, target, reason: refusal.to_string(), suggestion, repositories: 1, project_wide })
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
        let fixed = |project: &str| match harbor::name_refusal(&format!("{project}/x")) {
            Some(NameRefusal::BadProject { fixed, .. }) => fixed,
            other => panic!("{other:?}"),
        };
        assert_eq!(fixed("my__org"), "my_org");
        assert_eq!(fixed("a-_-b"), "a-b");
    }
}
