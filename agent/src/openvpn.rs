//! OpenVPN's management interface: just enough of it to count clients.
//!
//! The interface is line based over TCP. It greets with `>INFO:...` (or asks
//! `ENTER PASSWORD:` first when started with a password file), answers
//! `load-stats` with `SUCCESS: nclients=N,bytesin=...,bytesout=...`, and may
//! interleave real-time lines starting with `>` at any time.
//!
//! It serves one client at a time: while another tool holds it, a second
//! connection is accepted by the kernel but never greeted. The agent holds it
//! for a few milliseconds per query; a greeting that does not come within the
//! timeout counts as "not answering".

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use menshen_model::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{GatewayTransport, HostConfig, OpenvpnConfig};
use crate::probe;

/// What `load-stats` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadStats {
    pub clients: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Parses the reply to `load-stats` (without the line end).
pub fn parse_load_stats(line: &str) -> Option<LoadStats> {
    let rest = line.trim().strip_prefix("SUCCESS:")?.trim();
    let mut stats = LoadStats {
        clients: 0,
        bytes_in: 0,
        bytes_out: 0,
    };
    let mut saw_clients = false;
    for field in rest.split(',') {
        let (key, value) = field.split_once('=')?;
        let value: u64 = value.trim().parse().ok()?;
        match key.trim() {
            "nclients" => {
                stats.clients = value;
                saw_clients = true;
            }
            "bytesin" => stats.bytes_in = value,
            "bytesout" => stats.bytes_out = value,
            _ => {}
        }
    }
    saw_clients.then_some(stats)
}

/// A line-oriented reader over the management connection that also notices
/// the password prompt, which ends without a newline.
struct Lines {
    stream: TcpStream,
    buf: Vec<u8>,
}

enum Event {
    Line(String),
    PasswordPrompt,
}

impl Lines {
    async fn next(&mut self) -> Result<Event, String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                return Ok(Event::Line(line.trim_end_matches(['\r', '\n']).to_owned()));
            }
            if self.buf.starts_with(b"ENTER PASSWORD:") {
                self.buf.drain(..b"ENTER PASSWORD:".len());
                return Ok(Event::PasswordPrompt);
            }
            if self.buf.len() > 64 * 1024 {
                return Err("management interface sent an overlong line".into());
            }
            let mut chunk = [0u8; 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("management interface closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Asks the management interface at `addr` for `load-stats`, within
/// `timeout` overall. `password` is the first line of the `--management`
/// password file, if one is used.
pub async fn load_stats(
    addr: SocketAddr,
    password: Option<&str>,
    timeout: Duration,
) -> Result<LoadStats, String> {
    match tokio::time::timeout(timeout, query(addr, password)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {} (is another client holding the management interface?)",
            humantime::format_duration(timeout)
        )),
    }
}

async fn query(addr: SocketAddr, password: Option<&str>) -> Result<LoadStats, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut conn = Lines {
        stream,
        buf: Vec::with_capacity(256),
    };
    // Wait for the greeting, answering the password prompt if there is one.
    loop {
        match conn.next().await? {
            Event::PasswordPrompt => {
                let Some(pw) = password else {
                    return Err(
                        "management interface asks for a password; set management_password_file"
                            .into(),
                    );
                };
                conn.stream
                    .write_all(format!("{pw}\n").as_bytes())
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            Event::Line(line) if line.starts_with(">INFO:") => break,
            Event::Line(line) if line.starts_with("ERROR:") => {
                return Err(format!("management interface: {line}"));
            }
            Event::Line(_) => {}
        }
    }
    conn.stream
        .write_all(b"load-stats\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    loop {
        let Event::Line(line) = conn.next().await? else {
            continue;
        };
        if line.starts_with('>') {
            continue; // a real-time notification, not our answer
        }
        if line.starts_with("SUCCESS:") {
            let stats = parse_load_stats(&line)
                .ok_or_else(|| format!("unexpected answer to load-stats: {line:?}"))?;
            // Leave politely; the interface then accepts its next client.
            let _ = conn.stream.write_all(b"quit\n").await;
            return Ok(stats);
        }
        if line.starts_with("ERROR:") {
            return Err(format!("load-stats refused: {line}"));
        }
    }
}

