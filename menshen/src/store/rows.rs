//! What the store holds, row by row.

use menshen_model::{Bridge, Gateway, Provider};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who defined a location or resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The provider file (`--config`).
    Config,
    /// An operator through the admin API or CLI.
    Admin,
    /// An agent's heartbeat; such resources expire.
    Agent,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Admin => "admin",
            Origin::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    #[default]
    Gateway,
    Bridge,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Gateway => "gateway",
            ResourceKind::Bridge => "bridge",
        }
    }

    /// The name of a list of this kind, as the agent API's bodies and
    /// field errors name it.
    pub const fn list(self) -> &'static str {
        match self {
            ResourceKind::Gateway => "gateways",
            ResourceKind::Bridge => "bridges",
        }
    }
}

/// Service settings as stored; the locations part of `/api/5/service` is
/// computed from the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ServiceSettings {
    /// How clients authenticate, e.g. `anonymous`.
    pub auth: String,
    /// OpenVPN options for clients: each a string, or true for a flag.
    #[schema(value_type = Object)]
    pub openvpn_configuration: Map<String, Value>,
    pub serial: i64,
    pub version: i64,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            auth: "anonymous".into(),
            openvpn_configuration: Map::new(),
            serial: 3,
            version: 3,
        }
    }
}

/// A location as stored, and as operators see it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
#[schema(as = LocationView)]
pub struct LocationRow {
    pub label: String,
    pub display_name: String,
    pub country_code: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// Whole hours from UTC.
    pub timezone: Option<i64>,
    pub hemisphere: String,
    pub region: String,
    /// `config` (the provider file: change it there) or `admin`.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct ResourceRow {
    #[sqlx(try_from = "String")]
    pub kind: ResourceKind,
    pub host: String,
    pub ip_addr: String,
    pub ip6_addr: String,
    pub location: String,
    /// 0 when the resource has no fixed port.
    pub port: i64,
    pub transport: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind_type: String,
    pub load: f64,
    pub overloaded: bool,
    pub healthy: bool,
    pub experimental: bool,
    pub bucket: String,
    pub auth: String,
    /// A JSON object.
    pub options: String,
    pub last_seen_millis: i64,
    pub origin: String,
    pub agent: Option<String>,
}

#[cfg(test)]
impl ResourceRow {
    /// For tests: a hand-defined OpenVPN gateway `host` over UDP at
    /// 192.0.2.1:1194 in `location`, healthy, public, unloaded.
    pub fn test_gateway(host: &str, location: &str) -> ResourceRow {
        ResourceRow {
            kind: ResourceKind::Gateway,
            host: host.into(),
            ip_addr: "192.0.2.1".into(),
            ip6_addr: String::new(),
            location: location.into(),
            port: 1194,
            transport: "udp".into(),
            kind_type: "openvpn".into(),
            load: 0.0,
            overloaded: false,
            healthy: true,
            experimental: false,
            bucket: String::new(),
            auth: String::new(),
            options: "{}".into(),
            last_seen_millis: 0,
            origin: Origin::Config.as_str().into(),
            agent: None,
        }
    }
}

impl TryFrom<String> for ResourceKind {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "gateway" => Ok(ResourceKind::Gateway),
            "bridge" => Ok(ResourceKind::Bridge),
            other => Err(format!("unknown resource kind {other:?}")),
        }
    }
}

impl ResourceRow {
    /// Whether the resource is pushed by an agent, and so expires.
    pub fn expires(&self) -> bool {
        self.origin == Origin::Agent.as_str()
    }

    pub fn options_map(&self) -> Map<String, Value> {
        serde_json::from_str(&self.options).unwrap_or_default()
    }
}

/// `$ty { .. }` with the fields every gateway and bridge has copied from
/// `$src` (a wire type or a row: what the wire calls `kind` is a row's
/// `kind_type`), the first field named, then `$rest`.
macro_rules! with_shared_fields {
    ($ty:ident { $kind:ident: $src:ident.$src_kind:ident, $($rest:tt)* }) => {
        $ty {
            host: $src.host.clone(),
            ip_addr: $src.ip_addr.clone(),
            ip6_addr: $src.ip6_addr.clone(),
            location: $src.location.clone(),
            port: $src.port,
            transport: $src.transport.clone(),
            $kind: $src.$src_kind.clone(),
            load: $src.load,
            overloaded: $src.overloaded,
            healthy: $src.healthy,
            experimental: $src.experimental,
            bucket: $src.bucket.clone(),
            last_seen_millis: $src.last_seen_millis,
            $($rest)*
        }
    };
}

