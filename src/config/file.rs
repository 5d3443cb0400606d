/*!
`amps-config.yaml`: reading it (every field checked, errors naming the line) and writing the
effective settings for `--cc`, keeping what the file held and writing our own fields only when
they were given, so that Qt's server can still read it.
*/

use super::args::{Args, ConnectionArgs, HttpArgs, LimitArgs, host_names, parse_size};
use super::{DEFAULT_LISTEN_ADDRESS, DEFAULT_PROJECT_ID};
use crate::yaml::{Node, YamlLimits, emit_map_entries, parse_documents};
use std::path::{Path, PathBuf};

/// The settings of `amps-config.yaml` (all optional).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileSettings {
    pub listen_address: Option<String>,
    pub project_id: Option<String>,
    pub store_sign_certificate: Option<PathBuf>,
    pub store_sign_password: Option<String>,
    pub developer_ca_certificates: Vec<PathBuf>,
    pub limits: LimitArgs,
    pub connections: ConnectionArgs,
    pub http: HttpArgs,
    pub store: super::args::StoreArgs,
    /// The file's body map, to keep settings we do not touch when writing it back.
    body: Vec<(String, Node)>,
}

/// A config file error with the file's full path, and the line it is about (as the parser
/// said, or where the field it names is), shown.
pub(super) fn config_file_error(path: &Path, text: &str, message: &str) -> String {
    let from_parser = message
        .split("line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    let field = message.split('\'').nth(1).filter(|_| from_parser.is_none());
    let line = from_parser.or_else(|| {
        let field = field?;
        text.lines()
            .position(|l| l.starts_with(&format!("{field}:")))
            .map(|i| i + 1)
    });
    let mut out = format!("Failed to parse config file {}: {message}", path.display());
    if let Some(n) = line
        && let Some(shown) = text.lines().nth(n.saturating_sub(1))
    {
        if from_parser.is_none() {
            out.push_str(&format!(" (line {n})"));
        }
        out.push_str(&format!("\n  {n} | {shown}"));
    }
    out
}

/// Parse `amps-config.yaml`: the format document, then the settings.
pub fn parse_config_file(text: &str) -> Result<FileSettings, String> {
    let docs = parse_documents(text, &YamlLimits::default()).map_err(|e| e.to_string())?;
    let (format, body) = match docs.as_slice() {
        [format, body] => (format, body.clone()),
        [format] => (format, Node::Map(Vec::new())),
        _ => return Err("expected two YAML documents".into()),
    };
    if format.get("formatType").and_then(Node::as_text) != Some("amps-configuration")
        || format.get("formatVersion").and_then(Node::as_integer) != Some(1)
    {
        return Err(
            "the first document must be 'formatType: amps-configuration' and 'formatVersion: 1'"
                .into(),
        );
    }
    let entries = match body {
        Node::Map(entries) => entries,
        n if n.is_null() => Vec::new(),
        _ => return Err("the settings must be a YAML map".into()),
    };
    let mut settings = FileSettings::default();
    for (key, value) in &entries {
        let string = || {
            value
                .as_text()
                .map(str::to_string)
                .ok_or_else(|| format!("'{key}' must be a string"))
        };
        let non_empty = || match string()? {
            s if s.is_empty() => Err(format!("'{key}' must not be empty")),
            s => Ok(s),
        };
        let size = || match (value.as_integer(), value.as_text()) {
            (Some(n), _) if n > 0 && n <= i128::from(u64::MAX) => Ok(n as u64),
            (None, Some(text)) => parse_size(text).map_err(|why| format!("'{key}' {text}: {why}")),
            _ => Err(format!("'{key}' must be a positive number")),
        };
        let boolean = || {
            value
                .as_bool()
                .ok_or_else(|| format!("'{key}' must be true or false"))
        };
        match key.as_str() {
            "listenAddress" => settings.listen_address = Some(non_empty()?),
            "projectId" => settings.project_id = Some(non_empty()?),
            "storeSignCertificate" => settings.store_sign_certificate = Some(string()?.into()),
            "storeSignPassword" => settings.store_sign_password = Some(string()?),
            "developerVerificationCaCertificates" => {
                settings.developer_ca_certificates = match value {
                    Node::List(items) => items
                        .iter()
                        .map(|i| {
                            i.as_text()
                                .map(PathBuf::from)
                                .ok_or_else(|| format!("'{key}' must hold file names"))
                        })
                        .collect::<Result<_, _>>()?,
                    _ => vec![string()?.into()],
                }
            }
            "maxPackageSize" => settings.limits.max_package_size = Some(size()?),
            "maxUncompressedSize" => settings.limits.max_uncompressed_size = Some(size()?),
            "maxEntries" => settings.limits.max_entries = Some(size()?),
            "maxPackages" => settings.limits.max_packages = Some(size()?),
            "maxMetadataSize" => settings.limits.max_metadata_size = Some(size()?),
            "maxConnections" => settings.connections.max_connections = Some(size()?),
            "maxConnectionsPerClient" => {
                settings.connections.max_connections_per_client = Some(size()?)
            }
            "tlsCertificate" => settings.http.tls_certificate = Some(non_empty()?.into()),
            "tlsKey" => settings.http.tls_key = Some(non_empty()?.into()),
            "uploadToken" => settings.http.upload_token = Some(string()?),
            "uploadTokenFile" => settings.http.upload_token_file = Some(non_empty()?.into()),
            "logRequests" => settings.http.log_requests = Some(boolean()?),
            "metrics" => settings.http.metrics = Some(boolean()?),
            "keepVersions" => settings.http.keep_versions = Some(boolean()?),
            "store" => {
                let store = non_empty()?;
                crate::s3::parse_store(&store).map_err(|why| format!("'{key}' {store}: {why}"))?;
                settings.store.store = Some(store)
            }
            "s3Endpoint" => settings.store.endpoint = Some(non_empty()?),
            "s3Region" => settings.store.region = Some(non_empty()?),
            "s3PathStyle" => settings.store.path_style = Some(boolean()?),
            "s3RedirectDownloads" => settings.store.redirect_downloads = Some(boolean()?),
            "s3AccessKeyId" => settings.store.access_key_id = Some(non_empty()?),
            "s3SecretAccessKeyFile" => {
                settings.store.secret_access_key_file = Some(non_empty()?.into())
            }
            "bindDownloadsToDevice" => settings.http.bind_downloads_to_device = Some(boolean()?),
            "downloadExpiry" => {
                let seconds = size()?;
                if seconds > 7 * 86_400 {
                    return Err(format!("'{key}' must be from 1 to 604800 seconds"));
                }
                settings.http.download_expiry = Some(seconds)
            }
            "allowedHosts" => {
                let names: Vec<String> = match value {
                    Node::List(items) => items
                        .iter()
                        .map(|i| {
                            i.as_text()
                                .map(str::to_string)
                                .ok_or_else(|| format!("'{key}' must hold host names"))
                        })
                        .collect::<Result<_, _>>()?,
                    _ => vec![string()?],
                };
                let mut all = Vec::new();
                for name in &names {
                    all.extend(host_names(name).map_err(|why| format!("'{key}': {why}"))?);
                }
                settings.http.allowed_hosts = Some(all);
            }
            other => return Err(format!("unknown field '{other}'")),
        }
    }
    settings.body = entries;
    Ok(settings)
}

/// Write the effective configuration: the file's settings with the command line applied,
/// leaving out values equal to the defaults.
pub(super) fn write_config_file(
    path: &Path,
    file: &FileSettings,
    args: &Args,
) -> Result<(), String> {
    let mut body = file.body.clone();
    let mut set = |key: &str, value: Option<Node>, default: Option<&str>| {
        let Some(value) = value else { return };
        let is_default = default.is_some() && value.as_text() == default;
        body.retain(|(k, _)| k != key);
        if !is_default {
            body.push((key.to_string(), value));
        }
    };
    let string = |s: &str| Node::string(s);
    let path_node = |p: &PathBuf| Node::string(p.to_string_lossy());
    let number = |n: u64| Node::Scalar {
        text: n.to_string(),
        plain: true,
    };
    set(
        "listenAddress",
        args.listen_address.as_deref().map(string),
        Some(DEFAULT_LISTEN_ADDRESS),
    );
    set(
        "projectId",
        args.project_id.as_deref().map(string),
        Some(DEFAULT_PROJECT_ID),
    );
    set(
        "storeSignCertificate",
        args.store_sign_certificate
            .as_ref()
            .map(|p| absolute(p))
            .as_ref()
            .map(path_node),
        None,
    );
    set(
        "storeSignPassword",
        args.store_sign_password.as_deref().map(string),
        None,
    );
    if !args.developer_ca_certificates.is_empty() {
        let list = args
            .developer_ca_certificates
            .iter()
            .map(|p| path_node(&absolute(p)))
            .collect();
        set(
            "developerVerificationCaCertificates",
            Some(Node::List(list)),
            None,
        );
    }
    let numbers = [
        ("maxPackageSize", args.limits.max_package_size),
        ("maxUncompressedSize", args.limits.max_uncompressed_size),
        ("maxEntries", args.limits.max_entries),
        ("maxPackages", args.limits.max_packages),
        ("maxMetadataSize", args.limits.max_metadata_size),
        ("maxConnections", args.connections.max_connections),
        (
            "maxConnectionsPerClient",
            args.connections.max_connections_per_client,
        ),
    ];
    for (key, value) in numbers {
        set(key, value.map(number), None);
    }
    let http = &args.http;
    for (key, value) in [
        ("tlsCertificate", &http.tls_certificate),
        ("tlsKey", &http.tls_key),
        ("uploadTokenFile", &http.upload_token_file),
    ] {
        set(key, value.as_ref().map(|p| path_node(&absolute(p))), None);
    }
    set(
        "uploadToken",
        http.upload_token.as_deref().map(string),
        None,
    );
    let boolean = |on: bool| Node::Scalar {
        text: on.to_string(),
        plain: true,
    };
    set("logRequests", http.log_requests.map(boolean), None);
    set("metrics", http.metrics.map(boolean), None);
    set("keepVersions", http.keep_versions.map(boolean), None);
    // Where the store is, but never a credential (the secret's file path is not one).
    let store = &args.store;
    set("store", store.store.as_deref().map(string), None);
    set("s3Endpoint", store.endpoint.as_deref().map(string), None);
    set("s3Region", store.region.as_deref().map(string), None);
    set("s3PathStyle", store.path_style.map(boolean), None);
    set(
        "s3RedirectDownloads",
        store.redirect_downloads.map(boolean),
        None,
    );
    set(
        "s3SecretAccessKeyFile",
        store
            .secret_access_key_file
            .as_ref()
            .map(|p| path_node(&absolute(p))),
        None,
    );
    set(
        "bindDownloadsToDevice",
        http.bind_downloads_to_device.map(boolean),
        None,
    );
    set("downloadExpiry", http.download_expiry.map(number), None);
    set(
        "allowedHosts",
        http.allowed_hosts
            .as_ref()
            .map(|names| Node::List(names.iter().map(Node::string).collect())),
        None,
    );

    let mut text =
        "%YAML 1.1\n---\nformatType: amps-configuration\nformatVersion: 1\n---\n".to_string();
    emit_map_entries(&mut text, &body, 0);
    // A password or a token is for our eyes only.
    let has_password = body
        .iter()
        .any(|(k, _)| k == "storeSignPassword" || k == "uploadToken");
    let mode = if has_password { 0o600 } else { 0o644 };
    crate::fsutil::write_atomically(path, |f| {
        use std::os::unix::fs::PermissionsExt;
        f.file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::io::Write::write_all(f, text.as_bytes())
    })
    .map_err(|e| format!("could not write {}: {e}", path.display()))
}

/// Command-line paths are relative to the working directory; the file must not depend on it.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
