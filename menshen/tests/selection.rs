//! Each client gets the right list: nearest first (from `cc` or from its
//! address through a GeoIP database), load spread within a location.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use common::{Backend, ProviderFile, TestServer, get_json};
use menshen::geo::client_ip::TrustedProxies;
use menshen::geo::geoip::GeoIp;
use menshen_e2e::http::json_of;
use serde_json::{Value, json};

/// Six locations around the world, one gateway each, plus a location with
/// three gateways of different load for the spreading tests.
const CERT: &str = "xvW97fMqMiBmgTy/jP5CvFGq8bqlKaPcL7xnKBnCl3n2EmlpTmSG8IMNvEsCYqkzYPsvvQ";

fn world_file() -> ProviderFile {
    let places = [
        ("amsterdam", "ams", "192.0.2.1"),
        ("paris", "par", "192.0.2.2"),
        ("montreal", "mtl", "192.0.2.3"),
        ("miami", "mia", "192.0.2.4"),
        ("seattle", "sea", "192.0.2.5"),
        ("tokyo", "tyo", "192.0.2.6"),
    ];
    let mut file = ProviderFile::new();
    for (label, _, _) in places {
        file = file.place(label);
    }
    for (label, host, ip_addr) in places {
        file = file.gateway(host, ip_addr, label);
    }
    file.bridge("br-ams", "192.0.2.11", "amsterdam", CERT)
        .bridge("br-tyo", "192.0.2.16", "tokyo", CERT)
}

/// Addresses standing for clients in a few places. 127.0.0.0/8 (the test's
/// own peer address) is placed in Japan, so that a header that is wrongly
/// believed shows up as a different first location.
fn records() -> Value {
    json!([
        {"network": "203.0.113.0/26", "country": "NL", "lat": 52.1, "lon": 5.1},
        {"network": "203.0.113.64/26", "country": "BR", "lat": -23.5, "lon": -46.6},
        {"network": "203.0.113.128/26", "country": "AU", "lat": -33.9, "lon": 151.2},
        {"network": "2001:db8::/32", "country": "CA", "lat": 45.4, "lon": -75.7},
        {"network": "127.0.0.0/8", "country": "JP", "lat": 35.7, "lon": 139.7},
    ])
}

fn first_host(list: &Value) -> &str {
    list[0]["host"].as_str().expect("a first host")
}

/// The hosts of a client list, in the order served.
fn hosts_in_order(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|g| g["host"].as_str().unwrap())
        .collect()
}

/// The gateway list at `/api/5/gateways{query}` for a request carrying
/// `header: value` (an address a proxy names).
async fn gateways_seen_from(
    client: &reqwest::Client,
    server: &TestServer,
    query: &str,
    header: &str,
    value: &str,
) -> Value {
    json_of(
        client
            .get(server.url(&format!("/api/5/gateways{query}")))
            .header(header, value),
    )
    .await
}

async fn world(
    backend: &Backend,
    tweak: impl FnOnce(&mut menshen::config::Settings),
) -> TestServer {
    let mut settings = backend.serving(world_file());
    tweak(&mut settings);
    TestServer::start_with(settings).await
}

/// [`world`] placing clients by their address through `geoip`, believing
/// the proxies in `trusted` (a CIDR).
async fn world_placed_by(backend: &Backend, geoip: &Path, trusted: &str) -> TestServer {
    world(backend, |s| {
        s.geoip_db = Some(geoip.to_owned());
        s.trusted_proxies = TrustedProxies::parse(trusted).unwrap();
    })
    .await
}

#[tokio::test]
async fn cc_puts_the_nearest_location_first() {
    let backend = Backend::sqlite();
    let server = world(&backend, |_| {}).await;
    for (cc, first) in [
        ("NL", "ams"),
        ("fr", "par"),
        ("CA", "mtl"),
        ("BR", "mia"),
        ("JP", "tyo"),
        ("AU", "tyo"),
        ("de", "ams"),
        // Washington is nearer Montreal than Miami
        ("US", "mtl"),
    ] {
        let list = get_json(&server.url(&format!("/api/5/gateways?cc={cc}")), 200).await;
        assert_eq!(first_host(&list), first, "cc={cc}: {list}");
        assert_eq!(list.as_array().unwrap().len(), 6);
    }
    // The whole order for a Dutch client: by distance from Amsterdam.
    let list = get_json(&server.url("/api/5/gateways?cc=NL"), 200).await;
    assert_eq!(
        hosts_in_order(&list),
        ["ams", "par", "mtl", "mia", "sea", "tyo"]
    );
    // Bridges follow the same rules.
    let bridges = get_json(&server.url("/api/5/bridges?cc=JP"), 200).await;
    assert_eq!(first_host(&bridges), "br-tyo");
    let bridges = get_json(&server.url("/api/5/bridges?cc=NL"), 200).await;
    assert_eq!(first_host(&bridges), "br-ams");
}

