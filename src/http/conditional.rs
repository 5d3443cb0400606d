/*!
Validators and byte ranges (RFC 9110 sections 13 and 14), so that a device polling the list
or resuming a download costs a 304 or only the missing bytes.

Routes that serve something cacheable build its `Validators` (a strong `ETag`, and
`Last-Modified` where there is a time) and ask `not_modified` first: a `304` then costs no
file, no signature and no JSON. Their answers carry the validators, and `for_range` then cuts
a single satisfiable range out of a `200` that says `Accept-Ranges: bytes`, honouring
`If-Range`.
*/

use super::{Body, Method, Request, RequestHeaders, Response};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What identifies one version of an answer.
pub struct Validators {
    /// A strong entity tag, quoted (`"..."`).
    pub etag: String,
    pub last_modified: Option<SystemTime>,
}

impl Validators {
    /// The `304 Not Modified` answer, when the client's copy is current: `If-None-Match`
    /// matches (weak comparison, `*` included), or there is no `If-None-Match` and
    /// `If-Modified-Since` is no earlier than `Last-Modified`. Only GET and HEAD.
    pub fn not_modified(&self, method: Method, headers: &RequestHeaders) -> Option<Response> {
        if !matches!(method, Method::Get | Method::Head) {
            return None;
        }
        let current = match &headers.if_none_match {
            Some(tags) => tags.trim() == "*" || entity_tags(tags).any(|t| weak_eq(t, &self.etag)),
            None => match (&headers.if_modified_since, self.usable_date()) {
                (Some(since), Some(modified)) => httpdate::parse_http_date(since)
                    .is_ok_and(|since| whole_seconds(modified) <= since),
                _ => false,
            },
        };
        current.then(|| {
            self.apply(Response {
                status: 304,
                headers: Vec::new(),
                body: Body::Empty,
                close: false,
                log_note: None,
            })
        })
    }

    /// The 304 when the client's copy is current, else `build()`'s answer with these
    /// validators (only a 200 gets them: an error is no version of the resource).
    pub fn respond(&self, request: &Request<'_>, build: impl FnOnce() -> Response) -> Response {
        if let Some(not_modified) = self.not_modified(request.method, &request.headers) {
            return not_modified;
        }
        let response = build();
        if response.status == 200 {
            self.apply(response)
        } else {
            response
        }
    }

    /// `Last-Modified`, when it can tell versions apart: HTTP dates have whole seconds, so a
    /// time less than a second ago might stand for an older version changed within the same
    /// second (RFC 9110 8.8.2.2). Until then no date is sent, and none is honoured
    /// (`If-Modified-Since`, a date in `If-Range`): the `ETag` still is.
    fn usable_date(&self) -> Option<SystemTime> {
        let time = self.last_modified?;
        let settled = time.checked_add(Duration::from_secs(1))?;
        (SystemTime::now() >= settled).then_some(time)
    }

    /// `response` with `ETag` and `Last-Modified`.
    pub fn apply(&self, response: Response) -> Response {
        let response = response.with_header("ETag", self.etag.clone());
        match self.usable_date() {
            Some(time) => response.with_header(
                "Last-Modified",
                httpdate::fmt_http_date(whole_seconds(time)),
            ),
            None => response,
        }
    }
}

/// HTTP dates have whole seconds: compare at that precision.
fn whole_seconds(time: SystemTime) -> SystemTime {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// The entity tags of a comma-separated list (ours never contain commas or quotes inside).
fn entity_tags(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Weak comparison: equal opaque tags, `W/` ignored.
fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

/// Strong comparison: equal, and neither weak.
fn strong_eq(a: &str, b: &str) -> bool {
    !a.starts_with("W/") && a == b
}

/// Whether `If-Range: value` lets a range of `response` be sent: the entity tag matches
/// strongly, or the date equals `Last-Modified` exactly.
fn if_range_holds(value: &str, response: &Response) -> bool {
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return header("ETag").is_some_and(|etag| strong_eq(value, etag));
    }
    match (httpdate::parse_http_date(value), header("Last-Modified")) {
        (Ok(date), Some(modified)) => httpdate::parse_http_date(modified).is_ok_and(|m| m == date),
        _ => false,
    }
}

/// What a `Range` header asks of a body of `total` bytes (RFC 9110 14.2).
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range, or one we answer with the whole body (several ranges, a malformed header).
    Whole,
    /// Bytes `first..=last`.
    Part(u64, u64),
    /// Nothing of the body can be given: 416.
    Unsatisfiable,
}

