//! Signed answers end to end: `menshen pki list-key` makes the keys, `menshen
//! serve --list-key-file` signs with them, `menshen verify` checks what it
//! serves, as an operator or a client's maintainer would.

use menshen_e2e::peers::path_str;
use menshen_e2e::{Menshen, menshen_cli, menshen_output as menshen};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `menshen args`, which must fail with exit `code`, saying `says`.
fn refused(args: &[&str], code: i32, says: &str) {
    let out = menshen(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(stderr.contains(says), "{args:?}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_answers_verify_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("lists.key");
    let other = dir.path().join("other.key");
    // `kid=… public_key=…`: what a client pins, given as it is printed.
    let pinned = menshen_cli(&["pki", "list-key", "--out", path_str(&key)])
        .trim()
        .to_owned();
    let other_pinned = menshen_cli(&["pki", "list-key", "--out", path_str(&other)])
        .trim()
        .to_owned();
    assert!(pinned.starts_with("kid="), "{pinned}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A key is never replaced.
    refused(&["pki", "list-key", "--out", path_str(&key)], 2, "exists");

    let config = menshen_e2e::provider::example();
    let signed = Menshen::start(&[
        "--config",
        config.to_str().unwrap(),
        "--list-key-file",
        path_str(&key),
    ]);
    for path in [
        "/provider.json",
        "/api/5/service",
        "/api/5/gateways?cc=FR",
        "/api/5/bridges",
    ] {
        let url = format!("{}{path}", signed.url);
        // With the keys /provider.json publishes, and with the key pinned.
        for args in [vec!["verify", &url], vec!["verify", &url, "--key", &pinned]] {
            let out = menshen(&args);
            assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
            assert!(
                text(&out.stdout).contains("signed by key"),
                "{}",
                text(&out.stdout)
            );
        }
        // Not with another key.
        refused(
            &["verify", &url, "--key", &other_pinned],
            1,
            "not among the keys",
        );
    }

    // An unsigned server's answers do not pass.
    let unsigned = Menshen::start(&["--config", config.to_str().unwrap()]);
    let url = format!("{}/api/5/gateways", unsigned.url);
    refused(&["verify", &url], 1, "publishes no signing_keys");
    refused(&["verify", &url, "--key", &pinned], 1, "carries no");
}
