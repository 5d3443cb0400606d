/*!
Start-up, run and shutdown of `appman-package-server`; `main` only maps the result to an exit
code. Usage errors exit 1, start-up errors print `ERROR: <message>` and exit 2.
*/

use crate::config::{Command, Config, ConfigError, USAGE, parse_args};
use crate::console::Console;
use crate::http::server::{ConnectionLimits, HttpOptions, HttpServer};
use crate::http::state::State;
use crate::scanner::{self, Scanner};
use crate::store::{DirLock, Store};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Run the server with the given command-line arguments (without the program name).
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    let no_arguments = args.is_empty();
    let args = match parse_args(args) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("{}", crate::version_line("appman-package-server"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::VerifyUploadPackage(args, file)) => return verify_upload_package(&args, &file),
        Err(message) => return usage_error(&message, no_arguments),
    };
    let config = match Config::load(&args) {
        Ok(config) => config,
        Err(ConfigError::Usage(message)) => return usage_error(&message, no_arguments),
        Err(ConfigError::Startup(message)) => return startup_error(&message),
    };
    let served = serve(config);
    // What the console still holds, unless nobody reads stdout.
    crate::console::flush(std::time::Duration::from_secs(1));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => startup_error(&message),
    }
}

/// The Deployment Server's `verify-upload-package`: the checks of an upload (format, digest,
/// limits, developer signature) with this server's settings, no server run. Exit 0 when it
/// would be accepted, 1 when not, 2 when the settings cannot be loaded.
fn verify_upload_package(args: &crate::config::Args, file: &std::path::Path) -> ExitCode {
    // Without a data directory, the default settings (and a config file here, if any).
    let mut args = args.clone();
    args.data_directory.get_or_insert_with(|| ".".into());
    let config = match Config::load(&args) {
        Ok(config) => config,
        Err(ConfigError::Usage(message)) => return usage_error(&message, false),
        Err(ConfigError::Startup(message)) => return startup_error(&message),
    };
    let store = Store::new(
        &config.data_directory,
        config.limits,
        config.max_packages,
        config.developer_verification,
        None,
        Console::from_environment(),
    );
    let shown = file.display();
    let verified = crate::store::open_regular(file)
        .and_then(|f| store.verify(std::io::BufReader::with_capacity(256 * 1024, f)));
    match verified {
        Ok(info) => {
            println!(
                "{shown}: would be accepted: {} {} version {}",
                info.id,
                info.architecture_name(),
                info.version
                    .as_deref()
                    .unwrap_or(crate::package::version::NO_VERSION)
            );
            ExitCode::SUCCESS
        }
        Err(reason) => {
            let reason = if reason == crate::package::WRONG_FILE_TYPE {
                "wrong package format".to_string()
            } else {
                reason
            };
            println!("{shown}: would be refused: {reason}");
            ExitCode::from(1)
        }
    }
}

/// A usage error: the message and a hint, exit code 1. Started without any arguments (and no
/// config file here), the whole usage instead.
fn usage_error(message: &str, no_arguments: bool) -> ExitCode {
    if no_arguments {
        eprint!("{USAGE}");
    } else {
        eprintln!("ERROR: {message}\nRun 'appman-package-server --help' to see the options.");
    }
    ExitCode::from(1)
}

fn startup_error(message: &str) -> ExitCode {
    eprintln!("ERROR: {message}");
    ExitCode::from(2)
}

fn serve(config: Config) -> Result<(), String> {
    let console = Console::from_environment();
    let signals = ShutdownSignal::install()?;
    // The port first: nothing that implies success is printed, and no data directory is
    // created, before it is ours.
    let listener = bind(config.bind_address)?;
    crate::config::create_data_directory(&config.data_directory)?;
    // Dropped on every way out of here, which removes the lock file.
    let _lock = DirLock::acquire(&config.data_directory)?;
    raise_file_limit();
    scanner::ignore_lease_signals();
    let signing = config.store_signing.is_some();
    let mut store = Store::new(
        &config.data_directory,
        config.limits,
        config.max_packages,
        config.developer_verification,
        config.store_signing,
        console,
    );
    store.keep_versions = config.keep_versions;
    if let Some(location) = &config.s3 {
        let objects = crate::s3::ObjectStore::new(location)?;
        store.remote = Some(Arc::new(crate::store::remote::Remote::new(
            objects,
            location.redirect_downloads,
        )));
    }
    let store = Arc::new(store);
    store.prepare()?;

    let yes_no = |b: bool| if b { "yes" } else { "no" };
    console.title();
    console.heading(&format!(
        "Data directory: {}",
        config.data_directory.display()
    ));
    console.heading(&format!("Project: {}", config.project_id));
    console.heading(&format!(
        "Verify developer signature on upload: {}",
        yes_no(store.verifies_developer_signatures())
    ));
    console.heading(&format!(
        "Add store signature on download: {}",
        yes_no(signing)
    ));
    let (tls_certificate, tls) = config.tls.unzip();
    if let Some(certificate) = &tls_certificate {
        console.heading(&format!("TLS: {}", certificate.display()));
    }
    match &store.remote {
        Some(remote) => {
            if let Some(location) = &config.s3 {
                console.heading(&format!("Store: {location}"));
            }
            store.load_remote(remote)?;
        }
        None => store.load_packages(),
    }
    let mut folders = scanner::Folders::default();
    folders.initial_scan(&store);

    let metrics = config.metrics.then(|| {
        let build = crate::metrics::BuildInfo { tls: tls.is_some() };
        Arc::new(crate::metrics::Metrics::new(store.clone(), &build))
    });
    let deployment = crate::http::ds::DeploymentServer {
        key: crate::http::ds::Key::load_or_create(&config.data_directory)?,
        download_expiry: config.download_expiry,
        bind_to_device: config.bind_downloads_to_device,
        tls: tls.is_some(),
    };
    let state = Arc::new(State {
        deployment,
        metrics,
        store: store.clone(),
        project_id: config.project_id,
        upload_token: config.upload_token,
        hosts: crate::http::origin::HostPolicy::new(
            config.bind_address.ip().is_loopback(),
            config.allowed_hosts,
        ),
    });
    let connection_limits = fit_to_file_limit(config.connection_limits, &console);
    let options = HttpOptions {
        limits: connection_limits,
        tls,
        log_requests: config.log_requests,
    };
    let http = HttpServer::start(listener, options, state, console)?;
    console.heading(&format!("HTTP server listening on: {}", http.local_addr));
    let scanner = Scanner::start(store.clone(), folders)?;
    let poller = store
        .remote
        .clone()
        .map(|remote| start_poller(store.clone(), remote));

    signals.wait();
    http.stop();
    scanner.stop();
    if let Some((stop, thread)) = poller {
        stop.store(true, Ordering::SeqCst);
        let _ = thread.join();
    }
    store.remove_own_temp_files();
    Ok(())
}

