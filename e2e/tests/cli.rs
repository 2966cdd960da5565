//! The operators' command line with the real binary: `menshen location`,
//! `gateway`, `bridge` against the store a running `menshen serve` uses.
//! What the CLI changes reaches the clients' lists (on SQLite at the
//! server's periodic reload), and lands in the audit log as `cli:$USER`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use menshen_e2e::{Menshen, TestDatabase, binary};
use serde_json::Value;

const FILE: &str = r#"
[provider]
domain = "vpn.test"
api_uri = "https://api.vpn.test"

[locations.amsterdam]
display_name = "Amsterdam"
country_code = "NL"

[[gateway]]
host = "public.ams"
ip_addr = "192.0.2.1"
location = "amsterdam"
port = 1194
transport = "udp"
"#;

/// Runs `menshen ARGS STORE_ARGS` as operator `tester`.
fn cli(args: &[&str], store_args: &[&str]) -> Output {
    Command::new(binary("menshen"))
        .args(args)
        .args(store_args)
        .env("USER", "tester")
        .env_remove("MENSHEN_DATA_DIR")
        .env_remove("MENSHEN_DATABASE_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("menshen runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
fn ok(args: &[&str], store_args: &[&str]) -> String {
    let out = cli(args, store_args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs a command that must fail with `code`; returns its stderr, one line.
fn fails(args: &[&str], store_args: &[&str], code: i32) -> String {
    let out = cli(args, store_args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

async fn client_hosts(menshen: &Menshen) -> Vec<String> {
    let body = reqwest::get(format!("{}/api/5/gateways", menshen.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let list: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let mut hosts: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["host"].as_str().unwrap().to_owned())
        .collect();
    hosts.sort();
    hosts
}

/// Polls the clients' list until it is `want`.
async fn wait_hosts(menshen: &Menshen, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let hosts = client_hosts(menshen).await;
        if hosts == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "clients see {hosts:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cli_story(store_args: &[&str], config: &Path) {
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--reload-interval",
        "1s",
    ];
    args.extend_from_slice(store_args);
    let menshen = Menshen::start(&args);
    wait_hosts(&menshen, &["public.ams"]).await;

    // Locations.
    ok(
        &[
            "location",
            "create",
            "paris",
            "--name",
            "Paris",
            "--country",
            "fr",
            "--lat",
            "48.86",
            "--lon",
            "2.35",
            "--timezone",
            "1",
        ],
        store_args,
    );
    let table = ok(&["location", "list"], store_args);
    let paris = table
        .lines()
        .find(|l| l.starts_with("paris"))
        .expect(&table);
    assert!(paris.contains("Paris") && paris.contains("FR") && paris.contains("admin"));
    assert!(
        table.lines().next().unwrap().starts_with("LABEL"),
        "{table}"
    );
    ok(
        &["location", "update", "paris", "--region", "Europe"],
        store_args,
    );
    let json: Value =
        serde_json::from_str(&ok(&["location", "list", "--json"], store_args)).unwrap();
    let paris = json
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == "paris")
        .unwrap();
    assert_eq!(
        (
            &paris["region"],
            &paris["display_name"],
            &paris["hemisphere"]
        ),
        (
            &Value::from("Europe"),
            &Value::from("Paris"),
            &Value::from("N")
        )
    );
    let err = fails(
        &[
            "location",
            "create",
            "rome",
            "--name",
            "Rome",
            "--country",
            "XX",
        ],
        store_args,
        2,
    );
    assert!(
        err.contains("country_code") && err.contains("--country"),
        "{err}"
    );
    let err = fails(
        &["location", "update", "amsterdam", "--name", "A"],
        store_args,
        1,
    );
    assert!(err.contains("provider file"), "{err}");

    // A gateway defined by hand reaches the clients.
    ok(
        &[
            "gateway",
            "create",
            "--allow-private-addresses",
            "--host",
            "gw1.paris",
            "--ip",
            "192.0.2.10",
            "--location",
            "Paris",
            "--port",
            "1194",
            "--transport",
            "udp",
        ],
        store_args,
    );
    let table = ok(&["gateway", "list"], store_args);
    let header = table.lines().next().unwrap();
    for column in [
        "HOST",
        "LOCATION",
        "TYPE",
        "ENDPOINT",
        "STATUS",
        "LOAD",
        "LAST SEEN",
        "AGENT",
    ] {
        assert!(header.contains(column), "{table}");
    }
    let gw1 = table
        .lines()
        .find(|l| l.starts_with("gw1.paris"))
        .expect(&table);
    for cell in [
        "paris",
        "openvpn",
        "192.0.2.10:1194/udp",
        "hand-defined",
        "s ago",
        "(admin)",
    ] {
        assert!(gw1.contains(cell), "{cell} not in {gw1}");
    }
    let json: Value =
        serde_json::from_str(&ok(&["gateway", "list", "--json"], store_args)).unwrap();
    let gw1 = json
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["host"] == "gw1.paris")
        .unwrap();
    assert_eq!(
        (&gw1["status"], &gw1["origin"], &gw1["listed"]),
        (
            &Value::from("hand-defined"),
            &Value::from("admin"),
            &Value::from(true)
        )
    );
    wait_hosts(&menshen, &["gw1.paris", "public.ams"]).await;

    // Refusals.
    let err = fails(&["location", "delete", "paris"], store_args, 1);
    assert!(err.contains("used by 1"), "{err}");
    let err = fails(
        &[
            "gateway",
            "create",
            "--allow-private-addresses",
            "--host",
            "gw2.paris",
            "--ip",
            "not-an-ip",
            "--location",
            "paris",
            "--port",
            "1194",
            "--transport",
            "udp",
        ],
        store_args,
        2,
    );
    assert!(err.contains("ip_addr") && err.contains("--ip"), "{err}");
    let err = fails(
        &[
            "gateway",
            "create",
            "--allow-private-addresses",
            "--host",
            "gw1.paris",
            "--ip",
            "192.0.2.11",
            "--location",
            "paris",
            "--port",
            "1194",
            "--transport",
            "udp",
        ],
        store_args,
        1,
    );
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&["gateway", "delete", "public.ams"], store_args, 1);
    assert!(err.contains("provider file"), "{err}");
    let err = fails(
        &["gateway", "set", "gw1.paris", "--bucket", "two words"],
        store_args,
        2,
    );
    assert!(err.contains("bucket"), "{err}");
    let err = fails(
        &["gateway", "set", "nowhere", "--maintenance", "on"],
        store_args,
        1,
    );
    assert!(err.contains("no gateway"), "{err}");
    // A bad command line is clap's: status 2 too.
    assert_eq!(
        cli(&["gateway", "set", "gw1.paris"], store_args)
            .status
            .code(),
        Some(2)
    );

    // Maintenance hides it from clients; off lists it again.
    let shown = ok(
        &["gateway", "set", "gw1.paris", "--maintenance", "on"],
        store_args,
    );
    assert!(shown.contains("maintenance"), "{shown}");
    wait_hosts(&menshen, &["public.ams"]).await;
    ok(
        &[
            "gateway",
            "set",
            "public.ams",
            "--experimental",
            "true",
            "--maintenance",
            "on",
        ],
        store_args,
    );
    ok(
        &["gateway", "set", "gw1.paris", "--maintenance", "off"],
        store_args,
    );
    wait_hosts(&menshen, &["gw1.paris"]).await;
    ok(
        &["gateway", "set", "public.ams", "--maintenance", "off"],
        store_args,
    );
    let json: Value =
        serde_json::from_str(&ok(&["gateway", "list", "--json"], store_args)).unwrap();
    let public = json
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["host"] == "public.ams")
        .unwrap();
    // Flags not given keep their setting.
    assert_eq!(public["overrides"]["experimental"], true, "{public}");
    assert_eq!(public["overrides"]["maintenance"], false, "{public}");
    // Experimental ones are for clients that ask for them.
    ok(
        &["gateway", "set", "public.ams", "--experimental", "default"],
        store_args,
    );

    // Bridges, from JSON on a file.
    let body = config.with_file_name("bridge.json");
    std::fs::write(
        &body,
        r#"{"host": "br1.paris", "ip_addr": "192.0.2.20", "location": "paris", "port": 443,
            "options": {"cert": "xvW97fMqMiBmgTy/jP5CvFGq8bqlKaPcL7xnKBnCl3n2EmlpTmSG8IMNvEsCYqkzYPsvvQ", "iatMode": "0"}}"#,
    )
    .unwrap();
    ok(
        &[
            "bridge",
            "create",
            "--allow-private-addresses",
            "--json",
            body.to_str().unwrap(),
        ],
        store_args,
    );
    let table = ok(&["bridge", "list"], store_args);
    assert!(
        table.contains("br1.paris") && table.contains("obfs4"),
        "{table}"
    );
    ok(&["bridge", "delete", "br1.paris"], store_args);

    // Delete, then the location may go.
    ok(&["gateway", "delete", "gw1.paris"], store_args);
    wait_hosts(&menshen, &["public.ams"]).await;
    let err = fails(&["gateway", "delete", "gw1.paris"], store_args, 1);
    assert!(err.contains("no gateway"), "{err}");
    ok(&["location", "delete", "paris"], store_args);
    assert!(!ok(&["location", "list"], store_args).contains("paris"));

    // Every change is in the audit log, by the operator who ran it.
    let token = ok(
        &["admin", "token", "--subject", "t", "--role", "viewer"],
        store_args,
    );
    let audit: Value = reqwest::Client::new()
        .get(format!("{}/admin/v1/audit?limit=100", menshen.url))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap_or_else(|| panic!("{audit}"))
        .iter()
        .map(|a| (a["actor"].as_str().unwrap(), a["action"].as_str().unwrap()))
        .collect();
    for action in [
        "location.create",
        "location.update",
        "location.delete",
        "gateway.create",
        "gateway.overrides",
        "gateway.delete",
        "bridge.create",
        "bridge.delete",
    ] {
        assert!(
            actions.contains(&("cli:tester", action)),
            "{action}: {actions:?}"
        );
    }
}

fn config_in(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("provider.toml");
    std::fs::write(&path, FILE).unwrap();
    path
}

#[tokio::test]
async fn operators_cli_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let data = dir.path().join("data");
    cli_story(&["--data-dir", data.to_str().unwrap()], &config).await;
}

#[tokio::test]
async fn operators_cli_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let data = dir.path().join("data");
    cli_story(
        &[
            "--database-url",
            &db.url,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &config,
    )
    .await;
}

#[test]
fn help_names_the_subcommands() {
    for (command, subcommands) in [
        ("location", &["list", "create", "update", "delete"][..]),
        ("gateway", &["list", "create", "delete", "set"]),
        ("bridge", &["list", "create", "delete", "set"]),
        ("agent", &["create", "revoke", "list"]),
        ("invite", &["create", "list", "delete"]),
        ("admin", &["token", "revoke", "list"]),
    ] {
        let out = cli(&[command, "--help"], &[]);
        assert!(out.status.success());
        let help = text(&out.stdout);
        for sub in subcommands {
            assert!(
                help.contains(&format!("  {sub} ")),
                "{command} --help lacks {sub}:\n{help}"
            );
        }
    }
    let out = cli(&["gateway", "set", "--help"], &[]);
    let help = text(&out.stdout);
    for flag in [
        "--maintenance",
        "--experimental",
        "--bucket",
        "--no-bucket",
        "--default-bucket",
        "Example",
    ] {
        assert!(help.contains(flag), "{flag}:\n{help}");
    }
}
