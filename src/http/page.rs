/*!
The page for people: `GET /` renders the store as HTML on the server, so browsing and
filtering work without JavaScript (the filters are a GET form with the list's own parameters,
and the selection is `Index::list_entries`, the very code behind `/package/list`).
`/static/app.js` adds uploads, removals and live refresh on top, through the public API only.

Everything that comes from a package (names, ids, versions, categories, tags) is untrusted and
goes through `escape`; the page and its assets are served with a `Content-Security-Policy`
that allows only our own scripts, styles and images, and `nosniff`. The assets are compiled
into the binary: no CDN, no fonts, works offline and from a device's browser.
*/

pub use super::html::escape;
use super::state::State;
use super::{Body, Request, Response};

use crate::store::answers::AnswerKey;
use crate::store::index::{Entry, ListQuery};
use std::fmt::Write;
use std::sync::Arc;

/// Only our own origin, no inline script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");
const PLACEHOLDER: &str = include_str!("assets/placeholder.svg");

/// A static asset compiled into the binary, by path.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path {
        "/static/style.css" => ("text/css; charset=utf-8", STYLE),
        "/static/app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/static/placeholder.svg" => ("image/svg+xml", PLACEHOLDER),
        _ => return None,
    })
}

/// `response` with the headers every page and asset carries (`nosniff` is on every answer).
pub fn guarded(response: Response) -> Response {
    response
        .with_header("Content-Security-Policy", CSP)
        .with_header("Referrer-Policy", "no-referrer")
}

/// What the page shows beside the packages.
pub struct PageInfo<'a> {
    pub project_id: &'a str,
    pub verifies_uploads: bool,
    pub signs_downloads: bool,
    pub needs_token: bool,
    pub version: &'a str,
    /// The folder packages can be dropped into.
    pub upload_folder: String,
    /// How clients reach us (the request's `Host`), for the curl example.
    pub host: String,
    /// A filter the server could not take (a malformed tag): its message and the text as
    /// given, shown next to its field.
    pub filter_error: Option<(String, String)>,
}

/// The whole page for `query` over `entries` (the packages it selects), with every
/// architecture and category of the store for the filters.
pub fn render(
    info: &PageInfo<'_>,
    query: &ListQuery,
    entries: &[(Arc<Entry>, Vec<Arc<Entry>>)],
    architectures: &[String],
    categories: &[String],
    store_is_empty: bool,
) -> String {
    let mut html = String::with_capacity(4096 + entries.len() * 1536);
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Packages · {project}</title>
<link rel="stylesheet" href="/static/style.css">
<link rel="icon" href="/static/placeholder.svg">
<script src="/static/app.js" defer></script>
</head>
<body data-needs-token="{needs_token}">
<header class="top">
  <div class="brand"><img src="/static/placeholder.svg" alt="" width="28" height="28"><h1>Packages</h1></div>
  <dl class="server">
    <div><dt>Project</dt><dd id="project-id">{project}</dd></div>
    <div><dt>Uploads verified</dt><dd id="verified">{verified}</dd></div>
    <div><dt>Downloads store-signed</dt><dd id="signed">{signed}</dd></div>
    <div><dt>Server</dt><dd id="version">{version}</dd></div>
  </dl>
</header>
<main>
"#,
        project = escape(info.project_id),
        needs_token = info.needs_token,
        verified = if info.verifies_uploads {
            "yes (developer signature)"
        } else {
            "no"
        },
        signed = yes_no(info.signs_downloads),
        version = escape(info.version),
    );
    render_filters(&mut html, query, architectures, categories, info);
    render_upload(&mut html, info);
    let _ = writeln!(
        html,
        r#"<section id="packages" aria-live="polite" data-count="{}">"#,
        entries.len()
    );
    if info.filter_error.is_some() {
        html.push_str(
            r#"<p class="empty" id="no-match">Correct the tags to see packages. <a href="/">Show all</a></p>
"#,
        );
    } else if store_is_empty {
        render_empty_store(&mut html, info);
    } else if entries.is_empty() {
        html.push_str(
            r#"<p class="empty" id="no-match">No package matches these filters. <a href="/">Show all</a></p>
"#,
        );
    } else {
        let _ = writeln!(
            html,
            r#"<p class="count" id="summary">{} package{}</p>
<div class="cards">"#,
            entries.len(),
            if entries.len() == 1 { "" } else { "s" }
        );
        for (entry, others) in entries {
            super::card::render_card(&mut html, entry, others, info.signs_downloads);
        }
        html.push_str("</div>\n");
    }
    html.push_str("</section>\n</main>\n</body>\n</html>\n");
    html
}

