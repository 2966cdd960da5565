//! `menshen serve`: its flags, grouped by what they set, and the start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::TypedValueParser as _;

use super::args::{KeyArgs, StoreArgs, parse_bytes};
use crate::api::rate_limit::{Rate, RateLimit};
use crate::config::{DEFAULT_RESOURCE_TTL, Settings};
use crate::geo::client_ip::TrustedProxies;
use crate::pki::{DEFAULT_CLIENT_CERT_VALIDITY, DEFAULT_RSA_POOL, KeyType, PkiSettings};
use crate::telemetry;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the public API.
    #[arg(long, env = "MENSHEN_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,

    /// Address of the Prometheus metrics endpoint (`/metrics`); off when not given.
    #[arg(long, env = "MENSHEN_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,

    #[command(flatten)]
    store: StoreArgs,

    /// Provider file (TOML) to write into the store at start.
    #[arg(long, env = "MENSHEN_CONFIG")]
    config: Option<PathBuf>,

    #[command(flatten)]
    key: KeyArgs,

    /// How long a pushed gateway or bridge stays listed without a heartbeat
    /// (e.g. 60s, 2m).
    #[arg(long, env = "MENSHEN_RESOURCE_TTL", value_parser = humantime::parse_duration,
          default_value = DEFAULT_RESOURCE_TTL)]
    resource_ttl: Duration,

    /// Full reload from the store at this interval, in case a change
    /// notification was missed.
    #[arg(long, env = "MENSHEN_RELOAD_INTERVAL", value_parser = humantime::parse_duration,
          default_value = crate::config::DEFAULT_RELOAD_INTERVAL)]
    reload_interval: Duration,

    #[command(flatten)]
    pki: PkiArgs,

    /// At most this many gateways (`remote` lines) in a served OpenVPN
    /// configuration.
    #[arg(long, env = "MENSHEN_OPENVPN_MAX_REMOTES", default_value_t = crate::config::DEFAULT_OPENVPN_MAX_REMOTES as u16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    openvpn_max_remotes: u16,

    #[command(flatten)]
    issue: IssueArgs,

    #[command(flatten)]
    geo: GeoArgs,

    #[command(flatten)]
    bridges: BridgeArgs,

    #[command(flatten)]
    oidc: OidcArgs,

    #[command(flatten)]
    probe: ServeProbeArgs,

    #[command(flatten)]
    signatures: SignatureArgs,

    /// Show a summary (counts per location, no hosts) on the status page to
    /// anyone; without it the page needs a viewer or admin token.
    #[arg(long, env = "MENSHEN_PUBLIC_STATUS")]
    public_status: bool,

    #[command(flatten)]
    connections: ConnectionArgs,

    #[command(flatten)]
    traces: TraceArgs,

    /// How long a write (agent push, admin change) waits for a database
    /// connection before it is answered 503 with Retry-After.
    #[arg(long, env = "MENSHEN_STORE_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = "1s")]
    store_timeout: Duration,

    /// At most this many gateways and bridges per agent; a push that would
    /// take an agent above it is refused (422) and stores nothing.
    #[arg(long, env = "MENSHEN_MAX_RESOURCES_PER_AGENT",
          default_value_t = crate::inventory::validate::DEFAULT_MAX_RESOURCES_PER_AGENT)]
    max_resources_per_agent: usize,

    /// Accept gateways and bridges at addresses that are not public unicast
    /// (loopback, private, link-local, CGNAT, documentation, ...): for labs
    /// and tests. The provider file's `[policy] allow_private_addresses`
    /// does the same.
    #[arg(long, env = "MENSHEN_ALLOW_PRIVATE_ADDRESSES")]
    allow_private_addresses: bool,

    /// Serve the LEAP API v3 too (/3/config/eip-service.json, /3/cert),
    /// from the same inventory, for older clients; `false` turns it off.
    #[arg(long, env = "MENSHEN_API_V3", default_value_t = true, action = clap::ArgAction::Set,
          value_name = "BOOL")]
    api_v3: bool,
}

impl ServeArgs {
    /// Where traces go, for the logs' set-up.
    pub fn traces(&self) -> telemetry::TraceSettings {
        self.traces.settings()
    }
}

