//! The gateway chart, `charts/gateway`: it lints, what it renders is valid
//! Kubernetes, its schema refuses typos, the agent configuration it renders
//! is one menshen-agent accepts (and reports the servers and bridge the
//! values describe), its OpenVPN servers are told what menshen tells
//! clients, and its pods get no more than they need.
//!
//! The tools as for `chart.rs`: `helm` (`MENSHEN_HELM`) and
//! `kubernetes-validate` (`MENSHEN_KUBERNETES_VALIDATE`), else on PATH;
//! missing ones skip unless `MENSHEN_TEST_REQUIRE_TOOLS=1`. Grafana Alloy
//! cannot be had here (no package of it, nor of a validator for its
//! configuration language), so its configuration is checked for shape only.

use std::path::{Path, PathBuf};

use menshen_e2e::agent_command;
use menshen_e2e::chart::{Chart, block_after, documents, kind_of, name_of, output, text};
use menshen_e2e::tools::{helm, repo};
use serde_json::Value;
use serde_norway::Value as Yaml;

fn the_chart() -> Chart {
    Chart::new("gateway", "gw1", "vpn")
}

/// `None` (the defaults), then every `examples/*.yaml` and `ci/*.yaml`.
fn every_values() -> Vec<Option<PathBuf>> {
    let files = the_chart().values_files(&["examples", "ci"]);
    assert!(files.len() >= 3, "values files: {files:?}");
    std::iter::once(None)
        .chain(files.into_iter().map(Some))
        .collect()
}

fn describe(values: &Option<PathBuf>) -> String {
    match values {
        Some(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
        None => "default values".into(),
    }
}

fn render(helm: &Path, values: &Option<PathBuf>, args: &[&str]) -> String {
    let files: Vec<&Path> = values.iter().map(PathBuf::as_path).collect();
    the_chart()
        .template(helm, &files, args)
        .unwrap_or_else(|e| panic!("helm template with {}: {e}", describe(values)))
}

/// The document of `kind` named `name`.
fn named<'a>(manifests: &'a str, kind: &str, name: &str) -> &'a str {
    documents(manifests)
        .into_iter()
        .find(|d| kind_of(d) == kind && name_of(d) == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in:\n{manifests}"))
}

menshen_e2e::chart_checks!(
    chart: the_chart(),
    values: every_values(),
    describe: describe,
    // Everything optional on as well.
    extras: &[
        &[],
        &[
            "--set",
            "openvpn.statusFile=true",
            "--set",
            "bridge.state.existingClaim=bridge-state",
        ],
    ],
    custom: &[],
);

#[test]
fn the_schema_refuses_typos_and_impossible_bridges() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let refused = [
        ("gateway:\n  nmae: gw1", "nmae"),
        ("gateway:\n  ipAddr: 192.0.2.300", "ipAddr"),
        (
            "openvpn:\n  servers:\n    - {name: udp, transport: sctp, port: 1194, network: 10.41.0.0, netmask: 255.255.255.0, managementPort: 7505, capacity: 10}",
            "transport",
        ),
        (
            "openvpn:\n  servers:\n    - {name: udp, transport: udp, port: 1194, network: 10.41.0.0, netmask: 255.255.255.0, managementPort: 7505}",
            "capacity",
        ),
        ("openvpn:\n  tlsVersionMin: \"1.4\"", "tlsVersionMin"),
        (
            "openvpn:\n  securityContext:\n    privilegd: true",
            "privilegd",
        ),
        ("bridge:\n  implementation: tor", "implementation"),
        ("bridge:\n  hop:\n    minHopSecond: 5", "minHopSecond"),
        (
            "bridge:\n  implementation: obfs4proxy\n  transport: kcp",
            "implementation",
        ),
        ("bridge:\n  type: obfs4\n  port: 0", "port"),
        ("agent:\n  metrics:\n    prot: 1", "prot"),
        ("agent:\n  interval: soon", "interval"),
        ("agent:\n  menshenUrl: api.example.org", "menshenUrl"),
        ("kresd:\n  forwarders: [dns.example.org]", "forwarders"),
        ("alloy:\n  remoteWrite:\n    url: ftp://x", "url"),
        ("alloys:\n  enabled: true", "alloys"),
    ];
    the_chart().schema_refuses_each(&helm, dir.path(), &refused);
    // A bridge forwarding to a server that does not exist is refused by name.
    let e = the_chart()
        .template(&helm, &[], &["--set", "bridge.openvpnServer=quic"])
        .unwrap_err();
    assert!(
        e.contains("bridge.openvpnServer") && e.contains("quic"),
        "{e}"
    );
}

