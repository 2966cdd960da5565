//! The prober against real peers: OpenVPN servers on UDP and on TCP, an
//! obfs4proxy bridge (asked with its cert, and with a cert of another key),
//! and ports nothing listens on. `menshen serve --probe` checks them on
//! SQLite and on Postgres, client lists lose what fails, operators see it
//! in the admin API, the status data, the metrics and the CLI, and
//! `menshen probe --once` does the same from a process of its own.
//!
//! Needs `openvpn`, `openssl`, `obfs4proxy` and a TUN device.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use menshen_e2e::http::{find_host, get_json_as, get_text, sample};
use menshen_e2e::peers::{
    Gateway, Obfs4Proxy, free_tcp_port, free_udp_port, openssl_ca, path_str, require_real_peers,
};
use menshen_e2e::provider::ProviderFile;
use menshen_e2e::wait::eventually;
use menshen_e2e::{Menshen, TestDatabase, menshen_cli, sorted_hosts};
use serde_json::Value;

/// Long enough for two rounds with a check that times out.
const WITHIN: Duration = Duration::from_secs(30);

/// The peers every backend's run checks; the UDP gateway is each run's own,
/// as the run stops it.
struct Peers {
    tcp: Gateway,
    obfs4: Obfs4Proxy,
    obfs4_port: u16,
    /// Nothing listens on these.
    dead_udp: u16,
    dead_tcp: u16,
    _or_port: TcpListener,
}

/// `cert` with its public key changed: the bridge's node id, another key.
fn forged(cert: &str) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut bytes = engine.decode(cert).unwrap();
    bytes[30] ^= 0x55;
    engine.encode(bytes)
}

fn provider_file(dir: &Path, peers: &Peers, udp_port: u16) -> String {
    let mut text = ProviderFile::new().place("amsterdam").as_str().to_owned();
    for (host, port, transport) in [
        ("udp.gw", udp_port, "udp"),
        ("tcp.gw", peers.tcp.port, "tcp"),
        ("dead-udp.gw", peers.dead_udp, "udp"),
        ("dead-tcp.gw", peers.dead_tcp, "tcp"),
    ] {
        text += &format!(
            "\n[[gateway]]\nhost = \"{host}\"\nip_addr = \"127.0.0.1\"\nlocation = \"amsterdam\"\n\
             port = {port}\ntransport = \"{transport}\"\n"
        );
    }
    let cert = peers.obfs4.cert.clone();
    for (host, port, cert) in [
        ("obfs4.br", peers.obfs4_port, cert.clone()),
        ("dead.br", peers.dead_tcp, cert.clone()),
        ("forged.br", peers.obfs4_port, forged(&cert)),
    ] {
        text += &format!(
            "\n[[bridge]]\nhost = \"{host}\"\nip_addr = \"127.0.0.1\"\nlocation = \"amsterdam\"\n\
             port = {port}\ntransport = \"tcp\"\ntype = \"obfs4\"\n\
             options = {{ cert = \"{cert}\", iatMode = \"0\" }}\n"
        );
    }
    let path = dir.join("provider.toml");
    std::fs::write(&path, text).unwrap();
    path_str(&path).to_owned()
}

async fn hosts(url: &str, what: &str) -> Vec<String> {
    let body = get_text(&format!("{url}/api/5/{what}")).await;
    sorted_hosts(&serde_json::from_str::<Value>(&body).unwrap())
}

/// The probe state of every resource in an admin list, by host.
fn states(list: &Value) -> Vec<(String, String, bool)> {
    let mut got: Vec<(String, String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap().to_owned(),
                r["probe"]["state"].as_str().unwrap_or("none").to_owned(),
                r["listed"].as_bool().unwrap(),
            )
        })
        .collect();
    got.sort();
    got
}

fn state(host: &str, state: &str, listed: bool) -> (String, String, bool) {
    (host.to_owned(), state.to_owned(), listed)
}

