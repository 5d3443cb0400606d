/*!
The Deployment Server's `POST /upload`: a multipart form with the package (`package`) and
`description`, `short-description`, `category` and `vendor`, checked in its order and with its
words (`no description`, ..., `no package to upload`, `Package validation failed`). The package
streams into a file of ours and is verified and installed exactly as `PUT /package/upload`
does; the four fields are kept with it (`store::extras`). When an upload token is set, HTTP
Basic authentication must carry it as the password (the Deployment Server took a staff user's).
*/

use super::same_secret;
use crate::console::Event;
use crate::http::multipart::{self, Multipart};
use crate::http::state::State;
use crate::http::upload::{Received, receive_body, too_large};
use crate::http::{Request, Response};
use crate::store::extras::{MAX_FIELD, UploadExtras};
use crate::store::{InstallError, UploadOutcome};
use serde_json::json;
use std::io::Read;

/// The fields the form must have, in the order the Deployment Server checked them, with its
/// word for a missing one.
const FIELDS: [(&str, &str); 4] = [
    ("description", "no description"),
    ("short-description", "no short description"),
    ("category", "no category"),
    ("vendor", "no vendor"),
];

/// Whether `Authorization: Basic` carries `token` as the password.
fn basic_authorized(request: &Request<'_>, token: &str) -> bool {
    let Some(value) = request.headers.authorization.as_deref() else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("Basic") || encoded.len() > 4096 {
        return false;
    }
    let Ok(decoded) = openssl::base64::decode_block(encoded.trim()) else {
        return false;
    };
    let text = String::from_utf8_lossy(&decoded);
    text.split_once(':')
        .is_some_and(|(_, password)| same_secret(password, token))
}

pub fn upload(request: &mut Request<'_>, state: &State) -> Response {
    let store = &state.store;
    let client = request
        .client
        .map_or("upload".to_string(), |c| format!("upload from {c}"));
    let answer = |outcome: UploadOutcome, status: u16, word: &str, error: Option<String>| {
        store.counters.upload(outcome);
        if outcome != UploadOutcome::Accepted {
            let reason = error.clone().unwrap_or_else(|| word.to_string());
            store.report(
                "Upload via HTTP (Deployment Server API):",
                &[Event::Failed {
                    file: client.clone(),
                    reason,
                }],
            );
        }
        let mut body = json!({ "status": word });
        if let Some(error) = error {
            body["error"] = json!(error);
        }
        let mut response = Response::json(&body);
        response.status = status;
        response
    };
    if let Some(token) = &state.upload_token
        && !basic_authorized(request, token)
    {
        return answer(
            UploadOutcome::ClientFault,
            401,
            "authentication-failed",
            None,
        )
        .with_header("WWW-Authenticate", "Basic realm=\"appman-package-server\"")
        .closing();
    }
    let Some(boundary) = request
        .headers
        .content_type
        .as_deref()
        .and_then(multipart::boundary)
    else {
        return answer(
            UploadOutcome::ClientFault,
            200,
            "no package to upload",
            None,
        )
        .closing();
    };
    let mut temp = match store.upload_file() {
        Ok(temp) => temp,
        Err(e) => {
            let word = format!("could not store the upload: {e}");
            return answer(UploadOutcome::ServerFault, 503, &word, None)
                .with_header("Retry-After", "10")
                .closing();
        }
    };
    let limit = store.limits.max_package_size;
    let mut fields: [Option<String>; 4] = Default::default();
    let mut package = false;
    let mut form = Multipart::new(request.body, &boundary);
    loop {
        let head = match form.next_part() {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(e) => {
                return answer(UploadOutcome::ClientFault, 400, &e.to_string(), None).closing();
            }
        };
        if head.name == "package" {
            if package {
                let word = "more than one package";
                return answer(UploadOutcome::ClientFault, 200, word, None).closing();
            }
            package = true;
            match receive_body(&mut form.part(), &mut temp, limit, None) {
                Ok(()) => {}
                Err(Received::TooLarge) => {
                    let word = "Package validation failed";
                    return answer(
                        UploadOutcome::ClientFault,
                        200,
                        word,
                        Some(too_large(limit)),
                    )
                    .closing();
                }
                Err(Received::Empty) => package = false,
                Err(Received::Broken(why)) => {
                    return answer(UploadOutcome::ClientFault, 400, &why, None).closing();
                }
                Err(Received::NotStored(why)) => {
                    return answer(UploadOutcome::ServerFault, 503, &why, None)
                        .with_header("Retry-After", "10")
                        .closing();
                }
            }
        } else if let Some(at) = FIELDS.iter().position(|(name, _)| *name == head.name) {
            let mut bytes = Vec::new();
            let read = form
                .part()
                .take(MAX_FIELD as u64 + 1)
                .read_to_end(&mut bytes);
            let text = match (read, String::from_utf8(bytes)) {
                (Ok(n), Ok(text)) if n <= MAX_FIELD => text,
                (Err(e), _) => {
                    let word = format!("the upload was interrupted: {e}");
                    return answer(UploadOutcome::ClientFault, 400, &word, None).closing();
                }
                _ => {
                    let word = format!(
                        "'{}' is not UTF-8 text of at most {MAX_FIELD} bytes",
                        head.name
                    );
                    return answer(UploadOutcome::ClientFault, 200, &word, None).closing();
                }
            };
            fields[at] = Some(text);
        }
    }
    for (value, (_, word)) in fields.iter().zip(FIELDS) {
        if value.is_none() {
            return answer(UploadOutcome::ClientFault, 200, word, None);
        }
    }
    if !package {
        return answer(
            UploadOutcome::ClientFault,
            200,
            "no package to upload",
            None,
        );
    }
    let [description, short_description, category, vendor] = fields.map(Option::unwrap_or_default);
    let extras = UploadExtras {
        description,
        short_description,
        category,
        vendor,
    };
    match store.install_upload_with(temp, Some(extras)) {
        Ok(installed) => {
            store.report(
                "Upload via HTTP (Deployment Server API):",
                &installed.events(),
            );
            answer(UploadOutcome::Accepted, 200, "ok", None)
        }
        Err(InstallError::Server(why)) => {
            answer(UploadOutcome::ServerFault, 503, &why, None).with_header("Retry-After", "10")
        }
        Err(error) => {
            let why = error.message().to_string();
            answer(
                UploadOutcome::ClientFault,
                200,
                "Package validation failed",
                Some(why),
            )
        }
    }
}