/// Read a `Range` header for a body of `total` bytes: a single `bytes=a-b`, `bytes=a-` or
/// `bytes=-n`; anything else is answered with the whole body, as RFC 9110 allows.
pub fn parse_range(header: &str, total: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |t: &str| -> Option<u64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if total == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Part(total.saturating_sub(n), total - 1),
            None => RangeRequest::Whole,
        },
        (first, last) => match (number(first), last) {
            (Some(a), _) if a >= total => RangeRequest::Unsatisfiable,
            (Some(a), "") => RangeRequest::Part(a, total - 1),
            (Some(a), last) => match number(last) {
                Some(b) if b >= a => RangeRequest::Part(a, b.min(total - 1)),
                _ => RangeRequest::Whole,
            },
            (None, _) => RangeRequest::Whole,
        },
    }
}

impl Response {
    /// This answer for a request with `headers`: 206 with `Content-Range` for one
    /// satisfiable range of a 200 answer that accepts ranges (and whose validator matches
    /// `If-Range`, when there is one), 416 for an unsatisfiable one, else unchanged.
    pub fn for_range(mut self, headers: &RequestHeaders) -> Response {
        let accepts = self
            .headers
            .iter()
            .any(|(n, v)| *n == "Accept-Ranges" && v == "bytes");
        let (Some(range), true, 200) = (&headers.range, accepts, self.status) else {
            return self;
        };
        if let Some(if_range) = &headers.if_range
            && !if_range_holds(if_range, &self)
        {
            return self;
        }
        let total = self.body.length();
        match parse_range(range, total) {
            RangeRequest::Whole => self,
            RangeRequest::Part(first, last) => {
                self.status = 206;
                self.body = self.body.slice(first, last);
                self.with_header("Content-Range", format!("bytes {first}-{last}/{total}"))
            }
            RangeRequest::Unsatisfiable => Response {
                status: 416,
                headers: vec![("Content-Range", format!("bytes */{total}"))],
                body: Body::Empty,
                close: false,
                log_note: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=-200", 100), Part(0, 99));
        assert_eq!(parse_range("bytes=50-500", 100), Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        for whole in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "items=0-1",
            "bytes=x-",
            "bytes=-",
        ] {
            assert_eq!(parse_range(whole, 100), Whole, "{whole}");
        }
    }

    fn validators() -> Validators {
        Validators {
            etag: "\"abc\"".into(),
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        }
    }

    fn headers(inm: Option<&str>, ims: Option<&str>) -> RequestHeaders {
        RequestHeaders {
            if_none_match: inm.map(str::to_string),
            if_modified_since: ims.map(str::to_string),
            ..RequestHeaders::default()
        }
    }

    #[test]
    fn not_modified_follows_rfc_9110() {
        let v = validators();
        let current = |inm, ims| v.not_modified(Method::Get, &headers(inm, ims)).is_some();
        assert!(current(Some("\"abc\""), None));
        assert!(current(Some("\"x\", W/\"abc\""), None));
        assert!(current(Some("*"), None));
        assert!(!current(Some("\"abcd\""), None));
        let at = "Tue, 14 Nov 2023 22:13:20 GMT";
        let before = "Tue, 14 Nov 2023 22:13:19 GMT";
        assert!(current(None, Some(at)));
        assert!(!current(None, Some(before)));
        assert!(!current(None, Some("yesterday")));
        // If-None-Match wins over If-Modified-Since.
        assert!(!current(Some("\"other\""), Some(at)));
        assert!(
            v.not_modified(Method::Post, &headers(Some("\"abc\""), None))
                .is_none()
        );
        let answer = v.not_modified(Method::Head, &headers(Some("\"abc\""), None));
        let answer = answer.expect("304");
        assert_eq!(answer.status, 304);
        assert!(answer.headers.contains(&("ETag", "\"abc\"".into())));
        assert!(answer.headers.contains(&("Last-Modified", at.into())));
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let response = validators().apply(
            Response::json_body(Body::Bytes(vec![0; 100])).with_header("Accept-Ranges", "bytes"),
        );
        let with = |if_range: &str| RequestHeaders {
            range: Some("bytes=10-".into()),
            if_range: Some(if_range.into()),
            ..RequestHeaders::default()
        };
        let status = |if_range: &str| {
            let response = validators().apply(
                Response::json_body(Body::Bytes(vec![0; 100]))
                    .with_header("Accept-Ranges", "bytes"),
            );
            response.for_range(&with(if_range)).status
        };
        assert_eq!(response.for_range(&with("\"abc\"")).status, 206);
        assert_eq!(status("W/\"abc\""), 200);
        assert_eq!(status("\"old\""), 200);
        assert_eq!(status("Tue, 14 Nov 2023 22:13:20 GMT"), 206);
        assert_eq!(status("Tue, 14 Nov 2023 22:13:21 GMT"), 200);
    }
}
