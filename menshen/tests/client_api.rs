//! The LEAP v5 client contract, checked field by field over real HTTP, on
//! every store backend.

mod common;

use std::time::Duration;

use common::{Backend, CONTRACT_FILE, TestServer, backends, get_json};
use serde_json::{Value, json};

/// The hosts of a list, sorted: these tests are about what is listed; the
/// order has tests of its own (tests/selection.rs).
fn hosts(list: &Value) -> Vec<&str> {
    let mut hosts: Vec<&str> = list
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| item["host"].as_str().expect("host is a string"))
        .collect();
    hosts.sort();
    hosts
}

/// A list sorted by host.
fn by_host(mut list: Value) -> Value {
    list.as_array_mut()
        .expect("a JSON array")
        .sort_by(|a, b| a["host"].as_str().cmp(&b["host"].as_str()));
    list
}

async fn content_type(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn provider_json_follows_the_contract() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let mut provider = get_json(&server.url("/provider.json"), 200).await;
        // SHA-256 of the CA handed to clients as `SHA256: <hex>` (checked
        // against the certificate itself in tests/openvpn.rs).
        let fingerprint = provider
            .as_object_mut()
            .unwrap()
            .remove("ca_cert_fingerprint")
            .expect("ca_cert_fingerprint");
        let fingerprint = fingerprint.as_str().unwrap();
        let hex = fingerprint.strip_prefix("SHA256: ").expect(fingerprint);
        assert_eq!(hex.len(), 64);
        assert!(hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_eq!(
            provider,
            json!({
                "api_uri": "https://api.vpn.test:4430",
                "api_version": "5",
                "api_versions": ["3", "5"],
                "languages": ["en", "de"],
                "services": ["openvpn"],
                "stun_servers": [],
                "ask_for_donations": true,
                "ca_cert_uri": "https://vpn.test/ca.crt",
                "country_code_lookup_url": "https://vpn.test/geo",
                "default_language": "en",
                "description": {"en": "For tests."},
                "domain": "vpn.test",
                "donate_period": "30",
                "donate_url": "https://vpn.test/donate",
                "info_url": "https://vpn.test/info",
                "motd_url": "https://vpn.test/motd",
                "name": {"de": "Test-VPN", "en": "Test VPN"},
                "service": {"allow_anonymous": true},
                "tos_url": "https://vpn.test/tos",
            }),
            "{}",
            backend.name()
        );
        assert!(
            content_type(&server.url("/provider.json"))
                .await
                .starts_with("application/json")
        );
    }
}

/// Every optional field of the provider description set, with
/// `donate_period` written as a number the way operators do.
const EVERY_PROVIDER_FIELD: &str = r#"
[provider]
domain = "vpn.test"
api_uri = "https://api.vpn.test:4430"
name = { en = "Test VPN", de = "Test-VPN" }
description = { en = "For tests.", de = "Zum Testen." }
languages = ["en", "de"]
default_language = "de"
services = ["openvpn"]
stun_servers = ["stun.vpn.test:3478", "stun2.vpn.test:3478"]
info_url = "https://vpn.test/info"
tos_url = "https://vpn.test/tos"
motd_url = "https://vpn.test/motd"
donate_url = "https://vpn.test/donate"
donate_period = 7
ask_for_donations = true
country_code_lookup_url = "https://vpn.test/geo"
ca_cert_uri = "https://vpn.test/ca.crt"
allow_anonymous = true
allow_registration = true
"#;

#[tokio::test]
async fn a_provider_file_with_every_optional_field_is_served_as_clients_read_it() {
    for backend in backends().await {
        let server = TestServer::start(&backend, EVERY_PROVIDER_FIELD).await;
        let mut provider = get_json(&server.url("/provider.json"), 200).await;
        let pin = provider
            .as_object_mut()
            .unwrap()
            .remove("ca_cert_fingerprint")
            .expect("ca_cert_fingerprint");
        assert!(pin.as_str().unwrap().starts_with("SHA256: "), "{pin}");
        assert_eq!(
            provider,
            json!({
                "api_uri": "https://api.vpn.test:4430",
                "api_version": "5",
                "api_versions": ["3", "5"],
                "languages": ["en", "de"],
                "services": ["openvpn"],
                "stun_servers": ["stun.vpn.test:3478", "stun2.vpn.test:3478"],
                "ask_for_donations": true,
                "ca_cert_uri": "https://vpn.test/ca.crt",
                "country_code_lookup_url": "https://vpn.test/geo",
                "default_language": "de",
                "description": {"de": "Zum Testen.", "en": "For tests."},
                "domain": "vpn.test",
                "donate_period": "7",
                "donate_url": "https://vpn.test/donate",
                "info_url": "https://vpn.test/info",
                "motd_url": "https://vpn.test/motd",
                "name": {"de": "Test-VPN", "en": "Test VPN"},
                "service": {"allow_anonymous": true, "allow_registration": true},
                "tos_url": "https://vpn.test/tos",
            }),
            "{}",
            backend.name()
        );
    }
}

