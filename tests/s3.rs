//! Replicas on S3-compatible object storage, against a real 3-node Garage cluster: uploads
//! through one replica listed and downloaded (unsigned and signed) through another, removals
//! seen everywhere, a replica started later building the same index from records only, a
//! replica killed during an upload leaving nothing half-visible, a storage node lost during
//! downloads, the object store stopped and back, and 100 uploads through three replicas.
//! Without a Garage build (make garage) every test here is a named skip.

use crate::garage::{Garage, KEY_ID, REGION};
use crate::util::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A replica of the store `prefix` in `garage`, talking to node `node`.
fn replica(
    garage: &Garage,
    data: &Path,
    prefix: &str,
    node: usize,
    extra: &[&dyn AsRef<std::ffi::OsStr>],
) -> Server {
    let store = format!("s3://{}/{prefix}", crate::garage::BUCKET);
    let endpoint = garage.endpoint(node);
    let secret = garage.secret_file();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"--store",
        &store,
        &"--s3-endpoint",
        &endpoint,
        &"--s3-region",
        &REGION,
        &"--s3-access-key-id",
        &KEY_ID,
        &"--s3-secret-access-key-file",
        &secret,
    ];
    args.extend_from_slice(extra);
    Server::start(data, &args)
}

fn ids(server: &Server) -> Vec<String> {
    let list = server.list("");
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn package(dir: &Path, id: &str, size: usize) -> PathBuf {
    make_package(dir, id, &[("en", id)], &[], "1", Some(&noise(size)))
}

#[test]
fn replicas_share_one_store() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&garage, &dir.path().join("a"), "share", 0, &[]);
    let b = replica(&garage, &dir.path().join("b"), "share", 1, &[]);
    assert!(
        b.lines
            .all()
            .iter()
            .any(|l| l.starts_with("> Store: s3://amps/share/")),
        "{:?}",
        b.lines.all()
    );
    let etag_before = b.get("/package/list").header("ETag").unwrap().to_string();
    let first = package(dir.path(), "io.example.first", 300_000);
    let big = package(dir.path(), "io.example.big", 20 << 20);
    for p in [&first, &big] {
        assert_eq!(a.upload(p)["status"], "ok");
    }
    wait_until("B listing both uploads", || {
        ids(&b) == ["io.example.big", "io.example.first"]
    });
    assert_ne!(b.get("/package/list").header("ETag").unwrap(), etag_before);
    for (id, file) in [("io.example.first", &first), ("io.example.big", &big)] {
        let download = b.get(&format!("/package/download?id={id}"));
        assert_eq!(download.status, 200);
        assert!(
            download.body == std::fs::read(file).unwrap(),
            "{id} differs"
        );
        // Ranges too.
        let part = b.request(
            "GET",
            &format!("/package/download?id={id}"),
            &[("Range", "bytes=100-199")],
            b"",
        );
        assert_eq!(
            (part.status, &part.body[..]),
            (206, &std::fs::read(file).unwrap()[100..200])
        );
    }
    // A signed replica on the same store.
    let certs = certificates();
    let store_p12 = certs.store_p12();
    let signed = replica(
        &garage,
        &dir.path().join("c"),
        "share",
        2,
        &[&"--sc", &store_p12, &"--sp", &P12_PASSWORD],
    );
    for hardware_id in ["", "device-1"] {
        let download = signed.get(&format!(
            "/package/download?id=io.example.big&hardware-id={hardware_id}"
        ));
        assert_eq!(download.status, 200);
        let info = read_bytes(&download.body).unwrap();
        assert_eq!(info.id, "io.example.big");
        assert!(crate::server::verify_store(&info, &certs.ca(), hardware_id));
    }
    // Removal through B is gone from A.
    let removed = b.post_form("/package/remove", "id=io.example.first");
    assert_eq!(removed.json()["removed"], 1);
    wait_until("A dropping the removed package", || {
        ids(&a) == ["io.example.big"]
    });
    // A replica started later builds the same index from the records alone: with the
    // packages' objects gone, it still lists what the records say.
    let client = garage.client("share/");
    for object in client.list("packages/").unwrap() {
        client.delete(&object.name).unwrap();
    }
    let later = replica(&garage, &dir.path().join("d"), "share", 0, &[]);
    assert_eq!(ids(&later), ["io.example.big"]);
}

