//! Rules every gateway and bridge must satisfy, wherever it comes from (the
//! provider file, an agent, an operator).

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use menshen_model::{Bridge, Gateway};
use serde::Serialize;

pub const GATEWAY_TRANSPORTS: &[&str] = &["tcp", "udp"];
pub const BRIDGE_TRANSPORTS: &[&str] = &["tcp", "kcp", "quic"];
pub const GATEWAY_TYPES: &[&str] = &["openvpn"];
pub const BRIDGE_TYPES: &[&str] = &["obfs4", "obfs4-hop"];

const MAX_HOST_LEN: usize = 253;
pub const MAX_BUCKET_LEN: usize = 64;

/// One problem with one field of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `gateways[2].ip_addr`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The fields gateways and bridges share, borrowed for checking.
struct Common<'a> {
    host: &'a str,
    ip_addr: &'a str,
    ip6_addr: &'a str,
    location: &'a str,
    port: i64,
    transport: &'a str,
    kind: &'a str,
    load: f64,
    bucket: &'a str,
}

fn check_common(
    r: &Common<'_>,
    prefix: &str,
    port_required: bool,
    transports: &[&str],
    kinds: &[&str],
    location_exists: &dyn Fn(&str) -> bool,
    errors: &mut Vec<FieldError>,
) {
    let mut err = |field: &str, message: String| {
        errors.push(FieldError::new(format!("{prefix}{field}"), message))
    };
    if r.host.is_empty() {
        err("host", "must not be empty".into());
    } else if r.host.len() > MAX_HOST_LEN {
        err("host", format!("is longer than {MAX_HOST_LEN} characters"));
    } else if r.host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        err(
            "host",
            "must not contain spaces or control characters".into(),
        );
    }
    if !r.ip_addr.is_empty() && r.ip_addr.parse::<Ipv4Addr>().is_err() {
        err("ip_addr", format!("{:?} is not an IPv4 address", r.ip_addr));
    }
    if !r.ip6_addr.is_empty() && r.ip6_addr.parse::<Ipv6Addr>().is_err() {
        err(
            "ip6_addr",
            format!("{:?} is not an IPv6 address", r.ip6_addr),
        );
    }
    if r.ip_addr.is_empty() && r.ip6_addr.is_empty() {
        err("ip_addr", "an ip_addr or ip6_addr is required".into());
    }
    if r.location.is_empty() {
        err("location", "must not be empty".into());
    } else if !location_exists(r.location) {
        err("location", format!("no location named {:?}", r.location));
    }
    if r.port == 0 && port_required {
        err("port", "is required".into());
    } else if r.port != 0 && !(1..=65535).contains(&r.port) {
        err("port", format!("{} is outside 1-65535", r.port));
    }
    let mut one_of = |field: &str, value: &str, allowed: &[&str]| {
        if value.is_empty() {
            err(field, format!("is required: one of {}", allowed.join(", ")));
        } else if !allowed.contains(&value) {
            err(
                field,
                format!("{value:?} is not one of {}", allowed.join(", ")),
            );
        }
    };
    one_of("transport", r.transport, transports);
    one_of("type", r.kind, kinds);
    if !r.load.is_finite() || !(0.0..=1.0).contains(&r.load) {
        err("load", format!("{} is outside 0.0-1.0", r.load));
    }
    if r.bucket.len() > MAX_BUCKET_LEN {
        err(
            "bucket",
            format!("is longer than {MAX_BUCKET_LEN} characters"),
        );
    } else if r
        .bucket
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        err(
            "bucket",
            "must not contain spaces or control characters".into(),
        );
    }
}

/// Checks a list of gateways; `prefix` names the list (e.g. `gateways`).
pub fn check_gateways(
    gateways: &[Gateway],
    prefix: &str,
    location_exists: &dyn Fn(&str) -> bool,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, g) in gateways.iter().enumerate() {
        let p = format!("{prefix}[{i}].");
        let common = Common {
            host: &g.host,
            ip_addr: &g.ip_addr,
            ip6_addr: &g.ip6_addr,
            location: &g.location,
            port: g.port,
            transport: &g.transport,
            kind: &g.kind,
            load: g.load,
            bucket: &g.bucket,
        };
        check_common(
            &common,
            &p,
            true,
            GATEWAY_TRANSPORTS,
            GATEWAY_TYPES,
            location_exists,
            &mut errors,
        );
        if !g.host.is_empty() && !seen.insert(g.host.as_str()) {
            errors.push(FieldError::new(
                format!("{p}host"),
                format!("{:?} appears more than once", g.host),
            ));
        }
    }
    errors
}

