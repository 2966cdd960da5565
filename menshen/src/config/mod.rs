//! How menshen itself is configured: flags and environment (see `cli`),
//! gathered into [`Settings`]; and the provider file (see [`file`]).

pub mod file;
pub mod import_v3;
mod sections;

use std::path::PathBuf;
use std::time::Duration;

use crate::api::rate_limit::RateLimit;
use crate::auth::KeySource;
use crate::geo::client_ip::TrustedProxies;
use crate::pki::PkiSettings;
use crate::select::ring::EpochClock;
use crate::server::ConnectionLimits;
use crate::store::Engine;

/// Default TTL of pushed resources (`--resource-ttl`): four missed
/// heartbeats of an agent at its default interval.
pub const DEFAULT_RESOURCE_TTL: &str = menshen_model::vocab::RESOURCE_TTL_TEXT;

/// Default of `--reload-interval`.
pub const DEFAULT_RELOAD_INTERVAL: &str = "30s";

/// Default number of `remote` lines in a served OpenVPN configuration: what
/// the desktop client uses.
pub const DEFAULT_OPENVPN_MAX_REMOTES: usize = 3;

/// Default number of certificate requests that may wait for an issuing
/// thread.
pub const DEFAULT_ISSUE_QUEUE: usize = 128;

/// Everything [`crate::launch`] needs besides its listeners.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the inventory lives.
    pub engine: Engine,
    /// Folder for the SQLite file and generated material.
    pub data_dir: PathBuf,
    /// The provider file, applied to the store at start.
    pub provider_file: Option<PathBuf>,
    /// How long a pushed resource stays listed without a heartbeat.
    pub resource_ttl: Duration,
    /// Full reload from the store, as a backstop for missed notifications.
    pub reload_interval: Duration,
    /// The key agent (and operator) tokens are signed with.
    pub signing_key: KeySource,
    /// The CA and the client certificates it signs.
    pub pki: PkiSettings,
    /// At most this many gateways in a served OpenVPN configuration.
    pub openvpn_max_remotes: usize,
    /// GeoIP database for clients that do not send `cc`.
    pub geoip_db: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` / `X-Real-IP` are believed.
    pub trusted_proxies: TrustedProxies,
    /// Seed for the requests' random orderings; random when `None` (tests
    /// fix it).
    pub order_seed: Option<u64>,
    /// Certificates (and configurations) per client address; unlimited
    /// when `None`.
    pub cert_rate_limit: Option<RateLimit>,
    /// Public bridges of each transport one client network is given (see
    /// `select::ring`); 0 gives every client all of them.
    pub bridges_per_client: usize,
    /// How long a client network keeps its bridges.
    pub bridge_epoch: Duration,
    /// Where the bridges' epoch takes the time from (tests set it).
    pub bridge_clock: EpochClock,
    /// Bridge lists per client network; unlimited when `None`.
    pub bridge_rate_limit: Option<RateLimit>,
    /// Threads that issue certificates; 0 for one per core.
    pub issue_threads: usize,
    /// Certificate requests that may wait for an issuing thread; more are
    /// answered 503.
    pub issue_queue: usize,
    /// An OpenID Connect provider whose tokens operators may use.
    pub oidc: Option<crate::auth::oidc::OidcSettings>,
    /// Whether the status page shows a summary to anyone.
    pub public_status: bool,
    /// Whether the LEAP API v3 is served too, for older clients.
    pub api_v3: bool,
    /// How often the store is asked whether it answers, besides what
    /// reloads and the change listener find out.
    pub store_check_interval: Duration,
    /// Timeouts and the connection cap of the public listener (the metrics
    /// listener has the same timeouts).
    pub connections: ConnectionLimits,
    /// The connection cap of the metrics listener.
    pub metrics_max_connections: usize,
    /// How long a write may wait for a database connection before it is
    /// refused as "store unavailable".
    pub store_timeout: Duration,
    /// At most this many gateways and bridges per agent.
    pub max_resources_per_agent: usize,
    /// Addresses that are not public unicast may be sent to clients (labs
    /// and tests); the provider file's `[policy]` may allow it too.
    pub allow_private_addresses: bool,
    /// Run the prober inside the server (`serve --probe`); off when `None`.
    pub probe: Option<crate::probe::ProbeSettings>,
    /// Leave resources the prober found dysfunctional out of client lists.
    pub drop_dysfunctional: bool,
    /// Ed25519 key files that sign client answers (the first signs, all
    /// are published); unsigned when empty.
    pub list_key_files: Vec<PathBuf>,
    /// How long a signature is to be believed.
    pub signature_validity: Duration,
    /// Orders of one set signed per snapshot while signing.
    pub signature_variants: u32,
}

impl Settings {
    /// Settings for the SQLite store in `data_dir`, with defaults elsewhere.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Settings {
        let data_dir = data_dir.into();
        Settings {
            engine: Engine::Sqlite(data_dir.join("menshen.sqlite")),
            data_dir,
            provider_file: None,
            resource_ttl: menshen_model::vocab::RESOURCE_TTL,
            reload_interval: menshen_model::vocab::seconds(DEFAULT_RELOAD_INTERVAL),
            signing_key: KeySource::default(),
            pki: PkiSettings::default(),
            openvpn_max_remotes: DEFAULT_OPENVPN_MAX_REMOTES,
            geoip_db: None,
            trusted_proxies: TrustedProxies::default(),
            order_seed: None,
            cert_rate_limit: None,
            bridges_per_client: crate::select::ring::DEFAULT_PER_CLIENT,
            bridge_epoch: crate::select::ring::DEFAULT_EPOCH_LENGTH,
            bridge_clock: EpochClock::system(),
            bridge_rate_limit: None,
            issue_threads: 0,
            issue_queue: DEFAULT_ISSUE_QUEUE,
            oidc: None,
            public_status: false,
            api_v3: true,
            store_check_interval: crate::store::HEALTH_CHECK_INTERVAL,
            connections: crate::server::DEFAULT_LIMITS,
            metrics_max_connections: crate::server::DEFAULT_METRICS_MAX_CONNECTIONS,
            store_timeout: crate::store::DEFAULT_STORE_TIMEOUT,
            max_resources_per_agent: crate::inventory::validate::DEFAULT_MAX_RESOURCES_PER_AGENT,
            allow_private_addresses: false,
            probe: None,
            drop_dysfunctional: true,
            list_key_files: Vec::new(),
            signature_validity: crate::sign::DEFAULT_VALIDITY,
            signature_variants: crate::sign::DEFAULT_VARIANTS,
        }
    }
}
