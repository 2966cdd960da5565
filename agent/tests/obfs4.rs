//! The agent against a real obfs4proxy bridge: the cert and iat-mode it
//! wrote, and the bridge's health. Needs `obfs4proxy` installed.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, wait_until, write_config};
use menshen_agent::obfs4;

/// obfs4proxy, killed when dropped.
struct Proxy(Child);

impl Proxy {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// obfs4proxy in server mode, as Tor would run it (managed transport), on
/// 127.0.0.1:`port`, with its state in `state`. Returns the process and the
/// `cert` and `iat-mode` it announced on stdout.
fn start_obfs4proxy(
    state: &Path,
    port: u16,
    or_port: u16,
    iat_mode: u8,
) -> (Proxy, String, String) {
    let mut child = Command::new("obfs4proxy")
        .env("TOR_PT_MANAGED_TRANSPORT_VER", "1")
        .env("TOR_PT_STATE_LOCATION", state)
        .env("TOR_PT_SERVER_TRANSPORTS", "obfs4")
        .env("TOR_PT_SERVER_BINDADDR", format!("obfs4-127.0.0.1:{port}"))
        .env("TOR_PT_ORPORT", format!("127.0.0.1:{or_port}"))
        .env(
            "TOR_PT_SERVER_TRANSPORT_OPTIONS",
            format!("obfs4:iat-mode={iat_mode}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("obfs4proxy is installed");
    // Read stdout to its end on a thread: obfs4proxy must never meet a
    // closed pipe there.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let child = Proxy(child);
    let mut announced = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        // SMETHOD obfs4 127.0.0.1:PORT ARGS:cert=...,iat-mode=N
        if let Some(args) = line
            .strip_prefix("SMETHOD obfs4 ")
            .and_then(|l| l.split_once("ARGS:"))
        {
            let mut cert = String::new();
            let mut iat = String::new();
            for kv in args.1.split(',') {
                match kv.split_once('=') {
                    Some(("cert", v)) => cert = v.to_owned(),
                    Some(("iat-mode", v)) => iat = v.to_owned(),
                    _ => {}
                }
            }
            announced = Some((cert, iat));
        }
        if line == "SMETHODS DONE" || line.contains("ERROR") {
            break;
        }
    }
    let (cert, iat) = announced.expect("obfs4proxy announced its method");
    (child, cert, iat)
}

/// What the agent would push for a bridge on `port` with its state in `state`.
fn dry_run(dir: &Path, port: u16, state: &Path) -> serde_json::Value {
    common::dry_run(&write_config(
        dir,
        &format!(
            r#"
[host]
name = "ams1.example.org"
ip_addr = "192.0.2.10"
location = "amsterdam"

[[obfs4]]
host = "br1.ams1.example.org"
port = {port}
state_dir = "{}"
probe_addr = "127.0.0.1:{port}"
"#,
            state.display()
        ),
    ))
}

#[test]
fn the_agent_reports_what_obfs4proxy_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("obfs4-state");
    std::fs::create_dir(&state).unwrap();
    // obfs4proxy forwards to an "OR port"; any listener will do.
    let or_port = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free_port();
    let (mut proxy, cert, iat) =
        start_obfs4proxy(&state, port, or_port.local_addr().unwrap().port(), 1);
    assert_eq!(iat, "1");
    assert!(cert.len() > 60, "{cert}");

    // The real binary prints the cert obfs4proxy announced.
    let printed = dry_run(dir.path(), port, &state);
    let bridge = &printed["bridges"][0];
    assert_eq!(bridge["host"], "br1.ams1.example.org");
    assert_eq!(bridge["type"], "obfs4");
    assert_eq!(bridge["transport"], "tcp");
    assert_eq!(bridge["port"], port);
    assert_eq!(bridge["healthy"], true);
    assert_eq!(bridge["options"]["cert"], cert.as_str());
    assert_eq!(bridge["options"]["iatMode"], "1");

    // Both files obfs4proxy wrote give the same answer.
    let from_line = obfs4::parse_bridgeline(
        &std::fs::read_to_string(state.join(obfs4::BRIDGELINE_FILE)).unwrap(),
    )
    .unwrap();
    let from_state =
        obfs4::parse_state(&std::fs::read_to_string(state.join(obfs4::STATE_FILE)).unwrap())
            .unwrap();
    assert_eq!(from_line.cert, cert);
    assert_eq!(from_line, from_state);

    // obfs4proxy stops: still reported (its cert is known), unhealthy.
    proxy.stop();
    assert!(wait_until(Duration::from_secs(2), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    }));
    let printed = dry_run(dir.path(), port, &state);
    let bridge = &printed["bridges"][0];
    assert_eq!(bridge.get("healthy"), None);
    assert_eq!(bridge["options"]["cert"], cert.as_str());

    // It starts again from the same state: the same cert.
    let (_proxy, again, _) =
        start_obfs4proxy(&state, port, or_port.local_addr().unwrap().port(), 1);
    assert_eq!(again, cert);
    let printed = dry_run(dir.path(), port, &state);
    assert_eq!(printed["bridges"][0]["healthy"], true);
}
