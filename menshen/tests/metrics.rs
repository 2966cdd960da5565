//! The metrics the chart's alerts and dashboard query, on every backend:
//! present from the start at zero, and following pushes, expiries,
//! certificates and the inventory.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, backends};
use menshen::auth::SigningKey;
use menshen::config::file::ProviderFile;
use menshen::store::{Store, now_millis};
use serde_json::json;

const FILE: &str = r#"
[provider]
domain = "vpn.test"
api_uri = "https://api.vpn.test"

[locations.amsterdam]
display_name = "Amsterdam"
country_code = "NL"

[locations.paris]
display_name = "Paris"
country_code = "FR"

[[gateway]]
host = "static.ams"
ip_addr = "192.0.2.1"
location = "amsterdam"
port = 1194
transport = "udp"
"#;

async fn metrics(server: &TestServer) -> String {
    reqwest::get(format!("{}/metrics", server.metrics_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `series` (name and labels as exposed), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Polls the metrics until `series` has `value` (snapshots are rebuilt
/// asynchronously), within 5 s; returns the last exposition.
async fn wait_for(server: &TestServer, series: &str, value: Option<f64>) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics(server).await;
        if sample(&text, series) == value || Instant::now() > deadline {
            assert_eq!(sample(&text, series), value, "{series}\n{text}");
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn alert_and_dashboard_metrics_follow_what_happens() {
    for backend in backends().await {
        let name = backend.name();
        let path = backend.data_dir().join("provider.toml");
        std::fs::write(&path, FILE).unwrap();
        let mut settings = backend.settings();
        settings.provider_file = Some(path);
        settings.resource_ttl = Duration::from_millis(1500);
        settings.reload_interval = Duration::from_millis(300);
        let key = SigningKey::load(&settings.signing_key, &settings.data_dir).unwrap();
        let server = TestServer::start_with(settings).await;

        // Every series from the start.
        let text = metrics(&server).await;
        for (series, value) in [
            ("menshen_store_up", 1.0),
            (r#"menshen_gateways_live{location="amsterdam"}"#, 1.0),
            (r#"menshen_gateways_live{location="paris"}"#, 0.0),
            (r#"menshen_resources_stale{kind="gateway"}"#, 0.0),
            (r#"menshen_resources_stale{kind="bridge"}"#, 0.0),
        ] {
            assert_eq!(
                sample(&text, series),
                Some(value),
                "{name}: {series}\n{text}"
            );
        }
        for key_type in ["ed25519", "ecdsa-p256", "rsa2048"] {
            let series = format!(r#"menshen_certificates_issued_total{{key_type="{key_type}"}}"#);
            assert_eq!(sample(&text, &series), Some(0.0), "{name}: {series}");
        }
        for kind in ["gateway", "bridge"] {
            for outcome in ["ok", "unauthorized", "invalid", "failed"] {
                let series =
                    format!(r#"menshen_agent_pushes_total{{kind="{kind}",outcome="{outcome}"}}"#);
                assert_eq!(sample(&text, &series), Some(0.0), "{name}: {series}");
            }
        }

        // Pushes by outcome.
        let store = Store::connect(&backend.engine()).await.unwrap();
        let token_id = menshen::auth::random_id(16);
        store
            .create_agent("gw-ams", &token_id, now_millis())
            .await
            .unwrap();
        let token = key.mint_agent_token("gw-ams", &token_id, now_millis() / 1000, 3600);
        let client = reqwest::Client::new();
        let put = |what: &str, token: Option<&str>, body: serde_json::Value| {
            let mut request = client
                .put(server.url(&format!("/api/5/agent/{what}")))
                .json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move { request.send().await.unwrap().status().as_u16() }
        };
        let gateway = json!({"host": "a.ams", "ip_addr": "198.51.100.7", "location": "amsterdam",
                             "port": 1194, "transport": "udp", "type": "openvpn", "load": 0.25,
                             "healthy": true});
        assert_eq!(put("gateways", Some(&token), json!([gateway])).await, 201);
        assert_eq!(put("gateways", None, json!([gateway])).await, 401);
        assert_eq!(
            put("bridges", Some(&token), json!([{"host": 1}])).await,
            422
        );
        let text = wait_for(
            &server,
            r#"menshen_gateways_live{location="amsterdam"}"#,
            Some(2.0),
        )
        .await;
        for (series, value) in [
            (
                r#"menshen_agent_pushes_total{kind="gateway",outcome="ok"}"#,
                1.0,
            ),
            (
                r#"menshen_agent_pushes_total{kind="gateway",outcome="unauthorized"}"#,
                1.0,
            ),
            (
                r#"menshen_agent_pushes_total{kind="bridge",outcome="invalid"}"#,
                1.0,
            ),
            (
                r#"menshen_agent_pushes_total{kind="bridge",outcome="ok"}"#,
                0.0,
            ),
        ] {
            assert_eq!(
                sample(&text, series),
                Some(value),
                "{name}: {series}\n{text}"
            );
        }

        // A certificate issued.
        let cert = reqwest::get(server.url("/api/5/openvpn/cert"))
            .await
            .unwrap();
        assert_eq!(cert.status(), 200);
        wait_for(
            &server,
            r#"menshen_certificates_issued_total{key_type="ed25519"}"#,
            Some(1.0),
        )
        .await;

        // The agent falls silent: stale, no longer live.
        wait_for(
            &server,
            r#"menshen_resources_stale{kind="gateway"}"#,
            Some(1.0),
        )
        .await;
        let text = metrics(&server).await;
        assert_eq!(
            sample(&text, r#"menshen_gateways_live{location="amsterdam"}"#),
            Some(1.0),
            "{name}"
        );

        // A location removed from the store drops its series.
        let without_paris = FILE.replace(
            "[locations.paris]\ndisplay_name = \"Paris\"\ncountry_code = \"FR\"\n",
            "",
        );
        assert_ne!(without_paris, FILE);
        let file = ProviderFile::parse_with(
            &without_paris,
            std::path::Path::new("x"),
            menshen::inventory::validate::Policy::LAB,
        )
        .unwrap();
        store.apply_provider_file(&file.rows()).await.unwrap();
        store.close().await;
        // A server on SQLite sees it at its next periodic reload.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = metrics(&server).await;
            if sample(&text, r#"menshen_gateways_live{location="paris"}"#).is_none() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: paris still there\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.stop().await.unwrap();
    }
}

/// Open connections are counted per listener, beside their cap.
#[tokio::test]
async fn open_connections_are_counted_per_listener() {
    let backend = backends().await.remove(0);
    let server = TestServer::start_with(backend.settings()).await;
    let text = metrics(&server).await;
    assert_eq!(
        sample(&text, r#"menshen_http_connections_max{listener="public"}"#),
        Some(menshen::server::DEFAULT_LIMITS.max_connections as f64),
        "{text}"
    );
    // The scrape itself is an open connection of the metrics listener.
    assert!(
        sample(
            &text,
            r#"menshen_http_connections_open{listener="metrics"}"#
        ) >= Some(1.0)
    );
    let before = sample(&text, r#"menshen_http_connections_open{listener="public"}"#).unwrap();
    // Three idle keep-alive connections of the public listener.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://"))
            .await
            .unwrap();
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        idle.push(stream);
    }
    wait_for(
        &server,
        r#"menshen_http_connections_open{listener="public"}"#,
        Some(before + 3.0),
    )
    .await;
    drop(idle);
    wait_for(
        &server,
        r#"menshen_http_connections_open{listener="public"}"#,
        Some(before),
    )
    .await;
    server.stop().await.unwrap();
}