/// The rendered agent configuration, with the bridge's state folder moved
/// to `state` (the pod's path does not exist here).
fn agent_config(manifests: &str, state: &Path) -> String {
    let map = named(manifests, "ConfigMap", "gw1-gateway-agent");
    block_after(map, "  menshen-agent.toml: |")
        .expect("menshen-agent.toml")
        .replace(
            "\"/var/lib/obfs4\"",
            &format!("{:?}", state.display().to_string()),
        )
}

/// What menshen-agent would push with `config` (`--once --dry-run`).
fn dry_run(dir: &Path, config: &str) -> Value {
    let file = dir.join("menshen-agent.toml");
    std::fs::write(&file, config).unwrap();
    let out = output(agent_command(&file).args(["--once", "--dry-run"]));
    assert!(
        out.status.success(),
        "menshen-agent refused the rendered configuration:\n{config}\n{}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_agent_accepts_what_the_chart_renders_and_reports_what_the_values_say() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // A bridge's state as obfsvpn and obfs4proxy write it (the obfs4
    // library's obfs4_state.json).
    std::fs::write(
        state.join("obfs4_state.json"),
        r#"{"node-id":"87c3c8f1c8979521453e0213513e94642d698193","private-key":"de6a8b5747b283ac2c6895d6aae008523418f6b008bcbef505038673eec263b2","public-key":"d9348b1ef7fe475895bc3962e1d2295fcd3b68013dfdb9ce5da00deac246756c","drbg-seed":"9188e0c587d857b5da03c758b824d558a0c7c9343d8c7db4","iat-mode":0}"#,
    )
    .unwrap();
    for values in every_values() {
        let manifests = render(&helm, &values, &[]);
        let report = dry_run(dir.path(), &agent_config(&manifests, &state));
        // Every OpenVPN server, with the port and transport its container runs.
        let gateways = report["gateways"].as_array().unwrap();
        let confs = named(&manifests, "ConfigMap", "gw1-gateway-openvpn");
        assert_eq!(gateways.len(), 2, "{}: {report}", describe(&values));
        for g in gateways {
            let name = g["host"].as_str().unwrap().split('.').next().unwrap();
            let conf = block_after(confs, &format!("  {name}.conf: |")).expect("its config");
            assert!(
                conf.contains(&format!("\nport {}\n", g["port"])),
                "{}: {g} vs\n{conf}",
                describe(&values)
            );
            let proto = if g["transport"] == "tcp" {
                "tcp-server"
            } else {
                "udp"
            };
            assert!(conf.contains(&format!("\nproto {proto}\n")), "{conf}");
        }
        // The bridge, with the cert from its state, and obfsvpn's hopping
        // settings where it hops.
        let bridge = &report["bridges"][0];
        assert_eq!(
            bridge["options"]["cert"],
            "h8PI8ciXlSFFPgITUT6UZC1pgZPZNIse9/5HWJW8OWLh0ilfzTtoAT39uc5doA3qwkZ1bA",
            "{}: {report}",
            describe(&values)
        );
        if bridge["type"] == "obfs4-hop" {
            assert_eq!(bridge["transport"], "kcp");
            assert_eq!(bridge["options"]["port_seed"], 4242, "{bridge}");
            assert_eq!(bridge["options"]["min_hop_port"], 49152, "{bridge}");
            let deployment = named(&manifests, "Deployment", "gw1-gateway-bridge");
            assert!(
                deployment.contains("- -port-seed\n            - \"4242\""),
                "{deployment}"
            );
        }
    }
}

/// `key = "value"` lines of `[service.openvpn_configuration]` in the
/// example provider file.
fn served_openvpn_options() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("examples/menshen.toml")).unwrap();
    text.lines()
        .skip_while(|l| l.trim() != "[service.openvpn_configuration]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

#[test]
fn openvpn_servers_are_told_what_clients_are_told() {
    let Some(helm) = helm() else { return };
    let manifests = render(&helm, &None, &[]);
    let confs = named(&manifests, "ConfigMap", "gw1-gateway-openvpn");
    let options = served_openvpn_options();
    assert!(options.len() >= 5, "{options:?}");
    for name in ["udp", "tcp"] {
        let conf = block_after(confs, &format!("  {name}.conf: |")).unwrap();
        // The cipher and TLS choices clients are given must be the server's.
        for key in [
            "auth",
            "data-ciphers",
            "tls-cipher",
            "tls-version-min",
            "keepalive",
        ] {
            let (_, value) = options
                .iter()
                .find(|(k, _)| k == key)
                .unwrap_or_else(|| panic!("{key} in examples/menshen.toml"));
            assert!(
                conf.lines().any(|l| l == format!("{key} {value}")),
                "{name}: {key} {value} missing:\n{conf}"
            );
        }
        for line in ["dh none", "duplicate-cn", "dev tun", "topology subnet"] {
            assert!(conf.lines().any(|l| l == line), "{name}: {line}:\n{conf}");
        }
    }
    let udp = block_after(confs, "  udp.conf: |").unwrap();
    assert!(udp.contains("management 127.0.0.1 7505\n"), "{udp}");
    assert!(
        udp.contains("push \"dhcp-option DNS 10.41.0.1\"\n"),
        "{udp}"
    );
    // kresd answers on that address.
    let kresd = named(&manifests, "ConfigMap", "gw1-gateway-kresd");
    assert!(
        kresd.contains("net.listen('10.41.0.1', 53, { kind = 'dns', freebind = true })"),
        "{kresd}"
    );
    assert!(kresd.contains("view:addr('10.41.0.0/21', policy.all(policy.PASS))"));
}

#[test]
fn pods_get_what_they_need_and_roll_when_their_configuration_changes() {
    let Some(helm) = helm() else { return };
    let manifests = render(&helm, &None, &[]);
    let deployments: Vec<&str> = documents(&manifests)
        .into_iter()
        .filter(|d| kind_of(d) == "Deployment")
        .collect();
    assert_eq!(deployments.len(), 5, "udp, tcp, bridge, kresd, agent");
    for d in &deployments {
        for line in [
            "hostNetwork: true",
            "type: Recreate",
            "replicas: 1",
            "automountServiceAccountToken: false",
            "type: RuntimeDefault",
            "readOnlyRootFilesystem: true",
            "runAsNonRoot: true",
            "- ALL",
            "livenessProbe:",
            "checksum/config: ",
        ] {
            assert!(d.contains(line), "{} lacks {line}:\n{d}", name_of(d));
        }
        assert!(!d.contains("privileged: true"), "{d}");
    }
    let udp = named(&manifests, "Deployment", "gw1-gateway-openvpn-udp");
    assert!(udp.contains("add:\n              - NET_ADMIN\n"), "{udp}");
    assert!(
        udp.contains("path: /dev/net/tun\n            type: CharDevice"),
        "{udp}"
    );
    assert!(udp.contains("secretName: gateway-openvpn-tls"), "{udp}");
    let agent = named(&manifests, "Deployment", "gw1-gateway-agent");
    assert!(
        !agent.contains("add:"),
        "the agent gets no capability: {agent}"
    );
    assert!(agent.contains("path: /healthz"), "{agent}");
    assert!(agent.contains("secretName: menshen-agent-token"), "{agent}");
    // The bridge and the agent share the state folder.
    let bridge = named(&manifests, "Deployment", "gw1-gateway-bridge");
    for d in [bridge, agent] {
        assert!(d.contains("path: /var/lib/menshen-gateway/bridge"), "{d}");
    }

    let checksum = |m: &str, name: &str| {
        named(m, "Deployment", name)
            .lines()
            .find(|l| l.trim_start().starts_with("checksum/config: "))
            .unwrap()
            .to_owned()
    };
    let changed = render(&helm, &None, &["--set", "openvpn.auth=SHA256"]);
    assert_ne!(
        checksum(&manifests, "gw1-gateway-openvpn-udp"),
        checksum(&changed, "gw1-gateway-openvpn-udp")
    );
    // Other pods keep running (and their clients connected).
    for other in [
        "gw1-gateway-kresd",
        "gw1-gateway-agent",
        "gw1-gateway-bridge",
    ] {
        assert_eq!(
            checksum(&manifests, other),
            checksum(&changed, other),
            "{other}"
        );
    }
    let changed = render(&helm, &None, &["--set", "agent.interval=30s"]);
    assert_ne!(
        checksum(&manifests, "gw1-gateway-agent"),
        checksum(&changed, "gw1-gateway-agent")
    );
}

/// Each container's user, the capabilities it may hold, and whether it
/// may gain them from its image's file capabilities (allowPrivilegeEscalation).
const CONTAINERS: &[(&str, &str, i64, &[&str], bool)] = &[
    (
        "gw1-gateway-openvpn-udp",
        "openvpn",
        10001,
        &["NET_ADMIN"],
        true,
    ),
    (
        "gw1-gateway-openvpn-tcp",
        "openvpn",
        10001,
        &["NET_ADMIN"],
        true,
    ),
    (
        "gw1-gateway-bridge",
        "bridge",
        65532,
        &["NET_BIND_SERVICE"],
        true,
    ),
    (
        "gw1-gateway-kresd",
        "kresd",
        10002,
        &["NET_BIND_SERVICE"],
        true,
    ),
    ("gw1-gateway-agent", "agent", 65532, &[], false),
];

#[test]
fn every_container_runs_as_a_plain_user_with_a_read_only_root_by_default() {
    let Some(helm) = helm() else { return };
    for values in every_values() {
        let manifests = render(&helm, &values, &[]);
        let what = describe(&values);
        let deployments: Vec<Yaml> = documents(&manifests)
            .into_iter()
            .filter(|d| kind_of(d) == "Deployment")
            .map(|d| serde_norway::from_str(d).unwrap())
            .collect();
        assert_eq!(deployments.len(), CONTAINERS.len(), "{what}");
        for &(deployment, container, uid, add, escalation) in CONTAINERS {
            let d = deployments
                .iter()
                .find(|d| d["metadata"]["name"] == deployment)
                .unwrap_or_else(|| panic!("{what}: no Deployment {deployment}"));
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{what}: {deployment}"
            );
            // The Secrets' files are root's, readable by fsGroup.
            assert_eq!(
                pod["securityContext"]["fsGroup"].as_i64(),
                Some(uid),
                "{what}: {deployment}"
            );
            assert!(pod["initContainers"].is_null(), "{what}: {deployment}");
            let containers = pod["containers"].as_sequence().unwrap();
            assert_eq!(containers.len(), 1, "{what}: {deployment}");
            let c = &containers[0];
            assert_eq!(c["name"], container, "{what}: {deployment}");
            let sc = &c["securityContext"];
            let at = format!("{what}: {deployment}/{container}: {sc:?}");
            assert_eq!(sc["runAsUser"].as_i64(), Some(uid), "{at}");
            assert_eq!(sc["runAsGroup"].as_i64(), Some(uid), "{at}");
            assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true), "{at}");
            assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{at}");
            assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{at}");
            assert_eq!(
                sc["allowPrivilegeEscalation"].as_bool(),
                Some(escalation),
                "{at}"
            );
            assert!(sc["privileged"].is_null(), "{at}");
            let caps = |key: &str| -> Vec<String> {
                sc["capabilities"][key]
                    .as_sequence()
                    .map(|s| s.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default()
            };
            assert_eq!(caps("drop"), ["ALL"], "{at}");
            assert_eq!(caps("add"), add, "{at}");
        }
        // The agent reads the bridge's 0600 state files as their owner.
        let user = |name: &str| {
            CONTAINERS
                .iter()
                .find(|c| c.0 == name)
                .map(|c| c.2)
                .unwrap()
        };
        assert_eq!(user("gw1-gateway-agent"), user("gw1-gateway-bridge"));
    }
}

