//! Starting the real server in-process, once per store backend.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use menshen::config::Settings;
use menshen::store::Engine;
use menshen_e2e::TestDatabase;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A store for one test: SQLite in a temporary folder, or a fresh Postgres
/// database.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase, tempfile::TempDir),
}

impl Backend {
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

    /// Settings for this store. The tests' gateways and bridges are at
    /// documentation and loopback addresses, so those are allowed
    /// (`--allow-private-addresses`); the tests of that rule turn it off.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::with_data_dir(self.data_dir());
        settings.engine = self.engine();
        settings.allow_private_addresses = true;
        settings
    }
}

/// SQLite always; Postgres when a server answers (or is required).
pub async fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Sqlite(tempfile::tempdir().unwrap())];
    if let Some(db) = TestDatabase::create().await {
        list.push(Backend::Postgres(db, tempfile::tempdir().unwrap()));
    }
    list
}

/// The real server on a port chosen by the system, stopped when dropped.
pub struct TestServer {
    pub url: String,
    pub metrics_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Writes `provider_file` next to the store and serves it.
    pub async fn start(backend: &Backend, provider_file: &str) -> TestServer {
        let path = backend.data_dir().join("provider.toml");
        std::fs::write(&path, provider_file).unwrap();
        let mut settings = backend.settings();
        settings.provider_file = Some(path);
        Self::start_with(settings).await
    }

    pub async fn start_with(settings: Settings) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let metrics_url = format!("http://{}", metrics.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(menshen::launch(settings, listener, Some(metrics), async {
            let _ = stopped.await;
        }));
        let server = TestServer {
            url,
            metrics_url,
            stop: Some(stop),
            task: Some(task),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.url)).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server at {} never became ready", self.url);
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
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// GET and parse JSON, asserting the status.
pub async fn get_json(url: &str, status: u16) -> serde_json::Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status().as_u16(), status, "GET {url}");
    response.json().await.unwrap()
}

/// The provider file the contract tests serve.
pub const CONTRACT_FILE: &str = include_str!("../fixtures/contract.toml");
