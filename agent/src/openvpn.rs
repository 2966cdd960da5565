//! OpenVPN's management interface: just enough of it to count clients.
//!
//! The interface is line based over TCP. It greets with `>INFO:...` (or asks
//! `ENTER PASSWORD:` first when started with a password file), answers
//! `load-stats` with `SUCCESS: nclients=N,bytesin=...,bytesout=...` and
//! `status 3` with tab-separated rows (`TIME`, `HEADER`, `CLIENT_LIST`, ...)
//! closed by `END`, and may interleave real-time lines starting with `>` at
//! any time. `status 3` is asked only when the agent exports metrics.
//!
//! It serves one client at a time: while another tool holds it, a second
//! connection is accepted by the kernel but never greeted. The agent holds it
//! for a few milliseconds per query; a greeting that does not come within the
//! timeout counts as "not answering".

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use menshen_model::{Gateway, GatewayType};
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

/// One connected client, a `CLIENT_LIST` row of `status 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub common_name: String,
    pub real_address: String,
    pub virtual_address: String,
    pub username: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Unix seconds.
    pub connected_since: i64,
}

/// What `status 3` says: when the server last updated it, and its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStatus {
    /// Unix seconds of the `TIME` row.
    pub updated: Option<i64>,
    pub clients: Vec<ClientRow>,
}

/// The columns of `CLIENT_LIST` rows in OpenVPN 2.5 and 2.6, used when the
/// answer carries no `HEADER CLIENT_LIST` row to say where they are.
const CLIENT_LIST_COLUMNS: [&str; 12] = [
    "Common Name",
    "Real Address",
    "Virtual Address",
    "Virtual IPv6 Address",
    "Bytes Received",
    "Bytes Sent",
    "Connected Since",
    "Connected Since (time_t)",
    "Username",
    "Client ID",
    "Peer ID",
    "Data Channel Cipher",
];

/// Parses the lines of an answer to `status 3` (without `END`). Columns are
/// found by the `HEADER CLIENT_LIST` row's names, as OpenVPN's own
/// documentation asks of parsers, so added columns do not shift them.
pub fn parse_status(lines: &[String]) -> ServerStatus {
    let mut columns: Vec<String> = CLIENT_LIST_COLUMNS
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let mut status = ServerStatus::default();
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.first().copied() {
            Some("TIME") => status.updated = fields.get(2).and_then(|t| t.trim().parse().ok()),
            Some("HEADER") if fields.get(1) == Some(&"CLIENT_LIST") => {
                columns = fields[2..].iter().map(|c| (*c).to_owned()).collect();
            }
            Some("CLIENT_LIST") => {
                let field = |name: &str| -> &str {
                    columns
                        .iter()
                        .position(|c| c == name)
                        .and_then(|i| fields.get(i + 1))
                        .copied()
                        .unwrap_or("")
                };
                let number = |name: &str| field(name).trim().parse().unwrap_or(0);
                status.clients.push(ClientRow {
                    common_name: field("Common Name").to_owned(),
                    real_address: field("Real Address").to_owned(),
                    virtual_address: field("Virtual Address").to_owned(),
                    username: field("Username").to_owned(),
                    bytes_received: number("Bytes Received"),
                    bytes_sent: number("Bytes Sent"),
                    connected_since: field("Connected Since (time_t)")
                        .trim()
                        .parse()
                        .unwrap_or(0),
                });
            }
            _ => {}
        }
    }
    status
}

/// What one look at a management interface found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Looked {
    pub stats: LoadStats,
    /// With `want_status` only.
    pub status: Option<ServerStatus>,
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
    look(addr, password, false, timeout).await.map(|l| l.stats)
}

/// Asks for `load-stats` and, with `want_status`, `status 3`, on one
/// connection within `timeout` overall.
pub async fn look(
    addr: SocketAddr,
    password: Option<&str>,
    want_status: bool,
    timeout: Duration,
) -> Result<Looked, String> {
    match tokio::time::timeout(timeout, query(addr, password, want_status)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {} (is another client holding the management interface?)",
            humantime::format_duration(timeout)
        )),
    }
}

async fn query(
    addr: SocketAddr,
    password: Option<&str>,
    want_status: bool,
) -> Result<Looked, String> {
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
    let stats = loop {
        let Event::Line(line) = conn.next().await? else {
            continue;
        };
        if line.starts_with('>') {
            continue; // a real-time notification, not our answer
        }
        if line.starts_with("SUCCESS:") {
            break parse_load_stats(&line)
                .ok_or_else(|| format!("unexpected answer to load-stats: {line:?}"))?;
        }
        if line.starts_with("ERROR:") {
            return Err(format!("load-stats refused: {line}"));
        }
    };
    let status = if want_status {
        conn.stream
            .write_all(b"status 3\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut lines = Vec::new();
        loop {
            let Event::Line(line) = conn.next().await? else {
                continue;
            };
            if line.starts_with('>') {
                continue;
            }
            if line == "END" {
                break;
            }
            if line.starts_with("ERROR:") {
                return Err(format!("status 3 refused: {line}"));
            }
            if lines.len() >= MAX_STATUS_LINES {
                return Err(format!("status 3: more than {MAX_STATUS_LINES} lines"));
            }
            lines.push(line);
        }
        Some(parse_status(&lines))
    } else {
        None
    };
    // Leave politely; the interface then accepts its next client.
    let _ = conn.stream.write_all(b"quit\n").await;
    Ok(Looked { stats, status })
}

/// The most lines of a `status 3` answer read (a server with that many
/// clients is far beyond what one OpenVPN process carries).
const MAX_STATUS_LINES: usize = 100_000;

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
    /// Whether the management interface answered.
    pub up: bool,
    /// What `status 3` said, when asked (metrics on) and answered.
    pub status: Option<ServerStatus>,
}

