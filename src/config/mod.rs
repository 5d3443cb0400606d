/*!
The server's configuration: command line (lexopt), `amps-config.yaml`, and their merge.

Parsing happens in two steps, as in ripgrep: `parse_args` turns the command line into plain
`Args` (only syntax errors, exit 1), then `Config::load` reads the data directory's config
file, applies the command line over it and checks every value (start-up errors, exit 2).
Certificates are loaded here too, so a wrong file or password stops the start, naming the file.
*/

mod args;
mod file;
mod secrets;
mod store;

pub use args::{
    Args, Command, ConnectionArgs, HttpArgs, LimitArgs, USAGE, parse_args, parse_listen_address,
    parse_size,
};
pub use file::{FileSettings, parse_config_file};

use crate::http::server::ConnectionLimits;
use crate::package::Limits;
use crate::package::signature::{SigningKey, TrustStore};
use file::{config_file_error, write_config_file};
use secrets::{load_tls, load_upload_token};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "amps-config.yaml";
pub const DEFAULT_LISTEN_ADDRESS: &str = "localhost:8020";
pub const DEFAULT_PROJECT_ID: &str = "PROJECT";
const DEFAULT_PORT: u16 = 8020;

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
    /// `GET /metrics` served.
    pub metrics: bool,
    /// The object store, with `--store s3://...`; else the data directory.
    pub s3: Option<crate::s3::S3Location>,
    /// The Deployment Server's identity model (`store::identity`).
    pub keep_versions: bool,
    /// Seconds an `/app/purchase` URL is valid.
    pub download_expiry: u64,
    /// `/app/purchase` signs for its `device_id`.
    pub bind_downloads_to_device: bool,
    /// Host names answered to besides the built-in ones (`http::origin`).
    pub allowed_hosts: Vec<String>,
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
        let metrics = args.http.metrics.or(file.http.metrics).unwrap_or(true);
        let s3 = store::s3_location(&args.store, &file.store, &in_data_dir)?;
        let keep_versions = args
            .http
            .keep_versions
            .or(file.http.keep_versions)
            .unwrap_or(false);
        let download_expiry = args
            .http
            .download_expiry
            .or(file.http.download_expiry)
            .unwrap_or(600);
        let bind_downloads_to_device = args
            .http
            .bind_downloads_to_device
            .or(file.http.bind_downloads_to_device)
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
            metrics,
            s3,
            keep_versions,
            download_expiry,
            bind_downloads_to_device,
            allowed_hosts,
        })
    }
}

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

fn check_project_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the project id must not be empty".into());
    }
    if !id.is_ascii() {
        return Err(format!("the project id '{id}' must be ASCII"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

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
