//! Three menshen replicas on one Postgres behind a real Traefik (TLS with a
//! test CA, HTTP/2, health checks, retries of idempotent requests, trusted
//! X-Forwarded-For): clients and agents reach menshen only through it.
//! A replica is killed and comes back, and Postgres is really stopped and
//! started, while clients and agents keep going.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use menshen_e2e::peers::{free_tcp_port, openssl_ca, path_str};
use menshen_e2e::tools::{PrivatePostgres, oteltap, tls_certificate, traefik};
use menshen_e2e::{Menshen, Process, binary};
use serde_json::{Value, json};

const HOST: &str = "api.vpn.test";

const PROVIDER: &str = r#"
[provider]
domain = "vpn.test"
api_uri = "https://api.vpn.test"

[locations.amsterdam]
display_name = "Amsterdam"
country_code = "NL"
lat = 52.37
lon = 4.89
timezone = 1

[locations.tokyo]
display_name = "Tokyo"
country_code = "JP"
lat = 35.68
lon = 139.69
timezone = 9

[[gateway]]
host = "gw.ams"
ip_addr = "192.0.2.1"
location = "amsterdam"
port = 1194
transport = "udp"

[[gateway]]
host = "gw.tyo"
ip_addr = "192.0.2.2"
location = "tokyo"
port = 1194
transport = "udp"
"#;

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
        attempts: 5
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
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn signing_key(dir: &Path) -> PathBuf {
    let path = dir.join("signing.key");
    // 32 fixed bytes, base64: every replica and the CLI share it.
    std::fs::write(&path, "bWVuc2hlbi10cmFlZmlrLXN0b3J5LXNpZ25pbmcta2V5IQ==\n").unwrap();
    path
}

