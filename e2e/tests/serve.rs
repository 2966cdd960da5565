//! The real `menshen` binary: start, serve, restart, stop, refuse bad files.

use std::path::PathBuf;
use std::process::Command;

use menshen_e2e::http::{get_json, get_text};
use menshen_e2e::{Menshen, TestDatabase, binary, menshen_refusing_to_serve};

fn example_config() -> PathBuf {
    menshen_e2e::provider::example()
}

/// A list sorted by host: these tests are about what is kept, not the
/// order clients get (which is partly random).
fn by_host(mut list: serde_json::Value) -> serde_json::Value {
    list.as_array_mut()
        .expect("an array")
        .sort_by(|a, b| a["host"].as_str().cmp(&b["host"].as_str()));
    list
}

/// Serves the example, survives a restart with nothing lost, stops cleanly.
async fn serve_restart_stop(store_args: &[&str]) {
    let config = example_config();
    let config = config.to_str().unwrap();
    let mut args = vec!["--config", config];
    args.extend_from_slice(store_args);

    let mut menshen = Menshen::start(&args);
    let ready = get_json(&format!("{}/readyz", menshen.url)).await;
    assert_eq!(ready["status"], "ready");
    let gateways = by_host(get_json(&format!("{}/api/5/gateways", menshen.url)).await);
    assert_eq!(gateways.as_array().unwrap().len(), 4);
    let metrics = get_text(&format!("{}/metrics", menshen.metrics_url)).await;
    assert!(
        metrics.contains(
            r#"menshen_http_requests_total{method="GET",route="/api/5/gateways",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"menshen_inventory_resources{kind="gateway"} 4"#));

    let log = menshen.stop();
    assert!(log.contains("menshen stopped"), "{log}");

    // Started again without the provider file: the store still has it all.
    let menshen = Menshen::start(store_args);
    let again = by_host(get_json(&format!("{}/api/5/gateways", menshen.url)).await);
    assert_eq!(again, gateways);
    let service = get_json(&format!("{}/api/5/service", menshen.url)).await;
    assert_eq!(service["locations"]["paris"]["timezone"], "+1");
}

#[tokio::test]
async fn serves_restarts_and_stops_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    serve_restart_stop(&["--data-dir", dir.path().to_str().unwrap()]).await;
}

#[tokio::test]
async fn serves_restarts_and_stops_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    serve_restart_stop(&["--database-url", &db.url]).await;
}

#[tokio::test]
async fn two_replicas_start_at_once_on_one_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let config = example_config();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--database-url",
        &db.url,
    ];
    // Both apply migrations and the provider file concurrently.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Menshen::start(&args));
        let b = s.spawn(|| Menshen::start(&args));
        (a.join().unwrap(), b.join().unwrap())
    });
    let from_a = by_host(get_json(&format!("{}/api/5/gateways", a.url)).await);
    let from_b = by_host(get_json(&format!("{}/api/5/gateways", b.url)).await);
    assert_eq!(from_a.as_array().unwrap().len(), 4);
    assert_eq!(from_a, from_b);
}

#[test]
fn an_invalid_provider_file_is_refused_at_start_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example_config())
        .unwrap()
        .replace("ip_addr = \"192.0.2.20\"", "ip_addr = \"192.0.2.300\"");
    let bad_line = text
        .lines()
        .position(|l| l.contains("192.0.2.300"))
        .unwrap()
        + 1;
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, text).unwrap();

    let log = menshen_refusing_to_serve(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--config",
        path.to_str().unwrap(),
    ]);
    // The message names the file, the line of the bad value, and the field.
    assert!(log.contains("broken.toml:"), "{log}");
    assert!(log.contains("gateway[2].ip_addr"), "{log}");
    let line: usize = log
        .split("broken.toml:")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .expect("a line number");
    assert!(
        (bad_line - 3..=bad_line).contains(&line),
        "line {line}, value on {bad_line}"
    );

    // check-config says the same without starting.
    let out = Command::new(binary("menshen"))
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("gateway[2].ip_addr"));
}

