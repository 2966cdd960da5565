//! Real OpenVPN 2.6 clients connect to a real OpenVPN server with nothing
//! but the configuration `menshen` served them.
//!
//! Needs `openvpn` and `openssl` (Debian packages of those names) and a TUN
//! device (`/dev/net/tun`, CAP_NET_ADMIN): missing any of them fails the
//! tests with a message saying so, never skips them.

use std::path::{Path, PathBuf};

use menshen_e2e::clients::bitmask_core_ca_pin;
use menshen_e2e::peers::{
    Gateway, client, free_udp_port, openssl, openssl_ca, openssl_fingerprint, path_str,
    require_real_peers,
};
use menshen_e2e::{Menshen, menshen_cli, menshen_refusing_to_serve};

/// The example provider file with one gateway instead of its own: the
/// OpenVPN server at 127.0.0.1:`port`.
fn provider_file(dir: &Path, port: u16) -> PathBuf {
    let head = menshen_e2e::provider::example_without_resources();
    let path = dir.join("provider.toml");
    std::fs::write(
        &path,
        format!(
            "{head}[[gateway]]\nhost = \"gw.test\"\nip_addr = \"127.0.0.1\"\n\
             location = \"amsterdam\"\nport = {port}\ntransport = \"udp\"\n"
        ),
    )
    .unwrap();
    path
}

async fn fetch(url: &str) -> String {
    let response = reqwest::get(url).await.expect("request");
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

/// Fetches `/api/5/openvpn/config` from `menshen` into `dir/NAME.ovpn`.
async fn fetch_config(menshen: &Menshen, dir: &Path, name: &str) -> PathBuf {
    let config = fetch(&format!("{}/api/5/openvpn/config", menshen.url)).await;
    let path = dir.join(format!("{name}.ovpn"));
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test]
async fn clients_of_every_key_type_connect_with_only_the_served_config() {
    require_real_peers();
    let dir = tempfile::tempdir().unwrap();
    let (ca_cert, ca_key) = openssl_ca(dir.path());
    let mut gateway =
        Gateway::start_signed_by(dir.path(), free_udp_port(), &ca_cert, &ca_key, "10.181.0.0");
    let provider = provider_file(dir.path(), gateway.port);

    let mut clients = Vec::new();
    for key_type in ["ed25519", "ecdsa-p256", "rsa2048"] {
        let data = dir.path().join(key_type);
        let menshen = Menshen::start(&[
            "--data-dir",
            path_str(&data),
            "--config",
            path_str(&provider),
            "--ca-cert",
            path_str(&ca_cert),
            "--ca-key",
            path_str(&ca_key),
            "--client-key-type",
            key_type,
        ]);
        let provider_json: serde_json::Value =
            serde_json::from_str(&fetch(&format!("{}/provider.json", menshen.url)).await).unwrap();
        assert_eq!(
            bitmask_core_ca_pin(provider_json["ca_cert_fingerprint"].as_str().unwrap()),
            openssl_fingerprint(dir.path(), &ca_cert)
        );
        let config = fetch_config(&menshen, dir.path(), key_type).await;
        drop(menshen);
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.contains(&format!("\nremote 127.0.0.1 {} udp\n", gateway.port)),
            "{text}"
        );
        clients.push(client(&config));
    }

    let rows = gateway.wait_for_clients(3, &mut clients);
    assert!(
        rows.iter()
            .all(|r| r.split('\t').nth(1) == Some("UNLIMITED")),
        "{rows:?}"
    );
}

#[tokio::test]
async fn the_generated_ca_works_with_real_openvpn() {
    require_real_peers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The gateway's port must be known before menshen starts: take one now.
    let port = free_udp_port();
    let provider = provider_file(dir.path(), port);
    let mut menshen = Menshen::start(&[
        "--data-dir",
        path_str(&data),
        "--config",
        path_str(&provider),
    ]);
    let log = menshen.process.drain_log();
    assert!(log.contains("FOR TRYING MENSHEN OUT ONLY"), "{log}");

    // The gateway trusts the CA menshen made, read from its data folder.
    let ca_cert = data.join("pki/ca.crt");
    let ca_key = data.join("pki/ca.key");
    let mut gateway = Gateway::start_signed_by(dir.path(), port, &ca_cert, &ca_key, "10.182.0.0");
    let config = fetch_config(&menshen, dir.path(), "generated").await;
    let mut clients = vec![client(&config)];
    gateway.wait_for_clients(1, &mut clients);
}

#[test]
fn a_ca_key_that_is_not_the_certificates_is_refused_at_start() {
    require_real_peers();
    let dir = tempfile::tempdir().unwrap();
    let (ca_cert, _) = openssl_ca(dir.path());
    openssl(dir.path(), &["genrsa", "-out", "other.key", "2048"]);
    let log = menshen_refusing_to_serve(&[
        "--data-dir",
        path_str(&dir.path().join("data")),
        "--ca-cert",
        path_str(&ca_cert),
        "--ca-key",
        path_str(&dir.path().join("other.key")),
    ]);
    assert!(
        log.contains("other.key") && log.contains("does not belong to the CA certificate"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// A provider's PKI as operators make it: `menshen pki init`, then `menshen
/// pki gateway-cert` for the gateway. Clients trust the provider CA (they
/// get it in `<ca>`), the gateway trusts the client CA; a real client
/// connects with the served configuration.
#[tokio::test]
async fn a_gateway_certificate_from_pki_gateway_cert_works_with_real_openvpn() {
    require_real_peers();
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let run = |args: &[&str]| menshen_cli(args);
    run(&["pki", "init", "--out", path_str(&pki), "--name", "e2e.test"]);
    let (provider_ca, provider_key) = (pki.join("provider-ca.crt"), pki.join("provider-ca.key"));
    run(&[
        "pki",
        "gateway-cert",
        "gw1.e2e.test",
        "--ca-cert",
        path_str(&provider_ca),
        "--ca-key",
        path_str(&provider_key),
        "--ip",
        "127.0.0.1",
        "--out",
        path_str(dir.path()),
    ]);
    let (cert, key) = (
        dir.path().join("gw1.e2e.test.crt"),
        dir.path().join("gw1.e2e.test.key"),
    );
    // OpenSSL agrees: a TLS server certificate of the provider CA, for the host.
    openssl(
        dir.path(),
        &[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            path_str(&provider_ca),
            path_str(&cert),
        ],
    );
    let san = openssl(
        dir.path(),
        &[
            "x509",
            "-in",
            path_str(&cert),
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    assert!(
        san.contains("DNS:gw1.e2e.test") && san.contains("IP Address:127.0.0.1"),
        "{san}"
    );

    let port = free_udp_port();
    let provider = provider_file(dir.path(), port);
    let menshen = Menshen::start(&[
        "--config",
        path_str(&provider),
        "--ca-cert",
        path_str(&pki.join("ca.crt")),
        "--ca-key",
        path_str(&pki.join("ca.key")),
        "--provider-ca-cert",
        path_str(&provider_ca),
    ]);
    let mut gateway = Gateway::start(port, &pki.join("ca.crt"), &cert, &key, "10.183.0.0");
    let config = fetch_config(&menshen, dir.path(), "gateway-cert").await;
    let mut clients = vec![client(&config)];
    gateway.wait_for_clients(1, &mut clients);
}
