/*!
What the server counts, for Prometheus: `GET /metrics` in the Prometheus text format, or in
OpenMetrics when the scraper asks for it (both written by `prometheus-client`, the Prometheus
project's Rust client, not by hand).

Labels are fixed, small sets (the route, the status class, the refusal reason, the cause of
a failed upload): no package id, hardware id, token or client address ever becomes a label,
so the number of series is bounded whatever clients send.

Counting costs a request almost nothing: every series is made at start and its handle kept,
so a request adds to atomics and one histogram (its route's own short lock); no label lookup,
no index lock. What the store and the connection layer count already (packages, bytes,
uploads, signatures, open connections) is read from their own atomics when scraped.
*/

use crate::store::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The routes, as the `route` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Page,
    Static,
    Hello,
    PackageList,
    PackageIcon,
    PackageDownload,
    PackageUpload,
    PackageRemove,
    CategoryList,
    Metrics,
    // The Deployment Server's API.
    Login,
    Logout,
    AppList,
    AppIcon,
    AppDescription,
    AppPurchase,
    AppDownload,
    CategoryIcon,
    Upload,
    /// Any other path (a 404).
    Other,
}

impl Route {
    const ALL: [Route; 20] = [
        Route::Page,
        Route::Static,
        Route::Hello,
        Route::PackageList,
        Route::PackageIcon,
        Route::PackageDownload,
        Route::PackageUpload,
        Route::PackageRemove,
        Route::CategoryList,
        Route::Metrics,
        Route::Login,
        Route::Logout,
        Route::AppList,
        Route::AppIcon,
        Route::AppDescription,
        Route::AppPurchase,
        Route::AppDownload,
        Route::CategoryIcon,
        Route::Upload,
        Route::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Route::Page => "/",
            Route::Static => "/static",
            Route::Hello => "/hello",
            Route::PackageList => "/package/list",
            Route::PackageIcon => "/package/icon",
            Route::PackageDownload => "/package/download",
            Route::PackageUpload => "/package/upload",
            Route::PackageRemove => "/package/remove",
            Route::CategoryList => "/category/list",
            Route::Metrics => "/metrics",
            Route::Login => "/login",
            Route::Logout => "/logout",
            Route::AppList => "/app/list",
            Route::AppIcon => "/app/icon",
            Route::AppDescription => "/app/description",
            Route::AppPurchase => "/app/purchase",
            Route::AppDownload => "/app/download",
            Route::CategoryIcon => "/category/icon",
            Route::Upload => "/upload",
            Route::Other => "other",
        }
    }
}

/// Why the HTTP layer refused a connection or a request before any route ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` were open.
    GlobalCap,
    /// The client held its share while the server was busy (`--max-connections-per-client`).
    PerClientCap,
    /// A head or framing that breaks the protocol or a size limit.
    Framing,
    /// A head not complete within its deadline (408).
    Deadline,
}

impl Refusal {
    const ALL: [Refusal; 4] = [
        Refusal::GlobalCap,
        Refusal::PerClientCap,
        Refusal::Framing,
        Refusal::Deadline,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::GlobalCap => "global_cap",
            Refusal::PerClientCap => "per_client_cap",
            Refusal::Framing => "framing",
            Refusal::Deadline => "deadline",
        }
    }
}

/// The `status_class` label (no route answers with 1xx as its final answer).
const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Upper bounds of the request duration buckets, seconds: from a cached list (0.1 ms) to a
/// large download over a slow link.
const DURATION_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05, 0.25, 1.0, 5.0, 30.0, 120.0,
];

type Labels = Vec<(&'static str, &'static str)>;

/// One route's series.
struct RouteSeries {
    requests: [Counter; STATUS_CLASSES.len()],
    bytes: Counter,
    duration: Histogram,
}

/// How the binary was built and runs (`appman_build_info`).
pub struct BuildInfo {
    pub tls: bool,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    routes: Vec<RouteSeries>,
    refused: [Counter; Refusal::ALL.len()],
    open_connections: OpenConnections,
}

