//! The Deployment Server's API on our server: the Neptune 3 UI app store's calls in their
//! order with a cookie jar, each documented status, purchased URLs (expired and forged ones
//! refused), the multipart upload, `verify-upload-package`, and with `--keep-versions` its
//! identity model: versions and tag variants side by side, selected everywhere.

use crate::util::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A client that keeps the session cookie, as QML's network access manager does.
struct Client<'a> {
    server: &'a Server,
    cookie: Option<String>,
}

impl<'a> Client<'a> {
    fn new(server: &'a Server) -> Client<'a> {
        Client {
            server,
            cookie: None,
        }
    }

    fn get(&mut self, target: &str) -> HttpResponse {
        let headers: Vec<(&str, &str)> = match &self.cookie {
            Some(cookie) => vec![("Cookie", cookie.as_str())],
            None => Vec::new(),
        };
        let answer = self.server.request("GET", target, &headers, b"");
        if let Some(set) = answer.header("Set-Cookie") {
            assert!(set.contains("HttpOnly") && set.contains("Path=/"), "{set}");
            self.cookie = Some(set.split(';').next().unwrap().to_string());
        }
        answer
    }

    fn json(&mut self, target: &str) -> Value {
        let answer = self.get(target);
        assert_eq!(answer.status, 200, "{target}: {}", answer.text());
        answer.json()
    }
}

/// The path of an absolute URL.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").unwrap().1;
    &rest[rest.find('/').unwrap()..]
}

fn neptune_packages(dir: &Path) -> (PathBuf, PathBuf) {
    let all = make_package(
        dir,
        "io.example.music",
        &[("en", "Music Player")],
        &["Entertainment"],
        "1.2",
        None,
    );
    let native = make_package(
        dir,
        "io.example.music",
        &[("en", "Music Player")],
        &["Entertainment"],
        "1.2",
        Some(&elf_header(62)),
    );
    (all, native)
}

/// The Neptune client's calls, in order, against an unsigned and a store-signed server.
#[test]
fn the_neptune_app_store_installs_through_our_server() {
    let certs = certificates();
    for signed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--pi", &"NEPTUNE3"];
        let store_p12 = certs.store_p12();
        if signed {
            args.extend([
                &"--sc" as &dyn AsRef<std::ffi::OsStr>,
                &store_p12,
                &"--sp",
                &P12_PASSWORD,
            ]);
        }
        let server = Server::start(&dir.path().join("data"), &args);
        let (all, native) = neptune_packages(dir.path());
        for package in [&all, &native] {
            assert_eq!(server.upload(package)["status"], "ok");
        }
        let mut client = Client::new(&server);
        assert_eq!(
            client.json("/hello?platform=NEPTUNE3&version=1"),
            json!({"status": "ok"})
        );
        assert!(client.cookie.is_some(), "no session cookie");
        assert_eq!(
            client.json("/login?username=t&password=t&imei=112163001487801"),
            json!({"status": "ok"})
        );
        let categories = client.json("/category/list");
        assert_eq!(categories[0], json!({"id": -1, "name": "All"}));
        let entertainment = categories[1]["id"].as_i64().unwrap();
        assert_eq!(categories[1]["name"], "Entertainment");
        assert!(entertainment > 0);
        let apps = client.json(&format!(
            "/app/list?filter=Music&category_id={entertainment}"
        ));
        // No architecture in the session: only the package for all.
        assert_eq!(apps.as_array().unwrap().len(), 1, "{apps}");
        let app = &apps[0];
        assert_eq!(app["id"], "io.example.music");
        assert_eq!(app["name"], "Music Player");
        assert_eq!(app["architecture"], "All");
        assert_eq!(app["version"], "1.2");
        assert_eq!(app["category"], "Entertainment");
        assert_eq!(app["category_id"], entertainment);
        assert_eq!(app["tags"], json!([]));
        assert_eq!(app["conflict_tags"], json!([]));
        assert!(
            app["iconUrl"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1/app/icon?id=io.example.music")
        );
        assert!(
            client
                .json("/app/list?filter=nothing%20like%20it&category_id=-1")
                .as_array()
                .unwrap()
                .is_empty()
        );
        let purchase = client.json("/app/purchase?id=io.example.music&device_id=00-11-22-33-44-55");
        assert_eq!(purchase["status"], "ok", "{purchase}");
        assert_eq!(purchase["expiresIn"], 600);
        let url = purchase["url"].as_str().unwrap();
        let download = client.get(path_of(url));
        assert_eq!(download.status, 200);
        let info = read_bytes(&download.body).unwrap();
        assert_eq!(info.id, "io.example.music");
        assert_eq!(info.architecture, None, "the package for all");
        if signed {
            // Stock devices never pass their hardware id: signed for none.
            assert!(crate::server::verify_store(&info, &certs.ca(), ""));
        } else {
            assert!(info.store_signature.is_none());
            assert_eq!(download.body, std::fs::read(&all).unwrap());
        }
        // Icons, as the client asks for them.
        let icon = client.get("/app/icon?id=io.example.music");
        assert_eq!(
            (icon.status, icon.header("Content-Type")),
            (200, Some("image/png"))
        );
        // Forged URLs: another MAC, another package.
        let name = path_of(url)
            .trim_start_matches("/app/download/")
            .to_string();
        let mut forged = name.clone().into_bytes();
        let at = forged.len() - 8;
        forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(client.get(&format!("/app/download/{forged}")).status, 404);
        let other = format!("{}{}", "0".repeat(40), &name[40..]);
        assert_eq!(client.get(&format!("/app/download/{other}")).status, 404);
        assert_eq!(client.get("/app/download/nonsense").status, 404);
    }
}