/// Traces over OTLP: off unless an endpoint is given. The standard
/// OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG choose the sampler, and
/// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as it is) works too.
#[derive(Debug, Clone, Args)]
struct TraceArgs {
    /// Where to send traces: the collector's base URL (http/protobuf:
    /// `/v1/traces` is appended) or gRPC address, e.g. http://otel:4317.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,

    /// The OTLP transport.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_enum,
        default_value = "http/protobuf"
    )]
    otlp_protocol: telemetry::OtlpProtocol,

    /// `service.name` of menshen's spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "menshen")]
    otel_service_name: String,
}

impl TraceArgs {
    fn settings(&self) -> telemetry::TraceSettings {
        telemetry::TraceSettings {
            endpoint: self.otlp_endpoint.clone(),
            protocol: self.otlp_protocol,
            service_name: self.otel_service_name.clone(),
        }
    }
}

/// How long connections may take, and how many there may be, per listener.
#[derive(Debug, Clone, Args)]
struct ConnectionArgs {
    /// A new connection that has not sent a complete request head within
    /// this is closed.
    #[arg(long, env = "MENSHEN_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = crate::server::DEFAULT_HEADER_READ_TIMEOUT)]
    header_read_timeout: Duration,

    /// A connection with no request in progress (keep-alive) is closed after
    /// this. Keep it above the proxy's idle timeout for its backend
    /// connections.
    #[arg(long, env = "MENSHEN_IDLE_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = crate::server::DEFAULT_IDLE_TIMEOUT)]
    idle_timeout: Duration,

    /// A request body must arrive whole within this of its head.
    #[arg(long, env = "MENSHEN_BODY_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = crate::server::DEFAULT_BODY_TIMEOUT)]
    body_timeout: Duration,

    /// Most connections open at once on the public listener; more wait in
    /// the backlog.
    #[arg(long, env = "MENSHEN_MAX_CONNECTIONS", default_value_t = crate::server::DEFAULT_LIMITS.max_connections,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    max_connections: usize,

    /// Most connections open at once on the metrics listener.
    #[arg(long, env = "MENSHEN_METRICS_MAX_CONNECTIONS", default_value_t = crate::server::DEFAULT_METRICS_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    metrics_max_connections: usize,
}

impl ConnectionArgs {
    fn limits(&self) -> crate::server::ConnectionLimits {
        crate::server::ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            max_connections: self.max_connections,
        }
    }
}

/// Operators' tokens from an external OpenID Connect provider (besides
/// `menshen admin token`): on when issuer, audience and JWKS URL are given.
#[derive(Debug, Clone, Args)]
struct OidcArgs {
    /// The provider's issuer, exactly as its tokens' `iss` (trailing slash
    /// included).
    #[arg(long, env = "MENSHEN_OIDC_ISSUER", requires_all = ["oidc_audience", "oidc_jwks_url"])]
    oidc_issuer: Option<String>,
    /// The audience menshen's tokens are issued for (`aud`).
    #[arg(long, env = "MENSHEN_OIDC_AUDIENCE", requires = "oidc_issuer")]
    oidc_audience: Option<String>,
    /// Where the provider publishes its signing keys (JWKS).
    #[arg(long, env = "MENSHEN_OIDC_JWKS_URL", requires = "oidc_issuer")]
    oidc_jwks_url: Option<reqwest::Url>,
    /// The claim naming the role (`admin` or `viewer`); a dotted path
    /// (`realm_access.roles`) and arrays are understood.
    #[arg(long, env = "MENSHEN_OIDC_ROLE_CLAIM", default_value = crate::auth::oidc::DEFAULT_ROLE_CLAIM)]
    oidc_role_claim: String,
}

impl OidcArgs {
    fn settings(self) -> Option<crate::auth::oidc::OidcSettings> {
        let (issuer, audience, url) = (self.oidc_issuer?, self.oidc_audience?, self.oidc_jwks_url?);
        let mut settings = crate::auth::oidc::OidcSettings::new(issuer, audience, url);
        settings.role_claim = self.oidc_role_claim;
        Some(settings)
    }
}

