//! The page for people, as HTML from the real binary: headers, escaping of hostile packages,
//! filters, the empty store, assets. (`browser.rs` runs it in Chromium.)

use crate::util::*;

/// GET `target` with `Host: host` (the only Host: the helpers of util send their own).
fn get_with_host(server: &Server, target: &str, host: &str) -> HttpResponse {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    parse_response(&raw_http(server.port, request.as_bytes()))
}

fn page(server: &Server, target: &str) -> (HttpResponse, String) {
    let answer = get_with_host(server, target, "store.example:8020");
    let text = answer.text();
    (answer, text)
}

#[test]
fn the_page_is_guarded_and_shows_how_to_upload_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    // Any host name, so that a hostile one reaches the page.
    let server = Server::start(dir.path(), &[&"--allowed-hosts", &"*"]);
    for target in ["/", "/index.html"] {
        let (answer, html) = page(&server, target);
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        let csp = answer.header("Content-Security-Policy").unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
            "{csp}"
        );
        assert_eq!(answer.header("X-Content-Type-Options"), Some("nosniff"));
        assert!(html.contains(r#"id="empty-store""#), "{html}");
        assert!(html.contains("curl -T app.ampkg http://store.example:8020/package/upload"));
        let folder = std::fs::canonicalize(dir.path()).unwrap().join("upload");
        assert!(html.contains(&folder.display().to_string()), "{html}");
        assert!(html.contains(r#"<dd id="project-id">PROJECT</dd>"#));
        assert!(html.contains(r#"<dd id="signed">no</dd>"#));
        // Nothing from elsewhere: no CDN, no fonts, no inline script.
        for external in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "@import",
            "url(",
        ] {
            assert!(!html.contains(external), "{external} in {html}");
        }
        assert!(!html.contains("<script>"));
    }
    let head = raw_http(
        server.port,
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    for (asset, kind) in [
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/placeholder.svg", "image/svg+xml"),
    ] {
        let answer = server.get(asset);
        assert_eq!(answer.status, 200, "{asset}");
        assert_eq!(answer.header("Content-Type"), Some(kind));
        assert_eq!(answer.header("X-Content-Type-Options"), Some("nosniff"));
        let etag = answer.header("ETag").unwrap().to_string();
        let again = server.request("GET", asset, &[("If-None-Match", &etag)], b"");
        assert_eq!(again.status, 304);
    }
    assert_eq!(server.get("/static/nothing.js").status, 404);
    assert_eq!(server.request("POST", "/", &[], b"").status, 405);
    // A host that is markup is text too.
    let hostile = get_with_host(&server, "/", "<b>x</b>");
    assert!(
        hostile
            .text()
            .contains("http://&lt;b&gt;x&lt;/b&gt;/package/upload")
    );
}

#[test]
fn the_page_escapes_what_packages_say_and_filters_like_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let hostile_name = r#"<script>alert("x")</script>"#;
    let hostile = make_package(
        dir.path(),
        "io.example.hostile",
        &[("en", hostile_name), ("fr", "\" onmouseover=\"alert(1)")],
        &["\"><img src=x onerror=alert(1)>"],
        "<i>1</i>",
        None,
    );
    let hello = make_package_with(
        dir.path(),
        "io.example.hello",
        &[("en", "Hello"), ("de", "Hallo")],
        &["demo"],
        "1.0",
        Some(&elf_header(62)),
        &["--tag", "qt:5.12"],
    );
    let certs = certificates();
    let p12 = certs.store_p12();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            &"--sc",
            &p12,
            &"--sp",
            &P12_PASSWORD,
            &"--allowed-hosts",
            &"store.example",
        ],
    );
    server.upload(&hostile);
    server.upload(&hello);
    let (_, html) = page(&server, "/");
    assert!(!html.contains(hostile_name), "unescaped name");
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    assert!(!html.contains("<img src=x"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains("\" onmouseover=\""));
    assert!(html.contains("&lt;i&gt;1&lt;/i&gt;"));
    assert_eq!(html.matches("<script").count(), 1, "only our own script");
    assert_eq!(html.matches(r#"<article class="card""#).count(), 2);
    // Each card: the download form, with a hardware id field as the server store-signs.
    assert_eq!(html.matches(r#"name="hardware-id""#).count(), 2);
    assert!(html.contains(r#"<dd id="signed">yes</dd>"#));
    assert!(html.contains(r#"<li>qt:5.12</li>"#));
    assert!(html.contains(r#"<span class="lang">de</span> Hallo"#));
    assert!(
        html.contains(r#"src="/package/icon?id=io.example.hello&amp;architecture=linux_x86_64""#)
    );

    let cards = |target: &str| {
        let (_, html) = page(&server, target);
        html.split(r#"<article class="card" data-id=""#)
            .skip(1)
            .map(|c| c.split('"').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(cards("/?filter=hello"), ["io.example.hello"]);
    assert_eq!(cards("/?filter=HELLO"), ["io.example.hello"]);
    assert_eq!(cards("/?category=demo"), ["io.example.hello"]);
    assert_eq!(cards("/?tag=qt"), ["io.example.hello"]);
    assert_eq!(
        cards("/?architecture=linux_x86_64"),
        ["io.example.hello", "io.example.hostile"]
    );
    assert_eq!(
        cards("/?architecture=windows_x86_64"),
        ["io.example.hostile"]
    );
    let (_, none) = page(&server, "/?filter=nothing");
    assert!(none.contains(r#"id="no-match""#));
    let (_, selected) = page(
        &server,
        "/?architecture=linux_x86_64&category=demo&filter=he",
    );
    assert!(selected.contains(r#"<option value="linux_x86_64" selected>"#));
    assert!(selected.contains(r#"<option value="demo" selected>"#));
    assert!(selected.contains(r#"name="filter" value="he""#));
    // A malformed tag: the page, with the message next to the field (not JSON).
    let (bad, html) = page(&server, "/?tag=Bad%20Tag");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(bad.header("X-Content-Type-Options"), Some("nosniff"));
    assert!(
        html.contains(
            r#"name="tag" value="Bad Tag" placeholder="qt:5.12, neptune" aria-invalid="true""#
        ),
        "{html}"
    );
    assert!(
        html.contains(
            r#"<p class="error" id="filter-error" role="alert">invalid tag &#39;Bad Tag&#39;"#
        ),
        "{html}"
    );
    assert!(!html.contains(r#"<article class="card""#));
    // Each card: the description, and a real link to its download.
    let (_, all) = page(&server, "/?filter=hello");
    assert!(
        all.contains(r#"<a class="download-link" href="/package/download?id=io.example.hello&amp;architecture=linux_x86_64" download>io.example.hello_linux_x86_64.ampkg</a>"#),
        "{all}"
    );
    let described = raw_package(
        "io.example.described",
        "description: {en: '<b>bold</b> words', de: 'Worte'}\n",
        b"x",
        "",
    );
    server.request("PUT", "/package/upload", &[], &described);
    let (_, html) = page(&server, "/?filter=raw");
    assert!(
        html.contains(r#"<p class="description">&lt;b&gt;bold&lt;/b&gt; words</p>"#),
        "{html}"
    );
}
