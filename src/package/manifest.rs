/*!
The package's YAML metadata: the header, the footers and `info.yaml`.

Each is a small multi-document YAML text. The first document states the format (type and
version) and is checked strictly, so that a file of the wrong kind is named as such; the fields
we rely on are then checked with messages that say which entry and which field is wrong.
*/

use super::validate_id;
use crate::yaml::{Node, YamlLimits, parse_documents};
use std::collections::BTreeMap;

/// The fields of `--PACKAGE-HEADER--`.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub format_version: u32,
    pub package_id: String,
    pub disk_space_used: u64,
    pub extra: Option<Node>,
    pub extra_signed: Option<Node>,
}

/// The merged fields of all `--PACKAGE-FOOTER--` entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Footer {
    pub digest: Option<String>,
    pub developer_signature: Option<String>,
    pub store_signature: Option<String>,
    /// Whether the format document (`am-package-footer`) was seen.
    pub has_format: bool,
}

impl Footer {
    /// Take in the fields of a later footer entry: its keys replace earlier ones.
    pub fn absorb(&mut self, later: Footer) {
        self.has_format |= later.has_format;
        for (slot, value) in [
            (&mut self.digest, later.digest),
            (&mut self.developer_signature, later.developer_signature),
            (&mut self.store_signature, later.store_signature),
        ] {
            if value.is_some() {
                *slot = value;
            }
        }
    }
}

/// The fields of `info.yaml` the server uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub id: String,
    pub icon: Option<String>,
    pub names: BTreeMap<String, String>,
    pub descriptions: BTreeMap<String, String>,
    pub version: Option<String>,
    pub categories: Vec<String>,
}

/// A metadata text: its format document checked, and its body.
struct Formatted {
    format_type: String,
    version: i128,
    body: Node,
}

/// Parse a YAML text of two documents, the first stating `formatType`/`formatVersion`.
fn parse_with_format(
    text: &str,
    what: &str,
    format_types: &[&str],
    versions: &[i128],
) -> Result<Formatted, String> {
    let mut docs = parse_documents(text, &YamlLimits::default())
        .map_err(|e| format!("{what} is not valid YAML: {e}"))?;
    if docs.len() != 2 {
        return Err(format!(
            "{what} must consist of two YAML documents, but has {}",
            docs.len()
        ));
    }
    let body = docs.pop().unwrap_or(Node::Map(Vec::new()));
    let (format_type, version) = check_format(&docs[0], what, format_types, versions)?;
    Ok(Formatted {
        format_type,
        version,
        body,
    })
}

/// Check a format document; returns its type and version.
fn check_format(
    format: &Node,
    what: &str,
    format_types: &[&str],
    versions: &[i128],
) -> Result<(String, i128), String> {
    let format_type = format
        .get("formatType")
        .and_then(Node::as_text)
        .unwrap_or("");
    if !format_types.contains(&format_type) {
        return Err(format!(
            "{what} has an unsupported formatType '{format_type}' (expected '{}')",
            format_types.join("' or '")
        ));
    }
    match format.get("formatVersion").and_then(Node::as_integer) {
        Some(v) if versions.contains(&v) => Ok((format_type.to_string(), v)),
        _ => Err(format!(
            "{what} has an unsupported formatVersion '{}'",
            format
                .get("formatVersion")
                .and_then(Node::as_text)
                .unwrap_or("")
        )),
    }
}

fn expect_map<'a>(node: &'a Node, what: &str) -> Result<&'a [(String, Node)], String> {
    match node {
        Node::Map(entries) => Ok(entries),
        n if n.is_null() => Ok(&[]),
        _ => Err(format!("{what} must be a YAML map")),
    }
}

