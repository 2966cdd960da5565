//! Gateways and bridges an operator blocks in some countries: not handed
//! to clients there (by `cc` or by the GeoIP position of their address),
//! whatever pushes say, until cleared.

use std::time::Duration;

use menshen::geo::client_ip::TrustedProxies;
use menshen::sign::{self, ListKey};
use menshen_model::SigningKeyInfo;
use serde_json::{Value, json};

use super::{Harness, actions, has};
use crate::common::{
    Backend, ProviderFile, assert_says, cli, on_each_backend, stdout_of, strings_of,
};

on_each_backend!(
    blocked_resources_are_not_handed_out_where_they_are_blocked,
    the_service_tells_clients_where_they_are_blocked_what_is_left,
    without_geoip_the_service_stays_one_for_all,
);

const CERT: &str = "xvW97fMqMiBmgTy/jP5CvFGq8bqlKaPcL7xnKBnCl3n2EmlpTmSG8IMNvEsCYqkzYPsvvQ";

fn provider_file() -> ProviderFile {
    ProviderFile::new()
        .place("amsterdam")
        .gateway("static.ams", "192.0.2.1", "amsterdam")
        .gateway("other.ams", "192.0.2.2", "amsterdam")
        .bridge("br.ams", "192.0.2.11", "amsterdam", CERT)
}

/// Clients at 203.0.113.0/26 are in the Netherlands, at 203.0.113.64/26
/// in Russia; the tests' own address is nowhere.
fn records() -> Value {
    json!([
        {"network": "203.0.113.0/26", "country": "NL", "lat": 52.1, "lon": 5.1},
        {"network": "203.0.113.64/26", "country": "RU", "lat": 55.8, "lon": 37.6},
    ])
}

const IN_NL: &str = "203.0.113.9";
const IN_RU: &str = "203.0.113.70";

/// The sorted hosts of the client list at `path`, for a client at `addr`.
async fn hosts_from(h: &Harness, path: &str, addr: &str) -> Vec<String> {
    let list: Value = h
        .server
        .client
        .get(h.server.url(path))
        .header("x-forwarded-for", addr)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut hosts: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("a list at {path}: {list}"))
        .iter()
        .map(|r| r["host"].as_str().unwrap().to_owned())
        .collect();
    hosts.sort();
    hosts
}

async fn entity_tag(h: &Harness, path: &str) -> String {
    let response = h
        .server
        .client
        .get(h.server.url(path))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.headers()["etag"].to_str().unwrap().to_owned()
}

/// `/api/5/service` for a client at `addr`, its signature checked with
/// the keys /provider.json publishes: its Cache-Control, ETag and
/// amsterdam's `healthy` and `has_bridges`.
async fn service_from(h: &Harness, addr: &str) -> (String, String, (bool, bool)) {
    let provider = h.server.json("/provider.json").await;
    let keys: Vec<SigningKeyInfo> =
        serde_json::from_value(provider["signing_keys"].clone()).unwrap();
    let response = h
        .server
        .client
        .get(h.server.url("/api/5/service"))
        .header("x-forwarded-for", addr)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    let (cache_control, etag) = (header("cache-control"), header("etag"));
    let signature = header(sign::HEADER);
    let body = response.bytes().await.unwrap();
    sign::verify(&signature, &body, &keys, sign::unix_now())
        .unwrap_or_else(|e| panic!("the signature of the service for {addr}: {e}"));
    let service: Value = serde_json::from_slice(&body).unwrap();
    let ams = &service["locations"]["amsterdam"];
    // false is left out, as clients expect
    let flags = (ams["healthy"] == true, ams["has_bridges"] == true);
    (cache_control, etag, flags)
}

/// Blocks `host` (of `kind`, as the admin path names it) in Russia and
/// waits until the server's snapshot has it.
async fn block_in_russia(h: &Harness, kind: &str, host: &str) {
    let seen = h.server.generation().await;
    let (status, body) = h
        .set_overrides(kind, host, json!({"blocked_in": ["RU"]}))
        .await;
    assert_eq!(status, 200, "{}: {body}", h.backend.name());
    h.server.rebuilt_since(seen).await;
}

