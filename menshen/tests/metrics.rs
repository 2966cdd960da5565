//! The metrics the chart's alerts and dashboard query, on every backend:
//! present from the start at zero, and following pushes, expiries,
//! certificates and the inventory.

mod common;

use std::time::Duration;

use common::{Backend, PATIENCE, ProviderFile, TestServer, eventually, on_each_backend, sample};
use serde_json::json;

/// Two locations, one with a hand-defined gateway; `paris` or not.
fn provider_file(with_paris: bool) -> ProviderFile {
    let file = ProviderFile::new().location("amsterdam", "NL");
    let file = if with_paris {
        file.location("paris", "FR")
    } else {
        file
    };
    file.gateway("static.ams", "192.0.2.1", "amsterdam")
}

on_each_backend!(alert_and_dashboard_metrics_follow_what_happens);

/// Polls the metrics until `series` has `value` (snapshots are rebuilt
/// asynchronously), within 5 s; returns the last exposition.
async fn wait_for(server: &TestServer, series: &str, value: Option<f64>) -> String {
    eventually(format_args!("{series} = {value:?}"), PATIENCE, || async {
        let text = server.metrics().await;
        if sample(&text, series) == value {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await
}

async fn alert_and_dashboard_metrics_follow_what_happens(backend: Backend) {
    let name = backend.name();
    let mut settings = backend.serving(provider_file(true));
    settings.resource_ttl = Duration::from_millis(1500);
    settings.reload_interval = Duration::from_millis(300);
    let server = TestServer::start_with(settings).await;

    // Every series from the start.
    let text = server.metrics().await;
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
    let token = server.new_agent("gw-ams").await;
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
    let text = server.metrics().await;
    assert_eq!(
        sample(&text, r#"menshen_gateways_live{location="amsterdam"}"#),
        Some(1.0),
        "{name}"
    );

    // A location removed from the store drops its series.
    let file = menshen::config::file::ProviderFile::parse_with(
        provider_file(false).as_str(),
        std::path::Path::new("x"),
        menshen::inventory::validate::Policy::LAB,
    )
    .unwrap();
    let store = backend.store().await;
    store.apply_provider_file(&file.rows()).await.unwrap();
    store.close().await;
    // A server on SQLite sees it at its next periodic reload.
    wait_for(&server, r#"menshen_gateways_live{location="paris"}"#, None).await;
    server.stop().await.unwrap();
}

/// Open connections are counted per listener, beside their cap.
#[tokio::test]
async fn open_connections_are_counted_per_listener() {
    let backend = Backend::sqlite();
    let server = TestServer::start_with(backend.settings()).await;
    let text = server.metrics().await;
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
