/*!
`PUT /package/upload`: the body streamed into a file of ours in `.packages/`, bounded by the
package size limit, then verified from that file and installed. Failures say whose fault
they are: the client's (not a package, too large, cut off) answer Qt's fail JSON, ours (a full
disk, an I/O error) `503` with `Retry-After`.
*/

use super::state::State;
use super::{Request, Response};
use crate::console::Event;
use crate::fsutil::TempFile;
use crate::package::WRONG_FILE_TYPE;
use crate::store::{InstallError, UploadOutcome};
use serde_json::json;
use std::io::{self, Read, Write};

pub fn package_upload(request: &mut Request<'_>, state: &State) -> Response {
    let store = &state.store;
    let limit = store.limits.max_package_size;
    // A failure before the whole body was read closes the connection: its rest is useless.
    let failed = |file: &str, status: u16, message: String| {
        store.counters.upload(match status {
            503 => UploadOutcome::ServerFault,
            _ => UploadOutcome::ClientFault,
        });
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
            store.counters.upload(UploadOutcome::Accepted);
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
pub(super) enum Received {
    Broken(String),
    /// Our fault: the body could not be written (a full disk).
    NotStored(String),
    TooLarge,
    Empty,
}

pub(super) fn too_large(limit: u64) -> String {
    format!("the package is larger than the maximum package size of {limit} bytes")
}

/// Copy the request body into `temp`, refusing more than `limit` bytes, and checking it
/// is as long as the client announced.
pub(super) fn receive_body(
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
