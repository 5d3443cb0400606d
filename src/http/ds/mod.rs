/*!
The API of Qt's earlier app store server, the Qt Automotive Suite Deployment Server, on the same
port and store as Qt's API, so that its client (the app store of the Neptune 3 UI) works
unchanged: `/hello` with a `platform`, `/login`, `/logout`, `/app/list`, `/app/icon`,
`/app/description`, `/app/purchase`, `/app/download/...`, `/category/list` with numeric ids,
`/category/icon` and the multipart `/upload` (`upload`). Facts in ../shared/DEPLOYMENT-SERVER.md.

Two paths are shared with Qt's API: `/hello` answers as the Deployment Server when it is given
a `platform` (Qt's clients send `project-id`), and `/category/list` when the request carries
this API's session cookie (set by its `/hello` or `/login`).

What a client set is kept in its session cookie, signed (`session`); a purchase is a download
URL authenticated the same way (an HMAC over the package's SHA-1, the expiry and, when
downloads are bound to devices, the device id), served like `/package/download`. The key is
made once and kept in the data directory (`.session-key`, mode 0600), so sessions and URLs
survive a restart.
*/

mod apps;
pub mod session;
mod upload;

pub use apps::{
    app_description, app_download, app_icon, app_list, app_purchase, category_icon, category_list,
};
pub use upload::upload;

use super::state::State;
use super::{Request, Response};
use crate::package::abi;
use crate::package::digest::to_hex;
use crate::package::tags::{self, Tag, TagFilter};
use serde_json::json;
use session::{MAX_TAGS, MAX_USER, Session};
use std::path::Path;

/// The key file in the data directory.
pub const KEY_FILE: &str = ".session-key";
/// The Deployment Server's API version.
const API_VERSION: &str = "1";

/// The secret that signs sessions and download URLs.
pub struct Key([u8; 32]);

impl Key {
    pub fn new(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// The key kept in `data_dir`, made (and kept) when there is none or it is unreadable.
    pub fn load_or_create(data_dir: &Path) -> Result<Key, String> {
        let path = data_dir.join(KEY_FILE);
        if let Ok(bytes) = crate::fsutil::read_settings_file(&path, 64)
            && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(Key(key));
        }
        let mut key = [0u8; 32];
        openssl::rand::rand_bytes(&mut key).map_err(|e| format!("no random bytes: {e}"))?;
        crate::fsutil::write_atomically(&path, |temp| {
            use std::io::Write;
            use std::os::unix::fs::PermissionsExt;
            let file = temp.file();
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            file.write_all(&key)
        })
        .map_err(|e: std::io::Error| format!("could not write {}: {e}", path.display()))?;
        Ok(Key(key))
    }

    /// HMAC-SHA256 of `message`, in hex; `None` only if OpenSSL fails.
    pub fn mac(&self, message: &[u8]) -> Option<String> {
        let key = openssl::pkey::PKey::hmac(&self.0).ok()?;
        let mut signer =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).ok()?;
        signer
            .sign_oneshot_to_vec(message)
            .ok()
            .map(|mac| to_hex(&mac))
    }
}

/// How this server plays the Deployment Server.
pub struct DeploymentServer {
    pub key: Key,
    /// Seconds a purchased URL is valid.
    pub download_expiry: u64,
    /// Purchases sign for their `device_id` (stock Qt devices never pass their hardware id to
    /// the installer, so by default they do not).
    pub bind_to_device: bool,
    /// URLs given out are `https`.
    pub tls: bool,
}

/// The request's session, if its cookie holds a valid one.
fn session_of(request: &Request<'_>, state: &State) -> Option<Session> {
    Session::from_cookies(request.headers.cookie.as_deref(), &state.deployment.key)
}

/// `response` with `session` in its cookie.
fn with_session(response: Response, session: &Session, state: &State) -> Response {
    response
        .with_header("Set-Cookie", session.set_cookie(&state.deployment.key))
        .with_header("Cache-Control", "no-store")
}

