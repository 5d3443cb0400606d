/*!
The Deployment Server's catalogue and purchases: `/app/list`, `/app/icon`, `/app/description`,
`/category/list`, `/category/icon`, `/app/purchase` and `/app/download/<name>`.

Selection is the Deployment Server's: packages that pass the session's required and
conflicting tags, of the session's architecture or `All` (without an architecture in the
session only `All`), the native one preferred, then the newest version. Category ids are the
first 31 bits of the SHA-256 of the name (never 0 or -1), so they stay the same across restarts
and uploads without any state; `-1` is the `All` metacategory.
*/

use super::{Session, base_url, session_filter, session_of, with_session};
use crate::http::serve::{self, Gone};
use crate::http::state::State;
use crate::http::{Body, Request, Response};
use crate::package::abi;
use crate::package::digest::to_hex;
use crate::store::answers::AnswerKey;
use crate::store::index::{Entry, Icon, percent_encode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A 1x1 transparent PNG: the icon of a category without one.
const EMPTY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];
/// Longest `device_id` put into a download URL.
const MAX_DEVICE_ID: usize = 256;

/// The stable id of category `name`.
pub fn category_id(name: &str) -> i64 {
    let hash = openssl::sha::sha256(name.as_bytes());
    let id = i64::from(u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]) & 0x7fff_ffff);
    id.max(1)
}

/// The categories `entry` is in: the one its upload gave, then its manifest's.
fn categories(entry: &Entry) -> impl Iterator<Item = &str> {
    let uploaded = entry.extras.as_ref().map(|x| x.category.as_str());
    uploaded
        .into_iter()
        .chain(entry.info.categories.iter().map(String::as_str))
        .filter(|c| !c.is_empty())
}

/// A text in English, else the first language's.
fn english(texts: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    texts
        .get("en")
        .or_else(|| texts.values().next())
        .map(String::as_str)
}

/// How the session ranks `entry`: native 1, `All` 0, another architecture not at all.
fn rank(session: &Session) -> impl Fn(&Entry) -> Option<u8> + '_ {
    move |entry: &Entry| {
        if entry.arch() == "all" {
            Some(0)
        } else {
            let native = abi::deployment_name(entry.arch());
            (session.architecture.as_deref() == Some(native.as_str())).then_some(1)
        }
    }
}

/// The package of `id` the session selects.
fn select(state: &State, session: &Session, id: &str) -> Option<Arc<Entry>> {
    let tags = session_filter(session);
    state
        .store
        .index()
        .select_by(id, None, &tags, rank(session))
}

/// The package whose SHA-1 is `hex`.
fn by_sha1(state: &State, hex: &str) -> Option<Arc<Entry>> {
    let index = state.store.index();
    index.all().find(|e| to_hex(&e.info.sha1) == hex).cloned()
}

/// `/app/list`.
pub fn app_list(request: &mut Request<'_>, state: &State) -> Response {
    let session = session_of(request, state).unwrap_or_default();
    let filter = request.param("filter").unwrap_or("").to_lowercase();
    let category = match request.param("category_id").map(str::trim) {
        None | Some("") | Some("-1") => None,
        Some(id) => match id.parse::<i64>() {
            Ok(id) => Some(id),
            // Not a number: no category has it.
            Err(_) => Some(0),
        },
    };
    let base = base_url(request, state);
    // What selects (not the session's expiry or user): equal requests share one answer.
    let selects = (
        &session.architecture,
        &session.require_tags,
        &session.conflicts_tags,
    );
    let key = serde_json::to_string(&("list", selects, &filter, category, &base));
    let answer = state
        .store
        .answer(AnswerKey::Deployment(key.unwrap_or_default()), |store| {
            let entries: Vec<Arc<Entry>> = {
                let index = store.index();
                let ids: BTreeSet<&str> = index.all().map(|e| e.id()).collect();
                let tags = session_filter(&session);
                ids.into_iter()
                    .filter_map(|id| index.select_by(id, None, &tags, rank(&session)))
                    .collect()
            };
            let items: Vec<Value> = entries
                .iter()
                .filter(|e| category.is_none_or(|c| categories(e).any(|n| category_id(n) == c)))
                .filter(|e| {
                    filter.is_empty()
                        || e.info
                            .names
                            .values()
                            .any(|n| n.to_lowercase().contains(&filter))
                })
                .map(|e| item(e, &base))
                .collect();
            serde_json::to_vec(&items).unwrap_or_else(|_| b"[]".to_vec())
        });
    shared(answer, "application/json")
}