#[test]
fn a_replica_killed_during_an_upload_leaves_nothing_half_visible() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut a = replica(&garage, &dir.path().join("a"), "killed", 0, &[]);
    let big = std::fs::read(package(dir.path(), "io.example.killed", 30 << 20)).unwrap();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    let head = format!(
        "PUT /package/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&big[..big.len() / 2]).unwrap();
    a.child.kill().unwrap();
    let _ = a.child.wait();
    let b = replica(&garage, &dir.path().join("b"), "killed", 1, &[]);
    assert_eq!(ids(&b), Vec::<String>::new());
    assert!(garage.client("killed/").list("index/").unwrap().is_empty());
}

#[test]
fn a_lost_storage_node_fails_no_download() {
    let Some(mut garage) = Garage::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&garage, &dir.path().join("a"), "lost", 0, &[]);
    // B talks to the node that is killed, and to another one when that one does not answer.
    let endpoints = format!("{},{}", garage.endpoint(2), garage.endpoint(1));
    let b = replica(
        &garage,
        &dir.path().join("b"),
        "lost",
        2,
        &[&"--s3-endpoint", &endpoints],
    );
    let file = package(dir.path(), "io.example.lost", 4 << 20);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(a.upload(&file)["status"], "ok");
    wait_until("B listing the package", || ids(&b) == ["io.example.lost"]);
    for round in 0..12 {
        if round == 3 {
            garage.kill_node(2);
        }
        for server in [&a, &b] {
            let download = server.get("/package/download?id=io.example.lost");
            assert_eq!(download.status, 200, "round {round}");
            assert!(
                download.body == bytes,
                "round {round}: the download differs"
            );
        }
    }
}

#[test]
fn the_object_store_stopped_is_a_server_fault_and_the_server_recovers() {
    let Some(mut garage) = Garage::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&garage, &dir.path().join("a"), "stopped", 0, &[]);
    let file = package(dir.path(), "io.example.stopped", 100_000);
    assert_eq!(a.upload(&file)["status"], "ok");
    for node in 0..3 {
        garage.kill_node(node);
    }
    assert_eq!(a.get("/hello?project-id=PROJECT").status, 200);
    // Still listed (the index is in memory); the download is a 503, not a broken 200.
    assert_eq!(ids(&a), ["io.example.stopped"]);
    let download = a.get("/package/download?id=io.example.stopped");
    assert_eq!(download.status, 503, "{}", download.text());
    assert!(download.header("Retry-After").is_some());
    let other = package(dir.path(), "io.example.other", 1000);
    let upload = a.request(
        "PUT",
        "/package/upload",
        &[],
        &std::fs::read(&other).unwrap(),
    );
    assert_eq!(upload.status, 503, "{}", upload.text());
    a.lines.wait_for("the console saying so", |lines| {
        lines
            .iter()
            .any(|l| l.contains("the object store is unavailable"))
    });
    for node in 0..3 {
        garage.restart_node(node);
    }
    wait_until("downloads working again", || {
        a.get("/package/download?id=io.example.stopped").status == 200
    });
    assert_eq!(
        a.get("/package/download?id=io.example.stopped").body,
        std::fs::read(&file).unwrap()
    );
}