#[tokio::test]
async fn both_geoip_layouts_are_read() {
    let dir = tempfile::tempdir().unwrap();
    for layout in ["city", "flat"] {
        let db = GeoIp::open(&menshen_e2e::write_geoip(dir.path(), layout, &records())).unwrap();
        let found = db
            .lookup("203.0.113.70".parse::<IpAddr>().unwrap())
            .unwrap();
        assert_eq!(found.country, Some("BR"), "{layout}");
        let p = found.position.unwrap();
        assert_eq!((p.lat, p.lon), (-23.5, -46.6), "{layout}");
        let found = db.lookup("2001:db8::1".parse::<IpAddr>().unwrap()).unwrap();
        assert_eq!(found.country, Some("CA"), "{layout}");
        assert!(
            db.lookup("198.51.100.1".parse::<IpAddr>().unwrap())
                .is_none()
        );
    }
    let err = GeoIp::open(&dir.path().join("missing.mmdb")).unwrap_err();
    assert!(err.to_string().contains("missing.mmdb"), "{err}");
}

#[tokio::test]
async fn the_address_places_the_client_through_a_trusted_proxy_only() {
    let dir = tempfile::tempdir().unwrap();
    for layout in ["city", "flat"] {
        let geoip = menshen_e2e::write_geoip(dir.path(), layout, &records());

        // Behind a trusted proxy (the tests' peer is 127.0.0.1).
        let backend = Backend::sqlite();
        let server = world_placed_by(&backend, &geoip, "127.0.0.0/8").await;
        let client = reqwest::Client::new();
        for (header, value, first) in [
            ("x-forwarded-for", "203.0.113.9", "ams"),
            ("x-forwarded-for", "198.51.100.7, 203.0.113.70", "mia"),
            ("x-forwarded-for", "203.0.113.130", "tyo"),
            ("x-real-ip", "2001:db8::5", "mtl"),
        ] {
            let list = gateways_seen_from(&client, &server, "", header, value).await;
            assert_eq!(first_host(&list), first, "{layout}: {header}: {value}");
        }
        // cc wins over the address.
        let list = gateways_seen_from(
            &client,
            &server,
            "?cc=FR",
            "x-forwarded-for",
            "203.0.113.130",
        )
        .await;
        assert_eq!(first_host(&list), "par", "{layout}");
        server.stop().await.unwrap();

        // The same headers from a peer that is not trusted are ignored: the
        // peer's own address (placed in Japan) decides.
        let backend = Backend::sqlite();
        let server = world_placed_by(&backend, &geoip, "10.0.0.0/8").await;
        for (header, value) in [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
        ] {
            let list = gateways_seen_from(&client, &server, "", header, value).await;
            assert_eq!(first_host(&list), "tyo", "{layout}: untrusted {header}");
        }
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn without_a_position_nothing_fails() {
    let backend = Backend::sqlite();
    let server = world(&backend, |_| {}).await;
    let list = get_json(&server.url("/api/5/gateways"), 200).await;
    assert_eq!(list.as_array().unwrap().len(), 6);
    let config = reqwest::get(server.url("/api/5/openvpn/config"))
        .await
        .unwrap();
    assert_eq!(config.status(), 200);
}

fn crowded_file() -> ProviderFile {
    ProviderFile::new()
        .location("paris", "FR")
        .with("lat = 48.86\nlon = 2.35")
        .gateway("light", "192.0.2.1", "paris")
        .with("load = 0.1")
        .gateway("heavy", "192.0.2.2", "paris")
        .with("load = 0.8")
        .gateway("full", "192.0.2.3", "paris")
        .with("load = 0.99\noverloaded = true")
}

#[tokio::test]
async fn load_spreads_over_requests_and_overloaded_is_never_first() {
    let backend = Backend::sqlite();
    let mut settings = backend.serving(crowded_file());
    // A fixed seed: every request draws its own order, and the counts below
    // are the same on every run.
    settings.order_seed = Some(20261126);
    let server = TestServer::start_with(settings).await;

    let mut first: HashMap<String, u32> = HashMap::new();
    let mut distinct = std::collections::HashSet::new();
    for _ in 0..1000 {
        let response = reqwest::get(server.url("/api/5/gateways?cc=FR"))
            .await
            .unwrap();
        distinct.insert(response.headers()["etag"].to_str().unwrap().to_owned());
        let list: Value = response.json().await.unwrap();
        let hosts = hosts_in_order(&list);
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[2], "full", "overloaded comes last: {hosts:?}");
        *first.entry(hosts[0].to_owned()).or_default() += 1;
    }
    let light = first.get("light").copied().unwrap_or(0);
    let heavy = first.get("heavy").copied().unwrap_or(0);
    assert_eq!(light + heavy, 1000);
    assert!(
        light > 3 * heavy,
        "light first {light} times, heavy {heavy}"
    );
    assert!(heavy > 0, "the heavier gateway still gets some clients");
    // Every order of the same three gateways has the same tag.
    assert_eq!(distinct.len(), 1);
}

#[tokio::test]
async fn every_order_of_the_same_set_revalidates_with_304() {
    let backend = Backend::sqlite();
    let settings = backend.serving(crowded_file());
    let server = TestServer::start_with(settings).await;
    let client = reqwest::Client::new();

    let mut orders = std::collections::HashSet::new();
    let mut etags = std::collections::HashSet::new();
    for _ in 0..100 {
        let r = client
            .get(server.url("/api/5/gateways?cc=FR"))
            .send()
            .await
            .unwrap();
        etags.insert(r.headers()["etag"].to_str().unwrap().to_owned());
        orders.insert(r.text().await.unwrap());
    }
    assert!(orders.len() >= 2, "requests draw different orders");
    assert_eq!(etags.len(), 1, "but the set has one tag");
    let etag = etags.into_iter().next().unwrap();
    // Whichever order a client holds, and wherever it is, it is current.
    for query in ["cc=FR", "cc=JP", "", "tr=udp"] {
        for _ in 0..20 {
            let r = server
                .revalidate(&format!("/api/5/gateways?{query}"), &etag)
                .await;
            assert_eq!(r.status(), 304, "{query}");
            assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
        }
    }
    // A smaller set is another answer.
    let r = server
        .revalidate("/api/5/gateways?cc=FR&tr=tcp", &etag)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "[]");
}

