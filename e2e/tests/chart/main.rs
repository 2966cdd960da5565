//! The backend Helm chart, `charts/menshen`: it lints, what it renders is
//! valid Kubernetes, its schema refuses typos, the provider file it renders
//! is one menshen accepts (and serves the same as `examples/menshen.toml`),
//! its alerts pass promtool and their unit tests, and every metric its
//! alerts and dashboard query is one menshen exports.
//!
//! The tools: `helm` (`MENSHEN_HELM`), `kubernetes-validate`
//! (`MENSHEN_KUBERNETES_VALIDATE`) and `promtool` (`MENSHEN_PROMTOOL`), else
//! found on PATH. A missing tool skips the test with a note, unless
//! `MENSHEN_TEST_REQUIRE_TOOLS=1` (as in CI), which makes it a failure.
//! No cluster is needed: everything runs offline.

use std::path::{Path, PathBuf};
use std::process::Command;

use menshen_e2e::chart::{Chart, block_after, documents, kind_of, only, output as run, text};
use menshen_e2e::http::get_json;
use menshen_e2e::tools::{self, tool};
use menshen_e2e::{Menshen, binary};
use serde_json::Value;

mod monitoring;

/// The release name and namespace the tests render with; the alerts' unit
/// tests (`charts/menshen/tests/rules-test.yaml`) expect these.
const RELEASE: &str = "menshen";
const NAMESPACE: &str = "vpn";

/// Kinds that no Kubernetes schema describes (custom resources), which the
/// chart may render; kubernetes-validate passes them over with a warning.
const CUSTOM_KINDS: &[&str] = &[
    "IngressRoute",
    "Certificate",
    "Cluster",
    "ServiceMonitor",
    "PrometheusRule",
];

fn repo() -> PathBuf {
    tools::repo()
}

fn the_chart() -> Chart {
    Chart::new("menshen", RELEASE, NAMESPACE)
}

fn chart() -> PathBuf {
    the_chart().path
}

fn helm() -> Option<PathBuf> {
    tools::helm()
}

/// The values files operators start from, and the podman test's: every
/// `examples/*.yaml` and `ci/*.yaml` of the chart.
fn values_files() -> Vec<PathBuf> {
    let files = the_chart().values_files(&["examples", "ci"]);
    assert!(files.len() >= 5, "values files: {files:?}");
    files
}

/// `None` (the chart's defaults), then each values file.
fn every_values() -> Vec<Option<PathBuf>> {
    std::iter::once(None)
        .chain(values_files().into_iter().map(Some))
        .collect()
}

fn describe(values: &Option<PathBuf>) -> String {
    match values {
        Some(p) => p.strip_prefix(chart()).unwrap_or(p).display().to_string(),
        None => "default values".into(),
    }
}

fn template(helm: &Path, values: &[&Path], args: &[&str]) -> Result<String, String> {
    the_chart().template(helm, values, args)
}

fn render(helm: &Path, values: &Option<PathBuf>, args: &[&str]) -> String {
    let files: Vec<&Path> = values.iter().map(PathBuf::as_path).collect();
    template(helm, &files, args)
        .unwrap_or_else(|e| panic!("helm template with {}: {e}", describe(values)))
}

/// Everything under the top-level `spec:` key, unindented by two.
fn spec_of(doc: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in doc.lines() {
        if inside {
            if !line.is_empty() && !line.starts_with(' ') {
                break;
            }
            out.push_str(line.get(2..).unwrap_or(""));
            out.push('\n');
        } else if line == "spec:" {
            inside = true;
        }
    }
    out
}

/// The provider file of a render (the chart's ConfigMap), if it renders one.
fn provider_file(manifests: &str) -> Option<String> {
    documents(manifests)
        .into_iter()
        .filter(|d| kind_of(d) == "ConfigMap")
        .find_map(|d| block_after(d, "  menshen.toml: |"))
}

const MONITORING: &[&str] = &[
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "grafanaDashboard.enabled=true",
    "--set",
    "serviceMonitor.enabled=true",
];

/// The prober and signed answers on (and a bridge rate limit).
const PROBER_AND_SIGNING: &[&str] = &[
    "--set",
    "prober.enabled=true",
    "--set",
    "prober.keepDysfunctional=true",
    "--set",
    "listSigning.existingSecret=menshen-lists",
    "--set",
    "listSigning.keys={old.key,new.key}",
    "--set",
    "menshen.bridges.rateLimit=30/h",
];

