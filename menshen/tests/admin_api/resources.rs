//! Gateways and bridges an operator defines, and the overrides that hide
//! or mark any resource.

use menshen::auth::admin::Role;
use serde_json::{Value, json};

use super::{Harness, gateway, has};
use crate::common::{
    Backend, ProviderFile, TestServer, assert_says, named_fields, on_each_backend,
};

on_each_backend!(
    hand_defined_resources_and_overrides_reach_the_client_lists,
    hand_defined_resources_follow_the_same_rules,
);

async fn hand_defined_resources_and_overrides_reach_the_client_lists(backend: Backend) {
    let name = backend.name();
    let h = Harness::start(backend).await;

    let (status, body) = h
        .post("/admin/v1/gateways", gateway("hand.ams", "amsterdam"))
        .await;
    assert_eq!(status, 201, "{name}: {body}");
    assert_eq!(body["origin"], "admin");
    assert_eq!(body["status"], "hand-defined");
    assert_eq!(body["type"], "openvpn");
    let (status, _) = h
        .post("/admin/v1/gateways", gateway("hand.ams", "amsterdam"))
        .await;
    assert_eq!(status, 409, "{name}");
    let body = h
        .post_invalid(
            "/admin/v1/gateways",
            json!({"host": "bad", "location": "mars", "port": 99999,
                   "transport": "carrier-pigeon", "ip_addr": "1.2.3"}),
        )
        .await;
    let fields = named_fields(&body);
    for field in ["location", "port", "transport", "ip_addr"] {
        assert!(fields.contains(&field), "{name}: {field} in {body}");
    }
    let body = h
        .post_invalid("/admin/v1/gateways", json!({"host": "x", "port": "high"}))
        .await;
    assert_eq!(body["fields"][0]["field"], "port", "{body}");
    let hosts = h
        .wait_hosts("/api/5/gateways", |h| has(h, "hand.ams"))
        .await;
    assert_eq!(hosts, ["hand.ams", "static.ams"], "{name}");

    // a bridge needs its cert
    let body = h
        .post_invalid(
            "/admin/v1/bridges",
            json!({"host": "br.ams", "ip_addr": "192.0.2.9", "location": "amsterdam", "port": 443}),
        )
        .await;
    assert_eq!(body["fields"][0]["field"], "options.cert");
    let (status, body) = h
        .post("/admin/v1/bridges", json!({"host": "br.ams",
        "ip_addr": "192.0.2.9", "location": "amsterdam", "port": 443,
        "options": {"cert": "xvW97fMqMiBmgTy/jP5CvFGq8bqlKaPcL7xnKBnCl3n2EmlpTmSG8IMNvEsCYqkzYPsvvQ", "iatMode": "0"}}))
        .await;
    assert_eq!(status, 201, "{name}: {body}");
    assert_eq!(
        body["options"]["cert"],
        "xvW97fMqMiBmgTy/jP5CvFGq8bqlKaPcL7xnKBnCl3n2EmlpTmSG8IMNvEsCYqkzYPsvvQ"
    );
    h.wait_hosts("/api/5/bridges", |h| has(h, "br.ams")).await;

    // maintenance hides without deleting
    let (status, body) = h
        .set_overrides("gateways", "static.ams", json!({"maintenance": true}))
        .await;
    assert_eq!(status, 200, "{name}: {body}");
    assert_eq!(body["status"], "maintenance");
    assert_eq!(body["listed"], false);
    let hosts = h
        .wait_hosts("/api/5/gateways", |h| !has(h, "static.ams"))
        .await;
    assert_eq!(hosts, ["hand.ams"], "{name}");
    // a bucket hides from the public list, experimental likewise
    for (kind, host, overrides) in [
        ("gateways", "static.ams", json!({"bucket": "friends"})),
        ("bridges", "br.ams", json!({"experimental": true})),
    ] {
        let (status, body) = h.set_overrides(kind, host, overrides).await;
        assert_eq!(status, 200, "{name}: {host}: {body}");
    }
    let hosts = h.wait_hosts("/api/5/bridges", |h| h.is_empty()).await;
    assert!(hosts.is_empty(), "{name}: {hosts:?}");
    let hosts = h
        .wait_hosts("/api/5/bridges?experimental=true", |h| has(h, "br.ams"))
        .await;
    assert_eq!(hosts, ["br.ams"], "{name}");
    let hosts = h
        .wait_hosts("/api/5/gateways", |h| !has(h, "static.ams"))
        .await;
    assert_eq!(hosts, ["hand.ams"], "{name}: invite-only now");
    let seen = h.admin_resource("gateways", "static.ams").await;
    assert_eq!(seen["bucket"], "friends", "{name}: {seen}");
    assert_eq!(seen["status"], "hand-defined");
    assert_eq!(
        seen["overrides"],
        json!({"experimental": null, "bucket": "friends", "maintenance": false,
            "blocked_in": []})
    );
    let (status, body) = h
        .set_overrides("gateways", "static.ams", json!({"bucket": "has space"}))
        .await;
    assert_eq!(status, 422, "{name}: {body}");
    assert_eq!(body["fields"][0]["field"], "bucket");
    let (status, _) = h.set_overrides("gateways", "nope", json!({})).await;
    assert_eq!(status, 404, "{name}");
    // cleared: back in the list
    let (status, _) = h.set_overrides("gateways", "static.ams", json!({})).await;
    assert_eq!(status, 200);
    let hosts = h
        .wait_hosts("/api/5/gateways", |h| has(h, "static.ams"))
        .await;
    assert_eq!(hosts, ["hand.ams", "static.ams"], "{name}");

    // only hand-defined ones are deleted here
    let (status, body) = h.delete("/admin/v1/gateways/static.ams").await;
    assert_eq!(status, 409, "{name}");
    assert_says(&body, "provider file");
    h.delete_each(
        name,
        &[
            ("/admin/v1/gateways/hand.ams", 204),
            ("/admin/v1/gateways/hand.ams", 404),
            ("/admin/v1/bridges/br.ams", 204),
        ],
    )
    .await;
    let hosts = h
        .wait_hosts("/api/5/gateways", |h| !has(h, "hand.ams"))
        .await;
    assert_eq!(hosts, ["static.ams"], "{name}");

    let audit = h.audit().await;
    let overrides: Vec<&Value> = audit
        .iter()
        .filter(|a| a["action"] == "gateway.overrides")
        .collect();
    assert_eq!(overrides.len(), 3, "{name}: refused ones are not logged");
    // newest first: the clearing, from the bucket
    assert_eq!(overrides[0]["before"]["bucket"], "friends");
    assert_eq!(overrides[0]["after"]["maintenance"], false);
    assert_eq!(overrides[2]["after"]["maintenance"], true);
    assert_eq!(overrides[2]["target"], "gateway/static.ams");
}

