/*!
Package tags, with the rules of the Qt Automotive Suite Deployment Server (Qt's earlier app
store), whose users selected packages by them:

- a tag is lowercase Latin letters, digits and `_`, optionally followed by one `:` and a
  version of the same characters and `.` (`qt:5.12`); everything is lowercased first (ASCII
  only: no Unicode folding can turn a foreign letter into a Latin one);
- a requested tag with a version matches a package tag whose version starts with the same
  components (`qt:5.12` matches `qt:5.12` and `qt:5.12.0`, not `qt:5.1`, `qt:5.120`, `qt:5.13`
  or `qt`); a requested tag without a version matches the name with any version or none;
  a package tag without a version matches only requests without one (our decision);
- lists are simplified: a tag another one of the list already matches is dropped
  (`qt:5.12,qt:5.12.0` is `qt:5.12`).

Package tags are the union of `extra.tags` and `extraSigned.tags`.
*/

use crate::yaml::Node;
use std::fmt;

/// One tag: a name and, optionally, a version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    name: String,
    version: Option<String>,
}

/// What a tag may hold, for messages.
const RULE: &str = "a tag is lowercase letters a-z, digits and '_', optionally followed by ':' and a version of those and '.'";

impl Tag {
    /// Parse `text` (lowercased first). The error names the tag and the rule it breaks:
    /// `invalid tag 'Qt 5': ...`.
    pub fn parse(text: &str) -> Result<Tag, String> {
        let invalid = |why: String| format!("invalid tag '{text}': {why}");
        let lower = text.to_ascii_lowercase();
        let (name, version) = match lower.split_once(':') {
            Some((name, version)) => (name, Some(version)),
            None => (lower.as_str(), None),
        };
        if name.is_empty() {
            return Err(invalid(format!("the name is empty ({RULE})")));
        }
        if let Some(bad) = name.chars().find(|&c| !is_name_char(c)) {
            return Err(invalid(format!(
                "{} is not allowed in a name ({RULE})",
                describe(bad)
            )));
        }
        if let Some(version) = version {
            if version.is_empty() {
                return Err(invalid(format!("the version after ':' is empty ({RULE})")));
            }
            if let Some(bad) = version.chars().find(|&c| !is_name_char(c) && c != '.') {
                let why = if bad == ':' {
                    format!("only one ':' is allowed ({RULE})")
                } else {
                    format!("{} is not allowed in a version ({RULE})", describe(bad))
                };
                return Err(invalid(why));
            }
        }
        Ok(Tag {
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }

    /// Whether this tag, as asked for, matches the package tag `package` (or, in a list, makes
    /// `package` redundant).
    pub fn matches(&self, package: &Tag) -> bool {
        if self.name != package.name {
            return false;
        }
        match (&self.version, &package.version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(asked), Some(has)) => {
                let mut has = has.split('.');
                asked.split('.').all(|part| has.next() == Some(part))
            }
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

fn describe(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("'{c}'"),
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}:{version}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// `tags` simplified and sorted: duplicates and tags another one matches are dropped.
///
/// In O(n log n): sorted by name, then version (none first), a tag's matches follow it
/// directly. Version strings sort like their component lists, because the separator `.` is
/// below every other character a version may hold; so whatever lies between a tag and one it
/// matches is matched by it too, and comparing with the last tag kept suffices.
pub fn simplify(mut tags: Vec<Tag>) -> Vec<Tag> {
    tags.sort();
    tags.dedup();
    let mut kept: Vec<Tag> = Vec::with_capacity(tags.len());
    for tag in tags {
        if !kept.last().is_some_and(|last| last.matches(&tag)) {
            kept.push(tag);
        }
    }
    kept
}

/// Most tags a request may name in `tag` or in `exclude-tag`.
pub const MAX_REQUESTED_TAGS: usize = 64;

/// The tags of request parameter values: each a comma-separated list; empty items are
/// skipped and spaces around items ignored. Simplified.
pub fn parse_requested<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<Tag>, String> {
    let mut tags = Vec::new();
    for value in values {
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if tags.len() == MAX_REQUESTED_TAGS {
                return Err(format!(
                    "too many tags: at most {MAX_REQUESTED_TAGS} may be asked for"
                ));
            }
            tags.push(Tag::parse(item)?);
        }
    }
    Ok(simplify(tags))
}

/// The tags of a package: `tags` of its header's `extra` and `extraSigned`, normalized and
/// simplified. A `tags` that is not a list of strings, or a tag that breaks the rules, is an
/// error naming it.
pub fn package_tags(extra: Option<&Node>, extra_signed: Option<&Node>) -> Result<Vec<Tag>, String> {
    let mut tags = Vec::new();
    for (field, map) in [("extra", extra), ("extraSigned", extra_signed)] {
        let Some(list) = map.and_then(|m| m.get("tags")) else {
            continue;
        };
        let Node::List(items) = list else {
            return Err(format!("'{field}.tags' must be a list of tags"));
        };
        for item in items {
            let text = match item {
                Node::Scalar { .. } if !item.is_null() => item.as_text().unwrap_or_default(),
                _ => return Err(format!("'{field}.tags' must hold strings only")),
            };
            tags.push(Tag::parse(text)?);
        }
    }
    Ok(simplify(tags))
}

/// What a request selects by tags: packages matching every `include` tag, and none of the
/// `exclude` tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TagFilter {
    pub include: Vec<Tag>,
    pub exclude: Vec<Tag>,
}

impl TagFilter {
    /// Whether a package with `tags` passes.
    pub fn passes(&self, tags: &[Tag]) -> bool {
        self.include
            .iter()
            .all(|asked| tags.iter().any(|t| asked.matches(t)))
            && !self
                .exclude
                .iter()
                .any(|asked| tags.iter().any(|t| asked.matches(t)))
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(text: &str) -> Tag {
        Tag::parse(text).unwrap()
    }

    fn tags(list: &str) -> Vec<String> {
        parse_requested([list])
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn parses_and_normalizes() {
        assert_eq!(tag("qt:5.12").to_string(), "qt:5.12");
        assert_eq!(tag("Qt:5.12").to_string(), "qt:5.12");
        assert_eq!(tag("NEPTUNE").to_string(), "neptune");
        assert_eq!(tag("tag_2:1_0").to_string(), "tag_2:1_0");
        assert_eq!(tag("a:b.c.d").to_string(), "a:b.c.d");
        let error = Tag::parse("Qt 5").unwrap_err();
        assert!(
            error.starts_with("invalid tag 'Qt 5': a space is not allowed"),
            "{error}"
        );
        for bad in [
            "", ":5", "qt:", "qt::5", "qt:5:1", "q.t", "q-t", "qt:5-1", "ä", "qt:5,1",
        ] {
            let error = Tag::parse(bad).unwrap_err();
            assert!(
                error.starts_with(&format!("invalid tag '{bad}': ")),
                "{error}"
            );
        }
        assert!(Tag::parse("qt::5").unwrap_err().contains("only one ':'"));
        assert!(
            Tag::parse("qt:")
                .unwrap_err()
                .contains("version after ':' is empty")
        );
        // Unicode that lowercases to ASCII (KELVIN SIGN -> k) stays invalid.
        assert!(Tag::parse("\u{212A}").is_err());
        assert!(Tag::parse("İ").is_err());
    }

    #[test]
    fn matches_by_version_components() {
        let asked = tag("qt:5.12");
        assert!(asked.matches(&tag("qt:5.12")));
        assert!(asked.matches(&tag("qt:5.12.0")));
        assert!(!asked.matches(&tag("qt:5.1")));
        assert!(!asked.matches(&tag("qt:5.13")));
        assert!(!asked.matches(&tag("qt:5.120")));
        assert!(!asked.matches(&tag("qt:5")));
        assert!(!asked.matches(&tag("qt")));
        assert!(!asked.matches(&tag("qtx:5.12")));
        let any = tag("qt");
        assert!(any.matches(&tag("qt")));
        assert!(any.matches(&tag("qt:5")));
        assert!(any.matches(&tag("qt:6.0.1")));
        assert!(!any.matches(&tag("qtx")));
        assert!(tag("qt:5").matches(&tag("qt:5.12")));
    }

    #[test]
    fn simplifies_lists() {
        assert_eq!(tags("qt:5.12,qt:5.12.0"), ["qt:5.12"]);
        assert_eq!(tags("qt:5.12.0,qt:5.12"), ["qt:5.12"]);
        assert_eq!(tags("qt:5.12,qt"), ["qt"]);
        assert_eq!(tags("qt:5.12,qt:5.1"), ["qt:5.1", "qt:5.12"]);
        assert_eq!(tags("b,a,B,a"), ["a", "b"]);
        assert_eq!(tags(" neptune , ,qt:5.12"), ["neptune", "qt:5.12"]);
        assert_eq!(tags(""), Vec::<String>::new());
        assert!(parse_requested(["good", "bad tag"]).is_err());
        assert_eq!(
            tags("qt:5.1,qt:5.10,qt:5.1.3,qt:5.1_0,qt:5,qt:6.0,qt:6.0.1,z"),
            ["qt:5", "qt:6.0", "z"]
        );
        assert_eq!(
            tags("qt:5.1.3,qt:5.10,qt:5.1_0"),
            ["qt:5.1.3", "qt:5.10", "qt:5.1_0"]
        );
        let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
        assert!(parse_requested([many.join(",").as_str()]).is_err());
        assert_eq!(
            parse_requested([many[..64].join(",").as_str()])
                .unwrap()
                .len(),
            64
        );
        // Large package tag lists simplify quickly (this was quadratic).
        let big: Vec<Tag> = (0..200_000)
            .map(|i| tag(&format!("t:{}.{}", i % 7, i)))
            .collect();
        assert_eq!(simplify(big).len(), 200_000);
    }

    /// The linear simplification agrees with the definition (no tag matches another kept).
    #[test]
    fn simplification_agrees_with_pairwise_matching() {
        let pool = [
            "a", "a:1", "a:1.2", "a:1.2.0", "a:1.20", "a:1_2", "a:2", "b", "b:1", "a:1.2_0", "a:10",
        ];
        // Every subset of the pool.
        for mask in 0u32..(1 << pool.len()) {
            let chosen: Vec<Tag> = (0..pool.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| tag(pool[i]))
                .collect();
            let kept = simplify(chosen.clone());
            let expected: Vec<Tag> = chosen
                .iter()
                .filter(|t| !chosen.iter().any(|o| o != *t && o.matches(t)))
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            assert_eq!(kept, expected, "{mask:b}");
        }
    }

    #[test]
    fn filters_include_and_exclude() {
        let package = vec![tag("neptune"), tag("qt:5.12.1")];
        let filter = |include: &str, exclude: &str| TagFilter {
            include: parse_requested([include]).unwrap(),
            exclude: parse_requested([exclude]).unwrap(),
        };
        assert!(filter("", "").passes(&package));
        assert!(filter("neptune,qt:5.12", "").passes(&package));
        assert!(!filter("neptune,qt:5.13", "").passes(&package));
        assert!(!filter("", "qt").passes(&package));
        assert!(filter("", "qt:6").passes(&package));
        assert!(!filter("neptune", "qt:5").passes(&package));
        assert!(!filter("neptune", "").passes(&[]));
        assert!(filter("", "neptune").passes(&[]));
    }

    #[test]
    fn reads_package_tags() {
        let yaml = |text: &str| {
            crate::yaml::parse_documents(text, &crate::yaml::YamlLimits::default())
                .unwrap()
                .remove(0)
        };
        let extra = yaml("tags: [qt:5.12, Neptune, qt:5.12.0]");
        let signed = yaml("tags: [platform:b]");
        let all = package_tags(Some(&extra), Some(&signed)).unwrap();
        let names: Vec<String> = all.iter().map(|t| t.to_string()).collect();
        assert_eq!(names, ["neptune", "platform:b", "qt:5.12"]);
        assert!(
            package_tags(Some(&yaml("tags: qt")), None)
                .unwrap_err()
                .contains("'extra.tags' must be a list")
        );
        assert!(
            package_tags(None, Some(&yaml("tags: [[a]]")))
                .unwrap_err()
                .contains("'extraSigned.tags' must hold strings")
        );
        assert!(
            package_tags(Some(&yaml("tags: ['Qt 5']")), None)
                .unwrap_err()
                .starts_with("invalid tag 'Qt 5'")
        );
        assert_eq!(package_tags(Some(&yaml("other: 1")), None).unwrap(), []);
        // A number is a tag too (YAML types it; its text is what was written).
        assert_eq!(
            package_tags(Some(&yaml("tags: [5]")), None).unwrap(),
            [tag("5")]
        );
    }
}
