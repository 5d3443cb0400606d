//! Reliability: malformed HTTP, slow and idle clients, concurrent use, and SIGKILL at any
//! moment. The long versions (`#[ignore]`, run by `make test-long`) use the full figures of
//! the reliability goals; the quick ones run in `make test`.

use crate::util::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the server did with raw bytes: answered with a status, or closed the connection.
#[derive(Debug, PartialEq)]
enum Outcome {
    Status(u16),
    Closed,
}

/// Send `bytes` on a new connection (optionally closing our side), read the answer.
fn raw_exchange(port: u16, bytes: &[u8], close_write: bool) -> Outcome {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    // The server may close while we are still sending (it refused early): that is fine.
    let _ = stream.write_all(bytes);
    if close_write {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "the server hung on {:?}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
                )
            }
            Err(_) => break,
        }
    }
    match std::str::from_utf8(&answer)
        .ok()
        .and_then(|a| a.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
    {
        Some(status) => Outcome::Status(status),
        None => Outcome::Closed,
    }
}

/// Send `bytes`, close our side, and read the whole answer.
fn raw_response(port: u16, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(bytes).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn assert_client_error(outcome: Outcome, what: &str) {
    match outcome {
        Outcome::Status(s) if (400..500).contains(&s) => {}
        Outcome::Closed => {}
        other => panic!("{what}: {other:?}, expected a 4xx or a closed connection"),
    }
}

#[test]
fn malformed_http_gets_a_4xx_or_a_close_never_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let port = server.port;
    let big_header = format!(
        "GET /hello HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!(
        "GET /hello HTTP/1.1\r\n{}\r\n",
        (0..10_000)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let long_url = format!(
        "GET /hello?project-id={} HTTP/1.1\r\n\r\n",
        "a".repeat(200_000)
    );
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage request line", b"\x00\x01\x02 garbage\r\n\r\n".to_vec(), false),
        ("request line without version", b"GET /hello\r\n\r\n".to_vec(), false),
        ("HTTP/2 in an HTTP/1 request line", b"GET /hello HTTP/2.0\r\n\r\n".to_vec(), false),
        ("a 1 MiB header", big_header.into_bytes(), false),
        ("10,000 headers", many_headers.into_bytes(), false),
        ("a 200 KB URL", long_url.into_bytes(), false),
        ("bad percent-encoding", b"GET /hello?project-id=%G0%%zz HTTP/1.1\r\n\r\n".to_vec(), false),
        ("non-UTF-8 parameters", b"GET /package/list?filter=%ff%fe%fd HTTP/1.1\r\n\r\n".to_vec(), false),
        ("raw non-UTF-8 in the target", b"GET /hello?project-id=\xff\xfe HTTP/1.1\r\n\r\n".to_vec(), false),
        ("non-ASCII header", b"GET /hello HTTP/1.1\r\nX: \xff\r\n\r\n".to_vec(), false),
        ("an unknown method", b"BREW /hello HTTP/1.1\r\n\r\n".to_vec(), false),
        ("an unknown method on an unknown path", b"BREW /coffee HTTP/1.1\r\n\r\n".to_vec(), false),
        ("an unknown Expect", b"PUT /package/upload HTTP/1.1\r\nExpect: magic\r\nContent-Length: 5\r\n\r\nhello".to_vec(), false),
        ("a broken chunked upload", b"PUT /package/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot hex\r\n".to_vec(), true),
        ("a chunked upload cut short", b"PUT /package/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc".to_vec(), true),
        ("an upload shorter than its Content-Length", b"PUT /package/upload HTTP/1.1\r\nContent-Length: 100000\r\n\r\n\x1f\x8bshort".to_vec(), true),
        ("a form body shorter than its Content-Length", b"POST /package/remove HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\nid=x".to_vec(), true),
        ("a negative Content-Length", b"PUT /package/upload HTTP/1.1\r\nContent-Length: -5\r\n\r\n".to_vec(), true),
    ];
    for (what, bytes, close_write) in cases {
        assert_client_error(raw_exchange(port, &bytes, close_write), what);
        assert_eq!(
            server.get("/hello?project-id=PROJECT").json(),
            json!({"status": "ok"}),
            "after {what}"
        );
    }
    // A body announced but never sent, on a request that ignores bodies, is answered normally;
    // the unread rest is not allocated (that once aborted the process) and the server goes on.
    for length in ["18446744073709551615", "99999999999"] {
        let answer = raw_response(
            port,
            format!("GET /hello?project-id=PROJECT HTTP/1.1\r\nContent-Length: {length}\r\n\r\n")
                .as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(
            server.get("/hello?project-id=PROJECT").json(),
            json!({"status": "ok"})
        );
    }
    // An announced size over the limit is an upload failure naming the limit, not a crash.
    let huge = raw_response(port, b"PUT /package/upload HTTP/1.1\r\nConnection: close\r\nContent-Length: 99999999999999999\r\n\r\n");
    assert!(huge.starts_with("HTTP/1.1 200"), "{huge}");
    assert!(huge.ends_with(r#"{"message":"the package is larger than the maximum package size of 1073741824 bytes","status":"fail"}"#), "{huge}");
    assert!(server.files(".packages").is_empty());
    assert_eq!(server.temp_files(), Vec::<String>::new());
}

/// Idle connections that never finish their headers and one upload stalled mid-body do not
/// keep others from being answered. (All come from 127.0.0.1, standing for many clients: the
/// per-client cap is raised for them.)
fn slow_clients(idle: usize, wait_for_close: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[&"--max-connections-per-client", &"1000"]);
    let package = make_package(
        dir.path(),
        "io.example.slow",
        &[("en", "Slow")],
        &[],
        "1",
        Some(&noise(200_000)),
    );
    server.upload(&package);
    let mut idle_connections: Vec<TcpStream> = (0..idle)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.write_all(b"GET /package/list HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let mut stalled = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stalled
        .write_all(b"PUT /package/upload HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n")
        .unwrap();
    stalled
        .write_all(&std::fs::read(&package).unwrap()[..50_000])
        .unwrap();

    for _ in 0..20 {
        assert_eq!(
            server.get("/hello?project-id=PROJECT").json(),
            json!({"status": "ok"})
        );
        assert_eq!(server.list("").as_array().unwrap().len(), 1);
        assert_eq!(
            server.get("/package/download?id=io.example.slow").body,
            std::fs::read(&package).unwrap()
        );
    }
    if wait_for_close {
        // Every silent connection is closed by the server within its read timeout (+ slack).
        idle_connections.push(stalled);
        let deadline = Instant::now() + Duration::from_secs(60);
        for mut connection in idle_connections {
            connection
                .set_read_timeout(Some(
                    deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(10),
                ))
                .unwrap();
            let mut rest = Vec::new();
            let result = connection.read_to_end(&mut rest);
            assert!(
                result.is_ok()
                    || !matches!(
                        result.as_ref().map_err(|e| e.kind()),
                        Err(std::io::ErrorKind::WouldBlock)
                    ),
                "a silent connection was still open after 60 s"
            );
        }
    }
}

#[test]
fn slow_clients_do_not_block_others_quick() {
    slow_clients(50, false);
}

#[test]
#[ignore = "takes a minute: make test-long"]
fn slow_clients_do_not_block_others_and_are_closed_within_60_s() {
    slow_clients(300, true);
}

/// 16 clients upload, download, list, remove and fetch icons while files are dropped into
/// upload/; no request fails, every download is a complete package we uploaded, and in the end
/// the index and `.packages/` agree byte for byte.
fn concurrent_use(duration: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path(), &[]));
    let work = tempfile::tempdir().unwrap();
    let ids = [
        "io.example.c0",
        "io.example.c1",
        "io.example.c2",
        "io.example.c3",
    ];
    let mut versions = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        for v in 0..2 {
            let path = make_package(
                work.path(),
                id,
                &[("en", id)],
                &["c"],
                &v.to_string(),
                Some(&noise(50_000 + 1000 * (n * 2 + v))),
            );
            versions.push((id.to_string(), std::fs::read(&path).unwrap()));
        }
    }
    let versions = Arc::new(versions);
    let errors = Arc::new(AtomicUsize::new(0));
    let operations = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + duration;
    let mut threads = Vec::new();
    for worker in 0..16 {
        let (server, versions, errors, operations) = (
            server.clone(),
            versions.clone(),
            errors.clone(),
            operations.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut step = worker;
            while Instant::now() < deadline {
                step += 7;
                let (id, bytes) = &versions[step % versions.len()];
                let ok = match step % 5 {
                    0 => {
                        server.request("PUT", "/package/upload", &[], bytes).json()["status"]
                            == "ok"
                    }
                    1 => {
                        let r = server.get(&format!("/package/download?id={id}"));
                        r.status == 404
                            || (r.status == 200
                                && versions.iter().any(|(i, b)| i == id && *b == r.body))
                    }
                    2 => server.get("/package/list").status == 200,
                    3 => {
                        server
                            .post_form("/package/remove", &format!("id={id}"))
                            .status
                            == 200
                    }
                    _ => matches!(
                        server.get(&format!("/package/icon?id={id}")).status,
                        200 | 404
                    ),
                };
                if !ok {
                    errors.fetch_add(1, Ordering::SeqCst);
                }
                operations.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let upload = dir.path().join("upload");
    let mut dropped = 0;
    while Instant::now() < deadline {
        let (_, bytes) = &versions[dropped % versions.len()];
        let part = upload.join(format!(".drop-{dropped}"));
        std::fs::write(&part, bytes).unwrap();
        std::fs::rename(&part, upload.join(format!("drop-{dropped}.ampkg"))).unwrap();
        dropped += 1;
        server.lines.wait_for("the scanner to take the drop", |_| {
            !upload.join(format!("drop-{}.ampkg", dropped - 1)).exists()
        });
    }
    for t in threads {
        t.join().unwrap();
    }
    eprintln!(
        "concurrent use: {} requests by 16 clients and {dropped} folder drops, {} errors",
        operations.load(Ordering::SeqCst),
        errors.load(Ordering::SeqCst)
    );
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "of {} operations",
        operations.load(Ordering::SeqCst)
    );
    assert!(operations.load(Ordering::SeqCst) > 16 && dropped > 0);
    // The index equals the files in .packages/, byte for byte.
    let listed: Vec<String> = server
        .list("")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}_all.ampkg", p["id"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, server.files(".packages"));
    for file in listed {
        let id = file.trim_end_matches("_all.ampkg");
        let stored = std::fs::read(dir.path().join(".packages").join(&file)).unwrap();
        assert_eq!(
            server.get(&format!("/package/download?id={id}")).body,
            stored,
            "{file}"
        );
    }
    assert!(
        server.files("upload").iter().all(|f| f == "rejected") && !upload.join("rejected").exists()
    );
}

#[test]
fn concurrent_use_quick() {
    concurrent_use(Duration::from_secs(3));
}

#[test]
#[ignore = "takes 15 s: make test-long"]
fn concurrent_use_for_15_seconds() {
    concurrent_use(Duration::from_secs(15));
}

/// SIGKILL during HTTP and folder uploads loses nothing: after a restart exactly complete,
/// valid packages are there, the previous ones among them, and no temporary file is left.
fn killed_mid_upload(rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let keep = make_package(
        work.path(),
        "io.example.keep",
        &[("en", "Keep")],
        &[],
        "1",
        None,
    );
    let big = std::fs::read(make_package(
        work.path(),
        "io.example.big",
        &[("en", "Big")],
        &[],
        "1",
        Some(&noise(8 << 20)),
    ))
    .unwrap();
    let folder = std::fs::read(make_package(
        work.path(),
        "io.example.folder",
        &[("en", "Folder")],
        &[],
        "1",
        Some(&noise(4 << 20)),
    ))
    .unwrap();
    let server = Server::start(dir.path(), &[]);
    server.upload(&keep);
    drop(server);
    for round in 0..rounds {
        let server = Server::start(dir.path(), &[]);
        let port = server.port;
        // Kill after a different amount of the upload each round, up to after it completed.
        let kill_after = big.len() / rounds * round + 1;
        let body = big.clone();
        let sent = Arc::new(AtomicUsize::new(0));
        let progress = sent.clone();
        let client = std::thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let head = format!(
                "PUT /package/upload HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            for chunk in body.chunks(64 * 1024) {
                if s.write_all(chunk).is_err() {
                    break;
                }
                progress.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            let _ = s.read_to_end(&mut Vec::new());
        });
        let part = dir.path().join("upload/.folder.part");
        std::fs::write(&part, &folder).unwrap();
        std::fs::rename(&part, dir.path().join("upload/folder.ampkg")).unwrap();
        server.lines.wait_for("the upload to progress", |_| {
            sent.load(Ordering::SeqCst) >= kill_after.min(big.len())
        });
        server.signal(libc::SIGKILL);
        let _ = server.wait_exit();
        client.join().unwrap();

        let restarted = Server::start(dir.path(), &[]);
        let lines = restarted.lines.all();
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("skipping") || l.contains("failed")),
            "round {round}: {lines:?}"
        );
        let files = restarted.files(".packages");
        assert!(
            files.contains(&"io.example.keep_all.ampkg".to_string()),
            "round {round}: {files:?}"
        );
        // The dropped file is either installed or still waiting in upload/.
        restarted.lines.wait_for("the folder upload", |_| {
            restarted
                .files(".packages")
                .contains(&"io.example.folder_all.ampkg".to_string())
        });
        assert_eq!(
            restarted.temp_files(),
            Vec::<String>::new(),
            "round {round}"
        );
        for file in restarted.files(".packages") {
            read(&dir.path().join(".packages").join(&file))
                .unwrap_or_else(|e| panic!("round {round}: {file}: {e}"));
        }
        assert_eq!(
            restarted
                .post_form("/package/remove", "id=io.example.folder")
                .json()["removed"],
            1
        );
    }
}

#[test]
fn killed_mid_upload_loses_nothing_quick() {
    killed_mid_upload(3);
}

#[test]
#[ignore = "many restarts: make test-long"]
fn killed_mid_upload_loses_nothing_at_many_points() {
    killed_mid_upload(20);
}
