//! A shared server: fair to a busy CI host (one address may use an idle server whole; the
//! per-client share applies only once the server is busy), and observable: `GET /metrics`
//! parsed here line by line and compared with the requests each test made, the request log's
//! lines for what the HTTP layer refuses, and a real Prometheus scraping it (when installed).

use crate::util::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUSY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const HELLO: &[u8] = b"GET /hello?project-id=PROJECT HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// One sample per series: `name{label="value",...}` (labels sorted) to its value.
type Samples = BTreeMap<String, f64>;

/// Parse the Prometheus text format strictly: every line a `# HELP`, a `# TYPE` with a known
/// type, or a sample `name{labels} value` with a valid name, quoted label values and a number;
/// each family typed once, its samples after its TYPE line.
fn parse_metrics(text: &str) -> Samples {
    let mut samples = Samples::new();
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let valid_name = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "bad HELP line: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(valid_name(name), "bad TYPE line: {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "unknown type: {line}"
            );
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "typed twice: {line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect(line)),
            None => (series, ""),
        };
        assert!(valid_name(name), "bad metric name: {line}");
        assert!(
            typed.keys().any(|family| name.starts_with(family.as_str())),
            "a sample before its TYPE line: {line}"
        );
        let mut pairs: Vec<String> = Vec::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (label, after) = rest.split_once("=\"").expect(line);
            assert!(valid_name(label), "bad label name: {line}");
            let end = after.find('"').expect(line);
            pairs.push(format!("{label}=\"{}\"", &after[..end]));
            rest = after[end + 1..].trim_start_matches(',');
        }
        pairs.sort();
        let key = format!("{name}{{{}}}", pairs.join(","));
        assert!(samples.insert(key, value).is_none(), "repeated: {line}");
    }
    samples
}

/// The server's metrics, fetched from `source` (so that the fetch is not one of the
/// requests counted under another address's checks).
fn metrics(port: u16) -> (Samples, String) {
    let answer = http_from(Ipv4Addr::new(127, 0, 0, 9), port, "GET", "/metrics", b"");
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    (parse_metrics(&answer.text()), answer.text())
}

fn value(samples: &Samples, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

fn requests(samples: &Samples, route: &str, class: &str) -> f64 {
    value(
        samples,
        &format!("appman_http_requests_total{{route=\"{route}\",status_class=\"{class}\"}}"),
    )
}

/// Raise this process's descriptor limit to at least `wanted` if the hard limit allows.
fn raise_file_limit(wanted: u64) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit structure.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_max < wanted {
            return false;
        }
        limit.rlim_cur = limit.rlim_cur.max(wanted);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
    }
}

/// Send a request on `stream` (kept open) and read its answer's status line and body.
fn ask(stream: &mut TcpStream, request: &[u8]) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // `/hello`'s answer is small and has a Content-Length: read until the body is complete.
    while !answer.ends_with(b"}") {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// 1000 connections from one address, all open at once, to an idle server: every request
/// is answered 200 (the per-client share applies only to a busy server).
#[test]
fn one_address_may_use_an_idle_server_whole() {
    if !raise_file_limit(1200) {
        skip("the descriptor limit's hard cap is below 1200: 1000 parallel connections not tried");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut connections: Vec<TcpStream> =
        (0..1000).map(|_| connect_from(BUSY, server.port)).collect();
    for stream in &mut connections {
        let answer = ask(stream, HELLO);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
    let (samples, _) = metrics(server.port);
    assert_eq!(requests(&samples, "/hello", "2xx"), 1000.0);
    let refused = r#"appman_http_connections_refused_total{reason="per_client_cap"}"#;
    assert_eq!(value(&samples, refused), 0.0);
    // All of them, and the scrape's own, are open now.
    assert_eq!(value(&samples, "appman_http_connections_open{}"), 1001.0);
}

/// A busy server (64 of 128 connections held by one address): another address is served at
/// once, the busy address's further connections are refused with 503 and `Retry-After`,
/// counted in `/metrics` and written to the request log.
#[test]
fn a_busy_server_refuses_the_address_over_its_share_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[&"--max-connections", &"128", &"--log-requests"],
    );
    // Held idle after one answer each: the server keeps them for 60 s (keep-alive).
    let mut held: Vec<TcpStream> = (0..64).map(|_| connect_from(BUSY, server.port)).collect();
    for stream in &mut held {
        assert!(ask(stream, HELLO).starts_with("HTTP/1.1 200 "));
    }
    let other = http_from(OTHER, server.port, "GET", "/hello?project-id=PROJECT", b"");
    assert_eq!(other.status, 200);
    for _ in 0..10 {
        let mut refused = connect_from(BUSY, server.port);
        refused
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut answer = String::new();
        let _ = refused.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.contains("Retry-After: 5\r\n"), "{answer}");
    }
    // The held connections were never closed meanwhile (each answers again).
    for stream in &mut held {
        assert!(ask(stream, HELLO).starts_with("HTTP/1.1 200 "));
    }
    let (samples, _) = metrics(server.port);
    let per_client = r#"appman_http_connections_refused_total{reason="per_client_cap"}"#;
    assert_eq!(value(&samples, per_client), 10.0);
    let global = r#"appman_http_connections_refused_total{reason="global_cap"}"#;
    assert_eq!(value(&samples, global), 0.0);
    assert_eq!(requests(&samples, "/hello", "2xx"), 129.0);
    let lines = server.lines.wait_for("ten refusal lines", |lines| {
        lines
            .iter()
            .filter(|l| l.contains(" 127.0.0.3:") && l.contains(" - - 503 0 bytes "))
            .count()
            == 10
    });
    let refusal = lines.iter().find(|l| l.contains(" - - 503 ")).unwrap();
    assert!(
        refusal.ends_with("refused: its address has 64 connections open, and its share is 64 while the server is busy (--max-connections-per-client)"),
        "{refusal}"
    );
    assert!(lines.contains(
        &"> Refusing connections from 127.0.0.3: it has 64 open, and its share is 64 while the server is busy (--max-connections-per-client)".to_string()
    ));
}

