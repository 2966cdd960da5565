//! The whole system, started from the two charts: the images built from
//! this build's binaries and Debian's packages (`scripts/build-images.sh
//! --gateway`), the backend chart against a fresh Postgres database and a
//! gateway chart, both rendered by `helm template` from their values files
//! (`charts/menshen/ci/podman-values.yaml` with `e2e/system/backend-values.yaml`,
//! `charts/gateway/ci/podman-values.yaml`) and run by `podman kube play
//! --network host`. Then, from the host, as clients would:
//!
//! - the gateway's UDP and TCP servers and its bridge appear in menshen's
//!   lists, the bridge with the cert obfs4proxy wrote into its state
//!   folder, the servers with the load the agent read from OpenVPN;
//! - real OpenVPN clients fetch `/api/5/openvpn/config` and connect to the
//!   OpenVPN containers, over UDP, over TCP, and over TCP through the obfs4
//!   bridge (obfs4proxy's client mode as SOCKS5 proxy); they are pushed the
//!   gateway's resolver (`dhcp-option DNS`), and that resolver answers;
//! - the agent's metrics show the connected clients under the OpenVPN
//!   exporter's names;
//! - every process of every container the gateway chart started runs as
//!   its container's non-root user, with no capability but its one
//!   (NET_ADMIN for OpenVPN, NET_BIND_SERVICE for the bridge and kresd,
//!   none for the agent), under a seccomp filter, on a read-only root, as
//!   `/proc` shows them; and the gateway image's binaries get their
//!   capability from their file capabilities when started with none, as
//!   Kubernetes starts a non-root container, and not with no_new_privs;
//! - when the gateway's pods stop, the gateway and bridge leave the lists
//!   within the TTL.
//!
//! The host's network is left as it is: the OpenVPN servers and clients
//! run with `--ifconfig-noexec` (their tun devices are made, but not
//! configured), clients also with `--route-nopull`, as in the other
//! end-to-end tests; so no packet crosses the tunnels, but every handshake,
//! push and byte count is real.
//!
//! Needs what `podman.rs` needs (root, podman, buildah, runc, debootstrap,
//! helm) and openvpn and obfs4proxy on the host; skips with a note without
//! them unless `MENSHEN_TEST_REQUIRE_TOOLS=1`. Everything it makes is
//! removed afterwards but for the Debian bases and their tarballs
//! (`target/images/`).

use std::process::Command;
use std::time::{Duration, Instant};

use menshen_e2e::http::{self, find_host, get_within, wait_ok};
use menshen_e2e::peers::{Obfs4Client, client, client_rows, manage};
use menshen_e2e::podman::{
    Cleanup, Containers, backend_sets, configmap, configmap_of_secret, playable, played_containers,
    podman_tools, target_and_profile,
};
use menshen_e2e::tools::{repo, run};
use menshen_e2e::wait::poll_blocking;
use menshen_e2e::{Process, TestDatabase, binary};
use serde_json::Value;

mod checks;

use checks::{
    BRIDGE_USER, capabilities_as_on_kubernetes, check_processes, free_both, free_tcp, resolve_a,
};

async fn get(url: &str) -> Option<(u16, String)> {
    get_within(url, Duration::from_secs(3)).await
}