#[test]
fn a_hundred_uploads_through_three_replicas_are_listed_everywhere_once() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let replicas: Vec<Server> = (0..3)
        .map(|i| {
            replica(
                &garage,
                &dir.path().join(format!("r{i}")),
                "hundred",
                i,
                &[],
            )
        })
        .collect();
    let packages: Vec<(usize, Vec<u8>)> = (0..100)
        .map(|n| {
            (
                n % 3,
                std::fs::read(package(dir.path(), &format!("io.example.p{n:03}"), 2000)).unwrap(),
            )
        })
        .collect();
    std::thread::scope(|scope| {
        for chunk in packages.chunks(10) {
            let replicas = &replicas;
            scope.spawn(move || {
                for (i, bytes) in chunk {
                    let answer = replicas[*i].request("PUT", "/package/upload", &[], bytes);
                    assert_eq!(answer.json()["status"], "ok");
                }
            });
        }
    });
    let expected: Vec<String> = (0..100).map(|n| format!("io.example.p{n:03}")).collect();
    for replica in &replicas {
        wait_until("every replica listing all 100 once", || {
            ids(replica) == expected
        });
    }
}

#[test]
fn two_replicas_replacing_one_package_agree_on_one_winner() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&garage, &dir.path().join("a"), "race", 0, &[]);
    let b = replica(&garage, &dir.path().join("b"), "race", 1, &[]);
    let one = std::fs::read(make_package(
        dir.path(),
        "io.example.race",
        &[],
        &[],
        "1",
        None,
    ))
    .unwrap();
    let two = std::fs::read(make_package(
        dir.path(),
        "io.example.race",
        &[],
        &[],
        "2",
        None,
    ))
    .unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| a.request("PUT", "/package/upload", &[], &one));
        scope.spawn(|| b.request("PUT", "/package/upload", &[], &two));
    });
    let version = |s: &Server| s.list("")[0]["version"].as_str().map(str::to_string);
    wait_until("both replicas showing the same version", || {
        let (va, vb) = (version(&a), version(&b));
        va.is_some() && va == vb
    });
}

/// Credentials appear nowhere (console, request log, `--cc`, `/metrics`), and with
/// `--s3-redirect-downloads` an unsigned download is a redirect to a presigned URL that
/// serves the package.
#[test]
fn credentials_stay_private_and_downloads_can_redirect() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let a = replica(
        &garage,
        &data,
        "private",
        0,
        &[&"--cc", &"--log-requests", &"--s3-redirect-downloads"],
    );
    let file = package(dir.path(), "io.example.private", 50_000);
    assert_eq!(a.upload(&file)["status"], "ok");
    let redirect = a.get("/package/download?id=io.example.private");
    assert_eq!(redirect.status, 302);
    let location = redirect.header("Location").unwrap().to_string();
    let rest = location.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut raw).unwrap();
    let answer = parse_response(&raw);
    assert_eq!(answer.status, 200);
    assert!(answer.body == std::fs::read(&file).unwrap());
    let metrics = a.get("/metrics").text();
    let config = std::fs::read_to_string(data.join("amps-config.yaml")).unwrap();
    assert!(
        config.contains("store: 's3://amps/private'")
            || config.contains("store: s3://amps/private"),
        "{config}"
    );
    let console = a.lines.all().join("\n");
    for secret in [KEY_ID, crate::garage::SECRET] {
        assert!(!console.contains(secret), "a credential on the console");
        assert!(!config.contains(secret), "a credential in --cc's file");
        assert!(!metrics.contains(secret), "a credential in /metrics");
    }
}

/// A removed package's object goes after its minute of grace (`make test-long`: it waits).
#[test]
#[ignore = "waits a minute: make test-long"]
fn a_removed_package_object_goes_after_its_grace() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&garage, &dir.path().join("a"), "grace", 0, &[]);
    let kept = package(dir.path(), "io.example.kept", 1000);
    let gone = package(dir.path(), "io.example.gone", 1000);
    for p in [&kept, &gone] {
        assert_eq!(a.upload(p)["status"], "ok");
    }
    let client = garage.client("grace/");
    assert_eq!(client.list("packages/").unwrap().len(), 2);
    let removed = a.post_form("/package/remove", "id=io.example.gone");
    assert_eq!(removed.json()["removed"], 1);
    // Still there for downloads under way, then gone; the other one stays.
    assert_eq!(client.list("packages/").unwrap().len(), 2);
    wait_until("the removed package's object deleted", || {
        client.list("packages/").unwrap().len() == 1
    });
    assert_eq!(ids(&a), ["io.example.kept"]);
    assert_eq!(a.get("/package/download?id=io.example.kept").status, 200);
}

