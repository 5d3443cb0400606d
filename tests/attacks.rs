//! Hostile HTTP clients: pipelining floods, slow bodies and heads, one client holding every
//! connection, descriptor exhaustion, and framing that could smuggle a request. Each attack
//! runs against the real binary from one loopback address while a second client, from
//! another (127.0.0.2), must still get `/hello` and a download; and the server must answer
//! afterwards. These tests assert behaviour, never timings: the figures are in `make bench`.

use crate::util::*;
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const LEGIT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// How long a test waits for the server to do something it must do (never a measure of
/// speed: only a bound against hanging for ever).
const BOUND: Duration = Duration::from_secs(90);

/// A server with one package, and that package's bytes.
fn server_with_package(dir: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> (Server, Vec<u8>) {
    let server = Server::start(dir, args);
    let package = make_package(
        dir,
        "io.example.attacked",
        &[("en", "Attacked")],
        &[],
        "1",
        Some(&noise(100_000)),
    );
    assert_eq!(server.upload(&package)["status"], "ok");
    (server, std::fs::read(&package).unwrap())
}

/// The second client gets `/hello` and the download.
fn legit_client_is_served(server: &Server, package: &[u8]) {
    let hello = http_from(LEGIT, server.port, "GET", "/hello?project-id=PROJECT", b"");
    assert_eq!(hello.json(), json!({"status": "ok"}));
    let download = http_from(
        LEGIT,
        server.port,
        "GET",
        "/package/download?id=io.example.attacked",
        b"",
    );
    assert_eq!(download.status, 200);
    assert!(download.body == package, "the download differs");
}

/// Read what the server sends on `stream` until it closes the connection.
fn read_until_closed(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "the server kept the connection open for {BOUND:?}: {}",
                    String::from_utf8_lossy(&answer)
                )
            }
            // A reset after the answer counts as closed.
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status of `GET /hello` from `source`, or `None` when the connection failed (a refused
/// connection may be reset after its 503).
fn try_hello(source: Ipv4Addr, port: u16) -> Option<u16> {
    let mut stream = connect_from(source, port);
    stream.set_read_timeout(Some(BOUND)).ok()?;
    stream
        .write_all(b"GET /hello?project-id=PROJECT HTTP/1.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    statuses(&String::from_utf8_lossy(&answer)).first().copied()
}

/// The status codes of the responses in `raw`, in order.
fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| raw[at + 9..].get(..3)?.parse().ok())
        .collect()
}

