//! The backend chart started for real: the images built from this build's
//! binaries (`scripts/build-images.sh`), `charts/menshen` rendered by
//! `helm template` with `ci/podman-values.yaml`, and the result run by
//! `podman kube play --network host` against a fresh Postgres database on
//! this host. The menshen-agent image pushes a gateway; then the database is
//! cut off, and the pod must stay ready and keep serving clients.
//!
//! Key material comes from `menshen pki init --secret`; its Secret is
//! handed to podman as a ConfigMap of the same keys (`pki.fromConfigMap`),
//! as is the database URL (`database.external.urlFromConfigMap`), because
//! Debian's podman 4.3.1 panics on Secret volumes and expects JSON in
//! `secretKeyRef` data. Podman does not act on readiness probes, so the test
//! asks the rendered readiness path and port itself, over several of the
//! probe's periods.
//!
//! Tools: `podman`, `buildah` (and `debootstrap` the first time) on PATH;
//! `helm` in `MENSHEN_HELM` or on PATH; `openssl`; root. A missing tool
//! skips the test with a note, unless `MENSHEN_TEST_REQUIRE_TOOLS=1` (as in
//! CI). Podman's settings are `CONTAINERS_CONF` and
//! `CONTAINERS_STORAGE_CONF` when set, else ones written into
//! `target/containers/` (runc, cgroupfs, no default ulimits, vfs storage
//! under `target/containers/storage`). The images this test makes are
//! removed afterwards; the Debian base image (`localhost/menshen-base`) and
//! its debootstrap tarball (`target/images/`) are kept, so that only the
//! first run pays for debootstrap.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use menshen_e2e::http::{self, find_host, get_within, wait_ok};
use menshen_e2e::peers::openssl_fingerprint;
use menshen_e2e::podman::{
    Cleanup, Containers, backend_sets, configmap_of_secret, documents, playable, played_containers,
    podman_tools, target_and_profile,
};
use menshen_e2e::tools::{repo, run, text};
use menshen_e2e::{TestDatabase, binary, set_connections_allowed};
use serde_json::Value;
use serde_norway::Value as Yaml;