/// A shared answer (see `store::answers`), or why there is none.
fn shared(
    answer: Result<crate::store::answers::Answer, crate::store::answers::AnswerError>,
    content_type: &str,
) -> Response {
    match answer {
        Ok(answer) => {
            let mut response = Response::json_body(Body::Shared(answer.bytes));
            response.headers = vec![("Content-Type", content_type.to_string())];
            response
        }
        Err(error) => Response::unanswerable(&error),
    }
}

/// One element of `/app/list`.
fn item(entry: &Entry, base: &str) -> Value {
    let info = &entry.info;
    let extras = entry.extras.as_ref();
    let category = categories(entry).next().unwrap_or("");
    let brief = extras
        .map(|x| x.short_description.as_str())
        .filter(|s| !s.is_empty())
        .or_else(|| english(&info.descriptions))
        .unwrap_or("");
    json!({
        "id": info.id,
        "name": english(&info.names).unwrap_or(&info.id),
        "vendor": extras.map_or("", |x| x.vendor.as_str()),
        "category": category,
        "category_id": if category.is_empty() { 0 } else { category_id(category) },
        "tags": info.tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "conflict_tags": Vec::<String>::new(),
        "version": entry.version(),
        "architecture": abi::deployment_name(entry.arch()),
        "briefDescription": brief,
        "purchaseId": to_hex(&info.sha1),
        "iconUrl": format!("{base}/app/icon?id={}&purchaseId={}", percent_encode(&info.id), to_hex(&info.sha1)),
    })
}

/// `/app/icon`: `architecture` (the client's form) overrides the session's; `purchaseId`
/// (ours, in `iconUrl`) names exactly one package.
pub fn app_icon(request: &mut Request<'_>, state: &State) -> Response {
    let entry = if let Some(hex) = request.non_empty_param("purchaseId") {
        by_sha1(state, hex)
    } else {
        let mut session = session_of(request, state).unwrap_or_default();
        if let Some(requested) = request.param("architecture") {
            session.architecture = abi::normalize_requested(requested);
        }
        let id = request.non_empty_param("id").unwrap_or("");
        select(state, &session, id)
    };
    match entry {
        Some(entry) => serve::icon(request, state, &entry),
        None => Response::not_found(),
    }
}

/// `/app/description`: what the upload said, else the manifest's description.
pub fn app_description(request: &mut Request<'_>, state: &State) -> Response {
    let session = session_of(request, state).unwrap_or_default();
    let id = request.non_empty_param("id").unwrap_or("");
    let Some(entry) = select(state, &session, id) else {
        return Response::not_found();
    };
    // Shared like the lists: clients that never read hold no copy of their own.
    let key = AnswerKey::Deployment(format!("description {}", to_hex(&entry.info.sha1)));
    let answer = state.store.answer(key, |_| {
        let text = entry
            .extras
            .as_ref()
            .map(|x| x.description.as_str())
            .filter(|d| !d.is_empty())
            .or_else(|| english(&entry.info.descriptions))
            .unwrap_or("");
        text.as_bytes().to_vec()
    });
    // Plain text: a description is never run as a page of ours.
    shared(answer, "text/plain; charset=utf-8")
}

/// `/category/list` for a client of this API: `All` first, then every category by name.
pub fn category_list(request: &mut Request<'_>, state: &State) -> Response {
    let key = AnswerKey::Deployment("categories".to_string());
    let answer = state.store.answer(key, |store| {
        let names: BTreeSet<String> = {
            let index = store.index();
            index
                .all()
                .flat_map(|e| categories(e).map(str::to_string).collect::<Vec<_>>())
                .collect()
        };
        let mut list = vec![json!({ "id": -1, "name": "All" })];
        list.extend(
            names
                .iter()
                .map(|n| json!({ "id": category_id(n), "name": n })),
        );
        serde_json::to_vec(&list).unwrap_or_else(|_| b"[]".to_vec())
    });
    let session = session_of(request, state).unwrap_or_default();
    with_session(shared(answer, "application/json"), &session, state)
}

