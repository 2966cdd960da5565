//! Who may do what: refusals, roles, and tokens minted by the CLI.

use menshen::auth::SigningKey;
use menshen::auth::admin::Role;
use menshen::store::now_millis;
use serde_json::json;

use super::{Harness, gateway};
use crate::common::{Backend, cli, on_each_backend, stdout_of};

on_each_backend!(refusals_are_401_or_403_in_json);

async fn refusals_are_401_or_403_in_json(backend: Backend) {
    let name = backend.name();
    let h = Harness::start(backend).await;
    let now = now_millis() / 1000;
    let key = h.server.key();
    let expired = key.mint_admin_token("alice", Role::Admin, now - 7200, 600);
    let forged =
        SigningKey::from_bytes(&[9u8; 32]).mint_admin_token("alice", Role::Admin, now, 600);
    let agent = key.mint_agent_token("gw", "id", now, 600);
    let invite = "0123456789abcdef.c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";
    let location = json!({"label": "berlin", "display_name": "Berlin", "country_code": "DE"});

    for (what, token) in [
        ("no token", None),
        ("garbage", Some("not-a-jwt")),
        ("expired", Some(expired.as_str())),
        ("forged", Some(forged.as_str())),
        ("agent token", Some(agent.as_str())),
        ("invite token", Some(invite)),
    ] {
        for (method, path, body) in [
            ("GET", "/admin/v1/locations", None),
            ("POST", "/admin/v1/locations", Some(location.clone())),
            ("GET", "/admin/v1/audit", None),
        ] {
            let (status, body) = h.call(method, path, token, body).await;
            assert_eq!(status, 401, "{name}: {what} {method} {path}: {body}");
            assert_eq!(body["error"], "unauthorized", "{name}: {what}");
        }
    }
    let (_, body) = h
        .call("GET", "/admin/v1/locations", Some(&expired), None)
        .await;
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    // a viewer reads, and changes nothing
    for path in [
        "/admin/v1/locations",
        "/admin/v1/gateways",
        "/admin/v1/bridges",
        "/admin/v1/agents",
        "/admin/v1/invites",
        "/admin/v1/provider",
        "/admin/v1/service",
        "/admin/v1/audit",
    ] {
        let (status, _) = h.call("GET", path, Some(&h.viewer), None).await;
        assert_eq!(status, 200, "{name}: viewer GET {path}");
    }
    for (method, path, body) in [
        ("POST", "/admin/v1/locations", Some(location.clone())),
        ("DELETE", "/admin/v1/locations/amsterdam", None),
        (
            "POST",
            "/admin/v1/gateways",
            Some(gateway("x.ams", "amsterdam")),
        ),
        (
            "PUT",
            "/admin/v1/gateways/static.ams/overrides",
            Some(json!({"maintenance": true})),
        ),
        ("POST", "/admin/v1/agents", Some(json!({"name": "gw"}))),
        (
            "POST",
            "/admin/v1/invites",
            Some(json!({"buckets": ["friends"]})),
        ),
        ("DELETE", "/admin/v1/invites?all=true", None),
        (
            "PUT",
            "/admin/v1/service",
            Some(json!({"auth": "anonymous"})),
        ),
    ] {
        let (status, body) = h.call(method, path, Some(&h.viewer), body).await;
        assert_eq!(status, 403, "{name}: viewer {method} {path}: {body}");
        assert_eq!(body["error"], "forbidden");
    }
    assert!(
        h.audit().await.is_empty(),
        "{name}: refused changes are not logged"
    );
    let (_, locations) = h.get("/admin/v1/locations").await;
    assert_eq!(locations.as_array().unwrap().len(), 1, "{name}");
}

#[tokio::test]
async fn the_cli_mints_admin_tokens_the_server_accepts() {
    let h = Harness::start(Backend::sqlite()).await;
    let mint = |role: &str| {
        let args = [
            "admin",
            "token",
            "--subject",
            "ops",
            "--role",
            role,
            "--ttl",
            "1m",
        ];
        stdout_of(cli(&h.backend, "ops", &args)).trim().to_owned()
    };
    let viewer = mint("viewer");
    let (status, _) = h.call("GET", "/admin/v1/audit", Some(&viewer), None).await;
    assert_eq!(status, 200);
    // A viewer may not create an agent; an admin may.
    for (token, expected) in [(viewer, 403), (mint("admin"), 201)] {
        let body = json!({"name": "gw"});
        let (status, _) = h
            .call("POST", "/admin/v1/agents", Some(&token), Some(body))
            .await;
        assert_eq!(status, expected);
    }
    assert_eq!(h.audit().await[0]["actor"], "ops");

    // changes made with the CLI are in the audit log too
    stdout_of(cli(&h.backend, "root", &["agent", "revoke", "gw"]));
    let audit = h.audit().await;
    assert_eq!(
        (&audit[0]["action"], &audit[0]["actor"]),
        (&json!("agent.revoke"), &json!("cli:root"))
    );
}
