/*!
The HTTP server: our fork of tiny_http (`vendor/tiny_http`) serves every connection end to end
on a thread of its own and calls `App::handle` there for each request, one at a time. We turn
its request into ours, run the route, and turn our response into its, with sendfile for files.

Everything that protects clients from each other lives in the fork: deadlines for request heads,
a minimum rate for bodies, write timeouts, strict framing, and connection caps in all and per
client. What lives here is the policy: the caps from the configuration, capped again by the
file descriptors we have, the console line when a client hits one, and what each answer and
refusal adds to the request log and the metrics. A panic in a route becomes a 500 for that
request only.
*/

use super::bodies::into_tiny_http;
use super::routes::{State, handle, route_of};
use super::{Method, Request, RequestHeaders, Response};
use crate::console::Console;
use crate::metrics::Refusal;
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest form-encoded POST body we read for parameters.
const MAX_FORM_BODY: u64 = 64 * 1024;
/// A client that hits a connection limit is named on the console at most this often.
const REFUSAL_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Clients remembered for that; beyond, the oldest reports are forgotten.
const REFUSAL_REPORT_CLIENTS: usize = 4096;

/// How many connections the server keeps open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        let defaults = tiny_http::ServerConfig::default();
        ConnectionLimits {
            max_connections: defaults.max_connections,
            max_connections_per_client: defaults.max_connections_per_client,
        }
    }
}

/// How the HTTP server runs.
pub struct HttpOptions {
    pub limits: ConnectionLimits,
    /// HTTPS instead of HTTP.
    pub tls: Option<openssl::ssl::SslAcceptor>,
    /// One console line per request.
    pub log_requests: bool,
}

pub struct HttpServer {
    server: tiny_http::Server,
    pub local_addr: SocketAddr,
}

impl HttpServer {
    /// Serve `listener` as `options` say.
    pub fn start(
        listener: TcpListener,
        options: HttpOptions,
        state: Arc<State>,
        console: Console,
    ) -> Result<HttpServer, String> {
        let config = tiny_http::ServerConfig {
            max_connections: options.limits.max_connections,
            max_connections_per_client: options.limits.max_connections_per_client,
            tls: options
                .tls
                .map(|acceptor| tiny_http::Tls(Arc::new(acceptor))),
            ..tiny_http::ServerConfig::default()
        };
        let metrics = state.metrics.clone();
        let app = Arc::new(App {
            state,
            console,
            refusals: Mutex::default(),
            log_requests: options.log_requests,
        });
        let server = tiny_http::Server::start(listener, config, app)
            .map_err(|e| format!("could not start the HTTP server: {e}"))?;
        if let Some(metrics) = metrics {
            metrics.watch_connections(server.open_connections());
        }
        let local_addr = server.local_addr();
        Ok(HttpServer { server, local_addr })
    }

    /// Stop taking connections; open ones end after their current answer.
    pub fn stop(self) {
        self.server.stop();
    }
}

/// The routes, as tiny_http's handler.
struct App {
    state: Arc<State>,
    console: Console,
    /// When each client that hit a limit was last named on the console.
    refusals: Mutex<HashMap<IpAddr, Instant>>,
    log_requests: bool,
}

