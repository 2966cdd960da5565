//! Prometheus metrics, and the middleware that counts every request.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::sync::Mutex;

use super::traces::{request_span, tracing_on};
use crate::inventory::Snapshot;
use crate::pki::KeyType;
use crate::store::{ProbeState, ResourceKind, StoreHealth};

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LocationLabels {
    location: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    kind: &'static str,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyTypeLabels {
    key_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// How an agent's push ended, as counted in `agent_pushes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored (200, 201).
    Ok,
    /// Token missing, forged or revoked, or a host of someone else (401, 403).
    Unauthorized,
    /// A body too large, not JSON or with invalid content (400, 413, 422).
    Invalid,
    /// Not stored through no fault of the agent (5xx).
    Failed,
}

impl PushOutcome {
    const ALL: [PushOutcome; 4] = [
        PushOutcome::Ok,
        PushOutcome::Unauthorized,
        PushOutcome::Invalid,
        PushOutcome::Failed,
    ];

    pub fn of_status(status: axum::http::StatusCode) -> PushOutcome {
        match status.as_u16() {
            200..=299 => PushOutcome::Ok,
            401 | 403 => PushOutcome::Unauthorized,
            400..=499 => PushOutcome::Invalid,
            _ => PushOutcome::Failed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            PushOutcome::Ok => "ok",
            PushOutcome::Unauthorized => "unauthorized",
            PushOutcome::Invalid => "invalid",
            PushOutcome::Failed => "failed",
        }
    }
}

const KINDS: [ResourceKind; 2] = [ResourceKind::Gateway, ResourceKind::Bridge];

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
    gateways_live: Family<LocationLabels, Gauge>,
    /// The locations `gateways_live` has a series for.
    live_locations: Mutex<BTreeSet<String>>,
    stale: Family<KindLabels, Gauge>,
    /// Stored gateways and bridges by the prober's state of them.
    probed: Family<ProbeLabels, Gauge>,
    /// Left out of client lists as dysfunctional, per kind.
    probe_excluded: Family<KindLabels, Gauge>,
    /// 1 where every live one of a kind is dysfunctional and none is left out.
    probe_suspended: Family<KindLabels, Gauge>,
    /// Indexed like [`KeyType::ALL`]: counted without a lookup.
    certificates_issued: [Counter; 3],
    /// Indexed by [`KINDS`], then [`PushOutcome::ALL`].
    agent_pushes: [[Counter; 4]; 2],
    /// Open connections and their cap, per listener.
    connections_open: Family<ListenerLabels, Gauge>,
    connections_max: Family<ListenerLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