/// The conversions between stored rows and what clients see: the only
/// place a row's fields are copied to and from the wire types.
impl ResourceRow {
    /// A gateway's fields as a stored row.
    pub fn from_gateway(g: &Gateway, origin: Origin, agent: Option<&str>) -> ResourceRow {
        with_shared_fields!(ResourceRow {
            kind_type: g.kind,
            kind: ResourceKind::Gateway,
            auth: String::new(),
            options: "{}".into(),
            origin: origin.as_str().into(),
            agent: agent.map(str::to_owned),
        })
    }

    /// A bridge's fields as a stored row.
    pub fn from_bridge(b: &Bridge, origin: Origin, agent: Option<&str>) -> ResourceRow {
        with_shared_fields!(ResourceRow {
            kind_type: b.kind,
            kind: ResourceKind::Bridge,
            auth: b.auth.clone(),
            options: serde_json::to_string(&b.options).unwrap_or_else(|_| "{}".into()),
            origin: origin.as_str().into(),
            agent: agent.map(str::to_owned),
        })
    }

    /// The row as a client sees a gateway.
    pub fn to_gateway(&self) -> Gateway {
        with_shared_fields!(Gateway {
            kind: self.kind_type,
        })
    }

    /// The row as a client sees a bridge.
    pub fn to_bridge(&self) -> Bridge {
        with_shared_fields!(Bridge {
            kind: self.kind_type,
            auth: self.auth.clone(),
            options: self.options_map(),
        })
    }
}

/// What a provider file defines, as rows: what
/// [`Store::apply_provider_file`](super::Store::apply_provider_file) writes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRows {
    pub provider: Provider,
    pub service: ServiceSettings,
    pub locations: Vec<LocationRow>,
    pub resources: Vec<ResourceRow>,
}

/// How a gateway or bridge stood at the prober's last check of it from
/// outside (`menshen probe`, or `menshen serve --probe`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    /// Not checked yet, or it cannot be (no address, a hopping port, a
    /// transport the prober does not speak).
    #[default]
    Untested,
    /// Its last check passed.
    Functional,
    /// It failed its last checks (as many as the prober's --probe-failures).
    Dysfunctional,
}

impl ProbeState {
    pub const ALL: [ProbeState; 3] = [
        ProbeState::Untested,
        ProbeState::Functional,
        ProbeState::Dysfunctional,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeState::Untested => "untested",
            ProbeState::Functional => "functional",
            ProbeState::Dysfunctional => "dysfunctional",
        }
    }
}

impl TryFrom<String> for ProbeState {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        ProbeState::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| format!("unknown probe state {value:?}"))
    }
}

/// The prober's last word on one gateway or bridge.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
#[schema(as = Probe)]
pub struct ProbeRow {
    #[sqlx(try_from = "String")]
    #[serde(skip)]
    #[schema(ignore)]
    pub kind: ResourceKind,
    #[serde(skip)]
    #[schema(ignore)]
    pub host: String,
    #[sqlx(try_from = "String")]
    pub state: ProbeState,
    /// Checks failed in a row; 0 after one that passed.
    pub failures: i64,
    /// Unix ms of the last check.
    pub checked_millis: i64,
    /// Unix ms of the last change of `state`.
    pub changed_millis: i64,
    /// What answered, or why the last check failed.
    pub detail: String,
}

/// Everything clients are served from, as read from the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub provider: Provider,
    pub service: ServiceSettings,
    pub locations: Vec<LocationRow>,
    pub resources: Vec<ResourceRow>,
    /// Invite tokens, as far as checking one needs.
    pub invites: Vec<InviteEntry>,
    /// What operators set on resources, applied over the stored rows.
    pub overrides: Vec<OverrideRow>,
    /// Admin tokens revoked before they expire.
    pub admin_revocations: AdminRevocations,
    /// The prober's last results, by resource.
    pub probes: Vec<ProbeRow>,
}