/// A purchased URL is refused once it expired.
#[test]
fn purchased_urls_expire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[&"--download-expiry", &"1"]);
    let (all, _) = neptune_packages(dir.path());
    assert_eq!(server.upload(&all)["status"], "ok");
    let mut client = Client::new(&server);
    client.json("/hello?platform=PROJECT&version=1");
    client.json("/login?username=u&password=p");
    let purchase = client.json("/app/purchase?id=io.example.music");
    assert_eq!(purchase["expiresIn"], 1);
    let url = purchase["url"].as_str().unwrap().to_string();
    let expiry: u64 = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // Whatever the machine's speed: wait until the clock is past the expiry.
    wait_until("the URL's expiry", || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            > expiry
    });
    assert_eq!(client.get(path_of(&url)).status, 404);
}

#[test]
fn each_documented_status() {
    let dir = tempfile::tempdir().unwrap();
    let token = "deployment-token-0123456789";
    let server = Server::start(
        &dir.path().join("data"),
        &[
            &"--pi",
            &"NEPTUNE3",
            &"--upload-token",
            &token,
            &"--bind-downloads-to-device",
        ],
    );
    let (all, native) = neptune_packages(dir.path());
    for package in [&all, &native] {
        let body = std::fs::read(package).unwrap();
        let auth = format!("Bearer {token}");
        let answer = server.request("PUT", "/package/upload", &[("Authorization", &auth)], &body);
        assert_eq!(answer.json()["status"], "ok");
    }
    let mut c = Client::new(&server);
    for (query, status) in [
        ("platform=OTHER&version=1", "incompatible-platform"),
        ("platform=NEPTUNE3&version=2", "incompatible-version"),
        (
            "platform=NEPTUNE3&version=1&architecture=x86_64",
            "incompatible-architecture",
        ),
        (
            "platform=NEPTUNE3&version=1&require_tag=Qt%205",
            "malformed-tag",
        ),
        (
            "platform=NEPTUNE3&version=1&conflicts_tag=a:b:c",
            "malformed-tag",
        ),
        // More than the 32 tags of each kind a session keeps.
        (
            "platform=NEPTUNE3&version=1&require_tag=t0,t1,t2,t3,t4,t5,t6,t7,t8,t9,t10,t11,t12,t13,t14,t15,t16,t17,t18,t19,t20,t21,t22,t23,t24,t25,t26,t27,t28,t29,t30,t31,t32",
            "malformed-tag",
        ),
        (
            "platform=NEPTUNE3&version=1&architecture=x86_64-little_endian-lp64-linux",
            "ok",
        ),
    ] {
        assert_eq!(
            c.json(&format!("/hello?{query}"))["status"],
            status,
            "{query}"
        );
    }
    // The session's architecture now selects the native package.
    let apps = c.json("/app/list");
    assert_eq!(
        apps[0]["architecture"], "x86_64-little_endian-64-elf",
        "{apps}"
    );
    // Qt's hello is untouched.
    assert_eq!(
        server.get("/hello?project-id=NEPTUNE3").json(),
        json!({"status": "ok"})
    );
    assert_eq!(c.json("/logout")["status"], "failed");
    let refused = c.get("/app/purchase?id=io.example.music");
    assert_eq!(
        (refused.status, &refused.json()["status"]),
        (403, &json!("failed"))
    );
    assert_eq!(c.json("/login?username=t")["status"], "missing-credentials");
    assert_eq!(
        c.json("/login?username=t&password=t")["status"],
        "authentication-failed"
    );
    assert_eq!(
        c.json(&format!("/login?username=t&password={token}"))["status"],
        "ok"
    );
    let no_device = c.json("/app/purchase?id=io.example.music");
    assert_eq!(
        no_device,
        json!({"status": "failed", "error": "device_id required"})
    );
    let missing = c.json("/app/purchase?id=io.example.none&device_id=d");
    assert_eq!(missing["status"], "failed");
    let long = c.json(&format!(
        "/app/purchase?id=io.example.music&device_id={}",
        "d".repeat(257)
    ));
    assert_eq!(
        long,
        json!({"status": "failed", "error": "device_id is too long"})
    );
    let purchase = c.json("/app/purchase?id=io.example.music&device_id=device-7");
    assert_eq!(purchase["status"], "ok");
    let download = c.get(path_of(purchase["url"].as_str().unwrap()));
    assert_eq!(download.status, 200);
    assert_eq!(
        read_bytes(&download.body).unwrap().architecture.as_deref(),
        Some("linux_x86_64")
    );
    assert_eq!(c.json("/logout")["status"], "ok");
    assert_eq!(
        c.get("/app/purchase?id=io.example.music&device_id=d")
            .status,
        403
    );
    // A forged cookie is a new session, never an error.
    let mut forged = Client::new(&server);
    forged.cookie = Some("sessionid=00.00".to_string());
    assert_eq!(
        forged.json("/category/list")[0],
        json!({"id": -1, "name": "All"})
    );
    assert_eq!(
        forged
            .get("/app/purchase?id=io.example.music&device_id=d")
            .status,
        403
    );
    // Qt's category list for Qt's clients.
    assert_eq!(
        server.get("/category/list").json(),
        json!(["Entertainment"])
    );
    // Descriptions and category icons.
    assert_eq!(c.get("/app/description?id=io.example.music").status, 200);
    let icon = c.get("/category/icon?id=12345");
    assert_eq!(&icon.body[..4], b"\x89PNG");
}