#[tokio::test]
async fn a_port_fill_leaves_the_answers_as_they_were() {
    let backend = Backend::sqlite();
    let server = world(&backend, |_| {}).await;
    let client = reqwest::Client::new();
    let etag = server.etag("/api/5/gateways?cc=NL").await;
    for port in 1..=2_000u32 {
        let r = client
            .get(server.url(&format!("/api/5/gateways?port={port}&cc=NL")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let list: Value = r.json().await.unwrap();
        let expected = if port == 1194 { 6 } else { 0 };
        assert_eq!(list.as_array().unwrap().len(), expected, "port={port}");
    }
    let list = get_json(&server.url("/api/5/gateways?cc=NL"), 200).await;
    assert_eq!(first_host(&list), "ams");
    assert_eq!(server.etag("/api/5/gateways?cc=NL").await, etag);
}

/// `byload=true` (in the clients' generated API): least loaded first,
/// the same order every time, overloaded last.
#[tokio::test]
async fn byload_orders_by_load_alone() {
    let backend = Backend::sqlite();
    // A lighter gateway far away: byload ignores geography.
    let file = crowded_file()
        .location("tokyo", "JP")
        .with("lat = 35.68\nlon = 139.69")
        .gateway("far", "192.0.2.9", "tokyo")
        .with("load = 0.05");
    let settings = backend.serving(file);
    let server = TestServer::start_with(settings).await;
    for query in ["byload=true&cc=FR", "byload=1", "byload=YES&tr=udp"] {
        for _ in 0..20 {
            let list = get_json(&server.url(&format!("/api/5/gateways?{query}")), 200).await;
            assert_eq!(
                hosts_in_order(&list),
                ["far", "light", "heavy", "full"],
                "{query}"
            );
        }
    }
    // Without it, a French client gets Paris first.
    let list = get_json(&server.url("/api/5/gateways?cc=FR&byload=false"), 200).await;
    assert_ne!(first_host(&list), "far");
    let bad = get_json(&server.url("/api/5/gateways?byload=sometimes"), 400).await;
    assert_eq!(bad["parameter"], "byload");
}