/// How certificates (and configurations, which carry one) are handed out.
#[derive(Debug, Clone, Args)]
struct IssueArgs {
    /// Certificates and configurations one client address may get (IPv6:
    /// one /64), e.g. 10/min, 1/s, 100/h; beyond it 429 with Retry-After.
    /// Off when not given. The client's address is the one --trusted-proxies
    /// vouch for.
    #[arg(long, env = "MENSHEN_CERT_RATE_LIMIT")]
    cert_rate_limit: Option<Rate>,

    /// How many of those may come at once (default: the rate's count).
    #[arg(long, env = "MENSHEN_CERT_RATE_BURST", requires = "cert_rate_limit",
          value_parser = clap::value_parser!(u32).range(1..))]
    cert_rate_burst: Option<u32>,

    /// Threads that issue certificates, at a lower priority than those that
    /// answer lists; 0 for one per core.
    #[arg(long, env = "MENSHEN_ISSUE_THREADS", default_value_t = 0)]
    issue_threads: usize,

    /// Certificate requests that may wait for an issuing thread; beyond it
    /// 503 with Retry-After.
    #[arg(long, env = "MENSHEN_ISSUE_QUEUE", default_value_t = crate::config::DEFAULT_ISSUE_QUEUE)]
    issue_queue: usize,
}

impl IssueArgs {
    fn rate_limit(&self) -> Option<RateLimit> {
        rate_limit(self.cert_rate_limit, self.cert_rate_burst)
    }
}

/// A rate with its burst (by default the rate's count), if a rate is given.
fn rate_limit(rate: Option<Rate>, burst: Option<u32>) -> Option<RateLimit> {
    rate.map(|rate| RateLimit {
        rate,
        burst: burst.unwrap_or(rate.count),
    })
}

/// How public bridges are handed out, so that a censor cannot list them
/// all with a few requests (see `select::ring`).
#[derive(Debug, Clone, Args)]
struct BridgeArgs {
    /// Public bridges of each transport one client network (IPv4 /16, IPv6
    /// /48) is given, the same ones for a whole --bridge-epoch; 0 gives
    /// every client every bridge (for small providers). The network is the
    /// client address --trusted-proxies vouch for.
    #[arg(long, env = "MENSHEN_BRIDGES_PER_CLIENT",
          default_value_t = crate::select::ring::DEFAULT_PER_CLIENT as u8,
          value_parser = clap::value_parser!(u8).range(0..=crate::select::ring::MAX_PER_CLIENT as i64))]
    bridges_per_client: u8,

    /// How long a network keeps its bridges (e.g. 24h, 7d; at least 1s):
    /// the epoch is the unix time divided by it, and each epoch shares the
    /// bridges out afresh.
    #[arg(long, env = "MENSHEN_BRIDGE_EPOCH", value_parser = parse_epoch,
          default_value = crate::select::ring::DEFAULT_EPOCH)]
    bridge_epoch: Duration,

    /// Bridge lists one client network (IPv4 /16, IPv6 /48) may get (v3
    /// service descriptions count too), e.g. 10/min, 100/h; beyond it 429
    /// with Retry-After. Off when not given.
    #[arg(long, env = "MENSHEN_BRIDGE_RATE_LIMIT")]
    bridge_rate_limit: Option<Rate>,

    /// How many of those may come at once (default: the rate's count).
    #[arg(long, env = "MENSHEN_BRIDGE_RATE_BURST", requires = "bridge_rate_limit",
          value_parser = clap::value_parser!(u32).range(1..))]
    bridge_rate_burst: Option<u32>,
}

/// The prober inside the server, and what the lists make of its results.
#[derive(Debug, Clone, Args)]
struct ServeProbeArgs {
    /// Check every gateway and bridge from outside, in this process (see
    /// `menshen probe`, which does it from a process of its own). With
    /// several replicas, give it to one of them, or run `menshen probe`.
    #[arg(long, env = "MENSHEN_PROBE")]
    probe: bool,

    #[command(flatten)]
    settings: super::probe::ProbeArgs,

    /// Keep gateways and bridges the prober found dysfunctional in client
    /// lists (they are left out by default; never all of a kind at once).
    #[arg(long, env = "MENSHEN_PROBE_KEEP_DYSFUNCTIONAL")]
    probe_keep_dysfunctional: bool,
}

