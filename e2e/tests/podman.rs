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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use menshen_e2e::{TestDatabase, admin_url, binary};
use serde_json::Value;
use serde_norway::Value as Yaml;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// `target/` (or CARGO_TARGET_DIR), and the profile the binaries were
/// built with (`debug` or `release`), from where this build's binaries are.
fn target_and_profile() -> (PathBuf, String) {
    let bin_dir = binary("menshen").parent().expect("bin dir").to_path_buf();
    let profile = bin_dir.file_name().unwrap().to_str().unwrap().to_owned();
    (bin_dir.parent().expect("target dir").to_path_buf(), profile)
}

fn tools_required() -> bool {
    std::env::var("MENSHEN_TEST_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Skips (returns `false`, with a note) or fails when `what` is missing.
fn have(what: &str, found: bool) -> bool {
    if !found {
        assert!(
            !tools_required(),
            "{what} is required (MENSHEN_TEST_REQUIRE_TOOLS=1) but missing"
        );
        eprintln!("note: {what} missing; skipping the podman test of the chart");
    }
    found
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn helm() -> Option<PathBuf> {
    match std::env::var_os("MENSHEN_HELM").filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => on_path("helm"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command`, failing the test with its output unless it succeeds.
fn run(mut command: impl std::borrow::BorrowMut<Command>) -> String {
    let command = command.borrow_mut();
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Podman's and buildah's settings: the caller's, else ones of our own.
struct Containers {
    env: Vec<(String, String)>,
}

impl Containers {
    fn new(target: &Path) -> Containers {
        let dir = target.join("containers");
        std::fs::create_dir_all(&dir).unwrap();
        let mut env = Vec::new();
        let conf = std::env::var("CONTAINERS_CONF").unwrap_or_else(|_| {
            let path = dir.join("containers.conf");
            std::fs::write(
                &path,
                "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
                 runtime = \"runc\"\n",
            )
            .unwrap();
            path.to_str().unwrap().to_owned()
        });
        env.push(("CONTAINERS_CONF".to_owned(), conf));
        let storage = std::env::var("CONTAINERS_STORAGE_CONF").unwrap_or_else(|_| {
            let path = dir.join("storage.conf");
            std::fs::write(
                &path,
                format!(
                    "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                    dir.join("storage").display(),
                    dir.join("run").display()
                ),
            )
            .unwrap();
            path.to_str().unwrap().to_owned()
        });
        env.push(("CONTAINERS_STORAGE_CONF".to_owned(), storage));
        Containers { env }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    fn podman(&self, args: &[&str]) -> Command {
        let mut command = self.command("podman");
        command.args(args);
        command
    }
}

/// Everything the test started or made, undone when dropped (also when the
/// test panics): the kube play, the volumes podman made of its ConfigMaps
/// (which `kube down` leaves), the agent's container, the images.
struct Cleanup<'a> {
    containers: &'a Containers,
    /// Holds the kube file: removed only after `kube down` read it.
    work: tempfile::TempDir,
    kube_file: Option<PathBuf>,
    volumes: Vec<String>,
    agent: Option<String>,
    images: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let quiet = |mut command: Command| {
            let _ = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        if let Some(name) = &self.agent {
            quiet(self.containers.podman(&["rm", "-f", "-t", "2", name]));
        }
        if let Some(file) = &self.kube_file {
            quiet(
                self.containers
                    .podman(&["kube", "down", file.to_str().unwrap()]),
            );
        }
        for volume in &self.volumes {
            quiet(self.containers.podman(&["volume", "rm", "-f", volume]));
        }
        for image in &self.images {
            quiet(self.containers.podman(&["rmi", "-f", image]));
        }
    }
}

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

/// The documents of a YAML stream, parsed (empty ones left out).
fn documents(stream: &str) -> Vec<Yaml> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in stream.lines().chain(std::iter::once("---")) {
        if line == "---" {
            let doc: Yaml = serde_norway::from_str(&current)
                .unwrap_or_else(|e| panic!("not YAML ({e}):\n{current}"));
            if !doc.is_null() {
                docs.push(doc);
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

/// The documents of a YAML stream, as text (empty ones left out).
fn raw_documents(stream: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in stream.lines() {
        if line == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// `doc` without the `ports:` lists of its containers (blocks indented
/// deeper than a top-level key).
fn without_container_ports(doc: &str) -> String {
    let mut out = String::new();
    let mut skipping: Option<usize> = None;
    for line in doc.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(at) = skipping {
            if line.trim().is_empty()
                || indent > at
                || line.trim_start().starts_with("- ") && indent == at
            {
                continue;
            }
            skipping = None;
        }
        if line.trim() == "ports:" && indent > 2 {
            skipping = Some(indent);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
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

/// The pki ConfigMap the podman values ask for: the keys of the Secret
/// `menshen pki init --secret` printed, decoded. Also writes them into `dir`
/// for the CLI run on the host.
fn pki_configmap(secret: &str, name: &str, dir: &Path) -> String {
    let secret: Yaml = serde_norway::from_str(secret).unwrap();
    assert_eq!(secret["kind"], "Secret");
    let mut out = format!(
        "# menshen pki init's Secret, as a ConfigMap (podman 4.3.1 cannot mount Secrets).\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n"
    );
    for (key, value) in secret["data"].as_mapping().unwrap() {
        let key = key.as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap();
        let content = String::from_utf8(bytes).unwrap();
        std::fs::write(dir.join(key), &content).unwrap();
        // A JSON string is a YAML string.
        out.push_str(&format!("  {key}: {}\n", Value::String(content)));
    }
    out
}

async fn get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

async fn get_json(url: &str) -> Value {
    let (status, body) = get(url).await.unwrap_or_else(|| panic!("{url}: no answer"));
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// Polls `url` until `pred` holds for its JSON, within `timeout`.
async fn wait_json(url: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
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
    panic!("{url}: never as expected within {timeout:?}; last: {last}");
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

/// SHA-256 of a PEM certificate's DER, lowercase hex, as openssl says.
fn fingerprint(cert: &Path) -> String {
    let out = run(Command::new("openssl").args([
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]));
    out.trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// Allows or refuses connections to database `name`, dropping the
/// existing ones when refusing: the database is down, for its clients.
async fn set_connections_allowed(name: &str, allowed: bool) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS {allowed}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    if !allowed {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// The ids of the containers `podman kube play` started, from what it
/// printed.
fn played_containers(play_output: &str) -> Vec<String> {
    play_output
        .lines()
        .skip_while(|l| !l.starts_with("Container"))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The logs of the containers `podman kube play` started, for failures.
fn logs(containers: &Containers, play_output: &str) -> String {
    let mut out = String::new();
    for id in played_containers(play_output) {
        if let Ok(logs) = containers.podman(&["logs", &id]).output() {
            out.push_str(&text(&logs.stdout));
            out.push_str(&text(&logs.stderr));
        }
    }
    out
}

#[tokio::test]
async fn the_chart_runs_under_podman_and_stays_ready_without_its_database() {
    let helm = helm();
    let is_root = run(Command::new("id").arg("-u")).trim() == "0";
    if !have("helm (MENSHEN_HELM or PATH)", helm.is_some())
        || !have("podman", on_path("podman").is_some())
        || !have("buildah", on_path("buildah").is_some())
        || !have("root (rootful podman)", is_root)
    {
        return;
    }
    let helm = helm.unwrap();
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
    let mut cleanup = Cleanup {
        containers: &containers,
        work: tempfile::tempdir().unwrap(),
        kube_file: None,
        volumes: Vec::new(),
        agent: None,
        images: vec![
            format!("localhost/menshen:{tag}"),
            format!("localhost/menshen-agent:{tag}"),
        ],
    };

    // The images, from this build's binaries.
    let built = Instant::now();
    let images = run(containers
        .command(repo().join("scripts/build-images.sh").to_str().unwrap())
        .args(["--profile", &profile, "--tag", &tag])
        .env("CARGO_TARGET_DIR", &target));
    assert_eq!(
        images.lines().collect::<Vec<_>>(),
        cleanup.images,
        "the images the script made"
    );
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
    let rendered = run(Command::new(&helm).args([
        "template",
        &release,
        repo().join("charts/menshen").to_str().unwrap(),
        "--skip-tests",
        "-f",
        values.to_str().unwrap(),
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
    // Podman 4.3 turns declared container ports into port mappings, which
    // host networking refuses; on the host's network they mean nothing, so
    // they are left out of what it plays (once the probe's port is known).
    // Edited as text: a YAML round trip would change values such as
    // `defaultMode: 0440` (an octal number to Kubernetes).
    let mut played: Vec<String> = raw_documents(&rendered)
        .into_iter()
        .map(|doc| {
            if doc.lines().any(|l| l == "kind: Deployment") {
                without_container_ports(&doc)
            } else {
                doc
            }
        })
        .collect();
    played.push(pki_configmap(&secret, &pki_name, &pki));
    cleanup.volumes = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_owned))
        .chain([pki_name.clone()])
        .collect();
    let kube_file = work.join("play.yaml");
    std::fs::write(&kube_file, played.join("---\n")).unwrap();

    // Set first: a play that fails half-way leaves a pod behind.
    cleanup.kube_file = Some(kube_file.clone());
    let play = run(containers.podman(&[
        "kube",
        "play",
        "--network",
        "host",
        kube_file.to_str().unwrap(),
    ]));

    // Ready, on the rendered readiness path and port.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some((200, _)) = get(&ready_url).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready_url} never answered 200; logs:\n{}",
            logs(&containers, &play)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "pod ready after {:?} (since the test started)",
        started.elapsed()
    );

    let provider = get_json(&format!("{base}/provider.json")).await;
    assert_eq!(provider["domain"], "example.org", "{provider}");
    assert_eq!(
        provider["ca_cert_fingerprint"].as_str().unwrap(),
        fingerprint(&pki.join("provider-ca.crt")),
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
    cleanup.agent = Some(agent_name.clone());
    let gateways_url = format!("{base}/api/5/gateways");
    let agent_logs = |containers: &Containers| {
        let out = containers.podman(&["logs", &agent_name]).output().unwrap();
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        let list = get_json(&gateways_url).await;
        if hosts(&list).contains(&"gw-podman.example.org") {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "the agent's gateway never listed: {list}\nagent:\n{}",
            agent_logs(&containers)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        hosts(&list),
        ["gw-podman.example.org", "gw1.paris.example.org"]
    );
    let pushed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["host"] == "gw-podman.example.org")
        .unwrap();
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
