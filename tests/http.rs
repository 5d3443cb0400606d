//! Our HTTP extensions against the real binary: validators (ETag, Last-Modified, 304,
//! If-Range), HTTPS, the upload token and the request log.

use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

fn signing_args(p12: &dyn AsRef<std::ffi::OsStr>) -> Vec<&dyn AsRef<std::ffi::OsStr>> {
    vec![&"--sc", p12, &"--sp", &P12_PASSWORD]
}

fn package(dir: &Path, id: &str) -> std::path::PathBuf {
    make_package(dir, id, &[], &[], "1", Some(&noise(50_000)))
}

#[test]
fn downloads_icons_and_lists_answer_304_to_their_validators() {
    let certs = certificates();
    let p12 = certs.store_p12();
    for signed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let args = if signed { signing_args(&p12) } else { vec![] };
        let server = Server::start(dir.path(), &args);
        server.upload(&package(dir.path(), "io.example.cached"));
        let target = "/package/download?id=io.example.cached&hardware-id=dev1";
        // A date is sent once it can tell versions apart: a second after the change.
        wait_until("Last-Modified, once the package is a second old", || {
            server.get(target).header("Last-Modified").is_some()
        });
        let whole = server.get(target);
        assert_eq!(whole.status, 200);
        let etag = whole.header("ETag").expect("an ETag").to_string();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong: {etag}"
        );
        let modified = whole
            .header("Last-Modified")
            .expect("Last-Modified")
            .to_string();

        let get = |headers: &[(&str, &str)]| server.request("GET", target, headers, b"");
        let not_modified = get(&[("If-None-Match", &etag)]);
        assert_eq!(not_modified.status, 304, "signed {signed}");
        assert!(not_modified.body.is_empty());
        assert_eq!(not_modified.header("ETag"), Some(etag.as_str()));
        let list = format!("\"other\", W/{etag}");
        assert_eq!(get(&[("If-None-Match", &list)]).status, 304);
        assert_eq!(get(&[("If-None-Match", "*")]).status, 304);
        assert_eq!(get(&[("If-None-Match", "\"other\"")]).status, 200);
        assert_eq!(get(&[("If-Modified-Since", &modified)]).status, 304);
        let head = server.request("HEAD", target, &[("If-None-Match", &etag)], b"");
        assert_eq!(head.status, 304);
        let long_ago = "Mon, 01 Jan 2001 00:00:00 GMT";
        assert_eq!(get(&[("If-Modified-Since", long_ago)]).status, 200);

        // If-Range: the range when the validator still matches, else the whole body.
        let range = [("Range", "bytes=10-19"), ("If-Range", etag.as_str())];
        let part = get(&range);
        assert_eq!(part.status, 206);
        assert!(part.body == whole.body[10..20]);
        let stale = get(&[("Range", "bytes=10-19"), ("If-Range", "\"stale\"")]);
        assert_eq!(stale.status, 200);
        assert!(stale.body == whole.body);
        let by_date = get(&[("Range", "bytes=10-19"), ("If-Range", &modified)]);
        assert_eq!(by_date.status, 206);
        assert_eq!(
            get(&[("Range", "bytes=10-19"), ("If-Range", long_ago)]).status,
            200
        );

        // Signed downloads: one tag per device.
        let other_device = server.get("/package/download?id=io.example.cached&hardware-id=dev2");
        assert_eq!(
            other_device.header("ETag") != Some(etag.as_str()),
            signed,
            "the tag names the hardware id exactly when the download is signed for it"
        );

        let icon = server.get("/package/icon?id=io.example.cached");
        let icon_tag = icon.header("ETag").expect("an icon ETag").to_string();
        let icon_again = server.request(
            "GET",
            "/package/icon?id=io.example.cached",
            &[("If-None-Match", &icon_tag)],
            b"",
        );
        assert_eq!(icon_again.status, 304);

        for list in ["/package/list", "/category/list"] {
            let first = server.get(list);
            let tag = first.header("ETag").expect("a list ETag").to_string();
            let again = server.request("GET", list, &[("If-None-Match", &tag)], b"");
            assert_eq!(again.status, 304, "{list}");
        }
        // A change to the store changes the list's tag.
        let list_tag = server
            .get("/package/list")
            .header("ETag")
            .unwrap()
            .to_string();
        server.upload(&make_package(
            dir.path(),
            "io.example.second",
            &[],
            &["games"],
            "1",
            None,
        ));
        let changed = server.request("GET", "/package/list", &[("If-None-Match", &list_tag)], b"");
        assert_eq!(changed.status, 200);
        assert_eq!(changed.json().as_array().unwrap().len(), 2);

        // The same tag and bytes after a restart.
        drop(server);
        let server = Server::start(dir.path(), &args);
        let after = server.get(target);
        assert_eq!(after.header("ETag"), Some(etag.as_str()));
        assert!(
            after.body == whole.body,
            "signed {signed}: other bytes after a restart"
        );
        let list_after = server.get("/package/list");
        assert_eq!(list_after.header("ETag"), changed.header("ETag"));
    }
}

