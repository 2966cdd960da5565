//! Logs and metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

use crate::inventory::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global log subscriber. `RUST_LOG` overrides `default_level`.
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},sqlx=warn")));
    // Colour only for a terminal, not for a file or a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second call (as in tests) keeps the first subscriber.
    let _ = result;
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Route,
    status: u16,
}

/// The matched route of a request (shared, not copied), or none.
#[derive(Debug, Clone)]
struct Route(Option<MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The method as a label; uncommon methods share one value so that clients
/// cannot create label values at will.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 10 s.
    Histogram::new(exponential_buckets(0.0001, 2.5, 13))
}

/// menshen's Prometheus metrics, served on their own listener.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    listed: Family<KindLabels, Gauge>,
    snapshot_builds: Counter,
    reload_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("menshen");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let listed = Family::<KindLabels, Gauge>::default();
        let snapshot_builds = Counter::default();
        let reload_failures = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, matched route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, matched route and status",
            latency.clone(),
        );
        registry.register(
            "inventory_resources",
            "Locations, and gateways and bridges that clients are currently given",
            listed.clone(),
        );
        registry.register(
            "snapshot_builds",
            "Client snapshots built",
            snapshot_builds.clone(),
        );
        registry.register(
            "inventory_reload_failures",
            "Failed reads of the inventory from the store",
            reload_failures.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            listed,
            snapshot_builds,
            reload_failures,
        }
    }

    pub fn observe_snapshot(&self, snapshot: &Snapshot) {
        self.snapshot_builds.inc();
        for (kind, n) in [
            ("location", snapshot.location_count),
            ("gateway", snapshot.gateways.len()),
            ("bridge", snapshot.bridges.len()),
        ] {
            self.listed
                .get_or_create(&KindLabels { kind })
                .set(n as i64);
        }
    }

    pub fn reload_failed(&self) {
        self.reload_failures.inc();
    }

    fn observe_request(&self, labels: RequestLabels, seconds: f64) {
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts and times every request by its matched route (not its raw path,
/// which would let clients create unbounded label values).
pub async fn track_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let route = Route(request.extensions().get::<MatchedPath>().cloned());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = start.elapsed();
    // Per-request lines are debug: clients are many, and health checks frequent.
    tracing::debug!(
        method,
        route = route.as_str(),
        status,
        elapsed_us = elapsed.as_micros() as u64,
        "request"
    );
    metrics.observe_request(
        RequestLabels {
            method,
            route,
            status,
        },
        elapsed.as_secs_f64(),
    );
    response
}