/// `/hello` with a `platform`: the platform must be the project id, the API version 1; tags
/// and the architecture go into the session.
pub fn hello(request: &mut Request<'_>, state: &State) -> Response {
    let mut session = session_of(request, state).unwrap_or_default();
    let status = hello_status(request, state, &mut session);
    with_session(
        Response::json(&json!({ "status": status })),
        &session,
        state,
    )
}

fn hello_status(request: &Request<'_>, state: &State, session: &mut Session) -> &'static str {
    let mut status = "ok";
    if request.param("platform") != Some(state.project_id.as_str()) {
        status = "incompatible-platform";
    } else if request.param("version") != Some(API_VERSION) {
        status = "incompatible-version";
    }
    let required = request
        .params_named("require_tag")
        .chain(request.params_named("tag"));
    match session_tags(required) {
        Ok(tags) => session.require_tags = tags,
        Err(()) => return "malformed-tag",
    }
    match session_tags(request.params_named("conflicts_tag")) {
        Ok(tags) => session.conflicts_tags = tags,
        Err(()) => return "malformed-tag",
    }
    session.architecture = None;
    if let Some(requested) = request.param("architecture") {
        match abi::normalize_requested(requested) {
            Some(architecture) => session.architecture = Some(architecture),
            None if status == "ok" => status = "incompatible-architecture",
            None => {}
        }
    }
    status
}

/// Tags for the session: parsed, simplified, at most `MAX_TAGS`.
fn session_tags<'a>(values: impl Iterator<Item = &'a str>) -> Result<Vec<String>, ()> {
    let tags = tags::parse_requested(values).map_err(|_| ())?;
    if tags.len() > MAX_TAGS {
        return Err(());
    }
    Ok(tags.iter().map(Tag::to_string).collect())
}

/// The session's tag filter (its tags were valid when stored).
fn session_filter(session: &Session) -> TagFilter {
    let parse = |list: &[String]| tags::parse_requested(list.iter().map(String::as_str));
    TagFilter {
        include: parse(&session.require_tags).unwrap_or_default(),
        exclude: parse(&session.conflicts_tags).unwrap_or_default(),
    }
}

/// `/login`: this server has no accounts. Any user name and password log in, unless an
/// upload token is set: then the password must be the token.
pub fn login(request: &mut Request<'_>, state: &State) -> Response {
    let mut session = session_of(request, state).unwrap_or_default();
    let user = request.non_empty_param("username");
    let password = request.non_empty_param("password");
    let status = match (user, password) {
        (Some(user), _) if user.len() > MAX_USER => "authentication-failed",
        (Some(user), Some(password)) => {
            if state
                .upload_token
                .as_deref()
                .is_none_or(|token| same_secret(password, token))
            {
                session.user = Some(user.to_string());
                "ok"
            } else {
                "authentication-failed"
            }
        }
        _ => "missing-credentials",
    };
    with_session(
        Response::json(&json!({ "status": status })),
        &session,
        state,
    )
}

/// `/logout`: `failed` when nobody was logged in.
pub fn logout(request: &mut Request<'_>, state: &State) -> Response {
    let mut session = session_of(request, state).unwrap_or_default();
    let status = if session.user.take().is_some() {
        "ok"
    } else {
        "failed"
    };
    with_session(
        Response::json(&json!({ "status": status })),
        &session,
        state,
    )
}

/// Whether `given` is `secret`, compared in constant time (as hashes: not even the length
/// leaks).
pub fn same_secret(given: &str, secret: &str) -> bool {
    let (given, secret) = (
        openssl::sha::sha256(given.as_bytes()),
        openssl::sha::sha256(secret.as_bytes()),
    );
    openssl::memcmp::eq(&given, &secret)
}

/// `scheme://host` of this server as the client reached it.
fn base_url(request: &Request<'_>, state: &State) -> String {
    let scheme = if state.deployment.tls {
        "https"
    } else {
        "http"
    };
    let host = request.headers.host.as_deref().unwrap_or("localhost");
    format!("{scheme}://{host}")
}