impl Metrics {
    /// Metrics for a server of `store` (the HTTP server joins with `watch_connections`).
    pub fn new(store: Arc<Store>, build: &BuildInfo) -> Metrics {
        let open_connections = OpenConnections::default();
        let mut registry = Registry::with_prefix("appman");
        let requests = Family::<Labels, Counter>::default();
        let bytes = Family::<Labels, Counter>::default();
        let durations =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let routes = Route::ALL
            .iter()
            .map(|route| {
                let route = ("route", route.label());
                RouteSeries {
                    requests: STATUS_CLASSES.map(|class| {
                        requests.get_or_create_owned(&vec![route, ("status_class", class)])
                    }),
                    bytes: bytes.get_or_create_owned(&vec![route]),
                    duration: durations.get_or_create_owned(&vec![route]),
                }
            })
            .collect();
        let refusals = Family::<Labels, Counter>::default();
        let refused =
            Refusal::ALL.map(|r| refusals.get_or_create_owned(&vec![("reason", r.label())]));
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status class",
            requests,
        );
        registry.register(
            "http_response_body_bytes",
            "Bytes of answer bodies sent, by route",
            bytes,
        );
        registry.register(
            "http_request_duration_seconds",
            "From a request's head to its answer's last byte, by route",
            durations,
        );
        registry.register(
            "http_connections_refused",
            "Connections and requests refused before any route ran, by reason",
            refusals,
        );
        registry.register_collector(Box::new(Figures {
            store,
            open_connections: open_connections.clone(),
            build: build_labels(build),
        }));
        Metrics {
            registry,
            routes,
            refused,
            open_connections,
        }
    }

    /// Report the connections `open` counts (the running HTTP server's).
    pub fn watch_connections(&self, open: tiny_http::OpenConnections) {
        let _ = self.open_connections.set(open);
    }

    /// One request answered (counted before its answer is written, so a client that has its
    /// answer finds it counted): its route, status and the body bytes it sends.
    pub fn answered(&self, route: Route, status: u16, body_bytes: u64) {
        let Some(series) = self.routes.get(route as usize) else {
            return;
        };
        let class = usize::from(status.clamp(200, 599) / 100 - 2);
        series.requests[class].inc();
        series.bytes.inc_by(body_bytes);
    }

    /// The time one request took, to its answer's last byte (observed once it is sent).
    pub fn took(&self, route: Route, elapsed: Duration) {
        if let Some(series) = self.routes.get(route as usize) {
            series.duration.observe(elapsed.as_secs_f64());
        }
    }

    /// One refusal by the HTTP layer.
    pub fn refused(&self, refusal: Refusal) {
        self.refused[refusal as usize].inc();
    }

    /// The exposition, in OpenMetrics when `openmetrics`, else in the Prometheus text format.
    pub fn encode(&self, openmetrics: bool) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        }
        Ok(text)
    }
}

/// The number of open connections, once the HTTP server runs.
type OpenConnections = Arc<OnceLock<tiny_http::OpenConnections>>;

fn build_labels(build: &BuildInfo) -> Labels {
    vec![
        ("version", env!("CARGO_PKG_VERSION")),
        (
            "linkage",
            if cfg!(target_feature = "crt-static") {
                "static"
            } else {
                "dynamic"
            },
        ),
        ("tls", if build.tls { "true" } else { "false" }),
    ]
}

/// What others count, read when scraped.
struct Figures {
    store: Arc<Store>,
    open_connections: OpenConnections,
    build: Labels,
}

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Figures")
    }
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = &self.store;
        let open = self.open_connections.get().map_or(0, |c| c.get());
        gauge(
            &mut encoder,
            "http_connections_open",
            "HTTP connections open.",
            open as i64,
        )?;
        let packages = read(&store.size.packages) as i64;
        gauge(
            &mut encoder,
            "store_packages",
            "Packages in the store.",
            packages,
        )?;
        let bytes = read(&store.size.bytes) as i64;
        gauge(
            &mut encoder,
            "store_package_bytes",
            "Bytes of the store's package files.",
            bytes,
        )?;
        let counters = &store.counters;
        let accepted = read(&counters.uploads_accepted);
        counter(
            &mut encoder,
            "uploads_accepted",
            "Uploads accepted (HTTP and upload/).",
            accepted,
        )?;
        let mut rejected = encoder.encode_descriptor(
            "uploads_rejected",
            "Uploads refused (HTTP and upload/), by whose fault: the client's or the server's.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (cause, value) in [
            ("client", read(&counters.uploads_rejected_client)),
            ("server", read(&counters.uploads_rejected_server)),
        ] {
            let labels = [("cause", cause)];
            ConstCounter::new(value).encode(rejected.encode_family(&labels)?)?;
        }
        let passes = read(&counters.scanner_passes);
        counter(
            &mut encoder,
            "scanner_passes",
            "Passes over upload/ and remove/.",
            passes,
        )?;
        let signer = store.signer.as_deref();
        let signed = signer.map_or(0, |s| read(&s.signed_downloads));
        counter(
            &mut encoder,
            "signed_downloads",
            "Store-signed downloads answered.",
            signed,
        )?;
        let made = signer.map_or(0, |s| read(&s.signatures));
        counter(
            &mut encoder,
            "signatures_computed",
            "Store signatures computed.",
            made,
        )?;
        let hits = signer.map_or(0, |s| read(&s.footer_hits));
        let help = "Signed downloads whose signature footer was cached.";
        counter(&mut encoder, "signature_cache_hits", help, hits)?;
        let mut info = encoder.encode_descriptor(
            "build_info",
            "How the server was built and runs (always 1).",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(info.encode_family(&self.build)?)?;
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}
