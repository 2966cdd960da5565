//! The operators' command line with the real binary: `menshen location`,
//! `gateway`, `bridge` against the store a running `menshen serve` uses.
//! What the CLI changes reaches the clients' lists (on SQLite at the
//! server's periodic reload), and lands in the audit log as `cli:$USER`.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use menshen_e2e::http::{get_text, json_of};
use menshen_e2e::{Menshen, ProviderFile, TestDatabase, binary};
use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An operator running `menshen ARGS STORE_ARGS` as `tester`.
struct Operator<'a> {
    store_args: &'a [&'a str],
}

impl Operator<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(binary("menshen"))
            .args(args)
            .args(self.store_args)
            .env("USER", "tester")
            .env_remove("MENSHEN_DATA_DIR")
            .env_remove("MENSHEN_DATABASE_URL")
            .env_remove("RUST_LOG")
            .output()
            .expect("menshen runs")
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs a command that must fail with `code`, saying each of `says` in
    /// one line on stderr.
    fn fails(&self, args: &[&str], code: i32, says: &[&str]) {
        failure(self.run(args), &args, code, says);
    }

    /// `menshen WHAT list --json`: the entry whose `key` is `value`.
    fn listed(&self, what: &str, key: &str, value: &str) -> Value {
        let list: Value = serde_json::from_str(&self.ok(&[what, "list", "--json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|entry| entry[key] == value)
            .unwrap_or_else(|| panic!("no {what} with {key} {value}: {list}"))
            .clone()
    }

    /// `menshen gateway create` of a UDP gateway on port 1194.
    fn create_gateway(&self, host: &str, ip: &str, location: &str) -> Output {
        self.run(&[
            "gateway",
            "create",
            "--allow-private-addresses",
            "--host",
            host,
            "--ip",
            ip,
            "--location",
            location,
            "--port",
            "1194",
            "--transport",
            "udp",
        ])
    }
}

/// Asserts that a command failed with `code`, saying each of `says` in one
/// line on stderr.
fn failure(out: Output, command: &dyn std::fmt::Debug, code: i32, says: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{command:?}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{command:?}: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    for said in says {
        assert!(stderr.contains(said), "{command:?}: {stderr}");
    }
}

/// The table row that starts with `first`.
fn row<'a>(table: &'a str, first: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(first))
        .unwrap_or_else(|| panic!("no {first} in {table}"))
}

