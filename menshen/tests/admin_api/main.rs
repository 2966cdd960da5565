//! The admin API over real HTTP, on every backend: each operation, its
//! effect on client lists, the audit log, and each refusal.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod agents;
mod blocked;
mod locations;
mod resources;
mod settings;

use std::time::Duration;

use common::{Backend, ProviderFile, TestServer};
use menshen::auth::admin::Role;
use serde_json::{Value, json};

/// One location and one hand-defined gateway in it.
fn provider_file() -> ProviderFile {
    ProviderFile::new()
        .place("amsterdam")
        .gateway("static.ams", "192.0.2.1", "amsterdam")
}

/// A server, an admin's token (alice) and a viewer's (victor).
struct Harness {
    backend: Backend,
    server: TestServer,
    admin: String,
    viewer: String,
}

impl Harness {
    async fn start(backend: Backend) -> Harness {
        Self::start_with_ttl(backend, Duration::from_secs(60)).await
    }

    async fn start_with_ttl(backend: Backend, ttl: Duration) -> Harness {
        Self::start_tweaked(backend, provider_file(), |s| s.resource_ttl = ttl).await
    }

    /// A server for `file`, its settings changed by `tweak`.
    async fn start_tweaked(
        backend: Backend,
        file: ProviderFile,
        tweak: impl FnOnce(&mut menshen::config::Settings),
    ) -> Harness {
        let mut settings = backend.serving(file);
        tweak(&mut settings);
        let server = TestServer::start_with(settings).await;
        let admin = server.admin_token("alice", Role::Admin);
        let viewer = server.admin_token("victor", Role::Viewer);
        Harness {
            backend,
            server,
            admin,
            viewer,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.server.call(method, path, token, body.as_ref()).await
    }

    /// A viewer's read.
    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(&self.viewer), None).await
    }

    /// An admin's POST of `body`.
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(&self.admin), Some(body)).await
    }

    /// An admin's POST of `body`, which must be refused as invalid (422):
    /// the answer.
    async fn post_invalid(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, body).await;
        let name = self.backend.name();
        assert_eq!(status, 422, "{name}: POST {path}: {answer}");
        answer
    }

    /// An admin's PUT of `body`.
    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PUT", path, Some(&self.admin), Some(body)).await
    }

    /// An admin's PUT of the overrides of `host`, a resource of `kind`.
    async fn set_overrides(&self, kind: &str, host: &str, body: Value) -> (u16, Value) {
        self.put(&format!("/admin/v1/{kind}/{host}/overrides"), body)
            .await
    }

    /// An admin's DELETE.
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, Some(&self.admin), None).await
    }

    /// Deletes each path of `cases` in turn, which must be answered with the
    /// status beside it (`name`, the backend, names a failure).
    async fn delete_each(&self, name: &str, cases: &[(&str, u16)]) {
        for (path, expected) in cases {
            let (status, body) = self.delete(path).await;
            assert_eq!(status, *expected, "{name}: DELETE {path}: {body}");
        }
    }

    /// Polls a client list until `pred` holds on its sorted hosts.
    async fn wait_hosts(&self, path: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        self.server.wait_hosts(path, pred).await
    }

    /// The resource `host` of the admin list of `kind`, or null.
    async fn admin_resource(&self, kind: &str, host: &str) -> Value {
        let (status, list) = self.get(&format!("/admin/v1/{kind}")).await;
        assert_eq!(status, 200);
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["host"] == host)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Pushes the healthy OpenVPN gateway `pushed.ams` in Amsterdam at
    /// `load` as the agent holding `token`; the answer's status.
    async fn push_pushed_ams(&self, token: &str, load: f64) -> u16 {
        let mut g = gateway("pushed.ams", "amsterdam");
        g["type"] = "openvpn".into();
        g["healthy"] = true.into();
        g["load"] = load.into();
        self.server
            .push("gateways", Some(token), &json!([g]))
            .await
            .0
    }

    async fn audit(&self) -> Vec<Value> {
        let (status, list) = self.get("/admin/v1/audit").await;
        assert_eq!(status, 200, "{list}");
        list.as_array().unwrap().clone()
    }

    /// The audit log, whose actions, newest first, must be `expected`
    /// (`name`, the backend, names a failure).
    async fn audit_of(&self, expected: &[&str], name: &str) -> Vec<Value> {
        let audit = self.audit().await;
        assert_eq!(actions(&audit), expected, "{name}");
        audit
    }
}

fn gateway(host: &str, location: &str) -> Value {
    json!({"host": host, "ip_addr": "198.51.100.7", "location": location, "port": 1194,
           "transport": "udp"})
}

/// The actions of audit entries.
fn actions(audit: &[Value]) -> Vec<&str> {
    audit
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect()
}

fn has(hosts: &[String], host: &str) -> bool {
    hosts.iter().any(|h| h == host)
}
