//! Shared helpers for the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The shared interoperability vectors, or `None` (with a notice) when they are absent.
pub fn vectors() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    if dir.join("README.md").exists() {
        Some(dir)
    } else {
        skip("../shared/vectors is absent, interop checks not run");
        None
    }
}

/// The binary under test: the one cargo built, or the one in `$AMPS_BIN_DIR` (`make
/// test-dist` points it at `dist/`, so the whole suite runs against the static binaries).
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("AMPS_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    match name {
        "appman-packager" => PathBuf::from(env!("CARGO_BIN_EXE_appman-packager")),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_appman-package-server")),
    }
}

/// Record that the running test skips (some of) its checks, and why: `make test` prints a
/// summary of these after the run, so a skip is never a silent pass.
pub fn skip(reason: &str) {
    eprintln!("SKIPPED: {reason}");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped");
    let _ = std::fs::create_dir_all(&dir);
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .replace("::", "-");
    let _ = std::fs::write(dir.join(name), reason);
}

/// Read a package file with the default limits.
pub fn read(path: &Path) -> Result<amps::package::PackageInfo, amps::package::PackageError> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    amps::package::read_package(file, &amps::package::Limits::default())
}

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509, X509NameBuilder};
use std::process::{Command, Output};

/// The password of every generated PKCS#12 file.
pub const P12_PASSWORD: &str = "password";

/// Throwaway certificates, made like the vectors' ones: a root CA, a developer intermediate CA
/// with a developer certificate under it (its PKCS#12 carries the intermediate), a store
/// certificate under the root, and an unrelated root with its own certificate.
pub struct Certificates {
    pub dir: PathBuf,
}

impl Certificates {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn devca(&self) -> PathBuf {
        self.dir.join("devca.crt")
    }
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }
    pub fn dev_p12(&self) -> PathBuf {
        self.dir.join("dev.p12")
    }
    pub fn store_p12(&self) -> PathBuf {
        self.dir.join("store.p12")
    }
    /// A TLS server certificate for localhost and 127.0.0.1, issued by `ca()`, and its key.
    pub fn tls_cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
    pub fn other_p12(&self) -> PathBuf {
        self.dir.join("other.p12")
    }

    /// Generate the set into `dir` (once per test process, then reused).
    pub fn generate(dir: &Path) -> Certificates {
        std::fs::create_dir_all(dir).unwrap();
        let (ca, ca_key) = certificate("Test Root CA", None, true);
        let (devca, devca_key) = certificate("Test Developer CA", Some((&ca, &ca_key)), true);
        let (dev, dev_key) = certificate("Developer 1", Some((&devca, &devca_key)), false);
        let (store, store_key) = certificate("Test Store", Some((&ca, &ca_key)), false);
        let (other_ca, other_ca_key) = certificate("Other Root CA", None, true);
        let (other, other_key) = certificate("Other", Some((&other_ca, &other_ca_key)), false);
        let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
        write("ca.crt", ca.to_pem().unwrap());
        write("devca.crt", devca.to_pem().unwrap());
        write("other-ca.crt", other_ca.to_pem().unwrap());
        write("dev.p12", p12(&dev, &dev_key, &[&devca]));
        write("store.p12", p12(&store, &store_key, &[]));
        write("other.p12", p12(&other, &other_key, &[]));
        let (tls, tls_key) = tls_certificate(&ca, &ca_key);
        write("tls.crt", tls.to_pem().unwrap());
        write("tls.key", tls_key.private_key_to_pem_pkcs8().unwrap());
        Certificates {
            dir: dir.to_path_buf(),
        }
    }
}

fn certificate(
    name: &str,
    issuer: Option<(&X509, &PKey<Private>)>,
    is_ca: bool,
) -> (X509, PKey<Private>) {
    let (mut builder, key, subject) =
        certificate_builder(&[("O", "appman-rs tests"), ("CN", name)]);
    if is_ca {
        builder
            .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        builder
            .append_extension(KeyUsage::new().key_cert_sign().crl_sign().build().unwrap())
            .unwrap();
    } else {
        builder
            .append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        builder
            .append_extension(
                KeyUsage::new()
                    .digital_signature()
                    .non_repudiation()
                    .build()
                    .unwrap(),
            )
            .unwrap();
    }
    match issuer {
        Some((issuer, issuer_key)) => {
            builder.set_issuer_name(issuer.subject_name()).unwrap();
            builder.sign(issuer_key, MessageDigest::sha256()).unwrap();
        }
        None => {
            builder.set_issuer_name(&subject).unwrap();
            builder.sign(&key, MessageDigest::sha256()).unwrap();
        }
    }
    // Backdate a little against clock skew between signing and verifying.
    (builder.build(), key)
}