/// `method target` over HTTPS, trusting `ca`, with `headers`; the whole answer.
fn https(
    port: u16,
    ca: &Path,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector.set_ca_file(ca).unwrap();
    let connector = connector.build();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut tls = connector
        .connect("localhost", tcp)
        .expect("a TLS handshake");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(body).unwrap();
    let mut raw = Vec::new();
    // A server that closes without close_notify would be an error here: it must send one.
    tls.read_to_end(&mut raw).expect("a clean TLS close");
    parse_response(&raw)
}

fn has_curl() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn serves_https_with_its_certificate() {
    let certs = certificates();
    let (cert, key, ca, p12) = (
        certs.tls_cert(),
        certs.tls_key(),
        certs.ca(),
        certs.store_p12(),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut args = signing_args(&p12);
    args.extend([
        &"--tls-cert" as &dyn AsRef<std::ffi::OsStr>,
        &cert,
        &"--tls-key",
        &key,
    ]);
    let server = Server::start(dir.path(), &args);
    let lines = server.lines.all();
    let tls_line = format!("> TLS: {}", cert.display());
    let at = lines.iter().position(|l| *l == tls_line);
    let listening = lines
        .iter()
        .position(|l| l.starts_with("> HTTP server listening on: 127.0.0.1:"));
    assert!(at.is_some() && at < listening, "{lines:#?}");

    let source = package(dir.path(), "io.example.secure");
    let bytes = std::fs::read(&source).unwrap();
    let uploaded = https(server.port, &ca, "PUT", "/package/upload", &[], &bytes);
    assert_eq!(uploaded.json()["result"], "added");
    let target = "/package/download?id=io.example.secure&hardware-id=tls1";
    let download = https(server.port, &ca, "GET", target, &[], b"");
    assert_eq!(download.status, 200);
    let info = read_bytes(&download.body).expect("the signed download reads back");
    assert!(info.store_signature.is_some());
    // A range across the signature tail, over TLS too.
    let total = download.body.len();
    let range = format!("bytes={}-", total - 500);
    let tail = https(server.port, &ca, "GET", target, &[("Range", &range)], b"");
    assert_eq!(tail.status, 206);
    assert!(tail.body == download.body[total - 500..]);

    if has_curl() {
        let file = dir.path().join("curl.ampkg");
        let url = format!("https://localhost:{}{target}", server.port);
        // Cut at a third, then resumed with -C -, as over plain HTTP.
        std::fs::write(&file, &download.body[..total / 3]).unwrap();
        let status = std::process::Command::new("curl")
            .args(["-s", "-f", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", server.port)])
            .args(["-C", "-", "-o"])
            .arg(&file)
            .arg(&url)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(std::fs::read(&file).unwrap() == download.body);
    } else {
        skip("curl is not installed: HTTPS with curl not tested");
    }

    // Plain HTTP on the TLS port gets no answer it could mistake, and harms no one.
    let mut plain = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    plain
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"));
    let hello = https(
        server.port,
        &ca,
        "GET",
        "/hello?project-id=PROJECT",
        &[],
        b"",
    );
    assert_eq!(hello.json()["status"], "ok");
}

#[test]
fn refuses_to_start_with_a_broken_tls_setup() {
    let certs = certificates();
    let (cert, key, ca) = (certs.tls_cert(), certs.tls_key(), certs.ca());
    let dir = tempfile::tempdir().unwrap();
    let exits =
        |args: &[&dyn AsRef<std::ffi::OsStr>]| Server::start_failing(dir.path(), args).wait_exit();
    let (code, stderr) = exits(&[&"--tls-cert", &cert]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
    // The CA's certificate does not go with the server's key.
    let (code, stderr) = exits(&[&"--tls-cert", &ca, &"--tls-key", &key]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    let missing = dir.path().join("missing.pem");
    let (code, stderr) = exits(&[&"--tls-cert", &missing, &"--tls-key", &key]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("missing.pem"), "{stderr}");
    let (code, stderr) = exits(&[&"--tls-cert", &key, &"--tls-key", &cert]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a PEM certificate"), "{stderr}");
}

#[test]
fn writes_need_the_upload_token_and_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-t0ken-0123\n").unwrap();
    let package = std::fs::read(package(dir.path(), "io.example.guarded")).unwrap();
    let data = dir.path().join("data");
    for args in [
        vec![
            &"--upload-token" as &dyn AsRef<std::ffi::OsStr>,
            &"s3cret-t0ken-0123",
        ],
        vec![&"--upload-token-file", &token_file],
    ] {
        let server = Server::start(&data, &args);
        for authorization in [None, Some("Bearer wrong"), Some("Basic czNjcmV0LXQwa2Vu")] {
            let headers: Vec<(&str, &str)> = authorization
                .iter()
                .map(|value| ("Authorization", *value))
                .collect();
            let refused = server.request("PUT", "/package/upload", &headers, &package);
            assert_eq!(refused.status, 401, "{authorization:?}");
            assert_eq!(
                refused.header("WWW-Authenticate").map(|v| &v[..6]),
                Some("Bearer")
            );
            assert_eq!(refused.json()["status"], "fail");
            assert!(refused.json()["message"].is_string());
            let removal = server.request(
                "POST",
                "/package/remove",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Authorization", authorization.unwrap_or("Bearer")),
                ],
                b"id=io.example.guarded",
            );
            assert_eq!(removal.status, 401);
        }
        assert_eq!(server.list(""), serde_json::json!([]), "nothing changed");
        let bearer = [("Authorization", "Bearer s3cret-t0ken-0123")];
        let added = server.request("PUT", "/package/upload", &bearer, &package);
        assert_eq!(added.status, 200);
        assert_eq!(added.json()["result"], "added");
        // Reads stay open.
        assert_eq!(server.list("").as_array().unwrap().len(), 1);
        assert_eq!(
            server.get("/package/download?id=io.example.guarded").status,
            200
        );
        let removed = server.request(
            "POST",
            "/package/remove?id=io.example.guarded",
            &[("Authorization", "bearer s3cret-t0ken-0123")],
            b"",
        );
        assert_eq!(
            removed.json(),
            serde_json::json!({"status": "ok", "removed": 1})
        );
        let lines = server.lines.all();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("x failed   upload from 127.0.0.1:")),
            "{lines:#?}"
        );
    }
    // From the config file, written by --cc, which keeps it private.
    let server = Server::start(&data, &[&"--upload-token", &"s3cret-t0ken-0123", &"--cc"]);
    drop(server);
    let config = data.join("amps-config.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("uploadToken: 's3cret-t0ken-0123'"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let server = Server::start(&data, &[]);
    let refused = server.request("PUT", "/package/upload", &[], &package);
    assert_eq!(refused.status, 401);
    drop(server);
    // A bad token on the command line is an argument error like any other: exit 1, the hint.
    let (code, stderr) =
        Server::start_failing(&data, &[&"--upload-token", &"has space"]).wait_exit();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--upload-token"), "{stderr}");
    assert!(stderr.contains("--help"), "{stderr}");
}

#[test]
fn logs_one_line_per_request_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[&"--log-requests"]);
    let package = package(dir.path(), "io.example.logged");
    server.upload(&package);
    let download = server.get("/package/download?id=io.example.logged&hardware-id=hw%201");
    let lines = server.lines.wait_for("the download's log line", |lines| {
        lines.iter().any(|l| l.contains(" GET /package/download?"))
    });
    let line = lines
        .iter()
        .find(|l| l.contains(" GET /package/download?"))
        .unwrap();
    let fields: Vec<&str> = line.split(' ').collect();
    // 2026-12-01T11:05:50.123Z 127.0.0.1:port GET /path?query 200 N bytes D ms package F hardware-id H
    let time = fields[0];
    assert!(
        time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T" && &time[19..20] == ".",
        "{line}"
    );
    assert!(fields[1].starts_with("127.0.0.1:"), "{line}");
    assert_eq!(fields[2], "GET");
    assert_eq!(
        fields[3],
        "/package/download?id=io.example.logged&hardware-id=hw%201"
    );
    assert_eq!(fields[4], "200");
    assert_eq!(fields[5], download.body.len().to_string());
    assert_eq!(fields[6], "bytes");
    assert!(
        fields[7].parse::<f64>().is_ok() && fields[8] == "ms",
        "{line}"
    );
    assert_eq!(
        &fields[9..],
        [
            "package",
            "io.example.logged_all.ampkg",
            "hardware-id",
            "hw",
            "1"
        ]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" PUT /package/upload 200 ")),
        "{lines:#?}"
    );
    // Off by default: the console stays Qt's.
    drop(server);
    let server = Server::start(dir.path(), &[]);
    server.get("/package/list");
    server.get("/hello");
    assert!(
        !server.lines.all().iter().any(|l| l.contains(" GET /")),
        "{:#?}",
        server.lines.all()
    );
}

/// `make test-long`: a TLS handshake that trickles (a record header, then a byte every 2 s)
/// is cut at the first-request deadline (20 s), while others are served meanwhile.
#[test]
#[ignore = "takes 20 s (the first-request deadline): make test-long"]
fn a_trickled_tls_handshake_is_cut_at_its_deadline() {
    let certs = certificates();
    let (cert, key, ca) = (certs.tls_cert(), certs.tls_key(), certs.ca());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[&"--tls-cert", &cert, &"--tls-key", &key]);
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    slow.write_all(b"\x16\x03\x01\x02\x00").unwrap();
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 64];
    let closed = loop {
        // Others are served while it trickles.
        let hello = https(
            server.port,
            &ca,
            "GET",
            "/hello?project-id=PROJECT",
            &[],
            b"",
        );
        assert_eq!(hello.json()["status"], "ok");
        match slow.read(&mut buffer) {
            Ok(0) => break true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            _ => {}
        }
        if started.elapsed() > std::time::Duration::from_secs(90) {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
        if slow.write_all(b"\x01").is_err() {
            break true;
        }
    };
    assert!(closed, "a trickled handshake was still open after 90 s");
}
