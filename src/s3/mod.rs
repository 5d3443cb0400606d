/*!
A synchronous client for S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Garage): the
requests are signed by `rusty-s3` (SigV4 as presigned URLs, sans I/O) and sent by `ureq`
(blocking, no async runtime). Every object name is under the configured prefix.

The object store failing or slow is a server fault, never a client's: each call has timeouts
(connect 3 s, no progress for 10 s), 5xx answers and network errors are retried up to
`ATTEMPTS` times with a growing pause (at the next endpoint, when several are configured), and what is left is `S3Error::Unavailable` (the routes
answer 503). A 200 body cut short (a storage node down mid-answer) is noticed by its length and
the reader resumes from where it stopped with a ranged request.
*/

mod location;
mod reader;
pub use location::{S3Location, parse_store};
pub use reader::ObjectReader;

use rusty_s3::actions::{
    CompleteMultipartUpload, CreateMultipartUpload, DeleteObject, GetObject, ListObjectsV2,
    PutObject, S3Action, UploadPart,
};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use std::io::{self, Read, Seek};
use std::time::Duration;

/// Records read at once at start (each a small GET: latency, not bandwidth, bounds it).
pub const READERS: usize = 32;
/// Tries of one request before giving up.
const ATTEMPTS: u32 = 4;
/// How long a presigned request stays valid (it is sent at once).
const SIGNED_FOR: Duration = Duration::from_secs(300);
/// Objects larger than this are uploaded in parts of this size.
const PART_SIZE: u64 = 16 << 20;
/// Largest listing page read, and largest small object (metadata) read.
const MAX_LISTING: u64 = 16 << 20;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Error {
    /// The object is not there (404).
    NotFound,
    /// The store did not answer, or answered 5xx, after every retry: try again later.
    Unavailable(String),
    /// The store refused the request (4xx): a configuration error (credentials, bucket).
    Refused(String),
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            S3Error::NotFound => write!(f, "no such object"),
            S3Error::Unavailable(why) => write!(f, "the object store is unavailable: {why}"),
            S3Error::Refused(why) => write!(f, "the object store refused the request: {why}"),
        }
    }
}

/// A package's object in the store.
#[derive(Clone)]
pub struct RemoteObject {
    pub objects: std::sync::Arc<ObjectStore>,
    pub name: String,
}

impl std::fmt::Debug for RemoteObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteObject({})", self.name)
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its name without the store's prefix.
    pub name: String,
    pub etag: String,
    pub size: u64,
}

/// The object store of `--store s3://...`.
pub struct ObjectStore {
    /// One per endpoint: a request that cannot reach one goes to the next.
    buckets: Vec<Bucket>,
    current: std::sync::atomic::AtomicUsize,
    credentials: Credentials,
    prefix: String,
    agent: ureq::Agent,
}

