//! Writes while the database is cut off (Postgres), and a replica serving
//! its own writes at once (every backend).

mod common;

use std::time::{Duration, Instant};

use common::{Backend, PATIENCE, ProviderFile, TestServer, eventually, on_each_backend};
use menshen::auth::admin::Role;
use serde_json::{Value, json};

/// A server whose pushed resources live `ttl`, and an agent's token.
async fn start(backend: &Backend, ttl: Duration) -> (TestServer, String) {
    let mut settings = backend.serving(ProviderFile::new().location("amsterdam", "NL"));
    settings.resource_ttl = ttl;
    let server = TestServer::start_with(settings).await;
    let token = server.new_agent("gw-ams").await;
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
    server
        .client
        .put(server.url("/api/5/agent/gateways"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn listed(server: &TestServer) -> Vec<String> {
    server.hosts("/api/5/gateways").await
}

/// On Postgres (`None` without it): the backend, its database's name, and
/// [`start`]'s server and token, with `a.ams` pushed.
async fn pushed_on_postgres(ttl: Duration) -> Option<(Backend, String, TestServer, String)> {
    let backend = Backend::postgres().await?;
    let database = backend.database_name().unwrap();
    let (server, token) = start(&backend, ttl).await;
    let body = gateways(&["a.ams"]);
    assert_eq!(push(&server, &token, &body).await.status(), 201);
    Some((backend, database, server, token))
}

on_each_backend!(a_replica_serves_its_own_writes_on_the_next_read);

async fn a_replica_serves_its_own_writes_on_the_next_read(backend: Backend) {
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

#[tokio::test]
async fn while_the_store_is_cut_off_pushes_get_503_and_nothing_expires() {
    let ttl = Duration::from_secs(2);
    let Some((_backend, name, server, token)) = pushed_on_postgres(ttl).await else {
        return;
    };
    let body = gateways(&["a.ams"]);
    assert_eq!(listed(&server).await, ["a.ams"]);

    menshen_e2e::set_connections_allowed(&name, false).await;
    let cut_at = Instant::now();
    // Refused with Retry-After (the first push may be the one that finds
    // the store gone).
    let refused = eventually(
        "pushes to be refused while the store is cut off",
        PATIENCE,
        || async {
            let response = push(&server, &token, &body).await;
            (response.status() == 503).then_some(response)
        },
    )
    .await;
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
    let health = server.json("/healthz").await;
    assert_eq!(health["store_up"], false, "{health}");
    let client = reqwest::Client::new();
    for path in ["/3/cert", "/3/config/eip-service.json"] {
        let response = client.post(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "POST {path} during the outage");
    }
    // Operators' status view shows what clients are served, and says the
    // store is down, instead of failing.
    let viewer = server.admin_token("watcher", Role::Viewer);
    let (status, view) = server
        .call("GET", "/status/data", Some(&viewer), None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["store_up"], false, "{view}");
    assert_eq!(view["summary"]["live"], 1, "{view}");

    // Far past the TTL, the gateway is still listed: its agent could not
    // be heard, through no fault of its own.
    tokio::time::sleep((ttl * 3).saturating_sub(cut_at.elapsed())).await;
    assert_eq!(listed(&server).await, ["a.ams"]);

    menshen_e2e::set_connections_allowed(&name, true).await;
    eventually(
        "pushes to be accepted again once the store is back",
        PATIENCE,
        || async { push(&server, &token, &body).await.status().is_success() },
    )
    .await;
    assert_eq!(listed(&server).await, ["a.ams"]);

    // Without heartbeats, expiry has resumed: gone after the TTL.
    eventually("expiry to resume after the outage", ttl * 5, || async {
        !listed(&server).await.contains(&"a.ams".to_owned())
    })
    .await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_heartbeats_through_an_outage_a_resource_expires_only_after_its_ttl_outside_it() {
    let ttl = Duration::from_secs(3);
    let Some((_backend, name, server, _)) = pushed_on_postgres(ttl).await else {
        return;
    };
    // An outage longer than the TTL, no heartbeat after it: once the store
    // is back the gateway is still listed (the outage does not count)...
    menshen_e2e::set_connections_allowed(&name, false).await;
    server.wait_store_up(false).await;
    tokio::time::sleep(ttl * 2).await;
    menshen_e2e::set_connections_allowed(&name, true).await;
    server.wait_store_up(true).await;
    assert_eq!(listed(&server).await, ["a.ams"]);
    // ...and leaves once the rest of its TTL has run out.
    eventually("the gateway to expire in the end", ttl * 3, || async {
        listed(&server).await.is_empty()
    })
    .await;
    server.stop().await.unwrap();
}