async fn client_hosts(menshen: &Menshen) -> Vec<String> {
    let body = get_text(&format!("{}/api/5/gateways", menshen.url)).await;
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

fn locations(op: &Operator) {
    op.ok(&[
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
    ]);
    let table = op.ok(&["location", "list"]);
    let paris = row(&table, "paris");
    assert!(paris.contains("Paris") && paris.contains("FR") && paris.contains("admin"));
    assert!(
        table.lines().next().unwrap().starts_with("LABEL"),
        "{table}"
    );
    op.ok(&["location", "update", "paris", "--region", "Europe"]);
    let paris = op.listed("location", "label", "paris");
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
    op.fails(
        &[
            "location",
            "create",
            "rome",
            "--name",
            "Rome",
            "--country",
            "XX",
        ],
        2,
        &["country_code", "--country"],
    );
    op.fails(
        &["location", "update", "amsterdam", "--name", "A"],
        1,
        &["provider file"],
    );
}

/// A gateway defined by hand, as the table and the JSON show it.
fn hand_defined_gateway(op: &Operator) {
    let out = op.create_gateway("gw1.paris", "192.0.2.10", "Paris");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = op.ok(&["gateway", "list"]);
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
    let gw1 = row(&table, "gw1.paris");
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
    let gw1 = op.listed("gateway", "host", "gw1.paris");
    assert_eq!(
        (&gw1["status"], &gw1["origin"], &gw1["listed"]),
        (
            &Value::from("hand-defined"),
            &Value::from("admin"),
            &Value::from(true)
        )
    );
}

fn refusals(op: &Operator) {
    op.fails(&["location", "delete", "paris"], 1, &["used by 1"]);
    let out = op.create_gateway("gw2.paris", "not-an-ip", "paris");
    failure(out, &"gateway create gw2.paris", 2, &["ip_addr", "--ip"]);
    let out = op.create_gateway("gw1.paris", "192.0.2.11", "paris");
    failure(out, &"gateway create gw1.paris", 1, &["already exists"]);
    op.fails(&["gateway", "delete", "public.ams"], 1, &["provider file"]);
    op.fails(
        &["gateway", "set", "gw1.paris", "--bucket", "two words"],
        2,
        &["bucket"],
    );
    op.fails(
        &["gateway", "set", "nowhere", "--maintenance", "on"],
        1,
        &["no gateway"],
    );
    // A bad command line is clap's: status 2 too.
    assert_eq!(
        op.run(&["gateway", "set", "gw1.paris"]).status.code(),
        Some(2)
    );
}

/// Maintenance hides a gateway from clients; off lists it again.
async fn maintenance(op: &Operator<'_>, menshen: &Menshen) {
    let shown = op.ok(&["gateway", "set", "gw1.paris", "--maintenance", "on"]);
    assert!(shown.contains("maintenance"), "{shown}");
    wait_hosts(menshen, &["public.ams"]).await;
    op.ok(&[
        "gateway",
        "set",
        "public.ams",
        "--experimental",
        "true",
        "--maintenance",
        "on",
    ]);
    op.ok(&["gateway", "set", "gw1.paris", "--maintenance", "off"]);
    wait_hosts(menshen, &["gw1.paris"]).await;
    op.ok(&["gateway", "set", "public.ams", "--maintenance", "off"]);
    let public = op.listed("gateway", "host", "public.ams");
    // Flags not given keep their setting.
    assert_eq!(public["overrides"]["experimental"], true, "{public}");
    assert_eq!(public["overrides"]["maintenance"], false, "{public}");
    // Experimental ones are for clients that ask for them.
    op.ok(&["gateway", "set", "public.ams", "--experimental", "default"]);
}

/// A bridge from JSON on a file, listed, then deleted.
fn bridge_from_json(op: &Operator, dir: &std::path::Path) {
    let body = dir.join("bridge.json");
    std::fs::write(
        &body,
        r#"{"host": "br1.paris", "ip_addr": "192.0.2.20", "location": "paris", "port": 443,
            "options": {"cert": "xvW97fMqMiBmgTy/jP5CvFGq8bqlKaPcL7xnKBnCl3n2EmlpTmSG8IMNvEsCYqkzYPsvvQ", "iatMode": "0"}}"#,
    )
    .unwrap();
    op.ok(&[
        "bridge",
        "create",
        "--allow-private-addresses",
        "--json",
        body.to_str().unwrap(),
    ]);
    let table = op.ok(&["bridge", "list"]);
    assert!(
        table.contains("br1.paris") && table.contains("obfs4"),
        "{table}"
    );
    op.ok(&["bridge", "delete", "br1.paris"]);
}