/// Polls `url` until `pred` holds for its JSON, within `timeout`; on
/// failure says what it last saw, and `context()`.
async fn wait_json(
    url: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
    context: impl Fn() -> String,
) -> Value {
    http::wait_json(url, Duration::from_secs(3), timeout, pred, context).await
}
#[tokio::test]
async fn both_charts_run_a_provider_that_real_clients_use() {
    let Some(helm) = podman_tools(&["openvpn", "obfs4proxy"]) else {
        return;
    };
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let started = Instant::now();
    let mut times = Vec::new();
    let mut lap = Instant::now();
    let mut mark = |what: &str, times: &mut Vec<String>| {
        times.push(format!("{what} {:.1?}", lap.elapsed()));
        lap = Instant::now();
    };

    let unique = std::process::id();
    let tag = format!("system-test-{unique}");
    let release = format!("system-{unique}");
    let containers = Containers::new(&target_and_profile().0);
    let mut cleanup = Cleanup::new(&containers);
    let images = cleanup.build_images(&tag, true);
    let sizes: Vec<String> = images
        .iter()
        .map(|i| format!("{i} {}", containers.image_size(i)))
        .collect();
    mark("images", &mut times);

    // Key material, as an operator makes it: the provider's, then the
    // gateway's server certificate from the provider CA.
    let work = cleanup.work.path().to_path_buf();
    let pki = work.join("pki");
    std::fs::create_dir(&pki).unwrap();
    let offline = work.join("offline");
    let backend_secret = run(Command::new(binary("menshen")).args([
        "pki",
        "init",
        "--secret",
        "menshen-pki",
        "--out",
        offline.to_str().unwrap(),
        "--name",
        "system.test",
    ]));
    let pki_name = format!("{release}-pki");
    let pki_map = configmap_of_secret(&backend_secret, &pki_name, &pki);
    let gateway_secret = run(Command::new(binary("menshen")).args([
        "pki",
        "gateway-cert",
        "gw-system.example.org",
        "--ip",
        "127.0.0.1",
        "--ca-cert",
        offline.join("provider-ca.crt").to_str().unwrap(),
        "--ca-key",
        offline.join("provider-ca.key").to_str().unwrap(),
        "--client-ca",
        pki.join("ca.crt").to_str().unwrap(),
        "--secret",
        "gateway-openvpn-tls",
    ]));
    let tls_name = format!("{release}-openvpn-tls");
    let tls_dir = work.join("gateway-tls");
    std::fs::create_dir(&tls_dir).unwrap();
    let tls_map = configmap_of_secret(&gateway_secret, &tls_name, &tls_dir);

    // The backend.
    let (http, metrics) = (free_tcp(), free_tcp());
    let rendered = run(Command::new(&helm)
        .args([
            "template",
            &format!("{release}-backend"),
            repo().join("charts/menshen").to_str().unwrap(),
            "--skip-tests",
            "-f",
            repo()
                .join("charts/menshen/ci/podman-values.yaml")
                .to_str()
                .unwrap(),
            "-f",
            repo()
                .join("e2e/system/backend-values.yaml")
                .to_str()
                .unwrap(),
        ])
        .args(backend_sets(&tag, &db.url, http, metrics, &pki_name)));
    let mut backend = playable(&rendered);
    backend.push(pki_map);
    let backend_play = cleanup.play("backend.yaml", &backend);
    let base = format!("http://127.0.0.1:{http}");
    wait_ok(
        &format!("{base}/readyz"),
        Duration::from_secs(3),
        Duration::from_secs(90),
        || format!("menshen never ready:\n{}", containers.logs(&backend_play)),
    )
    .await;
    mark("backend ready", &mut times);

    // The gateway, with a token minted against the backend's database and
    // signing key.
    let token = run(Command::new(binary("menshen")).args([
        "agent",
        "create",
        "gw-system",
        "--database-url",
        &db.url,
        "--signing-key-file",
        pki.join("signing.key").to_str().unwrap(),
    ]));
    let token_name = format!("{release}-agent-token");
    let token_map = configmap(&token_name, &[("token", token.trim())]);
    let (udp, tcp, bridge_port) = (free_both(), free_tcp(), free_tcp());
    let (udp_mgmt, tcp_mgmt) = (free_tcp(), free_tcp());
    let (dns, dns_health, agent_metrics) = (free_both(), free_tcp(), free_tcp());
    // The bridge's state folder, made as an operator makes it: owned by
    // the bridge's user (65532), which is not root.
    let state = work.join("bridge-state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(BRIDGE_USER), Some(BRIDGE_USER)).unwrap();
    let sets = [
        format!("openvpn.image.tag={tag}"),
        format!("bridge.image.tag={tag}"),
        format!("kresd.image.tag={tag}"),
        format!("agent.image.tag={tag}"),
        format!("openvpn.servers[0].port={udp}"),
        format!("openvpn.servers[0].managementPort={udp_mgmt}"),
        format!("openvpn.servers[1].port={tcp}"),
        format!("openvpn.servers[1].managementPort={tcp_mgmt}"),
        format!("openvpn.tls.existingSecret={tls_name}"),
        format!("bridge.port={bridge_port}"),
        format!("bridge.state.hostPath={}", state.display()),
        format!("kresd.port={dns}"),
        format!("kresd.healthPort={dns_health}"),
        format!("agent.metrics.port={agent_metrics}"),
        format!("agent.menshenUrl={base}"),
        format!("agent.token.existingSecret={token_name}"),
    ];
    let mut args = vec![
        "template".to_owned(),
        format!("{release}-gateway"),
        repo().join("charts/gateway").to_str().unwrap().to_owned(),
        "-f".to_owned(),
        repo()
            .join("charts/gateway/ci/podman-values.yaml")
            .to_str()
            .unwrap()
            .to_owned(),
    ];
    for set in &sets {
        args.push("--set".to_owned());
        args.push(set.clone());
    }
    let rendered = run(Command::new(&helm).args(&args));
    let mut gateway = playable(&rendered);
    gateway.push(tls_map);
    gateway.push(token_map);
    let gateway_play = cleanup.play("gateway.yaml", &gateway);
    let logs = || {
        format!(
            "gateway:\n{}\nbackend:\n{}",
            containers.logs(&gateway_play),
            containers.logs(&backend_play)
        )
    };

    // The servers and the bridge are listed, the bridge with the cert
    // obfs4proxy wrote.
    let (udp_host, tcp_host, bridge_host) = (
        "udp.gw-system.example.org",
        "tcp.gw-system.example.org",
        "gw-system.example.org",
    );
    let gateways = wait_json(
        &format!("{base}/api/5/gateways"),
        Duration::from_secs(60),
        |l| find_host(l, udp_host).is_some() && find_host(l, tcp_host).is_some(),
        logs,
    )
    .await;
    mark("gateway listed", &mut times);
    let g = find_host(&gateways, tcp_host).unwrap();
    assert_eq!(
        (
            g["ip_addr"].as_str(),
            g["port"].as_u64(),
            g["transport"].as_str()
        ),
        (Some("127.0.0.1"), Some(u64::from(tcp)), Some("tcp")),
        "{g}"
    );
    let bridges = wait_json(
        &format!("{base}/api/5/bridges"),
        Duration::from_secs(30),
        |l| find_host(l, bridge_host).is_some(),
        logs,
    )
    .await;
    let b = find_host(&bridges, bridge_host).unwrap();
    let line = std::fs::read_to_string(state.join("obfs4_bridgeline.txt"))
        .expect("obfs4proxy's bridge line in the state folder on the host");
    let cert = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("cert="))
        .expect("cert= in the bridge line")
        .to_owned();
    assert_eq!(b["options"]["cert"], cert.as_str(), "{b}");
    assert_eq!(b["options"]["iatMode"], "0", "{b}");
    assert_eq!(b["port"].as_u64(), Some(u64::from(bridge_port)));
    assert_eq!(b["type"], "obfs4");

    // The prober, a pod of its own beside the backend's, checks them from
    // outside: OpenVPN answers its hard reset over UDP and TCP, the bridge
    // completes an obfs4 handshake with its cert.
    let viewer = run(Command::new(binary("menshen")).args([
        "admin",
        "token",
        "--subject",
        "system-test",
        "--role",
        "viewer",
        "--database-url",
        &db.url,
        "--signing-key-file",
        pki.join("signing.key").to_str().unwrap(),
    ]));
    let probed = |what: &'static str, hosts: Vec<&'static str>| {
        let (url, viewer) = (format!("{base}/admin/v1/{what}"), viewer.trim().to_owned());
        async move {
            let list = http::get_json_as(&url, &viewer).await;
            let states: Vec<String> = hosts
                .iter()
                .map(|h| {
                    find_host(&list, h).map_or("absent".into(), |r| {
                        r["probe"]["state"]
                            .as_str()
                            .unwrap_or("untested")
                            .to_owned()
                    })
                })
                .collect();
            states
                .iter()
                .all(|s| s == "functional")
                .then_some(())
                .ok_or(list)
        }
    };
    menshen_e2e::wait::eventually(
        "the prober to find the servers functional",
        Duration::from_secs(60),
        || probed("gateways", vec![udp_host, tcp_host]),
    )
    .await;
    menshen_e2e::wait::eventually(
        "the prober to find the bridge functional",
        Duration::from_secs(60),
        || probed("bridges", vec![bridge_host]),
    )
    .await;
    mark("probed", &mut times);

    // Real clients, with the served configurations.
    let config = |tr: &str| {
        let url = format!("{base}/api/5/openvpn/config?tr={tr}");
        async move {
            let (status, body) = get(&url).await.expect("config answers");
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let udp_config = config("udp").await;
    assert!(
        udp_config.contains(&format!("remote 127.0.0.1 {udp}")),
        "{udp_config}"
    );
    let tcp_config = config("tcp").await;
    let write = |name: &str, text: &str| {
        let path = work.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut udp_client = client(&write("udp.ovpn", &udp_config));
    let mut tcp_client = client(&write("tcp.ovpn", &tcp_config));
    let connected = |client: &mut Process, what: &str| {
        let line = client.wait_for_line(Duration::from_secs(60), |l| {
            l.contains("Initialization Sequence Completed")
        });
        assert!(
            line.is_some(),
            "the {what} client did not connect:\n{}\n{}",
            client.drain_log(),
            logs()
        );
    };
    connected(&mut udp_client, "UDP");
    connected(&mut tcp_client, "TCP");
    mark("clients connected", &mut times);
    assert_eq!(client_rows(udp_mgmt).len(), 1);
    assert_eq!(client_rows(tcp_mgmt).len(), 1);
    // Pushed: the resolver on the server's tun address.
    let pushed = tcp_client.drain_log();
    assert!(pushed.contains("dhcp-option DNS 10.42.0.1"), "{pushed}");
    // ... which answers (on its host listener; the tun addresses are not
    // configured here).
    assert_eq!(
        resolve_a(("127.0.0.1", dns_health), "resolver.gw-system.example.org"),
        Some("10.42.0.1".parse().unwrap()),
        "kresd answers\n{}",
        logs()
    );

    // Through the bridge: obfs4proxy's client as SOCKS5 proxy, to the
    // bridge, which forwards to the TCP server.
    let obfs4 = Obfs4Client::start();
    let auth = Obfs4Client::authfile(&work, &cert, "0");
    let mut bridged: String = tcp_config
        .lines()
        .filter(|l| !l.starts_with("remote "))
        .map(|l| format!("{l}\n"))
        .collect();
    bridged.push_str(&format!(
        "remote 127.0.0.1 {bridge_port} tcp\nsocks-proxy {} {} {}\n",
        obfs4.socks.ip(),
        obfs4.socks.port(),
        auth.display()
    ));
    let mut bridge_client = client(&write("bridge.ovpn", &bridged));
    connected(&mut bridge_client, "obfs4");
    assert_eq!(
        client_rows(tcp_mgmt).len(),
        2,
        "two clients on the TCP server"
    );
    mark("client through the bridge", &mut times);

    // Every process the gateway chart started runs as its plain user, with
    // the capabilities it needs and no other, under seccomp, on a
    // read-only root: as the kernel says (/proc), not as the manifests say.
    let played = played_containers(&gateway_play);
    assert_eq!(
        played.len(),
        5,
        "udp, tcp, bridge, kresd, agent:\n{gateway_play}"
    );
    let mut observed = Vec::new();
    for id in &played {
        observed.extend(containers.processes(id));
    }
    check_processes(&observed);
    capabilities_as_on_kubernetes(&containers, &images[2]);
    mark("processes checked", &mut times);
    let users: Vec<String> = observed.iter().map(|p| p.summary()).collect();

    // The agent read it: load 2 of 100 on tcp, 1 of 100 on udp.
    let gateways = wait_json(
        &format!("{base}/api/5/gateways"),
        Duration::from_secs(20),
        |l| {
            find_host(l, tcp_host).is_some_and(|g| g["load"] == 0.02)
                && find_host(l, udp_host).is_some_and(|g| g["load"] == 0.01)
        },
        logs,
    )
    .await;
    assert!(find_host(&gateways, tcp_host).unwrap()["healthy"] == true);

    // ... and its metrics say so, as the OpenVPN exporter would.
    let exposition = get(&format!("http://127.0.0.1:{agent_metrics}/metrics"))
        .await
        .expect("the agent's metrics answer")
        .1;
    for line in [
        format!("openvpn_server_connected_clients{{status_path=\"127.0.0.1:{tcp_mgmt}\"}} 2"),
        format!("openvpn_server_connected_clients{{status_path=\"127.0.0.1:{udp_mgmt}\"}} 1"),
        format!("openvpn_up{{status_path=\"127.0.0.1:{tcp_mgmt}\"}} 1"),
    ] {
        assert!(
            exposition.lines().any(|l| l == line),
            "{line} missing:\n{exposition}"
        );
    }
    assert!(
        exposition.lines().any(|l| l
            .starts_with("openvpn_server_client_received_bytes_total{common_name=\"UNLIMITED\"")),
        "{exposition}"
    );
    let ok_pushes = exposition
        .lines()
        .find_map(|l| l.strip_prefix("menshen_agent_pushes_total{outcome=\"ok\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(ok_pushes >= 1, "{exposition}");
    assert!(
        manage(tcp_mgmt, "load-stats")
            .unwrap()
            .iter()
            .any(|l| l.starts_with("SUCCESS: nclients=2")),
        "the management interface stays usable beside the agent"
    );

    // The gateway's pods stop: its servers and bridge leave the lists
    // within the TTL (6 s) of the agent's last heartbeat.
    drop((udp_client, tcp_client, bridge_client, obfs4));
    let stopped = Instant::now();
    cleanup.down("gateway.yaml");
    wait_json(
        &format!("{base}/api/5/gateways"),
        Duration::from_secs(20),
        |l| find_host(l, udp_host).is_none() && find_host(l, tcp_host).is_none(),
        logs,
    )
    .await;
    wait_json(
        &format!("{base}/api/5/bridges"),
        Duration::from_secs(20),
        |l| find_host(l, bridge_host).is_none(),
        logs,
    )
    .await;
    let left_after = stopped.elapsed();
    assert!(
        left_after < Duration::from_secs(20),
        "left the lists after {left_after:?}"
    );
    mark("gateway gone", &mut times);
    assert!(
        poll_blocking(Duration::from_secs(5), || client_rows(tcp_mgmt)
            .is_empty()
            .then_some(()))
        .is_some()
    );

    drop(cleanup);
    eprintln!(
        "system test done in {:.1?} ({}); the gateway left the lists {left_after:.1?} after its pods stopped; images: {}\nthe gateway's processes:\n  {}",
        started.elapsed(),
        times.join(", "),
        sizes.join(", "),
        users.join("\n  ")
    );
}
