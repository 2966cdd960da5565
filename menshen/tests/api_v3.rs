//! The LEAP API v3 for older clients, served from the same inventory as
//! v5, on every store backend: the document as the clients decode it, its
//! import back into a provider file, and the v3 certificate.

mod common;

use std::path::Path;

use common::{
    CONTRACT_FILE, TestServer, assert_content_type, assert_says, backends, get_json, sorted_hosts,
    strings_of,
};
use menshen::config::file::ProviderFile;
use menshen::config::import_v3::{ImportOptions, import};
use menshen_e2e::clients::{android_v3_cert, desktop_eip_service_v3, desktop_v3_cert};
use menshen_e2e::http::get_text;
use serde_json::{Value, json};

async fn post_text(url: &str) -> (u16, String, String) {
    let response = reqwest::Client::new().post(url).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn provider_json_lists_v3_and_keeps_api_version_5() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let provider = get_json(&server.url("/provider.json"), 200).await;
        // Current Android picks the highest it speaks from api_versions;
        // bitmask-core and old Android read api_version, which stays 5.
        assert_eq!(provider["api_versions"], json!(["3", "5"]));
        assert_eq!(provider["api_version"], "5");
    }
}

#[tokio::test]
async fn with_v3_off_nothing_of_it_is_served() {
    for backend in backends().await {
        let path = backend.data_dir().join("provider.toml");
        std::fs::write(&path, CONTRACT_FILE).unwrap();
        let mut settings = backend.settings();
        settings.provider_file = Some(path);
        settings.api_v3 = false;
        let server = TestServer::start_with(settings).await;
        let provider = get_json(&server.url("/provider.json"), 200).await;
        assert_eq!(provider["api_versions"], json!(["5"]));
        for path in [
            "/3/config/eip-service.json",
            "/5/config/eip-service.json",
            "/3/cert",
            "/5/cert",
        ] {
            let body = get_json(&server.url(path), 404).await;
            assert_says(&body, "v3");
        }
    }
}

#[tokio::test]
async fn the_eip_service_is_what_v3_clients_decode() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let doc = get_json(&server.url("/3/config/eip-service.json"), 200).await;
        desktop_eip_service_v3(&doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
        assert_eq!(doc["version"], 3);
        assert_eq!(doc["serial"], 3);
        assert_eq!(doc["openvpn_configuration"]["dev"], "tun");
        assert_eq!(
            doc["locations"]["amsterdam"],
            json!({"country_code": "NL", "hemisphere": "N", "name": "Amsterdam", "timezone": "+1"})
        );
        assert_eq!(doc["locations"]["montreal"]["timezone"], "-5");
        // No timezone and no coordinates: "0", which the desktop client reads.
        assert_eq!(doc["locations"]["nowhere"]["timezone"], "0");

        // Only what an anonymous v5 client is listed: no experimental,
        // invite-only or unhealthy hosts.
        assert_eq!(
            sorted_hosts(&doc["gateways"]),
            ["br1.ams", "br2.ams", "gw1-tcp.ams", "gw1.ams"]
        );
        let by_host = |host: &str| -> Value {
            doc["gateways"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["host"] == host)
                .cloned()
                .unwrap()
        };
        assert_eq!(
            by_host("gw1.ams"),
            json!({
                "host": "gw1.ams",
                "ip_address": "192.0.2.1",
                "ip_address6": "2001:db8::1",
                "location": "amsterdam",
                "capabilities": {
                    "adblock": false, "filter_dns": false, "limited": false,
                    "transport": [{"type": "openvpn", "protocols": ["udp"], "ports": ["1194"]}]
                }
            })
        );
        assert_eq!(
            by_host("br1.ams")["capabilities"]["transport"],
            json!([{"type": "obfs4", "protocols": ["tcp"], "ports": ["443"],
                    "options": {"cert": "5eN3Pz88ukxJND/36TgCKMeeqTTSCcyJ/iU4bJsc8xZm8DRCO19h2g1QCFnAwc/642T+ug", "iatMode": "0"}}])
        );
        let hop = &by_host("br2.ams")["capabilities"]["transport"][0];
        assert_eq!(hop["type"], "obfs4-hop");
        assert_eq!(hop["protocols"], json!(["kcp"]));
        assert_eq!(hop["ports"], json!([]));
        assert_eq!(hop["options"]["port_seed"], "42");

        // The same at the path old Android builds from api_version, and
        // by POST as the desktop client asks.
        let again = get_json(&server.url("/5/config/eip-service.json"), 200).await;
        assert_eq!(again["gateways"].as_array().unwrap().len(), 4);
        let (status, content_type, text) =
            post_text(&server.url("/3/config/eip-service.json")).await;
        assert_eq!(status, 200);
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let posted: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(posted["locations"], doc["locations"]);
    }
}

#[tokio::test]
async fn v3_is_filtered_ordered_and_tagged_like_v5() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let only_tcp = get_json(&server.url("/3/config/eip-service.json?tr=tcp"), 200).await;
        let hosts = strings_of(&only_tcp["gateways"], "host");
        // gw1-tcp.ams (OpenVPN over TCP) and br1.ams (obfs4 over TCP).
        assert_eq!(hosts, ["gw1-tcp.ams", "br1.ams"]);
        let bad = get_json(&server.url("/3/config/eip-service.json?port=99999"), 400).await;
        assert_eq!(bad["parameter"], "port");
        // The overloaded gateway comes after the one with room, as in v5.
        let doc = get_json(&server.url("/3/config/eip-service.json?cc=NL"), 200).await;
        assert_eq!(doc["gateways"][0]["host"], "gw1.ams");
        // Invite-only hosts for an accepted token only: none here.
        let response = reqwest::Client::new()
            .get(server.url("/3/config/eip-service.json?cc=NL"))
            .send()
            .await
            .unwrap();
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let body = response.text().await.unwrap();
        let response = server
            .revalidate("/3/config/eip-service.json?cc=NL", &etag)
            .await;
        // The same hosts in whatever order: the same tag.
        assert_eq!(response.status(), 304, "{body}");
        for _ in 0..20 {
            let response = reqwest::get(server.url("/3/config/eip-service.json?cc=NL"))
                .await
                .unwrap();
            assert_eq!(response.headers()["etag"].to_str().unwrap(), etag);
        }
    }
}

