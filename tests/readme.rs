//! The README's curl examples, run verbatim (but for the port) against the real server with
//! the sample package `make run` installs.

use crate::util::{Server, create, read, sample_source};
use std::process::Command;

fn curl_examples() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("curl "))
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_curl_examples_work() {
    if Command::new("curl").arg("--version").output().is_err() {
        crate::util::skip("curl is not installed, README examples not run");
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
    let examples = curl_examples();
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
    assert_eq!(outputs[6], r#"{"status":"ok","removed":1}"#);
    assert_eq!(
        outputs[7],
        r#"{"status":"ok","result":"added","id":"io.example.hello","architecture":"all"}"#
    );
}