/// Parse the text of `--PACKAGE-HEADER--`.
pub fn parse_header(text: &str) -> Result<Header, String> {
    const WHAT: &str = "the package header";
    let header = parse_with_format(text, WHAT, &["am-package-header"], &[1, 2])?;
    let (version, body) = (header.version, &header.body);
    expect_map(body, WHAT)?;
    let id_field = if version == 1 {
        "applicationId"
    } else {
        "packageId"
    };
    let package_id = body
        .get(id_field)
        .and_then(Node::as_text)
        .ok_or_else(|| format!("{WHAT} has no '{id_field}' field"))?
        .to_string();
    validate_id(&package_id).map_err(|e| format!("{WHAT}: {e}"))?;
    let disk_space_used = match body.get("diskSpaceUsed").and_then(Node::as_integer) {
        Some(n) if n > 0 && n <= i128::from(u64::MAX) => n as u64,
        _ => {
            return Err(format!(
                "{WHAT} has an invalid diskSpaceUsed '{}' (must be a number greater than 0)",
                body.get("diskSpaceUsed")
                    .and_then(Node::as_text)
                    .unwrap_or("")
            ));
        }
    };
    let map_field = |name: &str| -> Result<Option<Node>, String> {
        match body.get(name) {
            None => Ok(None),
            Some(node @ Node::Map(_)) => Ok(Some(node.clone())),
            Some(node) if node.is_null() => Ok(None),
            Some(_) => Err(format!("{WHAT}: '{name}' must be a YAML map")),
        }
    };
    Ok(Header {
        format_version: version as u32,
        package_id,
        disk_space_used,
        extra: map_field("extra")?,
        extra_signed: map_field("extraSigned")?,
    })
}

/// Merge the text of one `--PACKAGE-FOOTER--` entry into `footer`.
pub fn merge_footer(text: &str, footer: &mut Footer) -> Result<(), String> {
    const WHAT: &str = "the package footer";
    let docs = parse_documents(text, &YamlLimits::default())
        .map_err(|e| format!("{WHAT} is not valid YAML: {e}"))?;
    let mut data = docs.as_slice();
    if let Some(first) = docs.first()
        && first.get("formatType").is_some()
    {
        check_format(first, WHAT, &["am-package-footer"], &[1, 2])?;
        footer.has_format = true;
        data = &docs[1..];
    }
    for doc in data {
        for (key, value) in expect_map(doc, WHAT)? {
            let slot = match key.as_str() {
                "digest" => &mut footer.digest,
                "developerSignature" => &mut footer.developer_signature,
                "storeSignature" => &mut footer.store_signature,
                _ => continue,
            };
            let text = value
                .as_text()
                .ok_or_else(|| format!("{WHAT}: '{key}' must be a string"))?;
            *slot = Some(text.to_string());
        }
    }
    Ok(())
}

/// Parse `info.yaml`, in the current (`am-package`) or legacy (`am-application`) format.
pub fn parse_info(text: &str) -> Result<Manifest, String> {
    const WHAT: &str = "info.yaml";
    let info = parse_with_format(text, WHAT, &["am-package", "am-application"], &[1])?;
    let (format_type, body) = (info.format_type.as_str(), &info.body);
    expect_map(body, WHAT)?;
    let id = body
        .get("id")
        .and_then(Node::as_text)
        .ok_or_else(|| format!("{WHAT} has no 'id' field"))?
        .to_string();
    validate_id(&id).map_err(|e| format!("{WHAT}: {e}"))?;
    let required: &[&str] = if format_type == "am-package" {
        &["applications"]
    } else {
        &["code", "runtime"]
    };
    for field in required {
        if body.get(field).is_none_or(Node::is_null) {
            return Err(format!("{WHAT} has no '{field}' field"));
        }
    }
    if format_type == "am-package"
        && !matches!(body.get("applications"), Some(Node::List(l)) if !l.is_empty())
    {
        return Err(format!("{WHAT}: 'applications' must be a non-empty list"));
    }
    Ok(Manifest {
        id,
        icon: optional_text(body, "icon", WHAT)?,
        names: text_map(body, "name", WHAT)?,
        descriptions: text_map(body, "description", WHAT)?,
        version: optional_text(body, "version", WHAT)?,
        // Qt sorts them as it reads info.yaml, and clients see that order.
        categories: {
            let mut categories = text_list(body, "categories", WHAT)?;
            categories.sort();
            categories
        },
    })
}

fn optional_text(body: &Node, field: &str, what: &str) -> Result<Option<String>, String> {
    match body.get(field) {
        None => Ok(None),
        Some(node) if node.is_null() => Ok(None),
        Some(node) => node
            .as_text()
            .map(|t| Some(t.to_string()))
            .ok_or_else(|| format!("{what}: '{field}' must be a string")),
    }
}

