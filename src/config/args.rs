/*!
The command line: `parse_args` turns it into plain `Args` (only syntax errors, exit 1), as
ripgrep does; values that need the file system wait for `Config::load`.
*/

use super::DEFAULT_PORT;
use lexopt::prelude::*;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

pub const USAGE: &str = "\
Usage: appman-package-server [options]

Qt ApplicationManager Package Server

Options:
  --dd, --data-directory <dir>  The data directory (default: the current directory, if it
                                holds amps-config.yaml).
  --la, --listen-address <addr> <ip>, 'any' or 'localhost', optionally with ':<port>'
                                (default: localhost:8020; port 0 picks a free port).
  --pi, --project-id <id>       The project id clients must send to /hello (default: PROJECT).
  --sc <file>                   PKCS#12 certificate to store-sign downloads with.
  --sp <password>               The password of the store-sign certificate.
  --dc <file>                   CA certificate file to verify developer signatures on upload
                                (repeatable).
  --cc, --create-config         Write the effective configuration to amps-config.yaml in the
                                data directory, then go on.
  --max-package-size <bytes>    Largest package accepted (default: 1 GiB).
  --max-uncompressed-size <bytes>
                                Largest total content of a package (default: 2 GiB).
  --max-entries <n>             Most archive entries in a package (default: 10000).
  --max-metadata-size <bytes>   Largest header, footer, info.yaml or icon (default: 4 MiB).
  --max-packages <n>            Most packages in the store (default: 10000).
  --max-connections <n>         Most HTTP connections open at once (default: 4096, and at
                                most half of the file descriptors the server may open).
  --max-connections-per-client <n>
                                Most HTTP connections open at once from one IPv4 address or
                                IPv6 /64 (default: 64).
  --tls-cert <pem>              Serve HTTPS with this certificate (chain) file ...
  --tls-key <pem>               ... and this private key file.
  --upload-token <token>        PUT /package/upload and POST /package/remove need
                                'Authorization: Bearer <token>'.
  --upload-token-file <file>    The same, with the token read from a file (kept out of
                                process lists).
  --log-requests                Print one console line per HTTP request.
  --no-metrics                  No GET /metrics (Prometheus), which is on by default.
  --keep-versions               Identify packages by id, version, architecture and tags (the
                                Deployment Server's model): other versions and tag variants
                                are kept beside each other, the newest is served.
  --store s3://<bucket>/<prefix>
                                Keep packages in S3-compatible object storage, shared by any
                                number of servers (default: the data directory).
  --s3-endpoint <urls>          The object store's endpoint, or several (comma-separated): a
                                request one does not answer goes to the next (else
                                AWS_ENDPOINT_URL, else AWS).
  --s3-region <region>          Its region (else AWS_REGION or AWS_DEFAULT_REGION, else
                                us-east-1).
  --s3-path-style               Path-style addressing (the default with --s3-endpoint).
  --s3-redirect-downloads       Answer unsigned downloads with a redirect to a presigned URL
                                of the object store (clients must reach its endpoint).
  --s3-access-key-id <id>       The access key (else AWS_ACCESS_KEY_ID) ...
  --s3-secret-access-key-file <file>
                                ... and its secret, from a file (else AWS_SECRET_ACCESS_KEY).
  --download-expiry <seconds>   How long an /app/purchase download URL is valid (default 600).
  --bind-downloads-to-device    /app/purchase signs for the device_id it is given.
  --allowed-hosts <names>       Host names (comma-separated; repeatable) this server answers
                                to besides loopback names and, when it listens on other
                                addresses, IP literals and this machine's name: other Host
                                headers are refused (DNS rebinding). '*' allows any.
  verify-upload-package <file>  Check a package as an upload to this server would be (its
                                limits and developer CAs, from these options and the config
                                file), then exit: 0 if it would be accepted, 1 if not.
  -h, --help                    Show this help.
  --version                     Show the version.
";

/// The command line, as given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Args {
    pub data_directory: Option<PathBuf>,
    pub listen_address: Option<String>,
    pub project_id: Option<String>,
    pub store_sign_certificate: Option<PathBuf>,
    pub store_sign_password: Option<String>,
    pub developer_ca_certificates: Vec<PathBuf>,
    pub create_config: bool,
    pub limits: LimitArgs,
    pub connections: ConnectionArgs,
    pub http: HttpArgs,
    pub store: StoreArgs,
}

/// Where the store is (`--store s3://...` and the object store's settings), as given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StoreArgs {
    pub store: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key_file: Option<PathBuf>,
    pub redirect_downloads: Option<bool>,
}

