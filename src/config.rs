/*!
The server's configuration: command line (lexopt), `amps-config.yaml`, and their merge.

Parsing happens in two steps, as in ripgrep: `parse_args` turns the command line into plain
`Args` (only syntax errors, exit 1), then `Config::load` reads the data directory's config
file, applies the command line over it and checks every value (start-up errors, exit 2).
Certificates are loaded here too, so a wrong file or password stops the start, naming the file.
*/

use crate::http::server::ConnectionLimits;
use crate::package::Limits;
use crate::package::signature::{SigningKey, TrustStore};
use crate::yaml::{Node, YamlLimits, emit_map_entries, parse_documents};
use lexopt::prelude::*;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "amps-config.yaml";
pub const DEFAULT_LISTEN_ADDRESS: &str = "localhost:8020";
pub const DEFAULT_PROJECT_ID: &str = "PROJECT";
const DEFAULT_PORT: u16 = 8020;

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
  --allowed-hosts <names>       Host names (comma-separated; repeatable) this server answers
                                to besides loopback names and, when it listens on other
                                addresses, IP literals and this machine's name: other Host
                                headers are refused (DNS rebinding). '*' allows any.
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
}

/// Our HTTP extensions (TLS, the upload token, the request log), as given on the command
/// line or in the config file.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HttpArgs {
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub upload_token: Option<String>,
    pub upload_token_file: Option<PathBuf>,
    pub log_requests: Option<bool>,
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
    Help,
    Version,
}

/// Parse the command line (without the program name). Errors are usage errors.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut out = Args::default();
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
            Long("allowed-hosts") => {
                let value = text(parser.value().map_err(e)?)?;
                let names = out.http.allowed_hosts.get_or_insert_with(Vec::new);
                names.extend(host_names(&value).map_err(|why| format!("--allowed-hosts: {why}"))?);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Command::Run(Box::new(out)))
}

/// Host names from a comma-separated list: lower case, without a trailing dot; `*` for any.
fn host_names(list: &str) -> Result<Vec<String>, String> {
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

/// The checked, effective configuration with loaded certificates.
pub struct Config {
    pub data_directory: PathBuf,
    pub listen_address: String,
    pub bind_address: SocketAddr,
    pub project_id: String,
    pub store_signing: Option<SigningKey>,
    pub developer_verification: Option<TrustStore>,
    pub limits: Limits,
    /// Most packages in the store.
    pub max_packages: u64,
    pub connection_limits: ConnectionLimits,
    /// HTTPS, when configured: the certificate file (for the console) and its acceptor.
    pub tls: Option<(PathBuf, openssl::ssl::SslAcceptor)>,
    /// The bearer token uploads and removals over HTTP need, when configured.
    pub upload_token: Option<String>,
    pub log_requests: bool,
    /// Host names answered to besides the built-in ones (`http::origin`).
    pub allowed_hosts: Vec<String>,
}

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
    /// The file's body map, to keep settings we do not touch when writing it back.
    body: Vec<(String, Node)>,
}

/// Why the configuration cannot be used; `Usage` exits 1, `Startup` exits 2.
#[derive(Debug)]
pub enum ConfigError {
    Usage(String),
    Startup(String),
}