/// `/category/icon`: the icon of an app in that category, else an empty PNG.
pub fn category_icon(request: &mut Request<'_>, state: &State) -> Response {
    let wanted = request
        .param("id")
        .and_then(|id| id.trim().parse::<i64>().ok());
    let entry = {
        let index = state.store.index();
        index
            .all()
            .filter(|e| !matches!(e.icon, Icon::None))
            .find(|e| wanted.is_some_and(|w| w == -1 || categories(e).any(|n| category_id(n) == w)))
            .cloned()
    };
    match entry {
        Some(entry) => serve::icon(request, state, &entry),
        None => Response {
            status: 200,
            headers: vec![("Content-Type", "image/png".into())],
            body: Body::Bytes(EMPTY_PNG.to_vec()),
            close: false,
            log_note: None,
        },
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn failed(error: &str) -> Response {
    Response::json(&json!({ "status": "failed", "error": error }))
}

/// `/app/purchase`: for a logged-in session, a download URL of the selected package, valid
/// for the configured time.
pub fn app_purchase(request: &mut Request<'_>, state: &State) -> Response {
    let Some(session) = session_of(request, state).filter(|s| s.user.is_some()) else {
        let mut response = failed("not logged in: call /login first");
        response.status = 403;
        return response;
    };
    let ds = &state.deployment;
    let device = if ds.bind_to_device {
        match request.non_empty_param("device_id") {
            Some(device) if device.len() <= MAX_DEVICE_ID => device,
            Some(_) => return failed("device_id is too long"),
            None => return failed("device_id required"),
        }
    } else {
        ""
    };
    let entry = match (
        request.non_empty_param("id"),
        request.non_empty_param("purchaseId"),
    ) {
        (Some(id), _) => select(state, &session, id),
        (None, Some(hex)) => by_sha1(state, hex),
        (None, None) => return failed("no id or purchaseId given"),
    };
    let Some(entry) = entry else {
        let id = request
            .param("id")
            .or(request.param("purchaseId"))
            .unwrap_or("");
        return failed(&format!("no such application: {id}"));
    };
    let expiry = now() + ds.download_expiry;
    let Some(name) = download_name(state, &entry, expiry, device) else {
        return failed("could not sign the download URL");
    };
    let url = format!("{}/app/download/{name}", base_url(request, state));
    with_session(
        Response::json(&json!({ "status": "ok", "url": url, "expiresIn": ds.download_expiry })),
        &session,
        state,
    )
}

/// `<sha1>-<expiry>-<device in hex>-<mac>.ampkg`.
fn download_name(state: &State, entry: &Entry, expiry: u64, device: &str) -> Option<String> {
    let sha1 = to_hex(&entry.info.sha1);
    let device = to_hex(device.as_bytes());
    let mac = state
        .deployment
        .key
        .mac(mac_input(&sha1, expiry, &device).as_bytes())?;
    Some(format!("{sha1}-{expiry}-{device}-{mac}.ampkg"))
}

fn mac_input(sha1: &str, expiry: u64, device: &str) -> String {
    format!("download\n{sha1}\n{expiry}\n{device}")
}

/// `/app/download/<name>`: the package, exactly as `/package/download` serves it, while the
/// name is authentic and unexpired; 404 otherwise.
pub fn app_download(request: &mut Request<'_>, state: &State) -> Response {
    let name = request.path.trim_start_matches("/app/download/");
    let Some((sha1, expiry, device)) = parse_download_name(state, name) else {
        return Response::not_found();
    };
    if expiry <= now() {
        return Response::not_found();
    }
    for _ in 0..2 {
        let Some(entry) = by_sha1(state, &sha1) else {
            return Response::not_found();
        };
        match serve::download(request, state, &entry, &device) {
            Ok(response) => return response,
            Err(Gone) => continue,
        }
    }
    Response::not_found()
}

/// The SHA-1, expiry and device of an authentic download name.
fn parse_download_name(state: &State, name: &str) -> Option<(String, u64, String)> {
    let stem = name.strip_suffix(".ampkg")?;
    let mut parts = stem.split('-');
    let (sha1, expiry, device, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || sha1.len() != 40 || device.len() > 2 * MAX_DEVICE_ID {
        return None;
    }
    let expiry_number: u64 = expiry.parse().ok()?;
    let expected = state
        .deployment
        .key
        .mac(mac_input(sha1, expiry_number, device).as_bytes())?;
    if expected.len() != mac.len() || !openssl::memcmp::eq(expected.as_bytes(), mac.as_bytes()) {
        return None;
    }
    let device = crate::package::digest::hex_bytes(device)?;
    Some((
        sha1.to_string(),
        expiry_number,
        String::from_utf8(device).ok()?,
    ))
}