#[test]
fn a_pipelining_flood_stalls_nobody_and_is_not_queued_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (server, package) = server_with_package(dir.path(), &[]);
    let mut attacker = connect_from(ATTACKER, server.port);
    attacker
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let flood =
        b"GET /hello?project-id=PROJECT HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(100_000);
    // Send until every buffer between us and the server is full, reading nothing.
    let mut sent = 0;
    while sent < flood.len() {
        match attacker.write(&flood[sent..]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    for _ in 0..5 {
        legit_client_is_served(&server, &package);
    }
    let peak = server.peak_rss_kib();
    eprintln!("pipelining flood: {sent} bytes of requests sent unread, peak RSS {peak} KiB");
    // Queued in memory, 100,000 requests took about 130 MB.
    assert!(peak < 40 * 1024, "peak RSS {peak} KiB");
    // The flood's connection is closed after 1000 answers (nginx's keepalive_requests): the
    // rest of the flood is never read. (Closing with the flood unread resets the connection,
    // so some of those answers may be lost on the way.)
    let answers = statuses(&read_until_closed(&mut attacker));
    assert!(
        (1..=1000).contains(&answers.len()),
        "{} answers",
        answers.len()
    );
    assert!(answers.iter().all(|&s| s == 200));
    legit_client_is_served(&server, &package);
}

/// Slow bodies: connections that announce a body and send it just fast enough never to time
/// out, but would take hours. They hold their own threads, not anyone else's.
#[test]
fn slow_bodies_stall_nobody_and_are_closed_when_they_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (server, package) = server_with_package(dir.path(), &[]);
    let heads: [&[u8]; 3] = [
        b"PUT /package/upload HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n\x1f\x8b",
        b"POST /package/remove HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 65536\r\n\r\nid=",
        b"PUT /package/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000\r\n\x1f\x8b",
    ];
    let mut attackers: Vec<(usize, TcpStream)> = (0..64)
        .map(|i| {
            let mut s = connect_from(ATTACKER, server.port);
            s.write_all(heads[i % heads.len()]).unwrap();
            (i % heads.len(), s)
        })
        .collect();
    // Feed every body at 2.5 KiB/s, above the minimum rate, until told to stop.
    let feeding = Arc::new(AtomicBool::new(true));
    let feeder = {
        let feeding = feeding.clone();
        let sockets: Vec<TcpStream> = attackers
            .iter()
            .map(|(_, s)| s.try_clone().unwrap())
            .collect();
        std::thread::spawn(move || {
            while feeding.load(Ordering::SeqCst) {
                for mut socket in &sockets {
                    let _ = socket.write_all(&[b'a'; 256]);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    for _ in 0..5 {
        legit_client_is_served(&server, &package);
    }
    feeding.store(false, Ordering::SeqCst);
    feeder.join().unwrap();
    // Stopped, each is answered and closed: uploads with their fail JSON, the form with 408.
    for (kind, socket) in &mut attackers {
        let answer = read_until_closed(socket);
        match kind {
            1 => assert_eq!(statuses(&answer), [408], "{answer}"),
            _ => {
                assert_eq!(statuses(&answer), [400], "{answer}");
                assert!(
                    answer.contains(r#""status":"fail""#) && answer.contains("too slow"),
                    "{answer}"
                );
            }
        }
    }
    legit_client_is_served(&server, &package);
    assert_eq!(server.temp_files(), Vec::<String>::new());
}

/// Heads sent a byte at a time: answered 408 and closed once the head deadline passed, and
/// one client cannot hold more than its share of connections once the server is busy (here
/// its 8 are half of the 16 in all).
#[test]
fn one_client_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (server, package) = server_with_package(
        dir.path(),
        &[
            &"--max-connections",
            &"16",
            &"--max-connections-per-client",
            &"8",
        ],
    );
    let mut held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = connect_from(ATTACKER, server.port);
            s.write_all(b"GET /hello HTTP/1.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    // Connections are accepted in order, so the 9th and later are over the cap.
    let refused = || {
        let mut s = connect_from(ATTACKER, server.port);
        let answer = read_until_closed(&mut s);
        answer.starts_with("HTTP/1.1 503") && answer.contains("Retry-After: ")
    };
    for _ in 0..20 {
        assert!(refused(), "a connection over the cap was not refused");
    }
    legit_client_is_served(&server, &package);
    let lines = server.lines.wait_for("the refusal line", |l| {
        l.iter()
            .any(|x| x.starts_with("> Refusing connections from 127.0.0.3"))
    });
    let reported: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("> Refusing connections"))
        .collect();
    assert_eq!(
        reported,
        [
            "> Refusing connections from 127.0.0.3: it has 8 open, and its share is 8 while the server is busy (--max-connections-per-client)"
        ],
        "one line per client and minute"
    );
    // The held heads never complete: each is answered 408 and closed, freeing its slot.
    for socket in &mut held {
        let _ = socket.write_all(b"x");
        let answer = read_until_closed(socket);
        assert_eq!(statuses(&answer), [408], "{answer}");
    }
    wait_until("the attacker's address being served again", || {
        try_hello(ATTACKER, server.port) == Some(200)
    });
    // Counted: the 8 heads past their deadline (the refused connections are at least the 20
    // above, and the tries while the held ones closed; metrics.rs counts them exactly).
    let metrics = server.get("/metrics").text();
    let deadline = "appman_http_connections_refused_total{reason=\"deadline\"} 8\n";
    assert!(metrics.contains(deadline), "{deadline} not in {metrics}");
}

#[test]
fn the_global_connection_cap_refuses_with_503_and_frees_slots() {
    let dir = tempfile::tempdir().unwrap();
    let (server, package) = server_with_package(dir.path(), &[&"--max-connections", &"4"]);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| connect_from(ATTACKER, server.port))
        .collect();
    // Connections are accepted in order, so the fifth is over the cap once the upload's
    // connection has ended: until then a fifth connection may still be accepted (it is
    // answered nothing and closed by us, and we try again).
    let refusal = std::cell::RefCell::new(String::new());
    wait_until("a fifth connection being refused", || {
        let mut fifth = connect_from(LEGIT, server.port);
        fifth
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = fifth.read_to_end(&mut answer);
        *refusal.borrow_mut() = String::from_utf8_lossy(&answer).into_owned();
        refusal.borrow().starts_with("HTTP/1.1 503")
    });
    assert!(
        refusal.borrow().contains("Retry-After: 5"),
        "{}",
        refusal.borrow()
    );
    server.lines.wait_for("the refusal line", |l| {
        l.iter().any(|x| {
            x == "> Refusing connections from 127.0.0.2: 4 are open, the most in all (--max-connections)"
        })
    });
    drop(held);
    wait_until("closed connections freeing their slots", || {
        try_hello(LEGIT, server.port) == Some(200)
    });
    legit_client_is_served(&server, &package);
}

/// With few file descriptors the server caps its connections to fit, refuses the rest with
/// 503 instead of failing in `accept`, and serves again once the flood is gone.
#[test]
fn descriptor_exhaustion_is_refused_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with_file_limit(dir.path(), &[&"--max-connections-per-client", &"1000"], 80);
    assert!(
        server
            .lines
            .all()
            .contains(&"> Connections: at most 8, as the file descriptor limit is 80".to_string()),
        "{:?}",
        server.lines.all()
    );
    let package = make_package(dir.path(), "io.example.attacked", &[], &[], "1", None);
    let flood: Vec<TcpStream> = (0..200)
        .map(|_| connect_from(ATTACKER, server.port))
        .collect();
    // Every connection beyond the 8 is answered 503, none crashes or stops the server.
    let mut refused = 0;
    for socket in flood.iter().skip(8) {
        if read_until_closed(&mut socket.try_clone().unwrap()).starts_with("HTTP/1.1 503") {
            refused += 1;
        }
        let _ = socket.shutdown(Shutdown::Both);
    }
    assert!(refused >= 190, "only {refused} of 192 refused");
    drop(flood);
    wait_until("the server serving again", || {
        try_hello(LEGIT, server.port) == Some(200)
    });
    assert_eq!(server.upload(&package)["status"], "ok");
    legit_client_is_served(&server, &std::fs::read(&package).unwrap());
}

/// Framing that two parsers could read differently is refused with exactly one answer and a
/// closed connection; a body the route did not read closes the connection after the answer.
#[test]
fn ambiguous_framing_gets_one_answer_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let smuggled = "GET /package/list HTTP/1.1\r\n\r\n";
    let cases: Vec<(&str, String, Vec<u16>)> = vec![
        (
            "Content-Length with Transfer-Encoding",
            format!(
                "POST /hello HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            vec![400],
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /hello HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 30\r\n\r\n{smuggled}"
            ),
            vec![400],
        ),
        (
            "a list-valued Content-Length",
            format!("POST /hello HTTP/1.1\r\nContent-Length: 30, 30\r\n\r\n{smuggled}"),
            vec![400],
        ),
        (
            "Transfer-Encoding gzip",
            format!("POST /hello HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n{smuggled}"),
            vec![501],
        ),
        (
            "Transfer-Encoding gzip, chunked",
            format!(
                "POST /hello HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            vec![501],
        ),
        (
            "obsolete line folding",
            format!("GET /hello HTTP/1.1\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n{smuggled}"),
            vec![400],
        ),
        (
            "an unread chunked body holding a request",
            format!(
                "POST /hello HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1e\r\n{smuggled}\r\n0\r\n\r\n"
            ),
            vec![200],
        ),
        (
            "100-continue on a body that is never read",
            "GET /hello HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
                .to_string(),
            vec![200],
        ),
        (
            "an unread body, then a request: the body is skipped, not parsed",
            format!(
                "POST /hello HTTP/1.1\r\nContent-Length: 30\r\n\r\n{smuggled}GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n"
            ),
            vec![200, 200],
        ),
        (
            "bare LF line ends",
            "GET /hello HTTP/1.1\nConnection: close\n\n".to_string(),
            vec![200],
        ),
    ];
    for (what, request, expected) in cases {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let answer = read_until_closed(&mut stream);
        assert_eq!(statuses(&answer), expected, "{what}: {answer}");
        assert!(
            !answer.contains("HTTP/1.1 100"),
            "{what}: a 100 Continue for a body never read"
        );
        // What was listed would have been the smuggled request's answer.
        assert!(
            !answer.contains("[]"),
            "{what}: the smuggled request was answered"
        );
    }
    assert_eq!(
        server.get("/hello?project-id=PROJECT").json(),
        json!({"status": "ok"})
    );
}

/// The caps come from the config file too, and `--cc` writes them only when they were given.
#[test]
fn connection_caps_are_read_from_the_config_file_and_written_by_cc() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("amps-config.yaml"),
        "%YAML 1.1\n---\nformatType: amps-configuration\nformatVersion: 1\n---\nmaxConnections: 4\nmaxConnectionsPerClient: 2\n",
    )
    .unwrap();
    // The two held connections are half of the four: the server is busy.
    let server = Server::start(dir.path(), &[]);
    let _held: Vec<TcpStream> = (0..2)
        .map(|_| connect_from(ATTACKER, server.port))
        .collect();
    let answer = read_until_closed(&mut connect_from(ATTACKER, server.port));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(server);

    let written = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let dir = tempfile::tempdir().unwrap();
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--cc"];
        all.extend_from_slice(args);
        drop(Server::start(dir.path(), &all));
        std::fs::read_to_string(dir.path().join("amps-config.yaml")).unwrap()
    };
    let plain = written(&[]);
    assert!(!plain.contains("Connections"), "{plain}");
    let caps = written(&[
        &"--max-connections",
        &"100",
        &"--max-connections-per-client",
        &"9",
    ]);
    assert!(caps.contains("maxConnections: 100\n"), "{caps}");
    assert!(caps.contains("maxConnectionsPerClient: 9\n"), "{caps}");
}