/// A stand-in for OpenVPN's management interface: greets, and answers
/// `load-stats` with `clients` connected clients.
fn fake_management(clients: u32) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.write_all(b">INFO:OpenVPN Management Interface Version 5\r\n");
                let reader = BufReader::new(stream.try_clone().unwrap());
                for line in reader.lines().map_while(Result::ok) {
                    let answer = match line.trim() {
                        "load-stats" => {
                            format!("SUCCESS: nclients={clients},bytesin=0,bytesout=0\r\n")
                        }
                        "quit" => return,
                        _ => "ERROR: unknown command\r\n".to_owned(),
                    };
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The readiness probe's URL of the rendered Deployment's container.
fn readiness_url(deployment: &Yaml) -> String {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let probe = &container["readinessProbe"]["httpGet"];
    let path = probe["path"].as_str().expect("readinessProbe.httpGet.path");
    let port = match &probe["port"] {
        Yaml::Number(n) => n.as_u64().unwrap(),
        Yaml::String(name) => container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("readiness port {other:?}"),
    };
    format!("http://127.0.0.1:{port}{path}")
}

async fn get(url: &str) -> Option<(u16, String)> {
    get_within(url, Duration::from_secs(2)).await
}

async fn get_json(url: &str) -> Value {
    let (status, body) = get(url).await.unwrap_or_else(|| panic!("{url}: no answer"));
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// Polls `url` until `pred` holds for its JSON, within `timeout`.
async fn wait_json(url: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    http::wait_json(url, Duration::from_secs(2), timeout, pred, String::new).await
}

fn hosts(list: &Value) -> Vec<&str> {
    let mut hosts: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["host"].as_str().unwrap())
        .collect();
    hosts.sort();
    hosts
}

#[tokio::test]
async fn the_chart_runs_under_podman_and_stays_ready_without_its_database() {
    let Some(helm) = podman_tools(&[]) else {
        return;
    };
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let started = Instant::now();
    let db_name = db.url.rsplit('/').next().unwrap().to_owned();

    static RUN: AtomicU32 = AtomicU32::new(0);
    let unique = format!(
        "{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    );
    let tag = format!("podman-test-{unique}");
    let release = format!("menshen-podman-{unique}");
    let (target, profile) = target_and_profile();
    let containers = Containers::new(&target);
    let mut cleanup = Cleanup::new(&containers);

    // The images, from this build's binaries.
    let built = Instant::now();
    cleanup.build_images(&tag, false);
    eprintln!(
        "images built from {profile} binaries in {:?}",
        built.elapsed()
    );

    // Key material, as an operator makes it.
    let work = cleanup.work.path().to_path_buf();
    let pki = work.join("pki");
    std::fs::create_dir(&pki).unwrap();
    let secret = run(Command::new(binary("menshen")).args([
        "pki",
        "init",
        "--secret",
        "menshen-pki",
        "--out",
        work.join("offline").to_str().unwrap(),
        "--name",
        "podman.test",
    ]));

    // What the chart renders, with this run's database, ports and images.
    // Podman keeps each ConfigMap as a named volume, and reuses one of the
    // same name: every name is this run's own.
    let pki_name = format!("{release}-pki");
    let (http, metrics) = (free_port(), free_port());
    let values = repo().join("charts/menshen/ci/podman-values.yaml");
    let rendered = run(Command::new(&helm)
        .args([
            "template",
            &release,
            repo().join("charts/menshen").to_str().unwrap(),
            "--skip-tests",
            "-f",
            values.to_str().unwrap(),
        ])
        .args(backend_sets(&tag, &db.url, http, metrics, &pki_name)));
    let docs = documents(&rendered);
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "pki")
            .and_then(|v| v["configMap"]["name"].as_str()),
        Some(pki_name.as_str()),
        "the pki volume is a ConfigMap (pki.fromConfigMap)"
    );
    let ready_url = readiness_url(deployment);
    let base = ready_url[..ready_url.rfind('/').unwrap()].to_owned();
    // Container ports left out (podman 4.3 on the host's network refuses
    // them), once the probe's port is known; the pki Secret as a ConfigMap.
    let mut played = playable(&rendered);
    played.push(configmap_of_secret(&secret, &pki_name, &pki));
    let play = cleanup.play("play.yaml", &played);

    // Ready, on the rendered readiness path and port.
    wait_ok(
        &ready_url,
        Duration::from_secs(2),
        Duration::from_secs(90),
        || format!("logs:\n{}", containers.logs(&play)),
    )
    .await;
    eprintln!(
        "pod ready after {:?} (since the test started)",
        started.elapsed()
    );

    let provider = get_json(&format!("{base}/provider.json")).await;
    assert_eq!(provider["domain"], "example.org", "{provider}");
    assert_eq!(
        menshen_e2e::clients::bitmask_core_ca_pin(
            provider["ca_cert_fingerprint"].as_str().unwrap()
        ),
        openssl_fingerprint(&pki, &pki.join("provider-ca.crt")),
        "the provider CA of the Secret"
    );

    // The agent image pushes a gateway, with a token minted against the same
    // database and signing key.
    let token = run(Command::new(binary("menshen")).args([
        "agent",
        "create",
        "podman-gw",
        "--database-url",
        &db.url,
        "--signing-key-file",
        pki.join("signing.key").to_str().unwrap(),
    ]));
    let agent_dir = work.join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    std::fs::write(agent_dir.join("token"), token.trim()).unwrap();
    let management = fake_management(5);
    std::fs::write(
        agent_dir.join("menshen-agent.toml"),
        format!(
            "menshen_url = \"{base}\"\ntoken_file = \"/run/menshen-agent/token\"\n\
             interval = \"2s\"\ncheck_interval = \"1s\"\n\n[host]\nname = \"gw-podman.example.org\"\n\
             ip_addr = \"192.0.2.30\"\nlocation = \"paris\"\n\n[[openvpn]]\ntransport = \"udp\"\n\
             port = 1194\nmanagement = \"127.0.0.1:{management}\"\ncapacity = 100\n"
        ),
    )
    .unwrap();
    // Readable by the agent's user (65532) in its container.
    for file in ["token", "menshen-agent.toml"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(agent_dir.join(file), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    let agent_name = format!("menshen-agent-{unique}");
    run(containers.podman(&[
        "run",
        "-d",
        "--name",
        &agent_name,
        "--network",
        "host",
        "--read-only",
        "-v",
        &format!(
            "{}:/etc/menshen-agent.toml:ro",
            agent_dir.join("menshen-agent.toml").display()
        ),
        "-v",
        &format!(
            "{}:/run/menshen-agent/token:ro",
            agent_dir.join("token").display()
        ),
        &cleanup.images[1],
    ]));
    cleanup.started.push(agent_name.clone());
    let gateways_url = format!("{base}/api/5/gateways");
    let agent_logs = |containers: &Containers| {
        let out = containers.podman(&["logs", &agent_name]).output().unwrap();
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    };
    let list = http::wait_json(
        &gateways_url,
        Duration::from_secs(2),
        Duration::from_secs(30),
        |list| hosts(list).contains(&"gw-podman.example.org"),
        || {
            format!(
                "the agent's gateway never listed\nagent:\n{}",
                agent_logs(&containers)
            )
        },
    )
    .await;
    assert_eq!(
        hosts(&list),
        ["gw-podman.example.org", "gw1.paris.example.org"]
    );
    let pushed = find_host(&list, "gw-podman.example.org").unwrap();
    assert_eq!(pushed["load"], 0.05, "5 clients of 100: {pushed}");

    // The database goes away: /healthz and the metrics say so, and the pod
    // stays ready and keeps serving what it knew.
    set_connections_allowed(&db_name, false).await;
    let health = wait_json(&format!("{base}/healthz"), Duration::from_secs(20), |h| {
        h["store_up"] == false
    })
    .await;
    assert_eq!(health["status"], "ok", "{health}");
    let cut_at = Instant::now();
    // Longer than the probe's periodSeconds × failureThreshold (5 s × 2).
    while cut_at.elapsed() < Duration::from_secs(12) {
        let asked = Instant::now();
        let answer = get(&ready_url).await;
        assert!(
            matches!(answer, Some((200, _))),
            "not ready without the database: {answer:?}"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "readiness answers at once"
        );
        let list = get_json(&gateways_url).await;
        assert_eq!(
            hosts(&list),
            ["gw-podman.example.org", "gw1.paris.example.org"],
            "still served"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let exposition = get(&format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .expect("metrics answer")
        .1;
    assert!(
        exposition.lines().any(|l| l == "menshen_store_up 0"),
        "{exposition}"
    );
    for id in played_containers(&play) {
        let state = run(containers.podman(&[
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} {{.RestartCount}}",
            &id,
        ]));
        assert!(
            state.trim().ends_with(" running 0"),
            "menshen's container runs, never restarted: {state}"
        );
    }
    // Back: the store shows as up again.
    set_connections_allowed(&db_name, true).await;
    wait_json(&format!("{base}/healthz"), Duration::from_secs(20), |h| {
        h["store_up"] == true
    })
    .await;
    drop(cleanup);
    eprintln!("podman test done in {:?}", started.elapsed());
}
