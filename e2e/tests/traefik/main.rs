//! Three menshen replicas on one Postgres behind a real Traefik (TLS with a
//! test CA, HTTP/2, health checks, retries of idempotent requests, trusted
//! X-Forwarded-For): clients and agents reach menshen only through it.
//! A replica is killed and comes back, and Postgres is really stopped and
//! started, while clients and agents keep going.

mod replicas;
mod trace;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use menshen_e2e::peers::{free_tcp_port, openssl_ca, path_str};
use menshen_e2e::tools::{PrivatePostgres, oteltap, tls_certificate, traefik};
use menshen_e2e::{
    KillOnDrop, Menshen, Process, ProviderFile, agent_command, lines_of, write_agent_config,
};
use serde_json::{Value, json};

const HOST: &str = "api.vpn.test";

/// Two places far apart, a gateway in each.
fn provider_file() -> ProviderFile {
    ProviderFile::new()
        .place("amsterdam")
        .place("tokyo")
        .gateway("gw.ams", "192.0.2.1", "amsterdam")
        .gateway("gw.tyo", "192.0.2.2", "tokyo")
}

/// Generous limits for things that should happen quickly: the story checks
/// that they happen, not how fast.
const PATIENCE: Duration = Duration::from_secs(20);

fn write_geoip(dir: &Path) -> PathBuf {
    // The test's own address (127.0.0.1, Traefik's too) is in Japan.
    let records = json!([
        {"network": "203.0.113.0/26", "country": "NL", "lat": 52.1, "lon": 5.1},
        {"network": "127.0.0.0/8", "country": "JP", "lat": 35.7, "lon": 139.7},
    ]);
    menshen_e2e::write_geoip(dir, "city", &records)
}

/// Traefik's dynamic configuration: TLS, a router with retries for
/// idempotent requests and one without for the rest, health checks.
fn traefik_dynamic(cert: &Path, key: &Path, backends: &[u16], health_path: &str) -> String {
    let servers: String = backends
        .iter()
        .map(|p| format!("          - url: \"http://127.0.0.1:{p}\"\n"))
        .collect();
    format!(
        r#"tls:
  certificates:
    - certFile: "{cert}"
      keyFile: "{key}"
http:
  routers:
    reads:
      rule: "Method(`GET`) || Method(`HEAD`)"
      entryPoints: [websecure]
      service: menshen
      middlewares: [retry]
      tls: {{}}
    writes:
      rule: "PathPrefix(`/`)"
      priority: 1
      entryPoints: [websecure]
      service: menshen
      tls: {{}}
  middlewares:
    # A request caught by a replica's crash after it was sent ends as
    # Traefik's own 502 for that attempt: retried as well (reads only).
    # More attempts than replicas: until the health check takes the
    # crashed one out, the load balancer may pick it again.
    retry:
      retry:
        attempts: 10
        initialInterval: 20ms
        status: ["502", "504"]
  serversTransports:
    menshen:
      forwardingTimeouts:
        dialTimeout: 1s
        # below menshen's --idle-timeout, so that Traefik, not menshen,
        # closes idle connections
        idleConnTimeout: 20s
  services:
    menshen:
      loadBalancer:
        serversTransport: menshen
        servers:
{servers}        healthCheck:
          path: "{health_path}"
          interval: 250ms
          timeout: 500ms
"#,
        cert = path_str(cert),
        key = path_str(key),
    )
}

struct Traefik {
    process: Process,
    port: u16,
}

impl Traefik {
    fn start(binary: &Path, dir: &Path, dynamic: &str, extra: &[String]) -> Traefik {
        let file = dir.join("dynamic.yml");
        std::fs::write(&file, dynamic).unwrap();
        let port = free_tcp_port();
        let mut command = Command::new(binary);
        command
            .arg("--global.checkNewVersion=false")
            .arg("--global.sendAnonymousUsage=false")
            .arg(format!("--entryPoints.websecure.address=127.0.0.1:{port}"))
            // The test client stands for a load balancer in front: its
            // X-Forwarded-For is kept (and 127.0.0.1 appended).
            .arg("--entryPoints.websecure.forwardedHeaders.trustedIPs=127.0.0.1/32")
            .arg(format!("--providers.file.filename={}", path_str(&file)))
            .arg("--log.level=INFO")
            .arg(format!(
                "--log.filePath={}",
                path_str(&dir.join("traefik.log"))
            ))
            .stdout(Stdio::null())
            .args(extra);
        Traefik {
            process: Process::spawn(command),
            port,
        }
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.port)
    }
}

