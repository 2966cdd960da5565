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

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use menshen_e2e::peers::{Obfs4Client, client, client_rows, manage};
use menshen_e2e::podman::{
    Cleanup, Containers, Observed, configmap, configmap_of_secret, playable, played_containers,
    target_and_profile,
};
use menshen_e2e::tools::{have, helm, is_root, on_path, repo, run};
use menshen_e2e::{Process, TestDatabase, binary};
use serde_json::Value;

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both TCP and UDP.
fn free_both() -> u16 {
    loop {
        let port = free_tcp();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Polls `url` until `pred` holds for its JSON, within `timeout`; on
/// failure says what it last saw, and `context()`.
async fn wait_json(
    url: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
    context: impl Fn() -> String,
) -> Value {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some((200, body)) = get(url).await
            && let Ok(value) = serde_json::from_str::<Value>(&body)
        {
            if pred(&value) {
                return value;
            }
            last = value;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "{url}: never as expected within {timeout:?}; last: {last}\n{}",
        context()
    );
}

fn find<'a>(list: &'a Value, host: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|g| g["host"] == host)
}

/// Waits until `pred` holds, polling every 250 ms.
fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// A DNS query for `name` (type A) over TCP to `addr`; the answer's first
/// IPv4 address.
fn resolve_a(addr: (&str, u16), name: &str) -> Option<std::net::Ipv4Addr> {
    use std::io::{Read, Write};
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer).ok()?;
    let answers = u16::from_be_bytes([answer[6], answer[7]]);
    if answers == 0 {
        return None;
    }
    // The answer's last four bytes: the first (only) A record's address.
    let n = answer.len();
    Some(std::net::Ipv4Addr::new(
        answer[n - 4],
        answer[n - 3],
        answer[n - 2],
        answer[n - 1],
    ))
}

/// The bridge's user, and the agent's (charts/gateway/values.yaml).
const BRIDGE_USER: u32 = 65532;
const NET_BIND_SERVICE: u64 = 1 << 10;
const NET_ADMIN: u64 = 1 << 12;

/// What each of the gateway chart's containers (by the end of its name)
/// must run as: its user, and the one capability it may hold, or none.
const EXPECTED: &[(&str, u32, u64)] = &[
    ("-openvpn", 10001, NET_ADMIN),
    ("-bridge", BRIDGE_USER, NET_BIND_SERVICE),
    ("-kresd", 10002, NET_BIND_SERVICE),
    ("-agent", BRIDGE_USER, 0),
];

/// Fails unless every process in `observed` runs as its container's user
/// (every uid and gid: real, effective, saved, filesystem) and within its
/// capabilities, under a seccomp filter, with `/` read-only.
fn check_processes(observed: &[Observed]) {
    let all = || {
        observed
            .iter()
            .map(Observed::summary)
            .collect::<Vec<_>>()
            .join("\n")
    };
    for &(suffix, _, _) in EXPECTED {
        assert!(
            observed
                .iter()
                .any(|p| p.main && p.container.ends_with(suffix)),
            "no container *{suffix}:\n{}",
            all()
        );
    }
    for p in observed {
        let &(_, user, cap) = EXPECTED
            .iter()
            .find(|(suffix, _, _)| p.container.ends_with(suffix))
            .unwrap_or_else(|| panic!("a container the chart should not start: {p:?}"));
        let at = p.summary();
        assert_eq!(p.uid, [user; 4], "{at}");
        assert_eq!(p.gid, [user; 4], "{at}");
        assert_eq!(p.seccomp, 2, "a seccomp filter: {at}");
        assert!(p.root_read_only, "{at}");
        // The bounding set: nothing in the container can hold more.
        assert_eq!(p.cap_bnd, cap, "{at}");
        if p.main {
            assert_eq!((p.cap_eff, p.cap_prm), (cap, cap), "{at}");
            if cap == 0 {
                assert!(p.no_new_privs, "{at}");
            } else {
                // No ambient capability: the kernel clears it when it runs a
                // binary with file capabilities, and then (without
                // no_new_privs) grants the file's capabilities within the
                // bounding set whatever the runtime gave the process before.
                // So the capability came from the image's `setcap`, as it
                // must on Kubernetes, which gives non-root containers no
                // ambient capabilities (podman does).
                assert_eq!(p.cap_amb, 0, "{at}");
                assert!(!p.no_new_privs, "{at}");
            }
        }
    }
}