/// Gateways and bridges defined through the admin API follow the rules
/// agents' do: public unicast addresses unless allowed, bridge options by
/// type; each refusal names the field and stores nothing.
async fn hand_defined_resources_follow_the_same_rules(backend: Backend) {
    const CERT: &str = "h8PI8ciXlSFFPgITUT6UZC1pgZPZNIse9/5HWJW8OWLh0ilfzTtoAT39uc5doA3qwkZ1bA";
    let name = backend.name();
    let mut settings = backend.serving(ProviderFile::new().location("amsterdam", "NL"));
    settings.allow_private_addresses = false;
    let server = TestServer::start_with(settings).await;
    let admin = server.admin_token("alice", Role::Admin);
    let post = |what: &str, body: Value| {
        let path = format!("/admin/v1/{what}");
        let admin = &admin;
        let server = &server;
        async move { server.call("POST", &path, Some(admin), Some(&body)).await }
    };
    let gateway = |ip: &str| {
        json!({"host": "gw.ams", "ip_addr": ip, "location": "amsterdam", "port": 1194,
               "transport": "udp"})
    };
    let bridge = |options: Value| {
        json!({"host": "br.ams", "ip_addr": "93.184.215.15", "location": "amsterdam",
               "port": 443, "options": options})
    };
    let cases = [
        ("gateways", gateway("10.1.2.3"), "ip_addr"),
        ("gateways", gateway("127.0.0.1"), "ip_addr"),
        ("gateways", gateway("198.51.100.7"), "ip_addr"),
        ("bridges", bridge(json!({"cert": "abc"})), "options.cert"),
        (
            "bridges",
            bridge(json!({"cert": CERT, "iatMode": "<script>"})),
            "options.iatMode",
        ),
        (
            "bridges",
            bridge(json!({"cert": CERT, "x": 1})),
            "options.x",
        ),
    ];
    for (what, body, field) in cases {
        let (status, response) = post(what, body.clone()).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert_eq!(response["error"], "invalid_fields", "{response}");
        assert_eq!(response["fields"][0]["field"], field, "{name}: {response}");
    }
    let (status, list) = server
        .call("GET", "/admin/v1/gateways", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{name}: {list}");
    let (status, _) = post("gateways", gateway("93.184.215.14")).await;
    assert_eq!(status, 201, "{name}");
    let (status, _) = post("bridges", bridge(json!({"cert": CERT, "iatMode": "1"}))).await;
    assert_eq!(status, 201, "{name}");
}
