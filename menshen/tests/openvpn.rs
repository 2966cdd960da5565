//! OpenVPN credentials and configurations over HTTP, from a server started
//! in this process, read the way LEAP clients read them.

mod common;

use std::path::{Path, PathBuf};

use common::TestServer;

use menshen::config::Settings;
use menshen::pki::{KeyType, PkiSettings};
use menshen_e2e::clients::{android_ca_pin, bitmask_core_ca_pin};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::net::TcpListener;
use x509_parser::prelude::{FromDer, X509Certificate};

fn example_config() -> PathBuf {
    menshen_e2e::provider::example()
}

/// menshen serving on a port of its own until dropped or stopped.
struct Server(TestServer);

impl Server {
    async fn start(settings: Settings) -> Server {
        Server(TestServer::start_with(settings).await)
    }

    async fn stop(self) {
        self.0.stop().await.unwrap();
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(self.0.url(path)).await.unwrap()
    }

    async fn text(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        response.text().await.unwrap()
    }

    /// `ca_cert_fingerprint` as the clients read it: the Android client's
    /// cut at the `:` must give `SHA256` and the same hex that
    /// bitmask-core reads. Returns that hex.
    async fn fingerprint(&self) -> String {
        let provider: serde_json::Value = self.get("/provider.json").await.json().await.unwrap();
        let pin = provider["ca_cert_fingerprint"].as_str().unwrap();
        let (algorithm, android) = android_ca_pin(pin).expect("Android parses the pin");
        assert_eq!(algorithm, "SHA256", "{pin}");
        assert_eq!(android, bitmask_core_ca_pin(pin), "{pin}");
        android
    }
}

fn settings(data_dir: &Path) -> Settings {
    let mut settings = Settings::with_data_dir(data_dir);
    settings.provider_file = Some(example_config());
    settings
}

/// The text between the literal `<tag>\n` and `</tag>\n`, as clients cut it.
fn section<'t>(text: &'t str, tag: &str) -> &'t str {
    let open = format!("<{tag}>\n");
    let close = format!("</{tag}>\n");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("no {open:?} in {text}"))
        + open.len();
    let end = text[start..]
        .find(&close)
        .unwrap_or_else(|| panic!("no {close:?} in {text}"))
        + start;
    &text[start..end]
}

fn der(pem_text: &str) -> Vec<u8> {
    let blocks = pem::parse_many(pem_text).unwrap();
    assert_eq!(blocks.len(), 1, "one PEM block in {pem_text}");
    blocks[0].contents().to_vec()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// What a client checks and a gateway will check: the `<key>`, `<cert>`,
/// `<ca>` sections of `text`. Returns the certificate's serial.
fn check_credentials(text: &str, signing_ca_pem: &str, fingerprint: &str) -> Vec<u8> {
    let key_pem = section(text, "key");
    let cert_pem = section(text, "cert");
    let ca_pem = section(text, "ca");
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(key_pem.ends_with("-----END PRIVATE KEY-----\n"));
    assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(ca_pem.ends_with("-----END CERTIFICATE-----\n"));

    let ca_der = der(ca_pem);
    assert_eq!(sha256_hex(&ca_der), fingerprint, "ca_cert_fingerprint");

    let signing_der = der(signing_ca_pem);
    let (_, signing) = X509Certificate::from_der(&signing_der).unwrap();
    let cert_der = der(cert_pem);
    let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
    cert.verify_signature(Some(signing.public_key()))
        .expect("the certificate chains to the CA");
    assert_eq!(cert.issuer(), signing.subject());

    let subject: Vec<String> = cert
        .subject()
        .iter_attributes()
        .map(|a| format!("{}={}", a.attr_type(), a.as_str().unwrap()))
        .collect();
    assert_eq!(subject, ["2.5.4.3=UNLIMITED"]);

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let validity = cert.validity();
    assert!(validity.not_before.timestamp() <= now);
    let days = (validity.not_after.timestamp() - now) as f64 / 86_400.0;
    assert!((23.9..=24.1).contains(&days), "valid {days} days");

    let usage = cert.key_usage().unwrap().expect("key usage").value;
    assert!(usage.digital_signature() && !usage.key_cert_sign());
    let eku = cert.extended_key_usage().unwrap().expect("EKU").value;
    assert!(eku.client_auth && !eku.server_auth);

    let key = KeyPair::from_pem(key_pem).unwrap();
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw(),
        "the key is the certificate's"
    );
    cert.raw_serial().to_vec()
}

fn generated_ca_pem(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("pki/ca.crt")).unwrap()
}