/// Runs the gateway image's three binaries with capabilities as Kubernetes
/// hands them to a non-root container: in the bounding set only, none in
/// the process's sets (podman would add ambient ones, so `setpriv` clears
/// them and a shell starts with none). They must get their capability
/// from the image's file capabilities alone, and only without
/// no_new_privs (which `allowPrivilegeEscalation: false` sets).
fn capabilities_as_on_kubernetes(containers: &Containers, image: &str) {
    const SCRIPT: &str = r#"
echo "shell CapEff $(grep CapEff /proc/self/status | cut -f2)"
for nnp in "" --no-new-privs; do
    echo "no_new_privs $([ -n "$nnp" ] && echo on || echo off)"
    setpriv $nnp timeout 2 openvpn --dev tun --ifconfig-noexec --verb 3 2>&1 \
        | grep -o -E "TUN/TAP device tun0 opened|TUNSETIFF tun: Operation not permitted" | sed 's/^/openvpn: /'
    setpriv $nnp timeout 2 kresd -n -a 127.0.0.1@53 /tmp >/dev/null 2>&1; echo "kresd: exit $?"
    TOR_PT_MANAGED_TRANSPORT_VER=1 TOR_PT_STATE_LOCATION=/tmp/obfs4 TOR_PT_SERVER_TRANSPORTS=obfs4 \
        TOR_PT_SERVER_BINDADDR=obfs4-127.0.0.1:443 TOR_PT_ORPORT=127.0.0.1:1 \
        setpriv $nnp timeout 2 obfs4proxy 2>&1 | grep -E "^SMETHOD(-ERROR)? " | sed 's/ ARGS:.*//; s/^/obfs4proxy: /'
done
"#;
    let out = run(containers.podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "10001:10001",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "NET_BIND_SERVICE",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--device",
        "/dev/net/tun",
        image,
        "setpriv",
        "--inh-caps",
        "-all",
        "--ambient-caps",
        "-all",
        "sh",
        "-c",
        SCRIPT,
    ]));
    assert_eq!(
        out,
        "shell CapEff 0000000000000000\n\
         no_new_privs off\n\
         openvpn: TUN/TAP device tun0 opened\n\
         kresd: exit 124\n\
         obfs4proxy: SMETHOD obfs4 127.0.0.1:443\n\
         no_new_privs on\n\
         openvpn: TUNSETIFF tun: Operation not permitted\n\
         kresd: exit 1\n\
         obfs4proxy: SMETHOD-ERROR obfs4 listen tcp 127.0.0.1:443: bind: permission denied\n",
        "(kresd: exit 124 is still running when timeout stopped it)"
    );
}

#[tokio::test]
async fn both_charts_run_a_provider_that_real_clients_use() {
    let helm = helm();
    if !have("helm (MENSHEN_HELM or PATH)", helm.is_some())
        || !have("podman", on_path("podman").is_some())
        || !have("buildah", on_path("buildah").is_some())
        || !have("openvpn", on_path("openvpn").is_some())
        || !have("obfs4proxy", on_path("obfs4proxy").is_some())
        || !have("root (rootful podman)", is_root())
    {
        return;
    }
    let helm = helm.unwrap();
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
    let (target, profile) = target_and_profile();
    let containers = Containers::new(&target);
    let mut cleanup = Cleanup::new(&containers);
    cleanup.images = vec![
        format!("localhost/menshen:{tag}"),
        format!("localhost/menshen-agent:{tag}"),
        format!("localhost/menshen-gateway-tools:{tag}"),
    ];
    let images = containers.build_images(&target, &profile, &tag, true);
    assert_eq!(images, cleanup.images, "the images the script made");
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
    let rendered = run(Command::new(&helm).args([
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
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        &format!("database.external.url={}", db.url),
        "--set",
        &format!("containerPorts.http={http}"),
        "--set",
        &format!("containerPorts.metrics={metrics}"),
        "--set",
        &format!("pki.existingSecret={pki_name}"),
    ]));
    let mut backend = playable(&rendered);
    backend.push(pki_map);
    let backend_play = cleanup.play("backend.yaml", &backend);
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !matches!(get(&format!("{base}/readyz")).await, Some((200, _))) {
        assert!(
            Instant::now() < deadline,
            "menshen never ready:\n{}",
            containers.logs(&backend_play)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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
        |l| find(l, udp_host).is_some() && find(l, tcp_host).is_some(),
        logs,
    )
    .await;
    mark("gateway listed", &mut times);
    let g = find(&gateways, tcp_host).unwrap();
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
        |l| find(l, bridge_host).is_some(),
        logs,
    )
    .await;
    let b = find(&bridges, bridge_host).unwrap();
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
            find(l, tcp_host).is_some_and(|g| g["load"] == 0.02)
                && find(l, udp_host).is_some_and(|g| g["load"] == 0.01)
        },
        logs,
    )
    .await;
    assert!(find(&gateways, tcp_host).unwrap()["healthy"] == true);

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
        |l| find(l, udp_host).is_none() && find(l, tcp_host).is_none(),
        logs,
    )
    .await;
    wait_json(
        &format!("{base}/api/5/bridges"),
        Duration::from_secs(20),
        |l| find(l, bridge_host).is_none(),
        logs,
    )
    .await;
    let left_after = stopped.elapsed();
    assert!(
        left_after < Duration::from_secs(20),
        "left the lists after {left_after:?}"
    );
    mark("gateway gone", &mut times);
    assert!(wait_until(Duration::from_secs(5), || client_rows(tcp_mgmt).is_empty()));

    drop(cleanup);
    eprintln!(
        "system test done in {:.1?} ({}); the gateway left the lists {left_after:.1?} after its pods stopped; images: {}\nthe gateway's processes:\n  {}",
        started.elapsed(),
        times.join(", "),
        sizes.join(", "),
        users.join("\n  ")
    );
}