/// The Android client cuts `ca_cert_fingerprint` at its `:` and takes the
/// two halves as algorithm and hash; the Go client (bitmask-core) rejects
/// the whole description when a field its model declares `string` is a
/// JSON number. Both read what menshen serves.
#[tokio::test]
async fn android_and_bitmask_core_parse_the_provider_description() {
    use menshen_e2e::clients::{android_ca_pin, bitmask_core_ca_pin, go_string_field};
    for backend in backends().await {
        let server = TestServer::start(&backend, EVERY_PROVIDER_FIELD).await;
        let provider = get_json(&server.url("/provider.json"), 200).await;
        let pin = provider["ca_cert_fingerprint"].as_str().unwrap();
        let (algorithm, hash) = android_ca_pin(pin).expect("Android parses the pin");
        assert_eq!(algorithm, "SHA256");
        assert_eq!(hash.len(), 64);
        assert_eq!(bitmask_core_ca_pin(pin), hash);
        // The string fields of the Go client's Provider model.
        for field in [
            "api_uri",
            "api_version",
            "ca_cert_fingerprint",
            "ca_cert_uri",
            "country_code_lookup_url",
            "default_language",
            "domain",
            "donate_period",
            "donate_url",
            "info_url",
            "motd_url",
            "tos_url",
        ] {
            let value = go_string_field(&provider, field).unwrap_or_else(|e| panic!("{e}"));
            assert!(value.is_some(), "{field} is set in the file");
        }
        assert_eq!(provider["donate_period"], "7");
    }
}

#[tokio::test]
async fn always_arrays_are_present_even_when_empty() {
    let minimal = "[provider]\ndomain = \"x.test\"\napi_uri = \"https://x.test\"\nlanguages = []\nservices = []\n";
    for backend in backends().await {
        let server = TestServer::start(&backend, minimal).await;
        let provider = get_json(&server.url("/provider.json"), 200).await;
        for key in ["api_versions", "languages", "services", "stun_servers"] {
            assert!(provider[key].is_array(), "{key} in {provider}");
        }
        assert_eq!(provider["api_versions"], json!(["3", "5"]));
        assert_eq!(provider["languages"], json!([]));
        assert_eq!(provider["stun_servers"], json!([]));
        // No locations, gateways or bridges: empty arrays, not null.
        assert_eq!(
            get_json(&server.url("/api/5/gateways"), 200).await,
            json!([])
        );
        assert_eq!(
            get_json(&server.url("/api/5/bridges"), 200).await,
            json!([])
        );
        let service = get_json(&server.url("/api/5/service"), 200).await;
        assert_eq!(
            service,
            json!({"auth": "anonymous", "serial": 3, "version": 3})
        );
    }
}

#[tokio::test]
async fn service_follows_the_contract() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let service = get_json(&server.url("/api/5/service"), 200).await;
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
}

#[tokio::test]
async fn gateways_follow_the_contract() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let gateways = by_host(get_json(&server.url("/api/5/gateways"), 200).await);
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
        let experimental =
            by_host(get_json(&server.url("/api/5/gateways?experimental=true"), 200).await);
        assert_eq!(hosts(&experimental), ["gw1-tcp.ams", "gw1.ams", "gw1.mtl"]);
        assert_eq!(experimental[2]["experimental"], true);
    }
}

#[tokio::test]
async fn bridges_follow_the_contract() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let bridges = by_host(get_json(&server.url("/api/5/bridges"), 200).await);
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
}

