//! Filters, refusals of bad parameters, and ETags.

use serde_json::Value;

use crate::common::{
    Backend, CONTRACT_FILE, TestServer, assert_content_type, assert_says, get_json,
    on_each_backend, sorted_hosts,
};

on_each_backend!(
    filters_narrow_the_lists,
    etags_answer_if_none_match_with_304
);

async fn filters_narrow_the_lists(backend: Backend) {
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    let gw = |q: &str| server.url(&format!("/api/5/gateways?{q}"));
    let br = |q: &str| server.url(&format!("/api/5/bridges?{q}"));
    let cases = [
        (gw("tr=tcp"), vec!["gw1-tcp.ams"]),
        (gw("tr=UDP"), vec!["gw1.ams"]),
        (gw("port=1194"), vec!["gw1.ams"]),
        (gw("port=443&tr=tcp"), vec!["gw1-tcp.ams"]),
        (gw("port=443&tr=udp"), vec![]),
        (gw("loc=AmSterdam"), vec!["gw1-tcp.ams", "gw1.ams"]),
        (gw("loc=montreal"), vec![]),
        (gw("loc=montreal&experimental=1"), vec!["gw1.mtl"]),
        (gw("cc=de&loc=&port=&tr="), vec!["gw1-tcp.ams", "gw1.ams"]),
        (gw("cc=NL"), vec!["gw1-tcp.ams", "gw1.ams"]),
        (br("type=obfs4-hop"), vec!["br2.ams"]),
        (br("type=OBFS4"), vec!["br1.ams"]),
        (br("tr=kcp"), vec!["br2.ams"]),
        (br("tr=udp"), vec![]),
        (br("port=443"), vec!["br1.ams"]),
        (br("loc=amsterdam&type=obfs4"), vec!["br1.ams"]),
    ];
    for (url, expected) in cases {
        let list = get_json(&url, 200).await;
        assert_eq!(sorted_hosts(&list), expected, "{url} on {}", backend.name());
    }
}

#[tokio::test]
async fn bad_requests_get_json_errors_naming_the_parameter() {
    let backend = Backend::sqlite();
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    for (path, parameter) in [
        ("/api/5/gateways?tr=carrier-pigeon", "tr"),
        ("/api/5/gateways?port=99999", "port"),
        ("/api/5/gateways?port=http", "port"),
        ("/api/5/gateways?cc=NOTACOUNTRY", "cc"),
        ("/api/5/gateways?cc=ZZ", "cc"),
        ("/api/5/gateways?loc=atlantis", "loc"),
        ("/api/5/gateways?tr=kcp", "tr"),
        ("/api/5/gateways?tr=tcp&tr=udp", "tr"),
        ("/api/5/bridges?type=carrier-pigeon", "type"),
        ("/api/5/bridges?tr=carrier-pigeon", "tr"),
        ("/api/5/bridges?experimental=perhaps", "experimental"),
    ] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        assert_content_type(&response, "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_parameter", "{path}");
        assert_eq!(body["parameter"], parameter, "{path}");
        assert_says(&body, parameter);
    }

    let body = get_json(&server.url("/api/5/nothing-here"), 404).await;
    assert_eq!(body["error"], "not_found");
    let response = reqwest::Client::new()
        .delete(server.url("/api/5/gateways"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
}

async fn etags_answer_if_none_match_with_304(backend: Backend) {
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    let client = &server.client;
    for path in [
        "/provider.json",
        "/api/5/service",
        "/api/5/gateways",
        "/api/5/gateways?tr=udp",
        "/api/5/bridges",
    ] {
        let first = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(first.status(), 200);
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

        let again = server.revalidate(path, &etag).await;
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
        assert!(again.bytes().await.unwrap().is_empty());

        let other = server.revalidate(path, "\"something-else\"").await;
        assert_eq!(other.status(), 200, "{path}");
    }
    // Different bytes, different tags.
    let all = client
        .get(server.url("/api/5/gateways"))
        .send()
        .await
        .unwrap();
    let udp = client
        .get(server.url("/api/5/gateways?tr=udp"))
        .send()
        .await
        .unwrap();
    assert_ne!(all.headers()["etag"], udp.headers()["etag"]);
}
