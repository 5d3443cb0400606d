/*!
YAML documents as Qt Application Manager reads and writes them.

Package headers, footers, `info.yaml` and `amps-config.yaml` are small YAML texts, but the
digest covers `extraSigned` in Qt's own typing of YAML scalars (plain `017` is octal, plain
`1e+20` is a string, quoted text is always a string). A serde data model loses the scalar's
source text and quoting style, so we build our own tree from `granit_parser` events (the parser
behind `serde-saphyr`) and type scalars on demand with Qt's rules (`Node::qt_value`).

Everything here reads untrusted input: nesting depth, node count and input size are bounded,
and aliases are refused (they are never produced by the Qt toolchain and are the basis of
"billion laughs" expansion attacks).
*/

mod emit;
pub use emit::{emit_map_entries, emit_value, quote, to_json};

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
use std::collections::HashSet;
use std::fmt;

/// Limits on what one YAML text may contain.
#[derive(Debug, Clone, Copy)]
pub struct YamlLimits {
    /// Maximum nesting of lists and maps.
    pub max_depth: usize,
    /// Maximum number of nodes (scalars, lists, maps) in all documents together.
    pub max_nodes: usize,
    /// Maximum number of documents.
    pub max_documents: usize,
}

impl Default for YamlLimits {
    fn default() -> Self {
        YamlLimits {
            max_depth: 64,
            max_nodes: 100_000,
            max_documents: 8,
        }
    }
}

/// A YAML node with its scalars kept as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A scalar: its text after escape processing, and whether it was written plain (unquoted).
    Scalar {
        text: String,
        plain: bool,
    },
    List(Vec<Node>),
    /// A map in source order; keys are scalar texts, duplicates are refused by the parser.
    Map(Vec<(String, Node)>),
}

/// A scalar typed the way Qt's YAML parser types it.
#[derive(Debug, Clone, PartialEq)]
pub enum QtValue<'a> {
    Null,
    Bool(bool),
    /// An integer up to 2147483647 or any negative one (wrapped to 32 bits as Qt does).
    Int(i32),
    /// An integer from 2^31 to 2^63-1.
    LongLong(i64),
    /// An integer from 2^63 to 2^64-1.
    ULongLong(u64),
    Double(f64),
    String(&'a str),
}

/// A YAML text that could not be read, with the position where known.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError(pub String);

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for YamlError {}

impl Node {
    /// A plain-text string node (always emitted quoted).
    pub fn string(text: impl Into<String>) -> Node {
        Node::Scalar {
            text: text.into(),
            plain: false,
        }
    }

    /// The value under `key` when this is a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The scalar's text, whatever its type.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Node::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// True for a null scalar (`~`, `null`, empty plain scalar).
    pub fn is_null(&self) -> bool {
        matches!(self.qt_value(), Some(QtValue::Null))
    }

    /// The scalar typed with Qt's rules, `None` for lists and maps.
    pub fn qt_value(&self) -> Option<QtValue<'_>> {
        match self {
            Node::Scalar { text, plain: true } => Some(type_plain_scalar(text)),
            Node::Scalar { text, plain: false } => Some(QtValue::String(text)),
            _ => None,
        }
    }

    /// A boolean scalar as Qt types it, else `None`.
    pub fn as_bool(&self) -> Option<bool> {
        match self.qt_value()? {
            QtValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// An integer scalar as Qt types it (any of the integer types), else `None`.
    pub fn as_integer(&self) -> Option<i128> {
        match self.qt_value()? {
            QtValue::Int(v) => Some(v.into()),
            QtValue::LongLong(v) => Some(v.into()),
            QtValue::ULongLong(v) => Some(v.into()),
            _ => None,
        }
    }
}

/// Parse every document of `text` into a tree, within `limits`.
pub fn parse_documents(text: &str, limits: &YamlLimits) -> Result<Vec<Node>, YamlError> {
    let mut options = serde_saphyr::granit_parser::Options::default();
    options.flow_nesting_limit = limits.max_depth + 1;
    options.block_nesting_limit = limits.max_depth + 1;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut builder = TreeBuilder {
        limits,
        stack: Vec::new(),
        documents: Vec::new(),
        nodes: 0,
    };
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| YamlError(e.to_string()))?;
        let line = span.start.line();
        builder
            .event(event)
            .map_err(|message| YamlError(format!("{message} at line {line}")))?;
    }
    Ok(builder.documents)
}

/// Collects parser events into nodes; `stack` holds the open lists and maps.
struct TreeBuilder<'l> {
    limits: &'l YamlLimits,
    stack: Vec<Open>,
    documents: Vec<Node>,
    nodes: usize,
}

enum Open {
    List(Vec<Node>),
    /// A map, when a key has been read the key waiting for its value, and the keys so far (to
    /// find duplicates in constant time: a linear search made 500,000 keys cost minutes).
    Map(Vec<(String, Node)>, Option<String>, HashSet<String>),
}

