//! The `menshen` command line.

mod examples;
mod operators;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::auth::admin::Role;
use crate::auth::invite;
use crate::auth::{KeySource, SigningKey, random_id, valid_agent_name};
use crate::config::file::ProviderFile;
use crate::config::import_v3::{self, ImportOptions};
use crate::config::{DEFAULT_RESOURCE_TTL, Settings};
use crate::geo::client_ip::TrustedProxies;
use crate::pki::{DEFAULT_CLIENT_CERT_VALIDITY, DEFAULT_RSA_POOL, KeyType, PkiSettings};
use crate::store::{AuditEntry, Engine, InviteRow, InviteSelection, NewInvite, Store, now_millis};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "menshen",
    version,
    about = "The provider API of LEAP VPN",
    after_help = "Commands that change things write the audit log as cli:$USER. On \
Postgres replicas see a change at once; a server on SQLite at its next \
periodic reload (--reload-interval).

Exit status: 0 done; 1 refused or failed (not found, in use, store \
unreachable); 2 invalid command line or input."
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "MENSHEN_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,

    /// Log level, unless RUST_LOG says otherwise.
    #[arg(long, global = true, env = "MENSHEN_LOG_LEVEL", default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the LEAP v5 API.
    Serve(Box<ServeArgs>),
    /// Check a provider file and exit: 0 if it is valid.
    CheckConfig {
        /// The provider file (TOML).
        file: PathBuf,
        /// Accept addresses that are not public unicast, as `serve
        /// --allow-private-addresses` does.
        #[arg(long, env = "MENSHEN_ALLOW_PRIVATE_ADDRESSES")]
        allow_private_addresses: bool,
    },
    /// Turn a LEAP API v3 eip-service.json (and provider.json) into a
    /// provider file: locations, hand-defined gateways and bridges, OpenVPN
    /// options. Check the result, then serve it with --config.
    Import {
        /// The v3 eip-service.json.
        eip_service: PathBuf,
        /// The v3 provider.json (domain, API address, names).
        #[arg(long)]
        provider: Option<PathBuf>,
        /// The provider's domain, if not from --provider.
        #[arg(long)]
        domain: Option<String>,
        /// Where clients reach the v5 API, if not from --provider.
        #[arg(long)]
        api_uri: Option<String>,
        /// Write the provider file here instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Manage locations: where gateways and bridges are.
    #[command(subcommand)]
    Location(operators::LocationCommand),
    /// Manage gateways: list them with their status, define them by hand,
    /// put them in maintenance.
    #[command(subcommand, after_help = GATEWAY_HELP)]
    Gateway(operators::GatewayCommand),
    /// Manage bridges: list them with their status, define them by hand,
    /// put them in maintenance.
    #[command(subcommand, after_help = BRIDGE_HELP)]
    Bridge(operators::BridgeCommand),
    /// Manage the agents that report gateways and bridges.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Manage invite tokens, which let clients see invite-only gateways and
    /// bridges (those with a `bucket`).
    ///
    /// Replicas on Postgres see a change at once; a server on SQLite at its
    /// next periodic reload (--reload-interval).
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Operators' access to the admin API (/admin/v1).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// A provider's key material: CAs and the signing key.
    #[command(subcommand)]
    Pki(PkiCommand),
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Make a provider's key material, once: the client CA (signs client
    /// certificates; menshen holds its key), the provider CA (the gateways'
    /// server certificates chain to it; clients get its certificate in
    /// `<ca>`), and the key that signs agent and admin tokens.
    ///
    /// Without --secret, all five files go into --out: signing.key, ca.crt,
    /// ca.key, provider-ca.crt, provider-ca.key (for `menshen serve
    /// --signing-key-file --ca-cert --ca-key --provider-ca-cert`).
    ///
    /// With --secret, the four files menshen reads are printed as a
    /// Kubernetes Secret (the one the menshen Helm chart mounts), and only
    /// the provider CA (provider-ca.crt, provider-ca.key) goes into --out:
    /// menshen never needs that key; keep it offline, with whoever signs
    /// the gateways' server certificates.
    #[command(after_help = PKI_INIT_HELP)]
    Init {
        /// Folder to write into (made if missing); see above for which
        /// files.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace files that exist in --out (their CAs and key are then
        /// lost: clients, gateways and tokens made with them stop working).
        #[arg(long)]
        force: bool,
        /// Print a Secret of this name on stdout, with keys signing.key,
        /// ca.crt, ca.key and provider-ca.crt.
        #[arg(long, value_name = "NAME")]
        secret: Option<String>,
        /// The Secret's namespace.
        #[arg(long, value_name = "NS", requires = "secret")]
        namespace: Option<String>,
        /// Names the CAs: "NAME client CA", "NAME provider CA" (e.g. the
        /// provider's domain).
        #[arg(long, default_value = "menshen")]
        name: String,
    },
    /// Issue a gateway's OpenVPN server certificate, signed by the provider
    /// CA: ECDSA P-256, CN and subjectAltName HOST (and --ip), extended key
    /// usage serverAuth (clients ask for `remote-cert-tls server`).
    ///
    /// With --out, writes HOST.crt and HOST.key there; with --secret, prints
    /// them as the Secret the gateway chart mounts (type kubernetes.io/tls:
    /// tls.crt, tls.key, and ca.crt = --client-ca, the CA that signs client
    /// certificates, which OpenVPN verifies clients against).
    #[command(name = "gateway-cert", after_help = PKI_GATEWAY_CERT_HELP)]
    GatewayCert {
        /// The gateway's host name (or IP address), as clients reach it.
        host: String,
        /// The provider CA's certificate (`pki init --out`'s provider-ca.crt).
        #[arg(long, value_name = "FILE")]
        ca_cert: PathBuf,
        /// The provider CA's key (`pki init --out`'s provider-ca.key).
        #[arg(long, value_name = "FILE")]
        ca_key: PathBuf,
        /// Further IP addresses for the subjectAltName (repeatable).
        #[arg(long = "ip", value_name = "ADDR")]
        ips: Vec<std::net::IpAddr>,
        /// How long the certificate is valid (at most as long as the CA).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "730d")]
        validity: Duration,
        /// Folder to write HOST.crt and HOST.key into (made if missing).
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "secret",
            conflicts_with = "secret"
        )]
        out: Option<PathBuf>,
        /// Print a Secret of this name on stdout instead of writing files.
        #[arg(long, value_name = "NAME")]
        secret: Option<String>,
        /// The Secret's namespace.
        #[arg(long, value_name = "NS", requires = "secret")]
        namespace: Option<String>,
        /// The client CA's certificate (`pki init`'s ca.crt), put into the
        /// Secret as ca.crt. Give it twice (old and new) while the client CA
        /// is rotated: ca.crt then holds both, and OpenVPN accepts clients
        /// of either.
        #[arg(long = "client-ca", value_name = "FILE", requires = "secret")]
        client_ca: Vec<PathBuf>,
        /// Replace HOST.crt and HOST.key in --out.
        #[arg(long)]
        force: bool,
    },
}

