//! Revoking admin tokens before they expire, over real HTTP on every
//! backend: by id and by subject, through the admin API and the CLI, while
//! a stream of requests uses the token, and across replicas on Postgres.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, PATIENCE, ProviderFile, TestServer, eventually, on_each_backend, stdout_of};
use menshen::auth::admin::Role;
use menshen::auth::{SigningKey, random_id};
use menshen::store::{AuditEntry, NewAdminToken, Store, now_millis};
use serde_json::Value;

fn settings(backend: &Backend) -> menshen::config::Settings {
    backend.serving(ProviderFile::new())
}

on_each_backend!(
    a_revoked_admin_token_is_refused_from_the_next_request_on,
    the_cli_mints_lists_and_revokes_admin_tokens,
);

/// A token minted and recorded as `menshen admin token` does; its id too.
async fn recorded(key: &SigningKey, store: &Store, subject: &str, role: Role) -> (String, String) {
    let now = now_millis();
    let jti = random_id(16);
    let record = NewAdminToken {
        jti: jti.clone(),
        subject: subject.into(),
        role: role.as_str().into(),
        issued_millis: now,
        expires_millis: now + 600_000,
    };
    let audit = AuditEntry::new(
        "test",
        "admin_token.mint",
        format!("admin_token/{jti}"),
        now,
    );
    store.record_admin_token(&record, &audit).await.unwrap();
    let token = key.mint_admin_token_with_id(subject, role, &jti, now / 1000, 600);
    (token, jti)
}

async fn call(server: &TestServer, method: &str, path: &str, token: &str) -> (u16, Value) {
    server.call(method, path, Some(token), None).await
}

/// The revocation, with `token`, of the token whose id is `jti`.
async fn revoke(server: &TestServer, jti: &str, token: &str) -> (u16, Value) {
    call(server, "DELETE", &format!("/admin/v1/tokens/{jti}"), token).await
}

async fn status(server: &TestServer, token: &str) -> u16 {
    call(server, "GET", "/admin/v1/agents", token).await.0
}

async fn audit_len(server: &TestServer, token: &str) -> usize {
    let (status, audit) = call(server, "GET", "/admin/v1/audit?limit=1000", token).await;
    assert_eq!(status, 200, "{audit}");
    audit.as_array().unwrap().len()
}

