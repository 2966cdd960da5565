//! Starting the real server in-process, once per store backend, and
//! talking to it as clients, agents and operators do.

#![allow(dead_code, unused_imports, unused_macros)]

use std::path::Path;
use std::time::Duration;

use menshen::auth::SigningKey;
use menshen::auth::admin::Role;
use menshen::config::Settings;
use menshen::store::{AuditEntry, Engine, Store, now_millis};
use menshen_e2e::TestDatabase;
pub use menshen_e2e::{PATIENCE, ProviderFile, eventually, sorted_hosts};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A store for one test: SQLite in a temporary folder, or a fresh Postgres
/// database.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase, tempfile::TempDir),
}

impl Backend {
    pub fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    /// A fresh Postgres database, or `None` when no server answers (and
    /// none is required).
    pub async fn postgres() -> Option<Backend> {
        let db = TestDatabase::create().await?;
        Some(Backend::Postgres(db, tempfile::tempdir().unwrap()))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(..) => "postgres",
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Backend::Sqlite(dir) => Engine::Sqlite(dir.path().join("menshen.sqlite")),
            Backend::Postgres(db, _) => Engine::Postgres(db.url.clone()),
        }
    }

    pub fn data_dir(&self) -> &Path {
        match self {
            Backend::Sqlite(dir) | Backend::Postgres(_, dir) => dir.path(),
        }
    }

    /// The Postgres database's name, to cut it off; `None` on SQLite.
    pub fn database_name(&self) -> Option<String> {
        match self {
            Backend::Sqlite(_) => None,
            Backend::Postgres(db, _) => Some(db.url.rsplit('/').next().unwrap().to_owned()),
        }
    }

    /// Settings for this store. The tests' gateways and bridges are at
    /// documentation and loopback addresses, so those are allowed
    /// (`--allow-private-addresses`); the tests of that rule turn it off.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::with_data_dir(self.data_dir());
        settings.engine = self.engine();
        settings.allow_private_addresses = true;
        settings
    }

    /// [`Backend::settings`] serving `provider_file`, written next to the
    /// store.
    pub fn serving(&self, provider_file: impl AsRef<str>) -> Settings {
        let path = self.data_dir().join("provider.toml");
        std::fs::write(&path, provider_file.as_ref()).unwrap();
        let mut settings = self.settings();
        settings.provider_file = Some(path);
        settings
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.engine()).await.unwrap()
    }
}

/// SQLite always; Postgres when a server answers (or is required).
pub async fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::sqlite()];
    list.extend(Backend::postgres().await);
    list
}

/// `on_each_backend!(story, ...)`: for each `async fn story(Backend)`, a
/// module `story` of two tests, `story::sqlite` and `story::postgres` (which
/// is skipped with a note when no Postgres answers and none is required).
macro_rules! on_each_backend {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                super::$scenario($crate::common::Backend::sqlite()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = $crate::common::Backend::postgres().await {
                    super::$scenario(backend).await;
                }
            }
        }
    )+};
}
pub(crate) use on_each_backend;

/// The real server on a port chosen by the system, stopped when dropped.
pub struct TestServer {
    pub url: String,
    pub metrics_url: String,
    pub settings: Settings,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Writes `provider_file` next to the store and serves it.
    pub async fn start(backend: &Backend, provider_file: impl AsRef<str>) -> TestServer {
        Self::start_with(backend.serving(provider_file)).await
    }

    pub async fn start_with(settings: Settings) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let metrics_url = format!("http://{}", metrics.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(menshen::launch(
            settings.clone(),
            listener,
            Some(metrics),
            async {
                let _ = stopped.await;
            },
        ));
        let server = TestServer {
            url,
            metrics_url,
            settings,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        };
        eventually(
            format_args!("the server at {} to be ready", server.url),
            PATIENCE,
            || async {
                let task = server.task.as_ref().unwrap();
                assert!(
                    !task.is_finished(),
                    "the server stopped before it was ready"
                );
                reqwest::get(server.url("/readyz"))
                    .await
                    .is_ok_and(|r| r.status() == 200)
            },
        )
        .await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Stops the server and returns how `launch` ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }

    /// The key the server signs and checks its own tokens with.
    pub fn key(&self) -> SigningKey {
        SigningKey::load(&self.settings.signing_key, &self.settings.data_dir).unwrap()
    }

