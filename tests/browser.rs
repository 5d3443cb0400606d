//! The page in a real browser: headless Chromium driven through ChromeDriver's W3C WebDriver
//! protocol, which is plain HTTP with JSON, so this needs nothing but Debian's `chromium` and
//! `chromium-driver` (no Node, no Selenium, no websocket client). It loads the page of a real
//! server, checks that the cards show what `/package/list` says and that icons render,
//! uploads through the file input, removes through the button and its confirmation, and
//! keeps screenshots (wide, narrow, dark) under `target/browser/`.
//!
//! Without Chromium it skips visibly; `make test-browser` sets `AMPS_REQUIRE_BROWSER=1`, which
//! turns the skip into a failure.

use crate::util::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key W3C WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a18c-4f4a4a4a4a4a";

/// A ChromeDriver process and one browser session, both ended on drop.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// Chromium's profile, under target/ (each browser its own).
    profile: PathBuf,
}

impl Browser {
    fn start() -> Option<Browser> {
        Browser::start_with(&[])
    }

    /// A browser with more Chromium arguments.
    fn start_with(extra: &[&str]) -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            let why = "Chromium or ChromeDriver is not installed (apt-get install chromium chromium-driver): browser test not run";
            if std::env::var_os("AMPS_REQUIRE_BROWSER").is_some() {
                panic!("{why}");
            }
            skip(why);
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-profile-{}-{n}", std::process::id()));
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile: profile.clone(),
        };
        wait_until("ChromeDriver answers", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let created = browser.call(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "unhandledPromptBehavior": "ignore",
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
            }}}),
        );
        browser.session = created["sessionId"].as_str().unwrap().to_string();
        Some(browser)
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if method == "GET" {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let answer = webdriver_http(self.port, method, path, &body);
        let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        assert!(
            answer.status == 200,
            "WebDriver {method} {path}: {} {}",
            answer.status,
            answer.text()
        );
        value["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.session_call("POST", "/url", json!({ "url": url }));
    }

    /// Run `script` (a function body) in the page; its result.
    fn run(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Poll `script` until it returns true.
    fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.run(script) != json!(true) {
            assert!(Instant::now() < deadline, "the page never showed {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn element(&self, css: &str) -> String {
        let found = self.session_call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        // An element reference is an object with one member (W3C's web element identifier).
        let reference = found
            .get(ELEMENT)
            .or_else(|| found.as_object()?.values().next());
        reference
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    fn resize(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    fn dark(&self, on: bool) {
        let value = if on { "dark" } else { "light" };
        self.session_call(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": value}]}}),
        );
    }

    fn screenshot(&self, path: &Path) {
        let png = self.session_call("GET", "/screenshot", Value::Null);
        let bytes = openssl::base64::decode_block(png.as_str().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Wait for the confirmation dialog, then accept it.
    fn accept_dialog(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = webdriver_http(
                self.port,
                "GET",
                &format!("/session/{}/alert/text", self.session),
                b"",
            );
            if answer.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "no confirmation dialog");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.session_call("POST", "/alert/accept", json!({}));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = webdriver_http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                b"",
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One request to ChromeDriver, whose server keeps connections open: the answer is read by
/// its `Content-Length`, not to the end of the stream.
fn webdriver_http(port: u16, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut reader = BufReader::new(stream);
    let mut raw = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
        raw.extend_from_slice(line.as_bytes());
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut content = vec![0u8; length];
    reader.read_exact(&mut content).unwrap();
    raw.extend_from_slice(&content);
    parse_response(&raw)
}

/// Where the screenshots are kept.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sha1_hex(path: &Path) -> String {
    let digest = openssl::sha::sha1(&std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_page_shows_uploads_and_removes_packages_in_chromium() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hello = make_package_with(
        d,
        "io.example.hello",
        &[("en", "Hello"), ("de", "Hallo")],
        &["demo"],
        "1.2",
        None,
        &["--tag", "qt:5.12"],
    );
    let hostile = make_package_with(
        d,
        "io.example.hostile",
        &[(
            "en",
            "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>",
        )],
        &["<b>bold</b>"],
        "6.6",
        None,
        &[],
    );
    let uploaded = make_package(
        d,
        "io.example.uploaded",
        &[("en", "Uploaded")],
        &[],
        "3",
        None,
    );
    let server = Server::start(&d.join("data"), &[]);
    server.upload(&hello);
    server.upload(&hostile);
    let base = format!("http://127.0.0.1:{}", server.port);

    browser.resize(1280, 900);
    browser.open(&format!("{base}/"));
    browser.wait_for(
        "its cards",
        "return document.querySelectorAll('.card').length === 2",
    );
    // Icons load and render (a broken image has no natural size).
    browser.wait_for(
        "its icons",
        "return Array.from(document.querySelectorAll('.card img.icon')).every(i => i.complete && i.naturalWidth > 0)",
    );
    let cards = browser.run(
        "return Array.from(document.querySelectorAll('.card')).map(c => ({
            id: c.dataset.id,
            architecture: c.dataset.architecture,
            name: c.querySelector('.name').textContent,
            nameElements: c.querySelector('.name').children.length,
            version: c.querySelector('.version').textContent,
            sha1: c.querySelector('.sha1').textContent,
            categories: Array.from(c.querySelectorAll('.categories li')).map(l => l.textContent),
            tags: Array.from(c.querySelectorAll('.tags li')).map(l => l.textContent),
            icon: c.querySelector('img.icon').getAttribute('src'),
        }))",
    );
    let list = server.list("");
    let cards = cards.as_array().unwrap();
    assert_eq!(cards.len(), list.as_array().unwrap().len());
    for (card, item) in cards.iter().zip(list.as_array().unwrap()) {
        assert_eq!(card["id"], item["id"]);
        assert_eq!(card["name"], item["names"]["en"]);
        assert_eq!(card["version"], item["version"]);
        assert_eq!(card["categories"], item["categories"]);
        assert_eq!(card["tags"], item.get("tags").cloned().unwrap_or(json!([])));
        assert_eq!(card["nameElements"], 0, "a name is text, never markup");
        assert_eq!(
            card["icon"],
            format!("/{}", item["iconUrl"].as_str().unwrap())
        );
    }
    assert_eq!(cards[0]["sha1"], sha1_hex(&hello));
    assert_eq!(cards[1]["sha1"], sha1_hex(&hostile));
    assert_eq!(
        browser.run("return [document.scripts.length, window.pwned === undefined]"),
        json!([1, true]),
        "the hostile package's name ran as code"
    );
    assert_eq!(
        browser.run("return document.getElementById('project-id').textContent"),
        "PROJECT"
    );
    let shots = artifacts();
    browser.screenshot(&shots.join("page-wide.png"));
    browser.dark(true);
    browser.screenshot(&shots.join("page-wide-dark.png"));
    browser.dark(false);
    browser.resize(390, 844);
    browser.screenshot(&shots.join("page-narrow.png"));
    browser.resize(1280, 900);

    // Upload through the file input: the result in words, then the card, by live refresh.
    let input = browser.element("#file");
    browser.session_call(
        "POST",
        &format!("/element/{input}/value"),
        json!({ "text": uploaded.display().to_string() }),
    );
    browser.wait_for(
        "the upload's result",
        "return document.getElementById('results').textContent.includes('Added io.example.uploaded (all)')",
    );
    browser.wait_for(
        "the uploaded package",
        "return document.querySelector('.card[data-id=\"io.example.uploaded\"]') !== null",
    );
    assert_eq!(server.list("").as_array().unwrap().len(), 3);

    // Remove, confirmed in the dialog.
    let remove = browser.element(".card[data-id=\"io.example.hello\"] button.remove");
    browser.session_call("POST", &format!("/element/{remove}/click"), json!({}));
    browser.accept_dialog();
    browser.wait_for(
        "the removal",
        "return document.querySelector('.card[data-id=\"io.example.hello\"]') === null \
         && document.getElementById('results').textContent.includes('Removed io.example.hello')",
    );
    let left: Vec<String> = server
        .list("")
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["io.example.hostile", "io.example.uploaded"]);

    // A change made elsewhere shows up by itself.
    server.upload(&hello);
    browser.wait_for(
        "a package uploaded with curl",
        "return document.querySelectorAll('.card').length === 3",
    );

    // The filters are a GET form with the list's parameters.
    browser.open(&format!("{base}/?filter=hello"));
    browser.wait_for(
        "the filtered page",
        "return document.querySelectorAll('.card').length === 1",
    );
}

#[test]
fn the_page_asks_for_the_upload_token_once() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let package = make_package(dir.path(), "io.example.guarded", &[], &[], "1", None);
    let server = Server::start(
        &dir.path().join("data"),
        &[&"--upload-token", &"t0ken-for-the-page"],
    );
    browser.open(&format!("http://127.0.0.1:{}/", server.port));
    browser.wait_for(
        "the page",
        "return document.getElementById('file') !== null",
    );
    let input = browser.element("#file");
    browser.session_call(
        "POST",
        &format!("/element/{input}/value"),
        json!({ "text": package.display().to_string() }),
    );
    // The 401 makes the page ask; the answer is kept for the session.
    browser.accept_dialog_with("t0ken-for-the-page");
    browser.wait_for(
        "the guarded upload",
        "return document.getElementById('results').textContent.includes('Added io.example.guarded')",
    );
    assert_eq!(
        browser.run("return sessionStorage.getItem('amps-upload-token')"),
        "t0ken-for-the-page"
    );
    assert_eq!(server.list("").as_array().unwrap().len(), 1);
}

impl Browser {
    /// Wait for a prompt, type `text` into it and accept it.
    fn accept_dialog_with(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while webdriver_http(
            self.port,
            "GET",
            &format!("/session/{}/alert/text", self.session),
            b"",
        )
        .status
            != 200
        {
            assert!(Instant::now() < deadline, "no prompt");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.session_call("POST", "/alert/text", json!({ "text": text }));
        self.session_call("POST", "/alert/accept", json!({}));
    }
}

/// A page on another origin (a `data:` URL: its origin is opaque) posts a removal form, and a
/// DNS-rebinding page (a second name resolving to 127.0.0.1) loads the store: both are
/// refused, and the store is unchanged.
#[test]
fn pages_elsewhere_can_neither_change_nor_read_the_store() {
    let Some(browser) = Browser::start_with(&["--host-resolver-rules=MAP rebind.test 127.0.0.1"])
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let package = make_package(dir.path(), "io.example.kept", &[], &[], "1", None);
    server.upload(&package);
    let form = format!(
        "data:text/html,<form method=post action='http://127.0.0.1:{}/package/remove'><input name=id value=io.example.kept></form><script>document.forms[0].submit()</script>",
        server.port
    );
    browser.open(&form);
    browser.wait_for(
        "the cross-origin refusal",
        "return !!document.body && document.body.innerText.includes('may not change this store')",
    );
    assert_eq!(
        server.list("").as_array().unwrap().len(),
        1,
        "nothing removed"
    );

    browser.open(&format!("http://rebind.test:{}/", server.port));
    browser.wait_for(
        "the host refusal",
        "return !!document.body && document.body.innerText.includes('does not answer to the host name')",
    );
    let status = browser.run("return fetch('/package/list').then(r => r.status)");
    assert_eq!(
        status,
        json!(421),
        "the rebinding page cannot read the list"
    );
    // The page itself works where it belongs.
    browser.open(&format!("http://localhost:{}/", server.port));
    browser.wait_for(
        "the card",
        "return document.querySelectorAll('.card').length === 1",
    );
}

/// The page's details in Chromium: a package without an icon shows the placeholder (no broken
/// image), each card links to its download, and a malformed tag is shown next to its field.
#[test]
fn the_page_shows_placeholders_links_and_filter_errors() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let blank = raw_package(
        "io.example.blank",
        "description: {en: 'No icon'}\n",
        b"",
        "",
    );
    server.request("PUT", "/package/upload", &[], &blank);
    browser.open(&format!("http://localhost:{}/", server.port));
    browser.wait_for(
        "the icons, decoded",
        "return [...document.images].every(i => i.complete && i.naturalWidth > 0)",
    );
    let link = browser.run("return document.querySelector('a.download-link').href");
    assert_eq!(
        link,
        json!(format!(
            "http://localhost:{}/package/download?id=io.example.blank&architecture=all",
            server.port
        ))
    );
    let description = browser.run("return document.querySelector('.description').textContent");
    assert_eq!(description, json!("No icon"));
    browser.open(&format!("http://localhost:{}/?tag=Bad%20Tag", server.port));
    browser.wait_for(
        "the error next to the tags field",
        "return !!document.querySelector('#filter-error') && document.querySelector('input[name=tag]').getAttribute('aria-invalid') === 'true'",
    );
    let error = browser.run("return document.querySelector('#filter-error').textContent");
    assert!(
        error.as_str().unwrap().contains("invalid tag 'Bad Tag'"),
        "{error}"
    );
}