impl tiny_http::Handler for App {
    fn handle(&self, request: &mut tiny_http::Request<'_>) -> tiny_http::Response {
        let started = (Instant::now(), SystemTime::now());
        let target = request.url();
        let route = route_of(&super::normalize_path(
            target.split('?').next().unwrap_or(""),
        ));
        let response = match read_parameters(request) {
            Ok((method, path, params)) => {
                let headers = request_headers(request);
                let mut ours = Request {
                    method,
                    path,
                    params,
                    content_length: request.body_length(),
                    client: Some(request.remote_addr()),
                    headers,
                    body: request.as_reader(),
                };
                let response = catch_unwind(AssertUnwindSafe(|| handle(&mut ours, &self.state)))
                    .unwrap_or_else(|_| Response::status(500, "Internal Server Error"));
                let response = response.for_range(&ours.headers);
                // A HEAD sends no body: nothing to fetch.
                if ours.method == Method::Head {
                    response
                } else {
                    super::bodies::open_objects(response, &self.console)
                }
            }
            Err(response) => response,
        };
        let log_line = self.log_requests.then(|| {
            format!(
                "{} {} {} {}",
                iso8601_utc_millis(started.1),
                request.remote_addr(),
                request.method(),
                without_passwords(request.url())
            )
        });
        let (status, note) = (response.status, response.log_note.clone());
        let (console, metrics) = (self.console, self.state.metrics.clone());
        if let Some(metrics) = &metrics {
            let no_body = *request.method() == tiny_http::Method::Head
                || status < 200
                || status == 204
                || status == 304;
            let bytes = if no_body { 0 } else { response.body.length() };
            metrics.answered(route, status, bytes);
        }
        let mut out = into_tiny_http(response);
        if log_line.is_some() || metrics.is_some() {
            out.on_sent = Some(Box::new(move |sent: tiny_http::Sent| {
                let elapsed = started.0.elapsed();
                if let Some(metrics) = metrics {
                    metrics.took(route, elapsed);
                }
                if let Some(mut line) = log_line {
                    line.push_str(&format!(" {status} {} bytes", sent.body_bytes));
                    if !sent.complete {
                        line.push_str(" (cut off)");
                    }
                    line.push_str(&format!(" {:.1} ms", elapsed.as_secs_f64() * 1000.0));
                    if let Some(note) = note {
                        line.push(' ');
                        line.push_str(&note);
                    }
                    console.request(&line);
                }
            }));
        }
        out
    }

    fn refused(&self, client: SocketAddr, limit: tiny_http::Limit) {
        if let Some(metrics) = &self.state.metrics {
            metrics.refused(match limit {
                tiny_http::Limit::PerClient { .. } => Refusal::PerClientCap,
                tiny_http::Limit::Total(_) => Refusal::GlobalCap,
            });
        }
        if self.log_requests {
            let reason = match limit {
                tiny_http::Limit::PerClient { open, share } => format!(
                    "its address has {open} connections open, and its share is {share} while the server is busy (--max-connections-per-client)"
                ),
                tiny_http::Limit::Total(n) => {
                    format!("{n} connections are open, the most in all (--max-connections)")
                }
            };
            let line = format!(
                "{} {client} - - 503 0 bytes 0.0 ms refused: {reason}",
                iso8601_utc_millis(SystemTime::now())
            );
            self.console.request(&line);
        }
        self.report_refusal(client.ip(), limit);
    }

    fn rejected(&self, client: SocketAddr, rejection: &tiny_http::Rejection<'_>) {
        if let Some(metrics) = &self.state.metrics {
            metrics.refused(match rejection.kind {
                tiny_http::RejectionKind::Framing => Refusal::Framing,
                tiny_http::RejectionKind::Deadline => Refusal::Deadline,
            });
        }
        if self.log_requests {
            let began = SystemTime::now()
                .checked_sub(rejection.elapsed)
                .unwrap_or(UNIX_EPOCH);
            let (method, target) = match rejection.request {
                Some((method, target)) => (method.to_string(), without_passwords(target)),
                None => ("-".to_string(), "-".into()),
            };
            let line = format!(
                "{} {client} {method} {target} {} 0 bytes {:.1} ms refused: {}",
                iso8601_utc_millis(began),
                rejection.status,
                rejection.elapsed.as_secs_f64() * 1000.0,
                rejection.reason
            );
            self.console.request(&line);
        }
    }
}

impl App {
    /// Name a client that hit a connection limit on the console, at most once a minute.
    fn report_refusal(&self, client: IpAddr, limit: tiny_http::Limit) {
        let now = Instant::now();
        {
            let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            if refusals
                .get(&client)
                .is_some_and(|last| now.duration_since(*last) < REFUSAL_REPORT_INTERVAL)
            {
                return;
            }
            if refusals.len() >= REFUSAL_REPORT_CLIENTS {
                refusals.retain(|_, last| now.duration_since(*last) < REFUSAL_REPORT_INTERVAL);
            }
            if refusals.len() >= REFUSAL_REPORT_CLIENTS {
                return;
            }
            refusals.insert(client, now);
        }
        let line = match limit {
            tiny_http::Limit::PerClient { open, share } => format!(
                "Refusing connections from {client}: it has {open} open, and its share is {share} while the server is busy (--max-connections-per-client)"
            ),
            tiny_http::Limit::Total(n) => format!(
                "Refusing connections from {client}: {n} are open, the most in all (--max-connections)"
            ),
        };
        self.console.heading(&line);
    }
}