menshen_e2e::chart_checks!(
    chart: the_chart(),
    values: every_values(),
    describe: describe,
    // Everything optional on as well, so that every template is checked.
    extras: &[&[], MONITORING, PROBER_AND_SIGNING],
    custom: CUSTOM_KINDS,
);

#[test]
fn the_schema_refuses_typos_wrong_types_and_sqlite_with_several_replicas() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let refused = [
        ("replicaCunt: 2", "replicaCunt"),
        ("replicaCount: two", "replicaCount"),
        ("database:\n  externl:\n    existingSecret: db", "externl"),
        ("database:\n  type: mysql", "type"),
        ("config:\n  provider:\n    domian: example.org", "domian"),
        (
            "config:\n  gateway:\n    - {host: gw1, location: paris, port: \"1194\", transport: udp}",
            "port",
        ),
        (
            "config:\n  service:\n    openvpn_configuration:\n      rcvbuf: 0",
            "rcvbuf",
        ),
        ("menshen:\n  clientKeyType: rsa4096", "clientKeyType"),
        ("menshen:\n  resourceTtl: soon", "resourceTtl"),
        ("ingressRoute:\n  tls:\n    certManger: {}", "certManger"),
        ("serviceMonitor:\n  enable: true", "enable"),
        (
            "prometheusRule:\n  disabled:\n    MenshenDwn: true",
            "MenshenDwn",
        ),
        ("replicaCount: 2\ndatabase:\n  type: sqlite", "replicaCount"),
        ("pki:\n  existingSecret: \"\"", "existingSecret"),
        (
            "ingress:\n  enabled: true\ningressRoute:\n  enabled: true",
            "/ingress/enabled",
        ),
    ];
    the_chart().schema_refuses_each(&helm, dir.path(), &refused);
    // The same values, right, are accepted.
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "replicaCount: 1\ndatabase:\n  type: sqlite\nconfig:\n  gateway:\n    - {host: gw1, location: paris, port: 1194, transport: udp}\n",
    )
    .unwrap();
    template(&helm, &[&good], &[]).expect("valid values");
}

#[test]
fn rendered_provider_files_are_accepted_by_menshen_check_config() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for values in every_values() {
        let manifests = render(&helm, &values, &[]);
        let Some(toml) = provider_file(&manifests) else {
            // examples/ingress.yaml names a ConfigMap of the operator's.
            assert!(
                manifests.contains("name: menshen-provider"),
                "{}: no provider file rendered",
                describe(&values)
            );
            continue;
        };
        let file = dir.path().join("menshen.toml");
        std::fs::write(&file, &toml).unwrap();
        // The charts' examples use documentation addresses.
        let output = run(Command::new(binary("menshen"))
            .args(["check-config", "--allow-private-addresses"])
            .arg(&file)
            .env_remove("MENSHEN_DATABASE_URL"));
        assert!(
            output.status.success(),
            "{}: menshen check-config refused\n{toml}\n{}",
            describe(&values),
            text(&output)
        );
        checked += 1;
    }
    assert!(checked >= 5, "provider files checked: {checked}");

    // config.toml is used verbatim.
    let example = repo().join("examples/menshen.toml");
    let set_file = format!("config.toml={}", example.display());
    let manifests = render(&helm, &None, &["--set-file", &set_file]);
    assert_eq!(
        provider_file(&manifests).expect("provider file").trim_end(),
        std::fs::read_to_string(&example).unwrap().trim_end()
    );
}

/// What clients are told by a menshen serving `config`, with what differs
/// between two menshens by design (each generates its own CA) left out.
async fn served(config: &Path) -> Value {
    let menshen = Menshen::start(&["--config", config.to_str().unwrap()]);
    let mut provider = get_json(&format!("{}/provider.json", menshen.url)).await;
    provider
        .as_object_mut()
        .unwrap()
        .remove("ca_cert_fingerprint");
    let mut lists = Vec::new();
    for list in ["gateways", "bridges"] {
        let mut items = get_json(&format!("{}/api/5/{list}", menshen.url)).await;
        items
            .as_array_mut()
            .unwrap()
            .sort_by_key(|g| g["host"].as_str().unwrap_or_default().to_owned());
        lists.push(items);
    }
    serde_json::json!({
        "provider": provider,
        "service": get_json(&format!("{}/api/5/service", menshen.url)).await,
        "gateways": lists[0],
        "bridges": lists[1],
    })
}

