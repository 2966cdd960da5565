//! The agent against a real OpenVPN 2.6 server (and a real client): the
//! management interface, load, health.
//!
//! Needs `openvpn` and `openssl` installed, root (or CAP_NET_ADMIN) and
//! /dev/net/tun.

mod common;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Process, dry_run, free_port, wait_until, write_config};
use menshen_agent::config::{GatewayTransport, HostConfig, OpenvpnConfig};
use menshen_agent::openvpn;

const TIMEOUT: Duration = Duration::from_secs(2);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA, and a server and a client certificate it signed.
fn make_pki(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    ]);
    openssl(dir, &ca);
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let ext = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext),
            format!("keyUsage=digitalSignature\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj"]);
        let subj = format!("/CN={name}");
        req.push(&subj);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// A real OpenVPN server on 127.0.0.1:`port`, management interface on
/// 127.0.0.1:`management` (with a password file if `password`).
fn start_server(
    dir: &Path,
    proto: &str,
    port: u16,
    management: u16,
    subnet: u8,
    password: Option<&str>,
) -> Process {
    let mut mgmt = vec!["127.0.0.1".to_owned(), management.to_string()];
    if let Some(pw) = password {
        std::fs::write(dir.join("mgmt-pw"), format!("{pw}\n")).unwrap();
        mgmt.push("mgmt-pw".into());
    }
    let mut c = Command::new("openvpn");
    c.arg("--cd")
        .arg(dir)
        .args(["--mode", "server", "--tls-server", "--proto", proto])
        .args(["--local", "127.0.0.1", "--port", &port.to_string()])
        .args(["--dev", "tun", "--ifconfig-noexec", "--topology", "subnet"])
        .args(["--ifconfig", &format!("10.{subnet}.0.1"), "255.255.255.0"])
        .args([
            "--ifconfig-pool",
            &format!("10.{subnet}.0.2"),
            &format!("10.{subnet}.0.200"),
        ])
        .args([
            "--ca",
            "ca.crt",
            "--cert",
            "server.crt",
            "--key",
            "server.key",
        ])
        .args(["--dh", "none", "--verb", "3", "--management"])
        .args(&mgmt)
        .arg("--log")
        .arg(dir.join(format!("server-{port}.log")));
    let p = Process::spawn(c);
    let up = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(dir.join(format!("server-{port}.log")))
            .is_ok_and(|l| l.contains("Initialization Sequence Completed"))
    });
    assert!(
        up,
        "openvpn server did not start: {}",
        std::fs::read_to_string(dir.join(format!("server-{port}.log"))).unwrap_or_default()
    );
    p
}

fn start_client(dir: &Path, port: u16) -> Process {
    let mut c = Command::new("openvpn");
    c.arg("--cd")
        .arg(dir)
        .args(["--client", "--proto", "tcp-client", "--remote", "127.0.0.1"])
        .arg(port.to_string())
        .args(["--dev", "tun", "--ifconfig-noexec", "--route-nopull"])
        .args(["--remote-cert-tls", "server"])
        .args([
            "--ca",
            "ca.crt",
            "--cert",
            "client.crt",
            "--key",
            "client.key",
        ])
        .args(["--verb", "3", "--log"])
        .arg(dir.join("client.log"));
    Process::spawn(c)
}

fn host() -> HostConfig {
    HostConfig {
        name: "ams1.example.org".into(),
        ip_addr: "127.0.0.1".parse().unwrap(),
        ip6_addr: None,
        location: "amsterdam".into(),
    }
}