#[test]
fn alloy_scrapes_the_agent_and_the_node_and_writes_to_the_backend() {
    let Some(helm) = helm() else { return };
    let values = Some(the_chart().path.join("examples/obfs4proxy.yaml"));
    let manifests = render(&helm, &values, &[]);
    let map = named(&manifests, "ConfigMap", "gw1-gateway-alloy");
    let config = block_after(map, "  config.alloy: |").expect("config.alloy");
    // Balanced blocks and strings (no parser of Alloy's language here).
    let mut depth = 0i32;
    let mut quoted = false;
    for c in config.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "{config}");
    }
    assert_eq!((depth, quoted), (0, false), "{config}");
    for needed in [
        "prometheus.exporter.unix \"node\"",
        "prometheus.scrape \"agent\"",
        "\"__address__\" = \"127.0.0.1:9176\"",
        "prometheus.remote_write \"backend\"",
        "url = \"https://prometheus.example.org/api/v1/write\"",
        "password_file = \"/etc/alloy/remote-write/password\"",
        "\"gateway\"  = \"gw1.ams.example.org\"",
        "\"provider\" = \"example.org\"",
    ] {
        assert!(config.contains(needed), "{needed} missing:\n{config}");
    }
    // Both scrapes forward to the one remote_write there is.
    assert_eq!(
        config
            .matches("forward_to      = [prometheus.remote_write.backend.receiver]")
            .count(),
        2,
        "{config}"
    );
}