fn text_map(body: &Node, field: &str, what: &str) -> Result<BTreeMap<String, String>, String> {
    let Some(node) = body.get(field) else {
        return Ok(BTreeMap::new());
    };
    expect_map(node, &format!("{what}: '{field}'"))?
        .iter()
        .map(|(key, value)| match value.as_text() {
            Some(text) => Ok((key.clone(), text.to_string())),
            None => Err(format!("{what}: '{field}.{key}' must be a string")),
        })
        .collect()
}

fn text_list(body: &Node, field: &str, what: &str) -> Result<Vec<String>, String> {
    match body.get(field) {
        None => Ok(Vec::new()),
        Some(node) if node.is_null() => Ok(Vec::new()),
        Some(Node::List(items)) => items
            .iter()
            .map(|item| {
                item.as_text()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what}: '{field}' must hold strings"))
            })
            .collect(),
        Some(node) => node
            .as_text()
            .map(|t| vec![t.to_string()])
            .ok_or_else(|| format!("{what}: '{field}' must be a string or a list of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "%YAML 1.1\n---\nformatType: 'am-package-header'\nformatVersion: 2\n---\ndiskSpaceUsed: 575488\npackageId: 'com.pelagicore.test'\n";

    #[test]
    fn reads_both_header_versions() {
        let h = parse_header(HEADER).unwrap();
        assert_eq!(h.package_id, "com.pelagicore.test");
        assert_eq!(h.disk_space_used, 575488);
        let v1 = HEADER
            .replace("formatVersion: 2", "formatVersion: 1")
            .replace("packageId", "applicationId");
        assert_eq!(parse_header(&v1).unwrap().format_version, 1);
        let wrong_field = HEADER.replace("formatVersion: 2", "formatVersion: 1");
        assert!(
            parse_header(&wrong_field)
                .unwrap_err()
                .contains("applicationId")
        );
    }

    #[test]
    fn header_errors_name_the_field() {
        let e = parse_header(&HEADER.replace("formatVersion: 2", "formatVersion: X")).unwrap_err();
        assert!(e.contains("formatVersion 'X'"), "{e}");
        let e = parse_header(&HEADER.replace("575488", "0")).unwrap_err();
        assert!(e.contains("diskSpaceUsed '0'"), "{e}");
        let e = parse_header(&HEADER.replace("'com.pelagicore.test'", "':invalid'")).unwrap_err();
        assert!(e.contains("invalid package id ':invalid'"), "{e}");
        let e =
            parse_header(&HEADER.replace("am-package-header", "am-package-footer")).unwrap_err();
        assert!(e.contains("formatType"), "{e}");
    }

    #[test]
    fn footers_merge_with_later_keys_winning() {
        let mut footer = Footer::default();
        merge_footer("%YAML 1.1\n---\nformatType: 'am-package-footer'\nformatVersion: 2\n---\ndigest: 'ab'\n", &mut footer).unwrap();
        merge_footer("%YAML 1.1\n---\ndeveloperSignature: 'x'\n", &mut footer).unwrap();
        merge_footer("%YAML 1.1\n---\ndeveloperSignature: 'y'\n", &mut footer).unwrap();
        assert_eq!(footer.digest.as_deref(), Some("ab"));
        assert_eq!(footer.developer_signature.as_deref(), Some("y"));
        assert!(footer.has_format);
    }

    #[test]
    fn reads_current_and_legacy_info() {
        let current = "formatVersion: 1\nformatType: am-package\n---\nid: 'a.b'\nicon: 'icon.png'\nname: {en: Hello}\ndescription: {en: Desc}\nversion: '1.0'\ncategories: one\napplications:\n- id: 'a.b'\n";
        let m = parse_info(current).unwrap();
        assert_eq!(m.categories, vec!["one"]);
        assert_eq!(m.descriptions["en"], "Desc");
        let legacy = "formatVersion: 1\nformatType: am-application\n---\nid: 'a.b'\nruntime: native\ncode: main\nname: {en: Hello}\ncategories: [x, y]\n";
        let m = parse_info(legacy).unwrap();
        assert_eq!(m.names["en"], "Hello");
        assert_eq!(m.version, None);
        assert!(
            parse_info(&legacy.replace("code: main\n", ""))
                .unwrap_err()
                .contains("'code'")
        );
        assert!(
            parse_info(&current.replace("applications:\n- id: 'a.b'\n", ""))
                .unwrap_err()
                .contains("applications")
        );
    }
}