/// Looks at an OpenVPN server: asks its management interface for the number
/// of clients and, for tcp, checks that its port accepts connections. A udp
/// port cannot be checked with a connection, so for udp a management
/// interface that answers is the health signal.
pub async fn observe(
    g: &OpenvpnConfig,
    host: &HostConfig,
    timeout: Duration,
    want_status: bool,
) -> GatewayState {
    let mut gateway = Gateway {
        host: g.host.clone(),
        ip_addr: host.ip_addr.to_string(),
        ip6_addr: host.ip6_addr.map(|a| a.to_string()).unwrap_or_default(),
        location: host.location.clone(),
        port: i64::from(g.port),
        transport: g.transport.as_str().to_owned(),
        kind: GatewayType::Openvpn.as_str().to_owned(),
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
                    up: false,
                    status: None,
                };
            }
        },
        None => None,
    };
    let stats = look(g.management, password.as_deref(), want_status, timeout);
    // A udp port cannot be checked with a connection.
    let checked = match g.transport {
        GatewayTransport::Tcp => g.probe_addr,
        GatewayTransport::Udp => None,
    };
    let port = async {
        match checked {
            Some(addr) => probe::tcp_accepts(addr, timeout)
                .await
                .map_err(|e| (addr, e)),
            None => Ok(()),
        }
    };
    let (stats, port) = tokio::join!(stats, port);
    let mut problems = Vec::new();
    let mut up = false;
    let mut status = None;
    match stats {
        Ok(looked) => {
            let s = looked.stats;
            let (load, overloaded) = load_of(s.clients, g.capacity.get(), g.overload_threshold);
            gateway.load = load;
            gateway.overloaded = overloaded;
            up = true;
            status = looked.status;
        }
        Err(e) => problems.push(format!("management interface {}: {e}", g.management)),
    }
    if let Err((addr, e)) = port {
        problems.push(format!("port {addr}: {e}"));
    }
    gateway.healthy = problems.is_empty();
    GatewayState {
        gateway,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
        up,
        status,
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

    /// As OpenVPN 2.6.3 answered `status 3` with two clients.
    const STATUS_3: &str = "TITLE\tOpenVPN 2.6.3 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]
TIME\t2024-05-02 10:01:02\t1714644062
HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher
CLIENT_LIST\tUNLIMITED\t127.0.0.1:51423\t10.41.0.2\t\t5302\t4104\t2024-05-02 10:00:58\t1714644058\tUNDEF\t0\t0\tAES-256-GCM
CLIENT_LIST\tUNLIMITED\t127.0.0.1:40211\t10.41.0.3\t\t3088\t2966\t2024-05-02 10:01:00\t1714644060\tUNDEF\t1\t1\tCHACHA20-POLY1305
HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)
ROUTING_TABLE\t10.41.0.2\tUNLIMITED\t127.0.0.1:51423\t2024-05-02 10:01:01\t1714644061
GLOBAL_STATS\tMax bcast/mcast queue length\t0
GLOBAL_STATS\tdco_enabled\t0";

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn status_3_rows_are_parsed_by_their_header() {
        let status = parse_status(&lines(STATUS_3));
        assert_eq!(status.updated, Some(1714644062));
        assert_eq!(status.clients.len(), 2);
        assert_eq!(
            status.clients[0],
            ClientRow {
                common_name: "UNLIMITED".into(),
                real_address: "127.0.0.1:51423".into(),
                virtual_address: "10.41.0.2".into(),
                username: "UNDEF".into(),
                bytes_received: 5302,
                bytes_sent: 4104,
                connected_since: 1714644058,
            }
        );
        // A column added in front moves the others; the header says where.
        let moved = STATUS_3
            .replace("\tCommon Name\t", "\tNew Column\tCommon Name\t")
            .replace("CLIENT_LIST\tUNLIMITED\t", "CLIENT_LIST\tx\tUNLIMITED\t");
        assert_eq!(parse_status(&lines(&moved)), status);
        // Without a header, the 2.6 order.
        let headless: Vec<String> = lines(STATUS_3)
            .into_iter()
            .filter(|l| !l.starts_with("HEADER"))
            .collect();
        assert_eq!(parse_status(&headless), status);
        assert_eq!(parse_status(&[]), ServerStatus::default());
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