/// A multipart body of `fields` and, when given, the package.
fn form(fields: &[(&str, &str)], package: Option<&[u8]>) -> (String, Vec<u8>) {
    let boundary = "----amps-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .bytes(),
        );
    }
    if let Some(package) = package {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"package\"; filename=\"app.ampkg\"\r\nContent-Type: application/octet-stream\r\n\r\n").bytes());
        body.extend_from_slice(package);
        body.extend_from_slice(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn the_multipart_upload_keeps_its_fields_with_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let token = "deployment-token-0123456789";
    let server = Server::start(&dir.path().join("data"), &[&"--upload-token", &token]);
    let (all, _) = neptune_packages(dir.path());
    let package = std::fs::read(&all).unwrap();
    let basic = |password: &str| {
        format!(
            "Basic {}",
            openssl::base64::encode_block(format!("admin:{password}").as_bytes())
        )
    };
    let post = |fields: &[(&str, &str)], package: Option<&[u8]>, auth: &str| {
        let (content_type, body) = form(fields, package);
        server.request(
            "POST",
            "/upload",
            &[("Content-Type", &content_type), ("Authorization", auth)],
            &body,
        )
    };
    let good = basic(token);
    let all_fields = [
        ("description", "A <b>long</b> description"),
        ("short-description", "Plays music"),
        ("category", "Media"),
        ("vendor", "Example Corp"),
    ];
    let refused = post(&all_fields, Some(&package), &basic("wrong"));
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["status"], "authentication-failed");
    for (missing, word) in [
        (0, "no description"),
        (1, "no short description"),
        (2, "no category"),
        (3, "no vendor"),
    ] {
        let fields: Vec<(&str, &str)> = all_fields
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != missing)
            .map(|(_, f)| *f)
            .collect();
        assert_eq!(post(&fields, Some(&package), &good).json()["status"], word);
    }
    assert_eq!(
        post(&all_fields, None, &good).json()["status"],
        "no package to upload"
    );
    let invalid = post(&all_fields, Some(b"not a package at all"), &good).json();
    assert_eq!(invalid["status"], "Package validation failed", "{invalid}");
    assert_eq!(
        post(&all_fields, Some(&package), &good).json(),
        json!({"status": "ok"})
    );
    let check = |server: &Server| {
        let mut c = Client::new(server);
        c.json("/hello?platform=PROJECT&version=1");
        let apps = c.json("/app/list");
        assert_eq!(apps[0]["vendor"], "Example Corp", "{apps}");
        assert_eq!(apps[0]["briefDescription"], "Plays music");
        assert_eq!(apps[0]["category"], "Media");
        let description = c.get("/app/description?id=io.example.music");
        assert_eq!(description.text(), "A <b>long</b> description");
        assert_eq!(
            description.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
    };
    check(&server);
    // Kept across a restart.
    drop(server);
    let server = Server::start(&dir.path().join("data"), &[&"--upload-token", &token]);
    check(&server);
}

