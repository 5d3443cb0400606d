//! Memory in bytes, whatever is uploaded or requested: large answers (the page, the lists)
//! are built once per store change and shared by every connection that asked for them, even
//! when none of them reads; the store itself is bounded in packages and metadata.

use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;

/// A connection that asks for `target` and reads one byte of the answer (so the server is
/// sending it), then nothing more.
fn stalled(port: u16, target: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(stream, "GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"H");
    stream
}

#[test]
fn clients_that_never_read_share_one_copy_of_each_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // 12 MB of descriptions: the list and the page are each larger than what the kernel's
    // socket buffers take, so a connection that does not read holds its answer.
    let description = format!("description: {{en: '{}'}}\n", "d".repeat(200 * 1024));
    for i in 0..60 {
        let package = raw_package(&format!("io.example.wordy{i:02}"), &description, b"x", "");
        let answer = server.request("PUT", "/package/upload", &[], &package);
        assert_eq!(answer.json()["status"], "ok", "{}", answer.text());
    }
    let list = server.get("/package/list");
    assert!(list.body.len() > 12_000_000);
    let before = server.rss_kib();
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(stalled(server.port, "/package/list"));
        held.push(stalled(server.port, "/"));
        held.push(stalled(server.port, "/category/list"));
    }
    let after = server.rss_kib();
    let growth_mib = after.saturating_sub(before) / 1024;
    eprintln!("36 connections holding 12 MB answers: RSS {before} KiB -> {after} KiB");
    // One copy per answer, whatever the number of connections (a copy each: 300 MiB more).
    assert!(growth_mib < 48, "RSS grew by {growth_mib} MiB");
    // Everyone else is still answered, from the same copy.
    assert!(server.get("/package/list").body == list.body);
    drop(held);
}

#[test]
fn the_store_is_bounded_in_packages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[&"--max-packages", &"2"]);
    for i in 0..2 {
        let package = raw_package(&format!("io.example.p{i}"), "", b"x", "");
        let answer = server.request("PUT", "/package/upload", &[], &package);
        assert_eq!(answer.json()["status"], "ok");
    }
    let third = raw_package("io.example.p2", "", b"x", "");
    let answer = server.request("PUT", "/package/upload", &[], &third);
    assert_eq!(answer.json()["status"], "fail");
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("--max-packages"), "{message}");
    // Replacing one of the two is no new package.
    let replacement = raw_package("io.example.p1", "version: '2'\n", b"y", "");
    let answer = server.request("PUT", "/package/upload", &[], &replacement);
    assert_eq!(answer.json()["result"], "updated", "{}", answer.text());
    assert_eq!(server.list("").as_array().unwrap().len(), 2);
}

#[test]
fn the_store_is_bounded_in_listed_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let description = format!("description: {{en: '{}'}}\n", "d".repeat(250 * 1024));
    let mut refused = None;
    for i in 0..80 {
        let package = raw_package(&format!("io.example.full{i:02}"), &description, b"x", "");
        let answer = server.request("PUT", "/package/upload", &[], &package);
        if answer.json()["status"] == "fail" {
            refused = Some((i, answer.json()["message"].as_str().unwrap().to_string()));
            break;
        }
    }
    let (count, message) = refused.expect("refused before 20 MB of descriptions");
    assert!(count >= 60, "{count} accepted");
    assert!(message.contains("16777216 bytes"), "{message}");
    assert_eq!(server.list("").as_array().unwrap().len(), count);
}

/// Icons kept in memory stay within 16 MiB for the whole store: beyond, they are read from
/// their packages, byte for byte the same, and without the warning meant for icons Qt refuses.
#[test]
fn icons_beyond_the_memory_bound_are_read_from_their_packages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let icon = |i: usize| {
        let mut bytes = noise(250 * 1024);
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        bytes
    };
    let before = server.rss_kib();
    for i in 0..140 {
        let package = raw_package(&format!("io.example.pictured{i:03}"), "", &icon(i), "");
        let answer = server.request("PUT", "/package/upload", &[], &package);
        assert_eq!(answer.json()["status"], "ok", "{}", answer.text());
    }
    // 140 icons of 250 KiB: 35 MB, of which 16 MiB are kept.
    let growth_mib = server.rss_kib().saturating_sub(before) / 1024;
    eprintln!("140 icons of 250 KiB: RSS grew by {growth_mib} MiB");
    assert!(growth_mib < 28, "RSS grew by {growth_mib} MiB");
    for i in [0, 70, 139] {
        let got = server.get(&format!("/package/icon?id=io.example.pictured{i:03}"));
        assert_eq!(got.status, 200);
        assert!(got.body == icon(i), "icon {i}");
    }
    assert!(
        !server
            .lines
            .all()
            .iter()
            .any(|l| l.contains("refuses icons")),
        "no icon here is too large for Qt's installer"
    );
}
