//! Tags (the Deployment Server's selection model) against the real binary: packages tagged
//! with our packager and the shared vectors, then list, download and icon selection with
//! include, exclude, versions and the native preference.

use crate::util::*;
use serde_json::{Value, json};
use std::path::Path;

const X86_64: u16 = 62;

/// The ids and architectures of a list answer, in order, as `id/arch`.
fn listed(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let arch = item["architecture"].as_str().unwrap();
            format!(
                "{}/{}",
                item["id"].as_str().unwrap(),
                if arch.is_empty() { "all" } else { arch }
            )
        })
        .collect()
}

struct Store {
    server: Server,
    /// The platform independent and the native build of `io.tags.app`.
    app_all: Vec<u8>,
    app_native: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn tagged_store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let elf = elf_header(X86_64);
    let make = |id: &str, binary: Option<&[u8]>, args: &[&str]| {
        make_package_with(d, id, &[("en", id)], &[], "1", binary, args)
    };
    let app_all = make(
        "io.tags.app",
        None,
        &["--tag", "qt:5.12", "--tag", "Neptune"],
    );
    let app_native = make("io.tags.app", Some(&elf), &["--tag", "qt:5.13"]);
    let other = make(
        "io.tags.other",
        None,
        &["-m", "tags: [qt:5.12.0]", "-s", "tags: [platform:b]"],
    );
    let plain = make("io.tags.plain", None, &[]);
    let server = Server::start(&d.join("data"), &[]);
    for package in [&app_all, &app_native, &other, &plain] {
        assert_eq!(server.upload(package)["status"], "ok");
    }
    Store {
        server,
        app_all: std::fs::read(app_all).unwrap(),
        app_native: std::fs::read(app_native).unwrap(),
        _dir: dir,
    }
}

#[test]
fn lists_select_by_tags_with_versions_and_the_native_preference() {
    let store = tagged_store();
    let server = &store.server;
    let all = server.list("");
    assert_eq!(
        listed(&all),
        [
            "io.tags.app/all",
            "io.tags.app/linux_x86_64",
            "io.tags.other/all",
            "io.tags.plain/all"
        ]
    );
    let items = all.as_array().unwrap();
    assert_eq!(items[0]["tags"], json!(["neptune", "qt:5.12"]));
    assert_eq!(items[1]["tags"], json!(["qt:5.13"]));
    assert_eq!(items[2]["tags"], json!(["platform:b", "qt:5.12.0"]));
    // Without tags, exactly Qt's fields.
    let keys: Vec<&str> = items[3]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "architecture",
            "categories",
            "descriptions",
            "iconUrl",
            "id",
            "names",
            "version"
        ]
    );

    let cases: &[(&str, &[&str])] = &[
        ("?tag=qt:5.12", &["io.tags.app/all", "io.tags.other/all"]),
        ("?tag=QT:5.12", &["io.tags.app/all", "io.tags.other/all"]),
        ("?tag=qt:5.12.0", &["io.tags.other/all"]),
        ("?tag=qt:5.1", &[]),
        (
            "?tag=qt:5",
            &[
                "io.tags.app/all",
                "io.tags.app/linux_x86_64",
                "io.tags.other/all",
            ],
        ),
        (
            "?tag=qt",
            &[
                "io.tags.app/all",
                "io.tags.app/linux_x86_64",
                "io.tags.other/all",
            ],
        ),
        ("?tag=neptune,qt:5.12", &["io.tags.app/all"]),
        ("?tag=neptune&tag=qt:5.12", &["io.tags.app/all"]),
        ("?tag=neptune,qt:5.13", &[]),
        ("?tag=platform:b", &["io.tags.other/all"]),
        ("?tag=platform", &["io.tags.other/all"]),
        ("?tag=platform:b.1", &[]),
        ("?exclude-tag=qt", &["io.tags.plain/all"]),
        (
            "?exclude-tag=qt:5.13",
            &["io.tags.app/all", "io.tags.other/all", "io.tags.plain/all"],
        ),
        (
            "?exclude-tag=neptune&exclude-tag=platform",
            &["io.tags.app/linux_x86_64", "io.tags.plain/all"],
        ),
        ("?tag=qt&exclude-tag=qt:5.12", &["io.tags.app/linux_x86_64"]),
        (
            "?tag=",
            &[
                "io.tags.app/all",
                "io.tags.app/linux_x86_64",
                "io.tags.other/all",
                "io.tags.plain/all",
            ],
        ),
        // The native package when it passes, else the platform independent one.
        (
            "?architecture=linux_x86_64",
            &[
                "io.tags.app/linux_x86_64",
                "io.tags.other/all",
                "io.tags.plain/all",
            ],
        ),
        (
            "?architecture=linux_x86_64&tag=qt:5.12",
            &["io.tags.app/all", "io.tags.other/all"],
        ),
        (
            "?architecture=linux_x86_64&exclude-tag=qt:5.13",
            &["io.tags.app/all", "io.tags.other/all", "io.tags.plain/all"],
        ),
        (
            "?architecture=linux_x86_64&tag=qt:5.13",
            &["io.tags.app/linux_x86_64"],
        ),
        ("?architecture=linux_x86_64&tag=nothing", &[]),
    ];
    for (query, expected) in cases {
        assert_eq!(listed(&server.list(query)), *expected, "{query}");
    }
    // Form-encoded POST takes the same parameters.
    let posted = server.post_form("/package/list", "tag=neptune");
    assert_eq!(listed(&posted.json()), ["io.tags.app/all"]);

    for bad in ["Qt%205", "qt::5", "qt:", "a,b%20c", "%C3%A4"] {
        for name in ["tag", "exclude-tag"] {
            let answer = server.get(&format!("/package/list?{name}={bad}"));
            assert_eq!(answer.status, 400, "{name}={bad}");
            assert_eq!(answer.json()["status"], "fail");
            let message = answer.json()["message"].as_str().unwrap().to_string();
            assert!(message.starts_with("invalid tag '"), "{message}");
        }
    }
    let spaced = server.get("/package/list?tag=Qt%205");
    assert!(
        spaced.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid tag 'Qt 5': a space is not allowed")
    );
}