impl Config {
    /// Resolve the data directory, read its config file, apply `args`, load certificates.
    pub fn load(args: &Args) -> Result<Config, ConfigError> {
        let data_directory = resolve_data_directory(args)?;
        let config_path = data_directory.join(CONFIG_FILE);
        let file = if config_path.exists() {
            let text =
                crate::fsutil::read_settings_file(&config_path, crate::fsutil::MAX_SETTINGS_FILE)
                    .and_then(|bytes| {
                        String::from_utf8(bytes)
                            .map_err(|_| std::io::Error::other("not UTF-8 text"))
                    })
                    .map_err(|e| {
                        ConfigError::Startup(format!(
                            "Failed to parse config file {}: {e}",
                            config_path.display()
                        ))
                    })?;
            parse_config_file(&text)
                .map_err(|e| ConfigError::Startup(config_file_error(&config_path, &text, &e)))?
        } else {
            FileSettings::default()
        };
        // Relative paths in the config file are relative to the data directory.
        let in_data_dir = |p: &PathBuf| data_directory.join(p);
        let listen_address = args
            .listen_address
            .clone()
            .or(file.listen_address.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
        let project_id = args
            .project_id
            .clone()
            .or(file.project_id.clone())
            .unwrap_or_else(|| DEFAULT_PROJECT_ID.to_string());
        let certificate = args
            .store_sign_certificate
            .clone()
            .or(file.store_sign_certificate.as_ref().map(in_data_dir));
        let password = args
            .store_sign_password
            .clone()
            .or(file.store_sign_password.clone());
        let cas: Vec<PathBuf> = if args.developer_ca_certificates.is_empty() {
            file.developer_ca_certificates
                .iter()
                .map(in_data_dir)
                .collect()
        } else {
            args.developer_ca_certificates.clone()
        };
        let bind_address = parse_listen_address(&listen_address).map_err(|why| {
            ConfigError::Startup(format!(
                "listenAddress '{listen_address}' in {}: {why}",
                config_path.display()
            ))
        })?;
        if password.is_some() && certificate.is_none() {
            return Err(ConfigError::Usage(
                "--sp: a store-sign password without a certificate (--sc)".into(),
            ));
        }
        check_project_id(&project_id).map_err(ConfigError::Startup)?;
        let limits = effective_limits(&args.limits, &file.limits);
        let max_packages = args
            .limits
            .max_packages
            .or(file.limits.max_packages)
            .unwrap_or(crate::store::DEFAULT_MAX_PACKAGES);
        let connection_limits = effective_connection_limits(&args.connections, &file.connections);

        let store_signing = match certificate {
            Some(path) => Some(
                SigningKey::from_pkcs12_file(&path, password.as_deref().unwrap_or("")).map_err(
                    |e| {
                        let e = e.to_string();
                        // No password given for a file that needs one: say which option.
                        ConfigError::Startup(if password.is_none() && e.contains("wrong password") {
                            format!(
                                "could not load the store-sign certificate: {} is protected by a password: give it with --sp (storeSignPassword)",
                                path.display()
                            )
                        } else {
                            format!("could not load the store-sign certificate: {e}")
                        })
                    },
                )?,
            ),
            None => None,
        };
        if let Some(key) = &store_signing
            && let Some(kind) = key.nondeterministic_key_type()
        {
            return Err(ConfigError::Startup(format!(
                "could not load the store-sign certificate: it has {kind}; store signing needs an RSA key, whose signatures are deterministic, so that a signed download is the same bytes every time (its ETag, resumed downloads and byte ranges rely on that)"
            )));
        }
        let developer_verification = if cas.is_empty() {
            None
        } else {
            Some(TrustStore::from_files(&cas).map_err(|e| {
                ConfigError::Startup(format!("could not load the developer CA certificates: {e}"))
            })?)
        };
        let tls = load_tls(&args.http, &file.http, &in_data_dir)?;
        let upload_token = load_upload_token(&args.http, &file.http, &in_data_dir)?;
        let log_requests = args
            .http
            .log_requests
            .or(file.http.log_requests)
            .unwrap_or(false);
        let allowed_hosts = args
            .http
            .allowed_hosts
            .clone()
            .or(file.http.allowed_hosts.clone())
            .unwrap_or_default();
        // Only a configuration that loaded whole is written.
        if args.create_config {
            create_data_directory(&data_directory).map_err(ConfigError::Startup)?;
            write_config_file(&config_path, &file, args).map_err(ConfigError::Startup)?;
        }
        Ok(Config {
            data_directory,
            listen_address,
            bind_address,
            project_id,
            store_signing,
            developer_verification,
            limits,
            max_packages,
            connection_limits,
            tls,
            upload_token,
            log_requests,
            allowed_hosts,
        })
    }
}

/// The TLS certificate and key (both or neither), loaded.
fn load_tls(
    args: &HttpArgs,
    file: &HttpArgs,
    in_data_dir: &dyn Fn(&PathBuf) -> PathBuf,
) -> Result<Option<(PathBuf, openssl::ssl::SslAcceptor)>, ConfigError> {
    let certificate = args
        .tls_certificate
        .clone()
        .or(file.tls_certificate.as_ref().map(in_data_dir));
    let key = args
        .tls_key
        .clone()
        .or(file.tls_key.as_ref().map(in_data_dir));
    match (certificate, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Usage(
            "--tls-cert: a TLS certificate without its key (--tls-key)".into(),
        )),
        (None, Some(_)) => Err(ConfigError::Usage(
            "--tls-key: a TLS key without its certificate (--tls-cert)".into(),
        )),
        (Some(certificate), Some(key)) => crate::http::tls::acceptor(&certificate, &key)
            .map(|acceptor| Some((certificate, acceptor)))
            .map_err(|e| ConfigError::Startup(format!("could not load the TLS certificate: {e}"))),
    }
}