fn gateway(
    transport: GatewayTransport,
    port: u16,
    management: u16,
    capacity: u32,
) -> OpenvpnConfig {
    OpenvpnConfig {
        host: "gw1.ams1.example.org".into(),
        transport,
        port,
        management: SocketAddr::from(([127, 0, 0, 1], management)),
        management_password_file: None,
        capacity: NonZeroU32::new(capacity).unwrap(),
        overload_threshold: 0.9,
        probe_addr: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        experimental: false,
        bucket: String::new(),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn tcp_gateway_load_and_health() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let (port, management) = (free_port(), free_port());
    let mut server = start_server(dir.path(), "tcp-server", port, management, 213, None);
    let mgmt = SocketAddr::from(([127, 0, 0, 1], management));

    // No client yet.
    let stats = block_on(openvpn::load_stats(mgmt, None, TIMEOUT)).unwrap();
    assert_eq!(stats.clients, 0);
    let gw = gateway(GatewayTransport::Tcp, port, management, 4);
    let state = block_on(openvpn::observe(&gw, &host(), TIMEOUT, false));
    assert_eq!(state.problem, None);
    assert!(state.gateway.healthy);
    assert_eq!(state.gateway.load, 0.0);
    assert_eq!(state.gateway.transport, "tcp");
    assert_eq!(state.gateway.kind, "openvpn");

    // A real client connects: 1 of 4.
    let _client = start_client(dir.path(), port);
    let connected = wait_until(Duration::from_secs(20), || {
        block_on(openvpn::load_stats(mgmt, None, TIMEOUT)).is_ok_and(|s| s.clients == 1)
    });
    assert!(
        connected,
        "client did not connect: {}",
        std::fs::read_to_string(dir.path().join("client.log")).unwrap_or_default()
    );
    let state = block_on(openvpn::observe(&gw, &host(), TIMEOUT, false));
    assert!(state.gateway.healthy);
    assert_eq!(state.gateway.load, 0.25);
    assert!(!state.gateway.overloaded);
    assert_eq!(state.status, None, "status 3 is asked only for metrics");

    // With metrics: the client's row of `status 3`, as the exporter names it.
    let state = block_on(openvpn::observe(&gw, &host(), TIMEOUT, true));
    assert!(state.up && state.gateway.healthy);
    let status = state.status.expect("status 3 answered");
    assert!(
        status.updated.is_some_and(|t| t > 1_700_000_000),
        "{status:?}"
    );
    assert_eq!(status.clients.len(), 1, "{status:?}");
    let row = &status.clients[0];
    assert_eq!(row.common_name, "client");
    assert!(row.real_address.starts_with("127.0.0.1:"), "{row:?}");
    assert!(row.virtual_address.starts_with("10."), "{row:?}");
    assert!(row.bytes_received > 0 && row.bytes_sent > 0, "{row:?}");
    let metrics = menshen_agent::metrics::Metrics::new(Duration::from_secs(2));
    metrics.record_observation(&menshen_agent::report::Observation {
        openvpn: vec![menshen_agent::report::OpenvpnLook {
            management: mgmt,
            up: true,
            status: Some(status),
        }],
        ..Default::default()
    });
    let text = metrics.render();
    assert!(
        text.contains(&format!(
            "openvpn_server_connected_clients{{status_path=\"{mgmt}\"}} 1\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("openvpn_server_client_received_bytes_total{common_name=\"client\","),
        "{text}"
    );

    // The binary, with a capacity of 1: full and overloaded.
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[host]
name = "ams1.example.org"
ip_addr = "127.0.0.1"
location = "amsterdam"

[[openvpn]]
transport = "tcp"
port = {port}
management = "127.0.0.1:{management}"
capacity = 1
"#
        ),
    );
    let printed = dry_run(&config);
    let g = &printed["gateways"][0];
    assert_eq!(g["host"], "ams1.example.org");
    assert_eq!(g["healthy"], true);
    assert_eq!(g["load"], 1.0);
    assert_eq!(g["overloaded"], true);

    // The server goes away: reported unhealthy, without load.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let state = block_on(openvpn::observe(&gw, &host(), TIMEOUT, false));
    assert!(!state.gateway.healthy);
    assert_eq!(state.gateway.load, 0.0);
    let problem = state.problem.unwrap();
    assert!(
        problem.contains("management interface")
            && problem.contains(&format!("port 127.0.0.1:{port}")),
        "{problem}"
    );
}

#[test]
fn udp_gateway_with_a_management_password() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let (port, management) = (free_port(), free_port());
    let _server = start_server(dir.path(), "udp", port, management, 214, Some("hunter2"));
    let mgmt = SocketAddr::from(([127, 0, 0, 1], management));

    let stats = block_on(openvpn::load_stats(mgmt, Some("hunter2"), TIMEOUT)).unwrap();
    assert_eq!(stats.clients, 0);
    // Without the password: not answering, and the log says why.
    let mut gw = gateway(GatewayTransport::Udp, port, management, 10);
    let state = block_on(openvpn::observe(&gw, &host(), TIMEOUT, false));
    assert!(!state.gateway.healthy);
    assert!(state.problem.unwrap().contains("management_password_file"));
    // With it: healthy. (udp: the management interface is the health signal.)
    gw.management_password_file = Some(dir.path().join("mgmt-pw"));
    let state = block_on(openvpn::observe(&gw, &host(), TIMEOUT, false));
    assert_eq!(state.problem, None);
    assert!(state.gateway.healthy);
    assert_eq!(state.gateway.transport, "udp");
    // A wrong password is refused by OpenVPN.
    let e = block_on(openvpn::load_stats(mgmt, Some("wrong"), TIMEOUT)).unwrap_err();
    assert!(e.contains("password") || e.contains("closed"), "{e}");
}

#[test]
fn a_held_management_interface_counts_as_not_answering() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let (port, management) = (free_port(), free_port());
    let _server = start_server(dir.path(), "tcp-server", port, management, 215, None);
    // Another client holds the (single-client) interface.
    let mut holder = std::net::TcpStream::connect(("127.0.0.1", management)).unwrap();
    let mut greeting = [0u8; 64];
    let n = std::io::Read::read(&mut holder, &mut greeting).unwrap();
    assert!(greeting[..n].starts_with(b">INFO:"));
    let mgmt = SocketAddr::from(([127, 0, 0, 1], management));
    let e = block_on(openvpn::load_stats(mgmt, None, Duration::from_millis(500))).unwrap_err();
    assert!(e.contains("no answer"), "{e}");
    drop(holder);
    let ok = wait_until(Duration::from_secs(5), || {
        block_on(openvpn::load_stats(mgmt, None, TIMEOUT)).is_ok()
    });
    assert!(ok, "the interface answers again once released");
}