/// An h2-only HTTPS client (bitmask-core speaks only HTTP/2 over https)
/// trusting the test CA and reaching `HOST` at Traefik.
fn h2_client(ca: &Path, traefik: &Traefik) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .http2_prior_knowledge()
        .resolve(HOST, traefik.address())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> bool {
    let met = menshen_e2e::wait::poll(timeout, || {
        let done = f();
        async move { done.await.then_some(()) }
    });
    met.await.is_some()
}

/// Whether `path` answers 200 through Traefik to `client` within
/// [`PATIENCE`]: Traefik routes to a backend once its health check passed.
async fn routed(client: &reqwest::Client, traefik: &Traefik, path: &str) -> bool {
    wait_until(PATIENCE, || async {
        client
            .get(traefik.url(path))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
}

fn signing_key(dir: &Path) -> PathBuf {
    let path = dir.join("signing.key");
    // 32 fixed bytes, base64: every replica and the CLI share it.
    std::fs::write(&path, "bWVuc2hlbi10cmFlZmlrLXN0b3J5LXNpZ25pbmcta2V5IQ==\n").unwrap();
    path
}

fn menshen_cli(args: &[&str]) -> String {
    menshen_e2e::menshen_cli(args).trim().to_owned()
}

/// The count of `GET /api/5/gateways` answered 200 by a replica, from its
/// metrics.
async fn served_lists(metrics_url: &str) -> u64 {
    let Ok(response) = reqwest::get(format!("{metrics_url}/metrics")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find(|l| {
            l.starts_with(
                r#"menshen_http_requests_total{method="GET",route="/api/5/gateways",status="200"}"#,
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Clients asking for gateways through Traefik until told to stop; every
/// answer that is not a 200 with a non-empty list is a failure.
struct ClientLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_failure: Arc<std::sync::Mutex<Option<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ClientLoad {
    fn start(client: &reqwest::Client, url: String, workers: usize) -> ClientLoad {
        let load = ClientLoad {
            stop: Arc::default(),
            ok: Arc::default(),
            failed: Arc::default(),
            first_failure: Arc::default(),
            tasks: Vec::new(),
        };
        let tasks = (0..workers)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                let (stop, ok, failed) = (load.stop.clone(), load.ok.clone(), load.failed.clone());
                let first = load.first_failure.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let problem = match client.get(&url).send().await {
                            Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                                Ok(v) if v.as_array().is_some_and(|a| !a.is_empty()) => None,
                                other => Some(format!("bad body: {other:?}")),
                            },
                            Ok(r) => Some(format!("status {}", r.status())),
                            Err(e) => Some(format!("{e:?}")),
                        };
                        match problem {
                            None => ok.fetch_add(1, Ordering::Relaxed),
                            Some(p) => {
                                first.lock().unwrap().get_or_insert(p);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        ClientLoad { tasks, ..load }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn assert_no_failures(&self, phase: &str) {
        let (ok, failed) = self.counts();
        assert!(ok > 0, "{phase}: no client request answered");
        assert_eq!(
            failed,
            0,
            "{phase}: {failed} of {} client requests failed; first: {:?}",
            ok + failed,
            self.first_failure.lock().unwrap()
        );
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// An agent pushing through Traefik as fast as it is answered, a new load
/// each time, remembering the last load menshen acknowledged.
struct Pusher {
    stop: Arc<AtomicBool>,
    acked: Arc<std::sync::Mutex<Option<f64>>>,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Pusher {
    fn start(client: &reqwest::Client, url: String, token: String, host: String) -> Pusher {
        let stop: Arc<AtomicBool> = Arc::default();
        let acked: Arc<std::sync::Mutex<Option<f64>>> = Arc::default();
        let refused: Arc<AtomicU64> = Arc::default();
        let task = {
            let (client, stop, acked, refused) =
                (client.clone(), stop.clone(), acked.clone(), refused.clone());
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let load = f64::from(n % 100) / 100.0;
                    let body = json!([{"host": host, "ip_addr": "198.51.100.9", "location": "amsterdam",
                        "port": 1194, "transport": "udp", "type": "openvpn", "load": load, "healthy": true}]);
                    let answer = client
                        .put(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status().is_success() => *acked.lock().unwrap() = Some(load),
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Pusher {
            stop,
            acked,
            refused,
            task,
        }
    }

    /// Stops and returns the last acknowledged load.
    async fn stop(self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        *self.acked.lock().unwrap()
    }
}

fn find<'a>(list: &'a Value, host: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|g| g["host"] == host)
}

async fn list(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}