async fn a_revoked_admin_token_is_refused_from_the_next_request_on(backend: Backend) {
    let name = backend.name();
    let settings = settings(&backend);
    let key = SigningKey::load(&settings.signing_key, &settings.data_dir).unwrap();
    let server = TestServer::start_with(settings.clone()).await;
    let store = backend.store().await;
    let (streamed, streamed_jti) = recorded(&key, &store, "alice", Role::Admin).await;
    let (alice_viewer, _) = recorded(&key, &store, "alice", Role::Viewer).await;
    let (bob, _) = recorded(&key, &store, "bob", Role::Admin).await;
    let (victor, _) = recorded(&key, &store, "victor", Role::Viewer).await;
    // A token of alice's the store never heard of (minted elsewhere).
    let alice_unrecorded = key.mint_admin_token("alice", Role::Admin, now_millis() / 1000, 600);

    // A stream of requests with alice's token, one after another on
    // one kept-alive connection: (when it was sent, its status).
    let seen: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let stream = {
        let (seen, url, token) = (
            seen.clone(),
            server.url("/admin/v1/agents"),
            streamed.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let sent = Instant::now();
                let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
                seen.lock()
                    .unwrap()
                    .push((sent, response.status().as_u16()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    eventually("five answers to the stream", PATIENCE, || async {
        seen.lock().unwrap().len() >= 5
    })
    .await;
    let (status_code, row) = revoke(&server, &streamed_jti, &bob).await;
    let revoked_at = Instant::now();
    assert_eq!(status_code, 200, "{name}: {row}");
    assert_eq!(row["subject"], "alice", "{name}");
    assert!(row["revoked_millis"].is_i64(), "{name}: {row}");
    eventually(
        "the stream to go on after the revocation",
        PATIENCE,
        || async {
            let seen = seen.lock().unwrap();
            seen.iter().filter(|&&(sent, _)| sent >= revoked_at).count() >= 3
        },
    )
    .await;
    stream.abort();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().take(5).all(|&(_, s)| s == 200),
        "{name}: {seen:?}"
    );
    let after: Vec<u16> = seen
        .iter()
        .filter(|&&(sent, _)| sent >= revoked_at)
        .map(|&(_, s)| s)
        .collect();
    assert!(after.len() >= 3, "{name}: the stream went on: {seen:?}");
    assert!(after.iter().all(|&s| s == 401), "{name}: {seen:?}");
    // Once refused, never let in again.
    let first_refusal = seen.iter().position(|&(_, s)| s == 401).unwrap();
    assert!(
        seen[first_refusal..].iter().all(|&(_, s)| s == 401),
        "{name}"
    );

    let (code, body) = call(&server, "GET", "/admin/v1/agents", &streamed).await;
    assert_eq!(code, 401, "{name}");
    assert_eq!(body["error"], "unauthorized", "{name}: {body}");
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{name}: {body}"
    );
    // Other tokens, alice's other one too, keep working.
    for token in [&alice_viewer, &bob, &victor, &alice_unrecorded] {
        assert_eq!(status(&server, token).await, 200, "{name}");
    }

    // Refusals change nothing and say why.
    let before = audit_len(&server, &bob).await;
    for (method, path, token, code, error) in [
        (
            "DELETE",
            "/admin/v1/tokens/not-a-token-id",
            &bob,
            400,
            "invalid_jti",
        ),
        (
            "DELETE",
            "/admin/v1/tokens/ABCDEF",
            &bob,
            400,
            "invalid_jti",
        ),
        (
            "DELETE",
            &format!("/admin/v1/tokens/{}", random_id(16)),
            &bob,
            404,
            "not_found",
        ),
        (
            "DELETE",
            &format!("/admin/v1/tokens/{streamed_jti}"),
            &bob,
            409,
            "conflict",
        ),
        ("DELETE", "/admin/v1/tokens", &bob, 400, "invalid_query"),
        (
            "DELETE",
            "/admin/v1/tokens?subject=%20",
            &bob,
            400,
            "invalid_query",
        ),
        (
            "DELETE",
            "/admin/v1/tokens?subject=bob",
            &victor,
            403,
            "forbidden",
        ),
        (
            "DELETE",
            "/admin/v1/tokens?subject=bob",
            &streamed,
            401,
            "unauthorized",
        ),
    ] {
        let (got, body) = call(&server, method, path, token).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (code, Some(error)),
            "{name} {method} {path}: {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}: {body}"
        );
    }
    assert_eq!(audit_len(&server, &bob).await, before, "{name}");
    for token in [&alice_viewer, &bob, &victor] {
        assert_eq!(status(&server, token).await, 200, "{name}");
    }

    // By subject: every token of alice issued up to now, recorded or
    // not; bob's and victor's keep working.
    let (code, body) = call(&server, "DELETE", "/admin/v1/tokens?subject=alice", &bob).await;
    assert_eq!(code, 200, "{name}: {body}");
    assert_eq!(body["subject"], "alice");
    // The viewer token; the streamed one was revoked already.
    assert_eq!(body["recorded_tokens_revoked"], 1, "{name}: {body}");
    for token in [&alice_viewer, &alice_unrecorded] {
        assert_eq!(status(&server, token).await, 401, "{name}");
    }
    for token in [&bob, &victor] {
        assert_eq!(status(&server, token).await, 200, "{name}");
    }
    // A token minted for alice afterwards (a later second) works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (fresh, _) = recorded(&key, &store, "alice", Role::Admin).await;
    assert_eq!(status(&server, &fresh).await, 200, "{name}");

    // Both revocations are in the audit log, by bob.
    let (_, audit) = call(&server, "GET", "/admin/v1/audit", &bob).await;
    let actions: Vec<(&str, &str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .unwrap()
                .starts_with("admin_token.revoke")
        })
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("admin_token.revoke_subject", "bob", "admin_subject/alice"),
            (
                "admin_token.revoke",
                "bob",
                &*format!("admin_token/{streamed_jti}")
            ),
        ],
        "{name}"
    );
    // The list shows which are revoked, never a token.
    let (code, list) = call(&server, "GET", "/admin/v1/tokens", &victor).await;
    assert_eq!(code, 200);
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 5, "{name}: {list}");
    let streamed_row = listed.iter().find(|t| t["jti"] == streamed_jti).unwrap();
    assert!(streamed_row["revoked_millis"].is_i64(), "{name}");
    assert!(!list.to_string().contains(&streamed), "{name}");

    // Revocations outlive a restart.
    server.stop().await.unwrap();
    let server = TestServer::start_with(settings).await;
    assert_eq!(status(&server, &streamed).await, 401, "{name}");
    assert_eq!(status(&server, &alice_viewer).await, 401, "{name}");
    assert_eq!(status(&server, &fresh).await, 200, "{name}");
    assert_eq!(status(&server, &bob).await, 200, "{name}");
    store.close().await;
    server.stop().await.unwrap();
}

fn menshen(backend: &Backend, args: &[&str]) -> std::process::Output {
    common::cli(backend, "ops", args)
}

/// Polls until `token` gets `want` (the CLI's change reaches a SQLite
/// server at its periodic reload, a Postgres one at once).
async fn wait_status(server: &TestServer, token: &str, want: u16) -> u16 {
    eventually(
        format_args!("the token to get {want}"),
        PATIENCE,
        || async {
            let got = status(server, token).await;
            if got == want { Ok(got) } else { Err(got) }
        },
    )
    .await
}