/// The upload token: given, or read from its file (one line; surrounding white space is
/// not part of it).
fn load_upload_token(
    args: &HttpArgs,
    file: &HttpArgs,
    in_data_dir: &dyn Fn(&PathBuf) -> PathBuf,
) -> Result<Option<String>, ConfigError> {
    let token = match (&args.upload_token, &args.upload_token_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Usage(
                "--upload-token and --upload-token-file: give only one".into(),
            ));
        }
        (Some(token), None) => Some(("--upload-token", token.clone())),
        (None, Some(path)) => Some(("--upload-token-file", read_token_file(path)?)),
        (None, None) => match (&file.upload_token, &file.upload_token_file) {
            (Some(token), _) => Some(("uploadToken", token.clone())),
            (None, Some(path)) => Some(("uploadTokenFile", read_token_file(&in_data_dir(path))?)),
            (None, None) => None,
        },
    };
    let Some((source, token)) = token else {
        return Ok(None);
    };
    check_token(&token)
        .map(|()| Some(token))
        .map_err(|why| ConfigError::Startup(format!("{source}: {why}")))
}

fn read_token_file(path: &Path) -> Result<String, ConfigError> {
    let bytes = crate::fsutil::read_settings_file(path, 64 * 1024).map_err(|e| {
        ConfigError::Startup(format!(
            "could not read the upload token file {}: {e}",
            path.display()
        ))
    })?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_string())
}

/// A bearer token as RFC 6750 has them (`token68`): letters, digits, `-._~+/`, then `=`s.
fn check_token(token: &str) -> Result<(), String> {
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

fn resolve_data_directory(args: &Args) -> Result<PathBuf, ConfigError> {
    let dir = match &args.data_directory {
        Some(dir) => dir.clone(),
        None => {
            let cwd = std::env::current_dir().map_err(|e| {
                ConfigError::Startup(format!("could not read the current directory: {e}"))
            })?;
            if !cwd.join(CONFIG_FILE).exists() {
                return Err(ConfigError::Usage(format!(
                    "no data directory given (--dd), and the current directory {} holds no {CONFIG_FILE}",
                    cwd.display()
                )));
            }
            cwd
        }
    };
    // Created with its parents when missing, as Qt's server does, but only once the start
    // is certain to get that far (`create_data_directory`): a start that fails leaves none.
    if !dir.exists() {
        return std::path::absolute(&dir).map_err(|e| {
            ConfigError::Startup(format!(
                "could not resolve the data directory {}: {e}",
                dir.display()
            ))
        });
    }
    if !dir.is_dir() {
        return Err(ConfigError::Startup(format!(
            "the data directory {} is not a directory",
            dir.display()
        )));
    }
    std::fs::canonicalize(&dir).map_err(|e| {
        ConfigError::Startup(format!(
            "could not resolve the data directory {}: {e}",
            dir.display()
        ))
    })
}

/// Create the data directory `dir` with its parents when it is missing.
pub fn create_data_directory(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("could not create the data directory {}: {e}", dir.display()))
}

fn effective_limits(args: &LimitArgs, file: &LimitArgs) -> Limits {
    let defaults = Limits::default();
    Limits {
        max_package_size: args
            .max_package_size
            .or(file.max_package_size)
            .unwrap_or(defaults.max_package_size),
        max_uncompressed_size: args
            .max_uncompressed_size
            .or(file.max_uncompressed_size)
            .unwrap_or(defaults.max_uncompressed_size),
        max_entries: args
            .max_entries
            .or(file.max_entries)
            .unwrap_or(defaults.max_entries),
        max_metadata_size: args
            .max_metadata_size
            .or(file.max_metadata_size)
            .unwrap_or(defaults.max_metadata_size),
    }
}

