/*!
Writing YAML as Qt's tools read it back (`--cc`'s config file, the packager's metadata) and
the tree as JSON: scalars keep the type Qt gives them (a string that would read as a number is
quoted), keys too long for an implicit key become explicit (`? key`).
*/

use super::{Node, QtValue, type_plain_scalar};

/// The tree as JSON, with scalars typed as Qt types them.
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Node::List(items) => Value::Array(items.iter().map(to_json).collect()),
        Node::Scalar { .. } => match node.qt_value() {
            None | Some(QtValue::Null) => Value::Null,
            Some(QtValue::Bool(b)) => Value::Bool(b),
            Some(QtValue::Int(v)) => v.into(),
            Some(QtValue::LongLong(v)) => v.into(),
            Some(QtValue::ULongLong(v)) => v.into(),
            Some(QtValue::Double(v)) => serde_json::Number::from_f64(v)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Some(QtValue::String(s)) => Value::String(s.to_string()),
        },
    }
}

/// Quote a string for YAML the way Qt's emitter does: single quotes when it is printable ASCII,
/// double quotes with escapes otherwise.
pub fn quote(text: &str) -> String {
    if text.chars().all(|c| (' '..='~').contains(&c)) {
        format!("'{}'", text.replace('\'', "''"))
    } else {
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                ' '..='~' => out.push(c),
                c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02X}", c as u32)),
                c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04X}", c as u32)),
                c => out.push_str(&format!("\\U{:08X}", c as u32)),
            }
        }
        out.push('"');
        out
    }
}

/// Write `node` as the value of a block map entry whose key is already written at `indent`.
/// Scalars are written normalised by their Qt type, as Qt's emitter does: integers in decimal,
/// `true`/`false`, `~`, and every string quoted, so that any reader types them alike.
pub fn emit_value(out: &mut String, node: &Node, indent: usize) {
    match node {
        Node::Scalar { .. } => {
            out.push(' ');
            out.push_str(&emit_scalar(node));
            out.push('\n');
        }
        Node::List(items) if items.is_empty() => out.push_str(" []\n"),
        Node::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Node::List(items) => {
            out.push('\n');
            for item in items {
                emit_list_item(out, item, indent);
            }
        }
        Node::Map(entries) => {
            out.push('\n');
            emit_map_entries(out, entries, indent + 2);
        }
    }
}

/// Longest key written as an implicit (`key: value`) key; YAML allows 1024 characters.
const MAX_IMPLICIT_KEY: usize = 1000;

/// Write map entries as block lines at `indent`. A key too long for YAML's implicit keys is
/// written explicitly (`? key` then `: value`), as libyaml does.
pub fn emit_map_entries(out: &mut String, entries: &[(String, Node)], indent: usize) {
    for (key, value) in entries {
        let key = emit_key(key);
        out.push_str(&" ".repeat(indent));
        if key.chars().count() > MAX_IMPLICIT_KEY {
            out.push_str("? ");
            out.push_str(&key);
            out.push('\n');
            out.push_str(&" ".repeat(indent));
        } else {
            out.push_str(&key);
        }
        out.push(':');
        emit_value(out, value, indent);
    }
}

/// A list item at `indent` (Qt puts a map's list items at the key's indentation).
fn emit_list_item(out: &mut String, item: &Node, indent: usize) {
    out.push_str(&" ".repeat(indent));
    out.push('-');
    match item {
        Node::List(items) if !items.is_empty() => {
            out.push('\n');
            for inner in items {
                emit_list_item(out, inner, indent + 2);
            }
        }
        _ => emit_value(out, item, indent + 2),
    }
}

fn emit_key(key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && matches!(type_plain_scalar(key), QtValue::String(_));
    if simple { key.to_string() } else { quote(key) }
}

fn emit_scalar(node: &Node) -> String {
    match node.qt_value() {
        None | Some(QtValue::Null) => "~".to_string(),
        Some(QtValue::Bool(b)) => b.to_string(),
        Some(QtValue::Int(v)) => v.to_string(),
        Some(QtValue::LongLong(v)) => v.to_string(),
        Some(QtValue::ULongLong(v)) => v.to_string(),
        Some(QtValue::Double(v)) => emit_double(v),
        Some(QtValue::String(s)) => quote(s),
    }
}

/// A double in a form Qt's float pattern reads back: always with a `.`, exponent signed.
fn emit_double(v: f64) -> String {
    if v.is_nan() {
        return ".nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let text = format!("{v:?}");
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m.to_string(), Some(e.to_string())),
        None => (text, None),
    };
    let mantissa = if mantissa.contains('.') {
        mantissa
    } else {
        format!("{mantissa}.0")
    };
    match exponent {
        Some(e) if e.starts_with('-') => format!("{mantissa}e{e}"),
        Some(e) => format!("{mantissa}e+{e}"),
        None => mantissa,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse_one;
    use super::*;

    #[test]
    fn long_keys_are_emitted_as_explicit_keys() {
        // Found by the yaml_metadata fuzz target: a 1086-character key did not parse back.
        let long = "k".repeat(2000);
        let node = Node::Map(vec![
            (long.clone(), Node::string("v")),
            (
                "m".into(),
                Node::Map(vec![(
                    long.clone(),
                    Node::Map(vec![("a".into(), Node::string("b"))]),
                )]),
            ),
        ]);
        let Node::Map(entries) = &node else {
            unreachable!()
        };
        let mut out = String::new();
        emit_map_entries(&mut out, entries, 0);
        assert!(out.starts_with("? "), "{out}");
        assert_eq!(to_json(&parse_one(&out)), to_json(&node));
    }

    #[test]
    fn emitted_yaml_reads_back_with_the_same_qt_types() {
        let source = "m:\n  plain: 017\n  s: 'it''s'\n  u: \"Grüße\\t\"\n  l: [1, 'a', [x, [y]], {k: v}, 1e+20, 1.5e-7, 2.0e+300]\n  e: []\n  n: ~\n  \"Ä\": {deep: {x: yes}}\n  '1': one\n";
        let node = parse_one(source);
        let Node::Map(entries) = &node else {
            unreachable!()
        };
        let mut out = String::new();
        emit_map_entries(&mut out, entries, 0);
        assert_eq!(to_json(&parse_one(&out)), to_json(&node), "{out}");
        assert!(out.contains("plain: 15\n"), "{out}");
        assert!(out.contains("'1e+20'"), "{out}");
    }
}