const PKI_GATEWAY_CERT_HELP: &str = "Examples:
  menshen pki gateway-cert gw1.example.org --ca-cert provider-ca/provider-ca.crt \\
      --ca-key provider-ca/provider-ca.key --ip 192.0.2.10 --out ./gw1
  menshen pki gateway-cert gw1.example.org --ca-cert provider-ca/provider-ca.crt \\
      --ca-key provider-ca/provider-ca.key --client-ca ca.crt \\
      --secret gw1-openvpn-tls --namespace vpn | kubectl apply -f -";

const PKI_INIT_HELP: &str = "Examples:
  menshen pki init --out /etc/menshen/pki --name example.org
  menshen serve --signing-key-file /etc/menshen/pki/signing.key \\
      --ca-cert /etc/menshen/pki/ca.crt --ca-key /etc/menshen/pki/ca.key \\
      --provider-ca-cert /etc/menshen/pki/provider-ca.crt ...

  menshen pki init --secret menshen-pki --namespace vpn --out ./provider-ca > menshen-pki.yaml
  kubectl apply -f menshen-pki.yaml    # then: helm install ... (pki.existingSecret: menshen-pki)";

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Mint an admin API token and print it (one line); its id (jti) goes
    /// to stderr. The store keeps the id, subject and lifetime, not the
    /// token: it is valid until it expires, is revoked (`admin revoke`), or
    /// the signing key changes.
    Token {
        /// Who the token is for; recorded in the audit log.
        #[arg(long)]
        subject: String,
        /// `admin` may change things, `viewer` may only read.
        #[arg(long, value_enum)]
        role: Role,
        /// How long the token is valid (e.g. 12h, 30d).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "12h")]
        ttl: Duration,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Revoke an admin token by its id (as `admin token` printed it), or
    /// every admin token of a subject issued up to now. Servers refuse it
    /// from their next reload (at once on Postgres).
    #[command(group = clap::ArgGroup::new("which").required(true).args(["jti", "subject"]))]
    Revoke {
        /// The token's id (jti): 32 hex digits.
        jti: Option<String>,
        /// Revoke every token of this subject issued up to now; tokens
        /// minted for it afterwards work.
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the admin tokens minted (ids, subjects, roles, lifetimes;
    /// never the tokens), newest first.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum InviteCommand {
    /// Create invite tokens and print them, one a line (shown only now;
    /// menshen keeps only a hash).
    Create {
        /// A bucket the tokens grant; repeat for several.
        #[arg(long = "bucket", required = true, value_name = "BUCKET")]
        buckets: Vec<String>,
        /// How many tokens to create.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        count: u32,
        /// How long the tokens are valid (e.g. 30d, 12h); without it, until
        /// deleted.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List invites: ids, buckets and times, never the tokens.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete invites; their tokens stop working.
    #[command(group(ArgGroup::new("which").required(true).args(["id", "bucket", "all"])))]
    Delete {
        /// The invite with this id (as `invite list` shows it).
        #[arg(long)]
        id: Option<String>,
        /// Every invite that grants this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Every invite.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Create an agent and print its token (one line, shown only now).
    Create {
        /// The agent's name: lowercase letters, digits, '-', '_', '.'.
        name: String,
        /// How long the token is valid (e.g. 365d, 12h).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "365d")]
        ttl: Duration,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Mint a new token for an existing agent, signed with the first
    /// signing key (one line, shown only now). Its previous token stops
    /// working unless --keep-old-token.
    Reissue {
        name: String,
        /// How long the token is valid (e.g. 365d, 12h).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "365d")]
        ttl: Duration,
        /// Keep the previous token valid too (until it expires or its
        /// signing key is removed): for rotating the signing key while
        /// agents get their new tokens. Without it, a token that leaked is
        /// replaced at once.
        #[arg(long)]
        keep_old_token: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Revoke an agent: its token stops working and what it reported leaves
    /// the lists.
    Revoke {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List agents.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

const GATEWAY_HELP: &str = "Examples:
  menshen gateway list
  menshen gateway create --host gw1.example.org --ip 192.0.2.10 --location paris --port 1194 --transport udp
  menshen gateway set gw1.example.org --maintenance on
  menshen gateway delete gw1.example.org";

const BRIDGE_HELP: &str = "Examples:
  menshen bridge list --json
  menshen bridge create --host br1.example.org --ip 192.0.2.20 --location paris --port 443 --option cert=CERT --option iatMode=0
  menshen bridge set br1.example.org --bucket friends
  menshen bridge delete br1.example.org";

/// The key tokens are signed with; every replica and the CLI must agree.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// File holding a signing key (base64 of at least 32 random bytes).
    /// Give it more than once to rotate: the first signs, every one
    /// verifies (MENSHEN_SIGNING_KEY_FILE: comma-separated). Without it (or
    /// MENSHEN_SIGNING_KEY), a key generated into --data-dir.
    #[arg(long, env = "MENSHEN_SIGNING_KEY_FILE", value_delimiter = ',')]
    signing_key_file: Vec<PathBuf>,
}

impl KeyArgs {
    fn source(&self) -> KeySource {
        KeySource {
            inline: std::env::var("MENSHEN_SIGNING_KEY")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            files: self.signing_key_file.clone(),
        }
    }
}

/// Where the store is; shared by every command that opens it.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Postgres URL (postgres://...) for production; without it, an embedded
    /// SQLite file in --data-dir.
    #[arg(long, env = "MENSHEN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// Folder for the SQLite file and generated material.
    #[arg(long, env = "MENSHEN_DATA_DIR", default_value = "./menshen-data")]
    data_dir: PathBuf,
}

impl StoreArgs {
    pub fn engine(&self) -> anyhow::Result<Engine> {
        Engine::select(self.database_url.as_deref(), &self.data_dir)
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
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
          default_value = "30s")]
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
    oidc: OidcArgs,

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
          default_value = "30s")]
    header_read_timeout: Duration,

    /// A connection with no request in progress (keep-alive) is closed after
    /// this. Keep it above the proxy's idle timeout for its backend
    /// connections.
    #[arg(long, env = "MENSHEN_IDLE_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = "60s")]
    idle_timeout: Duration,

    /// A request body must arrive whole within this of its head.
    #[arg(long, env = "MENSHEN_BODY_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = "30s")]
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
    cert_rate_limit: Option<crate::api::rate_limit::Rate>,

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
    fn rate_limit(&self) -> Option<crate::api::rate_limit::RateLimit> {
        self.cert_rate_limit
            .map(|rate| crate::api::rate_limit::RateLimit {
                rate,
                burst: self.cert_rate_burst.unwrap_or(rate.count),
            })
    }
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

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let matches = examples::attach(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let json_logs = cli.log_format == LogFormat::Json;
    // `serve` sets up logs and traces itself, inside its runtime.
    if !matches!(cli.command, Command::Serve(_)) {
        telemetry::init_logging(cli.log_format, &cli.log_level);
    }
    match cli.command {
        Command::Serve(args) => serve_main(cli.log_format, &cli.log_level, *args),
        Command::CheckConfig {
            file,
            allow_private_addresses,
        } => run(json_logs, async move {
            check_config(&file, allow_private_addresses)
        }),
        Command::Location(command) => run(json_logs, operators::location(command)),
        Command::Gateway(command) => run(
            json_logs,
            operators::resource(crate::store::ResourceKind::Gateway, command),
        ),
        Command::Bridge(command) => run(
            json_logs,
            operators::resource(crate::store::ResourceKind::Bridge, command),
        ),
        Command::Agent(command) => run(json_logs, agent(command)),
        Command::Import {
            eip_service,
            provider,
            domain,
            api_uri,
            output,
        } => run(json_logs, async move {
            import(
                &eip_service,
                provider.as_deref(),
                domain,
                api_uri,
                output.as_deref(),
            )
        }),
        Command::Invite(command) => run(json_logs, invite(command)),
        Command::Admin(command) => run(json_logs, admin(command)),
        Command::Pki(command) => run(json_logs, async move { pki(command) }),
    }
}

/// `menshen check-config`: the file's counts, its warnings on stderr; a
/// broken file is invalid input.
fn check_config(file: &Path, allow_private_addresses: bool) -> anyhow::Result<()> {
    let allowed = crate::inventory::validate::Policy {
        allow_private_addresses,
    };
    let f = ProviderFile::load_with(file, allowed).map_err(|e| Invalid(e.to_string()))?;
    for warning in f.warnings() {
        eprintln!("warning: {}: {warning}", file.display());
    }
    println!(
        "{}: valid ({} locations, {} gateways, {} bridges)",
        file.display(),
        f.locations.len(),
        f.gateways.len(),
        f.bridges.len()
    );
    Ok(())
}

/// Input an operator got wrong: exit status 2, like a bad command line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Exit status 2 for invalid input, 1 for anything else.
fn exit_code(err: &anyhow::Error) -> ExitCode {
    let invalid = err.downcast_ref::<Invalid>().is_some()
        || err
            .downcast_ref::<crate::config::file::ConfigError>()
            .is_some()
        || matches!(
            err.downcast_ref::<crate::store::StoreError>(),
            Some(crate::store::StoreError::Invalid { .. })
        );
    ExitCode::from(if invalid { 2 } else { 1 })
}

/// Runs a command: on failure its error once on stderr (as a log line when
/// logs are JSON, else as `error: …`), with the exit status of
/// [`exit_code`].
fn run(json_logs: bool, fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    finish(json_logs, runtime.block_on(fut))
}

/// `menshen serve`: logs and traces are set up inside the runtime (the gRPC
/// trace exporter needs it), and traces are flushed before it stops.
fn serve_main(format: LogFormat, level: &str, args: ServeArgs) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let traces = args.traces.settings();
    let guard = runtime.block_on(async { telemetry::init(format, level, Some(&traces)) });
    let result = runtime.block_on(serve(args));
    drop(guard);
    finish(format == LogFormat::Json, result)
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
        .map_err(|err| eprintln!("error: cannot start the runtime: {err}"))
        .ok()
}

/// A command's outcome as its exit status, its error said once.
fn finish(json_logs: bool, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if json_logs {
                tracing::error!("{err:#}");
            } else {
                eprintln!("error: {err:#}");
            }
            exit_code(&err)
        }
    }
}

/// Columns padded to their widest cell; the last one is not padded.
fn render_table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(&mut headers.iter().copied());
    for row in &rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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

async fn agent(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Create {
            name,
            ttl,
            store,
            key,
        } => {
            if !valid_agent_name(&name) {
                return Err(Invalid(format!(
                    "agent name {name:?}: use 1-64 lowercase letters, digits, '-', '_' or '.'"
                ))
                .into());
            }
            let signing_key = SigningKey::load(&key.source(), &store.data_dir)?;
            let db = Store::connect(&store.engine()?).await?;
            let token_id = random_id(16);
            let now = now_millis();
            let audit = AuditEntry::new(&cli_actor(), "agent.create", format!("agent/{name}"), now)
                .after(serde_json::json!({"name": name, "expires_millis": now + ttl.as_millis() as i64}));
            db.create_agent(&name, &token_id, now, audit).await?;
            db.close().await;
            let token =
                signing_key.mint_agent_token(&name, &token_id, now / 1000, ttl.as_secs() as i64);
            println!("{token}");
        }
        AgentCommand::Reissue {
            name,
            ttl,
            keep_old_token,
            store,
            key,
        } => {
            let signing_key = SigningKey::load(&key.source(), &store.data_dir)?;
            let db = Store::connect(&store.engine()?).await?;
            let now = now_millis();
            let audit =
                AuditEntry::new(&cli_actor(), "agent.reissue", format!("agent/{name}"), now).after(
                    serde_json::json!({"name": name, "kid": signing_key.signing_kid(),
                    "old_token_kept": keep_old_token,
                    "expires_millis": now + ttl.as_millis() as i64}),
                );
            let token_id = db.reissue_agent(&name, keep_old_token, audit).await;
            db.close().await;
            let token_id = token_id.map_err(|err| match err {
                crate::store::StoreError::NotFound(_) => anyhow::Error::from(Invalid(format!(
                    "no agent named {name:?} (or it is revoked)"
                ))),
                other => other.into(),
            })?;
            let token =
                signing_key.mint_agent_token(&name, &token_id, now / 1000, ttl.as_secs() as i64);
            println!("{token}");
        }
        AgentCommand::Revoke { name, store } => {
            let db = Store::connect(&store.engine()?).await?;
            let now = now_millis();
            let audit = AuditEntry::new(&cli_actor(), "agent.revoke", format!("agent/{name}"), now)
                .before(serde_json::json!({"name": name}));
            db.revoke_agent(&name, now, audit).await?;
            db.close().await;
            eprintln!("agent {name} revoked");
        }
        AgentCommand::List { json, store } => {
            let db = Store::connect(&store.engine()?).await?;
            let agents = db.list_agents().await?;
            db.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&agents)?);
            } else {
                println!(
                    "{:<32} {:<8} {:<20} {:<20}",
                    "NAME", "STATUS", "CREATED", "REVOKED"
                );
                for a in agents {
                    println!(
                        "{:<32} {:<8} {:<20} {:<20}",
                        a.name,
                        if a.revoked_millis.is_some() {
                            "revoked"
                        } else {
                            "active"
                        },
                        format_millis(a.created_millis),
                        a.revoked_millis.map(format_millis).unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

fn pki(command: PkiCommand) -> anyhow::Result<()> {
    use crate::pki::init::{Files, Material};
    match command {
        PkiCommand::Init {
            out,
            force,
            secret,
            namespace,
            name,
        } => {
            if name.trim().is_empty() || name.len() > 128 {
                return Err(Invalid("--name must be 1-128 characters".into()).into());
            }
            let material = Material::generate(name.trim(), time::OffsetDateTime::now_utc())?;
            // Checked before anything is written.
            let manifest = secret
                .as_deref()
                .map(|secret| material.secret_manifest(secret, namespace.as_deref()))
                .transpose()
                .map_err(|err| Invalid(err.to_string()))?;
            let files = if manifest.is_some() {
                Files::ProviderCa
            } else {
                Files::All
            };
            let written = material.write(&out, files, force)?;
            if let Some(manifest) = manifest {
                print!("{manifest}");
            }
            for path in written {
                eprintln!("wrote {}", path.display());
            }
            if files == Files::ProviderCa {
                eprintln!(
                    "the provider CA's key stays out of the Secret: keep {} offline",
                    out.join(crate::pki::init::PROVIDER_CA_KEY).display()
                );
            }
        }
        PkiCommand::GatewayCert {
            host,
            ca_cert,
            ca_key,
            ips,
            validity,
            out,
            secret,
            namespace,
            client_ca,
            force,
        } => {
            let validity = time::Duration::try_from(validity)
                .map_err(|_| Invalid("--validity is too long".into()))?;
            let host = host.trim().to_owned();
            let made = crate::pki::gateway::issue(
                &host,
                &ips,
                &ca_cert,
                &ca_key,
                validity,
                time::OffsetDateTime::now_utc(),
            )?;
            if let Some(secret) = secret {
                let mut bundle = String::new();
                for path in &client_ca {
                    // One CA certificate a file, as menshen's --ca-cert takes it.
                    crate::pki::material::read_certificate(
                        path,
                        "--client-ca",
                        time::OffsetDateTime::now_utc(),
                    )
                    .map_err(|e| Invalid(format!("{e:#}")))?;
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| Invalid(format!("--client-ca {}: {e}", path.display())))?;
                    bundle.push_str(text.trim_end());
                    bundle.push('\n');
                }
                let client_ca = (!client_ca.is_empty()).then_some(bundle);
                let manifest = made
                    .secret_manifest(&secret, namespace.as_deref(), client_ca.as_deref())
                    .map_err(|e| Invalid(e.to_string()))?;
                print!("{manifest}");
            } else if let Some(out) = out {
                let (crt, key) = (
                    out.join(format!("{host}.crt")),
                    out.join(format!("{host}.key")),
                );
                if !force && (crt.exists() || key.exists()) {
                    anyhow::bail!(
                        "refusing to overwrite {} or {}; use --force to replace them",
                        crt.display(),
                        key.display()
                    );
                }
                std::fs::create_dir_all(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                for path in [&crt, &key] {
                    if path.exists() {
                        std::fs::remove_file(path)
                            .with_context(|| format!("replacing {}", path.display()))?;
                    }
                }
                crate::pki::generated::write_new(&crt, made.cert_pem.as_bytes(), 0o644)?;
                crate::pki::generated::write_new(&key, made.key_pem.as_bytes(), 0o600)?;
                eprintln!("wrote {}\nwrote {}", crt.display(), key.display());
            }
        }
    }
    Ok(())
}

async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Token {
            subject,
            role,
            ttl,
            store,
            key,
        } => {
            anyhow::ensure!(
                !subject.trim().is_empty() && subject.len() <= 256,
                "--subject must be 1-256 characters"
            );
            anyhow::ensure!(ttl.as_secs() >= 1, "--ttl must be at least a second");
            let signing_key = SigningKey::load(&key.source(), &store.data_dir)?;
            let subject = subject.trim();
            let ttl_secs = i64::try_from(ttl.as_secs())?;
            let now = now_millis();
            let jti = random_id(16);
            let record = crate::store::NewAdminToken {
                jti: jti.clone(),
                subject: subject.to_owned(),
                role: role.as_str().to_owned(),
                issued_millis: now,
                expires_millis: (now / 1000).saturating_add(ttl_secs).saturating_mul(1000),
            };
            let audit = AuditEntry::new(
                &cli_actor(),
                "admin_token.mint",
                format!("admin_token/{jti}"),
                now,
            )
            .after(
                serde_json::json!({"jti": jti, "subject": subject, "role": role.as_str(),
                "expires_millis": record.expires_millis, "kid": signing_key.signing_kid()}),
            );
            let db = Store::connect(&store.engine()?).await?;
            db.record_admin_token(&record, &audit).await?;
            db.close().await;
            let token =
                signing_key.mint_admin_token_with_id(subject, role, &jti, now / 1000, ttl_secs);
            println!("{token}");
            eprintln!(
                "admin token for {subject} ({}), id {jti}; revoke it with: menshen admin revoke {jti}",
                role.as_str()
            );
        }
        AdminCommand::Revoke {
            jti,
            subject,
            store,
        } => {
            let now = now_millis();
            if let Some(jti) = jti {
                let jti = jti.trim().to_ascii_lowercase();
                if !crate::store::valid_jti(&jti) {
                    return Err(Invalid(format!(
                        "{jti:?} is not an admin token id (32 hex digits, as `menshen admin token` printed it)"
                    ))
                    .into());
                }
                let audit = AuditEntry::new(
                    &cli_actor(),
                    "admin_token.revoke",
                    format!("admin_token/{jti}"),
                    now,
                );
                let db = Store::connect(&store.engine()?).await?;
                let done = db.revoke_admin_token(&jti, now, audit).await;
                db.close().await;
                let row = done.map_err(|err| match err {
                    crate::store::StoreError::Database(err) => anyhow::Error::from(err),
                    other => Invalid(other.to_string()).into(),
                })?;
                eprintln!("admin token {jti} of {} revoked", row.subject);
            } else if let Some(subject) = subject {
                let subject = subject.trim();
                if subject.is_empty() || subject.len() > 256 {
                    return Err(Invalid("--subject must be 1-256 characters".into()).into());
                }
                let audit = AuditEntry::new(
                    &cli_actor(),
                    "admin_token.revoke_subject",
                    format!("admin_subject/{subject}"),
                    now,
                );
                let db = Store::connect(&store.engine()?).await?;
                let count = db.revoke_admin_subject(subject, now, audit).await;
                db.close().await;
                let count = count?;
                eprintln!(
                    "every admin token of {subject} issued up to now is revoked ({count} recorded)"
                );
            }
        }
        AdminCommand::List { json, store } => {
            let db = Store::connect(&store.engine()?).await?;
            let tokens = db.list_admin_tokens().await;
            db.close().await;
            let tokens = tokens?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                println!(
                    "{:<32} {:<24} {:<6} {:<8} {:<20} {:<20}",
                    "ID", "SUBJECT", "ROLE", "STATUS", "ISSUED", "EXPIRES"
                );
                let now = now_millis();
                for t in tokens {
                    let status = if t.revoked_millis.is_some() {
                        "revoked"
                    } else if t.expires_millis <= now {
                        "expired"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<32} {:<24} {:<6} {:<8} {:<20} {:<20}",
                        t.jti,
                        t.subject,
                        t.role,
                        status,
                        format_millis(t.issued_millis),
                        format_millis(t.expires_millis)
                    );
                }
            }
        }
    }
    Ok(())
}