/// A new key, and a certificate builder for it with `subject`, a random serial and ten years
/// of validity from now; issuer, extensions and signature are the caller's.
fn certificate_builder(
    subject: &[(&str, &str)],
) -> (
    openssl::x509::X509Builder,
    PKey<Private>,
    openssl::x509::X509Name,
) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    for (field, value) in subject {
        name.append_entry_by_text(field, value).unwrap();
    }
    let name = name.build();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    builder
        .set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(3650).unwrap())
        .unwrap();
    (builder, key, name)
}

/// A TLS server certificate for `localhost` and `127.0.0.1`, issued by `ca`.
fn tls_certificate(ca: &X509, ca_key: &PKey<Private>) -> (X509, PKey<Private>) {
    use openssl::x509::extension::{ExtendedKeyUsage, SubjectAlternativeName};
    let (mut builder, key, _) = certificate_builder(&[("CN", "localhost")]);
    builder.set_issuer_name(ca.subject_name()).unwrap();
    let names = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&builder.x509v3_context(Some(ca), None))
        .unwrap();
    builder.append_extension(names).unwrap();
    builder
        .append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
        .unwrap();
    builder.sign(ca_key, MessageDigest::sha256()).unwrap();
    (builder.build(), key)
}

fn p12(certificate: &X509, key: &PKey<Private>, chain: &[&X509]) -> Vec<u8> {
    let mut builder = Pkcs12::builder();
    builder.name("test").pkey(key).cert(certificate);
    if !chain.is_empty() {
        let mut stack = Stack::new().unwrap();
        for c in chain {
            stack.push((*c).clone()).unwrap();
        }
        builder.ca(stack);
    }
    builder.build2(P12_PASSWORD).unwrap().to_der().unwrap()
}

/// Certificates shared by all tests of this process.
pub fn certificates() -> &'static Certificates {
    static CERTS: std::sync::OnceLock<Certificates> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| {
        // Under target/ (not /tmp), one directory per test process; those of earlier
        // processes are removed here, so nothing accumulates.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let mine = format!("test-certs-{}", std::process::id());
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("test-certs-") && name != mine {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Certificates::generate(&root.join(mine))
    })
}

/// The project's sample package source.
pub fn sample_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sample")
}

