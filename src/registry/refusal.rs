//! Harbor's refusals by policy, recognised by class from the status and the error body Harbor sends
//! (read in Harbor v2.15.2's middlewares; `../shared/docs/harbor.md`). Each class deserves its own
//! handling: none of them is helped by trying again.

use super::error_code::ErrorCode;

/// Why Harbor refused a request by policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalClass {
    /// 403 `DENIED` "... will exceed the configured upper limit of ...": the project's storage quota.
    Quota,
    /// 412 `PRECONDITION` "... configured as immutable": an immutable tag rule.
    Immutable,
    /// 403 `DENIED` "The system is in read only mode": the whole instance refuses every write.
    ReadOnly,
    /// 403 `DENIED` "can not push artifact to a proxy project": a proxy-cache project.
    ProxyCache,
    /// The credentials may not do this in this project (a robot outside its projects, a robot that may
    /// not create projects).
    Permission,
}

impl RefusalClass {
    pub const ALL: [RefusalClass; 5] = [
        RefusalClass::Quota,
        RefusalClass::Immutable,
        RefusalClass::ReadOnly,
        RefusalClass::ProxyCache,
        RefusalClass::Permission,
    ];

    /// The name used in summaries and metrics.
    pub fn name(self) -> &'static str {
        match self {
            RefusalClass::Quota => "quota",
            RefusalClass::Immutable => "immutable",
            RefusalClass::ReadOnly => "read_only",
            RefusalClass::ProxyCache => "proxy_cache",
            RefusalClass::Permission => "permission",
        }
    }

    /// Whether the whole project is refused from now on (not just this tag).
    pub fn stops_the_project(self) -> bool {
        matches!(self, RefusalClass::Quota | RefusalClass::ProxyCache | RefusalClass::Permission)
    }
}

/// The class of a refusal, from an answer's status and error entries (a HEAD carries none).
pub fn classify(status: u16, codes: &[ErrorCode]) -> Option<RefusalClass> {
    let says = |words: &str| codes.iter().any(|c| c.message.contains(words));
    match status {
        403 if says("will exceed the configured upper limit") => Some(RefusalClass::Quota),
        403 if says("read only mode") => Some(RefusalClass::ReadOnly),
        403 if says("can not push artifact to a proxy project") => Some(RefusalClass::ProxyCache),
        403 if says("Only system level robot can create project") => Some(RefusalClass::Permission),
        412 if codes.iter().any(|c| c.code == "PRECONDITION") && says("configured as immutable") => {
            Some(RefusalClass::Immutable)
        }
        401 if says("unauthorized to access repository") => Some(RefusalClass::Permission),
        _ => None,
    }
}

/// Harbor answers 401 while its database is unreachable (a restart): its authorization check reads the
/// database, and the answer's words say the connection failed (seen on v2.15.2 with PostgreSQL
/// restarting: "failed to connect to `user=postgres database=registry` ... the database system is
/// shutting down (SQLSTATE 57P03)"). Not a refusal: worth trying again.
pub fn is_database_unavailable(body: &str) -> bool {
    body.contains("failed to connect to") || body.contains("SQLSTATE") || body.contains("the database system is")
}

/// The robot right Harbor's words ask for, when it refuses a repository action ("unauthorized to
/// access repository: p/r, action: push" asks for 'repository: push').
pub fn right_asked_for(message: &str) -> Option<&'static str> {
    let action = message.split("action: ").nth(1)?;
    let action = action.split(|c: char| !c.is_ascii_alphabetic()).next()?;
    match action {
        "push" => Some("repository: push"),
        "pull" => Some("repository: pull"),
        "delete" => Some("repository: delete"),
        _ => None,
    }
}

/// A manifest GET or HEAD answered 412 by a pull-side policy (content trust, vulnerability prevention):
/// the artifact exists, pulls of it are blocked. A HEAD answer has no body, so its status says it.
pub fn is_pull_blocked_by_policy(status: u16, codes: &[ErrorCode]) -> bool {
    status == 412 && (codes.is_empty() || codes.iter().any(|c| c.code == "PROJECTPOLICYVIOLATION"))
}