/// A listener, as the connection metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Clients, agents and operators.
    Public,
    /// `/metrics`.
    Metrics,
}

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Listener::Public => "public",
            Listener::Metrics => "metrics",
        }
    }
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
        let gateways_live = Family::<LocationLabels, Gauge>::default();
        let stale = Family::<KindLabels, Gauge>::default();
        for kind in KINDS {
            stale
                .get_or_create(&KindLabels {
                    kind: kind.as_str(),
                })
                .set(0);
        }
        let probed = Family::<ProbeLabels, Gauge>::default();
        let probe_excluded = Family::<KindLabels, Gauge>::default();
        let probe_suspended = Family::<KindLabels, Gauge>::default();
        for kind in KINDS {
            let labels = KindLabels {
                kind: kind.as_str(),
            };
            probe_excluded.get_or_create(&labels).set(0);
            probe_suspended.get_or_create(&labels).set(0);
            for state in ProbeState::ALL {
                probed
                    .get_or_create(&ProbeLabels {
                        kind: kind.as_str(),
                        state: state.as_str(),
                    })
                    .set(0);
            }
        }
        // Every series exists from the start, at zero, so that rates and
        // alerts see them before the first event.
        let issued = Family::<KeyTypeLabels, Counter>::default();
        let certificates_issued = KeyType::ALL.map(|key_type| {
            issued
                .get_or_create(&KeyTypeLabels {
                    key_type: key_type.name(),
                })
                .clone()
        });
        let pushes = Family::<PushLabels, Counter>::default();
        let agent_pushes = KINDS.map(|kind| {
            PushOutcome::ALL.map(|outcome| {
                pushes
                    .get_or_create(&PushLabels {
                        kind: kind.as_str(),
                        outcome: outcome.name(),
                    })
                    .clone()
            })
        });
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
        registry.register(
            "gateways_live",
            "Gateways clients may be given now, per location",
            gateways_live.clone(),
        );
        registry.register(
            "resources_stale",
            "Agent-pushed gateways and bridges not heard from within the resource TTL",
            stale.clone(),
        );
        registry.register(
            "probe_resources",
            "Stored gateways and bridges by what the prober last found: untested, functional or dysfunctional",
            probed.clone(),
        );
        registry.register(
            "probe_excluded",
            "Gateways and bridges left out of client lists because the prober found them dysfunctional",
            probe_excluded.clone(),
        );
        registry.register(
            "probe_exclusion_suspended",
            "1 when every live gateway (or bridge) is dysfunctional, so none is left out",
            probe_suspended.clone(),
        );
        registry.register(
            "certificates_issued",
            "Client certificates issued, by key type",
            issued,
        );
        registry.register("agent_pushes", "Agent pushes by kind and outcome", pushes);
        let connections_open = Family::<ListenerLabels, Gauge>::default();
        let connections_max = Family::<ListenerLabels, Gauge>::default();
        for listener in [Listener::Public, Listener::Metrics] {
            let labels = ListenerLabels {
                listener: listener.name(),
            };
            connections_open.get_or_create(&labels).set(0);
            connections_max.get_or_create(&labels).set(0);
        }
        registry.register(
            "http_connections_open",
            "Open HTTP connections, per listener",
            connections_open.clone(),
        );
        registry.register(
            "http_connections_max",
            "The cap on open HTTP connections (--max-connections), per listener; beyond it new ones wait in the backlog",
            connections_max.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            listed,
            snapshot_builds,
            reload_failures,
            gateways_live,
            live_locations: Mutex::default(),
            stale,
            probed,
            probe_excluded,
            probe_suspended,
            certificates_issued,
            agent_pushes,
            connections_open,
            connections_max,
        }
    }

    /// The gauge of `listener`'s open connections, with its cap set to `max`.
    pub fn connections(&self, listener: Listener, max: usize) -> Gauge {
        let labels = ListenerLabels {
            listener: listener.name(),
        };
        self.connections_max
            .get_or_create(&labels)
            .set(i64::try_from(max).unwrap_or(i64::MAX));
        self.connections_open.get_or_create(&labels).clone()
    }

    /// Exports `store_up`: 1 while the store answers, 0 from a failed
    /// round trip until one succeeds.
    pub fn register_store(&mut self, health: &StoreHealth) {
        self.registry.register(
            "store_up",
            "Whether the store answered its last round trip (1) or not (0)",
            health.gauge(),
        );
    }

    /// Exports how many client answers were signed (each distinct body
    /// once per snapshot).
    pub fn register_signatures(&mut self, made: Counter) {
        self.registry.register(
            "list_signatures",
            "Signatures made of client answers (x-menshen-signature): one per distinct body and snapshot",
            made,
        );
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
        for (kind, n) in [
            (ResourceKind::Gateway, snapshot.stale_gateways),
            (ResourceKind::Bridge, snapshot.stale_bridges),
        ] {
            self.stale
                .get_or_create(&KindLabels {
                    kind: kind.as_str(),
                })
                .set(n as i64);
        }
        for kind in KINDS {
            let k = kind.as_str();
            for state in ProbeState::ALL {
                let n = snapshot.probes.counts.get(&(kind, state)).copied();
                self.probed
                    .get_or_create(&ProbeLabels {
                        kind: k,
                        state: state.as_str(),
                    })
                    .set(n.unwrap_or(0) as i64);
            }
            let excluded = snapshot
                .probes
                .excluded
                .iter()
                .filter(|(of, _)| *of == kind);
            self.probe_excluded
                .get_or_create(&KindLabels { kind: k })
                .set(excluded.count() as i64);
            self.probe_suspended
                .get_or_create(&KindLabels { kind: k })
                .set(i64::from(snapshot.probes.suspended.contains(&kind)));
        }
        let mut live = std::collections::BTreeMap::<&str, i64>::new();
        for label in snapshot.location_labels() {
            live.insert(label, 0);
        }
        for gateway in &snapshot.gateways {
            if let Some(n) = live.get_mut(gateway.location.as_str()) {
                *n += 1;
            }
        }
        let mut known = self
            .live_locations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        known.retain(|location| {
            let kept = live.contains_key(location.as_str());
            if !kept {
                self.gateways_live.remove(&LocationLabels {
                    location: location.clone(),
                });
            }
            kept
        });
        for (location, n) in live {
            self.gateways_live
                .get_or_create(&LocationLabels {
                    location: location.to_owned(),
                })
                .set(n);
            if !known.contains(location) {
                known.insert(location.to_owned());
            }
        }
    }

    /// A client certificate with a key of `key_type` was issued.
    pub fn certificate_issued(&self, key_type: KeyType) {
        let i = KeyType::ALL
            .iter()
            .position(|k| *k == key_type)
            .unwrap_or(0);
        self.certificates_issued[i].inc();
    }

    /// An agent's push of `kind` ended with `outcome`.
    pub fn agent_pushed(&self, kind: ResourceKind, outcome: PushOutcome) {
        let k = usize::from(kind == ResourceKind::Bridge);
        let o = PushOutcome::ALL
            .iter()
            .position(|x| *x == outcome)
            .unwrap_or(3);
        self.agent_pushes[k][o].inc();
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
/// which would let clients create unbounded label values), traced in a span
/// of its own; `run` answers it.
pub async fn track_requests<F>(
    metrics: &Metrics,
    request: Request,
    run: impl FnOnce(Request) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    let start = Instant::now();
    let method = method_label(request.method());
    let route = Route(request.extensions().get::<MatchedPath>().cloned());
    // Health checks come every second from every proxy: not traced.
    let traced = tracing_on() && !matches!(route.as_str(), "/healthz" | "/readyz");
    let response = if traced {
        use tracing::Instrument as _;
        let span = request_span(&request, method, route.as_str());
        let response = run(request).instrument(span.clone()).await;
        let status = response.status();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        response
    } else {
        run(request).await
    };
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