#[tokio::test]
async fn the_provider_values_tree_serves_the_same_as_examples_menshen_toml() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().unwrap();
    // examples/postgres-external.yaml holds examples/menshen.toml as values
    // (but for the API's address: behind Traefik on 443, not 4430).
    let values = Some(chart().join("examples/postgres-external.yaml"));
    let rendered = dir.path().join("rendered.toml");
    let manifests = render(
        &helm,
        &values,
        &[
            "--set",
            "config.provider.api_uri=https://api.example.org:4430",
        ],
    );
    std::fs::write(&rendered, provider_file(&manifests).expect("provider file")).unwrap();
    let from_values = served(&rendered).await;
    let from_example = served(&repo().join("examples/menshen.toml")).await;
    assert_eq!(from_values, from_example);
    assert_eq!(from_values["gateways"].as_array().unwrap().len(), 4);

    // Strings TOML must escape, keys it must quote, whole and fractional
    // numbers, booleans and lists arrive as written.
    let tricky = dir.path().join("tricky.yaml");
    std::fs::write(
        &tricky,
        r#"
config:
  provider:
    name:
      en: "Exämple \"VPN\" \\ # [not a table] = 'x'"
      pt-BR: "Exemplo\nVPN\ttab"
      "zh.Hant": 範例
    stun_servers: ["stun.example.org:3478"]
  locations:
    "saint-denis.re":
      display_name: "Saint-Denis, Réunion"
      country_code: RE
      lat: -20.88
      lon: 55
      timezone: 4
  gateway:
    - host: gw1.example.org
      ip_addr: 192.0.2.1
      location: "saint-denis.re"
      port: 1194
      transport: udp
      load: 0.25
      experimental: false
"#,
    )
    .unwrap();
    let file = dir.path().join("tricky.toml");
    std::fs::write(
        &file,
        provider_file(&render(&helm, &Some(tricky), &[])).expect("provider file"),
    )
    .unwrap();
    let served = served(&file).await;
    let name = &served["provider"]["name"];
    assert_eq!(name["en"], "Exämple \"VPN\" \\ # [not a table] = 'x'");
    assert_eq!(name["pt-BR"], "Exemplo\nVPN\ttab");
    assert_eq!(name["zh.Hant"], "範例");
    assert_eq!(
        served["provider"]["stun_servers"][0],
        "stun.example.org:3478"
    );
    let location = &served["service"]["locations"]["saint-denis.re"];
    assert_eq!(location["display_name"], "Saint-Denis, Réunion", "{served}");
    assert_eq!(location["lat"], "-20.88");
    assert_eq!(location["lon"], "55");
    assert_eq!(served["gateways"][0]["port"], 1194);
    assert_eq!(served["gateways"][0]["location"], "saint-denis.re");
}