/// Checks a list of bridges; `prefix` names the list (e.g. `bridges`).
pub fn check_bridges(
    bridges: &[Bridge],
    prefix: &str,
    location_exists: &dyn Fn(&str) -> bool,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, b) in bridges.iter().enumerate() {
        let p = format!("{prefix}[{i}].");
        let common = Common {
            host: &b.host,
            ip_addr: &b.ip_addr,
            ip6_addr: &b.ip6_addr,
            location: &b.location,
            port: b.port,
            transport: &b.transport,
            kind: &b.kind,
            load: b.load,
            bucket: &b.bucket,
        };
        // Hopping bridges choose their ports; the others listen on one.
        let port_required = b.kind != "obfs4-hop";
        check_common(
            &common,
            &p,
            port_required,
            BRIDGE_TRANSPORTS,
            BRIDGE_TYPES,
            location_exists,
            &mut errors,
        );
        if b.kind.starts_with("obfs4") {
            match b.options.get("cert") {
                Some(serde_json::Value::String(cert)) if !cert.is_empty() => {}
                _ => errors.push(FieldError::new(
                    format!("{p}options.cert"),
                    "an obfs4 bridge needs its cert",
                )),
            }
        }
        if !b.host.is_empty() && !seen.insert(b.host.as_str()) {
            errors.push(FieldError::new(
                format!("{p}host"),
                format!("{:?} appears more than once", b.host),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw() -> Gateway {
        Gateway {
            host: "gw1".into(),
            ip_addr: "192.0.2.1".into(),
            location: "paris".into(),
            port: 1194,
            transport: "udp".into(),
            kind: "openvpn".into(),
            ..Default::default()
        }
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_good_gateway_passes() {
        assert!(check_gateways(&[gw()], "gateways", &|l| l == "paris").is_empty());
    }

    #[test]
    fn each_bad_field_is_named() {
        let bad = Gateway {
            host: "".into(),
            ip_addr: "1.2.3".into(),
            ip6_addr: "1.2.3.4".into(),
            location: "atlantis".into(),
            port: 99999,
            transport: "carrier-pigeon".into(),
            kind: "wireguard".into(),
            load: 1.5,
            ..Default::default()
        };
        let errors = check_gateways(&[gw(), bad], "gateways", &|l| l == "paris");
        assert_eq!(
            fields(&errors),
            [
                "gateways[1].host",
                "gateways[1].ip_addr",
                "gateways[1].ip6_addr",
                "gateways[1].location",
                "gateways[1].port",
                "gateways[1].transport",
                "gateways[1].type",
                "gateways[1].load",
            ]
        );
    }

    #[test]
    fn duplicate_hosts_are_refused() {
        let errors = check_gateways(&[gw(), gw()], "gateways", &|_| true);
        assert_eq!(fields(&errors), ["gateways[1].host"]);
    }

    #[test]
    fn bridges_may_omit_the_port_only_when_hopping() {
        let mut b = Bridge {
            host: "br1".into(),
            ip_addr: "192.0.2.9".into(),
            location: "paris".into(),
            transport: "tcp".into(),
            kind: "obfs4-hop".into(),
            ..Default::default()
        };
        b.options.insert("cert".into(), "abc".into());
        assert!(check_bridges(&[b.clone()], "bridges", &|_| true).is_empty());
        b.kind = "obfs4".into();
        assert_eq!(
            fields(&check_bridges(&[b.clone()], "bridges", &|_| true)),
            ["bridges[0].port"]
        );
        b.port = 443;
        b.options.clear();
        assert_eq!(
            fields(&check_bridges(&[b], "bridges", &|_| true)),
            ["bridges[0].options.cert"]
        );
    }
}