#[test]
fn verify_upload_package_checks_as_an_upload_would() {
    let dir = tempfile::tempdir().unwrap();
    let (all, _) = neptune_packages(dir.path());
    let broken = dir.path().join("broken.ampkg");
    std::fs::write(&broken, b"garbage").unwrap();
    let run = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let output = std::process::Command::new(binary("appman-package-server"))
            .current_dir(dir.path())
            .args(args.iter().map(|a| a.as_ref()))
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, out) = run(&[&"verify-upload-package", &all]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("would be accepted: io.example.music all version 1.2"),
        "{out}"
    );
    let (code, out) = run(&[&"verify-upload-package", &broken]);
    assert_eq!(
        (
            code,
            out.trim_end()
                .ends_with("would be refused: wrong package format")
        ),
        (Some(1), true),
        "{out}"
    );
    let (code, out) = run(&[
        &"--max-package-size",
        &"100",
        &"verify-upload-package",
        &all,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("maximum package size of 100 bytes"), "{out}");
    // The developer CAs of the server's config file apply.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("amps-config.yaml"),
        format!("%YAML 1.1\n---\nformatType: amps-configuration\nformatVersion: 1\n---\ndeveloperVerificationCaCertificates: ['{}']\n", certificates().ca().display()),
    )
    .unwrap();
    let (code, out) = run(&[&"--dd", &data, &"verify-upload-package", &all]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no developer signature"), "{out}");
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        1,
        "nothing written"
    );
}