/// `target` with the value of every `password` parameter replaced (the Deployment Server's
/// `/login` sends it in the query, and with an upload token set it is the token).
fn without_passwords(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return std::borrow::Cow::Borrowed(target);
    };
    if !query.split('&').any(|p| p.starts_with("password=")) {
        return std::borrow::Cow::Borrowed(target);
    }
    let query: Vec<&str> = query
        .split('&')
        .map(|p| {
            if p.starts_with("password=") {
                "password=-"
            } else {
                p
            }
        })
        .collect();
    std::borrow::Cow::Owned(format!("{path}?{}", query.join("&")))
}

/// `time` as ISO 8601 in UTC with milliseconds: `2026-12-01T11:05:50.123Z`.
pub fn iso8601_utc_millis(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs();
    let (days, of_day) = ((seconds / 86_400) as i64, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// The header fields our routes act on.
fn request_headers(request: &tiny_http::Request<'_>) -> RequestHeaders {
    let header = |name: &str| request.header(name).map(str::to_string);
    let if_none_match: Vec<&str> = request
        .headers()
        .iter()
        .filter(|h| h.is("If-None-Match"))
        .map(|h| h.value.as_str())
        .collect();
    RequestHeaders {
        range: header("Range"),
        if_range: header("If-Range"),
        if_none_match: (!if_none_match.is_empty()).then(|| if_none_match.join(", ")),
        if_modified_since: header("If-Modified-Since"),
        authorization: header("Authorization"),
        host: header("Host"),
        origin: header("Origin"),
        sec_fetch_site: header("Sec-Fetch-Site"),
        accept: header("Accept"),
        cookie: header("Cookie"),
        content_type: header("Content-Type"),
    }
}

/// The method, the path and the parameters (query, then the form body of a POST), or the
/// 4xx answer for a request whose parameters cannot be read.
fn read_parameters(
    request: &mut tiny_http::Request<'_>,
) -> Result<(Method, String, super::Params), Response> {
    let method = match request.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Post => Method::Post,
        tiny_http::Method::Put => Method::Put,
        tiny_http::Method::Head => Method::Head,
        _ => Method::Other,
    };
    let bad_request = |message: String| Response::status(400, &format!("Bad Request: {message}"));
    let (path, mut params) = super::parse_target(request.url()).map_err(bad_request)?;
    let path = super::normalize_path(path).into_owned();
    let is_form = request.header("Content-Type").is_some_and(|v| {
        v.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    // Only a route that takes POST gets its form body decoded (a package POSTed to the upload
    // route by mistake is answered 405, not 400 for its "malformed" form).
    if method == Method::Post && is_form && super::routes::takes(&path, method) {
        let announced = request.body_length();
        let body = read_form(request.as_reader(), announced)?;
        params.extend(super::parse_form(&body).map_err(bad_request)?);
    }
    Ok((method, path, params))
}

/// Read a form body of at most `MAX_FORM_BODY` bytes, complete as announced.
fn read_form(body: &mut dyn Read, announced: Option<u64>) -> Result<Vec<u8>, Response> {
    if announced.is_some_and(|n| n > MAX_FORM_BODY) {
        return Err(Response::status(413, "Payload Too Large").closing());
    }
    let mut bytes = Vec::new();
    match body.take(MAX_FORM_BODY + 1).read_to_end(&mut bytes) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            return Err(Response::status(408, "Request Timeout").closing());
        }
        Err(e) => {
            return Err(Response::status(400, &format!("Bad Request: {e}")).closing());
        }
    }
    if bytes.len() as u64 > MAX_FORM_BODY {
        return Err(Response::status(413, "Payload Too Large").closing());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn passwords_stay_out_of_the_request_log() {
        assert_eq!(
            without_passwords("/login?username=t&password=secret&imei=1"),
            "/login?username=t&password=-&imei=1"
        );
        assert_eq!(
            without_passwords("/hello?project-id=P"),
            "/hello?project-id=P"
        );
    }

    #[test]
    fn formats_iso_8601_utc() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        assert_eq!(iso8601_utc_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601_utc_millis(at(1_796_123_150, 7)),
            "2026-12-01T11:05:50.007Z"
        );
        assert_eq!(
            iso8601_utc_millis(at(951_825_600, 999)),
            "2000-02-29T12:00:00.999Z"
        );
    }
}