/// What the HTTP layer refuses before any route gets a request-log line with the client and
/// the reason, and is counted as framing.
#[test]
fn the_request_log_and_metrics_see_framing_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[&"--log-requests"]);
    let smuggle = b"POST /hello HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert!(raw_http(server.port, smuggle).starts_with(b"HTTP/1.1 400 "));
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70 * 1024));
    assert!(raw_http(server.port, long.as_bytes()).starts_with(b"HTTP/1.1 414 "));
    assert!(
        raw_http(server.port, b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
            .starts_with(b"HTTP/1.1 400 ")
    );
    let lines = server.lines.wait_for("three refusal lines", |lines| {
        lines.iter().filter(|l| l.contains(" refused: ")).count() == 3
    });
    let refused: Vec<&String> = lines.iter().filter(|l| l.contains(" refused: ")).collect();
    assert!(
        refused[0].contains(" 127.0.0.1:")
            && refused[0].contains(" POST /hello 400 0 bytes ")
            && refused[0]
                .ends_with("refused: bad framing: Transfer-Encoding together with Content-Length"),
        "{}",
        refused[0]
    );
    assert!(
        refused[1].contains(" - - 414 0 bytes ")
            && refused[1].ends_with("refused: request line too long"),
        "{}",
        refused[1]
    );
    assert!(
        refused[2].contains(" - - 400 0 bytes ")
            && refused[2].contains("refused: malformed request head: "),
        "{}",
        refused[2]
    );
    let (samples, _) = metrics(server.port);
    let framing = r#"appman_http_connections_refused_total{reason="framing"}"#;
    assert_eq!(value(&samples, framing), 3.0);
}

