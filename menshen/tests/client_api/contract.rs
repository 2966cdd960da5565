//! The service, gateways and bridges, field by field.

use serde_json::json;

use super::by_host;
use crate::common::{Backend, CONTRACT_FILE, TestServer, on_each_backend, sorted_hosts};

on_each_backend!(
    service_follows_the_contract,
    gateways_follow_the_contract,
    bridges_follow_the_contract,
);

async fn service_follows_the_contract(backend: Backend) {
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    let service = server.json("/api/5/service").await;
    assert_eq!(service["auth"], "anonymous");
    assert_eq!(service["serial"], 3);
    assert_eq!(service["version"], 3);
    assert_eq!(
        service["openvpn_configuration"],
        json!({"dev": "tun", "persist-key": true, "cipher": "AES-256-GCM", "keepalive": "10 30"})
    );
    let locations = &service["locations"];
    // lat, lon and timezone are strings; timezone a signed integer.
    assert_eq!(
        locations["amsterdam"],
        json!({
            "country_code": "NL",
            "display_name": "Amsterdam",
            "label": "amsterdam",
            "has_bridges": true,
            "healthy": true,
            "hemisphere": "N",
            "lat": "52.37",
            "lon": "4.89",
            "timezone": "+1",
        })
    );
    // Only an experimental and an invite-only gateway: not healthy for
    // everyone, so the flag is left out.
    assert_eq!(
        locations["montreal"],
        json!({
            "country_code": "CA",
            "display_name": "Montreal",
            "label": "montreal",
            "hemisphere": "N",
            "region": "North America",
            "lat": "45.5",
            "lon": "-73.57",
            "timezone": "-5",
        })
    );
    assert_eq!(locations["santiago"]["hemisphere"], "S");
    assert_eq!(locations["santiago"]["timezone"], "-4");
    assert!(locations["santiago"].get("healthy").is_none());
    assert_eq!(
        locations["nowhere"],
        json!({"country_code": "IS", "display_name": "Empty location", "label": "nowhere"})
    );
    for (_, location) in locations.as_object().unwrap() {
        if let Some(tz) = location.get("timezone") {
            let tz = tz.as_str().expect("timezone is a string");
            tz.trim_start_matches('+')
                .parse::<i32>()
                .expect("parses as an integer");
        }
    }
}

async fn gateways_follow_the_contract(backend: Backend) {
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    let gateways = by_host(server.json("/api/5/gateways").await);
    // Unhealthy, experimental and invite-only gateways are not listed.
    assert_eq!(
        gateways,
        json!([
            {
                "host": "gw1-tcp.ams",
                "ip_addr": "192.0.2.1",
                "location": "amsterdam",
                "port": 443,
                "transport": "tcp",
                "type": "openvpn",
                "load": 0.95,
                "overloaded": true,
                "healthy": true,
            },
            {
                "host": "gw1.ams",
                "ip_addr": "192.0.2.1",
                "ip6_addr": "2001:db8::1",
                "location": "amsterdam",
                "port": 1194,
                "transport": "udp",
                "type": "openvpn",
                "load": 0.25,
                "healthy": true,
            },
        ]),
        "{}",
        backend.name()
    );
    assert!(gateways[0]["port"].is_i64());
    assert!(gateways[0]["load"].is_f64());
    let experimental = by_host(server.json("/api/5/gateways?experimental=true").await);
    assert_eq!(
        sorted_hosts(&experimental),
        ["gw1-tcp.ams", "gw1.ams", "gw1.mtl"]
    );
    assert_eq!(experimental[2]["experimental"], true);
}

async fn bridges_follow_the_contract(backend: Backend) {
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    let bridges = by_host(server.json("/api/5/bridges").await);
    assert_eq!(
        bridges,
        json!([
            {
                "host": "br1.ams",
                "ip_addr": "192.0.2.9",
                "location": "amsterdam",
                "port": 443,
                "transport": "tcp",
                "type": "obfs4",
                "healthy": true,
                "options": {"cert": "5eN3Pz88ukxJND/36TgCKMeeqTTSCcyJ/iU4bJsc8xZm8DRCO19h2g1QCFnAwc/642T+ug", "iatMode": "0"},
            },
            {
                "host": "br2.ams",
                "ip_addr": "192.0.2.10",
                "location": "amsterdam",
                "transport": "kcp",
                "type": "obfs4-hop",
                "healthy": true,
                "options": {
                    "cert": "xD89PpLw7OTaHuRkuPQdwN2OzZ+A4hdx0D5X4MmHzf/m+OPxW7PvqUmEGN2tDVY1TuCzaw",
                    "iatMode": "1",
                    "min_hop_seconds": 20,
                    "min_hop_port": 49152,
                    "max_hop_port": 65535,
                    "hop_jitter": 5,
                    "port_count": 100,
                    "port_seed": 42,
                },
            },
        ]),
        "{}",
        backend.name()
    );
}
