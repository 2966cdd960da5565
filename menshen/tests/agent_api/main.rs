//! Agents pushing gateways and bridges, over real HTTP, on every backend.

#[path = "../common/mod.rs"]
mod common;

mod claims;
mod pushes;
mod tokens;

use std::time::Duration;

use common::{Backend, PATIENCE, ProviderFile, TestServer, eventually, sorted_hosts};
use menshen::config::Settings;
use menshen::store::Store;
use serde_json::{Value, json};

/// Two locations, and a hand-defined gateway at `ip_addr` in one.
fn provider_file(ip_addr: &str) -> ProviderFile {
    ProviderFile::new()
        .place("amsterdam")
        .location("paris", "FR")
        .gateway("static.ams", ip_addr, "amsterdam")
}

struct Harness {
    backend: Backend,
    server: TestServer,
}

impl Harness {
    async fn start(backend: Backend, ttl: Duration) -> Harness {
        Self::start_with(backend, |s| s.resource_ttl = ttl).await
    }

    async fn start_with(backend: Backend, change: impl FnOnce(&mut Settings)) -> Harness {
        let mut settings = backend.settings();
        change(&mut settings);
        // the hand-defined gateway at a public address where only those go
        let ip_addr = if settings.allow_private_addresses {
            "192.0.2.1"
        } else {
            "93.184.215.1"
        };
        let path = provider_file(ip_addr).write(backend.data_dir());
        settings.provider_file = Some(path);
        let server = TestServer::start_with(settings).await;
        Harness { backend, server }
    }

    async fn store(&self) -> Store {
        self.backend.store().await
    }

    /// Creates an agent and returns its token.
    async fn agent(&self, name: &str) -> String {
        self.server.new_agent(name).await
    }

    async fn put(&self, what: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.server.push(what, token, body).await
    }

    /// Polls a client list until `pred` holds on its sorted hosts
    /// (snapshots are rebuilt asynchronously), and returns it.
    async fn wait_list(&self, path: &str, pred: impl Fn(&[String]) -> bool) -> Value {
        eventually(format_args!("the list {path}"), PATIENCE, || async {
            let list = self.server.json(path).await;
            if pred(&sorted_hosts(&list)) {
                Ok(list)
            } else {
                Err(list)
            }
        })
        .await
    }
}

fn gateway(host: &str, port: u16) -> Value {
    json!({"host": host, "ip_addr": "198.51.100.7", "location": "amsterdam", "port": port,
           "transport": "udp", "type": "openvpn", "load": 0.25, "healthy": true})
}

fn has(hosts: &[String], host: &str) -> bool {
    hosts.iter().any(|h| h == host)
}

/// The hosts of the agents' resources in the store, sorted.
async fn pushed_hosts(store: &Store) -> Vec<String> {
    let inventory = store.load_inventory().await.unwrap();
    let mut pushed: Vec<String> = inventory
        .resources
        .iter()
        .filter(|r| r.origin == "agent")
        .map(|r| r.host.clone())
        .collect();
    pushed.sort();
    pushed
}
