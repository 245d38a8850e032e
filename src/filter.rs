//! Pure rules for choosing and renaming what is copied, with Harbor replication's semantics:
//! doublestar globs for repository and tag filters, and the destination namespace with its flattening
//! level (`dest_namespace_replace_count`).

use thiserror::Error;

/// A name pattern as Harbor's replication filters take it (`src/pkg/reg/util/pattern.go`): empty matches
/// everything; `regex:<expression>` is a regular expression (found anywhere in the name, as Go's
/// `MatchString`); anything else is a doublestar glob (bmatcuk/doublestar): `*` and `?` never cross `/`,
/// `**` as a whole path segment matches any number of segments (zero included), `{a,b}` alternatives,
/// `[abc]`, `[a-z]` and `[!a]` classes, `\\` escapes the next character.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    regex: Option<regex::Regex>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("pattern {0:?}: unclosed {{ or [")]
    Unclosed(String),
    #[error("pattern {pattern:?}: {message}")]
    BadRegex { pattern: String, message: String },
    #[error(
        "repository {repository:?} has {components} path components before its last one, fewer than the flattening level {level}"
    )]
    TooFewComponents { repository: String, components: usize, level: i32 },
    #[error("flattening level {0} is not one of -1, 0, 1, 2, 3, ...")]
    BadLevel(i32),
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, FilterError> {
        if let Some(expression) = pattern.strip_prefix("regex:") {
            let regex = regex::Regex::new(expression)
                .map_err(|e| FilterError::BadRegex { pattern: pattern.to_string(), message: e.to_string() })?;
            return Ok(Glob { pattern: pattern.to_string(), regex: Some(regex) });
        }
        check_balanced(pattern)?;
        Ok(Glob { pattern: pattern.to_string(), regex: None })
    }

    pub fn matches(&self, name: &str) -> bool {
        if let Some(regex) = &self.regex {
            return regex.is_match(name);
        }
        if self.pattern.is_empty() {
            return true;
        }
        expand_braces(&self.pattern).iter().any(|alternative| match_pattern(alternative.as_bytes(), name.as_bytes()))
    }
}

fn check_balanced(pattern: &str) -> Result<(), FilterError> {
    let (mut braces, mut in_class, mut escaped) = (0i32, false, false);
    for c in pattern.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => braces += 1,
            '}' if !in_class => braces -= 1,
            _ => {}
        }
        if braces < 0 {
            return Err(FilterError::Unclosed(pattern.to_string()));
        }
    }
    if braces != 0 || in_class {
        return Err(FilterError::Unclosed(pattern.to_string()));
    }
    Ok(())
}

/// Expands `{a,b}` alternatives (nested ones too) into plain patterns.
fn expand_braces(pattern: &str) -> Vec<String> {
    let bytes = pattern.as_bytes();
    let mut depth = 0;
    let mut open = None;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'{' => {
                if depth == 0 {
                    open = Some(i);
                }
                depth += 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    let start = open.expect("balanced");
                    let (head, body, tail) = (&pattern[..start], &pattern[start + 1..i], &pattern[i + 1..]);
                    return split_alternatives(body)
                        .into_iter()
                        .flat_map(|alternative| expand_braces(&format!("{head}{alternative}{tail}")))
                        .collect();
                }
            }
            _ => {}
        }
    }
    vec![pattern.to_string()]
}

/// Splits a brace body at its top-level commas.
fn split_alternatives(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut escaped) = (0, 0, false);
    for (i, b) in body.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    parts
}