fn effective_connection_limits(args: &ConnectionArgs, file: &ConnectionArgs) -> ConnectionLimits {
    let defaults = ConnectionLimits::default();
    let pick = |arg: Option<u64>, file: Option<u64>, default: usize| {
        arg.or(file)
            .map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX))
    };
    ConnectionLimits {
        max_connections: pick(
            args.max_connections,
            file.max_connections,
            defaults.max_connections,
        ),
        max_connections_per_client: pick(
            args.max_connections_per_client,
            file.max_connections_per_client,
            defaults.max_connections_per_client,
        ),
    }
}

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

/// A config file error with the file's full path, and the line it is about (as the parser
/// said, or where the field it names is), shown.
fn config_file_error(path: &Path, text: &str, message: &str) -> String {
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

fn check_project_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the project id must not be empty".into());
    }
    if !id.is_ascii() {
        return Err(format!("the project id '{id}' must be ASCII"));
    }
    Ok(())
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
            "logRequests" => {
                settings.http.log_requests = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| format!("'{key}' must be true or false"))?,
                )
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
fn write_config_file(path: &Path, file: &FileSettings, args: &Args) -> Result<(), String> {
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
    set(
        "logRequests",
        http.log_requests.map(|on| Node::Scalar {
            text: on.to_string(),
            plain: true,
        }),
        None,
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Command, String> {
        parse_args(list.iter().map(OsString::from))
    }

    #[test]
    fn parses_every_option() {
        let Command::Run(a) = args(&[
            "--dd",
            "d",
            "--la",
            "any:7070",
            "--pi",
            "P",
            "--sc",
            "s.p12",
            "--sp",
            "pw",
            "--dc",
            "a.crt",
            "--dc",
            "b.crt",
            "--cc",
            "--max-entries",
            "5",
            "--max-connections-per-client",
            "8",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(a.data_directory, Some("d".into()));
        assert_eq!(a.listen_address.as_deref(), Some("any:7070"));
        assert_eq!(
            a.developer_ca_certificates,
            vec![PathBuf::from("a.crt"), "b.crt".into()]
        );
        assert!(a.create_config);
        assert_eq!(a.limits.max_entries, Some(5));
        assert_eq!(a.connections.max_connections_per_client, Some(8));
        assert_eq!(args(&["--help"]).unwrap(), Command::Help);
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["--dd"]).is_err());
        assert!(args(&["--max-entries", "0"]).is_err());
        assert_eq!(
            args(&["--la", "localhost:99999"]).unwrap_err(),
            "--la localhost:99999: port out of range 0-65535"
        );
        assert!(
            args(&["--max-package-size", "1X"])
                .unwrap_err()
                .starts_with("--max-package-size 1X: not a positive number")
        );
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            parse_listen_address("localhost").unwrap(),
            "127.0.0.1:8020".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address("any:7070").unwrap(),
            "[::]:7070".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen_address("::1").unwrap(),
            "[::1]:8020".parse().unwrap()
        );
        assert!(parse_listen_address("nowhere:1").is_err());
        assert!(parse_listen_address("localhost:99999").is_err());
        assert!(parse_listen_address("").is_err());
    }

    #[test]
    fn reads_the_config_file() {
        let s = parse_config_file("%YAML 1.1\n---\nformatType: amps-configuration\nformatVersion: 1\n---\nlistenAddress: 'any:7070'\nprojectId: 'HELLO'\ndeveloperVerificationCaCertificates: ca.crt\n").unwrap();
        assert_eq!(s.listen_address.as_deref(), Some("any:7070"));
        assert_eq!(s.project_id.as_deref(), Some("HELLO"));
        assert_eq!(s.developer_ca_certificates, vec![PathBuf::from("ca.crt")]);
        assert!(
            parse_config_file("formatType: amps-configuration\nformatVersion: 2\n---\n").is_err()
        );
        assert!(
            parse_config_file(
                "formatType: amps-configuration\nformatVersion: 1\n---\nprojectId: ''\n"
            )
            .unwrap_err()
            .contains("empty")
        );
        assert!(
            parse_config_file("formatType: amps-configuration\nformatVersion: 1\n---\nbogus: 1\n")
                .unwrap_err()
                .contains("unknown field 'bogus'")
        );
    }
}
