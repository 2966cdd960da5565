//! provider.json as the clients read it.

use serde_json::{Value, json};

use super::content_type;
use crate::common::{Backend, CONTRACT_FILE, TestServer, on_each_backend};

on_each_backend!(
    provider_json_follows_the_contract,
    a_provider_file_with_every_optional_field_is_served_as_clients_read_it,
    android_and_bitmask_core_parse_the_provider_description,
    always_arrays_are_present_even_when_empty,
);

/// provider.json without its `ca_cert_fingerprint`, and that fingerprint.
async fn provider_and_fingerprint(server: &TestServer) -> (Value, Value) {
    let mut provider = server.json("/provider.json").await;
    let fingerprint = provider
        .as_object_mut()
        .unwrap()
        .remove("ca_cert_fingerprint")
        .expect("ca_cert_fingerprint");
    (provider, fingerprint)
}

/// provider.json for the contract file, without its fingerprint.
fn contract_provider() -> Value {
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
    })
}

async fn provider_json_follows_the_contract(backend: Backend) {
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    let (provider, fingerprint) = provider_and_fingerprint(&server).await;
    // SHA-256 of the CA handed to clients as `SHA256: <hex>` (checked
    // against the certificate itself in tests/openvpn.rs).
    let fingerprint = fingerprint.as_str().unwrap();
    let hex = fingerprint.strip_prefix("SHA256: ").expect(fingerprint);
    assert_eq!(hex.len(), 64);
    assert!(hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    assert_eq!(provider, contract_provider(), "{}", backend.name());
    assert!(
        content_type(&server.url("/provider.json"))
            .await
            .starts_with("application/json")
    );
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

async fn a_provider_file_with_every_optional_field_is_served_as_clients_read_it(backend: Backend) {
    let server = TestServer::start(&backend, EVERY_PROVIDER_FIELD).await;
    let (provider, pin) = provider_and_fingerprint(&server).await;
    assert!(pin.as_str().unwrap().starts_with("SHA256: "), "{pin}");
    // The contract's description but for what this file sets besides.
    let mut expected = contract_provider();
    for (key, value) in [
        (
            "stun_servers",
            json!(["stun.vpn.test:3478", "stun2.vpn.test:3478"]),
        ),
        ("default_language", json!("de")),
        (
            "description",
            json!({"de": "Zum Testen.", "en": "For tests."}),
        ),
        ("donate_period", json!("7")),
        (
            "service",
            json!({"allow_anonymous": true, "allow_registration": true}),
        ),
    ] {
        expected[key] = value;
    }
    assert_eq!(provider, expected, "{}", backend.name());
}

/// The Android client cuts `ca_cert_fingerprint` at its `:` and takes the
/// two halves as algorithm and hash; the Go client (bitmask-core) rejects
/// the whole description when a field its model declares `string` is a
/// JSON number. Both read what menshen serves.
async fn android_and_bitmask_core_parse_the_provider_description(backend: Backend) {
    use menshen_e2e::clients::{android_ca_pin, bitmask_core_ca_pin, go_string_field};
    let server = TestServer::start(&backend, EVERY_PROVIDER_FIELD).await;
    let provider = server.json("/provider.json").await;
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

async fn always_arrays_are_present_even_when_empty(backend: Backend) {
    let minimal = "[provider]\ndomain = \"x.test\"\napi_uri = \"https://x.test\"\nlanguages = []\nservices = []\n";
    let server = TestServer::start(&backend, minimal).await;
    let provider = server.json("/provider.json").await;
    for key in ["api_versions", "languages", "services", "stun_servers"] {
        assert!(provider[key].is_array(), "{key} in {provider}");
    }
    assert_eq!(provider["api_versions"], json!(["3", "5"]));
    assert_eq!(provider["languages"], json!([]));
    assert_eq!(provider["stun_servers"], json!([]));
    // No locations, gateways or bridges: empty arrays, not null.
    assert_eq!(server.json("/api/5/gateways").await, json!([]));
    assert_eq!(server.json("/api/5/bridges").await, json!([]));
    let service = server.json("/api/5/service").await;
    assert_eq!(
        service,
        json!({"auth": "anonymous", "serial": 3, "version": 3})
    );
}