#[tokio::test]
async fn a_v3_provider_is_imported_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = menshen_e2e::tools::repo().join("menshen/tests/fixtures");
    let output = dir.path().join("imported.toml");
    let status = Command::new(binary("menshen"))
        .arg("import")
        .arg(fixtures.join("eip-service-v3.json"))
        .arg("--provider")
        .arg(fixtures.join("provider-v3.json"))
        .arg("--output")
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success());
    // The v3 document's gateways are at documentation addresses.
    let out = Command::new(binary("menshen"))
        .arg("check-config")
        .arg(&output)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("documentation address"));
    let out = Command::new(binary("menshen"))
        .args(["check-config", "--allow-private-addresses"])
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let menshen = Menshen::start(&["--config", output.to_str().unwrap()]);
    let gateways = get_json(&format!("{}/api/5/gateways", menshen.url)).await;
    assert_eq!(gateways.as_array().unwrap().len(), 7);
    let bridges = get_json(&format!("{}/api/5/bridges", menshen.url)).await;
    assert_eq!(
        bridges[0]["options"]["cert"],
        "C40o35r//+hIqiPvq4osVX7Oz1b5Xz0Q59rx/ogXkGZsyxOl42wOSiSevg/Cgzfd60BQtQ"
    );
    let service = get_json(&format!("{}/api/5/service", menshen.url)).await;
    assert_eq!(service["locations"]["new-york"]["timezone"], "-5");
    assert_eq!(service["openvpn_configuration"]["cipher"], "AES-256-GCM");
    let provider = get_json(&format!("{}/provider.json", menshen.url)).await;
    assert_eq!(provider["domain"], "vpn.example.org");
    assert_eq!(provider["api_versions"], serde_json::json!(["3", "5"]));

    // A broken file: a clear error, nothing written.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"gateways\": 5}").unwrap();
    let out = Command::new(binary("menshen"))
        .arg("import")
        .arg(&broken)
        .args(["--domain", "d.example", "--api-uri", "https://d.example"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.json"));
    assert!(out.stdout.is_empty());
}

/// What a newcomer sees when the store cannot be had: one plain sentence
/// each, printed once, no colour codes in a file, no password.
#[test]
fn start_up_errors_are_plain_and_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(binary("menshen"))
            .args(args)
            .output()
            .expect("menshen runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };
    // `menshen serve` on a port of its own with `store` (the flag naming
    // its store or provider file, and its value).
    let serve = |data: &str, store: [&str; 2]| {
        run(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            store[0],
            store[1],
        ])
    };
    // A port nothing listens on: refused, said at once, not a pool timeout.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for (url, shown) in [
        (
            format!("postgres://menshen@127.0.0.1:{port}/menshen"),
            format!("postgres://menshen@127.0.0.1:{port}/menshen"),
        ),
        (
            format!("postgres://menshen:s3cret@127.0.0.1:{port}/menshen"),
            format!("postgres://menshen:***@127.0.0.1:{port}/menshen"),
        ),
    ] {
        let (code, stderr) = serve(data, ["--database-url", &url]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot connect to {shown}: ")),
            "{stderr}"
        );
        assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
        assert!(!stderr.contains("pool timed out"), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
        assert_eq!(
            stderr.matches("cannot connect").count(),
            1,
            "once: {stderr}"
        );
        assert!(
            !stderr.contains('\u{1b}'),
            "no colour codes into a pipe: {stderr:?}"
        );
    }

    // A database that does not exist: Postgres' message, once, without its
    // source line.
    let admin = menshen_e2e::admin_url();
    if let Ok(mut url) = reqwest::Url::parse(&admin) {
        url.set_path("/menshen_no_such_database");
        let (code, stderr) = serve(data, ["--database-url", url.as_str()]);
        if !stderr.contains("refused") {
            assert_eq!(code, Some(1), "{stderr}");
            assert_eq!(
                stderr.matches("does not exist").count(),
                1,
                "said once: {stderr}"
            );
            assert!(!stderr.contains(" at line "), "{stderr}");
        }
    }

    // A broken provider file: invalid input, exit status 2, said once.
    let broken = dir.path().join("menshen.toml");
    let example = std::fs::read_to_string(example_config()).unwrap();
    std::fs::write(
        &broken,
        example.replacen("ip_addr = \"192.0.2.20\"", "ip_addr = \"192.0.2.300\"", 1),
    )
    .unwrap();
    let broken = broken.to_str().unwrap();
    let (code, stderr) = run(&["check-config", broken]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr) = serve(data, ["--config", broken]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.matches("is not an IPv4 address").count(),
        1,
        "{stderr}"
    );
}

/// A data folder this user cannot write: said so, naming the folder.
#[test]
fn an_unwritable_data_folder_is_named() {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("note: needs root and setpriv to run menshen as another user; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary("menshen"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Permission denied")
        && stderr.contains("menshen")
        && !stderr.contains("data folder")
    {
        // The binary itself is out of that user's reach (a private target
        // folder): nothing to learn here.
        eprintln!("note: menshen's binary is not reachable as uid 65534; skipped: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is not writable by this user (uid 65534)"),
        "{stderr}"
    );
    assert!(stderr.contains(data.to_str().unwrap()), "{stderr}");
}