/// Our HTTP extensions (TLS, the upload token, the request log, metrics), as given on the command
/// line or in the config file.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HttpArgs {
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub upload_token: Option<String>,
    pub upload_token_file: Option<PathBuf>,
    pub log_requests: Option<bool>,
    /// `GET /metrics` on (the default) or off.
    pub metrics: Option<bool>,
    /// The Deployment Server's identity model.
    pub keep_versions: Option<bool>,
    /// Seconds an `/app/purchase` URL is valid.
    pub download_expiry: Option<u64>,
    /// `/app/purchase` binds downloads to `device_id`.
    pub bind_downloads_to_device: Option<bool>,
    pub allowed_hosts: Option<Vec<String>>,
}

/// Connection limits given on the command line or in the config file.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ConnectionArgs {
    pub max_connections: Option<u64>,
    pub max_connections_per_client: Option<u64>,
}

/// Limits given on the command line or in the config file.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LimitArgs {
    pub max_package_size: Option<u64>,
    pub max_uncompressed_size: Option<u64>,
    pub max_entries: Option<u64>,
    pub max_metadata_size: Option<u64>,
    pub max_packages: Option<u64>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<Args>),
    /// `verify-upload-package <file>`: check a package as an upload to this server would be,
    /// with its settings, without running it.
    VerifyUploadPackage(Box<Args>, PathBuf),
    Help,
    Version,
}

/// Parse the command line (without the program name). Errors are usage errors.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut out = Args::default();
    let mut verify: Option<Option<PathBuf>> = None;
    let e = |e: lexopt::Error| e.to_string();
    while let Some(arg) = parser.next().map_err(e)? {
        let arg = arg.clone();
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("version") => return Ok(Command::Version),
            Long("dd" | "data-directory") => {
                out.data_directory = Some(parser.value().map_err(e)?.into())
            }
            Long("la" | "listen-address") => {
                let address = text(parser.value().map_err(e)?)?;
                parse_listen_address(&address).map_err(|why| format!("--la {address}: {why}"))?;
                out.listen_address = Some(address)
            }
            Long("pi" | "project-id") => out.project_id = Some(text(parser.value().map_err(e)?)?),
            Long("sc") => out.store_sign_certificate = Some(parser.value().map_err(e)?.into()),
            Long("sp") => out.store_sign_password = Some(text(parser.value().map_err(e)?)?),
            Long("dc") => out
                .developer_ca_certificates
                .push(parser.value().map_err(e)?.into()),
            Long("cc" | "create-config") => out.create_config = true,
            Long("max-package-size") => {
                out.limits.max_package_size =
                    Some(number(&arg_name(&arg), parser.value().map_err(e)?)?)
            }
            Long("max-uncompressed-size") => {
                out.limits.max_uncompressed_size =
                    Some(number(&arg_name(&arg), parser.value().map_err(e)?)?)
            }
            Long("max-packages") => {
                out.limits.max_packages = Some(number(&arg_name(&arg), parser.value().map_err(e)?)?)
            }
            Long("max-entries") => {
                out.limits.max_entries = Some(number(&arg_name(&arg), parser.value().map_err(e)?)?)
            }
            Long("max-metadata-size") => {
                out.limits.max_metadata_size =
                    Some(number(&arg_name(&arg), parser.value().map_err(e)?)?)
            }
            Long("max-connections") => {
                out.connections.max_connections =
                    Some(number(&arg_name(&arg), parser.value().map_err(e)?)?)
            }
            Long("max-connections-per-client") => {
                out.connections.max_connections_per_client =
                    Some(number(&arg_name(&arg), parser.value().map_err(e)?)?)
            }
            Long("tls-cert") => out.http.tls_certificate = Some(parser.value().map_err(e)?.into()),
            Long("tls-key") => out.http.tls_key = Some(parser.value().map_err(e)?.into()),
            Long("upload-token") => {
                let token = text(parser.value().map_err(e)?)?;
                check_token(&token).map_err(|why| format!("--upload-token: {why}"))?;
                out.http.upload_token = Some(token)
            }
            Long("upload-token-file") => {
                out.http.upload_token_file = Some(parser.value().map_err(e)?.into())
            }
            Long("log-requests") => out.http.log_requests = Some(true),
            Long("no-metrics") => out.http.metrics = Some(false),
            Long("keep-versions") => out.http.keep_versions = Some(true),
            Long("store") => {
                let store = text(parser.value().map_err(e)?)?;
                crate::s3::parse_store(&store).map_err(|why| format!("--store {store}: {why}"))?;
                out.store.store = Some(store)
            }
            Long("s3-endpoint") => out.store.endpoint = Some(text(parser.value().map_err(e)?)?),
            Long("s3-region") => out.store.region = Some(text(parser.value().map_err(e)?)?),
            Long("s3-path-style") => out.store.path_style = Some(true),
            Long("s3-redirect-downloads") => out.store.redirect_downloads = Some(true),
            Long("s3-access-key-id") => {
                out.store.access_key_id = Some(text(parser.value().map_err(e)?)?)
            }
            Long("s3-secret-access-key-file") => {
                out.store.secret_access_key_file = Some(parser.value().map_err(e)?.into())
            }
            Long("bind-downloads-to-device") => out.http.bind_downloads_to_device = Some(true),
            Long("download-expiry") => {
                let value = text(parser.value().map_err(e)?)?;
                let seconds = value
                    .parse::<u64>()
                    .ok()
                    .filter(|s| (1..=7 * 86_400).contains(s))
                    .ok_or_else(|| {
                        format!("--download-expiry {value}: seconds from 1 to 604800")
                    })?;
                out.http.download_expiry = Some(seconds)
            }
            Long("allowed-hosts") => {
                let value = text(parser.value().map_err(e)?)?;
                let names = out.http.allowed_hosts.get_or_insert_with(Vec::new);
                names.extend(host_names(&value).map_err(|why| format!("--allowed-hosts: {why}"))?);
            }
            Value(command) if command == "verify-upload-package" && verify.is_none() => {
                verify = Some(None)
            }
            Value(file) if verify == Some(None) => verify = Some(Some(file.into())),
            other => return Err(other.unexpected().to_string()),
        }
    }
    match verify {
        None => Ok(Command::Run(Box::new(out))),
        Some(Some(file)) => Ok(Command::VerifyUploadPackage(Box::new(out), file)),
        Some(None) => Err("verify-upload-package needs a package file".to_string()),
    }
}