/// The thread that applies other replicas' changes (`Store::poll_remote`) until `stop`.
fn start_poller(
    store: Arc<Store>,
    remote: Arc<crate::store::remote::Remote>,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::spawn(move || {
        let step = std::time::Duration::from_millis(50);
        let mut waited = std::time::Duration::ZERO;
        while !stopping.load(Ordering::SeqCst) {
            std::thread::sleep(step);
            waited += step;
            if waited >= crate::store::remote::POLL {
                waited = std::time::Duration::ZERO;
                store.poll_remote(&remote);
            }
        }
    });
    (stop, thread)
}

/// Listen on `address`. The unspecified IPv6 address (`any`) listens on IPv6 and IPv4, like
/// Qt's `QHostAddress::Any`; where IPv6 is not available, on IPv4 alone.
fn bind(address: SocketAddr) -> Result<TcpListener, String> {
    let failed = |e: std::io::Error| format!("could not listen on {address}: {e}");
    if address.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        match bind_dual_stack(address.port()) {
            Ok(listener) => return Ok(listener),
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), address.port());
                return TcpListener::bind(v4).map_err(failed);
            }
            Err(e) => return Err(failed(e)),
        }
    }
    TcpListener::bind(address).map_err(failed)
}

/// A listener on `[::]:port` that takes IPv4 connections too (`IPV6_V6ONLY` off, whatever the
/// system's default).
fn bind_dual_stack(port: u16) -> std::io::Result<TcpListener> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let socket = rustix::net::socket_with(
        AddressFamily::INET6,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_ipv6_v6only(&socket, false)?;
    sockopt::set_socket_reuseaddr(&socket, true)?;
    let address = std::net::SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0);
    rustix::net::bind(&socket, &address)?;
    rustix::net::listen(&socket, 1024)?;
    Ok(TcpListener::from(socket))
}

/// Every connection and open download takes a file descriptor; the usual soft limit of 1024
/// is too low for hundreds of clients, so raise it to the hard limit (at most 65536).
fn raise_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let wanted = limit.maximum.map_or(65536, |hard| hard.min(65536));
    if limit.current.is_some_and(|soft| soft < wanted) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted),
                maximum: limit.maximum,
            },
        );
    }
}

/// Descriptors kept for everything but connections (packages, the scanner, the console).
const RESERVED_DESCRIPTORS: u64 = 64;

/// At most as many connections as the descriptor limit allows, counting two per connection
/// (its socket and the file it downloads or uploads into), so that running out of
/// descriptors refuses connections with 503 instead of failing uploads and downloads.
fn fit_to_file_limit(limits: ConnectionLimits, console: &Console) -> ConnectionLimits {
    let Some(current) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    else {
        return limits; // unlimited
    };
    let fits = usize::try_from(current.saturating_sub(RESERVED_DESCRIPTORS) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    if limits.max_connections <= fits {
        return limits;
    }
    console.heading(&format!(
        "Connections: at most {fits}, as the file descriptor limit is {current}"
    ));
    ConnectionLimits {
        max_connections: fits,
        ..limits
    }
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, which `wait` blocks on: each stops the server
/// cleanly (signal-hook's self-pipe: only async-signal-safe work in the handler).
struct ShutdownSignal {
    signals: signal_hook::iterator::Signals,
}

impl ShutdownSignal {
    fn install() -> Result<ShutdownSignal, String> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
            .map_err(|e| format!("could not handle signals: {e}"))?;
        Ok(ShutdownSignal { signals })
    }

    /// Block until one of the signals arrives.
    fn wait(mut self) {
        let _ = self.signals.forever().next();
    }
}