/// Signed client answers (see `sign`).
#[derive(Debug, Clone, Args)]
struct SignatureArgs {
    /// Ed25519 key (a file holding the base64 of its 32-byte seed; `menshen
    /// pki list-key` makes one) that signs /provider.json, /api/5/service and
    /// the gateway and bridge lists (header x-menshen-signature). Give it
    /// twice to rotate: the first signs, both are published in
    /// /provider.json (MENSHEN_LIST_KEY_FILE: comma-separated). Unsigned
    /// without it.
    #[arg(long, env = "MENSHEN_LIST_KEY_FILE", value_delimiter = ',')]
    list_key_file: Vec<PathBuf>,

    /// How long a signature is to be believed (its `exp`); one is made
    /// again once half of it has passed.
    #[arg(long, env = "MENSHEN_SIGNATURE_VALIDITY", value_parser = parse_validity,
          default_value = crate::sign::DEFAULT_VALIDITY_TEXT)]
    signature_validity: Duration,

    /// While signing: orders of one list (set of gateways or bridges) a
    /// client is given one of, each signed once; clients are spread over
    /// them.
    #[arg(long, env = "MENSHEN_SIGNATURE_VARIANTS", default_value_t = crate::sign::DEFAULT_VARIANTS,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    signature_variants: u32,
}

/// A signature's validity: at least a minute.
fn parse_validity(text: &str) -> Result<Duration, String> {
    super::args::duration_at_least(text, Duration::from_secs(60), "a signature must hold")
}

/// A bridge epoch: a duration of at least a second.
fn parse_epoch(text: &str) -> Result<Duration, String> {
    super::args::duration_at_least(text, Duration::from_secs(1), "an epoch must be")
}

/// Where clients are, and how lists are ordered for them.
#[derive(Debug, Clone, Args)]
struct GeoArgs {
    /// GeoIP database (MaxMind DB format: GeoIP2 City/Country or the DB-IP
    /// lite layout) to place clients that do not send `cc`.
    #[arg(long, env = "MENSHEN_GEOIP_DB")]
    geoip_db: Option<PathBuf>,

    /// Proxies (CIDRs or addresses, comma-separated) whose X-Forwarded-For
    /// and X-Real-IP headers are believed; nobody else's are.
    #[arg(long, env = "MENSHEN_TRUSTED_PROXIES", value_parser = TrustedProxies::parse,
          default_value = "")]
    trusted_proxies: TrustedProxies,

    /// Deprecated, ignored: every request gets its own order now, and no
    /// answers are kept. Accepted so that existing deployments still start.
    #[arg(long, env = "MENSHEN_ORDER_VARIANTS", hide = true,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    order_variants: Option<u16>,

    /// Deprecated, ignored, like --order-variants.
    #[arg(long, env = "MENSHEN_RESPONSE_CACHE", hide = true, value_parser = parse_bytes)]
    response_cache: Option<usize>,

    /// Fixed seed for the random orderings (for tests and benchmarks).
    #[arg(long, env = "MENSHEN_ORDER_SEED", hide = true)]
    order_seed: Option<u64>,
}

/// The CA that signs client certificates, and what clients get.
#[derive(Debug, Clone, Args)]
struct PkiArgs {
    /// Certificate (PEM) of the CA that signs client certificates: the one
    /// the gateways trust for clients. Without it and --ca-key, menshen
    /// generates a CA into DATA_DIR/pki, for trying it out only.
    #[arg(long, env = "MENSHEN_CA_CERT", requires = "ca_key")]
    ca_cert: Option<PathBuf>,

    /// Private key (PEM, unencrypted) of that CA.
    #[arg(long, env = "MENSHEN_CA_KEY", requires = "ca_cert")]
    ca_key: Option<PathBuf>,

    /// The CA certificate (PEM) handed to clients in `<ca>`, which the
    /// gateways' server certificates chain to; its SHA-256 is
    /// `ca_cert_fingerprint` in /provider.json. Default: --ca-cert.
    #[arg(long, env = "MENSHEN_PROVIDER_CA_CERT")]
    provider_ca_cert: Option<PathBuf>,

