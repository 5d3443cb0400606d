//! The README's curl examples, run verbatim (but for the port) against the real server with
//! the sample package `make run` installs.

use crate::util::{
    Server, create, elf_header, free_port, make_package_with, read, sample_source, skip,
};
use std::path::Path;
use std::process::Command;

/// The lines of the README's section `## heading` (or `### heading`), up to the next one.
fn section(heading: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .lines()
        .skip_while(|l| l.trim_start_matches('#').trim() != heading || !l.starts_with("##"))
        .skip(1)
        .take_while(|l| !l.starts_with("## ") && !l.starts_with("### "))
        .map(str::to_string)
        .collect()
}

/// The `curl` lines of a section.
fn curl_examples(heading: &str) -> Vec<String> {
    section(heading)
        .into_iter()
        .filter(|l| l.starts_with("curl "))
        .collect()
}

/// Run `line` with `sh` in `dir`, the port replaced; its status and output.
fn run(line: &str, port: u16, dir: &Path) -> (bool, String) {
    let command = line.replace("localhost:8020", &format!("localhost:{port}"));
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn has_curl() -> bool {
    let found = Command::new("curl").arg("--version").output().is_ok();
    if !found {
        skip("curl is not installed, README examples not run");
    }
    found
}

#[test]
fn readme_curl_examples_work() {
    if !has_curl() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join(".packages")).unwrap();
    create(
        &data.path().join(".packages"),
        "io.example.hello_all.ampkg",
        &sample_source(),
        &[],
    );
    let server = Server::start(data.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let examples = curl_examples("Quick start");
    assert!(examples.len() >= 8, "{examples:?}");
    let mut outputs = Vec::new();
    for example in &examples {
        let command = example.replace("localhost:8020", &format!("localhost:{}", server.port));
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("{command} --fail --silent --show-error"))
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    assert_eq!(outputs[0], r#"{"status":"ok"}"#);
    assert!(
        outputs[1].contains(r#""id":"io.example.hello""#),
        "{}",
        outputs[1]
    );
    assert!(
        outputs[2].contains(r#""id":"io.example.hello""#),
        "{}",
        outputs[2]
    );
    assert_eq!(outputs[3], r#"["demo","samples"]"#);
    assert!(
        std::fs::read(work.path().join("icon.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    assert_eq!(
        read(&work.path().join("hello.ampkg")).unwrap().id,
        "io.example.hello"
    );
    assert_eq!(outputs[6], r#"{"removed":1,"status":"ok"}"#);
    assert_eq!(
        outputs[7],
        r#"{"architecture":"all","id":"io.example.hello","result":"added","status":"ok"}"#
    );
}

#[test]
fn readme_tag_examples_work() {
    if !has_curl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let all = make_package_with(
        dir.path(),
        "app",
        &[],
        &[],
        "1",
        None,
        &["--tag", "qt:5.12", "--tag", "neptune"],
    );
    let native = make_package_with(
        dir.path(),
        "app",
        &[],
        &[],
        "1",
        Some(&elf_header(62)),
        &["--tag", "qt:5.13"],
    );
    let server = Server::start(&dir.path().join("data"), &[]);
    server.upload(&all);
    server.upload(&native);
    let work = tempfile::tempdir().unwrap();
    let examples = curl_examples("Tags");
    assert_eq!(examples.len(), 7, "{examples:?}");
    let outputs: Vec<String> = examples
        .iter()
        .map(|line| {
            let (ok, out) = run(line, server.port, work.path());
            assert!(ok, "{line}");
            out
        })
        .collect();
    let builds = |json: &str| -> Vec<String> {
        serde_json::from_str::<serde_json::Value>(json)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["id"].as_str().unwrap(),
                    i["architecture"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(builds(&outputs[0]), ["app/"]);
    assert_eq!(builds(&outputs[1]), ["app/", "app/linux_x86_64"]);
    assert_eq!(builds(&outputs[2]), ["app/linux_x86_64"]);
    assert_eq!(builds(&outputs[3]), ["app/"]);
    assert!(builds(&outputs[4]).is_empty());
    let downloaded = std::fs::read(work.path().join("app_all.ampkg")).unwrap();
    assert!(downloaded == std::fs::read(&all).unwrap());
    assert!(outputs[6].contains("invalid tag 'Qt 5'"), "{}", outputs[6]);
}

#[test]
fn readme_caching_example_gets_304() {
    if !has_curl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let lines = section("Caching and resuming");
    let start = lines
        .iter()
        .position(|l| l.starts_with("tag=$(curl"))
        .unwrap();
    let script = lines[start..start + 2].join("\n");
    let (ok, out) = run(&script, server.port, dir.path());
    assert!(ok, "{script}");
    assert_eq!(out, "304\n");
}

/// The lines of the first `sh` block of a section.
fn sh_block(heading: &str) -> String {
    let lines = section(heading);
    let start = lines.iter().position(|l| l == "```sh").unwrap() + 1;
    let end = start + lines[start..].iter().position(|l| l == "```").unwrap();
    lines[start..end].join("\n") + "\n"
}

/// A folder that looks like the project after the Quick start: the binaries this test run
/// built in `target/release/`, and the project's `testdata/`, `build/` and `Makefile`.
fn project_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    for name in ["appman-package-server", "appman-packager"] {
        std::os::unix::fs::symlink(crate::util::binary(name), release.join(name)).unwrap();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["testdata", "build", "Makefile"] {
        std::os::unix::fs::symlink(root.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

/// Run a README block verbatim in `dir` (its port replaced by a free one); its output.
fn run_block(block: &str, port: &str, dir: &Path) -> String {
    let script = block.replace(port, &free_port().to_string());
    let output = Command::new("sh")
        .arg("-ec")
        .arg(&script)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script}\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn has(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        skip(&format!("{tool} is not installed, a README recipe not run"));
    }
    found
}

#[test]
fn readme_https_token_and_log_example_runs_verbatim() {
    if !has_curl() || !has("openssl") {
        return;
    }
    let dir = project_folder();
    let output = run_block(
        &sh_block("HTTPS, the upload token and the request log"),
        "8443",
        dir.path(),
    );
    assert!(
        output.ends_with(
            r#"{"architecture":"all","id":"io.example.hello","result":"added","status":"ok"}"#
        ),
        "{output}"
    );
    let log = std::fs::read_to_string(dir.path().join("https.log")).unwrap();
    assert!(log.contains("PUT /package/upload 200"), "{log}");
}

#[test]
fn readme_signing_recipe_runs_verbatim() {
    if !has_curl() || !has("openssl") || !has("make") {
        return;
    }
    let dir = project_folder();
    let output = run_block(
        &sh_block("Signing with certificates of your own"),
        "8444",
        dir.path(),
    );
    assert!(
        output.contains(r#""result":"added","status":"ok"}"#),
        "{output}"
    );
    assert!(
        output.contains("the store signature of signed.ampkg is valid (for this hardware id)"),
        "{output}"
    );
}
