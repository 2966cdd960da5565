//! `/metrics` for Prometheus: the agent's own health (its pushes, the health
//! of what it watches) and what OpenVPN's management interfaces say about
//! their clients, under the names of the widely used OpenVPN exporter
//! (kumina/openvpn_exporter: `openvpn_up`, `openvpn_status_update_time_seconds`,
//! `openvpn_server_connected_clients`, `openvpn_server_client_received_bytes_total`,
//! `openvpn_server_client_sent_bytes_total`, same labels), so that a gateway
//! needs no exporter of its own and dashboards made for that one keep
//! working. Its `status_path` label holds the management interface's
//! address, where that exporter names the status file it read.
//!
//! Served by a small HTTP/1.1 responder on a listener of its own (`GET
//! /metrics`, `GET /healthz`), one request per connection: the agent stays
//! on its single thread and needs no web framework.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::report::{Observation, OpenvpnLook};

/// What the agent last saw and did.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    started: Instant,
    /// `/healthz` fails when the loop has not looked for this long.
    stale_after: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    pushes_ok: u64,
    pushes_failed: u64,
    /// Unix seconds of the last accepted push.
    last_success: Option<f64>,
    last_look: Option<Instant>,
    /// (kind, host, healthy, load)
    resources: Vec<(&'static str, String, bool, f64)>,
    openvpn: Vec<OpenvpnLook>,
}

