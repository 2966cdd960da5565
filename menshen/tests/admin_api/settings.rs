//! Invites an operator creates and deletes, and the provider's and the
//! service's settings.

use menshen_e2e::http::json_of;
use serde_json::json;

use super::Harness;
use crate::common::{Backend, PATIENCE, eventually, named_fields, on_each_backend};

on_each_backend!(invites_and_settings);

async fn invites_and_settings(backend: Backend) {
    let name = backend.name();
    let h = Harness::start(backend).await;

    let (status, body) = h
        .post(
            "/admin/v1/invites",
            json!({"buckets": ["friends", "press", "friends"], "count": 2, "expires_secs": 3600}),
        )
        .await;
    assert_eq!(status, 201, "{name}: {body}");
    let tokens: Vec<String> = body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 2);
    assert_eq!(body["buckets"], json!(["friends", "press"]));
    let (status, _) = h
        .post("/admin/v1/invites", json!({"buckets": ["family"]}))
        .await;
    assert_eq!(status, 201);
    let (status, body) = h
        .post(
            "/admin/v1/invites",
            json!({"buckets": ["bad bucket"], "count": 0}),
        )
        .await;
    assert_eq!(status, 422, "{name}");
    let fields = named_fields(&body);
    assert_eq!(fields, ["buckets[0]", "count"], "{name}");

    let (_, list) = h.get("/admin/v1/invites").await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{name}");
    assert!(
        !list.to_string().contains(&tokens[0][17..]),
        "{name}: never a token"
    );

    // an invite token lets a client see an invite-only gateway
    let (status, _) = h
        .set_overrides("gateways", "static.ams", json!({"bucket": "press"}))
        .await;
    assert_eq!(status, 200);
    h.wait_hosts("/api/5/gateways", |h| h.is_empty()).await;
    eventually(
        format_args!("{name}: the invite to grant press"),
        PATIENCE,
        || async {
            let list = json_of(
                h.server
                    .client
                    .get(h.server.url("/api/5/gateways"))
                    .header("x-menshen-auth-token", &tokens[0]),
            )
            .await;
            list.as_array().unwrap().len() == 1
        },
    )
    .await;

    let id = list[0]["id"].as_str().unwrap().to_owned();
    let (status, _) = h.delete(&format!("/admin/v1/invites/{id}")).await;
    assert_eq!(status, 204, "{name}");
    let (status, _) = h.delete(&format!("/admin/v1/invites/{id}")).await;
    assert_eq!(status, 404, "{name}");
    let (status, body) = h.delete("/admin/v1/invites?bucket=family").await;
    assert_eq!((status, body["deleted"].as_u64()), (200, Some(1)), "{name}");
    let (status, _) = h.delete("/admin/v1/invites").await;
    assert_eq!(status, 400, "{name}: neither bucket nor all");
    let (status, body) = h.delete("/admin/v1/invites?all=true").await;
    assert_eq!((status, body["deleted"].as_u64()), (200, Some(1)), "{name}");
    let (_, list) = h.get("/admin/v1/invites").await;
    assert!(list.as_array().unwrap().is_empty(), "{name}");

    // settings: read and replace
    let (status, mut provider) = h.get("/admin/v1/provider").await;
    assert_eq!(status, 200);
    assert_eq!(provider["domain"], "vpn.test", "{name}: {provider}");
    provider["domain"] = "vpn.example".into();
    let (status, body) = h.put("/admin/v1/provider", provider.clone()).await;
    assert_eq!(status, 200, "{name}: {body}");
    eventually(
        format_args!("{name}: provider.json to change"),
        PATIENCE,
        || async { h.server.json("/provider.json").await["domain"] == "vpn.example" },
    )
    .await;
    let (status, body) = h.put("/admin/v1/provider", json!({"domain": ""})).await;
    assert_eq!(status, 422, "{name}");
    let fields = named_fields(&body);
    assert_eq!(fields, ["domain", "api_uri", "api_versions"], "{name}");

    let (status, service) = h.get("/admin/v1/service").await;
    assert_eq!(status, 200);
    assert_eq!(service["auth"], "anonymous", "{name}: {service}");
    let new = json!({"auth": "anonymous", "openvpn_configuration": {"cipher": "AES-256-GCM", "persist-tun": true},
                     "serial": 4, "version": 3});
    let (status, _) = h.put("/admin/v1/service", new.clone()).await;
    assert_eq!(status, 200, "{name}");
    eventually(
        format_args!("{name}: the service to change"),
        PATIENCE,
        || async { h.server.json("/api/5/service").await["serial"] == 4 },
    )
    .await;
    let (status, body) = h
        .put(
            "/admin/v1/service",
            json!({"auth": "anonymous", "openvpn_configuration": {"verb": 3}}),
        )
        .await;
    assert_eq!(status, 422, "{name}");
    assert_eq!(body["fields"][0]["field"], "openvpn_configuration.verb");
    let (status, body) = h.put("/admin/v1/service", json!({"serial": "four"})).await;
    assert_eq!(status, 422, "{name}");
    assert_eq!(body["fields"][0]["field"], "serial");
    let (status, _) = h
        .call("PUT", "/admin/v1/service", Some(&h.admin), None)
        .await;
    assert_eq!(status, 400, "{name}: no JSON body");

    let audit = h
        .audit_of(
            &[
                "settings.service",
                "settings.provider",
                "invite.delete",
                "invite.delete",
                "invite.delete",
                "gateway.overrides",
                "invite.create",
                "invite.create",
            ],
            name,
        )
        .await;
    assert_eq!(audit[0]["before"]["serial"], 3);
    assert_eq!(audit[0]["after"]["serial"], 4);
    assert_eq!(audit[1]["before"]["domain"], "vpn.test");
    assert_eq!(audit[1]["after"]["domain"], "vpn.example");
    assert_eq!(
        audit[4]["before"][0]["id"],
        id.as_str(),
        "{name}: {}",
        audit[4]
    );
    assert_eq!(audit[7]["after"]["buckets"], json!(["friends", "press"]));
    for token in &tokens {
        assert!(
            !audit.iter().any(|a| a.to_string().contains(&token[17..])),
            "{name}"
        );
    }
}