impl ObjectStore {
    /// A client for `location` (credentials from the standard `AWS_*` variables or its own).
    pub fn new(location: &S3Location) -> Result<ObjectStore, String> {
        let style = if location.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let mut buckets = Vec::new();
        for endpoint in location.endpoint.split(',').map(str::trim) {
            let url = endpoint
                .parse()
                .map_err(|e| format!("the S3 endpoint {endpoint} is not a URL: {e}"))?;
            let bucket = Bucket::new(url, style, location.bucket.clone(), location.region.clone())
                .map_err(|e| format!("the S3 endpoint {endpoint} cannot be used: {e}"))?;
            buckets.push(bucket);
        }
        let credentials = match &location.session_token {
            Some(token) => Credentials::new_with_token(
                location.access_key_id.clone(),
                location.secret_access_key.clone(),
                token.clone(),
            ),
            None => Credentials::new(
                location.access_key_id.clone(),
                location.secret_access_key.clone(),
            ),
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_idle_connections(64)
            .max_idle_connections_per_host(READERS)
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_recv_response(Some(Duration::from_secs(10)))
            .timeout_per_read(Some(Duration::from_secs(10)))
            .timeout_per_write(Some(Duration::from_secs(10)))
            .build()
            .into();
        Ok(ObjectStore {
            buckets,
            current: std::sync::atomic::AtomicUsize::new(0),
            credentials,
            prefix: location.prefix.clone(),
            agent,
        })
    }

    /// The bucket at the endpoint in use.
    fn bucket(&self) -> &Bucket {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.buckets[i % self.buckets.len()]
    }

    /// Use the next endpoint from now on (this one did not answer).
    fn fail_over(&self) {
        if self.buckets.len() > 1 {
            self.current
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Run `call` until it answers, retrying network errors and 5xx with a growing pause.
    fn retry<T>(
        &self,
        what: &str,
        mut call: impl FnMut() -> Result<T, S3Error>,
    ) -> Result<T, S3Error> {
        let mut pause = Duration::from_millis(100);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match call() {
                Err(S3Error::Unavailable(why)) => {
                    last = why;
                    self.fail_over();
                }
                done => return done,
            }
            if attempt < ATTEMPTS {
                std::thread::sleep(pause);
                pause *= 3;
            }
        }
        Err(S3Error::Unavailable(format!("{what}: {last}")))
    }

    /// The error a response status means, if any.
    fn check(status: u16, what: &str) -> Result<(), S3Error> {
        match status {
            200..=299 => Ok(()),
            404 => Err(S3Error::NotFound),
            500..=599 => Err(S3Error::Unavailable(format!("{what}: HTTP {status}"))),
            _ => Err(S3Error::Refused(format!("{what}: HTTP {status}"))),
        }
    }

    /// One try's answer: the response when it is a 2xx, else the error it means.
    fn answered(
        what: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, S3Error> {
        let response = sent.map_err(|e| Self::network(what, e))?;
        Self::check(response.status().as_u16(), what)?;
        Ok(response)
    }

    /// A network error in words that never carry a signed URL (its query names the access
    /// key): credentials stay off the console.
    fn network(what: &str, error: ureq::Error) -> S3Error {
        let said = match &error {
            ureq::Error::Io(e) => e.to_string(),
            ureq::Error::Timeout(t) => format!("timed out ({t})"),
            ureq::Error::HostNotFound => "host not found".to_string(),
            ureq::Error::ConnectionFailed => "connection failed".to_string(),
            ureq::Error::BodyStalled => "the answer stalled".to_string(),
            other => redact(&other.to_string()),
        };
        S3Error::Unavailable(format!("{what}: {said}"))
    }

    /// Store `bytes` as `name`.
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<(), S3Error> {
        self.put_with_etag(name, bytes).map(|_| ())
    }

    /// Store `bytes` as `name`; the object's ETag when the store says it.
    pub fn put_with_etag(&self, name: &str, bytes: &[u8]) -> Result<Option<String>, S3Error> {
        let key = self.key(name);
        let what = format!("PUT {key}");
        self.retry(&what, || {
            let url = PutObject::new(self.bucket(), Some(&self.credentials), &key).sign(SIGNED_FOR);
            let response = Self::answered(&what, self.agent.put(url.as_str()).send(bytes))?;
            Ok(etag_of(&response))
        })
    }

    /// Store the first `length` bytes of `file` as `name` (in parts when large).
    pub fn put_file(&self, name: &str, file: &std::fs::File, length: u64) -> Result<(), S3Error> {
        if length <= PART_SIZE {
            return self.put_range(name, file, 0, length, None).map(|_| ());
        }
        let key = self.key(name);
        let what = format!("multipart upload of {key}");
        let upload_id = self.retry(&what, || {
            let action = CreateMultipartUpload::new(self.bucket(), Some(&self.credentials), &key);
            let url = action.sign(SIGNED_FOR);
            let mut response = Self::answered(&what, self.agent.post(url.as_str()).send_empty())?;
            let body = read_limited(&mut response, MAX_LISTING, &what)?;
            CreateMultipartUpload::parse_response(&body)
                .map(|r| r.upload_id().to_string())
                .map_err(|e| S3Error::Refused(format!("{what}: {e}")))
        })?;
        let mut etags = Vec::new();
        let mut start = 0;
        for part in 1u16.. {
            if start >= length {
                break;
            }
            let end = (start + PART_SIZE).min(length);
            let etag = self.put_range(name, file, start, end, Some((part, &upload_id)))?;
            etags.push(etag.unwrap_or_default());
            start = end;
        }
        self.retry(&what, || {
            let action = CompleteMultipartUpload::new(
                self.bucket(),
                Some(&self.credentials),
                &key,
                &upload_id,
                etags.iter().map(String::as_str),
            );
            let url = action.sign(SIGNED_FOR);
            let body = action.body();
            Self::answered(&what, self.agent.post(url.as_str()).send(body.as_bytes())).map(|_| ())
        })
    }

    /// PUT bytes `start..end` of `file` as `name`, or as part `part` of an upload; the ETag.
    fn put_range(
        &self,
        name: &str,
        file: &std::fs::File,
        start: u64,
        end: u64,
        part: Option<(u16, &str)>,
    ) -> Result<Option<String>, S3Error> {
        let key = self.key(name);
        let what = format!("PUT {key}");
        self.retry(&what, || {
            let url = match part {
                None => {
                    PutObject::new(self.bucket(), Some(&self.credentials), &key).sign(SIGNED_FOR)
                }
                Some((number, upload_id)) => UploadPart::new(
                    self.bucket(),
                    Some(&self.credentials),
                    &key,
                    number,
                    upload_id,
                )
                .sign(SIGNED_FOR),
            };
            let mut source = file;
            source
                .seek(io::SeekFrom::Start(start))
                .map_err(|e| S3Error::Unavailable(format!("{what}: reading the upload: {e}")))?;
            let mut body = source.take(end - start);
            let response = Self::answered(
                &what,
                self.agent
                    .put(url.as_str())
                    .header("Content-Length", (end - start).to_string())
                    .send(ureq::SendBody::from_reader(&mut body)),
            )?;
            Ok(etag_of(&response))
        })
    }

    /// The bytes of `name`, at most `max`.
    pub fn get(&self, name: &str, max: u64) -> Result<Vec<u8>, S3Error> {
        let key = self.key(name);
        let what = format!("GET {key}");
        self.retry(&what, || {
            let url = GetObject::new(self.bucket(), Some(&self.credentials), &key).sign(SIGNED_FOR);
            let mut response = Self::answered(&what, self.agent.get(url.as_str()).call())?;
            let expected = response
                .headers()
                .get("Content-Length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let bytes = read_limited(&mut response, max, &what)?;
            match expected {
                Some(n) if n != bytes.len() as u64 => Err(S3Error::Unavailable(format!(
                    "{what}: the answer was cut short ({} of {n} bytes)",
                    bytes.len()
                ))),
                _ => Ok(bytes),
            }
        })
    }

    /// A reader of bytes `start..end` of `name`, resuming where it stopped when an answer is
    /// cut short.
    pub fn reader(self: &std::sync::Arc<Self>, name: &str, start: u64, end: u64) -> ObjectReader {
        ObjectReader {
            store: self.clone(),
            key: self.key(name),
            position: start,
            end,
            body: None,
        }
    }

    /// A presigned URL to GET `name` for `valid` (for clients sent there directly).
    pub fn presigned_get(&self, name: &str, valid: Duration) -> String {
        let key = self.key(name);
        GetObject::new(self.bucket(), Some(&self.credentials), &key)
            .sign(valid)
            .to_string()
    }

    /// The objects whose names start with `prefix`.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, S3Error> {
        let full = self.key(prefix);
        let what = format!("LIST {full}");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.retry(&what, || {
                let mut action = ListObjectsV2::new(self.bucket(), Some(&self.credentials));
                action.with_prefix(full.as_str());
                if let Some(token) = &token {
                    action.with_continuation_token(token.as_str());
                }
                let url = action.sign(SIGNED_FOR);
                let mut response = Self::answered(&what, self.agent.get(url.as_str()).call())?;
                let body = read_limited(&mut response, MAX_LISTING, &what)?;
                ListObjectsV2::parse_response(&body)
                    .map_err(|e| S3Error::Unavailable(format!("{what}: {e}")))
            })?;
            for object in page.contents {
                // Keys come URL-encoded (we ask for encoding-type=url).
                let key = percent_encoding::percent_decode_str(&object.key)
                    .decode_utf8_lossy()
                    .into_owned();
                if let Some(name) = key.strip_prefix(&self.prefix) {
                    out.push(Listed {
                        name: name.to_string(),
                        etag: object.etag,
                        size: object.size,
                    });
                }
            }
            match page.next_continuation_token {
                Some(next) if out.len() < 1_000_000 => token = Some(next),
                _ => return Ok(out),
            }
        }
    }

    /// Remove `name` (no error when it is gone already).
    pub fn delete(&self, name: &str) -> Result<(), S3Error> {
        let key = self.key(name);
        let what = format!("DELETE {key}");
        self.retry(&what, || {
            let url =
                DeleteObject::new(self.bucket(), Some(&self.credentials), &key).sign(SIGNED_FOR);
            match Self::answered(&what, self.agent.delete(url.as_str()).call()) {
                Ok(_) | Err(S3Error::NotFound) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}

/// The `ETag` an answer carries, if any.
fn etag_of(response: &ureq::http::Response<ureq::Body>) -> Option<String> {
    response
        .headers()
        .get("ETag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `text` with every URL query (a presigned request's credential and signature) cut out.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_query = false;
    for c in text.chars() {
        if c == '?' {
            in_query = true;
            out.push_str("?<signed>");
        } else if in_query && c.is_whitespace() {
            in_query = false;
        }
        if !in_query {
            out.push(c);
        }
    }
    out
}

/// Read at most `max` bytes of an answer's body.
fn read_limited(
    response: &mut ureq::http::Response<ureq::Body>,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, S3Error> {
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| S3Error::Unavailable(format!("{what}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(S3Error::Refused(format!("{what}: larger than {max} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_queries_never_reach_a_message() {
        let said = redact(
            "http://127.0.0.1:3900/b/k?X-Amz-Credential=GK123%2Fx&X-Amz-Signature=abc: connection refused",
        );
        assert_eq!(
            said,
            "http://127.0.0.1:3900/b/k?<signed> connection refused"
        );
        let said = redact("GET http://h/k?X-Amz-Credential=GK1 failed (timeout)");
        assert_eq!(said, "GET http://h/k?<signed> failed (timeout)");
        assert!(!said.contains("GK1"));
    }
}