#[tokio::test]
async fn the_cert_is_what_clients_parse_and_changes_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(settings(dir.path())).await;
    let fingerprint = server.fingerprint().await;
    assert_eq!(fingerprint.len(), 64);
    let ca = generated_ca_pem(dir.path());

    let first = server.text("/api/5/openvpn/cert").await;
    // Exactly the three sections, in this order, nothing around them.
    assert!(first.starts_with("<key>\n-----BEGIN PRIVATE KEY-----\n"));
    assert!(
        first.contains("-----END PRIVATE KEY-----\n</key>\n<cert>\n-----BEGIN CERTIFICATE-----\n")
    );
    assert!(
        first.contains("-----END CERTIFICATE-----\n</cert>\n<ca>\n-----BEGIN CERTIFICATE-----\n")
    );
    assert!(first.ends_with("-----END CERTIFICATE-----\n</ca>\n"));
    assert_eq!(section(&first, "ca"), ca);
    let first_serial = check_credentials(&first, &ca, &fingerprint);

    let second = server.text("/api/5/openvpn/cert").await;
    let second_serial = check_credentials(&second, &ca, &fingerprint);
    assert_ne!(section(&first, "key"), section(&second, "key"));
    assert_ne!(first_serial, second_serial);
    server.stop().await;
}

#[tokio::test]
async fn the_generated_ca_is_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(settings(dir.path())).await;
    let fingerprint = server.fingerprint().await;
    server.stop().await;

    let server = Server::start(settings(dir.path())).await;
    assert_eq!(server.fingerprint().await, fingerprint);
    let text = server.text("/api/5/openvpn/cert").await;
    check_credentials(&text, &generated_ca_pem(dir.path()), &fingerprint);
    server.stop().await;
}

/// A CA made here, written as PEM files.
fn write_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[tokio::test]
async fn configured_cas_sign_and_the_provider_ca_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let (client_ca, client_key) = write_ca(dir.path(), "client");
    let (provider_ca, _) = write_ca(dir.path(), "provider");
    let mut settings = settings(&dir.path().join("data"));
    settings.pki = PkiSettings {
        ca_cert: Some(client_ca.clone()),
        ca_key: Some(client_key),
        provider_ca_cert: Some(provider_ca.clone()),
        key_type: KeyType::EcdsaP256,
        ..PkiSettings::default()
    };
    let server = Server::start(settings).await;

    let provider_pem = std::fs::read_to_string(&provider_ca).unwrap();
    let fingerprint = server.fingerprint().await;
    assert_eq!(fingerprint, sha256_hex(&der(&provider_pem)));
    let text = server.text("/api/5/openvpn/cert").await;
    assert_eq!(der(section(&text, "ca")), der(&provider_pem));
    let client_pem = std::fs::read_to_string(&client_ca).unwrap();
    check_credentials(&text, &client_pem, &fingerprint);
    let key = KeyPair::from_pem(section(&text, "key")).unwrap();
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    assert!(
        !dir.path().join("data/pki").exists(),
        "nothing generated when a CA is configured"
    );
    server.stop().await;
}

fn remote_lines(config: &str) -> Vec<&str> {
    config
        .lines()
        .filter(|l| l.starts_with("remote "))
        .collect()
}

#[tokio::test]
async fn the_config_names_the_gateways_of_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(settings(dir.path())).await;
    let fingerprint = server.fingerprint().await;
    let ca = generated_ca_pem(dir.path());

    let config = server.text("/api/5/openvpn/config").await;
    let lines: Vec<&str> = config.lines().collect();
    assert_eq!(lines.iter().find(|l| !l.starts_with('#')), Some(&"client"));
    for option in [
        "dev tun",
        "persist-key",
        "nobind",
        "keepalive 10 30",
        "data-ciphers AES-256-GCM:CHACHA20-POLY1305",
        "remote-cert-tls server",
    ] {
        assert!(lines.contains(&option), "{option} in\n{config}");
    }
    // The best three gateways for the client: for a Dutch client the two in
    // Amsterdam (in a load-spread order), then the one in Paris.
    let dutch = server.text("/api/5/openvpn/config?cc=NL").await;
    let remotes = remote_lines(&dutch);
    let mut amsterdam = remotes[..2].to_vec();
    amsterdam.sort();
    assert_eq!(
        amsterdam,
        ["remote 192.0.2.10 1194 udp", "remote 192.0.2.10 443 tcp"]
    );
    assert_eq!(remotes[2], "remote 192.0.2.20 1194 udp");
    // A Canadian client gets Montreal first.
    let canadian = server.text("/api/5/openvpn/config?cc=ca").await;
    assert_eq!(remote_lines(&canadian)[0], "remote 198.51.100.30 1194 udp");
    assert_eq!(remote_lines(&config).len(), 3);
    check_credentials(&config, &ca, &fingerprint);

    // The same filters as the gateway list.
    let tcp = server.text("/api/5/openvpn/config?tr=TCP").await;
    assert_eq!(remote_lines(&tcp), ["remote 192.0.2.10 443 tcp"]);
    let paris = server.text("/api/autoconf?loc=paris").await;
    assert_eq!(remote_lines(&paris), ["remote 192.0.2.20 1194 udp"]);
    check_credentials(&paris, &ca, &fingerprint);

    let bad = server.get("/api/5/openvpn/config?tr=carrier-pigeon").await;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["parameter"], "tr");

    let none = server.get("/api/autoconf?loc=paris&tr=tcp").await;
    assert_eq!(none.status(), 503);
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    server.stop().await;
}