async fn invite(command: InviteCommand) -> anyhow::Result<()> {
    match command {
        InviteCommand::Create {
            mut buckets,
            count,
            expires,
            store,
        } => {
            for bucket in &buckets {
                if !invite::valid_bucket(bucket) {
                    return Err(Invalid(format!(
                        "bucket {bucket:?}: use 1-64 characters, without spaces or control characters"
                    ))
                    .into());
                }
            }
            buckets.sort();
            buckets.dedup();
            let now = now_millis();
            let expires_millis = match expires {
                Some(ttl) => Some(now.saturating_add(i64::try_from(ttl.as_millis())?)),
                None => None,
            };
            let mut tokens = Vec::new();
            let mut invites = Vec::new();
            for _ in 0..count {
                let new = invite::generate();
                invites.push(NewInvite {
                    id: new.id,
                    secret_hash: new.secret_hash,
                    buckets: buckets.clone(),
                    expires_millis,
                });
                tokens.push(new.token);
            }
            let db = Store::connect(&store.engine()?).await?;
            let ids: Vec<&str> = invites.iter().map(|i| i.id.as_str()).collect();
            let audit = AuditEntry::new(&cli_actor(), "invite.create", "invites", now).after(
                serde_json::json!({"ids": ids, "buckets": buckets, "expires_millis": expires_millis}),
            );
            db.create_invites(&invites, now, audit).await?;
            db.close().await;
            for token in tokens {
                println!("{token}");
            }
            eprintln!(
                "{count} invite(s) created for {}{}",
                buckets.join(", "),
                expires_millis
                    .map(|at| format!(", valid until {}", format_millis(at)))
                    .unwrap_or_default()
            );
        }
        InviteCommand::List { json, store } => {
            let db = Store::connect(&store.engine()?).await?;
            let invites = db.list_invites().await?;
            db.close().await;
            print!("{}", render_invites(&invites, json, now_millis())?);
        }
        InviteCommand::Delete {
            id,
            bucket,
            all,
            store,
        } => {
            if let Some(bucket) = &bucket
                && !invite::valid_bucket(bucket)
            {
                return Err(Invalid(format!(
                    "bucket {bucket:?}: use 1-64 characters, without spaces or control characters"
                ))
                .into());
            }
            let which = match (&id, &bucket, all) {
                (Some(id), None, false) => InviteSelection::Id(id),
                (None, Some(bucket), false) => InviteSelection::Bucket(bucket),
                (None, None, true) => InviteSelection::All,
                // clap lets exactly one through.
                _ => anyhow::bail!("give exactly one of --id, --bucket, --all"),
            };
            let db = Store::connect(&store.engine()?).await?;
            let target = match which {
                InviteSelection::Id(id) => format!("invite/{id}"),
                InviteSelection::Bucket(bucket) => format!("invites?bucket={bucket}"),
                InviteSelection::All => "invites".to_owned(),
            };
            let audit = AuditEntry::new(&cli_actor(), "invite.delete", target, now_millis());
            let deleted = db.delete_invites(which, audit).await?;
            db.close().await;
            if let (Some(id), 0) = (&id, deleted) {
                anyhow::bail!("no invite with id {id:?}");
            }
            eprintln!("{deleted} invite(s) deleted");
        }
    }
    Ok(())
}