#[test]
fn downloads_and_icons_pick_what_the_list_showed() {
    let store = tagged_store();
    let server = &store.server;
    let download = |query: &str| server.get(&format!("/package/download?id=io.tags.app{query}"));
    let native = "&architecture=linux_x86_64";
    assert!(download(native).body == store.app_native);
    assert!(download(&format!("{native}&tag=qt:5.12")).body == store.app_all);
    assert!(download(&format!("{native}&exclude-tag=qt:5.13")).body == store.app_all);
    assert!(download(&format!("{native}&tag=qt:5.13")).body == store.app_native);
    assert!(download("&tag=neptune").body == store.app_all);
    assert_eq!(
        download("&tag=qt:5.13").status,
        404,
        "no native without architecture"
    );
    assert_eq!(download(&format!("{native}&tag=platform:b")).status, 404);
    assert_eq!(download("&exclude-tag=neptune").status, 404);
    let bad = download("&tag=Bad%20Tag");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["status"], "fail");

    let icon = |query: &str| {
        server
            .get(&format!("/package/icon?id=io.tags.app{query}"))
            .status
    };
    assert_eq!(icon("&tag=neptune"), 200);
    assert_eq!(icon(&format!("{native}&tag=qt:5.13")), 200);
    assert_eq!(icon("&tag=qt:5.13"), 404);
    assert_eq!(icon("&exclude-tag=qt"), 404);
    assert_eq!(icon("&tag=qt::"), 400);

    let hello = |query: &str| server.get(&format!("/hello?{query}")).json()["status"].clone();
    assert_eq!(hello("project-id=PROJECT&tag=Bad%20tag"), "malformed-tag");
    assert_eq!(hello("project-id=PROJECT&exclude-tag=a:"), "malformed-tag");
    assert_eq!(hello("project-id=PROJECT&tag=qt:5.12"), "ok");
    assert_eq!(hello("project-id=OTHER&tag=qt"), "incompatible-project-id");
}

#[test]
fn uploads_with_broken_tags_are_refused_naming_the_tag() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let cases = [
        (
            "tags: ['Qt 5']",
            "invalid tag 'Qt 5': a space is not allowed",
        ),
        ("tags: qt", "'extra.tags' must be a list"),
        ("tags: [{a: 1}]", "'extra.tags' must hold strings"),
        ("tags: ['qt::5']", "invalid tag 'qt::5': only one ':'"),
    ];
    for (yaml, expected) in cases {
        let package = make_package_with(
            dir.path(),
            "io.tags.bad",
            &[],
            &[],
            "1",
            None,
            &["-m", yaml],
        );
        let answer = server.upload(&package);
        assert_eq!(answer["status"], "fail", "{yaml}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(expected), "{yaml}: {message}");
    }
    assert_eq!(server.list(""), json!([]));
    // Our packager refuses a broken --tag at once.
    let output = packager(&[
        &"create-package",
        &"--tag",
        &"Qt 5",
        &dir.path().join("x.ampkg"),
        &sample_source(),
    ]);
    let (code, stderr) = status(&output);
    assert_ne!(code, 0);
    assert!(stderr.contains("invalid tag 'Qt 5'"), "{stderr}");
}

#[test]
fn the_shared_tagged_vectors_list_their_tags() {
    let Some(vectors) = vectors() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let expected = [
        ("tags.ampkg", json!(["neptune", "platform:b", "qt:5.12"])),
        (
            "extra-signed-types.ampkg",
            json!(["neptune", "qt:5.12", "tag_2:1_0"]),
        ),
    ];
    for (name, tags) in expected {
        let path = vector(&vectors.join("more"), name);
        if !Path::new(&path).exists() {
            skip(&format!("{name} is not among the vectors"));
            continue;
        }
        let answer = server.upload(&path);
        assert_eq!(answer["status"], "ok", "{name}: {answer}");
        let id = answer["id"].as_str().unwrap().to_string();
        let list = server.list("");
        let item = list
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id.as_str())
            .unwrap();
        assert_eq!(item["tags"], tags, "{name}");
        let selected = server.list("?tag=qt:5.12&exclude-tag=platform");
        let ids: Vec<&str> = selected
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.contains(&id.as_str()), name != "tags.ampkg", "{name}");
    }
}
