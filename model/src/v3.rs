//! Wire types of the LEAP API v3, which older clients (and community
//! tools) still speak: `/3/config/eip-service.json`. Every value a client
//! reads as a string is a string here: the desktop client decodes ports,
//! protocols, options and timezones as strings and rejects the whole
//! document on a number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `GET /3/config/eip-service.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = EipServiceV3))]
pub struct EipService {
    /// One entry per host, every transport it offers.
    pub gateways: Vec<Gateway>,
    /// Keyed by location label.
    pub locations: BTreeMap<String, Location>,
    /// Option name to a string or `true`, as in v5.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub openvpn_configuration: Map<String, Value>,
    pub serial: i64,
    /// Always 3: clients read the transport objects only for 3 and 4.
    pub version: i64,
}

/// A gateway host and what it offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = GatewayV3))]
pub struct Gateway {
    pub host: String,
    /// IPv4 address.
    pub ip_address: String,
    /// IPv6 address, when it has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip_address6: String,
    /// A key of `locations`.
    pub location: String,
    pub capabilities: Capabilities,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = CapabilitiesV3))]
pub struct Capabilities {
    pub adblock: bool,
    pub filter_dns: bool,
    pub limited: bool,
    pub transport: Vec<Transport>,
}

/// One transport of a host: `openvpn` with its protocols and ports, or a
/// bridge (`obfs4`, `obfs4-hop`) with its options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = TransportV3))]
pub struct Transport {
    #[serde(rename = "type")]
    pub kind: String,
    /// `udp`, `tcp`; `kcp` for obfs4 over KCP.
    pub protocols: Vec<String>,
    /// Port numbers as strings.
    pub ports: Vec<String>,
    /// For obfs4 `cert` and `iatMode`; every value a string.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A location as v3 clients read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = LocationV3))]
pub struct Location {
    pub country_code: String,
    pub hemisphere: String,
    /// The name clients show.
    pub name: String,
    /// Whole hours from UTC, a signed integer in a string (`"+1"`).
    pub timezone: String,
}
