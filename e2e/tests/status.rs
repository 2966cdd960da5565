//! The status page in a real browser (headless Chromium, Debian
//! `chromium`): what it shows is checked against the inventory, and a
//! screenshot is saved.

use std::path::{Path, PathBuf};
use std::time::Duration;

use menshen_e2e::http::{find_host, get_json, get_json_as};
use menshen_e2e::peers::{chromium_dom, chromium_screenshot};
use menshen_e2e::{Menshen, PATIENCE, eventually, menshen_cli};
use serde_json::json;

fn cli(args: &[&str]) -> String {
    menshen_cli(args).trim().to_owned()
}

/// Where screenshots go: beside the build, so they survive the test.
fn screenshot_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(Path::parent).unwrap();
    target.join(name)
}

async fn push(url: &str, token: &str, host: &str, load: f64) {
    let response = reqwest::Client::new()
        .put(format!("{url}/api/5/agent/gateways"))
        .bearer_auth(token)
        .json(
            &json!([{"host": host, "ip_addr": "192.0.2.99", "location": "paris",
                       "port": 1194, "transport": "udp", "type": "openvpn",
                       "load": load, "healthy": true}]),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

// Two workers: the heartbeats run while the browser blocks the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let config = menshen_e2e::provider::example();
    let menshen = Menshen::start(&[
        "--data-dir",
        data,
        "--config",
        config.to_str().unwrap(),
        "--resource-ttl",
        "2s",
    ]);
    let url = menshen.url.clone();

    // One agent gateway that goes stale, one that stays live.
    let stale_agent = cli(&["agent", "create", "paris-old", "--data-dir", data]);
    push(&url, &stale_agent, "old.paris.example.org", 0.2).await;
    let viewer = cli(&[
        "admin",
        "token",
        "--subject",
        "status-test",
        "--role",
        "viewer",
        "--data-dir",
        data,
    ]);
    // Not heard from within the TTL: stale, as the admin API tells.
    eventually("old.paris.example.org to go stale", PATIENCE, || async {
        let gateways = get_json_as(&format!("{url}/admin/v1/gateways"), &viewer).await;
        let old = find_host(&gateways, "old.paris.example.org").cloned();
        match old {
            Some(old) if old["status"] == "stale" => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let live_agent = cli(&["agent", "create", "paris-new", "--data-dir", data]);
    push(&url, &live_agent, "new.paris.example.org", 0.75).await;
    // It stays live as an agent keeps it: heartbeats while the browser
    // starts, which on a busy machine takes longer than the TTL.
    let heartbeats = {
        let (url, token) = (url.clone(), live_agent.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                push(&url, &token, "new.paris.example.org", 0.75).await;
            }
        })
    };

    // The token travels in the fragment, which the browser never sends.
    let page = format!("{url}/status#token={viewer}");
    let dom = chromium_dom(&page, 4000);
    heartbeats.abort();

    // Every location, every resource, with its status.
    for label in ["amsterdam", "paris", "montreal"] {
        assert!(
            dom.contains(&format!("data-location=\"{label}\"")),
            "{label} in\n{dom}"
        );
    }
    for (host, status) in [
        ("gw1.amsterdam.example.org", "hand-defined"),
        ("gw1-tcp.amsterdam.example.org", "hand-defined"),
        ("gw1.paris.example.org", "hand-defined"),
        ("br1.paris.example.org", "hand-defined"),
        ("gw1.montreal.example.org", "hand-defined"),
        ("new.paris.example.org", "live"),
        ("old.paris.example.org", "stale"),
    ] {
        assert!(
            dom.contains(&format!("data-host=\"{host}\" data-status=\"{status}\"")),
            "{host} {status} in\n{dom}"
        );
    }
    // Load as a bar, last seen as a relative time, counts in the summary.
    assert!(dom.contains("width:75%"), "{dom}");
    assert!(dom.contains(" s ago"), "{dom}");
    assert!(dom.contains("data-status=\"live\""));
    assert!(dom.contains("<div id=\"error\"></div>"), "no error shown");

    let shot = screenshot_path("menshen-status.png");
    chromium_screenshot(&page, 4000, &shot);
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    eprintln!("screenshot: {}", shot.display());

    // Without a token the page asks for one and shows nothing.
    let dom = chromium_dom(&format!("{url}/status"), 3000);
    assert!(
        dom.contains("<div id=\"error\">A viewer or admin token is needed"),
        "{dom}"
    );
    assert!(!dom.contains("data-host="));
}

#[tokio::test]
async fn a_public_summary_shows_counts_but_no_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let config = menshen_e2e::provider::example();
    let menshen = Menshen::start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--public-status",
    ]);
    let dom = chromium_dom(&format!("{}/status", menshen.url), 3000);
    assert!(dom.contains("public summary"), "{dom}");
    assert!(dom.contains("data-location=\"paris\""), "{dom}");
    assert!(dom.contains("class=\"count\""), "{dom}");
    assert!(
        !dom.contains("example.org"),
        "no hosts in the summary:\n{dom}"
    );
    assert!(!dom.contains("192.0.2."), "no addresses in the summary");

    // The data behind it, and the full view still needs a token.
    let data = get_json(&format!("{}/status/data", menshen.url)).await;
    assert_eq!(data["public"], true);
    assert_eq!(data["summary"]["hand-defined"], 5);
    let response = reqwest::Client::new()
        .get(format!("{}/status/data", menshen.url))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
