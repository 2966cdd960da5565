//! Writes while the database is cut off (Postgres), and a replica serving
//! its own writes at once (every backend).

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, backends, get_json};
use menshen::auth::SigningKey;
use menshen::store::{Store, now_millis};
use serde_json::{Value, json};

const FILE: &str = r#"
[provider]
domain = "vpn.test"
api_uri = "https://api.vpn.test"

[locations.amsterdam]
display_name = "Amsterdam"
country_code = "NL"
"#;

async fn start(backend: &Backend, ttl: Duration) -> (TestServer, String) {
    let path = backend.data_dir().join("provider.toml");
    std::fs::write(&path, FILE).unwrap();
    let mut settings = backend.settings();
    settings.provider_file = Some(path);
    settings.resource_ttl = ttl;
    let key = SigningKey::load(&settings.signing_key, &settings.data_dir).unwrap();
    let server = TestServer::start_with(settings).await;
    let store = Store::connect(&backend.engine()).await.unwrap();
    let token_id = menshen::auth::random_id(16);
    store
        .create_agent("gw-ams", &token_id, now_millis())
        .await
        .unwrap();
    store.close().await;
    let token = key.mint_agent_token("gw-ams", &token_id, now_millis() / 1000, 3600);
    (server, token)
}

fn gateways(hosts: &[&str]) -> Value {
    hosts
        .iter()
        .map(|host| {
            json!({"host": host, "ip_addr": "198.51.100.7", "location": "amsterdam", "port": 1194,
                   "transport": "udp", "type": "openvpn", "load": 0.25, "healthy": true})
        })
        .collect()
}

async fn push(server: &TestServer, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .put(server.url("/api/5/agent/gateways"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn listed(server: &TestServer) -> Vec<String> {
    let list = get_json(&server.url("/api/5/gateways"), 200).await;
    let mut hosts: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["host"].as_str().unwrap().to_owned())
        .collect();
    hosts.sort();
    hosts
}

/// The store's state as `/healthz` tells it.
async fn store_up(server: &TestServer) -> bool {
    get_json(&server.url("/healthz"), 200).await["store_up"] == true
}

#[tokio::test]
async fn a_replica_serves_its_own_writes_on_the_next_read() {
    for backend in backends().await {
        let (server, token) = start(&backend, Duration::from_secs(60)).await;
        let mut hosts = Vec::new();
        for i in 0..20 {
            hosts.push(format!("gw{i:02}.ams"));
            let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let response = push(&server, &token, &gateways(&names)).await;
            assert!(response.status().is_success(), "{}", backend.name());
            // No polling: the very next read shows it.
            assert_eq!(listed(&server).await, hosts, "{}", backend.name());
        }
        // Retired hosts leave at once too.
        push(&server, &token, &gateways(&["gw00.ams"])).await;
        assert_eq!(listed(&server).await, ["gw00.ams"], "{}", backend.name());
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn while_the_store_is_cut_off_pushes_get_503_and_nothing_expires() {
    let Some(db) = menshen_e2e::TestDatabase::create().await else {
        return;
    };
    let backend = Backend::Postgres(db, tempfile::tempdir().unwrap());
    let Backend::Postgres(db, _) = &backend else {
        unreachable!()
    };
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let ttl = Duration::from_secs(2);
    let (server, token) = start(&backend, ttl).await;
    let body = gateways(&["a.ams"]);
    assert_eq!(push(&server, &token, &body).await.status(), 201);
    assert_eq!(listed(&server).await, ["a.ams"]);

    menshen_e2e::set_connections_allowed(&name, false).await;
    let cut_at = Instant::now();
    // Refused with Retry-After (the first push may be the one that finds
    // the store gone).
    let mut refused = None;
    for _ in 0..20 {
        let response = push(&server, &token, &body).await;
        if response.status() == 503 {
            refused = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.expect("pushes are refused while the store is cut off");
    assert_eq!(refused.headers()["retry-after"], "1");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"], "store_unavailable");
    // The store is not even asked any more: refused again, same answer.
    assert_eq!(push(&server, &token, &body).await.status(), 503);
    // Still ready: clients are served from the last snapshot, old clients'
    // POSTs included (they only read).
    assert_eq!(
        reqwest::get(server.url("/readyz")).await.unwrap().status(),
        200
    );
    let health = get_json(&server.url("/healthz"), 200).await;
    assert_eq!(health["store_up"], false, "{health}");
    let client = reqwest::Client::new();
    for path in ["/3/cert", "/3/config/eip-service.json"] {
        let response = client.post(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "POST {path} during the outage");
    }

    // Far past the TTL, the gateway is still listed: its agent could not
    // be heard, through no fault of its own.
    tokio::time::sleep((ttl * 3).saturating_sub(cut_at.elapsed())).await;
    assert_eq!(listed(&server).await, ["a.ams"]);

    menshen_e2e::set_connections_allowed(&name, true).await;
    let mut accepted = false;
    for _ in 0..100 {
        if push(&server, &token, &body).await.status().is_success() {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted, "pushes are accepted again once the store is back");
    assert_eq!(listed(&server).await, ["a.ams"]);

    // Without heartbeats, expiry has resumed: gone after the TTL.
    let deadline = Instant::now() + ttl * 5;
    while listed(&server).await.contains(&"a.ams".to_owned()) {
        assert!(Instant::now() < deadline, "expiry resumed after the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_heartbeats_through_an_outage_a_resource_expires_only_after_its_ttl_outside_it() {
    let Some(db) = menshen_e2e::TestDatabase::create().await else {
        return;
    };
    let backend = Backend::Postgres(db, tempfile::tempdir().unwrap());
    let Backend::Postgres(db, _) = &backend else {
        unreachable!()
    };
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let ttl = Duration::from_secs(3);
    let (server, token) = start(&backend, ttl).await;
    assert_eq!(
        push(&server, &token, &gateways(&["a.ams"])).await.status(),
        201
    );
    // An outage longer than the TTL, no heartbeat after it: once the store
    // is back the gateway is still listed (the outage does not count)...
    menshen_e2e::set_connections_allowed(&name, false).await;
    let mut down = false;
    for _ in 0..100 {
        if !store_up(&server).await {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(down);
    tokio::time::sleep(ttl * 2).await;
    menshen_e2e::set_connections_allowed(&name, true).await;
    for _ in 0..100 {
        if store_up(&server).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed(&server).await, ["a.ams"]);
    // ...and leaves once the rest of its TTL has run out.
    let deadline = Instant::now() + ttl * 3;
    while !listed(&server).await.is_empty() {
        assert!(Instant::now() < deadline, "expired in the end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await.unwrap();
}