/// Matches a brace-free pattern against a name, byte by byte (names and tags are ASCII).
fn match_pattern(pattern: &[u8], name: &[u8]) -> bool {
    // `**` as a whole segment: `**/rest` matches rest at any segment boundary (zero segments included);
    // a trailing `/**` also matches the bare parent.
    if pattern.starts_with(b"**") && (pattern.len() == 2 || pattern[2] == b'/') {
        let rest = if pattern.len() == 2 { &pattern[2..] } else { &pattern[3..] };
        if rest.is_empty() {
            return true;
        }
        if match_pattern(rest, name) {
            return true;
        }
        return name.iter().enumerate().any(|(i, &b)| b == b'/' && match_pattern(rest, &name[i + 1..]));
    }
    if pattern == b"/**" && name.is_empty() {
        return true;
    }
    let Some((&p, pattern_rest)) = pattern.split_first() else { return name.is_empty() };
    match p {
        b'*' => {
            // A `**` inside a segment acts like `*`.
            let pattern_rest = pattern_rest.strip_prefix(b"*").unwrap_or(pattern_rest);
            (0..=name.len())
                .take_while(|&i| i == 0 || name[i - 1] != b'/')
                .any(|i| match_pattern(pattern_rest, &name[i..]))
        }
        b'?' => matches!(name.first(), Some(&c) if c != b'/') && match_pattern(pattern_rest, &name[1..]),
        b'[' => {
            let Some(end) = pattern_rest.iter().position(|&b| b == b']') else { return false };
            let (class, after) = (&pattern_rest[..end], &pattern_rest[end + 1..]);
            matches!(name.first(), Some(&c) if c != b'/' && class_matches(class, c)) && match_pattern(after, &name[1..])
        }
        b'\\' => match pattern_rest.split_first() {
            Some((&literal, after)) => name.first() == Some(&literal) && match_pattern(after, &name[1..]),
            None => false,
        },
        literal => name.first() == Some(&literal) && match_pattern(pattern_rest, &name[1..]),
    }
}

fn class_matches(class: &[u8], c: u8) -> bool {
    let (negated, class) = match class.first() {
        Some(b'!') | Some(b'^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut found = false;
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == b'-' {
            found |= (class[i]..=class[i + 2]).contains(&c);
            i += 3;
        } else {
            found |= class[i] == c;
            i += 1;
        }
    }
    found != negated
}

/// Include and exclude globs: a name passes when it matches some include (or there is none) and no
/// exclude.
#[derive(Debug, Clone, Default)]
pub struct NameFilter {
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
}

impl NameFilter {
    pub fn accepts(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.matches(name)))
            && !self.exclude.iter().any(|g| g.matches(name))
    }
}

/// Where a source repository lands on the target: Harbor's destination namespace and flattening level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameMapping {
    /// Empty keeps every name as it is.
    pub namespace: String,
    /// -1 flattens everything but the last component; 0 keeps the whole name under the namespace; N
    /// drops the first N components.
    pub flatten: i32,
}

impl NameMapping {
    pub fn new(namespace: &str, flatten: i32) -> Result<NameMapping, FilterError> {
        if flatten < -1 {
            return Err(FilterError::BadLevel(flatten));
        }
        Ok(NameMapping { namespace: namespace.trim_matches('/').to_string(), flatten })
    }

    /// The target repository name for `repository`, as Harbor's `replaceNamespace` computes it.
    pub fn map(&self, repository: &str) -> Result<String, FilterError> {
        if self.namespace.is_empty() {
            return Ok(repository.to_string());
        }
        let components: Vec<&str> = repository.split('/').collect();
        let before_last = components.len() - 1;
        match self.flatten {
            -1 => Ok(format!("{}/{}", self.namespace, components[before_last])),
            0 => Ok(format!("{}/{repository}", self.namespace)),
            level if level as usize > before_last => Err(FilterError::TooFewComponents {
                repository: repository.to_string(),
                components: before_last,
                level,
            }),
            level => Ok(format!("{}/{}", self.namespace, components[level as usize..].join("/"))),
        }
    }
}

