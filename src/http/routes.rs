/*!
The REST API of SPEC.md as plain functions: one `match` on the path picks the handler, a known
path with a method it does not take answers 405 with `Allow`, anything else 404.
*/

use super::conditional::Validators;
use super::origin::{HostPolicy, cross_origin};
use super::page;
use super::{Body, Method, Request, Response, Tail};
use crate::console::Event;
use crate::fsutil::TempFile;
use crate::package::WRONG_FILE_TYPE;
use crate::package::digest::to_hex;
use crate::package::tags::{self, TagFilter};
use crate::store::answers::{Answer, AnswerError};
use crate::store::index::content_etag;
use crate::store::index::{Entry, Icon, ListQuery};
use crate::store::{InstallError, Store};
use serde_json::json;
use std::io::{self, Read, Write};
use std::sync::Arc;

/// What the routes need.
pub struct State {
    pub store: Arc<Store>,
    pub project_id: String,
    /// The bearer token uploads and removals need, when set.
    pub upload_token: Option<String>,
    /// The host names answered to.
    pub hosts: HostPolicy,
}

/// A route's handler.
type Handler = fn(&mut Request<'_>, &State) -> Response;

/// The route of `path`: the methods it takes and its handler. HEAD is answered wherever GET
/// is (the server sends the head only).
fn route(path: &str) -> Option<(&'static [Method], Handler)> {
    use Method::*;
    Some(match path {
        "/" | "/index.html" => (&[Get, Head], index_page),
        p if p.starts_with("/static/") => (&[Get, Head], static_asset),
        "/hello" => (&[Get, Head, Post], hello),
        "/package/list" => (&[Get, Head, Post], package_list),
        "/package/icon" => (&[Get, Head, Post], package_icon),
        "/package/download" => (&[Get, Head, Post], package_download),
        "/package/upload" => (&[Put], package_upload),
        "/package/remove" => (&[Post], package_remove),
        "/category/list" => (&[Get, Head, Post], category_list),
        _ => return None,
    })
}

/// Whether `path` takes `method`: only then is a form body read for parameters.
pub fn takes(path: &str, method: Method) -> bool {
    route(path).is_some_and(|(allowed, _)| allowed.contains(&method))
}

/// Dispatch one request.
pub fn handle(request: &mut Request<'_>, state: &State) -> Response {
    if let Some(refusal) = state.hosts.refusal(request.headers.host.as_deref()) {
        return Response::fail(421, &refusal).closing();
    }
    let Some((allowed, handler)) = route(&request.path) else {
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
    if writes
        && let Some(refusal) = cross_origin(
            request.headers.origin.as_deref(),
            request.headers.sec_fetch_site.as_deref(),
            request.headers.host.as_deref(),
        )
    {
        return Response::fail(403, &refusal).closing();
    }
    if writes
        && let Some(token) = &state.upload_token
        && !authorized(request, token)
    {
        return unauthorized(request, state);
    }
    handler(request, state)
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
        .select(id, architecture, &tags)
        .ok_or_else(Response::not_found)
}

fn package_icon(request: &mut Request<'_>, state: &State) -> Response {
    let entry = match selected(request, state) {
        Ok(entry) => entry,
        Err(answer) => return answer,
    };
    if let Icon::None = entry.icon {
        return Response::not_found();
    }
    let validators = Validators {
        etag: format!("\"{}-icon\"", to_hex(&entry.info.sha1)),
        last_modified: Some(entry.modified),
    };
    validators.respond(request, || {
        let body = match &entry.icon {
            Icon::None => return Response::not_found(),
            Icon::InMemory(bytes) => Body::Shared(bytes.clone()),
            Icon::InPackage { .. } => match entry.icon_from_package(&state.store.limits) {
                Ok((length, reader)) => Body::Reader {
                    reader,
                    length,
                    skip: 0,
                },
                Err(_) if state.store.forget_if_gone(&entry) => return Response::not_found(),
                Err(e) => {
                    let reason = format!("could not read the icon: {e}");
                    return download_failed(state, &entry, &reason);
                }
            },
        };
        Response {
            status: 200,
            headers: vec![
                ("Content-Type", "image/png".into()),
                ("Accept-Ranges", "bytes".into()),
            ],
            body,
            close: false,
            log_note: None,
        }
    })
}

fn package_download(request: &mut Request<'_>, state: &State) -> Response {
    // An entry whose file was replaced between lookup and open is looked up once more.
    for _ in 0..2 {
        let entry = match selected(request, state) {
            Ok(entry) => entry,
            Err(answer) => return answer,
        };
        let attachment = format!("attachment; filename=\"{}\"", entry.file_name());
        let hardware_id = request.param("hardware-id").unwrap_or("");
        let validators = match &state.store.signer {
            None => Validators {
                etag: format!("\"{}\"", to_hex(&entry.info.sha1)),
                last_modified: Some(entry.modified),
            },
            Some(signer) => Validators {
                etag: signer.etag(&entry, hardware_id),
                last_modified: Some(signer.last_modified(&entry)),
            },
        };
        if let Some(not_modified) = validators.not_modified(request.method, &request.headers) {
            return not_modified;
        }
        let body = match &state.store.signer {
            None => match entry.open().and_then(|f| Ok((f.metadata()?.len(), f))) {
                Ok((length, file)) => Body::File {
                    file,
                    length,
                    tail: Tail::default(),
                    range: None,
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Replaced meanwhile (look again), or deleted under us (forget it).
                    state.store.forget_if_gone(&entry);
                    continue;
                }
                Err(e) => return download_failed(state, &entry, &e.to_string()),
            },
            Some(signer) => match signer.sign(&entry, hardware_id) {
                Ok(signed) => Body::File {
                    file: signed.body,
                    length: signed.body_length,
                    tail: Tail(signed.tail),
                    range: None,
                },
                Err(_) if state.store.forget_if_gone(&entry) => continue,
                Err(reason) => {
                    return download_failed(
                        state,
                        &entry,
                        &format!("store signing failed: {reason}"),
                    );
                }
            },
        };
        return validators.apply(Response {
            status: 200,
            headers: vec![
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Disposition", attachment),
                ("Accept-Ranges", "bytes".into()),
            ],
            body,
            close: false,
            log_note: Some(format!(
                "package {} hardware-id {}",
                entry.file_name(),
                if hardware_id.is_empty() {
                    "-"
                } else {
                    hardware_id
                }
            )),
        });
    }
    Response::not_found()
}

fn download_failed(state: &State, entry: &Entry, reason: &str) -> Response {
    state.store.console.event(&Event::Failed {
        file: entry.file_name(),
        reason: reason.to_string(),
    });
    Response::status(500, "Internal Server Error")
}

fn package_upload(request: &mut Request<'_>, state: &State) -> Response {
    let store = &state.store;
    let limit = store.limits.max_package_size;
    // A failure before the whole body was read closes the connection: its rest is useless.
    let failed = |file: &str, status: u16, message: String| {
        store.report(
            "Upload via HTTP:",
            &[Event::Failed {
                file: file.to_string(),
                reason: message.clone(),
            }],
        );
        let mut response = Response::json(&json!({ "status": "fail", "message": message }));
        response.status = status;
        response.close = status != 200 && status != 503;
        response
    };
    // Failures are logged under the client's address (the file is only ours).
    let name = match request.client {
        Some(client) => format!("upload from {client}"),
        None => "upload".to_string(),
    };
    if request.content_length.is_some_and(|n| n > limit) {
        return failed(&name, 200, too_large(limit)).closing();
    }
    // A server fault (a full disk, an I/O error) is never the client's: 503 with
    // `Retry-After`, which curl --retry and CI scripts retry, after reading the body to its
    // end so that the client sees the answer.
    let server_fault = |body: &mut dyn Read, message: String| {
        let drained =
            io::copy(&mut body.take(limit + 1), &mut io::sink()).is_ok_and(|n| n <= limit);
        let mut response = failed(&name, 503, message).with_header("Retry-After", "10");
        response.close = !drained;
        response
    };
    let mut temp = match store.upload_file() {
        Ok(t) => t,
        Err(e) => return server_fault(request.body, format!("could not store the upload: {e}")),
    };
    match receive_body(request.body, &mut temp, limit, request.content_length) {
        Ok(()) => {}
        // The package was never complete: a client or transport error.
        Err(Received::Broken(message)) => return failed(&name, 400, message),
        Err(Received::NotStored(message)) => {
            drop(temp);
            return server_fault(request.body, message);
        }
        Err(Received::TooLarge) => return failed(&name, 200, too_large(limit)).closing(),
        // Qt's words for an empty upload, as for anything that is not gzip.
        Err(Received::Empty) => return failed(&name, 200, "wrong package format".into()),
    }
    match store.install_upload(temp) {
        Ok(installed) => {
            store.report("Upload via HTTP:", &installed.events());
            Response::json(&json!({
                "status": "ok",
                "result": installed.result.as_str(),
                "id": installed.id,
                "architecture": installed.arch,
            }))
        }
        // Qt's words for an upload that is not gzip at all.
        Err(InstallError::Rejected(m)) if m == WRONG_FILE_TYPE => {
            failed(&name, 200, "wrong package format".to_string())
        }
        Err(InstallError::Server(message)) => {
            failed(&name, 503, message).with_header("Retry-After", "10")
        }
        Err(error) => failed(&name, 200, error.message().to_string()),
    }
}

/// Why an upload body could not be received.
enum Received {
    Broken(String),
    /// Our fault: the body could not be written (a full disk).
    NotStored(String),
    TooLarge,
    Empty,
}

fn too_large(limit: u64) -> String {
    format!("the package is larger than the maximum package size of {limit} bytes")
}

/// Copy the request body into `temp`, refusing more than `limit` bytes, and checking it
/// is as long as the client announced.
fn receive_body(
    body: &mut dyn Read,
    temp: &mut TempFile,
    limit: u64,
    announced: Option<u64>,
) -> Result<(), Received> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Received::Broken(format!("the upload was interrupted: {e}"))),
        };
        total += n as u64;
        if total > limit {
            return Err(Received::TooLarge);
        }
        temp.write_all(&buffer[..n])
            .map_err(|e| Received::NotStored(format!("could not store the upload: {e}")))?;
    }
    if let Some(announced) = announced
        && total < announced
    {
        return Err(Received::Broken(format!(
            "the upload ended after {total} of {announced} bytes"
        )));
    }
    if total == 0 {
        return Err(Received::Empty);
    }
    temp.flush()
        .map_err(|e| Received::NotStored(format!("could not store the upload: {e}")))
}

fn package_remove(request: &mut Request<'_>, state: &State) -> Response {
    let store = &state.store;
    let id = request.non_empty_param("id");
    let arch = request.non_empty_param("architecture");
    let removed = match id {
        Some(id) => store.remove(id, arch),
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