/// Every change is in the audit log, by the operator who ran it.
async fn audited(op: &Operator<'_>, menshen: &Menshen) {
    let token = op.ok(&["admin", "token", "--subject", "t", "--role", "viewer"]);
    let audit = json_of(
        reqwest::Client::new()
            .get(format!("{}/admin/v1/audit?limit=100", menshen.url))
            .bearer_auth(token.trim()),
    )
    .await;
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

/// The whole story against a server on the store `--database-url` names
/// (SQLite in the data folder without it).
async fn cli_story(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("provider.toml");
    let file = ProviderFile::new().location("amsterdam", "NL").gateway(
        "public.ams",
        "192.0.2.1",
        "amsterdam",
    );
    std::fs::write(&config, file.as_str()).unwrap();
    let data = dir.path().join("data");
    let mut store_args = vec!["--data-dir", data.to_str().unwrap()];
    if let Some(url) = database_url {
        store_args.extend(["--database-url", url]);
    }
    let op = Operator {
        store_args: &store_args,
    };
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--reload-interval",
        "1s",
    ];
    args.extend_from_slice(&store_args);
    let menshen = Menshen::start(&args);
    wait_hosts(&menshen, &["public.ams"]).await;

    locations(&op);
    // A gateway defined by hand reaches the clients.
    hand_defined_gateway(&op);
    wait_hosts(&menshen, &["gw1.paris", "public.ams"]).await;
    refusals(&op);
    maintenance(&op, &menshen).await;
    bridge_from_json(&op, dir.path());

    // Delete, then the location may go.
    op.ok(&["gateway", "delete", "gw1.paris"]);
    wait_hosts(&menshen, &["public.ams"]).await;
    op.fails(&["gateway", "delete", "gw1.paris"], 1, &["no gateway"]);
    op.ok(&["location", "delete", "paris"]);
    assert!(!op.ok(&["location", "list"]).contains("paris"));

    audited(&op, &menshen).await;
}

#[tokio::test]
async fn operators_cli_on_sqlite() {
    cli_story(None).await;
}

#[tokio::test]
async fn operators_cli_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    cli_story(Some(&db.url)).await;
}

#[test]
fn help_names_the_subcommands() {
    let op = Operator { store_args: &[] };
    for (command, subcommands) in [
        ("location", &["list", "create", "update", "delete"][..]),
        ("gateway", &["list", "create", "delete", "set"]),
        ("bridge", &["list", "create", "delete", "set"]),
        ("agent", &["create", "revoke", "list"]),
        ("invite", &["create", "list", "delete"]),
        ("admin", &["token", "revoke", "list"]),
    ] {
        let out = op.run(&[command, "--help"]);
        assert!(out.status.success());
        let help = text(&out.stdout);
        for sub in subcommands {
            assert!(
                help.contains(&format!("  {sub} ")),
                "{command} --help lacks {sub}:\n{help}"
            );
        }
    }
    let help = text(&op.run(&["gateway", "set", "--help"]).stdout);
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

/// Input an operator got wrong exits 2, as `--help` says, whatever command
/// it is given to; what is not there exits 1.
#[test]
fn bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let with_store = Operator {
        store_args: &["--data-dir", data.to_str().unwrap()],
    };
    let without = Operator { store_args: &[] };
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let cert = |host| {
        [
            "pki",
            "gateway-cert",
            host,
            "--ca-cert",
            missing,
            "--ca-key",
            missing,
            "--out",
            missing,
        ]
    };
    for (op, args, says) in [
        (
            &with_store,
            &["admin", "token", "--subject", " ", "--role", "admin"][..],
            "--subject",
        ),
        (
            &with_store,
            &[
                "admin",
                "token",
                "--subject",
                "a",
                "--role",
                "admin",
                "--ttl",
                "0s",
            ],
            "--ttl",
        ),
        (
            &with_store,
            &["location", "create", "--json", missing],
            "cannot read",
        ),
        (
            &with_store,
            &["location", "list", "--database-url", "mysql://db"],
            "neither postgres",
        ),
        (
            &with_store,
            &["agent", "create", "gw", "--signing-key-file", missing],
            "signing key",
        ),
        (&without, &cert("two words"), "HOST"),
        (&without, &cert("gw1"), "cannot read"),
        (
            &without,
            &[
                "import",
                missing,
                "--domain",
                "d.example",
                "--api-uri",
                "https://d.example",
            ],
            "cannot read",
        ),
    ] {
        op.fails(args, 2, &[says]);
    }
    for args in [
        ["agent", "reissue", "nobody"],
        ["agent", "revoke", "nobody"],
    ] {
        // Without the warning that a signing key was generated.
        with_store.fails(
            &[&["--log-level", "error"], &args[..]].concat(),
            1,
            &["no agent named \"nobody\""],
        );
    }
}