fn render_filters(
    html: &mut String,
    query: &ListQuery,
    architectures: &[String],
    categories: &[String],
    info: &PageInfo<'_>,
) {
    let options = |all: &str, values: &[String], selected: Option<&str>| {
        let mut out = format!(r#"<option value="">{all}</option>"#);
        for value in values {
            let _ = write!(
                out,
                r#"<option value="{v}"{s}>{v}</option>"#,
                v = escape(value),
                s = if selected == Some(value.as_str()) {
                    " selected"
                } else {
                    ""
                }
            );
        }
        out
    };
    let tags = match &info.filter_error {
        Some((_, given)) => given.clone(),
        None => {
            let tags: Vec<String> = query.tags.include.iter().map(|t| t.to_string()).collect();
            tags.join(", ")
        }
    };
    let (invalid, error) = match &info.filter_error {
        Some((message, _)) => (
            r#" aria-invalid="true" aria-describedby="filter-error""#,
            format!(
                r#"  <p class="error" id="filter-error" role="alert">{}</p>
"#,
                escape(message)
            ),
        ),
        None => ("", String::new()),
    };
    let _ = write!(
        html,
        r#"<form class="filters" id="filters" method="get" action="/" role="search">
  <label>Name <input type="search" name="filter" value="{filter}" placeholder="Search names"></label>
  <label>Architecture <select name="architecture">{architectures}</select></label>
  <label>Category <select name="category">{categories}</select></label>
  <label>Tags <input type="text" name="tag" value="{tags}" placeholder="qt:5.12, neptune"{invalid}></label>
{error}  <button type="submit">Filter</button>
</form>
"#,
        filter = escape(query.filter.as_deref().unwrap_or("")),
        architectures = options("any", architectures, query.architecture.as_deref()),
        categories = options("any", categories, query.category.as_deref()),
        tags = escape(&tags),
    );
}

fn render_upload(html: &mut String, info: &PageInfo<'_>) {
    let _ = write!(
        html,
        r#"<section class="upload" id="upload">
  <label class="drop" id="drop">
    <input type="file" id="file" accept=".ampkg,.appkg,application/gzip" multiple>
    <span>Drop <strong>.ampkg</strong> packages here, or click to choose{token}</span>
  </label>
  <progress id="progress" max="1" value="0" hidden></progress>
  <ul id="results" class="results"></ul>
</section>
"#,
        token = if info.needs_token {
            " (uploads need the server's token)"
        } else {
            ""
        }
    );
}

fn render_empty_store(html: &mut String, info: &PageInfo<'_>) {
    let _ = write!(
        html,
        r#"<div class="empty" id="empty-store">
  <h2>No packages yet</h2>
  <p>Drop a package above, upload it with curl:</p>
  <pre><code>curl -T app.ampkg {auth}http://{host}/package/upload</code></pre>
  <p>or copy it into the folder <code>{folder}</code>.</p>
</div>
"#,
        auth = if info.needs_token {
            "-H 'Authorization: Bearer &lt;token&gt;' "
        } else {
            ""
        },
        host = escape(&info.host),
        folder = escape(&info.upload_folder),
    );
}

/// What the page shows beside the packages, for `state`.
fn page_info(state: &State, host: String, filter_error: Option<(String, String)>) -> PageInfo<'_> {
    let store = &state.store;
    PageInfo {
        project_id: &state.project_id,
        verifies_uploads: store.verifies_developer_signatures(),
        signs_downloads: store.signer.is_some(),
        needs_token: state.upload_token.is_some(),
        version: concat!("appman-package-server ", env!("CARGO_PKG_VERSION")),
        upload_folder: store.upload_dir.display().to_string(),
        host,
        filter_error,
    }
}

/// The page as an answer with `status`.
fn html_response(status: u16, body: Body) -> Response {
    guarded(Response {
        status,
        headers: vec![
            ("Content-Type", "text/html; charset=utf-8".into()),
            ("Cache-Control", "no-cache".into()),
        ],
        body,
        close: false,
        log_note: None,
    })
}

/// The page for filters the server could not take (`message`, the tags as `given`): the
/// form with the message next to the field, and no packages; 400.
pub fn filter_error_page(state: &State, message: &str, given: &str) -> Response {
    let info = page_info(
        state,
        String::new(),
        Some((message.to_string(), given.to_string())),
    );
    let html = render(&info, &ListQuery::default(), &[], &[], &[], false);
    html_response(400, Body::Bytes(html.into_bytes()))
}

/// The `/` route: the page for the request's filters, built once per store change (and host
/// name) and shared like the lists.
pub fn index_page(request: &Request<'_>, state: &State, query: ListQuery) -> Response {
    let host = request
        .headers
        .host
        .clone()
        .unwrap_or_else(|| "localhost:8020".to_string());
    let key = AnswerKey::Page(query.clone(), host.clone());
    let answer = state.store.answer(key, |store| {
        let (entries, architectures, categories, empty) = {
            let index = store.index();
            // Each with the other versions and variants of its id and architecture.
            let entries: Vec<(Arc<Entry>, Vec<Arc<Entry>>)> = index
                .list_entries(&query)
                .into_iter()
                .map(|e| {
                    let mut others = index.matching(e.id(), Some(e.arch()), None);
                    others.retain(|o| !Arc::ptr_eq(o, &e));
                    (e, others)
                })
                .collect();
            let mut architectures: Vec<String> =
                index.all().map(|e| e.arch().to_string()).collect();
            architectures.sort();
            architectures.dedup();
            (entries, architectures, index.categories(), index.is_empty())
        };
        let info = page_info(state, host, None);
        render(&info, &query, &entries, &architectures, &categories, empty).into_bytes()
    });
    match answer {
        Ok(answer) => html_response(200, Body::Shared(answer.bytes)),
        Err(error) => guarded(Response::unanswerable(&error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_html_treats_specially() {
        assert_eq!(
            escape(r#"<script>alert("x&y")</script>'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"
        );
    }
}
