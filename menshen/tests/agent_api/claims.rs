//! What an agent may push: each refusal names the field and stores
//! nothing.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Harness, gateway, pushed_hosts};
use crate::common::{Backend, assert_says, named_fields, on_each_backend};

on_each_backend!(
    invalid_pushes_get_422_naming_fields_and_change_nothing,
    what_an_agent_may_claim,
    private_addresses_when_allowed,
);

async fn invalid_pushes_get_422_naming_fields_and_change_nothing(backend: Backend) {
    let name = backend.name();
    let h = Harness::start(backend, Duration::from_secs(60)).await;
    let token = h.agent("gw-ams").await;
    let (status, _) = h
        .put(
            "gateways",
            Some(&token),
            &json!([gateway("keep.ams", 1194)]),
        )
        .await;
    assert_eq!(status, 201);

    let with = |field: &str, value: Value| {
        let mut g = gateway("x.ams", 1194);
        g[field] = value;
        json!([gateway("keep.ams", 1194), g])
    };
    let cases = [
        (with("host", json!("")), "gateways[1].host"),
        (with("host", json!("h".repeat(300))), "gateways[1].host"),
        (with("ip_addr", json!("300.1.1.1")), "gateways[1].ip_addr"),
        (with("ip6_addr", json!("192.0.2.1")), "gateways[1].ip6_addr"),
        (with("port", json!(0)), "gateways[1].port"),
        (with("port", json!(70000)), "gateways[1].port"),
        (
            with("transport", json!("carrier-pigeon")),
            "gateways[1].transport",
        ),
        (with("type", json!("wireguard")), "gateways[1].type"),
        (with("location", json!("atlantis")), "gateways[1].location"),
        (with("load", json!(1.5)), "gateways[1].load"),
        (with("load", json!(-0.1)), "gateways[1].load"),
        (
            json!([gateway("dup.ams", 1194), gateway("dup.ams", 1195)]),
            "gateways[1].host",
        ),
        (with("port", json!("1194")), "gateways[1].port"),
        (json!({"host": "not-an-array"}), "gateways"),
    ];
    for (body, field) in cases {
        let (status, response) = h.put("gateways", Some(&token), &body).await;
        assert_eq!(status, 422, "{name}: {field}: {response}");
        assert_eq!(response["error"], "invalid_fields");
        let fields = named_fields(&response);
        assert!(
            fields.contains(&field),
            "{name}: expected {field} in {response}"
        );
    }
    // A missing type or transport is said to be missing, with what it
    // may be.
    let mut untyped = gateway("x.ams", 1194);
    untyped.as_object_mut().unwrap().remove("type");
    untyped.as_object_mut().unwrap().remove("transport");
    let (status, response) = h.put("gateways", Some(&token), &json!([untyped])).await;
    assert_eq!(status, 422, "{response}");
    for field in ["gateways[0].type", "gateways[0].transport"] {
        let error = response["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == field)
            .unwrap_or_else(|| panic!("{field} in {response}"));
        let message = error["message"].as_str().unwrap();
        assert!(message.starts_with("is required: one of "), "{message}");
    }
    let bridge_without_cert = json!([{"host": "br", "ip_addr": "192.0.2.5", "location": "paris",
        "port": 443, "transport": "tcp", "type": "obfs4"}]);
    let (status, response) = h.put("bridges", Some(&token), &bridge_without_cert).await;
    assert_eq!(status, 422);
    assert_eq!(response["fields"][0]["field"], "bridges[0].options.cert");

    // Not JSON: 400. Too large: 413.
    let response = h
        .server
        .client
        .put(h.server.url("/api/5/agent/gateways"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("[{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let huge: Vec<Value> = (0..3000)
        .map(|i| gateway(&format!("h{i}.ams"), 1194))
        .collect();
    let (status, response) = h.put("gateways", Some(&token), &json!(huge)).await;
    assert_eq!(status, 413, "{name}: {response}");
    assert_eq!(response["error"], "payload_too_large");

    // Nothing of that changed the store.
    let store = h.store().await;
    assert_eq!(pushed_hosts(&store).await, ["keep.ams"], "{name}");
    store.close().await;
}

/// A real obfs4 cert: the base64 (no padding) of 52 bytes.
const CERT: &str = "h8PI8ciXlSFFPgITUT6UZC1pgZPZNIse9/5HWJW8OWLh0ilfzTtoAT39uc5doA3qwkZ1bA";

fn public_gateway(host: &str) -> Value {
    let mut g = gateway(host, 1194);
    g["ip_addr"] = json!("93.184.215.14");
    g
}

fn public_bridge(host: &str, kind: &str, options: Value) -> Value {
    json!({"host": host, "ip_addr": "93.184.215.15", "location": "paris", "port": 443,
           "transport": "tcp", "type": kind, "healthy": true, "options": options})
}

/// The fields a 422 names.
fn refused_fields(status: u16, response: &Value) -> Vec<String> {
    assert_eq!(status, 422, "{response}");
    assert_eq!(response["error"], "invalid_fields", "{response}");
    response["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}

/// What an agent may claim: a number of resources, public unicast
/// addresses, bridge options of their type. Each refusal names the field
/// and stores nothing of the push.
async fn what_an_agent_may_claim(backend: Backend) {
    let name = backend.name();
    let h = Harness::start_with(backend, |s| {
        s.allow_private_addresses = false;
        s.max_resources_per_agent = 3;
    })
    .await;
    let token = h.agent("gw-ams").await;
    let (status, body) = h
        .put(
            "gateways",
            Some(&token),
            &json!([public_gateway("keep.ams")]),
        )
        .await;
    assert_eq!(status, 201, "{name}: {body}");

    // The cap: one push above it, and the two kinds together above it.
    let four: Vec<Value> = (0..4)
        .map(|i| public_gateway(&format!("g{i}.ams")))
        .collect();
    let (status, response) = h.put("gateways", Some(&token), &json!(four)).await;
    assert_eq!(refused_fields(status, &response), ["gateways"], "{name}");
    assert_says(&response["fields"][0], "at most 3");
    let three: Vec<Value> = (0..3)
        .map(|i| public_bridge(&format!("b{i}.paris"), "obfs4", json!({"cert": CERT})))
        .collect();
    let (status, response) = h.put("bridges", Some(&token), &json!(three)).await;
    assert_eq!(refused_fields(status, &response), ["bridges"], "{name}");
    assert_says(&response["fields"][0], "at most 3");

    // Addresses clients would be sent to.
    let with = |field: &str, value: &str| {
        let mut g = public_gateway("x.ams");
        g[field] = json!(value);
        json!([public_gateway("keep.ams"), g])
    };
    let not_public: [(&str, &[&str]); 2] = [
        (
            "ip_addr",
            &[
                "127.0.0.1",
                "10.0.0.1",
                "172.16.0.1",
                "192.168.0.1",
                "169.254.0.1",
                "100.64.0.1",
                "192.0.2.1",
                "198.51.100.7",
                "203.0.113.1",
                "224.0.0.1",
                "0.0.0.0",
                "255.255.255.255",
            ],
        ),
        (
            "ip6_addr",
            &[
                "::1",
                "fd00::1",
                "fe80::1",
                "ff02::1",
                "2001:db8::1",
                "::",
                "::ffff:10.0.0.1",
            ],
        ),
    ];
    for (field, ips) in not_public {
        for ip in ips {
            let (status, response) = h.put("gateways", Some(&token), &with(field, ip)).await;
            assert_eq!(
                refused_fields(status, &response),
                [format!("gateways[1].{field}")],
                "{name}: {ip}"
            );
        }
    }

    // Bridge options, by type.
    let hop = |key: &str, value: Value| {
        let mut options = json!({"cert": CERT, "iatMode": "0", "min_hop_port": 49152,
            "max_hop_port": 65535, "port_count": 100, "min_hop_seconds": 5});
        options[key] = value;
        let mut b = public_bridge("hop.paris", "obfs4-hop", options);
        b.as_object_mut().unwrap().remove("port");
        json!([b])
    };
    let obfs4 = |options: Value| json!([public_bridge("br.paris", "obfs4", options)]);
    let cases = [
        (
            obfs4(json!({"cert": "Y2VydA", "iatMode": "0"})),
            "bridges[0].options.cert",
        ),
        (
            obfs4(json!({"cert": format!("{CERT}=="), "iatMode": "0"})),
            "bridges[0].options.cert",
        ),
        (
            obfs4(json!({"cert": CERT, "iatMode": "0\"><svg onload=alert(1)>"})),
            "bridges[0].options.iatMode",
        ),
        (
            obfs4(json!({"cert": CERT, "iatMode": "3"})),
            "bridges[0].options.iatMode",
        ),
        (
            obfs4(json!({"cert": CERT, "note": "hi"})),
            "bridges[0].options.note",
        ),
        (
            obfs4(json!({"cert": CERT, "port_count": 5})),
            "bridges[0].options.port_count",
        ),
        (
            hop("min_hop_port", json!(0)),
            "bridges[0].options.min_hop_port",
        ),
        (
            hop("max_hop_port", json!(70000)),
            "bridges[0].options.max_hop_port",
        ),
        (
            hop("max_hop_port", json!(1000)),
            "bridges[0].options.min_hop_port",
        ),
        (hop("port_count", json!(0)), "bridges[0].options.port_count"),
        (
            hop("min_hop_seconds", json!(-1)),
            "bridges[0].options.min_hop_seconds",
        ),
        (
            hop("min_hop_seconds", json!("5")),
            "bridges[0].options.min_hop_seconds",
        ),
        (
            hop("hop_jitter", json!(0.5)),
            "bridges[0].options.hop_jitter",
        ),
        (hop("hops", json!(1)), "bridges[0].options.hops"),
    ];
    for (body, field) in cases {
        let (status, response) = h.put("bridges", Some(&token), &body).await;
        assert_eq!(refused_fields(status, &response), [field], "{name}: {body}");
    }
    // What is allowed is stored.
    let (status, body) = h
        .put("bridges", Some(&token), &hop("port_seed", json!(7)))
        .await;
    assert_eq!(status, 201, "{name}: {body}");

    // Nothing of the refused pushes was stored.
    let store = h.store().await;
    assert_eq!(
        pushed_hosts(&store).await,
        ["hop.paris", "keep.ams"],
        "{name}"
    );
    store.close().await;
}

/// `--allow-private-addresses`: labs may send clients anywhere.
async fn private_addresses_when_allowed(backend: Backend) {
    let name = backend.name();
    let h = Harness::start_with(backend, |s| s.allow_private_addresses = true).await;
    let token = h.agent("lab").await;
    let mut lab = gateway("lab.ams", 1194);
    lab["ip_addr"] = json!("10.0.0.7");
    lab["ip6_addr"] = json!("fd00::7");
    let (status, body) = h.put("gateways", Some(&token), &json!([lab])).await;
    assert_eq!(status, 201, "{name}: {body}");
}
