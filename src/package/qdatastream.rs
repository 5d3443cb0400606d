/*!
Qt 6 `QDataStream` encoding of a YAML tree, as the digest needs it for `extraSigned`.

The packager hashes `extraSigned` by streaming the `QVariantMap` it parsed from the header into
a `QDataStream`; to reproduce the digest we must produce the same bytes. Each value is a
`QVariant`: type id (u32), null flag (u8), payload; all integers big-endian; strings are
UTF-16BE with a byte-length prefix; map entries are in ascending UTF-16 key order (QMap order).
*/

use crate::yaml::{Node, QtValue};

const TYPE_BOOL: u32 = 1;
const TYPE_INT: u32 = 2;
const TYPE_LONGLONG: u32 = 4;
const TYPE_ULONGLONG: u32 = 5;
const TYPE_DOUBLE: u32 = 6;
const TYPE_MAP: u32 = 8;
const TYPE_LIST: u32 = 9;
const TYPE_STRING: u32 = 10;
const TYPE_NULLPTR: u32 = 51;

/// Append `node` to `out` as a `QVariant`.
pub fn write_variant(out: &mut Vec<u8>, node: &Node) {
    match node {
        Node::Map(entries) => {
            write_type(out, TYPE_MAP, false);
            let mut sorted: Vec<(Vec<u16>, &Node)> = entries
                .iter()
                .map(|(key, value)| (key.encode_utf16().collect(), value))
                .collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            write_u32(out, sorted.len());
            for (key, value) in sorted {
                write_utf16(out, &key);
                write_variant(out, value);
            }
        }
        Node::List(items) => {
            write_type(out, TYPE_LIST, false);
            write_u32(out, items.len());
            for item in items {
                write_variant(out, item);
            }
        }
        Node::Scalar { .. } => write_scalar(out, node.qt_value()),
    }
}

fn write_scalar(out: &mut Vec<u8>, value: Option<QtValue<'_>>) {
    match value {
        None | Some(QtValue::Null) => write_type(out, TYPE_NULLPTR, true),
        Some(QtValue::Bool(b)) => {
            write_type(out, TYPE_BOOL, false);
            out.push(u8::from(b));
        }
        Some(QtValue::Int(v)) => {
            write_type(out, TYPE_INT, false);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Some(QtValue::LongLong(v)) => {
            write_type(out, TYPE_LONGLONG, false);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Some(QtValue::ULongLong(v)) => {
            write_type(out, TYPE_ULONGLONG, false);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Some(QtValue::Double(v)) => {
            write_type(out, TYPE_DOUBLE, false);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Some(QtValue::String(s)) => {
            write_type(out, TYPE_STRING, false);
            write_utf16(out, &s.encode_utf16().collect::<Vec<u16>>());
        }
    }
}

fn write_type(out: &mut Vec<u8>, type_id: u32, null: bool) {
    out.extend_from_slice(&type_id.to_be_bytes());
    out.push(u8::from(null));
}

/// Container sizes are u32 in the stream; our inputs are bounded far below that.
fn write_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn write_utf16(out: &mut Vec<u8>, units: &[u16]) {
    write_u32(out, units.len() * 2);
    for unit in units {
        out.extend_from_slice(&unit.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{YamlLimits, parse_documents};

    fn encode(yaml: &str) -> Vec<u8> {
        let doc = parse_documents(yaml, &YamlLimits::default()).unwrap();
        let mut out = Vec::new();
        write_variant(&mut out, &doc[0]);
        out
    }

    #[test]
    fn encodes_map_with_sorted_keys_and_every_scalar_type() {
        let bytes = encode("b: 'x'\na: 1\n");
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            0, 0, 0, 8, 0, 0, 0, 0, 2,          // QVariantMap, 2 entries
            0, 0, 0, 2, 0, b'a',                // key "a"
            0, 0, 0, 2, 0, 0, 0, 0, 1,          // int 1
            0, 0, 0, 2, 0, b'b',                // key "b"
            0, 0, 0, 10, 0, 0, 0, 0, 2, 0, b'x', // QString "x"
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn encodes_scalars() {
        let list = encode("[~, true, -1, 5000000000, 18000000000000000000, 1.5, 'é', []]");
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[0, 0, 0, 9, 0, 0, 0, 0, 8][..],
            &[0, 0, 0, 51, 1],
            &[0, 0, 0, 1, 0, 1],
            &[0, 0, 0, 2, 0, 0xff, 0xff, 0xff, 0xff],
            &[0, 0, 0, 4, 0, 0, 0, 0, 1, 0x2a, 0x05, 0xf2, 0],
            &[0, 0, 0, 5, 0, 0xf9, 0xcc, 0xd8, 0xa1, 0xc5, 0x08, 0, 0],
            &[0, 0, 0, 6, 0, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 10, 0, 0, 0, 0, 2, 0, 0xe9],
            &[0, 0, 0, 9, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(list, expected);
    }

    #[test]
    fn sorts_keys_by_utf16_code_units() {
        // U+FF5E (one unit, 0xFF5E) sorts after U+1F600 (surrogates 0xD83D 0xDE00).
        let bytes = encode("\"\u{ff5e}\": 1\n\"\u{1f600}\": 2\n");
        assert_eq!(&bytes[9..13], &[0, 0, 0, 4]);
        assert_eq!(&bytes[13..15], &[0xd8, 0x3d]);
    }
}
