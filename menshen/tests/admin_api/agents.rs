//! Agents an operator creates and revokes, and overrides that outlive
//! their pushes.

use std::time::Duration;

use menshen::store::now_millis;
use serde_json::json;

use super::{Harness, has};
use crate::common::{Backend, PATIENCE, assert_says, eventually, on_each_backend};

on_each_backend!(agents_are_created_listed_and_revoked_and_overrides_outlive_their_pushes);

async fn agents_are_created_listed_and_revoked_and_overrides_outlive_their_pushes(
    backend: Backend,
) {
    let name = backend.name();
    let h = Harness::start_with_ttl(backend, Duration::from_millis(1500)).await;

    let (status, body) = h.post("/admin/v1/agents", json!({"name": "gw-ams"})).await;
    assert_eq!(status, 201, "{name}: {body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(body["expires_millis"].as_i64().unwrap() > now_millis() + 300 * 86_400_000);
    let (status, _) = h.post("/admin/v1/agents", json!({"name": "gw-ams"})).await;
    assert_eq!(status, 409, "{name}");
    let (status, body) = h
        .post("/admin/v1/agents", json!({"name": "GW AMS", "ttl_secs": 1}))
        .await;
    assert_eq!(status, 422, "{name}");
    assert_eq!(body["fields"].as_array().unwrap().len(), 2, "{body}");

    // the token works for the agent API, and not here
    assert_eq!(h.push_pushed_ams(&token, 0.5).await, 201, "{name}");
    let (status, _) = h.call("GET", "/admin/v1/agents", Some(&token), None).await;
    assert_eq!(status, 401, "{name}: agent token on the admin API");

    let (_, agents) = h.get("/admin/v1/agents").await;
    assert_eq!(agents[0]["name"], "gw-ams");
    assert!(agents[0]["revoked_millis"].is_null());
    assert!(agents[0].get("token_id").is_none(), "{agents}");

    let seen = h.admin_resource("gateways", "pushed.ams").await;
    assert_eq!(seen["status"], "live", "{name}: {seen}");
    assert_eq!(seen["agent"], "gw-ams");
    assert_eq!(seen["load"], 0.5);
    assert!(seen["last_seen_millis"].as_i64().unwrap() > 0);
    let (status, body) = h.delete("/admin/v1/gateways/pushed.ams").await;
    assert_eq!(status, 409, "{name}");
    assert_says(&body, "agent");

    // an operator's experimental outlives the next push
    let (status, _) = h
        .set_overrides("gateways", "pushed.ams", json!({"experimental": true}))
        .await;
    assert_eq!(status, 200);
    h.wait_hosts("/api/5/gateways", |h| !has(h, "pushed.ams"))
        .await;
    let before = h.server.generation().await;
    assert_eq!(h.push_pushed_ams(&token, 0.75).await, 200, "{name}");
    h.server.rebuilt_since(before).await;
    let hosts = h.server.hosts("/api/5/gateways").await;
    assert!(
        !has(&hosts, "pushed.ams"),
        "{name}: the push undid the override"
    );
    let seen = h.admin_resource("gateways", "pushed.ams").await;
    assert_eq!(
        (&seen["experimental"], &seen["load"]),
        (&json!(true), &json!(0.75)),
        "{name}: {seen}"
    );

    // not heard from within the TTL: stale
    let seen = eventually(
        format_args!("{name}: pushed.ams stale"),
        PATIENCE,
        || async {
            let seen = h.admin_resource("gateways", "pushed.ams").await;
            if seen["status"] == "stale" {
                Ok(seen)
            } else {
                Err(seen)
            }
        },
    )
    .await;
    assert_eq!(seen["listed"], false);

    let (status, _) = h.delete("/admin/v1/agents/gw-ams").await;
    assert_eq!(status, 204, "{name}");
    let (status, _) = h.delete("/admin/v1/agents/gw-ams").await;
    assert_eq!(status, 404, "{name}");
    assert_eq!(h.push_pushed_ams(&token, 0.5).await, 401, "{name}: revoked");
    assert!(
        h.admin_resource("gateways", "pushed.ams").await.is_null(),
        "{name}"
    );
    let (_, agents) = h.get("/admin/v1/agents").await;
    assert!(agents[0]["revoked_millis"].as_i64().is_some());

    let audit = h
        .audit_of(&["agent.revoke", "gateway.overrides", "agent.create"], name)
        .await;
    assert!(
        !audit.iter().any(|a| a.to_string().contains(&token)),
        "{name}: no token in the log"
    );
}