    /// Kind of key clients get; rsa2048 is for old OpenVPN builds.
    #[arg(
        long,
        env = "MENSHEN_CLIENT_KEY_TYPE",
        value_enum,
        default_value = "ed25519"
    )]
    client_key_type: KeyType,

    /// Key types a client may ask for with `algo=` (rsa, ecdsa, ed25519),
    /// comma-separated; must include --client-key-type.
    #[arg(
        long,
        env = "MENSHEN_CLIENT_KEY_TYPES",
        value_enum,
        value_delimiter = ',',
        default_value = "ed25519,ecdsa-p256,rsa2048"
    )]
    client_key_types: Vec<KeyType>,

    /// RSA keys kept made ahead, so that a burst of `algo=rsa` requests is
    /// answered at once (0: make each when asked).
    #[arg(long, env = "MENSHEN_RSA_KEY_POOL", default_value_t = DEFAULT_RSA_POOL as u16)]
    rsa_key_pool: u16,

    /// How long a client certificate is valid (e.g. 24d, 12h).
    #[arg(long, env = "MENSHEN_CLIENT_CERT_VALIDITY", value_parser = humantime::parse_duration,
          default_value = DEFAULT_CLIENT_CERT_VALIDITY)]
    client_cert_validity: Duration,
}

impl PkiArgs {
    fn settings(self) -> PkiSettings {
        PkiSettings {
            ca_cert: self.ca_cert,
            ca_key: self.ca_key,
            provider_ca_cert: self.provider_ca_cert,
            key_type: self.client_key_type,
            offered: self.client_key_types,
            rsa_pool: usize::from(self.rsa_key_pool),
            validity: self.client_cert_validity,
        }
    }
}

/// Starts the server; it runs until a shutdown signal.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    for (flag, given) in [
        (
            "--order-variants (MENSHEN_ORDER_VARIANTS)",
            args.geo.order_variants.is_some(),
        ),
        (
            "--response-cache (MENSHEN_RESPONSE_CACHE)",
            args.geo.response_cache.is_some(),
        ),
    ] {
        if given {
            tracing::warn!(
                "{flag} is deprecated and ignored: each request gets its own order, \
                 assembled from ready bytes, and no answers are kept"
            );
        }
    }
    let settings = Settings {
        engine: args.store.engine()?,
        data_dir: args.store.data_dir.clone(),
        provider_file: args.config,
        resource_ttl: args.resource_ttl,
        reload_interval: args.reload_interval,
        signing_key: args.key.source(),
        pki: args.pki.settings(),
        openvpn_max_remotes: usize::from(args.openvpn_max_remotes),
        geoip_db: args.geo.geoip_db,
        trusted_proxies: args.geo.trusted_proxies,
        order_seed: args.geo.order_seed,
        cert_rate_limit: args.issue.rate_limit(),
        bridges_per_client: usize::from(args.bridges.bridges_per_client),
        bridge_epoch: args.bridges.bridge_epoch,
        bridge_clock: crate::select::ring::EpochClock::system(),
        bridge_rate_limit: rate_limit(
            args.bridges.bridge_rate_limit,
            args.bridges.bridge_rate_burst,
        ),
        issue_threads: args.issue.issue_threads,
        issue_queue: args.issue.issue_queue,
        oidc: args.oidc.settings(),
        public_status: args.public_status,
        api_v3: args.api_v3,
        store_check_interval: crate::store::HEALTH_CHECK_INTERVAL,
        connections: args.connections.limits(),
        metrics_max_connections: args.connections.metrics_max_connections,
        store_timeout: args.store_timeout,
        max_resources_per_agent: args.max_resources_per_agent,
        allow_private_addresses: args.allow_private_addresses,
        probe: args.probe.probe.then(|| args.probe.settings.settings()),
        drop_dysfunctional: !args.probe.probe_keep_dysfunctional,
        list_key_files: args.signatures.list_key_file,
        signature_validity: args.signatures.signature_validity,
        signature_variants: args.signatures.signature_variants,
    };
    if let Some(limit) = crate::server::raise_fd_limit() {
        let wanted =
            (settings.connections.max_connections + settings.metrics_max_connections) as u64;
        if wanted + 256 > limit {
            tracing::warn!(
                limit,
                "the open file limit is below --max-connections plus --metrics-max-connections; \
                 connections beyond it fail to be accepted"
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let metrics_listener = match args.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
        ),
        None => None,
    };
    crate::launch(
        settings,
        listener,
        metrics_listener,
        crate::shutdown_signal(),
    )
    .await
}

#[cfg(test)]
mod tests;
