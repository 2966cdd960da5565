//! Rules every gateway and bridge must satisfy, wherever it comes from (the
//! provider file, an agent, an operator).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use menshen_model::{Bridge, Gateway};
use serde::Serialize;

pub const GATEWAY_TRANSPORTS: &[&str] = &["tcp", "udp"];
pub const BRIDGE_TRANSPORTS: &[&str] = &["tcp", "kcp", "quic"];
pub const GATEWAY_TYPES: &[&str] = &["openvpn"];
pub const BRIDGE_TYPES: &[&str] = &["obfs4", "obfs4-hop"];

const MAX_HOST_LEN: usize = 253;
pub const MAX_BUCKET_LEN: usize = 64;

/// Default of `--max-resources-per-agent`.
pub const DEFAULT_MAX_RESOURCES_PER_AGENT: usize = 64;

/// Length of an obfs4 bridge's `cert`: a node id (20 bytes) and a public key
/// (32 bytes).
const OBFS4_CERT_BYTES: usize = 52;

/// The options an obfs4 bridge may carry.
const OBFS4_OPTIONS: &[&str] = &["cert", "iatMode"];

/// The options an obfs4-hop bridge may carry besides [`OBFS4_OPTIONS`]:
/// whole numbers, with the smallest value each may take.
const HOP_OPTIONS: &[(&str, i64)] = &[
    ("min_hop_seconds", 1),
    ("hop_jitter", 0),
    ("min_hop_port", 1),
    ("max_hop_port", 1),
    ("port_count", 1),
    ("port_seed", 0),
];

/// What the operator allows beyond the rules every gateway and bridge
/// follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Addresses that are not public unicast (loopback, private,
    /// documentation, ...) may be handed to clients: for labs and tests
    /// (`--allow-private-addresses`).
    pub allow_private_addresses: bool,
}

impl Policy {
    /// Labs and tests: any address.
    pub const LAB: Policy = Policy {
        allow_private_addresses: true,
    };
}

/// Why `ip` is not a public unicast IPv4 address, if it is not.
pub fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(if ip.is_unspecified() {
        "is unspecified"
    } else if a == 0 {
        "is in 0.0.0.0/8 (this network)"
    } else if ip.is_loopback() {
        "is a loopback address"
    } else if ip.is_private() {
        "is a private address (RFC 1918)"
    } else if ip.is_link_local() {
        "is a link-local address"
    } else if a == 100 && (b & 0xc0) == 64 {
        "is a shared (CGNAT) address, 100.64.0.0/10"
    } else if ip.is_documentation() {
        "is a documentation address"
    } else if a == 192 && b == 0 && c == 0 {
        "is in 192.0.0.0/24 (IETF protocol assignments)"
    } else if a == 198 && (b & 0xfe) == 18 {
        "is a benchmarking address, 198.18.0.0/15"
    } else if ip.is_broadcast() {
        "is the broadcast address"
    } else if ip.is_multicast() {
        "is a multicast address"
    } else if a >= 240 {
        "is reserved, 240.0.0.0/4"
    } else {
        return None;
    })
}

/// Why `ip` is not a public unicast IPv6 address, if it is not.
pub fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4).map(|_| "is an IPv4-mapped address of a non-public address");
    }
    let s = ip.segments();
    Some(if ip.is_unspecified() {
        "is unspecified"
    } else if ip.is_loopback() {
        "is the loopback address"
    } else if ip.is_multicast() {
        "is a multicast address"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "is a unique local address, fc00::/7"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "is a link-local address"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "is a site-local address"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 || (s[0] & 0xfff0) == 0x3ff0 {
        "is a documentation address"
    } else if (s[0] & 0xe000) != 0x2000 {
        "is outside the global unicast addresses, 2000::/3"
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        "is in 2001::/23 (IETF protocol assignments)"
    } else {
        return None;
    })
}

/// At most `max` resources per agent: the error naming the limit when
/// `count` is above it.
pub fn check_count(count: usize, max: usize, list: &str) -> Option<FieldError> {
    (count > max).then(|| {
        FieldError::new(
            list,
            format!(
                "an agent may claim at most {max} gateways and bridges \
                 (--max-resources-per-agent); this would be {count}"
            ),
        )
    })
}

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
    port_required: bool,
}