/// Reads the password for the management interface from `path` (its first line).
pub fn read_password(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read management password file {}: {e}",
            path.display()
        )
    })?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// `load` (fraction of capacity, at most 1, rounded to 0.001) and
/// `overloaded` (load above `threshold`) for `clients` of `capacity`.
pub fn load_of(clients: u64, capacity: u32, threshold: f64) -> (f64, bool) {
    let ratio = clients as f64 / f64::from(capacity.max(1));
    let load = (ratio.min(1.0) * 1000.0).round() / 1000.0;
    (load, ratio > threshold)
}

/// The state of one OpenVPN server, and why it is unhealthy if it is.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayState {
    pub gateway: Gateway,
    /// Why `healthy` is false; None when healthy.
    pub problem: Option<String>,
}

/// Looks at an OpenVPN server: asks its management interface for the number
/// of clients and, for tcp, checks that its port accepts connections. A udp
/// port cannot be checked with a connection, so for udp a management
/// interface that answers is the health signal.
pub async fn observe(g: &OpenvpnConfig, host: &HostConfig, timeout: Duration) -> GatewayState {
    let mut gateway = Gateway {
        host: g.host.clone(),
        ip_addr: host.ip_addr.to_string(),
        ip6_addr: host.ip6_addr.map(|a| a.to_string()).unwrap_or_default(),
        location: host.location.clone(),
        port: i64::from(g.port),
        transport: g.transport.as_str().to_owned(),
        kind: "openvpn".to_owned(),
        experimental: g.experimental,
        bucket: g.bucket.clone(),
        ..Default::default()
    };
    let password = match &g.management_password_file {
        Some(p) => match read_password(p) {
            Ok(pw) => Some(pw),
            Err(e) => {
                return GatewayState {
                    gateway,
                    problem: Some(e),
                };
            }
        },
        None => None,
    };
    let stats = load_stats(g.management, password.as_deref(), timeout);
    let port = async {
        match g.transport {
            GatewayTransport::Tcp => probe::tcp_accepts(g.probe_addr, timeout).await,
            GatewayTransport::Udp => Ok(()),
        }
    };
    let (stats, port) = tokio::join!(stats, port);
    let mut problems = Vec::new();
    match stats {
        Ok(s) => {
            let (load, overloaded) = load_of(s.clients, g.capacity.get(), g.overload_threshold);
            gateway.load = load;
            gateway.overloaded = overloaded;
        }
        Err(e) => problems.push(format!("management interface {}: {e}", g.management)),
    }
    if let Err(e) = port {
        problems.push(format!("port {}: {e}", g.probe_addr));
    }
    gateway.healthy = problems.is_empty();
    GatewayState {
        gateway,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_stats_replies_are_parsed() {
        assert_eq!(
            parse_load_stats("SUCCESS: nclients=3,bytesin=1938,bytesout=1977"),
            Some(LoadStats {
                clients: 3,
                bytes_in: 1938,
                bytes_out: 1977
            })
        );
        assert_eq!(
            parse_load_stats("SUCCESS: nclients=0,bytesin=0,bytesout=0\r").map(|s| s.clients),
            Some(0)
        );
        assert_eq!(parse_load_stats("SUCCESS: bytesin=1,bytesout=2"), None);
        assert_eq!(parse_load_stats("ERROR: unknown command"), None);
        assert_eq!(parse_load_stats("SUCCESS: nclients=x"), None);
    }

    #[test]
    fn load_and_overload() {
        assert_eq!(load_of(0, 100, 0.9), (0.0, false));
        assert_eq!(load_of(50, 100, 0.9), (0.5, false));
        assert_eq!(load_of(90, 100, 0.9), (0.9, false));
        assert_eq!(load_of(91, 100, 0.9), (0.91, true));
        assert_eq!(load_of(1, 3, 0.9), (0.333, false));
        // More clients than capacity: load stays within 0..1, overloaded.
        assert_eq!(load_of(250, 100, 0.9), (1.0, true));
        assert_eq!(load_of(1, 1, 1.0), (1.0, false));
    }
}