/// Run our packager with `args`.
pub fn packager(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(binary("appman-packager"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

/// The exit code and stderr of a finished command.
pub fn status(output: &Output) -> (i32, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Build a package from `source` into `dir/name` with our packager.
pub fn create(dir: &Path, name: &str, source: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"create-package"];
    for e in extra {
        args.push(e);
    }
    args.push(&out);
    args.push(&source);
    let output = packager(&args);
    assert!(
        output.status.success(),
        "create-package failed: {}",
        status(&output).1
    );
    out
}

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long tests wait for something the server should do within a second or two.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The console output of a running server, collected by a reader thread.
#[derive(Default)]
pub struct Lines {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Lines {
    /// Wait until `check` holds for the lines seen so far (or the output ended).
    pub fn wait_for(&self, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut guard = self.lines.lock().unwrap();
        loop {
            if check(&guard.0) {
                return guard.0.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline && !guard.1,
                "timed out waiting for {what}; output:\n{}",
                guard.0.join("\n")
            );
            guard = self.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Wait for a line equal to `line`, counting from line `from`.
    pub fn wait_for_line(&self, line: &str, from: usize) -> Vec<String> {
        self.wait_for(line, |l| l.iter().skip(from).any(|x| x == line))
    }

    pub fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().0.clone()
    }
}

/// A running `appman-package-server` on a data directory, killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub data: PathBuf,
    pub lines: Arc<Lines>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// A finished HTTP exchange.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Server {
    /// Start on `data` with `--la 127.0.0.1:0` and `args`; returns once it listens.
    pub fn start(data: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Server {
        Server::spawn(data, args, true)
    }

    /// Start without waiting for it to listen (for start-up failures).
    pub fn start_failing(data: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Server {
        Server::spawn(data, args, false)
    }

    /// Start without adding `--dd`/`--la`, in `cwd`.
    pub fn spawn_in(cwd: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Server {
        let mut command = Command::new(binary("appman-package-server"));
        command
            .current_dir(cwd)
            .args(args.iter().map(|a| a.as_ref()));
        Server::launch(command, cwd)
    }

    /// Start as `start` does, with at most `files` open file descriptors (soft and hard).
    pub fn start_with_file_limit(
        data: &Path,
        args: &[&dyn AsRef<std::ffi::OsStr>],
        files: u64,
    ) -> Server {
        use std::os::unix::process::CommandExt;
        let mut command = Server::command(data, args);
        // SAFETY: only setrlimit, which is async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: files,
                    rlim_max: files,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut server = Server::launch(command, data);
        server.wait_until_listening();
        server
    }

    /// Start as `start` does, running as the user and group `uid` (the caller is root).
    pub fn start_as_user(data: &Path, args: &[&dyn AsRef<std::ffi::OsStr>], uid: u32) -> Server {
        let mut server = Server::start_failing_as_user(data, args, uid);
        server.wait_until_listening();
        server
    }

    /// Start as user `uid` without waiting for it to listen.
    pub fn start_failing_as_user(
        data: &Path,
        args: &[&dyn AsRef<std::ffi::OsStr>],
        uid: u32,
    ) -> Server {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        // The user may not reach the build's target directory (a clone under /root, say): run
        // a copy kept in the data directory, as a dot file the server ignores.
        let copy = data.join(".test-server-binary");
        std::fs::copy(binary("appman-package-server"), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut command = Command::new(&copy);
        command.arg("--dd").arg(data).arg("--la").arg("127.0.0.1:0");
        command.args(args.iter().map(|a| a.as_ref()));
        command.uid(uid).gid(uid);
        Server::launch(command, data)
    }

    fn command(data: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
        let mut command = Command::new(binary("appman-package-server"));
        command.arg("--dd").arg(data).arg("--la").arg("127.0.0.1:0");
        command.args(args.iter().map(|a| a.as_ref()));
        command
    }

    fn spawn(data: &Path, args: &[&dyn AsRef<std::ffi::OsStr>], wait: bool) -> Server {
        let command = Server::command(data, args);
        let mut server = Server::launch(command, data);
        if wait {
            server.wait_until_listening();
        }
        server
    }

    /// Run `command` (a server with `data` as its data directory, seen from here), collecting
    /// its output.
    pub fn launch(mut command: Command, data: &Path) -> Server {
        command
            .env_remove("AM_FORCE_COLOR_OUTPUT")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Lines::default());
        let stdout = child.stdout.take().unwrap();
        let collector = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut guard = collector.lines.lock().unwrap();
                guard.0.push(line);
                collector.changed.notify_all();
            }
            collector.lines.lock().unwrap().1 = true;
            collector.changed.notify_all();
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = Some(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        }));
        Server {
            child,
            port: 0,
            data: data.to_path_buf(),
            lines,
            stderr,
        }
    }

    /// Wait for the `> HTTP server listening on:` line and take the port from it.
    pub fn wait_until_listening(&mut self) {
        const PREFIX: &str = "> HTTP server listening on: ";
        let lines = self.lines.wait_for("the listening line", |l| {
            l.iter().any(|x| x.starts_with(PREFIX))
        });
        let line = lines.iter().find(|x| x.starts_with(PREFIX)).unwrap();
        self.port = line.rsplit(':').next().unwrap().parse().unwrap();
    }

    /// Wait for the process to end; its exit code and stderr.
    pub fn wait_exit(mut self) -> (i32, String) {
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        (code, stderr)
    }

    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        http(self.port, method, target, headers, body)
    }

    pub fn get(&self, target: &str) -> HttpResponse {
        self.request("GET", target, &[], b"")
    }

    pub fn post_form(&self, target: &str, form: &str) -> HttpResponse {
        self.request(
            "POST",
            target,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
    }

    pub fn upload(&self, package: &Path) -> serde_json::Value {
        let body = std::fs::read(package).unwrap();
        let response = self.request("PUT", "/package/upload", &[], &body);
        assert_eq!(response.status, 200);
        response.json()
    }

    pub fn list(&self, query: &str) -> serde_json::Value {
        self.get(&format!("/package/list{query}")).json()
    }

    /// Our temporary files left in the data directory.
    pub fn temp_files(&self) -> Vec<String> {
        temp_files(&self.data)
    }

    /// The server's peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// The server's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Files in a folder of the data directory, sorted by name.
    pub fn files(&self, folder: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.data.join(folder))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our temporary files (named with `fsutil::TEMP_MARKER`) in `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(amps::fsutil::TEMP_MARKER))
        .collect()
}

/// A TCP connection to `127.0.0.1:port` from the local address `source` (any address of
/// 127.0.0.0/8 works on Linux), so that tests can be several clients.
pub fn connect_from(source: std::net::Ipv4Addr, port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    let address = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, bound and connected with valid sockaddr_in structures; on success
    // the descriptor is owned by the TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = address(source, 0);
        let bound = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), size);
        assert_eq!(
            bound,
            0,
            "bind {source}: {}",
            std::io::Error::last_os_error()
        );
        let remote = address(std::net::Ipv4Addr::LOCALHOST, port);
        let connected = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), size);
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

/// One HTTP/1.1 request from `source` on a new connection.
pub fn http_from(
    source: std::net::Ipv4Addr,
    port: u16,
    method: &str,
    target: &str,
    body: &[u8],
) -> HttpResponse {
    let stream = connect_from(source, port);
    exchange(stream, method, target, &[], body)
}

/// Send `request` exactly as given on a new connection; every byte of the answer, to the
/// server's close (for requests the helpers below cannot write: HEAD, an own Host).
pub fn raw_http(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    raw
}

/// One HTTP/1.1 request on a new connection.
pub fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    exchange(stream, method, target, headers, body)
}

/// Send one request with `Connection: close` on `stream` and read the whole answer.
fn exchange(
    mut stream: TcpStream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let body = raw[split + 4..].to_vec();
    let response = HttpResponse {
        status,
        headers,
        body,
    };
    if let Some(length) = response.header("Content-Length") {
        assert_eq!(
            response.body.len(),
            length.parse::<usize>().unwrap(),
            "body shorter than Content-Length"
        );
    }
    response
}

/// A path in the shared vectors (call only after `vectors()` returned `Some`).
pub fn vector(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// A minimal ELF header of a 64-bit x86-64 (or other `machine`) Linux binary.
pub fn elf_header(machine: u16) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[0x10] = 2;
    f[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
    f[0x14] = 1;
    f
}

/// Make a package source in `dir/<id>-<n>/` and build it with our packager into `dir`.
/// `binary`, when given, is stored as `bin/app` and decides the architecture.
pub fn make_package(
    dir: &Path,
    id: &str,
    names: &[(&str, &str)],
    categories: &[&str],
    version: &str,
    binary: Option<&[u8]>,
) -> PathBuf {
    make_package_with(dir, id, names, categories, version, binary, &[])
}

/// `make_package`, with more arguments to `create-package` (`--tag`, `-m`, ...).
pub fn make_package_with(
    dir: &Path,
    id: &str,
    names: &[(&str, &str)],
    categories: &[&str],
    version: &str,
    binary: Option<&[u8]>,
    packager_args: &[&str],
) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let source = dir.join(format!("{id}-src-{n}"));
    std::fs::create_dir_all(source.join("bin")).unwrap();
    std::fs::copy(sample_source().join("icon.png"), source.join("icon.png")).unwrap();
    let names: String = names
        .iter()
        .map(|(l, t)| format!("  {l}: '{t}'\n"))
        .collect();
    let categories: Vec<String> = categories.iter().map(|c| format!("'{c}'")).collect();
    std::fs::write(
        source.join("info.yaml"),
        format!(
            "formatVersion: 1\nformatType: am-package\n---\nid: '{id}'\nicon: 'icon.png'\nname:\n{names}version: '{version}'\ncategories: [{}]\napplications:\n- id: '{id}'\n  runtime: 'native'\n  code: 'bin/app'\n",
            categories.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(
        source.join("bin/app"),
        binary.unwrap_or(b"#!/bin/sh\necho hello\n"),
    )
    .unwrap();
    create(dir, &format!("{id}-{n}.ampkg"), &source, packager_args)
}

/// `n` pseudo-random bytes (incompressible, reproducible).
pub fn noise(n: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A tar stream built by hand, so tests can write anything a hostile client could.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

/// A ustar header block for `name` of type `kind` declaring `size` bytes.
pub fn tar_header(name: &[u8], kind: u8, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    h[100..108].copy_from_slice(b"0000400\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

pub const TEST_HEADER: &str = "%YAML 1.1\n---\nformatType: 'am-package-header'\nformatVersion: 2\n---\ndiskSpaceUsed: 4096\npackageId: 'io.example.hostile'\n";
pub const TEST_INFO: &str = "formatVersion: 1\nformatType: am-package\n---\nid: 'io.example.hostile'\nicon: 'icon.png'\nname: {en: 'Hostile'}\napplications:\n- id: 'io.example.hostile'\n  runtime: 'native'\n  code: 'x'\n";

impl RawTar {
    /// An entry with `data`, declaring its length.
    pub fn entry(mut self, name: &[u8], kind: u8, data: &[u8]) -> Self {
        self.bytes
            .extend_from_slice(&tar_header(name, kind, data.len() as u64));
        self.bytes.extend_from_slice(data);
        self.bytes.resize(self.bytes.len().div_ceil(512) * 512, 0);
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name.as_bytes(), b'0', data)
    }

    /// A valid header, info.yaml and icon: the start of every hostile package.
    pub fn valid_start() -> Self {
        RawTar::default()
            .file("--PACKAGE-HEADER--", TEST_HEADER.as_bytes())
            .file("info.yaml", TEST_INFO.as_bytes())
            .file("icon.png", b"\x89PNG fake")
    }

    /// `valid_start` plus the footer with the right digest: a complete, valid package.
    pub fn valid() -> Self {
        let mut digest = amps::package::digest::PackageDigest::default();
        for (name, data) in [
            ("info.yaml", TEST_INFO.as_bytes()),
            ("icon.png", &b"\x89PNG fake"[..]),
        ] {
            digest.add_file_data(data);
            digest.finish_file(data.len() as u64, name);
        }
        let footer = amps::package::writer::footer_text(&digest.finish());
        RawTar::valid_start().file("--PACKAGE-FOOTER--", footer.as_bytes())
    }

    /// The end-of-archive blocks, gzip'd.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        gzip(&self.bytes)
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Read a package from memory with the default limits.
pub fn read_bytes(bytes: &[u8]) -> Result<amps::package::PackageInfo, amps::package::PackageError> {
    amps::package::read_package(bytes, &amps::package::Limits::default())
}

/// A valid package built by hand: `id`, an `info.yaml` with `extra_info` added to its body, the
/// icon `icon`, and a footer with `footer_extra` added to its digest document.
pub fn raw_package(id: &str, extra_info: &str, icon: &[u8], footer_extra: &str) -> Vec<u8> {
    let header = format!(
        "%YAML 1.1\n---\nformatType: 'am-package-header'\nformatVersion: 2\n---\ndiskSpaceUsed: 4096\npackageId: '{id}'\n"
    );
    let info = format!(
        "formatVersion: 1\nformatType: am-package\n---\nid: '{id}'\nicon: 'icon.png'\nname: {{en: 'Raw'}}\n{extra_info}applications:\n- id: '{id}'\n  runtime: 'native'\n  code: 'x'\n"
    );
    let mut digest = amps::package::digest::PackageDigest::default();
    for (name, data) in [("info.yaml", info.as_bytes()), ("icon.png", icon)] {
        digest.add_file_data(data);
        digest.finish_file(data.len() as u64, name);
    }
    let footer = amps::package::writer::footer_text(&digest.finish()) + footer_extra;
    RawTar::default()
        .file("--PACKAGE-HEADER--", header.as_bytes())
        .file("info.yaml", info.as_bytes())
        .file("icon.png", icon)
        .file("--PACKAGE-FOOTER--", footer.as_bytes())
        .finish()
}

/// Wait until `check` holds, polling; panics with `what` after `PATIENCE` (times ten).
pub fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE * 10;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port free on loopback now (for a server of another program that we start).
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}