fn menshen_cli(args: &[&str]) -> String {
    let out = Command::new(binary("menshen"))
        .args(args)
        .output()
        .expect("menshen runs");
    assert!(
        out.status.success(),
        "menshen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_traefik_survive_a_crash_and_a_database_outage() {
    let Some(traefik_bin) = traefik() else {
        return;
    };
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca_cert, ca_key) = openssl_ca(dir.path());
    let (proxy_cert, proxy_key) = tls_certificate(dir.path(), &ca_cert, &ca_key, HOST, "127.0.0.1");
    let provider = dir.path().join("provider.toml");
    std::fs::write(&provider, PROVIDER).unwrap();
    let geoip = write_geoip(dir.path());
    let key = signing_key(dir.path());

    let ports: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
    let common: Vec<String> = [
        "--database-url",
        &pg.url,
        "--config",
        path_str(&provider),
        "--signing-key-file",
        path_str(&key),
        "--ca-cert",
        path_str(&ca_cert),
        "--ca-key",
        path_str(&ca_key),
        "--geoip-db",
        path_str(&geoip),
        "--trusted-proxies",
        "127.0.0.1",
        "--resource-ttl",
        "8s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let start_replica = |port: u16| {
        let listen = format!("127.0.0.1:{port}");
        let mut args: Vec<&str> = common.iter().map(String::as_str).collect();
        args.extend(["--listen", &listen]);
        Menshen::start(&args)
    };
    let mut replicas: Vec<Option<Menshen>> = std::thread::scope(|s| {
        let started: Vec<_> = ports
            .iter()
            .map(|&p| s.spawn(move || start_replica(p)))
            .collect();
        started
            .into_iter()
            .map(|h| Some(h.join().unwrap()))
            .collect()
    });

    // Traefik's health checks go to /readyz, as the chart's probes do: it
    // stays 200 while the database is unreachable, so the outage takes no
    // replica out of rotation.
    let mut traefik = Traefik::start(
        &traefik_bin,
        dir.path(),
        &traefik_dynamic(&proxy_cert, &proxy_key, &ports, "/readyz"),
        &[],
    );
    let client = h2_client(&ca_cert, &traefik);
    let gateways_url = traefik.url("/api/5/gateways");
    assert!(
        wait_until(PATIENCE, || async {
            client
                .get(traefik.url("/provider.json"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "Traefik never routed to menshen:\n{}",
        std::fs::read_to_string(dir.path().join("traefik.log")).unwrap_or_default()
    );

    // HTTP/2 over TLS, as bitmask-core speaks it.
    let response = client.get(&gateways_url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    // Placement through Traefik: X-Forwarded-For from a trusted hop is
    // believed, so a Dutch address gets Amsterdam first; without it the
    // client's own address (in Japan here) counts.
    let dutch: Value = client
        .get(&gateways_url)
        .header("X-Forwarded-For", "203.0.113.5")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dutch[0]["location"], "amsterdam", "{dutch}");
    let local = list(&client, &gateways_url).await;
    assert_eq!(local[0]["location"], "tokyo", "{local}");

    // Agents: two pushing as fast as they can, through Traefik, and a real
    // menshen-agent with one bridge.
    let store_args = [
        "--database-url",
        pg.url.as_str(),
        "--signing-key-file",
        path_str(&key),
    ];
    let token = |name: &str| {
        let mut args = vec!["agent", "create", name];
        args.extend(store_args);
        menshen_cli(&args)
    };
    let push_url = traefik.url("/api/5/agent/gateways");
    let pushers: Vec<Pusher> = (0..2)
        .map(|i| {
            Pusher::start(
                &client,
                push_url.clone(),
                token(&format!("storm-{i}")),
                format!("storm-{i}.ams"),
            )
        })
        .collect();
    let token_file = dir.path().join("agent.token");
    std::fs::write(&token_file, token("ams1")).unwrap();
    let bridge_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let state = dir.path().join("obfs4");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("obfs4_bridgeline.txt"),
        "Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=bWVuc2hlbiB0cmFlZmlrIHN0b3J5IGJyaWRnZS4uLi4uLi4uLi4uLi4uLi4uLi4uLi4uLg iat-mode=0\n",
    )
    .unwrap();
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"
menshen_url = "https://127.0.0.1:{port}"
token_file = "{token}"
interval = "1s"
check_interval = "500ms"

[retry]
initial = "200ms"
max = "2s"

[host]
name = "ams1.vpn.test"
ip_addr = "127.0.0.1"
location = "amsterdam"

[[obfs4]]
host = "br1.ams1.vpn.test"
port = {bridge}
state_dir = "{state}"
probe_addr = "127.0.0.1:{bridge}"
"#,
            port = traefik.port,
            token = path_str(&token_file),
            bridge = bridge_port.local_addr().unwrap().port(),
            state = path_str(&state),
        ),
    )
    .unwrap();
    let mut agent = {
        let mut command = Command::new(binary("menshen-agent"));
        command
            .args(["--config", path_str(&agent_config)])
            .env("RUST_LOG", "info")
            // The agent trusts the test CA that Traefik's certificate chains to.
            .env("SSL_CERT_FILE", &ca_cert)
            .env_remove("MENSHEN_AGENT_TOKEN")
            .env_remove("MENSHEN_AGENT_URL");
        Process::spawn(command)
    };
    let bridges_url = traefik.url("/api/5/bridges");
    assert!(
        wait_until(PATIENCE, || async {
            find(&list(&client, &bridges_url).await, "br1.ams1.vpn.test").is_some()
        })
        .await,
        "the agent's bridge never got listed:\n{}",
        agent.drain_log()
    );

    // 1. kill -9 one replica under client load: no client sees a failure.
    let load = ClientLoad::start(&client, gateways_url.clone(), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(replicas[0].take()); // SIGKILL
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.assert_no_failures("replica killed");

    // 2. It comes back on the same port and rejoins: Traefik sends it
    //    clients again.
    let back = start_replica(ports[0]);
    let rejoined = wait_until(PATIENCE, || async {
        served_lists(&back.metrics_url).await > 0
    })
    .await;
    assert!(rejoined, "the restarted replica got no clients");
    replicas[0] = Some(back);
    load.assert_no_failures("replica back");

    // 3. Postgres really stopped for 30 s: clients keep getting answers,
    //    nothing pushed expires (8 s TTL), pushes are refused, not lost.
    // Only what the agent logs from now on counts below.
    agent.drain_log();
    pg.stop();
    let stopped = Instant::now();
    let refused_before: u64 = pushers
        .iter()
        .map(|p| p.refused.load(Ordering::Relaxed))
        .sum();
    while stopped.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let bridges = list(&client, &bridges_url).await;
        assert!(
            find(&bridges, "br1.ams1.vpn.test").is_some(),
            "the bridge expired during the outage ({:?} in)",
            stopped.elapsed()
        );
    }
    let refused_during: u64 = pushers
        .iter()
        .map(|p| p.refused.load(Ordering::Relaxed))
        .sum::<u64>()
        - refused_before;
    assert!(refused_during > 0, "pushes were refused during the outage");
    load.assert_no_failures("database stopped");

    // 4. Postgres back: agents' pushes are accepted again.
    pg.start_again();
    let back_at = Instant::now();
    assert!(
        agent
            .wait_for_line(PATIENCE, |l| l.contains("succeeded after"))
            .is_some(),
        "menshen-agent never pushed again:\n{}",
        agent.drain_log()
    );
    eprintln!(
        "menshen-agent pushed again {:?} after Postgres was back",
        back_at.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.assert_no_failures("database back");
    let (answered, _) = load.counts();
    load.stop().await;
    eprintln!("{answered} client requests through Traefik, none failed");

    // No acknowledged push was lost: every replica lists each pusher's
    // last acknowledged load.
    for (i, pusher) in pushers.into_iter().enumerate() {
        let acked = pusher.stop().await.expect("some pushes were acknowledged");
        let host = format!("storm-{i}.ams");
        for replica in replicas.iter().flatten() {
            let url = format!("{}/api/5/gateways", replica.url);
            let stored = wait_until(PATIENCE, || async {
                let list: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
                find(&list, &host).is_some_and(|g| g["load"].as_f64() == Some(acked))
            })
            .await;
            assert!(
                stored,
                "{host}: the last acknowledged load {acked} is not listed at {url}"
            );
        }
    }
    let _ = agent.terminate(Duration::from_secs(5));
    let _ = traefik.process.terminate(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_agent_traefik_menshen_and_the_store() {
    let (Some(traefik_bin), Some(oteltap_bin)) = (traefik(), oteltap()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let otlp_port = free_tcp_port();
    let mut receiver = {
        let mut command = Command::new(&oteltap_bin);
        command
            .args(["--port", &otlp_port.to_string()])
            .stdout(Stdio::piped());
        OtlpReceiver::spawn(command)
    };
    let relay_port = free_tcp_port();
    let _relay = gunzip_relay(&oteltap_bin, relay_port, otlp_port);
    let (ca_cert, ca_key) = openssl_ca(dir.path());
    let (proxy_cert, proxy_key) = tls_certificate(dir.path(), &ca_cert, &ca_key, HOST, "127.0.0.1");
    let provider = dir.path().join("provider.toml");
    std::fs::write(&provider, PROVIDER).unwrap();
    let data = dir.path().join("data");
    let data_dir = path_str(&data);
    let port = free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let endpoint = format!("http://127.0.0.1:{otlp_port}");
    let menshen = Menshen::start_with_env(
        &[
            "--config",
            path_str(&provider),
            "--data-dir",
            data_dir,
            "--listen",
            &listen,
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "menshen-e2e"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let traefik = Traefik::start(
        &traefik_bin,
        dir.path(),
        &traefik_dynamic(&proxy_cert, &proxy_key, &[port], "/readyz"),
        // Traefik gzips what it exports, which oteltap does not read: it
        // goes through a small unzipping relay.
        &[
            format!("--tracing.otlp.http.endpoint=http://127.0.0.1:{relay_port}/v1/traces"),
            "--tracing.serviceName=traefik".into(),
        ],
    );
    let client = h2_client(&ca_cert, &traefik);
    assert!(
        wait_until(PATIENCE, || async {
            client
                .get(traefik.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await
    );
    let token = menshen_cli(&["agent", "create", "ams1", "--data-dir", data_dir]);
    let token_file = dir.path().join("agent.token");
    std::fs::write(&token_file, &token).unwrap();
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "menshen_url = \"https://127.0.0.1:{}\"\ntoken_file = \"{}\"\n\n[host]\nname = \"ams1.vpn.test\"\n\
             ip_addr = \"127.0.0.1\"\nlocation = \"amsterdam\"\n",
            traefik.port,
            path_str(&token_file)
        ),
    )
    .unwrap();
    let out = Command::new(binary("menshen-agent"))
        .args(["--config", path_str(&agent_config), "--once"])
        .env("RUST_LOG", "menshen_agent=debug")
        .env("SSL_CERT_FILE", &ca_cert)
        .env_remove("MENSHEN_AGENT_TOKEN")
        .env_remove("MENSHEN_AGENT_URL")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let trace_id = log
        .split("trace_id=")
        .nth(1)
        .and_then(|rest| rest.get(..32))
        .unwrap_or_else(|| panic!("no trace id in the agent's log:\n{log}"))
        .to_owned();
    // A client with an invite token, which must not show in any span.
    let invite = "0123456789abcdef.s3cr3t-invite-secret-never-exported";
    client
        .get(traefik.url("/api/5/gateways"))
        .header("x-menshen-auth-token", invite)
        .send()
        .await
        .unwrap();

    // menshen's request span (over OTLP/HTTP) is a child of Traefik's span
    // (over gRPC), which continues the agent's traceparent; the store
    // transaction is a child of menshen's span.
    let is_request =
        |s: &Value| s["traceId"] == trace_id && s["name"] == "PUT /api/5/agent/gateways";
    let spans = receiver.spans_until(PATIENCE, |spans| {
        spans.iter().filter(|s| is_request(s)).any(|request| {
            spans
                .iter()
                .any(|s| s["name"] == "store.push" && s["parentSpanId"] == request["spanId"])
        }) && spans.iter().any(|s| s["name"] == "GET /api/5/gateways")
    });
    let of_trace: Vec<&Value> = spans.iter().filter(|s| s["traceId"] == trace_id).collect();
    let request = of_trace
        .iter()
        .find(|s| is_request(s))
        .unwrap_or_else(|| panic!("no menshen request span in {of_trace:#?}"));
    let parent_id = request["parentSpanId"].clone();
    let spans = receiver.spans_until(PATIENCE, |spans| {
        spans.iter().any(|s| s["spanId"] == parent_id)
    });
    let parent = spans
        .iter()
        .find(|s| s["spanId"] == parent_id)
        .unwrap_or_else(|| {
            panic!("menshen's parent {parent_id} is not among the spans: {spans:#?}")
        });
    assert_eq!(
        parent["traceId"],
        trace_id.as_str(),
        "Traefik continued the agent's trace"
    );
    assert_eq!(parent["kind"], 3, "Traefik's span towards menshen");
    let push = of_trace
        .iter()
        .find(|s| s["name"] == "store.push" && s["parentSpanId"] == request["spanId"])
        .unwrap_or_else(|| panic!("no store span under the request: {of_trace:#?}"));
    assert_eq!(push["kind"], 3, "a client span");
    let text = serde_json::to_string(&spans).unwrap();
    for secret in [token.as_str(), "s3cr3t-invite-secret-never-exported"] {
        assert!(!text.contains(secret), "a secret in the exported spans");
    }
    drop(menshen);
}

/// An HTTP relay that unzips OTLP/HTTP bodies for oteltap, with the Python
/// of oteltap's venv.
fn gunzip_relay(oteltap: &Path, port: u16, to: u16) -> ChildGuard {
    let python = oteltap.with_file_name("python3");
    let python = if python.is_file() {
        python
    } else {
        PathBuf::from("python3")
    };
    let script = r#"
import gzip, sys, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
port, to = int(sys.argv[1]), int(sys.argv[2])
class Relay(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        req = urllib.request.Request(f"http://127.0.0.1:{to}{self.path}", data=body,
            headers={"Content-Type": self.headers.get("Content-Type", "application/x-protobuf")})
        with urllib.request.urlopen(req) as r:
            answer = r.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", port), Relay).serve_forever()
"#;
    let child = Command::new(python)
        .args(["-c", script, &port.to_string(), &to.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs the relay");
    ChildGuard(child)
}

/// A child process killed when dropped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// oteltap, printing what it receives as NDJSON on stdout.
struct OtlpReceiver {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    spans: Vec<Value>,
}

impl OtlpReceiver {
    fn spawn(mut command: Command) -> OtlpReceiver {
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        OtlpReceiver {
            child,
            lines,
            spans: Vec::new(),
        }
    }

    /// Every span received until `done` holds for them (or `timeout`).
    fn spans_until(&mut self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        while !done(&self.spans) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v.get("spanId").is_some()
                    {
                        self.spans.push(v);
                    }
                }
                Err(_) => break,
            }
        }
        self.spans.clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