impl TreeBuilder<'_> {
    fn event(&mut self, event: Event<'_>) -> Result<(), String> {
        match event {
            Event::Scalar(text, style, _, _) => {
                self.count_node()?;
                let plain = style == ScalarStyle::Plain;
                self.add(Node::Scalar {
                    text: text.into_owned(),
                    plain,
                })
            }
            Event::SequenceStart(..) => self.open(Open::List(Vec::new())),
            Event::MappingStart(..) => self.open(Open::Map(Vec::new(), None, HashSet::new())),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::List(items)) => self.add(Node::List(items)),
                Some(Open::Map(entries, None, _)) => self.add(Node::Map(entries)),
                Some(Open::Map(_, Some(key), _)) => Err(format!("map key '{key}' has no value")),
                None => Err("unbalanced YAML structure".into()),
            },
            Event::Alias(_) | Event::UnresolvedAlias(_) => {
                Err("YAML aliases are not supported".into())
            }
            _ => Ok(()),
        }
    }

    fn count_node(&mut self) -> Result<(), String> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(format!("more than {} YAML nodes", self.limits.max_nodes));
        }
        Ok(())
    }

    fn open(&mut self, container: Open) -> Result<(), String> {
        self.count_node()?;
        if self.stack.len() >= self.limits.max_depth {
            return Err(format!(
                "YAML nested deeper than {} levels",
                self.limits.max_depth
            ));
        }
        if let Some(Open::Map(_, None, _)) = self.stack.last() {
            return Err("map keys must be strings".into());
        }
        self.stack.push(container);
        Ok(())
    }

    /// Put a finished node into the innermost open container, or make it a document.
    fn add(&mut self, node: Node) -> Result<(), String> {
        match self.stack.last_mut() {
            None => {
                if self.documents.len() >= self.limits.max_documents {
                    return Err(format!(
                        "more than {} YAML documents",
                        self.limits.max_documents
                    ));
                }
                self.documents.push(node);
            }
            Some(Open::List(items)) => items.push(node),
            Some(Open::Map(entries, pending, keys)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let Node::Scalar { text, plain } = node else {
                        return Err("map keys must be strings".into());
                    };
                    if plain && type_plain_scalar(&text) == QtValue::Null {
                        return Err("map keys must not be empty or null".into());
                    }
                    if !keys.insert(text.clone()) {
                        return Err(format!("duplicate map key '{text}'"));
                    }
                    *pending = Some(text);
                }
            },
        }
        Ok(())
    }
}

