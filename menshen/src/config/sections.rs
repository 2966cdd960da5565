//! The sections of the provider file as they are written: what serde
//! reads, with the defaults of what may be left out, and how each becomes
//! the model the rest of menshen uses. Checking them is `file.rs`'s.

use std::collections::BTreeMap;

use menshen_model::{
    Bridge, BridgeTransport, BridgeType, Gateway, GatewayType, Provider, ProviderService,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use crate::inventory::validate::LocationInput;
use crate::store::ServiceSettings;

/// `[policy]`: what the server serving this file accepts, from agents, the
/// admin API and this file alike.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Addresses that are not public unicast may be sent to clients (labs
    /// and tests); the same as `--allow-private-addresses`.
    #[serde(default)]
    pub allow_private_addresses: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub domain: String,
    pub api_uri: String,
    #[serde(default)]
    pub name: BTreeMap<String, String>,
    #[serde(default)]
    pub description: BTreeMap<String, String>,
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    #[serde(default)]
    pub default_language: String,
    #[serde(default = "default_services")]
    pub services: Vec<String>,
    #[serde(default)]
    pub stun_servers: Vec<String>,
    #[serde(default)]
    pub info_url: String,
    #[serde(default)]
    pub tos_url: String,
    #[serde(default)]
    pub motd_url: String,
    #[serde(default)]
    pub donate_url: String,
    /// A string for clients; a number is accepted and served as a string.
    #[serde(default, deserialize_with = "menshen_model::string_or_integer")]
    pub donate_period: String,
    #[serde(default)]
    pub ask_for_donations: bool,
    #[serde(default)]
    pub country_code_lookup_url: String,
    #[serde(default)]
    pub ca_cert_uri: String,
    #[serde(default = "yes")]
    pub allow_anonymous: bool,
    #[serde(default)]
    pub allow_registration: bool,
}

fn default_languages() -> Vec<String> {
    vec!["en".into()]
}

fn default_services() -> Vec<String> {
    vec!["openvpn".into()]
}

fn yes() -> bool {
    true
}

impl ProviderSection {
    pub fn to_model(&self) -> Provider {
        Provider {
            api_uri: self.api_uri.clone(),
            api_version: "5".into(),
            api_versions: vec!["5".into()],
            languages: self.languages.clone(),
            services: self.services.clone(),
            stun_servers: self.stun_servers.clone(),
            ask_for_donations: self.ask_for_donations,
            ca_cert_fingerprint: String::new(),
            ca_cert_uri: self.ca_cert_uri.clone(),
            country_code_lookup_url: self.country_code_lookup_url.clone(),
            default_language: if self.default_language.is_empty() {
                self.languages.first().cloned().unwrap_or_default()
            } else {
                self.default_language.clone()
            },
            description: self.description.clone(),
            domain: self.domain.clone(),
            donate_period: self.donate_period.clone(),
            donate_url: self.donate_url.clone(),
            info_url: self.info_url.clone(),
            motd_url: self.motd_url.clone(),
            name: self.name.clone(),
            service: ProviderService {
                allow_anonymous: self.allow_anonymous,
                allow_registration: self.allow_registration,
            },
            tos_url: self.tos_url.clone(),
            signing_keys: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    #[serde(default = "default_auth")]
    pub auth: String,
    #[serde(default = "default_serial")]
    pub serial: i64,
    #[serde(default = "default_serial")]
    pub version: i64,
    /// Option name to a string or `true`.
    #[serde(default = "no_options")]
    pub openvpn_configuration: Spanned<Map<String, Value>>,
}

impl Default for ServiceSection {
    fn default() -> Self {
        ServiceSection {
            auth: default_auth(),
            serial: default_serial(),
            version: default_serial(),
            openvpn_configuration: no_options(),
        }
    }
}

fn no_options() -> Spanned<Map<String, Value>> {
    Spanned::new(0..0, Map::new())
}

fn default_auth() -> String {
    "anonymous".into()
}

fn default_serial() -> i64 {
    3
}

impl ServiceSection {
    pub fn to_settings(&self) -> ServiceSettings {
        ServiceSettings {
            auth: self.auth.clone(),
            openvpn_configuration: self.openvpn_configuration.get_ref().clone(),
            serial: self.serial,
            version: self.version,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationSection {
    pub display_name: String,
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
    /// Degrees north.
    pub lat: Option<f64>,
    /// Degrees east.
    pub lon: Option<f64>,
    /// Whole hours from UTC.
    pub timezone: Option<i64>,
    /// `N` or `S`; derived from `lat` when left out.
    #[serde(default)]
    pub hemisphere: String,
    #[serde(default)]
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    pub host: String,
    #[serde(default)]
    pub ip_addr: String,
    #[serde(default)]
    pub ip6_addr: String,
    pub location: String,
    pub port: i64,
    pub transport: String,
    #[serde(default = "openvpn", rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub bucket: String,
    #[serde(default)]
    pub experimental: bool,
    #[serde(default = "yes")]
    pub healthy: bool,
    #[serde(default)]
    pub load: f64,
    #[serde(default)]
    pub overloaded: bool,
}

fn openvpn() -> String {
    GatewayType::default().as_str().into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSection {
    pub host: String,
    #[serde(default)]
    pub ip_addr: String,
    #[serde(default)]
    pub ip6_addr: String,
    pub location: String,
    #[serde(default)]
    pub port: i64,
    #[serde(default = "tcp")]
    pub transport: String,
    #[serde(default = "obfs4", rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub bucket: String,
    #[serde(default)]
    pub experimental: bool,
    #[serde(default = "yes")]
    pub healthy: bool,
    #[serde(default)]
    pub load: f64,
    #[serde(default)]
    pub overloaded: bool,
    #[serde(default)]
    pub auth: String,
    #[serde(default)]
    pub options: Map<String, Value>,
}

fn tcp() -> String {
    BridgeTransport::default().as_str().into()
}

fn obfs4() -> String {
    BridgeType::default().as_str().into()
}

impl LocationSection {
    /// The location in the shape every location is checked and stored in.
    pub fn input(&self, label: &str) -> LocationInput {
        LocationInput {
            label: label.to_owned(),
            display_name: self.display_name.clone(),
            country_code: self.country_code.clone(),
            lat: self.lat,
            lon: self.lon,
            timezone: self.timezone,
            hemisphere: self.hemisphere.clone(),
            region: self.region.clone(),
        }
    }
}

/// `$ty { .. }` with the fields gateways and bridges share taken from
/// section `$section` (transport and type lowercased, never seen), then
/// `$rest`.
macro_rules! from_section {
    ($section:expr, $ty:ident { $($rest:tt)* }) => {
        $ty {
            host: $section.host.clone(),
            ip_addr: $section.ip_addr.clone(),
            ip6_addr: $section.ip6_addr.clone(),
            location: $section.location.clone(),
            port: $section.port,
            transport: $section.transport.to_ascii_lowercase(),
            kind: $section.kind.to_ascii_lowercase(),
            load: $section.load,
            overloaded: $section.overloaded,
            healthy: $section.healthy,
            experimental: $section.experimental,
            bucket: $section.bucket.clone(),
            last_seen_millis: 0,
            $($rest)*
        }
    };
}

impl GatewaySection {
    pub fn to_model(&self) -> Gateway {
        from_section!(self, Gateway {})
    }
}

impl BridgeSection {
    pub fn to_model(&self) -> Bridge {
        from_section!(
            self,
            Bridge {
                auth: self.auth.clone(),
                options: self.options.clone(),
            }
        )
    }
}