impl Inventory {
    /// The prober's last results by resource (kind, host), for looking
    /// many up.
    pub fn probes_by_resource(&self) -> std::collections::HashMap<(ResourceKind, &str), &ProbeRow> {
        self.probes
            .iter()
            .map(|p| ((p.kind, p.host.as_str()), p))
            .collect()
    }
}

/// Admin tokens that are refused although signed and not expired: by id,
/// and by subject up to a moment (see `menshen admin revoke`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminRevocations {
    /// Ids (`jti`) of revoked tokens that have not expired yet.
    pub jtis: std::collections::HashSet<String>,
    /// Subject to the moment (Unix ms) up to which its tokens are revoked.
    pub subjects: std::collections::HashMap<String, i64>,
}

impl AdminRevocations {
    /// Whether a token with id `jti` for `subject`, issued at `iat` (Unix
    /// seconds), is revoked. A subject's revocation takes in the tokens
    /// issued in the same second as it, after it too.
    pub fn revokes(&self, jti: &str, subject: &str, iat: i64) -> bool {
        self.jtis.contains(jti)
            || self
                .subjects
                .get(subject)
                .is_some_and(|&until| iat.saturating_mul(1000) <= until)
    }
}

/// What an operator set on one gateway or bridge; it outlives agents'
/// pushes. `None`: the resource's own value.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow, Serialize, Deserialize)]
pub struct OverrideRow {
    #[sqlx(try_from = "String")]
    #[serde(skip, default = "gateway_kind")]
    pub kind: ResourceKind,
    #[serde(skip)]
    pub host: String,
    pub experimental: Option<bool>,
    pub bucket: Option<String>,
    /// Left out of client lists, not deleted.
    pub maintenance: bool,
    /// Not given to clients in these countries.
    #[sqlx(try_from = "String")]
    #[serde(default)]
    pub blocked_in: CountryCodes,
}

/// ISO 3166-1 alpha-2 codes, uppercase, sorted, without duplicates; stored
/// as one text, comma-separated (`""`: none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CountryCodes(pub Vec<String>);

impl CountryCodes {
    /// As stored.
    pub fn to_column(&self) -> String {
        self.0.join(",")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for CountryCodes {
    fn from(column: String) -> Self {
        CountryCodes(
            column
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }
}

fn gateway_kind() -> ResourceKind {
    ResourceKind::Gateway
}

impl OverrideRow {
    /// Whether it changes nothing, and so need not be kept.
    pub fn is_empty(&self) -> bool {
        self.experimental.is_none()
            && self.bucket.is_none()
            && !self.maintenance
            && self.blocked_in.is_empty()
    }

    /// `row` as clients should see it, or `None` when in maintenance.
    pub fn apply(&self, row: &ResourceRow) -> Option<ResourceRow> {
        if self.maintenance {
            return None;
        }
        let mut row = row.clone();
        if let Some(experimental) = self.experimental {
            row.experimental = experimental;
        }
        if let Some(bucket) = &self.bucket {
            row.bucket = bucket.clone();
        }
        Some(row)
    }
}

/// An invite as the client path checks it: no token, only the hash of its
/// secret.
#[derive(Debug, Clone, PartialEq)]
pub struct InviteEntry {
    /// The public part of the token.
    pub id: String,
    /// Hex SHA-256 of the token's secret.
    pub secret_hash: String,
    pub buckets: Vec<String>,
    pub expires_millis: Option<i64>,
}

impl Inventory {
    pub(super) fn from_rows(
        settings: Vec<(String, String)>,
        locations: Vec<LocationRow>,
        resources: Vec<ResourceRow>,
        invites: Vec<InviteEntry>,
        overrides: Vec<OverrideRow>,
        admin_revocations: AdminRevocations,
        probes: Vec<ProbeRow>,
    ) -> Result<Inventory, super::StoreError> {
        let mut inventory = Inventory {
            locations,
            resources,
            invites,
            overrides,
            admin_revocations,
            probes,
            ..Default::default()
        };
        for (name, value) in settings {
            match name.as_str() {
                "provider" => inventory.provider = serde_json::from_str(&value)?,
                "service" => inventory.service = serde_json::from_str(&value)?,
                _ => {}
            }
        }
        Ok(inventory)
    }
}
