//! menshen-agent beside a real OpenVPN server and a real obfs4proxy bridge,
//! pushing to the real menshen over HTTP, with a Postgres store (SQLite
//! when no Postgres answers and none is required).
//!
//! Needs `openvpn`, `openssl`, `obfs4proxy` and a TUN device.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use menshen_e2e::http::{get_json, get_text};
use menshen_e2e::peers::{
    Gateway, Obfs4Proxy, client, free_tcp_port, free_udp_port, openssl_ca, path_str,
    require_real_peers,
};
use menshen_e2e::wait::poll;
use menshen_e2e::{Menshen, Process, TestDatabase, agent_command, menshen_cli, write_agent_config};
use serde_json::{Value, json};

/// How long menshen lists a pushed resource without a heartbeat, here.
const TTL: Duration = Duration::from_secs(6);

/// The example provider file without its hand-defined gateways and bridges:
/// everything listed comes from the agent.
fn provider_file(dir: &Path) -> String {
    let path = dir.join("provider.toml");
    std::fs::write(&path, menshen_e2e::provider::example_without_resources()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn start_agent(config: &Path) -> Process {
    let mut command = agent_command(config);
    command.env("RUST_LOG", "info");
    Process::spawn(command)
}

async fn list(menshen_url: &str, what: &str) -> Vec<Value> {
    let response = reqwest::get(format!("{menshen_url}/api/5/{what}"))
        .await
        .expect("menshen answers");
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls a client list until `pred` holds or `timeout` passes; returns the
/// last list and how long it took.
async fn wait_for(
    menshen_url: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, Option<Duration>) {
    let start = Instant::now();
    let last = std::cell::RefCell::new(Vec::new());
    let met = poll(timeout, || async {
        let items = list(menshen_url, what).await;
        let met = pred(&items);
        *last.borrow_mut() = items;
        met.then_some(())
    })
    .await;
    (last.into_inner(), met.map(|()| start.elapsed()))
}

fn find<'a>(items: &'a [Value], host: &str) -> Option<&'a Value> {
    items.iter().find(|i| i["host"] == host)
}

/// Waits up to `timeout` for `host` in the client list `what` of menshen
/// at `menshen_url` and returns its item; else fails with `agent`'s log.
async fn wait_listed(
    menshen_url: &str,
    what: &str,
    host: &str,
    timeout: Duration,
    agent: &mut Process,
) -> Value {
    let (items, seen) = wait_for(menshen_url, what, timeout, |items| {
        find(items, host).is_some()
    })
    .await;
    assert!(
        seen.is_some(),
        "{} never listed:\n{}",
        what.trim_end_matches('s'),
        agent.drain_log()
    );
    find(&items, host).unwrap().clone()
}

#[tokio::test]
async fn agents_report_real_gateways_and_bridges() {
    require_real_peers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("menshen-data");
    let data = path_str(&data).to_owned();

    // A real OpenVPN server (certificate from the provider's CA) and a real
    // obfs4 bridge.
    let (ca_cert, ca_key) = openssl_ca(dir.path());
    let mut gateway =
        Gateway::start_signed_by(dir.path(), free_udp_port(), &ca_cert, &ca_key, "10.231.0.0");
    let state = dir.path().join("obfs4");
    std::fs::create_dir(&state).unwrap();
    let or_port = TcpListener::bind("127.0.0.1:0").unwrap();
    let bridge_port = free_tcp_port();
    let obfs4 = Obfs4Proxy::start(&state, bridge_port, or_port.local_addr().unwrap().port());

    // menshen on Postgres, on an address that stays the same across restarts.
    let db = TestDatabase::create().await;
    let mut store_args: Vec<String> = vec!["--data-dir".into(), data.clone()];
    if let Some(db) = &db {
        store_args.extend(["--database-url".into(), db.url.clone()]);
    } else {
        eprintln!("note: no Postgres; this run uses SQLite");
    }
    let store_args: Vec<&str> = store_args.iter().map(String::as_str).collect();
    let listen = format!("127.0.0.1:{}", free_tcp_port());
    let provider = provider_file(dir.path());
    let ttl = format!("{}s", TTL.as_secs());
    let mut serve_args = vec![
        "--listen",
        &listen,
        "--config",
        &provider,
        "--resource-ttl",
        &ttl,
        "--reload-interval",
        "2s",
        "--ca-cert",
        path_str(&ca_cert),
        "--ca-key",
        path_str(&ca_key),
    ];
    serve_args.extend(&store_args);
    let mut menshen = Menshen::start(&serve_args);
    let url = menshen.url.clone();

    // An agent and its token, from the CLI.
    let mut create = vec!["agent", "create", "ams1"];
    create.extend(&store_args);
    let token = menshen_cli(&create).trim().to_owned();
    let agent_config = write_agent_config(
        dir.path(),
        &url,
        &token,
        &format!(
            r#"interval = "1s"
check_interval = "500ms"
withdraw_on_exit = true

[host]
name = "ams1.example.org"
ip_addr = "127.0.0.1"
location = "amsterdam"

[[openvpn]]
host = "gw1-udp.ams1.example.org"
transport = "udp"
port = {vpn_port}
management = "127.0.0.1:{management}"
capacity = 4

[[obfs4]]
host = "br1.ams1.example.org"
port = {bridge_port}
state_dir = "{state}"
probe_addr = "127.0.0.1:{bridge_port}"
"#,
            vpn_port = gateway.port,
            management = gateway.management,
            state = path_str(&state),
        ),
    );
    let mut agent = start_agent(&agent_config);

    // The agent's gateway and bridge (with obfs4proxy's real cert) appear.
    let gw = wait_listed(
        &url,
        "gateways",
        "gw1-udp.ams1.example.org",
        Duration::from_secs(15),
        &mut agent,
    )
    .await;
    assert_eq!(gw["ip_addr"], "127.0.0.1");
    assert_eq!(gw["port"], gateway.port);
    assert_eq!(gw["transport"], "udp");
    assert_eq!(gw["type"], "openvpn");
    assert_eq!(gw["healthy"], true);
    assert!(gw.get("load").is_none(), "no client yet: {gw}");
    assert!(gw["last_seen_millis"].as_i64().unwrap() > 0);
    let br = wait_listed(
        &url,
        "bridges",
        "br1.ams1.example.org",
        Duration::from_secs(10),
        &mut agent,
    )
    .await;
    assert_eq!(br["options"]["cert"], obfs4.cert.as_str());
    assert_eq!(br["options"]["iatMode"], obfs4.iat_mode.as_str());
    assert_eq!(br["port"], bridge_port);
    assert_eq!(br["type"], "obfs4");
    let service = get_json(&format!("{url}/api/5/service")).await;
    assert_eq!(service["locations"]["amsterdam"]["has_bridges"], true);

    // A real OpenVPN client connects with the served configuration: the
    // reported load rises (1 client of 4).
    let config = get_text(&format!("{url}/api/5/openvpn/config?cc=NL")).await;
    assert!(config.contains(&format!("remote 127.0.0.1 {} udp", gateway.port)));
    let config_path = dir.path().join("client.ovpn");
    std::fs::write(&config_path, config).unwrap();
    let mut vpn_client = client(&config_path);
    gateway.wait_for_clients(1, std::slice::from_mut(&mut vpn_client));
    let (gateways, seen) = wait_for(&url, "gateways", Duration::from_secs(10), |g| {
        find(g, "gw1-udp.ams1.example.org").is_some_and(|g| g["load"] == json!(0.25))
    })
    .await;
    assert!(
        seen.is_some(),
        "load never rose: {gateways:?}\n{}",
        agent.drain_log()
    );
    drop(vpn_client);

    // Another agent's token cannot take the first agent's host.
    let mut create = vec!["agent", "create", "intruder"];
    create.extend(&store_args);
    let intruder = menshen_cli(&create).trim().to_owned();
    let response = reqwest::Client::new()
        .put(format!("{url}/api/5/agent/gateways"))
        .bearer_auth(&intruder)
        .json(
            &json!([{"host": "gw1-udp.ams1.example.org", "ip_addr": "192.0.2.66",
                       "location": "amsterdam", "port": 1194, "transport": "udp",
                       "type": "openvpn", "healthy": true}]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("gw1-udp.ams1.example.org")
    );
    let gateways = list(&url, "gateways").await;
    assert_eq!(
        find(&gateways, "gw1-udp.ams1.example.org").unwrap()["ip_addr"],
        "127.0.0.1"
    );

    // The agent dies without a word: its resources leave the lists once the
    // TTL has run out.
    let killed = Instant::now();
    let _ = Command::new("kill")
        .args(["-KILL", &agent.pid().to_string()])
        .status();
    let (_, gone) = wait_for(&url, "gateways", TTL + Duration::from_secs(5), |g| {
        find(g, "gw1-udp.ams1.example.org").is_none()
    })
    .await;
    let gone = gone.expect("the silent agent's gateway left the list");
    assert!(
        killed.elapsed() <= TTL + Duration::from_secs(3),
        "gone after {:?}",
        killed.elapsed()
    );
    assert!(
        gone >= TTL - Duration::from_secs(2),
        "gone too early: {gone:?}"
    );
    let (bridges, _) = wait_for(&url, "bridges", Duration::from_secs(2), |b| b.is_empty()).await;
    assert!(bridges.is_empty());

    // It restarts: they come back.
    let mut agent = start_agent(&agent_config);
    let (_, back) = wait_for(&url, "gateways", Duration::from_secs(10), |g| {
        find(g, "gw1-udp.ams1.example.org").is_some()
    })
    .await;
    assert!(back.is_some(), "not back:\n{}", agent.drain_log());

    // menshen restarts (while the agent is away): nothing pushed is lost.
    let _ = Command::new("kill")
        .args(["-KILL", &agent.pid().to_string()])
        .status();
    let before = list(&url, "gateways").await;
    menshen.stop();
    let menshen = Menshen::start(&serve_args);
    assert_eq!(menshen.url, url);
    let after = list(&url, "gateways").await;
    assert_eq!(
        find(&after, "gw1-udp.ams1.example.org"),
        find(&before, "gw1-udp.ams1.example.org"),
        "the pushed gateway survived the restart unchanged"
    );
    assert!(find(&list(&url, "bridges").await, "br1.ams1.example.org").is_some());

    // A clean stop withdraws at once (withdraw_on_exit), long before the TTL.
    let mut agent = start_agent(&agent_config);
    let pushed = agent.wait_for_line(Duration::from_secs(10), |l| l.contains("pushed 1 gateways"));
    assert!(pushed.is_some(), "{}", agent.drain_log());
    let status = agent
        .terminate(Duration::from_secs(10))
        .expect("agent stops");
    assert!(status.success(), "{status}");
    let (_, gone) = wait_for(&url, "gateways", Duration::from_secs(3), |g| {
        find(g, "gw1-udp.ams1.example.org").is_none()
    })
    .await;
    assert!(
        gone.is_some(),
        "withdrawn on SIGTERM:\n{}",
        agent.drain_log()
    );
    let log = agent.drain_log();
    assert!(
        !log.contains(&token),
        "the token leaked into the agent's log"
    );
}