/// `menshen import` reads what menshen serves at /3/config/eip-service.json
/// back into a provider file holding the same gateways, bridges and
/// locations as the v5 lists.
#[tokio::test]
async fn an_import_of_the_served_v3_document_gives_back_the_same_inventory() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        let served = get_text(&server.url("/3/config/eip-service.json")).await;
        let provider = get_text(&server.url("/provider.json")).await;
        let text = import(&served, Some(&provider), &ImportOptions::default()).unwrap();
        let file = ProviderFile::parse_with(
            &text,
            Path::new("imported.toml"),
            menshen::inventory::validate::Policy::LAB,
        )
        .unwrap();

        let fields = [
            "host",
            "ip_addr",
            "ip6_addr",
            "location",
            "port",
            "transport",
            "type",
        ];
        let pick = |v: &Value, with_options: bool| -> Value {
            let mut out = serde_json::Map::new();
            for f in fields {
                if let Some(x) = v.get(f) {
                    out.insert(f.into(), x.clone());
                }
            }
            if with_options {
                out.insert("options".into(), v["options"].clone());
            }
            Value::Object(out)
        };
        // The compared fields of each of `list`, sorted by host.
        let picked = |list: Vec<Value>, with_options: bool| {
            let mut list: Vec<Value> = list.iter().map(|v| pick(v, with_options)).collect();
            list.sort_by_key(|v| v["host"].as_str().unwrap().to_owned());
            list
        };
        let served_list = |list: Value| list.as_array().unwrap().clone();
        let v5_gateways = get_json(&server.url("/api/5/gateways"), 200).await;
        let v5_bridges = get_json(&server.url("/api/5/bridges"), 200).await;
        let want_gateways = picked(served_list(v5_gateways), false);
        let want_bridges = picked(served_list(v5_bridges), true);
        // Each of `items` as JSON.
        fn values<T: serde::Serialize>(items: impl Iterator<Item = T>) -> Vec<Value> {
            items
                .map(|item| serde_json::to_value(item).unwrap())
                .collect()
        }
        let gateways = values(file.gateways.iter().map(|g| g.get_ref().to_model()));
        let bridges = values(file.bridges.iter().map(|b| b.get_ref().to_model()));
        let got_gateways = picked(gateways, false);
        let got_bridges = picked(bridges, true);
        assert_eq!(got_gateways, want_gateways, "{text}");
        assert_eq!(got_bridges, want_bridges, "{text}");

        let service = get_json(&server.url("/api/5/service"), 200).await;
        for (label, location) in service["locations"].as_object().unwrap() {
            let imported = file.locations[label].get_ref();
            assert_eq!(imported.display_name, location["display_name"], "{label}");
            assert_eq!(imported.country_code, location["country_code"], "{label}");
            assert_eq!(
                imported.hemisphere,
                location["hemisphere"].as_str().unwrap_or(""),
                "{label}"
            );
            if let Some(tz) = location["timezone"].as_str() {
                let tz: i64 = tz.trim_start_matches('+').parse().unwrap();
                assert_eq!(imported.timezone, Some(tz), "{label}");
            }
        }
        assert_eq!(
            Value::Object(file.service.openvpn_configuration.get_ref().clone()),
            service["openvpn_configuration"]
        );
        let provider: Value = serde_json::from_str(&provider).unwrap();
        assert_eq!(file.provider.domain, provider["domain"]);
    }
}

#[tokio::test]
async fn the_v3_cert_is_an_rsa_key_then_the_certificate() {
    for backend in backends().await {
        let server = TestServer::start(&backend, CONTRACT_FILE).await;
        for (method, path) in [("GET", "/3/cert"), ("POST", "/3/cert"), ("GET", "/5/cert")] {
            let request = match method {
                "GET" => reqwest::Client::new().get(server.url(path)),
                _ => reqwest::Client::new().post(server.url(path)),
            };
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{method} {path}");
            assert_content_type(&response, "text/plain");
            assert_eq!(response.headers()["cache-control"], "no-store");
            let text = response.text().await.unwrap();
            let (key, cert) = desktop_v3_cert(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(
                (key.as_str(), cert.as_str()),
                ("RSA PRIVATE KEY", "CERTIFICATE")
            );
            let (key_piece, cert_piece) = android_v3_cert(&text).unwrap();
            assert!(key_piece.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
            assert!(cert_piece.starts_with("-----BEGIN CERTIFICATE-----\n"));
            // The key is the certificate's, and the certificate chains to
            // the CA whose fingerprint provider.json carries.
            let blocks = pem::parse_many(&text).unwrap();
            let rsa = aws_lc_rs::rsa::KeyPair::from_der(blocks[0].contents()).unwrap();
            let (_, x509) =
                x509_parser::parse_x509_certificate(blocks[1].contents()).expect("a certificate");
            use aws_lc_rs::signature::KeyPair as _;
            assert_eq!(
                x509.public_key().subject_public_key.data.as_ref(),
                rsa.public_key().as_ref()
            );
            let subject = x509.subject().to_string();
            assert_eq!(subject, "CN=UNLIMITED");
        }
    }
}