/// The bytes a quota refusal says were missing: what was being added, plus the usage, minus the limit
/// ("adding 21.0 MiB of storage resource, which when updated to current usage of 990.0 MiB will exceed
/// the configured upper limit of 1000.0 MiB."). Harbor rounds each to a tenth of its unit.
pub fn quota_shortfall(message: &str) -> Option<u64> {
    let amount = |after: &str| -> Option<f64> {
        let rest = &message[message.find(after)? + after.len()..];
        let mut words = rest.split_whitespace();
        let number: f64 = words.next()?.parse().ok()?;
        let unit = words.next()?.trim_end_matches(['.', ',']);
        let scale = match unit {
            "B" => 1.0,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            "TiB" => 1024.0f64.powi(4),
            _ => return None,
        };
        Some(number * scale)
    };
    let (adding, usage, limit) = (amount("adding ")?, amount("current usage of ")?, amount("upper limit of ")?);
    Some((adding + usage - limit).max(0.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(code: &str, message: &str) -> Vec<ErrorCode> {
        vec![ErrorCode { code: code.into(), message: message.into() }]
    }

    #[test]
    fn harbors_refusals_are_told_apart_by_class() {
        let quota = "adding 21.0 MiB of storage resource, which when updated to current usage of 990.0 MiB will \
                     exceed the configured upper limit of 1000.0 MiB.";
        assert_eq!(classify(403, &codes("DENIED", quota)), Some(RefusalClass::Quota));
        let read_only = "The system is in read only mode. Any modification is prohibited.";
        assert_eq!(classify(403, &codes("DENIED", read_only)), Some(RefusalClass::ReadOnly));
        let proxy = "can not push artifact to a proxy project: cache";
        assert_eq!(classify(403, &codes("DENIED", proxy)), Some(RefusalClass::ProxyCache));
        let immutable = "Failed to process request due to 'p/r:v1' configured as immutable.";
        assert_eq!(classify(412, &codes("PRECONDITION", immutable)), Some(RefusalClass::Immutable));
        let robot = "unauthorized to access repository: other/r, action: push: unauthorized";
        assert_eq!(classify(401, &codes("UNAUTHORIZED", robot)), Some(RefusalClass::Permission));
        assert_eq!(classify(401, &codes("UNAUTHORIZED", "project other not found")), None);
        assert_eq!(classify(403, &codes("DENIED", "requested access to the resource is denied")), None);
        assert_eq!(classify(503, &[]), None, "a busy server is retried, not refused");
        assert!(is_pull_blocked_by_policy(412, &[]), "a HEAD has no body");
        assert!(is_pull_blocked_by_policy(412, &codes("PROJECTPOLICYVIOLATION", "The image is not signed by cosign.")));
        assert!(!is_pull_blocked_by_policy(412, &codes("PRECONDITION", immutable)));
    }

    #[test]
    fn a_401_from_a_database_restart_is_not_a_refusal() {
        let restarting = r#"{"errors":[{"code":"UNAUTHORIZED","message":"failed to connect to `user=postgres database=registry`: 127.0.0.1:15432 (127.0.0.1): server error: FATAL: the database system is shutting down (SQLSTATE 57P03)"}]}"#;
        assert!(is_database_unavailable(restarting));
        assert!(!is_database_unavailable(
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"unauthorized to access repository: p/r, action: push"}]}"#
        ));
    }

    #[test]
    fn a_refused_action_names_the_robot_right() {
        let robot = "unauthorized to access repository: other/r, action: push: unauthorized";
        assert_eq!(right_asked_for(robot), Some("repository: push"));
        assert_eq!(right_asked_for("unauthorized to access repository: p/r, action: pull"), Some("repository: pull"));
        assert_eq!(right_asked_for("project other not found"), None);
    }

    #[test]
    fn a_quota_refusal_says_how_much_was_missing() {
        let quota = "adding 21.0 MiB of storage resource, which when updated to current usage of 990.0 MiB will \
                     exceed the configured upper limit of 1000.0 MiB.";
        assert_eq!(quota_shortfall(quota), Some(11 * 1024 * 1024));
        assert_eq!(quota_shortfall("something else"), None);
    }
}