#[tokio::test]
async fn the_number_of_remotes_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.openvpn_max_remotes = 1;
    let server = Server::start(settings).await;
    let config = server.text("/api/5/openvpn/config").await;
    assert_eq!(remote_lines(&config).len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn certificates_are_rate_limited_per_client_address_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.cert_rate_limit = Some(menshen::api::rate_limit::RateLimit {
        rate: "2/h".parse().unwrap(),
        burst: 2,
    });
    // The tests' peer is a trusted proxy: X-Forwarded-For names the client.
    settings.trusted_proxies = menshen::geo::client_ip::TrustedProxies::parse("127.0.0.1").unwrap();
    let server = Server::start(settings).await;
    let client = reqwest::Client::new();
    let get = |path: &str, from: &str| {
        client
            .get(server.0.url(path))
            .header("x-forwarded-for", from)
            .send()
    };
    // Certificates and configurations share one allowance.
    assert_eq!(
        get("/api/5/openvpn/cert", "203.0.113.1")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/api/5/openvpn/config", "203.0.113.1")
            .await
            .unwrap()
            .status(),
        200
    );
    for path in [
        "/api/5/openvpn/cert",
        "/api/5/openvpn/config",
        "/api/autoconf",
    ] {
        let refused = get(path, "203.0.113.1").await.unwrap();
        assert_eq!(refused.status(), 429, "{path}");
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=1800).contains(&wait), "{wait}");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "rate_limited", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("try again"),
            "{body}"
        );
    }
    // Another address has its own; the lists are never limited.
    assert_eq!(
        get("/api/5/openvpn/cert", "203.0.113.2")
            .await
            .unwrap()
            .status(),
        200
    );
    for _ in 0..5 {
        assert_eq!(
            get("/api/5/gateways", "203.0.113.1")
                .await
                .unwrap()
                .status(),
            200
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn without_a_limit_certificates_are_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(settings(dir.path())).await;
    for _ in 0..20 {
        assert_eq!(server.get("/api/5/openvpn/cert").await.status(), 200);
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_ca_material_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = write_ca(dir.path(), "one");
    let (_, other_key) = write_ca(dir.path(), "two");
    let mut settings = settings(&dir.path().join("data"));
    settings.pki.ca_cert = Some(cert);
    settings.pki.ca_key = Some(other_key);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = menshen::launch(settings, listener, None, std::future::pending())
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("two.key") && message.contains("does not belong to the CA certificate"),
        "{message}"
    );
}

/// The key algorithm of the `<key>` of `text`.
fn key_algorithm(text: &str) -> &'static rcgen::SignatureAlgorithm {
    KeyPair::from_pem(section(text, "key")).unwrap().algorithm()
}

#[tokio::test]
async fn algo_picks_the_key_type_within_what_the_provider_offers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(settings(dir.path())).await;
    let fingerprint = server.fingerprint().await;
    let ca = generated_ca_pem(dir.path());
    for (algo, key_type, algorithm) in [
        ("rsa", KeyType::Rsa2048, &rcgen::PKCS_RSA_SHA256),
        ("ecdsa", KeyType::EcdsaP256, &rcgen::PKCS_ECDSA_P256_SHA256),
        ("ed25519", KeyType::Ed25519, &rcgen::PKCS_ED25519),
        ("RSA", KeyType::Rsa2048, &rcgen::PKCS_RSA_SHA256),
        ("", KeyType::Ed25519, &rcgen::PKCS_ED25519),
    ] {
        let text = server
            .text(&format!("/api/5/openvpn/cert?algo={algo}"))
            .await;
        check_credentials(&text, &ca, &fingerprint);
        assert_eq!(
            key_algorithm(&text),
            algorithm,
            "algo={algo} ({key_type:?})"
        );
        // The configuration routes take it too.
        let config = server
            .text(&format!("/api/5/openvpn/config?algo={algo}"))
            .await;
        assert_eq!(key_algorithm(&config), algorithm, "config algo={algo}");
    }
    for (query, message) in [
        ("algo=dsa", "must be one of"),
        ("algo=rsa&algo=ecdsa", "more than once"),
    ] {
        let response = server.get(&format!("/api/5/openvpn/cert?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["parameter"], "algo", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{body}"
        );
        let response = server.get(&format!("/api/autoconf?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
    }
    server.stop().await;

    // An operator who offers Ed25519 only.
    let dir = tempfile::tempdir().unwrap();
    let mut only = settings(dir.path());
    only.pki.offered = vec![KeyType::Ed25519];
    let server = Server::start(only).await;
    let response = server.get("/api/5/openvpn/cert?algo=rsa").await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["parameter"], "algo");
    assert!(
        body["message"].as_str().unwrap().contains("offers ed25519"),
        "{body}"
    );
    let text = server.text("/api/5/openvpn/cert?algo=ed25519").await;
    assert_eq!(key_algorithm(&text), &rcgen::PKCS_ED25519);
    server.stop().await;
}