/// Qt's typing of a plain (unquoted) scalar.
fn type_plain_scalar(text: &str) -> QtValue<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return QtValue::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "y" | "Y" | "on" | "On" | "ON" => {
            return QtValue::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "n" | "N" | "off" | "Off" | "OFF" => {
            return QtValue::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return QtValue::Double(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return QtValue::Double(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return QtValue::Double(f64::NAN),
        _ => {}
    }
    if let Some(value) = parse_integer(text) {
        return value;
    }
    if looks_like_float(text)
        && let Ok(value) = text.replace('_', "").parse::<f64>()
    {
        return QtValue::Double(value);
    }
    QtValue::String(text)
}

/// Decimal `[-+]?(0|[1-9][0-9_]*)`, hex `0x..`, binary `0b..`, octal `0[0-7]..`, typed by range.
fn parse_integer(text: &str) -> Option<QtValue<'_>> {
    let (digits, radix, signed) = if let Some(hex) = text.strip_prefix("0x") {
        (hex, 16, false)
    } else if let Some(bin) = text.strip_prefix("0b") {
        (bin, 2, false)
    } else if text.len() > 1 && text.starts_with('0') {
        (&text[1..], 8, false)
    } else {
        let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
        let first = unsigned.bytes().next()?;
        if !first.is_ascii_digit() || (first == b'0' && unsigned.len() > 1) {
            return None;
        }
        (text, 10, true)
    };
    let digits_only = digits.strip_prefix(['-', '+']).unwrap_or(digits);
    if digits_only.is_empty()
        || !digits_only
            .bytes()
            .all(|b| b == b'_' || (b as char).is_digit(radix))
        || digits_only.starts_with('_')
    {
        return None;
    }
    let cleaned = digits.replace('_', "");
    if let Ok(value) = u64::from_str_radix(cleaned.trim_start_matches('+'), radix) {
        return Some(if value <= i32::MAX as u64 {
            QtValue::Int(value as i32)
        } else if value <= i64::MAX as u64 {
            QtValue::LongLong(value as i64)
        } else {
            QtValue::ULongLong(value)
        });
    }
    if signed && let Ok(value) = i64::from_str_radix(&cleaned, radix) {
        // Qt converts a negative 64-bit value to int: it wraps.
        return Some(QtValue::Int(value as i32));
    }
    None
}

/// Qt's float pattern `[-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)?`.
fn looks_like_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    if i < b.len() && b[i].is_ascii_digit() {
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    if i >= b.len() || b[i] != b'.' {
        return false;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
        i += 1;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i >= b.len() || (b[i] != b'-' && b[i] != b'+') {
            return false;
        }
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn parse_one(text: &str) -> Node {
        let mut docs = parse_documents(text, &YamlLimits::default()).unwrap();
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    fn typed(text: &'static str) -> QtValue<'static> {
        type_plain_scalar(text)
    }

    #[test]
    fn duplicate_keys_are_found_in_linear_time() {
        let limits = YamlLimits {
            max_nodes: 300_000,
            ..YamlLimits::default()
        };
        let map: String = (0..100_000).map(|i| format!("k{i}: {i}\n")).collect();
        let started = std::time::Instant::now();
        let docs = parse_documents(&map, &limits).unwrap();
        let elapsed = started.elapsed();
        let Node::Map(entries) = &docs[0] else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 100_000);
        // Linear: tens of milliseconds. The quadratic search took minutes (debug build), so
        // this bound is about complexity, not speed.
        assert!(elapsed.as_secs() < 10, "{elapsed:?} for 100,000 keys");
        let duplicated = format!("{map}k99999: again\n");
        let error = parse_documents(&duplicated, &limits)
            .unwrap_err()
            .to_string();
        assert!(error.contains("duplicate map key 'k99999'"), "{error}");
    }

    #[test]
    fn plain_scalars_are_typed_like_qt() {
        assert_eq!(typed("~"), QtValue::Null);
        assert_eq!(typed(""), QtValue::Null);
        assert_eq!(typed("Yes"), QtValue::Bool(true));
        assert_eq!(typed("off"), QtValue::Bool(false));
        assert_eq!(typed("1"), QtValue::Int(1));
        assert_eq!(typed("-5"), QtValue::Int(-5));
        assert_eq!(typed("+7"), QtValue::Int(7));
        assert_eq!(typed("1_000"), QtValue::Int(1000));
        assert_eq!(typed("2147483647"), QtValue::Int(i32::MAX));
        assert_eq!(typed("2147483648"), QtValue::LongLong(2147483648));
        assert_eq!(typed("5000000000"), QtValue::LongLong(5_000_000_000));
        assert_eq!(
            typed("18000000000000000000"),
            QtValue::ULongLong(18_000_000_000_000_000_000)
        );
        assert_eq!(typed("-4294967297"), QtValue::Int(-1));
        assert_eq!(typed("0x1F"), QtValue::Int(31));
        assert_eq!(typed("0b101"), QtValue::Int(5));
        assert_eq!(typed("017"), QtValue::Int(15));
        assert_eq!(typed("0"), QtValue::Int(0));
        assert_eq!(typed("08"), QtValue::String("08"));
        assert_eq!(typed("1.5"), QtValue::Double(1.5));
        assert_eq!(typed(".5"), QtValue::Double(0.5));
        assert_eq!(typed("1.5e+3"), QtValue::Double(1500.0));
        assert_eq!(typed("1e+20"), QtValue::String("1e+20"));
        assert_eq!(typed("1.2.3"), QtValue::String("1.2.3"));
        assert_eq!(typed(".inf"), QtValue::Double(f64::INFINITY));
        assert_eq!(typed("qt:5.12"), QtValue::String("qt:5.12"));
        assert_eq!(
            typed("99999999999999999999"),
            QtValue::String("99999999999999999999")
        );
    }

    #[test]
    fn quoted_scalars_are_strings() {
        let node = parse_one("a: '42'\nb: \"true\"\nc: 42\n");
        assert_eq!(
            node.get("a").unwrap().qt_value(),
            Some(QtValue::String("42"))
        );
        assert_eq!(
            node.get("b").unwrap().qt_value(),
            Some(QtValue::String("true"))
        );
        assert_eq!(node.get("c").unwrap().qt_value(), Some(QtValue::Int(42)));
    }

    #[test]
    fn reads_two_documents_with_directive() {
        let docs = parse_documents(
            "%YAML 1.1\n---\nformatType: 'x'\nformatVersion: 2\n---\nk: v\n",
            &YamlLimits::default(),
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].get("formatVersion").unwrap().as_integer(), Some(2));
    }

    #[test]
    fn refuses_aliases_deep_nesting_and_duplicate_keys() {
        let limits = YamlLimits::default();
        let alias = parse_documents("a: &x [1]\nb: *x\n", &limits).unwrap_err();
        assert!(alias.0.contains("aliases"), "{alias}");
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        assert!(parse_documents(&deep, &limits).is_err());
        let deep_block: String = (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(parse_documents(&deep_block, &limits).is_err());
        let dup = parse_documents("a: 1\na: 2\n", &limits).unwrap_err();
        assert!(dup.0.contains("duplicate"), "{dup}");
        let key = parse_documents("? [a]\n: 1\n", &limits).unwrap_err();
        assert!(key.0.contains("keys must be strings"), "{key}");
    }
}