#[tokio::test]
async fn filters_narrow_the_lists() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let gw = |q: &str| server.url(&format!("/api/5/gateways?{q}"));
        let br = |q: &str| server.url(&format!("/api/5/bridges?{q}"));
        let cases = [
            (gw("tr=tcp"), vec!["gw1-tcp.ams"]),
            (gw("tr=UDP"), vec!["gw1.ams"]),
            (gw("port=1194"), vec!["gw1.ams"]),
            (gw("port=443&tr=tcp"), vec!["gw1-tcp.ams"]),
            (gw("port=443&tr=udp"), vec![]),
            (gw("loc=AmSterdam"), vec!["gw1-tcp.ams", "gw1.ams"]),
            (gw("loc=montreal"), vec![]),
            (gw("loc=montreal&experimental=1"), vec!["gw1.mtl"]),
            (gw("cc=de&loc=&port=&tr="), vec!["gw1-tcp.ams", "gw1.ams"]),
            (gw("cc=NL"), vec!["gw1-tcp.ams", "gw1.ams"]),
            (br("type=obfs4-hop"), vec!["br2.ams"]),
            (br("type=OBFS4"), vec!["br1.ams"]),
            (br("tr=kcp"), vec!["br2.ams"]),
            (br("tr=udp"), vec![]),
            (br("port=443"), vec!["br1.ams"]),
            (br("loc=amsterdam&type=obfs4"), vec!["br1.ams"]),
        ];
        for (url, expected) in cases {
            let list = get_json(&url, 200).await;
            assert_eq!(hosts(&list), expected, "{url} on {}", backend.name());
        }
    }
}

#[tokio::test]
async fn bad_requests_get_json_errors_naming_the_parameter() {
    let backend = Backend::Sqlite(tempfile::tempdir().unwrap());
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    for (path, parameter) in [
        ("/api/5/gateways?tr=carrier-pigeon", "tr"),
        ("/api/5/gateways?port=99999", "port"),
        ("/api/5/gateways?port=http", "port"),
        ("/api/5/gateways?cc=NOTACOUNTRY", "cc"),
        ("/api/5/gateways?cc=ZZ", "cc"),
        ("/api/5/gateways?loc=atlantis", "loc"),
        ("/api/5/gateways?tr=kcp", "tr"),
        ("/api/5/gateways?tr=tcp&tr=udp", "tr"),
        ("/api/5/bridges?type=carrier-pigeon", "type"),
        ("/api/5/bridges?tr=carrier-pigeon", "tr"),
        ("/api/5/bridges?experimental=perhaps", "experimental"),
    ] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_parameter", "{path}");
        assert_eq!(body["parameter"], parameter, "{path}");
        assert!(
            body["message"].as_str().unwrap().contains(parameter),
            "{path}: {body}"
        );
    }

    let body = get_json(&server.url("/api/5/nothing-here"), 404).await;
    assert_eq!(body["error"], "not_found");
    let response = reqwest::Client::new()
        .delete(server.url("/api/5/gateways"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
}

#[tokio::test]
async fn etags_answer_if_none_match_with_304() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let client = reqwest::Client::new();
        for path in [
            "/provider.json",
            "/api/5/service",
            "/api/5/gateways",
            "/api/5/gateways?tr=udp",
            "/api/5/bridges",
        ] {
            let first = client.get(server.url(path)).send().await.unwrap();
            assert_eq!(first.status(), 200);
            let etag = first.headers()["etag"].to_str().unwrap().to_owned();
            assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

            let again = client
                .get(server.url(path))
                .header("if-none-match", &etag)
                .send()
                .await
                .unwrap();
            assert_eq!(again.status(), 304, "{path}");
            assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
            assert!(again.bytes().await.unwrap().is_empty());

            let other = client
                .get(server.url(path))
                .header("if-none-match", "\"something-else\"")
                .send()
                .await
                .unwrap();
            assert_eq!(other.status(), 200, "{path}");
        }
        // Different bytes, different tags.
        let all = client
            .get(server.url("/api/5/gateways"))
            .send()
            .await
            .unwrap();
        let udp = client
            .get(server.url("/api/5/gateways?tr=udp"))
            .send()
            .await
            .unwrap();
        assert_ne!(all.headers()["etag"], udp.headers()["etag"]);
    }
}