/// `make bench-s3`: the figures of the S3 store (release binaries through `AMPS_BIN_DIR`).
#[test]
#[ignore]
fn s3_figures() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let seconds = |start: std::time::Instant| start.elapsed().as_secs_f64();
    // Download throughput: the same 64 MiB package from Garage and from a data directory.
    let big = package(dir.path(), "io.example.big", 48 << 20);
    let size = std::fs::metadata(&big).unwrap().len() as f64;
    let remote = replica(&garage, &dir.path().join("r"), "figures", 0, &[]);
    let local = Server::start(&dir.path().join("l"), &[]);
    for server in [&remote, &local] {
        assert_eq!(server.upload(&big)["status"], "ok");
    }
    let speed = |server: &Server| {
        let start = std::time::Instant::now();
        for _ in 0..5 {
            assert_eq!(
                server.get("/package/download?id=io.example.big").body.len() as f64,
                size
            );
        }
        5.0 * size / seconds(start) / 1e6
    };
    let (remote_speed, local_speed) = (speed(&remote), speed(&local));
    println!(
        "FIGURE download of {:.0} MB: {remote_speed:.0} MB/s from Garage, {local_speed:.0} MB/s from a data directory",
        size / 1e6
    );
    // Memory under 8 parallel downloads.
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| remote.get("/package/download?id=io.example.big"));
        }
    });
    println!(
        "FIGURE peak RSS of a replica after 8 parallel downloads: {:.1} MiB",
        remote.peak_rss_kib() as f64 / 1024.0
    );
    // The delay until another replica sees a change.
    let other = replica(&garage, &dir.path().join("o"), "figures", 1, &[]);
    let small = package(dir.path(), "io.example.seen", 1000);
    let start = std::time::Instant::now();
    assert_eq!(remote.upload(&small)["status"], "ok");
    wait_until("the other replica seeing it", || {
        ids(&other).contains(&"io.example.seen".to_string())
    });
    println!(
        "FIGURE upload through one replica until listed by another: {:.2} s",
        seconds(start)
    );
    // Index build for 1000 packages from records, against a local start-up scan.
    let many = dir.path().join("many");
    let sources: Vec<PathBuf> = (0..1000)
        .map(|n| package(dir.path(), &format!("io.example.m{n:04}"), 2000))
        .collect();
    std::thread::scope(|scope| {
        for chunk in sources.chunks(125) {
            let remote = &remote;
            scope.spawn(move || {
                for file in chunk {
                    assert_eq!(remote.upload(file)["status"], "ok");
                }
            });
        }
    });
    let local_data = dir.path().join("local-many");
    std::fs::create_dir_all(local_data.join(".packages")).unwrap();
    for file in &sources {
        let info = read(file).unwrap();
        std::fs::copy(
            file,
            local_data
                .join(".packages")
                .join(format!("{}_all.ampkg", info.id)),
        )
        .unwrap();
    }
    let start = std::time::Instant::now();
    let later = replica(&garage, &many, "figures", 2, &[]);
    let from_records = seconds(start);
    assert_eq!(ids(&later).len(), 1002);
    let start = std::time::Instant::now();
    let scanned = Server::start(&local_data, &[]);
    let from_scan = seconds(start);
    assert_eq!(ids(&scanned).len(), 1000);
    println!(
        "FIGURE start-up until listening, about 1000 packages: {from_records:.2} s from records in Garage, {from_scan:.2} s scanning a data directory"
    );
}
