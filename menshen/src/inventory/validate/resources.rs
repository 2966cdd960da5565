//! The rules for gateways and bridges: their common fields, and the
//! options of obfs4 bridges.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use menshen_model::vocab::hop_option_range;
use menshen_model::{Bridge, BridgeType, Gateway};

use super::{
    BRIDGE_TRANSPORTS, BRIDGE_TYPES, FieldError, GATEWAY_TRANSPORTS, GATEWAY_TYPES, HOP_OPTIONS,
    MAX_HOST_LEN, OBFS4_CERT_BYTES, OBFS4_OPTIONS, Policy, bucket_problem, non_public_v4,
    non_public_v6,
};

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
    if let Some(problem) = bucket_problem(r.bucket) {
        err("bucket", problem);
    }
}

/// The [`Common`] fields of a gateway or bridge (both name them alike),
/// and whether it must have a port.
macro_rules! common {
    ($r:expr, $port_required:expr) => {
        Common {
            host: &$r.host,
            ip_addr: &$r.ip_addr,
            ip6_addr: &$r.ip6_addr,
            location: &$r.location,
            port: $r.port,
            transport: &$r.transport,
            kind: &$r.kind,
            load: $r.load,
            bucket: &$r.bucket,
            port_required: $port_required,
        }
    };
}

/// Checks a list of gateways; `prefix` names the list (e.g. `gateways`).
pub fn check_gateways(
    gateways: &[Gateway],
    prefix: &str,
    location_exists: &dyn Fn(&str) -> bool,
    policy: &Policy,
) -> Vec<FieldError> {
    let rules = Rules {
        transports: GATEWAY_TRANSPORTS,
        kinds: GATEWAY_TYPES,
        location_exists,
        policy,
    };
    check_list(gateways, prefix, &rules, |g, _, _| common!(g, true))
}

/// Checks a list of bridges; `prefix` names the list (e.g. `bridges`).
pub fn check_bridges(
    bridges: &[Bridge],
    prefix: &str,
    location_exists: &dyn Fn(&str) -> bool,
    policy: &Policy,
) -> Vec<FieldError> {
    let rules = Rules {
        transports: BRIDGE_TRANSPORTS,
        kinds: BRIDGE_TYPES,
        location_exists,
        policy,
    };
    check_list(bridges, prefix, &rules, |b, p, errors| {
        if BRIDGE_TYPES.contains(&b.kind.as_str()) {
            check_options(&b.options, &b.kind, p, errors);
        }
        // Hopping bridges choose their ports; the others listen on one.
        common!(b, b.kind != BridgeType::Obfs4Hop.as_str())
    })
}

/// What a list's items are checked against.
struct Rules<'a> {
    transports: &'a [&'a str],
    kinds: &'a [&'a str],
    location_exists: &'a dyn Fn(&str) -> bool,
    policy: &'a Policy,
}

/// Checks every item of a list by its common fields (which `fields` gives,
/// after checking what only its kind has), and that no host appears twice.
fn check_list<'t, T>(
    items: &'t [T],
    prefix: &str,
    rules: &Rules<'_>,
    fields: impl Fn(&'t T, &str, &mut Vec<FieldError>) -> Common<'t>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{prefix}[{i}].");
        let mut own = Vec::new();
        let common = fields(item, &p, &mut own);
        check_common(
            &common,
            &p,
            rules.transports,
            rules.kinds,
            rules.location_exists,
            rules.policy,
            &mut errors,
        );
        errors.append(&mut own);
        if !common.host.is_empty() && !seen.insert(common.host) {
            errors.push(FieldError::new(
                format!("{p}host"),
                format!("{:?} appears more than once", common.host),
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
    let hopping = kind == BridgeType::Obfs4Hop.as_str();
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
        if !HOP_OPTIONS.contains(&key.as_str()) {
            let known: Vec<&str> = OBFS4_OPTIONS
                .iter()
                .copied()
                .chain(
                    hopping
                        .then_some(HOP_OPTIONS.iter().copied())
                        .into_iter()
                        .flatten(),
                )
                .collect();
            err(
                key,
                format!("is not an option of {kind} bridges ({})", known.join(", ")),
            );
            continue;
        }
        if !hopping {
            err(
                key,
                "is a port-hopping setting: only obfs4-hop bridges have it".into(),
            );
            continue;
        }
        let range = hop_option_range(key);
        match value.as_i64() {
            Some(n) if range.contains(&n) => {
                numbers.insert(key.as_str(), n);
            }
            _ => err(
                key,
                format!(
                    "must be a whole number in {}-{}",
                    range.start(),
                    range.end()
                ),
            ),
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