/// With `--keep-versions`: 1.0 and 2.0 of one id, `qt:5.15` and `qt:6.8` variants, native
/// and for all, side by side; what each API lists and serves for each selection; `version=`
/// pins; removing one version leaves the others; a restart keeps them.
#[test]
fn versions_and_variants_live_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[&"--keep-versions"]);
    let make = |version: &str, tag: &str, native: bool| {
        let binary = native.then(|| elf_header(62));
        make_package_with(
            dir.path(),
            "io.example.app",
            &[("en", "App")],
            &["Tools"],
            version,
            binary.as_deref(),
            &["--tag", tag],
        )
    };
    let old = make("1.0", "qt:5.15", false);
    let new = make("2.0", "qt:5.15", false);
    let six = make("2.0", "qt:6.8", false);
    let native = make("1.5", "qt:6.8", true);
    let newer_native = make("1.10", "qt:6.8", true);
    for package in [&old, &new, &six, &native, &newer_native] {
        let answer = server.upload(package);
        assert_eq!(answer["status"], "ok", "{answer}");
        assert_eq!(answer["result"], "added", "{answer}");
    }
    let versions = |query: &str| -> Vec<(String, String)> {
        let list = server.list(query);
        list.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["architecture"].as_str().unwrap().to_string(),
                    i["version"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let both = |all: &str, native: &str| {
        vec![
            ("".to_string(), all.to_string()),
            ("linux_x86_64".to_string(), native.to_string()),
        ]
    };
    let one = |arch: &str, version: &str| vec![(arch.to_string(), version.to_string())];
    // Newest per architecture (1.10 after 1.5: numeric components).
    assert_eq!(versions(""), both("2.0", "1.10"));
    assert_eq!(versions("?tag=qt:5.15"), one("", "2.0"));
    assert_eq!(versions("?tag=qt:5.15&version=1.0"), one("", "1.0"));
    // The architecture preference comes before the version.
    assert_eq!(
        versions("?architecture=linux_x86_64&tag=qt:6.8"),
        one("linux_x86_64", "1.10")
    );
    assert_eq!(
        versions("?architecture=linux_x86_64&tag=qt:5.15"),
        one("", "2.0")
    );
    let download = |query: &str| server.get(&format!("/package/download?id=io.example.app{query}"));
    assert_eq!(
        download("&tag=qt:5.15&version=1.0").body,
        std::fs::read(&old).unwrap()
    );
    assert_eq!(download("&tag=qt:5.15").body, std::fs::read(&new).unwrap());
    assert_eq!(
        download("&architecture=linux_x86_64&version=1.5").body,
        std::fs::read(&native).unwrap()
    );
    assert_eq!(download("&version=3.0").status, 404);
    // The Deployment Server's API selects the same way.
    let mut c = Client::new(&server);
    c.json("/hello?platform=PROJECT&version=1&architecture=x86_64-little_endian-lp64-linux&require_tag=qt:6.8");
    let apps = c.json("/app/list");
    assert_eq!(
        (
            apps[0]["architecture"].as_str(),
            apps[0]["version"].as_str()
        ),
        (Some("x86_64-little_endian-64-elf"), Some("1.10")),
        "{apps}"
    );
    c.json("/hello?platform=PROJECT&version=1&require_tag=qt:5.15");
    assert_eq!(c.json("/app/list")[0]["version"], "2.0");
    // Each group has a file that says which it is.
    let files = server.files(".packages");
    assert!(
        files.contains(&"io.example.app_all@1.0@qt:5.15.ampkg".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"io.example.app_linux_x86_64@1.10@qt:6.8.ampkg".to_string()),
        "{files:?}"
    );
    assert_eq!(files.len(), 5, "{files:?}");
    // The page lists the other versions, each with a link that downloads it.
    let page = server.get("/").text();
    let link = "/package/download?id=io.example.app&amp;architecture=all&amp;version=1.0&amp;tag=qt%3A5.15";
    assert!(page.contains(link), "{page}");
    assert_eq!(
        server.get(&link.replace("&amp;", "&")).body,
        std::fs::read(&old).unwrap()
    );
    // The same group replaces; removing one version leaves the others.
    assert_eq!(server.upload(&old)["result"], "no changes");
    let removed = server.post_form("/package/remove", "id=io.example.app&version=1.0");
    assert_eq!(removed.json()["removed"], 1);
    assert_eq!(versions("?tag=qt:5.15&version=1.0"), vec![]);
    assert_eq!(versions("?tag=qt:5.15"), one("", "2.0"));
    drop(server);
    // A restart rebuilds the same store.
    let server = Server::start(&data, &[&"--keep-versions"]);
    assert_eq!(server.files(".packages").len(), 4);
    let list = server.list("");
    let shown: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["version"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["2.0", "1.10"]);
    assert_eq!(server.list("?tag=qt:5.15&version=1.0"), json!([]));
}