impl Metrics {
    /// `check_interval` is the loop's pace; `/healthz` fails after several
    /// of them without a look (at least 30 s).
    pub fn new(check_interval: Duration) -> Metrics {
        Metrics {
            inner: Mutex::new(Inner::default()),
            started: Instant::now(),
            stale_after: (check_interval * 5).max(Duration::from_secs(30)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps what one look found.
    pub fn record_observation(&self, obs: &Observation) {
        let mut inner = self.lock();
        inner.last_look = Some(Instant::now());
        inner.resources.clear();
        for g in &obs.report.gateways {
            inner
                .resources
                .push(("gateway", g.host.clone(), g.healthy, g.load));
        }
        for b in &obs.report.bridges {
            inner
                .resources
                .push(("bridge", b.host.clone(), b.healthy, b.load));
        }
        for host in &obs.left_out {
            inner.resources.push(("bridge", host.clone(), false, 0.0));
        }
        inner.openvpn.clone_from(&obs.openvpn);
    }

    /// Counts a push; an accepted one also sets the last success time.
    pub fn record_push(&self, ok: bool) {
        let mut inner = self.lock();
        if ok {
            inner.pushes_ok += 1;
            inner.last_success = Some(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64()),
            );
        } else {
            inner.pushes_failed += 1;
        }
    }

    /// Whether the loop looked recently (or has just started).
    pub fn healthy(&self) -> bool {
        let inner = self.lock();
        let since = inner.last_look.unwrap_or(self.started);
        since.elapsed() < self.stale_after
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(2048);
        header(
            &mut out,
            "menshen_agent_build_info",
            "gauge",
            "The agent's version, as a label; always 1.",
        );
        let _ = writeln!(
            out,
            "menshen_agent_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        header(
            &mut out,
            "menshen_agent_pushes_total",
            "counter",
            "Pushes to menshen (both PUTs of a heartbeat), by outcome.",
        );
        let _ = writeln!(
            out,
            "menshen_agent_pushes_total{{outcome=\"ok\"}} {}\nmenshen_agent_pushes_total{{outcome=\"failed\"}} {}",
            inner.pushes_ok, inner.pushes_failed
        );
        header(
            &mut out,
            "menshen_agent_last_push_success_timestamp_seconds",
            "gauge",
            "Unix time of the last push menshen accepted; 0 before the first.",
        );
        let _ = writeln!(
            out,
            "menshen_agent_last_push_success_timestamp_seconds {}",
            inner.last_success.unwrap_or(0.0)
        );
        resource_gauge(
            &mut out,
            "menshen_agent_resource_healthy",
            "Whether a gateway or bridge this agent reports is healthy (1) or not (0).",
            &inner.resources,
            |healthy, _| u8::from(healthy).to_string(),
        );
        resource_gauge(
            &mut out,
            "menshen_agent_resource_load",
            "The load reported for a gateway or bridge (fraction of its capacity).",
            &inner.resources,
            |_, load| load.to_string(),
        );

        // OpenVPN, as kumina/openvpn_exporter names it.
        header(
            &mut out,
            "openvpn_up",
            "gauge",
            "Whether scraping OpenVPN's metrics was successful.",
        );
        for look in &inner.openvpn {
            let _ = writeln!(
                out,
                "openvpn_up{{status_path=\"{}\"}} {}",
                look.management,
                u8::from(look.up && look.status.is_some())
            );
        }
        header(
            &mut out,
            "openvpn_status_update_time_seconds",
            "gauge",
            "UNIX timestamp at which the OpenVPN statistics were updated.",
        );
        for look in &inner.openvpn {
            if let Some(updated) = look.status.as_ref().and_then(|s| s.updated) {
                let _ = writeln!(
                    out,
                    "openvpn_status_update_time_seconds{{status_path=\"{}\"}} {updated}",
                    look.management
                );
            }
        }
        header(
            &mut out,
            "openvpn_server_connected_clients",
            "gauge",
            "Number Of Connected Clients",
        );
        for look in &inner.openvpn {
            if let Some(status) = &look.status {
                let _ = writeln!(
                    out,
                    "openvpn_server_connected_clients{{status_path=\"{}\"}} {}",
                    look.management,
                    status.clients.len()
                );
            }
        }
        for (name, help, sent) in [
            (
                "openvpn_server_client_received_bytes_total",
                "Amount of data received over a connection on the VPN server, in bytes.",
                false,
            ),
            (
                "openvpn_server_client_sent_bytes_total",
                "Amount of data sent over a connection on the VPN server, in bytes.",
                true,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for look in &inner.openvpn {
                let Some(status) = &look.status else { continue };
                for c in &status.clients {
                    let _ = writeln!(
                        out,
                        "{name}{{common_name=\"{}\",connection_time=\"{}\",real_address=\"{}\",status_path=\"{}\",username=\"{}\",virtual_address=\"{}\"}} {}",
                        escape(&c.common_name),
                        c.connected_since,
                        escape(&c.real_address),
                        look.management,
                        escape(&c.username),
                        escape(&c.virtual_address),
                        if sent { c.bytes_sent } else { c.bytes_received }
                    );
                }
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Gauge `name`, one sample a reported gateway or bridge (labelled with its
/// kind and host): `value` of its health and load.
fn resource_gauge(
    out: &mut String,
    name: &str,
    help: &str,
    resources: &[(&'static str, String, bool, f64)],
    value: impl Fn(bool, f64) -> String,
) {
    header(out, name, "gauge", help);
    for (kind, host, healthy, load) in resources {
        let _ = writeln!(
            out,
            "{name}{{kind=\"{kind}\",host=\"{}\"}} {}",
            escape(host),
            value(*healthy, *load)
        );
    }
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 8;
/// A request must arrive and be answered within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics` and `/healthz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: std::sync::Arc<Metrics>) {
    static OPEN: AtomicUsize = AtomicUsize::new(0);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                debug!("metrics listener: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if OPEN.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            OPEN.fetch_sub(1, Ordering::Relaxed);
            continue; // dropped: closed
        }
        let metrics = std::sync::Arc::clone(&metrics);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, respond(stream, &metrics)).await;
            OPEN.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Reads one request's head and answers it.
async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n")
            || buf[..len].windows(2).any(|w| w == b"\n\n")
        {
            break;
        }
        if len == buf.len() {
            return answer(
                &mut stream,
                "431 Request Header Fields Too Large",
                "",
                false,
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = metrics.render();
            answer(&mut stream, "200 OK", &body, head_only).await
        }
        ("GET" | "HEAD", "/healthz") => {
            if metrics.healthy() {
                answer(&mut stream, "200 OK", "ok\n", head_only).await
            } else {
                answer(
                    &mut stream,
                    "503 Service Unavailable",
                    "the agent's loop has stopped looking\n",
                    head_only,
                )
                .await
            }
        }
        (_, "/metrics" | "/healthz") => {
            answer(&mut stream, "405 Method Not Allowed", "", false).await
        }
        _ => answer(&mut stream, "404 Not Found", "", false).await,
    }
}

async fn answer(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let content_type = if body.starts_with("# HELP") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openvpn::{ClientRow, ServerStatus};
    use menshen_model::Gateway;

    fn observation() -> Observation {
        let mut obs = Observation::default();
        obs.report.gateways.push(Gateway {
            host: "gw1.example.org".into(),
            healthy: true,
            load: 0.01,
            ..Default::default()
        });
        obs.left_out.push("br\"1".into());
        obs.openvpn.push(OpenvpnLook {
            management: "127.0.0.1:7505".parse().unwrap(),
            up: true,
            status: Some(ServerStatus {
                updated: Some(1714644062),
                clients: vec![ClientRow {
                    common_name: "UNLIMITED".into(),
                    real_address: "192.0.2.7:51423".into(),
                    virtual_address: "10.41.0.2".into(),
                    username: "UNDEF".into(),
                    bytes_received: 5302,
                    bytes_sent: 4104,
                    connected_since: 1714644058,
                }],
            }),
        });
        obs.openvpn.push(OpenvpnLook {
            management: "127.0.0.1:7506".parse().unwrap(),
            up: false,
            status: None,
        });
        obs
    }

    #[test]
    fn the_exposition_names_what_the_openvpn_exporter_names() {
        let metrics = Metrics::new(Duration::from_secs(2));
        metrics.record_observation(&observation());
        metrics.record_push(true);
        metrics.record_push(false);
        let text = metrics.render();
        for line in [
            "menshen_agent_pushes_total{outcome=\"ok\"} 1",
            "menshen_agent_pushes_total{outcome=\"failed\"} 1",
            "menshen_agent_resource_healthy{kind=\"gateway\",host=\"gw1.example.org\"} 1",
            "menshen_agent_resource_healthy{kind=\"bridge\",host=\"br\\\"1\"} 0",
            "menshen_agent_resource_load{kind=\"gateway\",host=\"gw1.example.org\"} 0.01",
            "openvpn_up{status_path=\"127.0.0.1:7505\"} 1",
            "openvpn_up{status_path=\"127.0.0.1:7506\"} 0",
            "openvpn_status_update_time_seconds{status_path=\"127.0.0.1:7505\"} 1714644062",
            "openvpn_server_connected_clients{status_path=\"127.0.0.1:7505\"} 1",
            "openvpn_server_client_received_bytes_total{common_name=\"UNLIMITED\",connection_time=\"1714644058\",real_address=\"192.0.2.7:51423\",status_path=\"127.0.0.1:7505\",username=\"UNDEF\",virtual_address=\"10.41.0.2\"} 5302",
            "openvpn_server_client_sent_bytes_total{common_name=\"UNLIMITED\",connection_time=\"1714644058\",real_address=\"192.0.2.7:51423\",status_path=\"127.0.0.1:7505\",username=\"UNDEF\",virtual_address=\"10.41.0.2\"} 4104",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        let success = text
            .lines()
            .find_map(|l| l.strip_prefix("menshen_agent_last_push_success_timestamp_seconds "))
            .unwrap();
        assert!(success.parse::<f64>().unwrap() > 1.7e9, "{success}");
        // Every family is declared once, before its samples.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!declared.contains(&name), "{name} twice");
                declared.push(name);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = name.trim_end_matches("_total");
                assert!(
                    declared.last().is_some_and(|d| *d == name || *d == family),
                    "{line} outside its family"
                );
            }
        }
    }

    #[tokio::test]
    async fn the_responder_serves_metrics_and_health() {
        let metrics = std::sync::Arc::new(Metrics::new(Duration::from_secs(2)));
        metrics.record_observation(&observation());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, std::sync::Arc::clone(&metrics)));
        let ask = |request: &'static str| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let answer = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("openvpn_server_connected_clients"), "{body}");
        assert!(
            ask("GET /healthz HTTP/1.0\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
        assert!(
            ask("GET /nothing HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            ask("POST /metrics HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405")
        );
        server.abort();
    }
}
