//! Drop-in behaviour: what Qt's own test, Qt clients and a new user see, where the first
//! version differed from Qt's server (empty 404 bodies, `+` in queries, a missing data
//! directory, `any`, error texts, start-up and shutdown, argument errors).

use crate::util::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;

fn sample_package(dir: &std::path::Path) -> std::path::PathBuf {
    make_package(
        dir,
        "io.example.dropin",
        &[("en", "Drop-in")],
        &["c"],
        "1",
        None,
    )
}

#[test]
fn api_404_answers_have_an_empty_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for target in [
        "/package/icon?id=nothing",
        "/package/download?id=nothing",
        "/no/such/path",
    ] {
        let answer = server.get(target);
        assert_eq!(answer.status, 404, "{target}");
        assert!(answer.body.is_empty(), "{target}: {}", answer.text());
    }
}

#[test]
fn a_plus_in_a_query_is_a_plus() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates();
    let server = Server::start(
        dir.path(),
        &[
            &"--pi",
            &"a+b",
            &"--sc",
            &certs.store_p12(),
            &"--sp",
            &P12_PASSWORD,
        ],
    );
    assert_eq!(
        server.get("/hello?project-id=a+b").json(),
        json!({"status": "ok"})
    );
    // Form bodies keep form decoding, where + is a space.
    assert_eq!(
        server.post_form("/hello", "project-id=a+b").json(),
        json!({"status": "incompatible-project-id"})
    );
    let package = sample_package(dir.path());
    server.upload(&package);
    let signed = server.get("/package/download?id=io.example.dropin&hardware-id=dev+1");
    let info = read_bytes(&signed.body).unwrap();
    let signature = info.store_signature.unwrap();
    let trust = amps::package::signature::TrustStore::from_files(&[certs.ca()]).unwrap();
    let bound = |hardware_id: &str| {
        let content = amps::package::signature::store_content(&info.digest, hardware_id).unwrap();
        trust.verify(&signature, content.as_bytes()).is_ok()
    };
    assert!(bound("dev+1"), "not signed for 'dev+1'");
    assert!(!bound("dev 1"));
}

#[test]
fn a_missing_data_directory_is_created_and_any_listens_on_ipv6_and_ipv4() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a/b/data");
    let server = Server::start(&data, &[&"--la", &"any:0"]);
    assert!(data.join(".packages").is_dir());
    assert!(
        server
            .lines
            .all()
            .iter()
            .any(|l| l.starts_with("> HTTP server listening on: [::]:"))
    );
    for address in ["127.0.0.1", "[::1]"] {
        let mut stream = TcpStream::connect(format!("{address}:{}", server.port)).unwrap();
        stream
            .write_all(b"GET /hello?project-id=PROJECT HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{address}: {answer}");
    }
}

#[test]
fn create_config_writes_only_qt_fields_unless_ours_were_given() {
    let qt = tempfile::tempdir().unwrap();
    drop(Server::start(qt.path(), &[&"--cc", &"--pi", &"QT"]));
    let text = std::fs::read_to_string(qt.path().join("amps-config.yaml")).unwrap();
    assert!(text.contains("projectId: 'QT'\n"), "{text}");
    assert!(!text.contains("max"), "{text}");
    let ours = tempfile::tempdir().unwrap();
    drop(Server::start(
        ours.path(),
        &[
            &"--cc",
            &"--max-entries",
            &"50",
            &"--max-package-size",
            &"1G",
        ],
    ));
    let text = std::fs::read_to_string(ours.path().join("amps-config.yaml")).unwrap();
    assert!(text.contains("maxEntries: 50\n"), "{text}");
    assert!(text.contains("maxPackageSize: 1073741824\n"), "{text}");
}

