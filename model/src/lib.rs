//! Wire types of the LEAP VPN API v5.
//!
//! These types are the contract with clients that already ship (bitmask-core,
//! the Android and desktop clients): field names, JSON types and omission
//! rules must not change. A field is left out of the JSON when it is empty,
//! zero or false, except where a comment says "always".
//!
//! The names and defaults both sides share (transports, types, the agent's
//! interval, the resources' TTL) are in [`vocab`].
//!
//! With the `openapi` feature the types also describe themselves for
//! menshen's OpenAPI document (`utoipa::ToSchema`); nothing else needs it.

pub mod v3;
pub mod vocab;

pub use vocab::{
    AGENT_INTERVAL, BridgeTransport, BridgeType, GatewayTransport, GatewayType, RESOURCE_TTL,
    UnknownName,
};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// Declares a wire type of a gateway or a bridge: the fields every resource
/// has, in the order clients have always seen them, then `$extra` fields.
/// The caller documents the fields whose meaning differs by kind (`host`,
/// `port`, `transport`, `kind`).
macro_rules! resource {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(#[$host:meta])* host,
            $(#[$port:meta])* port,
            $(#[$transport:meta])* transport,
            $(#[$kind:meta])* kind,
            $($extra:tt)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(default)]
        pub struct $name {
            $(#[$host])*
            #[serde(skip_serializing_if = "String::is_empty")]
            pub host: String,
            /// IPv4 address.
            #[serde(skip_serializing_if = "String::is_empty")]
            pub ip_addr: String,
            /// IPv6 address.
            #[serde(skip_serializing_if = "String::is_empty")]
            pub ip6_addr: String,
            /// A key of the service's `locations`.
            #[serde(skip_serializing_if = "String::is_empty")]
            pub location: String,
            $(#[$port])*
            #[serde(skip_serializing_if = "is_zero_i64")]
            pub port: i64,
            $(#[$transport])*
            #[serde(skip_serializing_if = "String::is_empty")]
            pub transport: String,
            $(#[$kind])*
            #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
            pub kind: String,
            /// Fraction of capacity in use, 0.0 to 1.0.
            #[serde(skip_serializing_if = "is_zero_f64")]
            pub load: f64,
            #[serde(skip_serializing_if = "is_false")]
            pub overloaded: bool,
            #[serde(skip_serializing_if = "is_false")]
            pub healthy: bool,
            #[serde(skip_serializing_if = "is_false")]
            pub experimental: bool,
            /// Empty for public resources; otherwise only invitees of this bucket see it.
            #[serde(skip_serializing_if = "String::is_empty")]
            pub bucket: String,
            /// Unix milliseconds of the last heartbeat, set by the server.
            #[serde(skip_serializing_if = "is_zero_i64")]
            pub last_seen_millis: i64,
            $($extra)*
        }
    };
}

resource! {
    /// An OpenVPN gateway as listed by `GET /api/5/gateways`. Fields that are
    /// empty, zero or false are left out.
    pub struct Gateway {
        /// Unique identifier of the gateway; need not resolve.
        host,
        port,
        /// `tcp` or `udp`.
        transport,
        /// `openvpn`.
        kind,
    }
}

resource! {
    /// A bridge (obfs4 and friends) as listed by `GET /api/5/bridges`. Fields
    /// that are empty, zero or false are left out.
    pub struct Bridge {
        /// Unique identifier of the bridge; need not resolve.
        host,
        /// Absent for port-hopping bridges.
        port,
        /// `tcp`, `kcp` or `quic`.
        transport,
        /// `obfs4`, `obfs4-hop`, ...
        kind,
        #[serde(skip_serializing_if = "String::is_empty")]
        pub auth: String,
        /// Transport options; for obfs4 `cert` and `iatMode`.
        #[serde(skip_serializing_if = "Map::is_empty")]
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        pub options: Map<String, Value>,
    }
}

/// A location as found in the service's `locations`.
///
/// `lat`, `lon` and `timezone` are strings on the wire; `timezone` is a
/// signed integer in a string (`"-5"`, `"0"`, `"+1"`). Fields that are
/// empty or false are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Location {
    /// Uppercase ISO 3166-1 alpha-2.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub country_code: String,
    /// The name clients show.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// The location's key in the service's `locations`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub label: String,
    #[serde(skip_serializing_if = "is_false")]
    pub has_bridges: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub healthy: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hemisphere: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// Latitude in degrees, as a string.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(example = "52.37"))]
    pub lat: String,
    /// Longitude in degrees, as a string.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(example = "4.89"))]
    pub lon: String,
    /// Whole hours from UTC, a signed integer in a string.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(example = "+1"))]
    pub timezone: String,
}

/// `GET /api/5/service`. Fields that are empty or zero are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct EipService {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub locations: BTreeMap<String, Location>,
    /// Option name to a string (`--key value`) or `true` (bare `--key`).
    #[serde(skip_serializing_if = "Map::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = openvpn_options_schema))]
    pub openvpn_configuration: Map<String, Value>,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub serial: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub version: i64,
}

/// The `service` object of the provider description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ProviderService {
    #[serde(skip_serializing_if = "is_false")]
    pub allow_anonymous: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub allow_registration: bool,
}

impl ProviderService {
    fn is_empty(&self) -> bool {
        !self.allow_anonymous && !self.allow_registration
    }
}

/// A key that signs the provider's client answers (their
/// `x-menshen-signature` header), as `/provider.json` publishes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct SigningKeyInfo {
    /// The key id the header names: hex of the first 8 bytes of SHA-256
    /// over the public key.
    pub kid: String,
    /// `ed25519`.
    pub alg: String,
    /// The 32-byte public key, base64.
    pub public_key: String,
}

/// `GET /provider.json`. Fields that are empty, zero or false are left
/// out, except the four lists, which are always there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Provider {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_uri: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Always present; must contain "5".
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub api_versions: Vec<String>,
    /// Always present.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub languages: Vec<String>,
    /// Always present.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub services: Vec<String>,
    /// Always present, possibly empty.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub stun_servers: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub ask_for_donations: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_cert_fingerprint: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_cert_uri: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub country_code_lookup_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub default_language: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub description: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// How often to ask for donations (days), a string on the wire: the
    /// clients' model declares a string, and a number makes the Go client
    /// reject the whole description. A number is accepted when read.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "string_or_integer"
    )]
    pub donate_period: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub donate_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub info_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub motd_url: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub name: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "ProviderService::is_empty")]
    pub service: ProviderService,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tos_url: String,
    /// Keys that sign the client answers (see `x-menshen-signature`); the
    /// first signs, the others are valid too (rotation). Absent while
    /// answers are not signed. Set by the server from its keys; a value
    /// given through the admin API is not served.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<SigningKeyInfo>,
}