#[test]
fn the_deployment_keeps_replicas_serving_and_runs_locked_down() {
    let Some(helm) = helm() else { return };
    let manifests = render(&helm, &None, &[]);
    let deployment = only(&manifests, "Deployment");
    for expected in [
        "replicas: 2",
        "type: RollingUpdate",
        "maxUnavailable: 0",
        "runAsNonRoot: true",
        "runAsUser: 65532",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "- ALL",
        "type: RuntimeDefault",
        "automountServiceAccountToken: false",
        "path: /healthz",
        "path: /readyz",
        "secretName: menshen-pki",
        "value: /etc/menshen/pki/signing.key",
        "value: /etc/menshen/pki/provider-ca.crt",
        "secretKeyRef:",
        "topologyKey: kubernetes.io/hostname",
    ] {
        assert!(
            deployment.contains(expected),
            "{expected} missing:\n{deployment}"
        );
    }
    assert!(manifests.contains("kind: PodDisruptionBudget"));
    // The startup probe asks /healthz, readiness /readyz.
    let startup = deployment.split("startupProbe:").nth(1).unwrap();
    assert!(
        startup
            .trim_start()
            .starts_with("httpGet:\n              path: /healthz")
    );
    let readiness = deployment.split("readinessProbe:").nth(1).unwrap();
    assert!(
        readiness
            .trim_start()
            .starts_with("httpGet:\n              path: /readyz")
    );

    // A changed provider file rolls the pods.
    let checksum = |m: &str| {
        m.lines()
            .find(|l| l.trim_start().starts_with("checksum/config: "))
            .expect("checksum/config")
            .to_owned()
    };
    let changed = render(
        &helm,
        &None,
        &["--set", "config.provider.name.en=Another VPN"],
    );
    assert_ne!(checksum(&manifests), checksum(&changed));
    assert_eq!(checksum(&manifests), checksum(&render(&helm, &None, &[])));

    // With SQLite: one pod owns the file, so updates recreate.
    let sqlite = render(&helm, &Some(chart().join("examples/sqlite.yaml")), &[]);
    let deployment = only(&sqlite, "Deployment");
    assert!(deployment.contains("type: Recreate"), "{deployment}");
    assert!(deployment.contains("claimName: menshen-data"));
    assert!(!deployment.contains("MENSHEN_DATABASE_URL"));
    assert!(!sqlite.contains("kind: PodDisruptionBudget"));

    // Test harnesses' switch: the same keys from ConfigMaps.
    let podman = render(&helm, &Some(chart().join("ci/podman-values.yaml")), &[]);
    let deployment = only(&podman, "Deployment");
    assert!(!deployment.contains("secret"), "{deployment}");
    assert!(deployment.contains("configMapKeyRef:"));

    // helm test asks the Service for /provider.json and /readyz.
    let test_pod = only(&manifests, "Pod");
    assert!(test_pod.contains("helm.sh/hook: test"));
    // ... and is not taken for a replica by the Service or the budget.
    assert!(!test_pod.contains("app.kubernetes.io/name: menshen\n"));
    for path in ["/provider.json", "/readyz"] {
        assert!(
            test_pod.contains(&format!("\"http://menshen.vpn.svc:8443{path}\"")),
            "{test_pod}"
        );
    }
}

#[test]
fn traefik_route_carries_tls_and_menshen_trusts_the_proxies() {
    let Some(helm) = helm() else { return };
    let manifests = render(
        &helm,
        &Some(chart().join("examples/postgres-external.yaml")),
        &[],
    );
    let route = only(&manifests, "IngressRoute");
    for expected in [
        "apiVersion: traefik.io/v1alpha1",
        "- websecure",
        "match: Host(`api.example.org`)",
        "name: menshen\n",
        "port: http",
        "secretName: menshen-tls",
    ] {
        assert!(route.contains(expected), "{expected} missing:\n{route}");
    }
    // Nothing in the route narrows TLS's ALPN (h2 stays on).
    assert!(!route.contains("options:"), "{route}");
    let certificate = only(&manifests, "Certificate");
    assert!(certificate.contains("secretName: menshen-tls"));
    assert!(certificate.contains("- \"api.example.org\""));
    let deployment = only(&manifests, "Deployment");
    assert!(
        deployment.contains("name: MENSHEN_TRUSTED_PROXIES\n              value: \"10.42.0.0/16\""),
        "{deployment}"
    );
    // The ServiceMonitor selects the Service, by its port name.
    let monitor = only(&manifests, "ServiceMonitor");
    assert!(monitor.contains("- port: metrics"));
    assert!(only(&manifests, "Service").contains("name: metrics"));
}