#[tokio::test]
async fn a_changed_inventory_changes_the_etag() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let client = reqwest::Client::new();
        let before = client
            .get(server.url("/api/5/gateways"))
            .send()
            .await
            .unwrap();
        let etag = before.headers()["etag"].to_str().unwrap().to_owned();

        // Another writer (as another replica would) changes the store.
        let store = menshen::store::Store::connect(&backend.engine())
            .await
            .unwrap();
        let changed = CONTRACT_FILE.replace("load = 0.25", "load = 0.5");
        let file = menshen::config::file::ProviderFile::parse(&changed, std::path::Path::new("x"))
            .unwrap();
        store.apply_provider_file(&file.rows()).await.unwrap();
        // Postgres notifies other replicas; SQLite relies on the periodic
        // reload (30 s by default), so only Postgres is held to a deadline here.
        if backend.name() == "postgres" {
            let mut seen = false;
            for _ in 0..100 {
                let r = client
                    .get(server.url("/api/5/gateways"))
                    .header("if-none-match", &etag)
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    let list = by_host(r.json().await.unwrap());
                    assert_eq!(list[1]["load"], 0.5);
                    seen = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(seen, "the change never reached the other replica");
        }
        store.close().await;
    }
}

#[tokio::test]
async fn the_periodic_reload_picks_up_changes_made_elsewhere() {
    for backend in backends().await {
        let path = backend.data_dir().join("provider.toml");
        std::fs::write(&path, CONTRACT_FILE).unwrap();
        let mut settings = backend.settings();
        settings.provider_file = Some(path);
        settings.reload_interval = Duration::from_millis(200);
        let server = TestServer::start_with(settings).await;

        let store = menshen::store::Store::connect(&backend.engine())
            .await
            .unwrap();
        let changed = CONTRACT_FILE.replace("load = 0.25", "load = 0.75");
        let file = menshen::config::file::ProviderFile::parse(&changed, std::path::Path::new("x"))
            .unwrap();
        store.apply_provider_file(&file.rows()).await.unwrap();
        let mut load = Value::Null;
        for _ in 0..100 {
            let list = get_json(&server.url("/api/5/gateways?tr=udp"), 200).await;
            load = list[0]["load"].clone();
            if load == 0.75 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(load, 0.75, "{}", backend.name());
        store.close().await;
    }
}

#[tokio::test]
async fn health_and_readiness() {
    for backend in backends().await {
        let mut settings = backend.settings();
        let path = backend.data_dir().join("provider.toml");
        std::fs::write(&path, CONTRACT_FILE).unwrap();
        settings.provider_file = Some(path);
        settings.store_check_interval = Duration::from_millis(200);
        let server = TestServer::start_with(settings).await;
        assert_eq!(
            get_json(&server.url("/healthz"), 200).await,
            json!({"status": "ok", "store": backend.name(), "store_up": true})
        );
        let ready = get_json(&server.url("/readyz"), 200).await;
        assert_eq!(ready["status"], "ready");
        assert_eq!(ready["store"], backend.name());
        assert_eq!(ready["store_up"], true);
        // live gateways, experimental and invite-only included
        assert_eq!(ready["gateways"], 4);
        assert!(metrics(&server).await.contains("menshen_store_up 1\n"));

        if let Backend::Postgres(db, _) = &backend {
            // Cut the database off: still ready and serving clients from
            // the snapshot, at once; /healthz and the metrics say the store
            // is down.
            let name = db.url.rsplit('/').next().unwrap().to_owned();
            menshen_e2e::set_connections_allowed(&name, false).await;
            let health = wait_for_health(&server, false).await;
            let error = health["store_error"].as_str().unwrap_or_default();
            assert!(!error.is_empty(), "{health}");
            assert!(!error.contains("postgres://"), "{health}");
            let started = std::time::Instant::now();
            let ready = get_json(&server.url("/readyz"), 200).await;
            assert!(started.elapsed() < Duration::from_millis(500));
            assert_eq!(
                (&ready["status"], &ready["store_up"]),
                (&json!("ready"), &json!(false))
            );
            let list = get_json(&server.url("/api/5/gateways"), 200).await;
            assert_eq!(hosts(&list).len(), 2);
            assert!(metrics(&server).await.contains("menshen_store_up 0\n"));

            menshen_e2e::set_connections_allowed(&name, true).await;
            let health = wait_for_health(&server, true).await;
            assert_eq!(health.get("store_error"), None, "{health}");
            assert!(metrics(&server).await.contains("menshen_store_up 1\n"));
        }
        server.stop().await.unwrap();
    }
}

async fn metrics(server: &TestServer) -> String {
    reqwest::get(format!("{}/metrics", server.metrics_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `/healthz` once it says the store is `up` (or not), within 10 s.
async fn wait_for_health(server: &TestServer, up: bool) -> Value {
    let mut health = Value::Null;
    for _ in 0..200 {
        health = get_json(&server.url("/healthz"), 200).await;
        if health["store_up"] == up {
            return health;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the store never showed as up={up}: {health}");
}