/// Traffic of every kind, then `/metrics`: each counter is what was sent, and nothing a
/// client chose (ids, hardware ids, the token, addresses) is in a label.
#[test]
fn metrics_count_what_clients_did() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates();
    let token = "metrics-test-token-0123456789";
    let server = Server::start(
        dir.path(),
        &[
            &"--sc",
            &certs.store_p12(),
            &"--sp",
            &P12_PASSWORD,
            &"--upload-token",
            &token,
        ],
    );
    let package = make_package(
        dir.path(),
        "io.example.counted",
        &[("en", "Counted")],
        &[],
        "1",
        None,
    );
    let bytes = std::fs::read(&package).unwrap();
    let auth = format!("Bearer {token}");
    let put = |body: &[u8], auth: &str| {
        server.request("PUT", "/package/upload", &[("Authorization", auth)], body)
    };
    assert_eq!(put(&bytes, &auth).json()["status"], "ok");
    assert_eq!(put(b"not a package", &auth).json()["status"], "fail");
    assert_eq!(put(&bytes, "Bearer wrong-token-0123456789").status, 401);
    for _ in 0..3 {
        assert_eq!(server.get("/hello?project-id=PROJECT").status, 200);
    }
    assert_eq!(server.get("/package/list").status, 200);
    assert_eq!(server.get("/nowhere").status, 404);
    let mut downloaded = 0;
    for hardware_id in ["device-a", "device-b", "device-a"] {
        let answer = server.get(&format!(
            "/package/download?id=io.example.counted&hardware-id={hardware_id}"
        ));
        assert_eq!(answer.status, 200);
        downloaded += answer.body.len();
    }
    let (samples, text) = metrics(server.port);
    assert_eq!(requests(&samples, "/hello", "2xx"), 3.0);
    assert_eq!(requests(&samples, "/package/list", "2xx"), 1.0);
    assert_eq!(requests(&samples, "other", "4xx"), 1.0);
    assert_eq!(requests(&samples, "/package/upload", "2xx"), 2.0);
    assert_eq!(requests(&samples, "/package/upload", "4xx"), 1.0);
    assert_eq!(requests(&samples, "/package/download", "2xx"), 3.0);
    let bytes_sent = r#"appman_http_response_body_bytes_total{route="/package/download"}"#;
    assert_eq!(value(&samples, bytes_sent), downloaded as f64);
    // Durations are observed once an answer is sent: poll until the last is in.
    let count = r#"appman_http_request_duration_seconds_count{route="/package/download"}"#;
    wait_until("the durations of the 3 downloads", || {
        value(&metrics(server.port).0, count) == 3.0
    });
    let inf = r#"appman_http_request_duration_seconds_bucket{le="+Inf",route="/package/download"}"#;
    assert_eq!(value(&metrics(server.port).0, inf), 3.0);
    assert_eq!(value(&samples, "appman_uploads_accepted_total{}"), 1.0);
    assert_eq!(
        value(&samples, r#"appman_uploads_rejected_total{cause="client"}"#),
        2.0
    );
    assert_eq!(
        value(&samples, r#"appman_uploads_rejected_total{cause="server"}"#),
        0.0
    );
    assert_eq!(value(&samples, "appman_store_packages{}"), 1.0);
    assert_eq!(
        value(&samples, "appman_store_package_bytes{}"),
        bytes.len() as f64
    );
    assert_eq!(value(&samples, "appman_signed_downloads_total{}"), 3.0);
    assert_eq!(value(&samples, "appman_signatures_computed_total{}"), 2.0);
    assert_eq!(value(&samples, "appman_signature_cache_hits_total{}"), 1.0);
    assert!(value(&samples, "appman_scanner_passes_total{}") >= 1.0);
    let build = r#"appman_build_info{linkage="dynamic",tls="false",version="0.1.0"}"#;
    let static_build = r#"appman_build_info{linkage="static",tls="false",version="0.1.0"}"#;
    assert!(
        samples.get(build).or(samples.get(static_build)) == Some(&1.0),
        "{text}"
    );
    for private in [
        "io.example.counted",
        "device-a",
        "metrics-test-token",
        "127.0.0",
    ] {
        assert!(!text.contains(private), "{private} in the metrics");
    }
    // OpenMetrics for a scraper that asks for it.
    let open = server.request(
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        b"",
    );
    assert!(
        open.header("Content-Type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(open.text().ends_with("# EOF\n"));
}

/// `--no-metrics` (or `metrics: false`) turns `/metrics` off; `--cc` writes the field only
/// when it was given.
#[test]
fn metrics_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[&"--no-metrics", &"--cc"]);
    assert_eq!(server.get("/metrics").status, 404);
    let written = std::fs::read_to_string(dir.path().join("amps-config.yaml")).unwrap();
    assert!(written.contains("\nmetrics: false\n"), "{written}");
    drop(server);
    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.get("/metrics").status, 404);
    drop(server);
    let plain = tempfile::tempdir().unwrap();
    drop(Server::start(plain.path(), &[&"--cc"]));
    let written = std::fs::read_to_string(plain.path().join("amps-config.yaml")).unwrap();
    assert!(!written.contains("metrics"), "{written}");
}

/// A Prometheus process on loopback, stopped on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(dir: &Path, target_port: u16) -> Prometheus {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: appman\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Prometheus { child, port }
}

/// The value of a PromQL instant query with one result, if it has one yet.
fn promql(prometheus: &Prometheus, query: &str) -> Option<f64> {
    let target = format!("/api/v1/query?query={}", percent(query));
    let stream = TcpStream::connect(("127.0.0.1", prometheus.port)).ok()?;
    let mut stream = stream;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n")?.1;
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    let value = json["data"]["result"].get(0)?["value"][1]
        .as_str()?
        .to_string();
    value.parse().ok()
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Debian's Prometheus scrapes the server on loopback; a PromQL query through its HTTP API
/// returns the requests this test made.
#[test]
fn prometheus_scrapes_the_server() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var_os("AMPS_REQUIRE_PROMETHEUS").is_some() {
            panic!("prometheus is not installed");
        }
        skip("Prometheus is not installed (apt-get install prometheus): real scrape not tried");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    for _ in 0..7 {
        assert_eq!(server.get("/hello?project-id=PROJECT").status, 200);
    }
    let prometheus = start_prometheus(dir.path(), server.port);
    let query = r#"appman_http_requests_total{job="appman",route="/hello",status_class="2xx"}"#;
    let deadline = Instant::now() + PATIENCE * 12;
    loop {
        if promql(&prometheus, query) == Some(7.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw the 7 requests"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(promql(&prometheus, r#"up{job="appman"}"#), Some(1.0));
    assert_eq!(
        promql(&prometheus, r#"appman_build_info{job="appman"}"#),
        Some(1.0)
    );
}