    /// A token of the server's own for `subject`, valid for ten minutes.
    pub fn admin_token(&self, subject: &str, role: Role) -> String {
        self.key()
            .mint_admin_token(subject, role, now_millis() / 1000, 600)
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.settings.engine).await.unwrap()
    }

    /// Creates agent `name` in the store as `menshen agent create` does and
    /// returns a token of it, valid for an hour.
    pub async fn new_agent(&self, name: &str) -> String {
        let store = self.store().await;
        let token_id = menshen::auth::random_id(16);
        store
            .create_agent(name, &token_id, now_millis(), audit("agent.create", name))
            .await
            .unwrap();
        store.close().await;
        self.key()
            .mint_agent_token(name, &token_id, now_millis() / 1000, 3600)
    }

    /// `method path` with `token` (a bearer token) and a JSON `body`, if
    /// any: the status and the JSON answer (null when it is none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// An agent's push: `PUT /api/5/agent/{what}`.
    pub async fn push(&self, what: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.call("PUT", &format!("/api/5/agent/{what}"), token, Some(body))
            .await
    }

    /// A client list (or any JSON) at `path`, which must answer 200.
    pub async fn json(&self, path: &str) -> Value {
        get_json(&self.url(path), 200).await
    }

    /// The entity tag of the answer at `path`.
    pub async fn etag(&self, path: &str) -> String {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        response.headers()["etag"].to_str().unwrap().to_owned()
    }

    /// GET `path` as a client holding the answer tagged `etag` asks again
    /// (`If-None-Match`).
    pub async fn revalidate(&self, path: &str, etag: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap()
    }

    /// The hosts of the client list at `path`, sorted.
    pub async fn hosts(&self, path: &str) -> Vec<String> {
        sorted_hosts(&self.json(path).await)
    }

    /// Polls the client list at `path` until its sorted hosts satisfy
    /// `pred`, and returns them.
    pub async fn wait_hosts(&self, path: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        eventually(format_args!("the hosts of {path}"), PATIENCE, || async {
            let hosts = self.hosts(path).await;
            if pred(&hosts) { Ok(hosts) } else { Err(hosts) }
        })
        .await
    }

    /// How many snapshots the server has swapped in (`/readyz`).
    pub async fn generation(&self) -> u64 {
        self.json("/readyz").await["generation"]
            .as_u64()
            .expect("/readyz tells the generation")
    }

    /// Waits until the server has swapped in a snapshot after generation
    /// `seen`: what was changed before `seen` was read is in it, or was
    /// left out for good.
    pub async fn rebuilt_since(&self, seen: u64) {
        eventually(
            format_args!("a snapshot after generation {seen}"),
            PATIENCE,
            || async { self.generation().await > seen },
        )
        .await;
    }

    /// `/healthz` once it says the store is up (or not, with `up` false),
    /// within 10 s.
    pub async fn wait_store_up(&self, up: bool) -> Value {
        let what = format_args!("the store to show as up={up}");
        eventually(what, Duration::from_secs(10), || async {
            let health = self.json("/healthz").await;
            if health["store_up"] == up {
                Ok(health)
            } else {
                Err(health)
            }
        })
        .await
    }

    /// The metrics exposition.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The audit entry of a change a test makes in the store itself, as an
/// operator named `test`.
pub fn audit(action: &str, target: &str) -> AuditEntry {
    AuditEntry::new("test", action, target, now_millis())
}

/// The value of a sample in a metrics exposition.
pub use menshen_e2e::http::sample;

/// GET and parse JSON, asserting the status.
pub async fn get_json(url: &str, status: u16) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status().as_u16(), status, "GET {url}");
    response.json().await.unwrap()
}

/// Asserts that the `message` of an answer (or of one of its `fields`)
/// says `needle`.
pub fn assert_says(body: &Value, needle: &str) {
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("a message in {body}"));
    assert!(message.contains(needle), "{needle:?} in {body}");
}

/// Asserts that `response`'s content type starts with `expected`.
pub fn assert_content_type(response: &reqwest::Response, expected: &str) {
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with(expected), "{content_type}");
}

/// The string `key` of each item of the JSON list `list`, in its order.
pub fn strings_of<'a>(list: &'a Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("a JSON array: {list}"))
        .iter()
        .map(|item| item[key].as_str().unwrap())
        .collect()
}

/// The fields a 422 answer names, in its order.
pub fn named_fields(body: &Value) -> Vec<&str> {
    body["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("fields in {body}"))
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect()
}

/// Runs the `menshen` CLI with `args` on `backend`'s store, as operator
/// `user`, with the server's signing key from the data folder.
pub fn cli(backend: &Backend, user: &str, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_menshen"));
    command
        .args(args)
        .arg("--data-dir")
        .arg(backend.data_dir())
        .env_remove("MENSHEN_SIGNING_KEY")
        .env_remove("MENSHEN_SIGNING_KEY_FILE")
        .env("USER", user);
    match backend.engine() {
        Engine::Postgres(url) => command.env("MENSHEN_DATABASE_URL", url),
        Engine::Sqlite(_) => command.env_remove("MENSHEN_DATABASE_URL"),
    };
    command.output().unwrap()
}

/// The stdout of a CLI run that must succeed.
pub fn stdout_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The provider file the contract tests serve.
pub const CONTRACT_FILE: &str = include_str!("../fixtures/contract.toml");
