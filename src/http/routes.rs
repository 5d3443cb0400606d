/*!
The REST API of SPEC.md as plain functions: one `match` on the path picks the handler, a known
path with a method it does not take answers 405 with `Allow`, anything else 404.
*/

use super::conditional::Validators;
use super::origin::cross_origin;
use super::page;
pub use super::state::State;
use super::{Body, Method, Request, Response, ds, serve};
use crate::console::Event;
use crate::metrics::Route;
use crate::package::tags::{self, TagFilter};
use crate::store::answers::{Answer, AnswerError};
use crate::store::index::content_etag;
use crate::store::index::{Entry, ListQuery};
use crate::store::{Store, UploadOutcome};
use serde_json::json;
use std::sync::Arc;

/// A route's handler.
type Handler = fn(&mut Request<'_>, &State) -> Response;

/// The route of `path`: its name in metrics, the methods it takes and its handler. HEAD is
/// answered wherever GET is (the server sends the head only).
fn route(path: &str) -> Option<(Route, &'static [Method], Handler)> {
    use Method::*;
    Some(match path {
        "/" | "/index.html" => (Route::Page, &[Get, Head], index_page),
        p if p.starts_with("/static/") => (Route::Static, &[Get, Head], static_asset),
        "/hello" => (Route::Hello, &[Get, Head, Post], hello),
        "/package/list" => (Route::PackageList, &[Get, Head, Post], package_list),
        "/package/icon" => (Route::PackageIcon, &[Get, Head, Post], package_icon),
        "/package/download" => (Route::PackageDownload, &[Get, Head, Post], package_download),
        "/package/upload" => (Route::PackageUpload, &[Put], super::upload::package_upload),
        "/package/remove" => (Route::PackageRemove, &[Post], package_remove),
        "/category/list" => (Route::CategoryList, &[Get, Head, Post], category_list),
        "/metrics" => (Route::Metrics, &[Get, Head], metrics),
        "/login" => (Route::Login, &[Get, Head, Post], ds::login),
        "/logout" => (Route::Logout, &[Get, Head, Post], ds::logout),
        "/app/list" => (Route::AppList, &[Get, Head, Post], ds::app_list),
        "/app/icon" => (Route::AppIcon, &[Get, Head, Post], ds::app_icon),
        "/app/description" => (
            Route::AppDescription,
            &[Get, Head, Post],
            ds::app_description,
        ),
        "/app/purchase" => (Route::AppPurchase, &[Get, Head, Post], ds::app_purchase),
        p if p.starts_with("/app/download/") => {
            (Route::AppDownload, &[Get, Head], ds::app_download)
        }
        "/category/icon" => (Route::CategoryIcon, &[Get, Head, Post], ds::category_icon),
        "/upload" => (Route::Upload, &[Post], ds::upload),
        _ => return None,
    })
}

/// Whether `path` takes `method`: only then is a form body read for parameters.
pub fn takes(path: &str, method: Method) -> bool {
    route(path).is_some_and(|(_, allowed, _)| allowed.contains(&method))
}

/// The route `path` counts under in metrics.
pub fn route_of(path: &str) -> Route {
    route(path).map_or(Route::Other, |(route, _, _)| route)
}

/// Dispatch one request.
pub fn handle(request: &mut Request<'_>, state: &State) -> Response {
    if let Some(refusal) = state.hosts.refusal(request.headers.host.as_deref()) {
        return Response::fail(421, &refusal).closing();
    }
    let Some((_, allowed, handler)) = route(&request.path) else {
        return Response::not_found();
    };
    if !allowed.contains(&request.method) {
        let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
        // A package POSTed by mistake (curl --data-binary) gets told what to do.
        let message = match request.path.as_str() {
            "/package/upload" => {
                "Method Not Allowed: upload packages with PUT (curl -T package.ampkg URL)"
            }
            _ => "Method Not Allowed",
        };
        return Response::status(405, message)
            .with_header("Allow", allow.join(", "))
            .closing();
    }
    let writes = matches!(request.method, Method::Put | Method::Post)
        && matches!(request.path.as_str(), "/package/upload" | "/package/remove");
    let ds_upload = request.method == Method::Post && request.path == "/upload";
    if (writes || ds_upload)
        && let Some(refusal) = cross_origin(
            request.headers.origin.as_deref(),
            request.headers.sec_fetch_site.as_deref(),
            request.headers.host.as_deref(),
        )
    {
        count_refused_upload(request, state);
        return Response::fail(403, &refusal).closing();
    }
    if writes
        && let Some(token) = &state.upload_token
        && !authorized(request, token)
    {
        count_refused_upload(request, state);
        return unauthorized(request, state);
    }
    handler(request, state)
}

/// An upload refused before it was read (another site's page, no token) is the client's fault.
fn count_refused_upload(request: &Request<'_>, state: &State) {
    if request.method == Method::Put || request.path == "/upload" {
        state.store.counters.upload(UploadOutcome::ClientFault);
    }
}

/// `GET /metrics`: OpenMetrics when the scraper accepts it (Prometheus does), else the
/// Prometheus text format; 404 with `--no-metrics`.
fn metrics(request: &mut Request<'_>, state: &State) -> Response {
    let Some(metrics) = &state.metrics else {
        return Response::not_found();
    };
    let openmetrics = request
        .headers
        .accept
        .as_deref()
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let (text, content_type) = match metrics.encode(openmetrics) {
        Ok(text) if openmetrics => (
            text,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        Ok(text) => (text, "text/plain; version=0.0.4; charset=utf-8"),
        Err(_) => return Response::status(500, "Internal Server Error"),
    };
    Response {
        status: 200,
        headers: vec![
            ("Content-Type", content_type.into()),
            ("Cache-Control", "no-store".into()),
        ],
        body: Body::Bytes(text.into_bytes()),
        close: false,
        log_note: None,
    }
}

/// Whether the request carries `Authorization: Bearer <token>` (compared in constant time).
fn authorized(request: &Request<'_>, token: &str) -> bool {
    let Some(value) = &request.headers.authorization else {
        return false;
    };
    let Some((scheme, given)) = value.trim().split_once(' ') else {
        return false;
    };
    // Hashes of equal length: neither the bytes nor the length of the token leak by timing.
    let (given, expected) = (
        openssl::sha::sha256(given.trim().as_bytes()),
        openssl::sha::sha256(token.as_bytes()),
    );
    scheme.eq_ignore_ascii_case("Bearer") && openssl::memcmp::eq(&given, &expected)
}

/// 401 with the fail JSON, said on the console as a failed upload or removal is; the
/// connection closes when the body was not read (an upload).
fn unauthorized(request: &Request<'_>, state: &State) -> Response {
    let message = match &request.headers.authorization {
        None => "this server needs an upload token: send 'Authorization: Bearer <token>'",
        Some(_) => "the upload token is wrong",
    };
    let (heading, what) = match request.method {
        Method::Put => ("Upload via HTTP:", "upload"),
        _ => ("Remove via HTTP:", "removal"),
    };
    let file = match request.client {
        Some(client) => format!("{what} from {client}"),
        None => what.to_string(),
    };
    state.store.report(
        heading,
        &[Event::Failed {
            file,
            reason: message.to_string(),
        }],
    );
    let mut response = Response::json(&json!({ "status": "fail", "message": message }));
    response.status = 401;
    response.with_header("WWW-Authenticate", "Bearer realm=\"appman-package-server\"")
}

fn hello(request: &mut Request<'_>, state: &State) -> Response {
    // The Deployment Server's clients send a platform; Qt's a project id.
    if request.param("platform").is_some() {
        return ds::hello(request, state);
    }
    // The Deployment Server's word for a malformed tag, before anything else.
    let status = if tag_filter(request).is_err() {
        "malformed-tag"
    } else if request.param("project-id") == Some(state.project_id.as_str()) {
        "ok"
    } else {
        "incompatible-project-id"
    };
    Response::json(&json!({ "status": status }))
}

/// The `tag` (include) and `exclude-tag` parameters: comma-separated lists, each parameter
/// possibly repeated. A malformed tag is the error.
fn tag_filter(request: &Request<'_>) -> Result<TagFilter, String> {
    Ok(TagFilter {
        include: tags::parse_requested(request.params_named("tag"))?,
        exclude: tags::parse_requested(request.params_named("exclude-tag"))?,
    })
}

/// 400 with the fail JSON, for a malformed parameter.
fn malformed(message: String) -> Response {
    Response::fail(400, &message)
}

/// The filters of `/package/list` (and of the page): `Err` with the message for a malformed
/// tag.
fn list_query(request: &Request<'_>) -> Result<ListQuery, String> {
    Ok(ListQuery {
        category: request.non_empty_param("category").map(str::to_string),
        filter: request.non_empty_param("filter").map(str::to_string),
        architecture: request.non_empty_param("architecture").map(str::to_string),
        tags: tag_filter(request)?,
        version: request.non_empty_param("version").map(str::to_string),
    })
}

/// The page for people (`page`), for the list's filters.
fn index_page(request: &mut Request<'_>, state: &State) -> Response {
    match list_query(request) {
        Ok(query) => page::index_page(request, state, query),
        // Shown on the page, next to the field, not as JSON in place of the page.
        Err(message) => {
            let given: Vec<&str> = request
                .params_named("tag")
                .chain(request.params_named("exclude-tag"))
                .collect();
            page::filter_error_page(state, &message, &given.join(", "))
        }
    }
}

/// The page's script, style and placeholder icon, compiled into the binary.
fn static_asset(request: &mut Request<'_>, _: &State) -> Response {
    let Some((content_type, text)) = page::asset(&request.path) else {
        return Response::not_found();
    };
    let validators = Validators {
        etag: content_etag(text.as_bytes()),
        last_modified: None,
    };
    page::guarded(validators.respond(request, || Response {
        status: 200,
        headers: vec![
            ("Content-Type", content_type.into()),
            ("Cache-Control", "no-cache".into()),
        ],
        body: Body::Bytes(text.as_bytes().to_vec()),
        close: false,
        log_note: None,
    }))
}

fn package_list(request: &mut Request<'_>, state: &State) -> Response {
    let query = match list_query(request) {
        Ok(query) => query,
        Err(message) => return malformed(message),
    };
    shared_json(request, state.store.list_json(&query))
}

fn category_list(request: &mut Request<'_>, state: &State) -> Response {
    // A client with the Deployment Server's session cookie gets its objects.
    if ds::session::has_cookie(request.headers.cookie.as_deref()) {
        return ds::category_list(request, state);
    }
    shared_json(request, state.store.categories_json())
}

/// A shared JSON answer with its validators, or why there is none.
fn shared_json(request: &Request<'_>, answer: Result<Answer, AnswerError>) -> Response {
    match answer {
        Ok(answer) => {
            let validators = Validators {
                etag: answer.etag,
                last_modified: None,
            };
            validators.respond(request, || Response::json_body(Body::Shared(answer.bytes)))
        }
        Err(error) => Response::unanswerable(&error),
    }
}

/// The package `id`/`architecture` and the tag parameters select (see `Index::select`):
/// `Err` with the answer when there is none or a tag is malformed.
fn selected(request: &Request<'_>, state: &State) -> Result<Arc<Entry>, Response> {
    let tags = tag_filter(request).map_err(malformed)?;
    let id = request
        .non_empty_param("id")
        .ok_or_else(Response::not_found)?;
    let architecture = request.non_empty_param("architecture");
    state
        .store
        .index()
        .select(id, architecture, request.non_empty_param("version"), &tags)
        .ok_or_else(Response::not_found)
}

fn package_icon(request: &mut Request<'_>, state: &State) -> Response {
    match selected(request, state) {
        Ok(entry) => serve::icon(request, state, &entry),
        Err(answer) => answer,
    }
}

fn package_download(request: &mut Request<'_>, state: &State) -> Response {
    // An entry whose file was replaced between lookup and open is looked up once more.
    for _ in 0..2 {
        let entry = match selected(request, state) {
            Ok(entry) => entry,
            Err(answer) => return answer,
        };
        let hardware_id = request.param("hardware-id").unwrap_or("").to_string();
        match serve::download(request, state, &entry, &hardware_id) {
            Ok(response) => return response,
            Err(serve::Gone) => continue,
        }
    }
    Response::not_found()
}

fn package_remove(request: &mut Request<'_>, state: &State) -> Response {
    let store = &state.store;
    let id = request.non_empty_param("id");
    let arch = request.non_empty_param("architecture");
    let removed = match id {
        Some(id) => store.remove(id, arch, request.non_empty_param("version")),
        None => Vec::new(),
    };
    // Qt's words: ` = skipping <id> [<arch>] (no match)`, `[<any>]` without an architecture.
    let pattern = format!("{} [{}]", id.unwrap_or("<no id>"), arch.unwrap_or("<any>"));
    store.report(
        "Remove via HTTP:",
        &Store::removal_lines(&removed, &pattern),
    );
    let status = if removed.is_empty() { "fail" } else { "ok" };
    Response::json(&json!({ "status": status, "removed": removed.len() }))
}