/// Every variable the Deployment sets for menshen is one that `menshen
/// serve` reads (as its `--help` names them), with traces and connection
/// limits set through their values.
#[test]
fn every_variable_the_deployment_sets_is_one_menshen_reads() {
    let Some(helm) = helm() else { return };
    let manifests = render(
        &helm,
        &None,
        &[
            "--set",
            "menshen.tracing.otlpEndpoint=http://alloy.monitoring:4318",
            "--set",
            "menshen.tracing.samplerArg=0.1",
            "--set",
            "menshen.connections.maxConnections=5000",
        ],
    );
    let deployment = only(&manifests, "Deployment");
    let help = text(&run(
        Command::new(binary("menshen")).args(["serve", "--help"])
    ));
    let names: Vec<&str> = deployment
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .filter(|n| n.starts_with("MENSHEN_") || n.starts_with("OTEL_"))
        .collect();
    for expected in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_SERVICE_NAME",
        "MENSHEN_MAX_CONNECTIONS",
        "MENSHEN_STORE_TIMEOUT",
    ] {
        assert!(names.contains(&expected), "{expected} not set: {names:?}");
    }
    // The sampler variables are read by the OTLP SDK itself, not by flags.
    for name in names
        .iter()
        .filter(|n| !n.starts_with("OTEL_TRACES_SAMPLER"))
    {
        assert!(
            // `[env: NAME=]`, or `[env: NAME]` where values are hidden
            help.contains(&format!("{name}=")) || help.contains(&format!("{name}]")),
            "the chart sets {name}, which `menshen serve` does not read"
        );
    }
    assert!(deployment.contains("name: MENSHEN_MAX_CONNECTIONS\n              value: \"5000\""));
    assert!(deployment.contains("name: OTEL_TRACES_SAMPLER_ARG\n              value: \"0.1\""));
    // Without an endpoint, no traces are configured.
    let plain = render(&helm, &None, &[]);
    assert!(!only(&plain, "Deployment").contains("OTEL_"));
}

/// The names of the `MENSHEN_` variables `doc` sets.
fn menshen_variables(doc: &str) -> Vec<&str> {
    doc.lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .filter(|n| n.starts_with("MENSHEN_"))
        .collect()
}

/// Fails unless `menshen COMMAND --help` names every variable of `names`.
fn read_by(command: &str, names: &[&str]) {
    let help = text(&run(
        Command::new(binary("menshen")).args([command, "--help"])
    ));
    for name in names {
        assert!(
            help.contains(&format!("{name}=")) || help.contains(&format!("{name}]")),
            "the chart sets {name}, which `menshen {command}` does not read"
        );
    }
}

#[test]
fn the_prober_runs_beside_the_replicas_and_the_signing_keys_are_mounted() {
    let Some(helm) = helm() else { return };
    let manifests = render(&helm, &None, PROBER_AND_SIGNING);
    let deployments: Vec<&str> = documents(&manifests)
        .into_iter()
        .filter(|d| kind_of(d) == "Deployment")
        .collect();
    assert_eq!(deployments.len(), 2, "{manifests}");
    let (api, prober) = if deployments[0].contains("- serve") {
        (deployments[0], deployments[1])
    } else {
        (deployments[1], deployments[0])
    };
    // One prober, on the same Postgres, running `menshen probe`.
    assert!(prober.contains("replicas: 1"), "{prober}");
    assert!(prober.contains("- probe\n"), "{prober}");
    assert!(prober.contains("name: MENSHEN_DATABASE_URL"));
    read_by("probe", &menshen_variables(prober));
    // Neither the API's Service nor its Deployment selects the prober's pods.
    assert!(
        prober.contains("app.kubernetes.io/name: menshen-prober"),
        "{prober}"
    );
    let service = only(&manifests, "Service");
    assert!(
        service.contains("app.kubernetes.io/name: menshen\n"),
        "{service}"
    );
    // The replicas sign with the first key, publish both, and keep what
    // the prober finds dysfunctional as asked.
    assert!(api.contains("value: \"/etc/menshen/lists/old.key,/etc/menshen/lists/new.key\""));
    assert!(api.contains("secretName: menshen-lists"), "{api}");
    assert!(api.contains("name: MENSHEN_PROBE_KEEP_DYSFUNCTIONAL"));
    assert!(
        !api.contains("name: MENSHEN_PROBE\n"),
        "the replicas do not probe"
    );
    read_by("serve", &menshen_variables(api));

    // With SQLite the one pod probes itself.
    let sqlite = render(
        &helm,
        &Some(chart().join("examples/sqlite.yaml")),
        PROBER_AND_SIGNING,
    );
    let deployment = only(&sqlite, "Deployment");
    assert!(deployment.contains("name: MENSHEN_PROBE\n"), "{deployment}");
    read_by("serve", &menshen_variables(deployment));

    // A third key, or a key name that is not a file name, is refused.
    for bad in ["listSigning.keys={a,b,c}", "listSigning.keys={../x}"] {
        let e = template(&helm, &[], &["--set", bad]).unwrap_err();
        assert!(e.contains("listSigning"), "{bad}: {e}");
    }
}
