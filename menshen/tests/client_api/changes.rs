//! Changes made elsewhere reaching the server, and its health while the
//! store is away.

use std::time::Duration;

use serde_json::json;

use super::by_host;
use crate::common::{
    Backend, CONTRACT_FILE, PATIENCE, TestServer, eventually, on_each_backend, sorted_hosts,
};

on_each_backend!(
    a_changed_inventory_changes_the_etag,
    the_periodic_reload_picks_up_changes_made_elsewhere,
    health_and_readiness,
);

/// Another writer (as another replica would) applies the contract file
/// with gw1.ams at `load` to `backend`'s store.
async fn apply_elsewhere(backend: &Backend, load: &str) {
    let store = backend.store().await;
    let changed = CONTRACT_FILE.replace("load = 0.25", &format!("load = {load}"));
    let file =
        menshen::config::file::ProviderFile::parse(&changed, std::path::Path::new("x")).unwrap();
    store.apply_provider_file(&file.rows()).await.unwrap();
    store.close().await;
}

async fn a_changed_inventory_changes_the_etag(backend: Backend) {
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    let etag = server.etag("/api/5/gateways").await;
    apply_elsewhere(&backend, "0.5").await;
    // Postgres notifies other replicas; SQLite relies on the periodic
    // reload (30 s by default), so only Postgres is held to a deadline here.
    if backend.name() == "postgres" {
        let list = eventually(
            "the change to reach the other replica",
            PATIENCE,
            || async {
                let r = server.revalidate("/api/5/gateways", &etag).await;
                if r.status() == 200 {
                    Some(by_host(r.json().await.unwrap()))
                } else {
                    None
                }
            },
        )
        .await;
        assert_eq!(list[1]["load"], 0.5);
    }
}

async fn the_periodic_reload_picks_up_changes_made_elsewhere(backend: Backend) {
    let mut settings = backend.serving(CONTRACT_FILE);
    settings.reload_interval = Duration::from_millis(200);
    let server = TestServer::start_with(settings).await;
    apply_elsewhere(&backend, "0.75").await;
    let name = backend.name();
    eventually(format_args!("{name}: the new load"), PATIENCE, || async {
        let list = server.json("/api/5/gateways?tr=udp").await;
        if list[0]["load"] == 0.75 {
            Ok(())
        } else {
            Err(list)
        }
    })
    .await;
}

async fn health_and_readiness(backend: Backend) {
    let mut settings = backend.serving(CONTRACT_FILE);
    settings.store_check_interval = Duration::from_millis(200);
    let server = TestServer::start_with(settings).await;
    assert_eq!(
        server.json("/healthz").await,
        json!({"status": "ok", "store": backend.name(), "store_up": true})
    );
    let ready = server.json("/readyz").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"], backend.name());
    assert_eq!(ready["store_up"], true);
    // live gateways, experimental and invite-only included
    assert_eq!(ready["gateways"], 4);
    assert!(server.metrics().await.contains("menshen_store_up 1\n"));

    if let Some(name) = backend.database_name() {
        // Cut the database off: still ready and serving clients from
        // the snapshot, at once; /healthz and the metrics say the store
        // is down.
        menshen_e2e::set_connections_allowed(&name, false).await;
        let health = server.wait_store_up(false).await;
        let error = health["store_error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{health}");
        assert!(!error.contains("postgres://"), "{health}");
        let started = std::time::Instant::now();
        let ready = server.json("/readyz").await;
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(
            (&ready["status"], &ready["store_up"]),
            (&json!("ready"), &json!(false))
        );
        let list = server.json("/api/5/gateways").await;
        assert_eq!(sorted_hosts(&list).len(), 2);
        assert!(server.metrics().await.contains("menshen_store_up 0\n"));

        menshen_e2e::set_connections_allowed(&name, true).await;
        let health = server.wait_store_up(true).await;
        assert_eq!(health.get("store_error"), None, "{health}");
        assert!(server.metrics().await.contains("menshen_store_up 1\n"));
    }
    server.stop().await.unwrap();
}