/// Reads a string, or an integer as its decimal string: for fields that are
/// strings on the wire but that operators (and older stored descriptions)
/// write as numbers.
pub fn string_or_integer<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a whole number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// The schema of `openvpn_configuration`: an object whose values are
/// strings or `true`.
#[cfg(feature = "openapi")]
fn openvpn_options_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
    let value = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .enum_values(Some([true])),
        );
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Option name to a string (`--key value`) or `true` (bare `--key`).",
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(value.into())))
        .build()
}

/// Formats a timezone offset in hours the way clients parse it
/// (`Integer.parseInt` on Android): `"+1"`, `"0"`, `"-5"`.
pub fn format_timezone(hours: i32) -> String {
    if hours > 0 {
        format!("+{hours}")
    } else {
        hours.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_fields_are_omitted_and_always_arrays_stay() {
        let provider = Provider::default();
        assert_eq!(
            serde_json::to_value(&provider).unwrap(),
            json!({"api_versions": [], "languages": [], "services": [], "stun_servers": []})
        );
        assert_eq!(serde_json::to_value(Gateway::default()).unwrap(), json!({}));
        assert_eq!(serde_json::to_value(Bridge::default()).unwrap(), json!({}));
        assert_eq!(
            serde_json::to_value(Location::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn donate_period_is_a_string_and_read_from_a_number_too() {
        let provider = Provider {
            donate_period: "30".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&provider).unwrap()["donate_period"],
            json!("30")
        );
        for stored in [json!({"donate_period": 30}), json!({"donate_period": "30"})] {
            let read: Provider = serde_json::from_value(stored).unwrap();
            assert_eq!(read.donate_period, "30");
        }
        assert!(serde_json::from_value::<Provider>(json!({"donate_period": 1.5})).is_err());
    }

    #[test]
    fn gateway_type_field_is_named_type() {
        let gw = Gateway {
            host: "gw1".into(),
            kind: "openvpn".into(),
            port: 1194,
            load: 0.5,
            healthy: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&gw).unwrap(),
            json!({"host": "gw1", "type": "openvpn", "port": 1194, "load": 0.5, "healthy": true})
        );
    }

    #[test]
    fn timezone_is_a_signed_integer_string() {
        assert_eq!(format_timezone(1), "+1");
        assert_eq!(format_timezone(0), "0");
        assert_eq!(format_timezone(-5), "-5");
        for tz in [-12, -5, 0, 1, 14] {
            let s = format_timezone(tz);
            // Java's Integer.parseInt accepts a leading '+' or '-'.
            assert_eq!(s.trim_start_matches('+').parse::<i32>().unwrap(), tz);
        }
    }
}
