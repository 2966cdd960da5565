//! Invite tokens with the real binaries: `menshen invite ...` as an
//! operator runs it, against a running `menshen serve` logging at debug
//! level. A token shows what its bucket holds, and appears nowhere but in
//! the output of `invite create`: not in `invite list`, not in any log.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use menshen_e2e::{Menshen, ProviderFile, TestDatabase, binary, eventually, sorted_hosts};

/// A public gateway, and an invite-only one.
fn provider_file() -> ProviderFile {
    ProviderFile::new()
        .location("amsterdam", "NL")
        .gateway("public.ams", "192.0.2.1", "amsterdam")
        .gateway("friends.ams", "192.0.2.50", "amsterdam")
        .with("bucket = \"friends\"")
}

/// Runs `menshen ARGS STORE_ARGS` at debug level and returns its output.
fn cli(args: &[&str], store_args: &[&str]) -> Output {
    Command::new(binary("menshen"))
        .args(["--log-level", "debug"])
        .args(args)
        .args(store_args)
        .env_remove("MENSHEN_DATA_DIR")
        .env_remove("MENSHEN_DATABASE_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("menshen runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The hosts `token` is shown, and the token status header.
async fn gateways(menshen: &Menshen, token: &str) -> (Vec<String>, Option<String>) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/5/gateways", menshen.url))
        .header("x-menshen-auth-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let status = response
        .headers()
        .get("x-menshen-auth-token-status")
        .map(|v| v.to_str().unwrap().to_owned());
    (sorted_hosts(&response.json().await.unwrap()), status)
}

/// Polls until `token` gets the status `want`: on SQLite the server sees
/// the CLI's changes at its next periodic reload.
async fn wait_status(menshen: &Menshen, token: &str, want: &str) -> Vec<String> {
    let what = format_args!("the token to become {want}");
    eventually(what, Duration::from_secs(10), || async {
        let (hosts, status) = gateways(menshen, token).await;
        if status.as_deref() == Some(want) {
            Ok(hosts)
        } else {
            Err(status)
        }
    })
    .await
}

async fn invite_story(store_args: &[&str], config: &Path) {
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--reload-interval",
        "200ms",
    ];
    args.extend_from_slice(&["--log-level", "debug"]);
    args.extend_from_slice(store_args);
    let mut menshen = Menshen::start(&args);
    let mut cli_logs = String::new();

    let created = cli(
        &["invite", "create", "--bucket", "friends", "--count", "2"],
        store_args,
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    cli_logs.push_str(&text(&created.stderr));
    let tokens: Vec<String> = text(&created.stdout).lines().map(str::to_owned).collect();
    assert_eq!(tokens.len(), 2, "one token a line");
    let ids: Vec<&str> = tokens
        .iter()
        .map(|t| t.split_once('.').expect("id.secret").0)
        .collect();
    let secrets: Vec<&str> = tokens
        .iter()
        .map(|t| t.split_once('.').unwrap().1)
        .collect();

    // Invisible without a token, visible with one.
    let (hosts, status) = gateways(&menshen, "").await;
    assert_eq!((hosts, status), (vec!["public.ams".to_string()], None));
    let hosts = wait_status(&menshen, &tokens[0], "accepted").await;
    assert_eq!(hosts, ["friends.ams", "public.ams"]);
    let hosts = wait_status(&menshen, &tokens[1], "accepted").await;
    assert_eq!(hosts, ["friends.ams", "public.ams"]);

    // `invite list` shows the invites, never their tokens.
    for list_args in [&["invite", "list"][..], &["invite", "list", "--json"]] {
        let listed = cli(list_args, store_args);
        assert!(listed.status.success(), "{}", text(&listed.stderr));
        let out = text(&listed.stdout);
        cli_logs.push_str(&text(&listed.stderr));
        for (id, secret) in ids.iter().zip(&secrets) {
            assert!(out.contains(id), "{list_args:?}: {out}");
            assert!(!out.contains(secret), "{list_args:?} shows a token: {out}");
        }
        assert!(out.contains("friends"), "{out}");
    }

    // Deleted by id: hidden again for that token only.
    let deleted = cli(&["invite", "delete", "--id", ids[0]], store_args);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    cli_logs.push_str(&text(&deleted.stderr));
    let hosts = wait_status(&menshen, &tokens[0], "rejected").await;
    assert_eq!(hosts, ["public.ams"]);
    assert_eq!(
        gateways(&menshen, &tokens[1]).await.1.as_deref(),
        Some("accepted")
    );

    // Deleted by bucket.
    let deleted = cli(&["invite", "delete", "--bucket", "friends"], store_args);
    assert!(deleted.status.success());
    assert!(
        text(&deleted.stderr).contains("1 invite(s) deleted"),
        "{}",
        text(&deleted.stderr)
    );
    let hosts = wait_status(&menshen, &tokens[1], "rejected").await;
    assert_eq!(hosts, ["public.ams"]);

    // Operator mistakes are refused with a reason.
    let missing = cli(&["invite", "delete", "--id", ids[0]], store_args);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no invite with id"));
    let bad = cli(&["invite", "create", "--bucket", "two words"], store_args);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("bucket"),
        "{}",
        text(&bad.stderr)
    );
    let none = cli(&["invite", "delete"], store_args);
    assert!(!none.status.success());

    let server_log = menshen.stop();
    // The log is at debug level and saw the tokens being checked.
    assert!(server_log.contains("invite token accepted"), "{server_log}");
    assert!(server_log.contains("invite token rejected"), "{server_log}");
    assert!(server_log.contains(ids[0]), "ids may be logged");
    for secret in &secrets {
        assert!(!server_log.contains(secret), "a token in the server log");
        assert!(!cli_logs.contains(secret), "a token in the CLI's log");
    }
}

fn config_in(dir: &Path) -> std::path::PathBuf {
    provider_file().write(dir)
}

#[tokio::test]
async fn invite_tokens_from_the_cli_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let data = dir.path().join("data");
    invite_story(&["--data-dir", data.to_str().unwrap()], &config).await;
}

#[tokio::test]
async fn invite_tokens_from_the_cli_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    invite_story(&["--database-url", &db.url], &config).await;
}
