/*!
Serving a selected package's icon and file, for both APIs: validators first (a `304` touches no
file), then the icon from memory or the package, or the file with sendfile (store-signed: the
file up to its cut and the computed tail).
*/

use super::conditional::Validators;
use super::state::State;
use super::{Body, ObjectPart, Request, Response, Tail};
use crate::console::Event;
use crate::package::digest::to_hex;
use crate::store::index::{Entry, Icon};
use crate::store::signing::SignedBody;
use std::io;
use std::sync::Arc;

/// The entry's file was replaced or deleted between its lookup and its opening.
pub struct Gone;

/// The icon of `entry`, with its validators.
pub fn icon(request: &Request<'_>, state: &State, entry: &Arc<Entry>) -> Response {
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
                Err(_) if state.store.forget_if_gone(entry) => return Response::not_found(),
                Err(e) => {
                    let reason = format!("could not read the icon: {e}");
                    return download_failed(state, entry, &reason);
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

/// The package of `entry` for `hardware_id` (store-signed when the server signs), with its
/// validators; `Err(Gone)` when its file was replaced or deleted meanwhile (look it up again).
pub fn download(
    request: &Request<'_>,
    state: &State,
    entry: &Arc<Entry>,
    hardware_id: &str,
) -> Result<Response, Gone> {
    let attachment = format!("attachment; filename=\"{}\"", entry.file_name());
    let validators = match &state.store.signer {
        None => Validators {
            etag: format!("\"{}\"", to_hex(&entry.info.sha1)),
            last_modified: Some(entry.modified),
        },
        Some(signer) => Validators {
            etag: signer.etag(entry, hardware_id),
            last_modified: Some(signer.last_modified(entry)),
        },
    };
    if let Some(not_modified) = validators.not_modified(request.method, &request.headers) {
        return Ok(not_modified);
    }
    if let (None, Some(remote), Some(store)) =
        (&state.store.signer, &entry.remote, &state.store.remote)
        && store.redirect_downloads
    {
        let url = remote
            .objects
            .presigned_get(&remote.name, crate::store::remote::REDIRECT_VALID);
        return Ok(Response::status(302, "Found").with_header("Location", url));
    }
    let body = match (&state.store.signer, &entry.remote) {
        (None, Some(remote)) => Body::Object(Box::new(ObjectPart {
            object: remote.clone(),
            length: entry.info.file_size,
            tail: Tail::default(),
            range: None,
            opened: None,
        })),
        (None, None) => match entry.open().and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((length, file)) => Body::File {
                file,
                length,
                tail: Tail::default(),
                range: None,
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Replaced meanwhile (look again), or deleted under us (forget it).
                state.store.forget_if_gone(entry);
                return Err(Gone);
            }
            Err(e) => return Ok(download_failed(state, entry, &e.to_string())),
        },
        (Some(signer), _) => match signer.sign(entry, hardware_id) {
            Ok(signed) => match signed.body {
                SignedBody::File(file) => Body::File {
                    file,
                    length: signed.body_length,
                    tail: Tail(signed.tail),
                    range: None,
                },
                SignedBody::Object(object) => Body::Object(Box::new(ObjectPart {
                    object,
                    length: signed.body_length,
                    tail: Tail(signed.tail),
                    range: None,
                    opened: None,
                })),
            },
            Err(_) if state.store.forget_if_gone(entry) => return Err(Gone),
            Err(reason) => {
                let reason = format!("store signing failed: {reason}");
                return Ok(download_failed(state, entry, &reason));
            }
        },
    };
    Ok(validators.apply(Response {
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
    }))
}

pub fn download_failed(state: &State, entry: &Entry, reason: &str) -> Response {
    state.store.console.event(&Event::Failed {
        file: entry.file_name(),
        reason: reason.to_string(),
    });
    Response::status(500, "Internal Server Error")
}