/// Harbor's rule for project names: `^[a-z0-9]+(?:[._-][a-z0-9]+)*$`, 1 to 255 characters. The
/// registry's own grammar also allows `__` and runs of `-`: valid source names Harbor refuses as projects.
pub fn is_harbor_project_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str) -> Glob {
        Glob::new(pattern).unwrap()
    }

    /// Cases in the spirit of Harbor's own filter tests (`src/pkg/reg/filter`) and doublestar's.
    #[test]
    fn doublestar_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("library/**", "library/hello-world", true),
            ("library/**", "library/a/b/c", true),
            ("library/**", "library", true),
            ("library/**", "libraryx/a", false),
            ("library/*", "library/hello-world", true),
            ("library/*", "library/a/b", false),
            ("*", "hello-world", true),
            ("*", "library/hello-world", false),
            ("**", "library/a/b", true),
            ("**/hello-world", "hello-world", true),
            ("**/hello-world", "a/b/hello-world", true),
            ("**/hello-world", "a/b/hello-worlds", false),
            ("a/**/z", "a/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("{a,b}/*", "a/x", true),
            ("{a,b}/*", "b/x", true),
            ("{a,b}/*", "c/x", false),
            ("{a,b{c,d}}/x", "bd/x", true),
            ("lib?ary/*", "library/x", true),
            ("lib?ary/*", "lib/ary/x", false),
            ("v1.*", "v1.0", true),
            ("v1.*", "v10", false),
            ("[0-9]*", "1.2", true),
            ("[0-9]*", "latest", false),
            ("[!0-9]*", "latest", true),
            ("*-rc*", "1.0-rc_1", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(glob(pattern).matches(name), *expected, "{pattern:?} against {name:?}");
        }
    }

    /// Harbor's own table (`src/pkg/reg/util/pattern_test.go`, TestMatch), case for case.
    #[test]
    fn harbor_pattern_test_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "library", true),
            ("", "", true),
            ("*", "library", true),
            ("*", "library/hello-world", false),
            ("**", "library/hello-world", true),
            ("{library,harbor}/**", "library/hello-world", true),
            ("{library,harbor}/**", "harbor/hello-world", true),
            ("1.?", "1.0", true),
            ("1.?", "1.01", false),
            ("v2.[4-6].*", "v2.4.0", true),
            ("v2.[4-7].*", "v2.7.0", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(glob(pattern).matches(name), *expected, "{pattern:?} against {name:?}");
        }
    }

    #[test]
    fn regex_patterns_match_anywhere_like_go() {
        assert!(glob("regex:^v[0-9]+$").matches("v12"));
        assert!(!glob("regex:^v[0-9]+$").matches("v12-rc"));
        assert!(glob("regex:rc").matches("v1-rc2"), "unanchored, as Go's MatchString");
        assert!(matches!(Glob::new("regex:("), Err(FilterError::BadRegex { .. })));
    }

    #[test]
    fn unbalanced_patterns_are_refused() {
        assert!(Glob::new("{a,b").is_err());
        assert!(Glob::new("a}").is_err());
        assert!(Glob::new("[abc").is_err());
    }

    #[test]
    fn include_and_exclude() {
        let filter =
            NameFilter { include: vec![glob("library/**"), glob("team-a/*")], exclude: vec![glob("**/old-*")] };
        assert!(filter.accepts("library/alpine"));
        assert!(filter.accepts("team-a/web"));
        assert!(!filter.accepts("team-a/x/web"));
        assert!(!filter.accepts("library/old-thing"));
        assert!(NameFilter::default().accepts("anything/at/all"));
    }

    /// Harbor's documented table for source `a/b/c/image` and namespace `n`.
    #[test]
    fn flattening_levels_follow_harbor() {
        let map = |level: i32| NameMapping::new("n", level).unwrap().map("a/b/c/image");
        assert_eq!(map(-1).unwrap(), "n/image");
        assert_eq!(map(0).unwrap(), "n/a/b/c/image");
        assert_eq!(map(1).unwrap(), "n/b/c/image");
        assert_eq!(map(2).unwrap(), "n/c/image");
        assert_eq!(map(3).unwrap(), "n/image");
        assert!(matches!(map(4), Err(FilterError::TooFewComponents { components: 3, level: 4, .. })));
        assert_eq!(NameMapping::new("", 2).unwrap().map("a/b/c/image").unwrap(), "a/b/c/image");
        assert_eq!(NameMapping::new("/n/", 0).unwrap().map("x").unwrap(), "n/x");
        assert!(NameMapping::new("n", -2).is_err());
    }
}
