//! A console nobody reads: the server's stdout is a pipe the test stops reading. Requests,
//! uploads, removals and new connections must go on, lines are dropped and counted, and the
//! server stops on SIGTERM.

use crate::util::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A server whose stdout the test reads only when it wants to.
struct Unread {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    port: u16,
}

impl Unread {
    fn start(data: &std::path::Path) -> Unread {
        let mut child = Command::new(binary("appman-package-server"))
            .arg("--dd")
            .arg(data)
            .args(["--la", "127.0.0.1:0", "--log-requests"])
            .env_remove("AM_FORCE_COLOR_OUTPUT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let port = loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "no listening line"
            );
            if let Some(port) = line.trim().strip_prefix("> HTTP server listening on: ") {
                break port.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        Unread {
            child,
            stdout: Some(stdout),
            port,
        }
    }

    /// Many console lines: removals of long ids that match nothing (a heading, a no-match
    /// line and a request log line of 4 KiB each), far more than a pipe and the console's
    /// queue hold.
    fn flood(&self) {
        let id = "x".repeat(4000);
        for n in 0..1500 {
            let answer = http(
                self.port,
                "POST",
                &format!("/package/remove?id={id}{n}"),
                &[],
                b"",
            );
            assert_eq!(answer.status, 200);
        }
    }

    /// Wait until the process has ended, polling; false if it is still running after a
    /// minute.
    fn ended(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_console_nobody_reads_never_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Unread::start(dir.path());
    server.flood();
    // Everything still works: new connections, uploads (whose lines are written under the
    // store's lock), removals, and the accept thread.
    let package = make_package(dir.path(), "io.example.unread", &[], &[], "1", None);
    let upload = http(
        server.port,
        "PUT",
        "/package/upload",
        &[],
        &std::fs::read(&package).unwrap(),
    );
    assert_eq!(upload.json()["status"], "ok");
    let hello = http(server.port, "GET", "/hello?project-id=PROJECT", &[], b"");
    assert_eq!(hello.status, 200);
    let removed = http(
        server.port,
        "POST",
        "/package/remove",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"id=io.example.unread",
    );
    assert_eq!(removed.json()["removed"], 1);
    // SIGTERM stops it while stdout is still not read.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(server.ended(), "SIGTERM did not stop the server");
}

#[test]
fn dropped_console_lines_are_counted_once_stdout_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Unread::start(dir.path());
    server.flood();
    // Read again, in the background; the next lines say what was lost.
    let mut stdout = server.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    http(server.port, "GET", "/hello?project-id=PROJECT", &[], b"");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(server.ended());
    let text = reader.join().unwrap();
    let dropped = text
        .lines()
        .find(|l| l.ends_with("console lines dropped: stdout was not read"))
        .unwrap_or_else(|| panic!("no line about dropped lines in {} bytes", text.len()));
    let count: u64 = dropped
        .trim_start_matches("> ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(count > 100, "{dropped}");
    assert!(
        text.contains("GET /hello?project-id=PROJECT 200"),
        "the log goes on"
    );
}