async fn the_cli_mints_lists_and_revokes_admin_tokens(backend: Backend) {
    let name = backend.name();
    let mut settings = settings(&backend);
    settings.reload_interval = Duration::from_millis(200);
    let server = TestServer::start_with(settings).await;
    let mint = |subject: &str, role: &str| {
        let out = menshen(
            &backend,
            &["admin", "token", "--subject", subject, "--role", role],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{name}: {stderr}");
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let jti = stderr
            .split("menshen admin revoke ")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: no id in {stderr:?}"))
            .trim()
            .to_owned();
        assert!(!stderr.contains(&token), "{name}: the token went to stderr");
        (token, jti)
    };
    let (carol, carol_jti) = mint("carol", "admin");
    let (carol2, _) = mint("carol", "viewer");
    let (dave, dave_jti) = mint("dave", "viewer");
    assert_eq!(carol_jti.len(), 32, "{name}");
    for token in [&carol, &carol2, &dave] {
        assert_eq!(status(&server, token).await, 200, "{name}");
    }
    let out = menshen(&backend, &["admin", "list", "--json"]);
    assert!(out.status.success(), "{name}");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{name}: {list}");

    // Invalid ids: exit 2; unknown ones refused, exit 1; each with a
    // message naming the problem.
    for (args, code, says) in [
        (vec!["admin", "revoke", "zz"], 2, "not an admin token id"),
        (
            vec!["admin", "revoke", &*random_id(16)],
            1,
            "no admin token with id",
        ),
        (vec!["admin", "revoke"], 2, "required"),
        (vec!["admin", "revoke", "--subject", " "], 2, "--subject"),
    ] {
        let out = menshen(&backend, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{name} {args:?}: {stderr}");
        assert!(stderr.contains(says), "{name} {args:?}: {stderr}");
    }

    stdout_of(menshen(&backend, &["admin", "revoke", &carol_jti]));
    assert_eq!(wait_status(&server, &carol, 401).await, 401, "{name}");
    assert_eq!(status(&server, &carol2).await, 200, "{name}");
    let out = menshen(&backend, &["admin", "revoke", &carol_jti]);
    assert_eq!(out.status.code(), Some(1), "{name}: already revoked");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already revoked"));

    stdout_of(menshen(
        &backend,
        &["admin", "revoke", "--subject", "carol"],
    ));
    assert_eq!(wait_status(&server, &carol2, 401).await, 401, "{name}");
    assert_eq!(status(&server, &dave).await, 200, "{name}");

    let (_, audit) = call(&server, "GET", "/admin/v1/audit", &dave).await;
    let mine: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        mine,
        [
            ("admin_token.revoke_subject", "cli:ops"),
            ("admin_token.revoke", "cli:ops"),
            ("admin_token.mint", "cli:ops"),
            ("admin_token.mint", "cli:ops"),
            ("admin_token.mint", "cli:ops"),
        ],
        "{name}"
    );
    let out = menshen(&backend, &["admin", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&dave_jti) && l.contains("active")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&carol_jti) && l.contains("revoked")),
        "{table}"
    );
    server.stop().await.unwrap();
}

/// Asserts that `server` refuses `token` within two seconds from now: a
/// revocation through another replica reaches it by notification.
async fn refused_within_two_seconds(server: &TestServer, token: &str) {
    let started = Instant::now();
    assert_eq!(wait_status(server, token, 401).await, 401);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_revocation_through_one_replica_is_refused_by_the_other_at_once() {
    let Some(backend) = Backend::postgres().await else {
        eprintln!("no Postgres: skipped");
        return;
    };
    let settings = settings(&backend);
    let key = SigningKey::load(&settings.signing_key, &settings.data_dir).unwrap();
    // The periodic reload is far off: only the notification can carry it.
    let mut quiet = settings.clone();
    quiet.reload_interval = Duration::from_secs(600);
    let one = TestServer::start_with(quiet.clone()).await;
    let two = TestServer::start_with(quiet).await;
    let store = backend.store().await;
    let (alice, alice_jti) = recorded(&key, &store, "alice", Role::Admin).await;
    let (bob, _) = recorded(&key, &store, "bob", Role::Admin).await;
    let (carol, _) = recorded(&key, &store, "carol", Role::Viewer).await;
    for server in [&one, &two] {
        assert_eq!(status(server, &alice).await, 200);
    }
    let (code, body) = revoke(&one, &alice_jti, &bob).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(&one, &alice).await, 401);
    refused_within_two_seconds(&two, &alice).await;
    let (code, _) = call(&two, "DELETE", "/admin/v1/tokens?subject=carol", &bob).await;
    assert_eq!(code, 200);
    assert_eq!(status(&two, &carol).await, 401);
    refused_within_two_seconds(&one, &carol).await;
    for server in [&one, &two] {
        assert_eq!(status(server, &bob).await, 200);
    }
    store.close().await;
    one.stop().await.unwrap();
    two.stop().await.unwrap();
}