async fn run(name: &str, store_args: &[String], peers: &Peers, dir: &Path) {
    let dir = dir.join(name);
    std::fs::create_dir_all(dir.join("udp")).unwrap();
    let (ca_cert, ca_key) = openssl_ca(&dir);
    let udp_port = free_udp_port();
    let mut udp =
        Gateway::start_signed_by(&dir.join("udp"), udp_port, &ca_cert, &ca_key, "10.234.0.0");
    let config = provider_file(&dir, peers, udp_port);
    let mut args: Vec<&str> = vec![
        "--config",
        &config,
        "--probe",
        "--probe-interval",
        "500ms",
        "--probe-timeout",
        "1s",
        "--probe-failures",
        "2",
        // Every bridge to every client, so that lists show all that is left.
        "--bridges-per-client",
        "0",
    ];
    args.extend(store_args.iter().map(String::as_str));
    let mut menshen = Menshen::start(&args);
    let url = menshen.url.clone();

    // What answers stays; what does not leaves the lists.
    eventually(
        format!("{name}: the dead to leave the lists"),
        WITHIN,
        || async {
            let got = (hosts(&url, "gateways").await, hosts(&url, "bridges").await);
            (got == (
                vec!["tcp.gw".into(), "udp.gw".into()],
                vec!["obfs4.br".into()],
            ))
                .then_some(())
                .ok_or(got)
        },
    )
    .await;

    // Operators see each one's state, and why.
    let mut token_args = vec![
        "admin",
        "token",
        "--subject",
        "probe-test",
        "--role",
        "viewer",
    ];
    token_args.extend(store_args.iter().map(String::as_str));
    let viewer = menshen_cli(&token_args).trim().to_owned();
    let mut lists = std::collections::HashMap::new();
    for (kind, expected) in [
        (
            "gateways",
            vec![
                state("dead-tcp.gw", "dysfunctional", false),
                state("dead-udp.gw", "dysfunctional", false),
                state("tcp.gw", "functional", true),
                state("udp.gw", "functional", true),
            ],
        ),
        (
            "bridges",
            vec![
                state("dead.br", "dysfunctional", false),
                state("forged.br", "dysfunctional", false),
                state("obfs4.br", "functional", true),
            ],
        ),
    ] {
        let list = get_json_as(&format!("{url}/admin/v1/{kind}"), &viewer).await;
        assert_eq!(states(&list), expected, "{name}: {list}");
        lists.insert(kind, list);
    }
    let (gateways, bridges) = (&lists["gateways"], &lists["bridges"]);
    let detail = |list: &Value, host: &str| {
        find_host(list, host).unwrap()["probe"]["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(detail(gateways, "udp.gw").contains("hard reset over UDP"));
    assert!(detail(gateways, "tcp.gw").contains("hard reset over TCP"));
    assert!(detail(gateways, "dead-tcp.gw").contains("connect"));
    assert!(detail(bridges, "obfs4.br").contains("handshake completed"));
    assert!(
        detail(bridges, "forged.br").contains("no obfs4 handshake answer"),
        "{bridges}"
    );
    let failures = find_host(bridges, "forged.br").unwrap()["probe"]["failures"]
        .as_i64()
        .unwrap();
    assert!(failures >= 2, "{bridges}");

    // The status page's data says the same.
    let status = get_json_as(&format!("{url}/status/data"), &viewer).await;
    let shown: Vec<(String, String)> = status["locations"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap().to_owned(),
                r["probe"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(_, p)| p == "functional")
        .collect();
    assert_eq!(shown.len(), 3, "{status}");

    // And the metrics.
    let metrics = get_text(&format!("{}/metrics", menshen.metrics_url)).await;
    for (series, value) in [
        (
            r#"menshen_probe_resources{kind="gateway",state="functional"}"#,
            2.0,
        ),
        (
            r#"menshen_probe_resources{kind="gateway",state="dysfunctional"}"#,
            2.0,
        ),
        (
            r#"menshen_probe_resources{kind="bridge",state="dysfunctional"}"#,
            2.0,
        ),
        (r#"menshen_probe_excluded{kind="gateway"}"#, 2.0),
        (r#"menshen_probe_excluded{kind="bridge"}"#, 2.0),
        (r#"menshen_probe_exclusion_suspended{kind="gateway"}"#, 0.0),
    ] {
        assert_eq!(sample(&metrics, series), Some(value), "{series}\n{metrics}");
    }

    // A gateway that dies leaves the lists after its failed checks.
    udp.process.terminate(Duration::from_secs(10));
    eventually(
        format!("{name}: udp.gw to leave the list"),
        WITHIN,
        || async {
            let got = hosts(&url, "gateways").await;
            (got == ["tcp.gw"]).then_some(()).ok_or(got)
        },
    )
    .await;

    // `menshen probe --once` checks from a process of its own, and tells.
    let mut once = vec!["probe", "--once", "--json", "--probe-timeout", "1s"];
    once.extend(store_args.iter().map(String::as_str));
    let out: Value = serde_json::from_str(&menshen_cli(&once)).unwrap();
    let mut seen: Vec<(String, String)> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap(),
                    r["host"].as_str().unwrap()
                ),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let expected: Vec<(String, String)> = [
        ("bridge/dead.br", "dysfunctional"),
        ("bridge/forged.br", "dysfunctional"),
        ("bridge/obfs4.br", "functional"),
        ("gateway/dead-tcp.gw", "dysfunctional"),
        ("gateway/dead-udp.gw", "dysfunctional"),
        ("gateway/tcp.gw", "functional"),
        ("gateway/udp.gw", "dysfunctional"),
    ]
    .iter()
    .map(|(h, s)| (h.to_string(), s.to_string()))
    .collect();
    assert_eq!(seen, expected, "{name}: {out}");

    // The gateway list on the command line shows the states too.
    let mut list = vec!["gateway", "list"];
    list.extend(store_args.iter().map(String::as_str));
    let table = menshen_cli(&list);
    let line = table.lines().find(|l| l.starts_with("tcp.gw ")).unwrap();
    assert!(line.ends_with("functional"), "{table}");
    menshen.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prober_checks_real_gateways_and_bridges() {
    require_real_peers();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tcp")).unwrap();
    let (ca_cert, ca_key) = openssl_ca(dir.path());
    let tcp = Gateway::signed_by_on(
        "tcp4-server",
        &dir.path().join("tcp"),
        free_tcp_port(),
        (&ca_cert, &ca_key),
        "10.235.0.0",
    );
    let state = dir.path().join("obfs4");
    std::fs::create_dir(&state).unwrap();
    let or_port = TcpListener::bind("127.0.0.1:0").unwrap();
    let obfs4_port = free_tcp_port();
    let obfs4 = Obfs4Proxy::start(&state, obfs4_port, or_port.local_addr().unwrap().port());
    let peers = Peers {
        tcp,
        obfs4,
        obfs4_port,
        dead_udp: free_udp_port(),
        dead_tcp: free_tcp_port(),
        _or_port: or_port,
    };

    let sqlite = dir.path().join("sqlite-data");
    run(
        "sqlite",
        &["--data-dir".into(), path_str(&sqlite).to_owned()],
        &peers,
        dir.path(),
    )
    .await;
    if let Some(db) = TestDatabase::create().await {
        let data = dir.path().join("postgres-data");
        run(
            "postgres",
            &[
                "--data-dir".into(),
                path_str(&data).to_owned(),
                "--database-url".into(),
                db.url.clone(),
            ],
            &peers,
            dir.path(),
        )
        .await;
    } else {
        eprintln!("note: no Postgres; the prober ran on SQLite only");
    }
}