/// Host names from a comma-separated list: lower case, without a trailing dot; `*` for any.
pub(super) fn host_names(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let valid = name == "*"
                || (name.len() <= 253
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b)));
            if valid {
                Ok(name)
            } else {
                Err(format!("'{name}' is not a host name"))
            }
        })
        .collect()
}

fn text(value: OsString) -> Result<String, String> {
    value
        .into_string()
        .map_err(|v| format!("argument {v:?} is not valid UTF-8"))
}

/// `--name` of an option, for messages.
fn arg_name(arg: &lexopt::Arg<'_>) -> String {
    match arg {
        Long(name) => format!("--{name}"),
        Short(c) => format!("-{c}"),
        Value(v) => v.to_string_lossy().into_owned(),
    }
}

/// A positive number, optionally with a binary suffix `K`, `M` or `G` (KiB, MiB, GiB).
fn number(option: &str, value: OsString) -> Result<u64, String> {
    let text = text(value)?;
    parse_size(&text).map_err(|why| format!("{option} {text}: {why}"))
}

/// `123`, `64K`, `512M`, `1G` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, factor) = match text.char_indices().last() {
        Some((at, 'K' | 'k')) => (&text[..at], 1u64 << 10),
        Some((at, 'M' | 'm')) => (&text[..at], 1 << 20),
        Some((at, 'G' | 'g')) => (&text[..at], 1 << 30),
        _ => (text, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| "not a positive number (a K, M or G suffix may follow)".to_string())?;
    let n = n
        .checked_mul(factor)
        .ok_or_else(|| "too large".to_string())?;
    if n == 0 {
        return Err("must be greater than 0".into());
    }
    Ok(n)
}

/// A bearer token as RFC 6750 has them (`token68`): letters, digits, `-._~+/`, then `=`s.
pub(super) fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the upload token is empty".into());
    }
    let body = token.trim_end_matches('=');
    let valid = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !valid {
        return Err(
            "the upload token may hold only letters, digits and -._~+/ (then = signs)".into(),
        );
    }
    if token.chars().count() < MIN_TOKEN_LENGTH {
        return Err(format!(
            "the upload token is {} characters long: use at least {MIN_TOKEN_LENGTH} (e.g. openssl rand -hex 16)",
            token.chars().count()
        ));
    }
    Ok(())
}

/// Shortest upload token accepted: one that cannot be guessed over the network.
const MIN_TOKEN_LENGTH: usize = 16;

/// `<ip>`, `any` or `localhost`, optionally `:<port>` (IPv6 addresses in brackets). The
/// error says what is wrong.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let invalid = || {
        "not an address: expected <ip>, 'any' or 'localhost', optionally with :<port>".to_string()
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(invalid()),
        };
        (host, port)
    } else if text.matches(':').count() > 1 {
        (text, None)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let ip: IpAddr = match host {
        "any" => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        other => other
            .parse()
            .map_err(|_| format!("'{other}' is not an IP address, 'any' or 'localhost'"))?,
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u16>()
            .map_err(|_| "port out of range 0-65535".to_string())?,
        Some(p) => return Err(format!("the port '{p}' is not a number")),
        None => DEFAULT_PORT,
    };
    Ok(SocketAddr::new(ip, port))
}
