use menshen_model::{Bridge, Gateway};

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

#[test]
fn bucket_names() {
    assert!(valid_bucket("friends"));
    assert!(valid_bucket("Team-β_2"));
    assert!(valid_bucket(&"b".repeat(64)));
    assert!(!valid_bucket(""));
    assert!(!valid_bucket(&"b".repeat(65)));
    assert!(!valid_bucket("two words"));
    assert!(!valid_bucket("tab\there"));
    assert!(!valid_bucket("nl\n"));
    assert!(!valid_bucket("nul\0"));
}

#[test]
fn locations_take_the_hemisphere_from_lat() {
    let row = check_location(&LocationInput {
        label: "sydney".into(),
        display_name: "Sydney".into(),
        country_code: "au".into(),
        lat: Some(-33.9),
        lon: Some(151.2),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        (row.hemisphere.as_str(), row.country_code.as_str()),
        ("S", "AU")
    );
    let errors = check_location(&LocationInput {
        label: "bad label".into(),
        ..Default::default()
    })
    .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["label", "display_name", "country_code"]);
}