#[test]
fn uploads_get_qt_answers_for_the_usual_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let package = std::fs::read(sample_package(dir.path())).unwrap();
    // curl --data-binary POSTs, as a form.
    let posted = server.request(
        "POST",
        "/package/upload",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &package,
    );
    assert_eq!(posted.status, 405);
    assert_eq!(posted.header("Allow"), Some("PUT"));
    assert!(
        posted.text().contains("upload packages with PUT"),
        "{}",
        posted.text()
    );
    let empty = server.request("PUT", "/package/upload", &[], b"");
    assert_eq!(empty.status, 200);
    assert_eq!(
        empty.json(),
        json!({"status": "fail", "message": "wrong package format"})
    );
    let text = server.request("PUT", "/package/upload", &[], b"plain text");
    assert_eq!(
        text.json(),
        json!({"status": "fail", "message": "wrong package format"})
    );
    server.lines.wait_for("the failed upload's line", |lines| {
        lines.iter().any(|l| {
            l.starts_with(" x failed   upload from 127.0.0.1:")
                && l.ends_with("(wrong package format)")
        })
    });
    let removed = server.post_form("/package/remove", "id=io.example.none");
    assert_eq!(removed.json(), json!({"status": "fail", "removed": 0}));
    server
        .lines
        .wait_for_line(" = skipping io.example.none [<any>] (no match)", 0);
}

#[test]
fn head_is_answered_on_every_get_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.upload(&sample_package(dir.path()));
    for target in [
        "/hello",
        "/package/list",
        "/category/list",
        "/package/icon?id=io.example.dropin",
        "/package/download?id=io.example.dropin",
    ] {
        let get = server.get(target);
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        write!(
            stream,
            "HEAD {target} HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200"), "{target}: {text}");
        assert!(text.ends_with("\r\n\r\n"), "{target}: a body after HEAD");
        let length = format!("Content-Length: {}\r\n", get.body.len());
        assert!(text.contains(&length), "{target}: {text}");
    }
}

#[test]
fn start_up_failures_print_nothing_that_implies_success_and_leave_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), &[]);
    let other = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{}", first.port);
    let mut failing = Server::start_failing(other.path(), &[&"--la", &address]);
    let code = failing.child.wait().unwrap().code();
    assert_eq!(code, Some(2));
    assert!(failing.lines.all().is_empty(), "{:?}", failing.lines.all());
    assert!(!other.path().join(".lock").exists());
    drop(first);

    // SIGHUP and SIGQUIT stop like SIGTERM, and the lock goes with the server.
    for signal in [libc::SIGHUP, libc::SIGQUIT] {
        let server = Server::start(dir.path(), &[]);
        assert!(dir.path().join(".lock").exists());
        server.signal(signal);
        let (code, _) = server.wait_exit();
        assert_eq!(code, 0, "signal {signal}");
        assert!(!dir.path().join(".lock").exists(), "signal {signal}");
    }
}

#[test]
fn an_unwritable_package_directory_stops_the_start() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("needs root to run the server as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".packages")).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    // .packages/ stays root's, 0755: the server, as nobody, cannot write there.
    let mut server = Server::start_failing_as_user(dir.path(), &[], 65534);
    let code = server.child.wait().unwrap().code();
    assert_eq!(code, Some(2));
    let (_, stderr) = server.wait_exit();
    assert!(
        stderr.contains("the package directory") && stderr.contains("is not writable"),
        "{stderr}"
    );
}

#[test]
fn argument_and_config_errors_name_the_option_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) =
        Server::start_failing(dir.path(), &[&"--la", &"localhost:99999"]).wait_exit();
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "ERROR: --la localhost:99999: port out of range 0-65535\nRun 'appman-package-server --help' to see the options.\n"
    );
    let (code, stderr) =
        Server::start_failing(dir.path(), &[&"--max-package-size", &"lots"]).wait_exit();
    assert_eq!(code, 1);
    assert!(stderr.starts_with("ERROR: --max-package-size lots: not a positive number"));
    let (code, stderr) = Server::start_failing(dir.path(), &[&"--sp", &"secret"]).wait_exit();
    assert_eq!(code, 1);
    assert!(stderr.contains("--sp"), "{stderr}");
    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = Server::spawn_in(empty.path(), &[]).wait_exit();
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("Usage: appman-package-server"),
        "{stderr}"
    );

    let config = dir.path().join("amps-config.yaml");
    std::fs::write(
        &config,
        "formatType: amps-configuration\nformatVersion: 1\n---\nprojectId: x\nlistenAddress: [oops\n",
    )
    .unwrap();
    let (code, stderr) = Server::start_failing(dir.path(), &[]).wait_exit();
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with(&format!(
            "ERROR: Failed to parse config file {}:",
            config.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 5") && stderr.contains("5 | listenAddress: [oops"),
        "{stderr}"
    );
}

#[test]
fn a_package_deleted_under_the_server_is_dropped_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.upload(&sample_package(dir.path()));
    std::fs::remove_file(dir.path().join(".packages/io.example.dropin_all.ampkg")).unwrap();
    let answer = server.get("/package/download?id=io.example.dropin");
    assert_eq!(answer.status, 404);
    server.lines.wait_for_line(
        " x failed   io.example.dropin_all.ampkg (the package file was deleted from .packages/: it is no longer listed)",
        0,
    );
    assert_eq!(server.list(""), json!([]));
}