/// The status page's entry for `host`.
async fn on_status_page(h: &Harness, host: &str) -> Value {
    let (status, data) = h.get("/status/data").await;
    assert_eq!(status, 200, "{data}");
    data["locations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["resources"].as_array().unwrap().iter())
        .find(|r| r["host"] == host)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Asserts the countries the admin list shows `host`, of `kind`, blocked
/// in.
async fn assert_blocked_in(h: &Harness, kind: &str, host: &str, expected: Value) {
    let seen = h.admin_resource(kind, host).await;
    assert_eq!(seen["overrides"]["blocked_in"], expected, "{host}: {seen}");
}

async fn blocked_resources_are_not_handed_out_where_they_are_blocked(backend: Backend) {
    let name = backend.name();
    let dir = tempfile::tempdir().unwrap();
    let geoip = menshen_e2e::write_geoip(dir.path(), "city", &records());
    let h = Harness::start_tweaked(backend, provider_file(), |s| {
        s.geoip_db = Some(geoip);
        s.trusted_proxies = TrustedProxies::parse("127.0.0.0/8").unwrap();
        // The CLI's changes reach a server on SQLite at its next reload.
        s.reload_interval = Duration::from_millis(200);
    })
    .await;
    let all = ["other.ams", "static.ams"];
    assert_eq!(h.server.hosts("/api/5/gateways?cc=RU").await, all, "{name}");
    let tag_before = entity_tag(&h, "/api/5/gateways?cc=RU").await;

    // set through the API: codes in any case, kept uppercase and sorted
    let (status, body) = h
        .set_overrides(
            "gateways",
            "static.ams",
            json!({"blocked_in": ["ru", "IR", "RU"]}),
        )
        .await;
    assert_eq!(status, 200, "{name}: {body}");
    assert_eq!(
        body["overrides"]["blocked_in"],
        json!(["IR", "RU"]),
        "{body}"
    );
    assert_eq!(
        body["status"], "hand-defined",
        "{name}: still listed elsewhere"
    );
    let audit = h.audit().await;
    assert_eq!(audit[0]["action"], "gateway.overrides", "{name}");
    assert_eq!(audit[0]["actor"], "alice");
    assert_eq!(audit[0]["target"], "gateway/static.ams");
    assert_eq!(
        audit[0]["after"]["blocked_in"],
        json!(["IR", "RU"]),
        "{audit:?}"
    );
    let logged = audit.len();

    // a code that is none is refused, and nothing changes
    let (status, body) = h
        .set_overrides(
            "gateways",
            "static.ams",
            json!({"blocked_in": ["RU", "XX"]}),
        )
        .await;
    assert_eq!(status, 422, "{name}: {body}");
    assert_eq!(body["fields"][0]["field"], "blocked_in[1]", "{body}");
    assert_says(&body["fields"][0], "XX");
    let (status, body) = h
        .set_overrides("gateways", "static.ams", json!({"blocked_in": "RU"}))
        .await;
    assert_eq!(status, 422, "{name}: {body}");
    assert!(body.to_string().contains("blocked_in"), "{body}");
    assert_eq!(h.audit().await.len(), logged, "{name}: nothing logged");
    assert_blocked_in(&h, "gateways", "static.ams", json!(["IR", "RU"])).await;

    // a client in Russia by cc does not get it; others do
    let hosts = h
        .wait_hosts("/api/5/gateways?cc=RU", |h| !has(h, "static.ams"))
        .await;
    assert_eq!(hosts, ["other.ams"], "{name}");
    assert_eq!(h.server.hosts("/api/5/gateways?cc=ir").await, ["other.ams"]);
    assert_eq!(h.server.hosts("/api/5/gateways?cc=NL").await, all, "{name}");
    assert_eq!(
        h.server.hosts("/api/5/gateways").await,
        all,
        "{name}: nowhere"
    );
    let tag_blocked = entity_tag(&h, "/api/5/gateways?cc=RU").await;
    assert_ne!(tag_blocked, tag_before, "{name}: the tag names the set");
    assert_eq!(entity_tag(&h, "/api/5/gateways?cc=NL").await, tag_before);

    // nor does one placed in Russia by its address, unless it says cc
    assert_eq!(
        hosts_from(&h, "/api/5/gateways", IN_RU).await,
        ["other.ams"]
    );
    assert_eq!(hosts_from(&h, "/api/5/gateways", IN_NL).await, all);
    assert_eq!(
        hosts_from(&h, "/api/5/gateways?cc=NL", IN_RU).await,
        all,
        "{name}: cc wins over the address"
    );

    // the v3 service description and the OpenVPN configuration likewise
    let v3 = h.server.json("/3/config/eip-service.json?cc=RU").await;
    let v3_hosts = strings_of(&v3["gateways"], "host");
    assert_eq!(v3_hosts, ["other.ams", "br.ams"], "{name}: {v3}");
    let v3 = h.server.json("/3/config/eip-service.json?cc=NL").await;
    assert_eq!(v3["gateways"].as_array().unwrap().len(), 3, "{name}: {v3}");
    let config = |cc: &'static str| {
        let url = h.server.url(&format!("/api/5/openvpn/config?cc={cc}"));
        async move {
            let response = reqwest::get(url).await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };
    let ru = config("RU").await;
    assert!(!ru.contains("192.0.2.1 "), "{name}: {ru}");
    assert!(ru.contains("192.0.2.2 "), "{name}: {ru}");
    let nl = config("NL").await;
    assert!(
        nl.contains("192.0.2.1 ") && nl.contains("192.0.2.2 "),
        "{nl}"
    );

    // the status page and the admin list show where
    let shown = on_status_page(&h, "static.ams").await;
    assert_eq!(shown["blocked_in"], json!(["IR", "RU"]), "{name}: {shown}");
    assert_eq!(
        on_status_page(&h, "other.ams").await["blocked_in"],
        json!([])
    );

    // set and cleared with the CLI, logged as the CLI
    stdout_of(cli(
        &h.backend,
        "ops",
        &["bridge", "set", "br.ams", "--blocked-in", "ru,by"],
    ));
    let audit = h.audit().await;
    assert_eq!(
        (&audit[0]["action"], &audit[0]["actor"]),
        (&json!("bridge.overrides"), &json!("cli:ops"))
    );
    assert_eq!(audit[0]["after"]["blocked_in"], json!(["BY", "RU"]));
    assert_blocked_in(&h, "bridges", "br.ams", json!(["BY", "RU"])).await;
    let hosts = h
        .wait_hosts("/api/5/bridges?cc=RU", |h| !has(h, "br.ams"))
        .await;
    assert!(hosts.is_empty(), "{name}: {hosts:?}");
    assert_eq!(h.server.hosts("/api/5/bridges?cc=NL").await, ["br.ams"]);
    assert_eq!(
        hosts_from(&h, "/api/5/bridges", IN_RU).await,
        Vec::<String>::new()
    );
    assert_eq!(hosts_from(&h, "/api/5/bridges", IN_NL).await, ["br.ams"]);
    let out = cli(
        &h.backend,
        "ops",
        &["bridge", "set", "br.ams", "--blocked-in", "RU,QQ"],
    );
    assert_eq!(out.status.code(), Some(2), "{name}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--blocked-in") && stderr.contains("QQ"),
        "{stderr}"
    );
    assert_eq!(h.audit().await.len(), logged + 1, "{name}: nothing logged");
    stdout_of(cli(
        &h.backend,
        "ops",
        &["bridge", "set", "br.ams", "--not-blocked"],
    ));
    let hosts = h
        .wait_hosts("/api/5/bridges?cc=RU", |h| has(h, "br.ams"))
        .await;
    assert_eq!(hosts, ["br.ams"], "{name}");
    assert_eq!(h.audit().await[0]["after"]["blocked_in"], json!([]));

    // an agent's pushes do not undo it
    let (status, body) = h.post("/admin/v1/agents", json!({"name": "gw-ams"})).await;
    assert_eq!(status, 201, "{name}: {body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(h.push_pushed_ams(&token, 0.5).await, 201, "{name}");
    let (status, _) = h
        .set_overrides("gateways", "pushed.ams", json!({"blocked_in": ["RU"]}))
        .await;
    assert_eq!(status, 200, "{name}");
    assert_eq!(h.push_pushed_ams(&token, 0.25).await, 200, "{name}");
    assert_blocked_in(&h, "gateways", "pushed.ams", json!(["RU"])).await;
    let hosts = h
        .wait_hosts("/api/5/gateways?cc=NL", |h| has(h, "pushed.ams"))
        .await;
    assert_eq!(hosts, ["other.ams", "pushed.ams", "static.ams"], "{name}");
    assert_eq!(h.server.hosts("/api/5/gateways?cc=RU").await, ["other.ams"]);

    // cleared through the API: handed out everywhere again
    for host in ["static.ams", "pushed.ams"] {
        let (status, body) = h
            .set_overrides("gateways", host, json!({"blocked_in": []}))
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["overrides"]["blocked_in"], json!([]));
    }
    let hosts = h
        .wait_hosts("/api/5/gateways?cc=RU", |h| h.len() == 3)
        .await;
    assert_eq!(hosts, ["other.ams", "pushed.ams", "static.ams"], "{name}");
    assert_eq!(hosts_from(&h, "/api/5/gateways", IN_RU).await.len(), 3);
    assert_eq!(
        on_status_page(&h, "static.ams").await["blocked_in"],
        json!([])
    );
    assert!(actions(&h.audit().await).starts_with(&["gateway.overrides", "gateway.overrides"]));
}

async fn the_service_tells_clients_where_they_are_blocked_what_is_left(backend: Backend) {
    let name = backend.name();
    let dir = tempfile::tempdir().unwrap();
    let geoip = menshen_e2e::write_geoip(dir.path(), "city", &records());
    let key = dir.path().join("list.key");
    std::fs::write(&key, ListKey::generate_file_contents()).unwrap();
    let h = Harness::start_tweaked(backend, provider_file(), |s| {
        s.geoip_db = Some(geoip);
        s.trusted_proxies = TrustedProxies::parse("127.0.0.0/8").unwrap();
        // Each country's answer is signed over its own body.
        s.list_key_files = vec![key];
    })
    .await;
    let (cache_control, tag, flags) = service_from(&h, IN_RU).await;
    assert_eq!(
        (cache_control.as_str(), flags),
        ("no-cache", (true, true)),
        "{name}"
    );

    // one of two gateways blocked in Russia: amsterdam still has one there,
    // so the service is the same for everyone and may be cached as before
    block_in_russia(&h, "gateways", "static.ams").await;
    assert_eq!(
        service_from(&h, IN_RU).await,
        ("no-cache".into(), tag.clone(), (true, true))
    );

    // its only bridge blocked in Russia: clients there are told amsterdam
    // has none, others that it has; the answer is the client's own
    block_in_russia(&h, "bridges", "br.ams").await;
    let (cache_control, ru_tag, flags) = service_from(&h, IN_RU).await;
    assert_eq!(
        (cache_control.as_str(), flags),
        ("private, no-cache", (true, false)),
        "{name}"
    );
    let (cache_control, nl_tag, flags) = service_from(&h, IN_NL).await;
    assert_eq!(
        (cache_control.as_str(), flags),
        ("private, no-cache", (true, true)),
        "{name}"
    );
    assert_eq!(nl_tag, tag, "{name}: the same document as before elsewhere");
    assert_ne!(ru_tag, tag, "{name}");
    let (_, _, flags) = service_from(&h, "192.0.2.200").await;
    assert_eq!(
        flags,
        (true, true),
        "{name}: a client placed nowhere is told all"
    );
    // a client revalidating its own answer gets 304
    let revalidated = h
        .server
        .client
        .get(h.server.url("/api/5/service"))
        .header("x-forwarded-for", IN_RU)
        .header("if-none-match", &ru_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304, "{name}");

    // both gateways blocked too: amsterdam has nothing for Russia
    block_in_russia(&h, "gateways", "other.ams").await;
    assert_eq!(service_from(&h, IN_RU).await.2, (false, false), "{name}");
    assert_eq!(service_from(&h, IN_NL).await.2, (true, true), "{name}");
}

async fn without_geoip_the_service_stays_one_for_all(backend: Backend) {
    let name = backend.name();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("list.key");
    std::fs::write(&key, ListKey::generate_file_contents()).unwrap();
    let h = Harness::start_tweaked(backend, provider_file(), |s| {
        s.trusted_proxies = TrustedProxies::parse("127.0.0.0/8").unwrap();
        s.list_key_files = vec![key];
    })
    .await;
    let before = service_from(&h, IN_RU).await;
    block_in_russia(&h, "bridges", "br.ams").await;
    // No client can be placed in Russia: every one is told what is there.
    assert_eq!(service_from(&h, IN_RU).await, before, "{name}");
    assert_eq!(before.0, "no-cache", "{name}");
}