/// Who made a change from the command line, for the audit log.
fn cli_actor() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".to_owned(),
    }
}

/// `invite list` output: a table, or JSON. Tokens are not stored, so they
/// cannot appear here.
fn render_invites(invites: &[InviteRow], json: bool, now: i64) -> anyhow::Result<String> {
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(invites)?));
    }
    let mut out = format!(
        "{:<16} {:<8} {:<20} {:<20} {:<20} {}\n",
        "ID", "STATUS", "CREATED", "EXPIRES", "LAST USED", "BUCKETS"
    );
    for i in invites {
        let expired = i.expires_millis.is_some_and(|at| at <= now);
        out.push_str(&format!(
            "{:<16} {:<8} {:<20} {:<20} {:<20} {}\n",
            i.id,
            if expired { "expired" } else { "active" },
            format_millis(i.created_millis),
            i.expires_millis
                .map(format_millis)
                .unwrap_or("never".into()),
            i.last_used_millis
                .map(format_millis)
                .unwrap_or("never".into()),
            i.buckets.join(",")
        ));
    }
    Ok(out)
}

/// Unix milliseconds as an RFC 3339 UTC time, to the second.
fn format_millis(millis: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

fn import(
    eip_service: &Path,
    provider: Option<&Path>,
    domain: Option<String>,
    api_uri: Option<String>,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let eip = read(eip_service)?;
    let provider = provider.map(read).transpose()?;
    let options = ImportOptions { domain, api_uri };
    let text = import_v3::import(&eip, provider.as_deref(), &options)
        .map_err(|e| Invalid(format!("importing {}: {e:#}", eip_service.display())))?;
    match output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// A size like `64MiB`, `512KiB`, `1GiB` or a plain number of bytes.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 64MiB"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("menshen").chain(args.iter().copied()))
    }

    #[test]
    fn the_old_ordering_flags_are_still_accepted_and_the_limits_parse() {
        let Command::Serve(args) = parse(&[
            "serve",
            "--order-variants",
            "8",
            "--response-cache",
            "64MiB",
            "--cert-rate-limit",
            "10/min",
        ])
        .unwrap()
        .command
        else {
            panic!("serve");
        };
        assert_eq!(args.geo.order_variants, Some(8));
        let limit = args.issue.rate_limit().unwrap();
        assert_eq!((limit.rate.count, limit.burst), (10, 10));
        assert!(parse(&["serve", "--response-cache", "lots"]).is_err());
        assert!(parse(&["serve", "--cert-rate-limit", "often"]).is_err());
        assert!(
            parse(&["serve", "--cert-rate-burst", "5"]).is_err(),
            "needs a rate"
        );
        let Command::Serve(args) = parse(&["serve"]).unwrap().command else {
            panic!("serve");
        };
        assert_eq!(args.issue.rate_limit(), None);
    }

    #[test]
    fn invite_delete_takes_exactly_one_selection() {
        for ok in [
            &["invite", "delete", "--id", "abc"][..],
            &["invite", "delete", "--bucket", "friends"],
            &["invite", "delete", "--all"],
        ] {
            assert!(parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &["invite", "delete"][..],
            &["invite", "delete", "--all", "--id", "abc"],
            &["invite", "delete", "--id", "abc", "--bucket", "friends"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invite_create_needs_a_bucket_and_reads_durations() {
        assert!(parse(&["invite", "create"]).is_err());
        assert!(parse(&["invite", "create", "--bucket", "a", "--count", "0"]).is_err());
        let cli = parse(&[
            "invite",
            "create",
            "--bucket",
            "a",
            "--bucket",
            "b",
            "--count",
            "3",
            "--expires",
            "30d",
        ])
        .unwrap();
        let Command::Invite(InviteCommand::Create {
            buckets,
            count,
            expires,
            ..
        }) = cli.command
        else {
            panic!("not invite create");
        };
        assert_eq!(buckets, ["a", "b"]);
        assert_eq!(count, 3);
        assert_eq!(expires, Some(Duration::from_secs(30 * 86_400)));
    }

    #[test]
    fn invite_lists_show_ids_and_times_never_hashes() {
        let new = invite::generate();
        let rows = [
            InviteRow {
                id: new.id.clone(),
                secret_hash: new.secret_hash.clone(),
                buckets: vec!["family".into(), "friends".into()],
                created_millis: 0,
                expires_millis: Some(1_000),
                last_used_millis: None,
            },
            InviteRow {
                id: "0123456789abcdef".into(),
                secret_hash: "00".repeat(32),
                buckets: vec!["friends".into()],
                created_millis: 0,
                expires_millis: None,
                last_used_millis: Some(500),
            },
        ];
        let table = render_invites(&rows, false, 2_000).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].starts_with(&new.id), "{table}");
        assert!(lines[1].contains("expired") && lines[1].ends_with("family,friends"));
        assert!(lines[2].contains("active") && lines[2].contains("never"));
        assert!(lines[2].contains("1970-01-01T00:00:00Z"));

        let json = render_invites(&rows, true, 2_000).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["id"], new.id.as_str());
        assert_eq!(parsed[1]["last_used_millis"], 500);
        for text in [&table, &json] {
            assert!(!text.contains(&new.secret_hash), "{text}");
            assert!(!text.contains("secret"), "{text}");
            assert!(!text.contains(&new.token[new.id.len()..]), "{text}");
        }
    }

    #[test]
    fn admin_token_takes_a_subject_and_a_role() {
        assert!(parse(&["admin", "token", "--role", "admin"]).is_err());
        assert!(parse(&["admin", "token", "--subject", "a", "--role", "root"]).is_err());
        let cli = parse(&[
            "admin",
            "token",
            "--subject",
            "alice",
            "--role",
            "viewer",
            "--ttl",
            "1h",
        ])
        .unwrap();
        let Command::Admin(AdminCommand::Token {
            subject, role, ttl, ..
        }) = cli.command
        else {
            panic!("not admin token");
        };
        assert_eq!(
            (subject.as_str(), role, ttl),
            ("alice", Role::Viewer, Duration::from_secs(3600))
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_bytes("64MiB"), Ok(64 * 1024 * 1024));
        assert_eq!(super::parse_bytes("512 KiB"), Ok(512 * 1024));
        assert_eq!(super::parse_bytes("1000"), Ok(1000));
        assert!(super::parse_bytes("lots").is_err());
        assert!(super::parse_bytes("1TiB").is_err());
    }
}