fn check_common(
    r: &Common<'_>,
    prefix: &str,
    transports: &[&str],
    kinds: &[&str],
    location_exists: &dyn Fn(&str) -> bool,
    policy: &Policy,
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
    const PUBLIC_ONLY: &str =
        "clients are sent only to public unicast addresses (--allow-private-addresses allows more)";
    if !r.ip_addr.is_empty() {
        match r.ip_addr.parse::<Ipv4Addr>() {
            Err(_) => err("ip_addr", format!("{:?} is not an IPv4 address", r.ip_addr)),
            Ok(ip) => {
                if let Some(why) = non_public_v4(ip).filter(|_| !policy.allow_private_addresses) {
                    err("ip_addr", format!("{ip} {why}; {PUBLIC_ONLY}"));
                }
            }
        }
    }
    if !r.ip6_addr.is_empty() {
        match r.ip6_addr.parse::<Ipv6Addr>() {
            Err(_) => err(
                "ip6_addr",
                format!("{:?} is not an IPv6 address", r.ip6_addr),
            ),
            Ok(ip) => {
                if let Some(why) = non_public_v6(ip).filter(|_| !policy.allow_private_addresses) {
                    err("ip6_addr", format!("{ip} {why}; {PUBLIC_ONLY}"));
                }
            }
        }
    }
    if r.ip_addr.is_empty() && r.ip6_addr.is_empty() {
        err("ip_addr", "an ip_addr or ip6_addr is required".into());
    }
    if r.location.is_empty() {
        err("location", "must not be empty".into());
    } else if !location_exists(r.location) {
        err("location", format!("no location named {:?}", r.location));
    }
    if r.port == 0 && r.port_required {
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
    policy: &Policy,
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
            port_required: true,
        };
        check_common(
            &common,
            &p,
            GATEWAY_TRANSPORTS,
            GATEWAY_TYPES,
            location_exists,
            policy,
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
    policy: &Policy,
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
            // Hopping bridges choose their ports; the others listen on one.
            port_required: b.kind != "obfs4-hop",
        };
        check_common(
            &common,
            &p,
            BRIDGE_TRANSPORTS,
            BRIDGE_TYPES,
            location_exists,
            policy,
            &mut errors,
        );
        if BRIDGE_TYPES.contains(&b.kind.as_str()) {
            check_options(&b.options, &b.kind, &p, &mut errors);
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

/// The options of a bridge of type `kind` (obfs4 or obfs4-hop), by type;
/// keys that no bridge of that type has are refused.
fn check_options(
    options: &serde_json::Map<String, serde_json::Value>,
    kind: &str,
    prefix: &str,
    errors: &mut Vec<FieldError>,
) {
    use base64::Engine as _;
    use serde_json::Value;
    let mut err = |key: &str, message: String| {
        errors.push(FieldError::new(format!("{prefix}options.{key}"), message))
    };
    let hopping = kind == "obfs4-hop";
    match options.get("cert") {
        None => err("cert", format!("an {kind} bridge needs its cert")),
        Some(Value::String(cert)) => {
            let decoded = base64::engine::general_purpose::STANDARD_NO_PAD.decode(cert);
            if !decoded.is_ok_and(|bytes| bytes.len() == OBFS4_CERT_BYTES) {
                err(
                    "cert",
                    format!("must be the base64 (without padding) of {OBFS4_CERT_BYTES} bytes"),
                );
            }
        }
        Some(_) => err("cert", "must be a string".into()),
    }
    match options.get("iatMode") {
        None => {}
        Some(Value::String(mode)) if matches!(mode.as_str(), "0" | "1" | "2") => {}
        Some(_) => err("iatMode", "must be \"0\", \"1\" or \"2\"".into()),
    }
    let mut numbers = HashMap::new();
    for (key, value) in options {
        if OBFS4_OPTIONS.contains(&key.as_str()) {
            continue;
        }
        let Some(&(_, min)) = HOP_OPTIONS.iter().find(|(k, _)| k == key) else {
            let known: Vec<&str> = OBFS4_OPTIONS
                .iter()
                .copied()
                .chain(
                    hopping
                        .then_some(HOP_OPTIONS.iter().map(|(k, _)| *k))
                        .into_iter()
                        .flatten(),
                )
                .collect();
            err(
                key,
                format!("is not an option of {kind} bridges ({})", known.join(", ")),
            );
            continue;
        };
        if !hopping {
            err(
                key,
                "is a port-hopping setting: only obfs4-hop bridges have it".into(),
            );
            continue;
        }
        let max = if key.ends_with("_port") {
            65535
        } else {
            i64::from(u32::MAX)
        };
        match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => {
                numbers.insert(key.as_str(), n);
            }
            _ => err(key, format!("must be a whole number in {min}-{max}")),
        }
    }
    if let (Some(min), Some(max)) = (numbers.get("min_hop_port"), numbers.get("max_hop_port"))
        && min > max
    {
        err("min_hop_port", format!("{min} is above max_hop_port {max}"));
    } else if let (Some(min), Some(max), Some(count)) = (
        numbers.get("min_hop_port"),
        numbers.get("max_hop_port"),
        numbers.get("port_count"),
    ) && *count > max - min + 1
    {
        err(
            "port_count",
            format!("{count} is more than the ports from min_hop_port to max_hop_port"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real obfs4 cert: 52 bytes, base64 without padding.
    const CERT: &str = "h8PI8ciXlSFFPgITUT6UZC1pgZPZNIse9/5HWJW8OWLh0ilfzTtoAT39uc5doA3qwkZ1bA";
    const PUBLIC: Policy = Policy {
        allow_private_addresses: false,
    };

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
        assert!(check_gateways(&[gw()], "gateways", &|l| l == "paris", &Policy::LAB).is_empty());
        let mut public = gw();
        public.ip_addr = "93.184.215.14".into();
        public.ip6_addr = "2a00:1450:4001:80b::200e".into();
        assert!(check_gateways(&[public], "gateways", &|_| true, &PUBLIC).is_empty());
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
        let errors = check_gateways(&[gw(), bad], "gateways", &|l| l == "paris", &Policy::LAB);
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
        let errors = check_gateways(&[gw(), gw()], "gateways", &|_| true, &Policy::LAB);
        assert_eq!(fields(&errors), ["gateways[1].host"]);
    }

    #[test]
    fn only_public_unicast_addresses_unless_allowed() {
        for v4 in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            let mut g = gw();
            g.ip_addr = v4.into();
            let errors = check_gateways(&[g.clone()], "gateways", &|_| true, &PUBLIC);
            assert_eq!(fields(&errors), ["gateways[0].ip_addr"], "{v4}");
            assert!(errors[0].message.contains("public"), "{}", errors[0]);
            assert!(check_gateways(&[g], "gateways", &|_| true, &Policy::LAB).is_empty());
        }
        for v6 in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "64:ff9b::1.2.3.4",
            "2001::1",
            "100::1",
        ] {
            let mut g = gw();
            g.ip_addr = "93.184.215.14".into();
            g.ip6_addr = v6.into();
            let errors = check_gateways(&[g.clone()], "gateways", &|_| true, &PUBLIC);
            assert_eq!(fields(&errors), ["gateways[0].ip6_addr"], "{v6}");
            assert!(check_gateways(&[g], "gateways", &|_| true, &Policy::LAB).is_empty());
        }
        for public in [
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
        ] {
            assert_eq!(non_public_v4(public.parse().unwrap()), None, "{public}");
        }
        for public in ["2a00:1450::1", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert_eq!(non_public_v6(public.parse().unwrap()), None, "{public}");
        }
    }

    #[test]
    fn the_count_is_capped() {
        assert_eq!(check_count(64, 64, "gateways"), None);
        let e = check_count(65, 64, "gateways").unwrap();
        assert_eq!(e.field, "gateways");
        assert!(e.message.contains("at most 64"), "{e}");
    }

    fn bridge(kind: &str, options: serde_json::Value) -> Bridge {
        Bridge {
            host: "br1".into(),
            ip_addr: "192.0.2.9".into(),
            location: "paris".into(),
            port: if kind == "obfs4" { 443 } else { 0 },
            transport: "tcp".into(),
            kind: kind.into(),
            options: options.as_object().unwrap().clone(),
            ..Default::default()
        }
    }

    fn bridge_errors(kind: &str, options: serde_json::Value) -> Vec<String> {
        check_bridges(&[bridge(kind, options)], "bridges", &|_| true, &Policy::LAB)
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn bridges_may_omit_the_port_only_when_hopping() {
        let mut b = bridge("obfs4-hop", serde_json::json!({"cert": CERT}));
        assert!(check_bridges(&[b.clone()], "bridges", &|_| true, &Policy::LAB).is_empty());
        b.kind = "obfs4".into();
        assert_eq!(
            fields(&check_bridges(
                &[b.clone()],
                "bridges",
                &|_| true,
                &Policy::LAB
            )),
            ["bridges[0].port"]
        );
        b.port = 443;
        b.options.clear();
        assert_eq!(
            fields(&check_bridges(&[b], "bridges", &|_| true, &Policy::LAB)),
            ["bridges[0].options.cert"]
        );
    }

    #[test]
    fn bridge_options_are_checked_by_type() {
        use serde_json::json;
        assert!(bridge_errors("obfs4", json!({"cert": CERT, "iatMode": "2"})).is_empty());
        let hop = json!({"cert": CERT, "iatMode": "0", "min_hop_seconds": 5, "hop_jitter": 0,
            "min_hop_port": 49152, "max_hop_port": 65535, "port_count": 100, "port_seed": 7});
        assert!(bridge_errors("obfs4-hop", hop.clone()).is_empty());

        let cases = [
            ("obfs4", json!({"cert": "abc"}), "options.cert"),
            (
                "obfs4",
                json!({"cert": format!("{CERT}==")}),
                "options.cert",
            ),
            ("obfs4", json!({"cert": &CERT[..68]}), "options.cert"),
            (
                "obfs4",
                json!({"cert": format!("{CERT}AA")}),
                "options.cert",
            ),
            ("obfs4", json!({"cert": 52}), "options.cert"),
            (
                "obfs4",
                json!({"cert": CERT, "iatMode": "3"}),
                "options.iatMode",
            ),
            (
                "obfs4",
                json!({"cert": CERT, "iatMode": 0}),
                "options.iatMode",
            ),
            (
                "obfs4",
                json!({"cert": CERT, "iatMode": "0\"><svg onload=alert(1)>"}),
                "options.iatMode",
            ),
            (
                "obfs4",
                json!({"cert": CERT, "colour": "red"}),
                "options.colour",
            ),
            (
                "obfs4",
                json!({"cert": CERT, "port_seed": 1}),
                "options.port_seed",
            ),
            (
                "obfs4-hop",
                json!({"cert": CERT, "min_hop_port": 0}),
                "options.min_hop_port",
            ),
            (
                "obfs4-hop",
                json!({"cert": CERT, "max_hop_port": 65536}),
                "options.max_hop_port",
            ),
            (
                "obfs4-hop",
                json!({"cert": CERT, "min_hop_port": 2000, "max_hop_port": 1000}),
                "options.min_hop_port",
            ),
            (
                "obfs4-hop",
                json!({"cert": CERT, "min_hop_port": 1000, "max_hop_port": 1009, "port_count": 11}),
                "options.port_count",
            ),
            (
                "obfs4-hop",
                json!({"cert": CERT, "port_count": 0}),
                "options.port_count",
            ),
            (
                "obfs4-hop",
                json!({"cert": CERT, "min_hop_seconds": 0}),
                "options.min_hop_seconds",
            ),
            (
                "obfs4-hop",
                json!({"cert": CERT, "min_hop_seconds": -5}),
                "options.min_hop_seconds",
            ),
            (
                "obfs4-hop",
                json!({"cert": CERT, "hop_jitter": 1.5}),
                "options.hop_jitter",
            ),
            (
                "obfs4-hop",
                json!({"cert": CERT, "port_seed": "42"}),
                "options.port_seed",
            ),
            (
                "obfs4-hop",
                json!({"cert": CERT, "hops": 3}),
                "options.hops",
            ),
        ];
        for (kind, options, field) in cases {
            let errors = bridge_errors(kind, options.clone());
            assert_eq!(errors, [format!("bridges[0].{field}")], "{kind} {options}");
        }
    }
}