/// What Qt's clients and scripts see, as Qt's server writes it: keys sorted as `QJsonObject`
/// writes them, categories sorted, percent-encoded unreserved characters in paths decoded,
/// an empty icon is no icon.
#[test]
fn answers_read_exactly_as_qts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let package = make_package(
        dir.path(),
        "io.example.sorted",
        &[("en", "Sorted")],
        &["samples", "demo"],
        "1.0",
        None,
    );
    let body = std::fs::read(&package).unwrap();
    let upload = server.request("PUT", "/package/upload", &[], &body);
    assert_eq!(
        upload.text(),
        r#"{"architecture":"all","id":"io.example.sorted","result":"added","status":"ok"}"#
    );
    let list = server.get("/package/list").text();
    assert!(
        list.starts_with(r#"[{"architecture":"","categories":["demo","samples"],"descriptions":"#),
        "{list}"
    );
    assert_eq!(
        server.get("/hel%6Co?project-id=PROJECT").text(),
        r#"{"status":"ok"}"#
    );
    assert_eq!(server.get("/package/%6Cist").text(), list);
    for escaped in ["/package%2Flist", "/hello%00", "/%2E%2E/hello", "/hello%2F"] {
        assert_eq!(server.get(escaped).status, 404, "{escaped}");
    }
    let no_icon = raw_package("io.example.blank", "", b"", "");
    server.request("PUT", "/package/upload", &[], &no_icon);
    let icon = server.get("/package/icon?id=io.example.blank");
    assert_eq!(icon.status, 404);
    assert!(icon.body.is_empty());
    let removed = server.post_form("/package/remove", "id=io.example.blank");
    assert_eq!(removed.text(), r#"{"removed":1,"status":"ok"}"#);
    let refused = server.request("PUT", "/package/upload", &[], b"");
    assert_eq!(
        refused.text(),
        r#"{"message":"wrong package format","status":"fail"}"#
    );
}

/// A start that fails leaves no data directory behind; a store certificate that needs a
/// password says which option gives it.
#[test]
fn a_failed_start_creates_no_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new/data");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_address = format!("127.0.0.1:{}", busy.local_addr().unwrap().port());
    let missing = dir.path().join("missing.p12");
    let certs = certificates();
    let p12 = certs.store_p12();
    let attempts: [Vec<&dyn AsRef<std::ffi::OsStr>>; 4] = [
        vec![&"--sc", &missing],
        vec![&"--la", &busy_address],
        vec![&"--upload-token-file", &missing],
        vec![&"--sc", &p12],
    ];
    for args in attempts {
        let mut command = std::process::Command::new(binary("appman-package-server"));
        command
            .arg("--dd")
            .arg(&data)
            .args(args.iter().map(|a| a.as_ref()));
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_ne!(output.status.code(), Some(0), "{stderr}");
        assert!(!dir.path().join("new").exists(), "{stderr}");
    }
    // The password option is named when it is missing.
    let output = std::process::Command::new(binary("appman-package-server"))
        .arg("--dd")
        .arg(&data)
        .arg("--sc")
        .arg(&p12)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is protected by a password: give it with --sp"),
        "{stderr}"
    );
    drop(busy);
}
