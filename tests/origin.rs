//! Browsers next door: requests whose `Host` is not a name the server answers to (DNS
//! rebinding) are refused, and so are writes a browser says come from another origin; curl,
//! scripts and Qt's installer, which send neither, are unaffected.

use crate::util::*;

fn with_host(server: &Server, method: &str, target: &str, host: &str) -> HttpResponse {
    let raw = raw_http(
        server.port,
        format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    );
    parse_response(&raw)
}

#[test]
fn only_known_host_names_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[&"--allowed-hosts", &"store.lab, Other.Lab"]);
    let port = server.port;
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("store.lab:{port}"),
        "other.lab".to_string(),
        // A CI service's name (no dot): nothing but local configuration resolves it.
        format!("packages:{port}"),
    ] {
        let answer = with_host(&server, "GET", "/package/list", &host);
        assert_eq!(answer.status, 200, "{host}");
    }
    for (method, target) in [
        ("GET", "/package/list"),
        ("GET", "/"),
        ("POST", "/package/remove?id=x"),
        ("GET", "/hello?project-id=PROJECT"),
    ] {
        let answer = with_host(&server, method, target, &format!("attacker.example:{port}"));
        assert_eq!(answer.status, 421, "{method} {target}");
        assert_eq!(answer.json()["status"], "fail");
        let message = answer.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains("--allowed-hosts"), "{message}");
    }
    // HTTP/1.0 without a Host is answered.
    let raw = raw_http(port, b"GET /hello?project-id=PROJECT HTTP/1.0\r\n\r\n");
    assert_eq!(parse_response(&raw).status, 200);
}

#[test]
fn listening_beyond_loopback_answers_ip_literals_and_the_machine_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[&"--la", &"0.0.0.0:0"]);
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for host in [
        "192.0.2.7:8020",
        "[2001:db8::1]",
        machine.trim(),
        "localhost",
    ] {
        assert_eq!(
            with_host(&server, "GET", "/package/list", host).status,
            200,
            "{host}"
        );
    }
    assert_eq!(
        with_host(&server, "GET", "/package/list", "attacker.example").status,
        421
    );
}

#[test]
fn writes_from_another_origin_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let package = make_package(dir.path(), "io.example.kept", &[], &[], "1", None);
    let bytes = std::fs::read(&package).unwrap();
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    for headers in [
        vec![("Origin", "http://attacker.example")],
        vec![("Origin", "null")],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Sec-Fetch-Site", "same-site")],
    ] {
        let upload = server.request("PUT", "/package/upload", &headers, &bytes);
        assert_eq!(upload.status, 403, "{headers:?}");
        assert_eq!(upload.json()["status"], "fail");
        assert!(
            server.list("").as_array().unwrap().is_empty(),
            "{headers:?}"
        );
    }
    server.upload(&package);
    for headers in [
        vec![form[0], ("Origin", "http://attacker.example")],
        vec![form[0], ("Sec-Fetch-Site", "cross-site")],
    ] {
        let removal = server.request("POST", "/package/remove", &headers, b"id=io.example.kept");
        assert_eq!(removal.status, 403, "{headers:?}");
        // The query form too, without a body.
        let query = server.request(
            "POST",
            "/package/remove?id=io.example.kept",
            &headers[1..],
            b"",
        );
        assert_eq!(query.status, 403, "{headers:?}");
    }
    assert_eq!(server.list("").as_array().unwrap().len(), 1);
    // The server's own page (same origin) may remove.
    let own = format!("http://127.0.0.1:{}", server.port);
    let removal = server.request(
        "POST",
        "/package/remove",
        &[form[0], ("Origin", &own), ("Sec-Fetch-Site", "same-origin")],
        b"id=io.example.kept",
    );
    assert_eq!(removal.json()["removed"], 1);
}
