//! Pushes: what they create, update, retire and let expire.

use std::time::{Duration, Instant};

use menshen::store::now_millis;
use serde_json::json;

use super::{Harness, gateway, has};
use crate::common::{Backend, on_each_backend, sorted_hosts};

on_each_backend!(
    pushes_create_update_and_retire,
    bridges_are_pushed_with_their_options_and_mark_the_location,
    silent_resources_expire_and_return_with_the_next_heartbeat,
    parallel_pushes_of_one_agent_serialise,
);

async fn pushes_create_update_and_retire(backend: Backend) {
    let name = backend.name();
    let h = Harness::start(backend, Duration::from_secs(60)).await;
    let token = h.agent("gw-ams").await;
    let before = now_millis();

    let both = json!([gateway("a.ams", 1194), gateway("b.ams", 1195)]);
    let (status, body) = h.put("gateways", Some(&token), &both).await;
    assert_eq!(status, 201, "{name}: {body}");
    assert_eq!(sorted_hosts(&body), ["a.ams", "b.ams"]);
    let seen = body[0]["last_seen_millis"].as_i64().unwrap();
    assert!(
        seen >= before && seen <= now_millis(),
        "{name}: server time, not the agent's"
    );

    let list = h
        .wait_list("/api/5/gateways", |hs| has(hs, "a.ams") && has(hs, "b.ams"))
        .await;
    assert_eq!(
        sorted_hosts(&list),
        ["a.ams", "b.ams", "static.ams"],
        "{name}"
    );

    // The same set again: nothing new, 200.
    let (status, _) = h.put("gateways", Some(&token), &both).await;
    assert_eq!(status, 200, "{name}");

    // A changed load and a missing b: b is retired, a updated.
    let mut a = gateway("a.ams", 1194);
    a["load"] = json!(0.75);
    a["last_seen_millis"] = json!(1);
    let (status, body) = h.put("gateways", Some(&token), &json!([a])).await;
    assert_eq!(status, 200, "{name}");
    assert_eq!(sorted_hosts(&body), ["a.ams"]);
    assert!(body[0]["last_seen_millis"].as_i64().unwrap() > 1);
    let list = h.wait_list("/api/5/gateways", |hs| !has(hs, "b.ams")).await;
    assert_eq!(sorted_hosts(&list), ["a.ams", "static.ams"], "{name}");
    let a = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["host"] == "a.ams")
        .unwrap();
    assert_eq!(a["load"], 0.75);

    // An empty set withdraws everything of that kind.
    let (status, body) = h.put("gateways", Some(&token), &json!([])).await;
    assert_eq!((status, body), (200, json!([])));
    let list = h
        .wait_list("/api/5/gateways", |hs| hs == ["static.ams"])
        .await;
    assert_eq!(sorted_hosts(&list), ["static.ams"], "{name}");
}

async fn bridges_are_pushed_with_their_options_and_mark_the_location(backend: Backend) {
    let name = backend.name();
    let h = Harness::start(backend, Duration::from_secs(60)).await;
    let token = h.agent("br-paris").await;
    let service = h.server.json("/api/5/service").await;
    assert!(service["locations"]["paris"].get("has_bridges").is_none());

    let bridge = json!({"host": "br.paris", "ip_addr": "192.0.2.50", "location": "Paris",
        "port": 443, "transport": "tcp", "type": "obfs4", "healthy": true,
        "options": {"cert": "xvW97fMqMiBmgTy/jP5CvFGq8bqlKaPcL7xnKBnCl3n2EmlpTmSG8IMNvEsCYqkzYPsvvQ", "iatMode": "0"}});
    let (status, body) = h.put("bridges", Some(&token), &json!([bridge])).await;
    assert_eq!(status, 201, "{name}: {body}");
    // the location label is stored as the inventory spells it
    assert_eq!(body[0]["location"], "paris");
    let list = h.wait_list("/api/5/bridges", |hs| hs == ["br.paris"]).await;
    assert_eq!(
        list[0]["options"],
        json!({"cert": "xvW97fMqMiBmgTy/jP5CvFGq8bqlKaPcL7xnKBnCl3n2EmlpTmSG8IMNvEsCYqkzYPsvvQ", "iatMode": "0"}),
        "{name}"
    );
    let service = h.server.json("/api/5/service").await;
    assert_eq!(service["locations"]["paris"]["has_bridges"], true, "{name}");

    // Unhealthy: out of the lists, and the location has no bridge.
    let mut sick = bridge.clone();
    sick["healthy"] = json!(false);
    let (status, _) = h.put("bridges", Some(&token), &json!([sick])).await;
    assert_eq!(status, 200);
    let list = h.wait_list("/api/5/bridges", |hs| hs.is_empty()).await;
    assert_eq!(list, json!([]), "{name}");
    let service = h.server.json("/api/5/service").await;
    assert!(
        service["locations"]["paris"].get("has_bridges").is_none(),
        "{name}"
    );
}

async fn silent_resources_expire_and_return_with_the_next_heartbeat(backend: Backend) {
    let name = backend.name();
    let ttl = Duration::from_millis(1500);
    let h = Harness::start(backend, ttl).await;
    let token = h.agent("gw-ams").await;
    // Before the push: menshen stamps it on receipt, and answers only
    // once its snapshot includes it.
    let pushed_at = Instant::now();
    let (status, _) = h
        .put("gateways", Some(&token), &json!([gateway("a.ams", 1194)]))
        .await;
    assert_eq!(status, 201);
    h.wait_list("/api/5/gateways", |hs| has(hs, "a.ams")).await;

    // Gone within a second of the TTL running out.
    let list = h.wait_list("/api/5/gateways", |hs| !has(hs, "a.ams")).await;
    let gone_after = pushed_at.elapsed();
    assert!(!has(&sorted_hosts(&list), "a.ams"), "{name}");
    assert!(
        gone_after >= ttl - Duration::from_millis(100),
        "{name}: gone after {gone_after:?}"
    );
    assert!(
        gone_after <= ttl + Duration::from_secs(1),
        "{name}: gone after {gone_after:?}"
    );
    // Hand-defined gateways do not expire.
    assert!(has(&sorted_hosts(&list), "static.ams"));

    let (status, _) = h
        .put("gateways", Some(&token), &json!([gateway("a.ams", 1194)]))
        .await;
    assert_eq!(status, 200);
    let list = h.wait_list("/api/5/gateways", |hs| has(hs, "a.ams")).await;
    assert!(
        has(&sorted_hosts(&list), "a.ams"),
        "{name}: back with the heartbeat"
    );
}

/// Parallel pushes of one agent (a push retried while its first try is
/// still running) are stored one after the other: a host the agent itself
/// just created is never "another agent's".
async fn parallel_pushes_of_one_agent_serialise(backend: Backend) {
    const AGENTS: usize = 8;
    const PARALLEL: usize = 8;
    const ROUNDS: usize = 4;
    let name = backend.name();
    let h = Harness::start(backend, Duration::from_secs(60)).await;
    let mut tokens = Vec::new();
    for a in 0..AGENTS {
        tokens.push(h.agent(&format!("race-{a}")).await);
    }
    let h = std::sync::Arc::new(h);
    for round in 0..ROUNDS {
        let mut tasks = tokio::task::JoinSet::new();
        for (a, token) in tokens.iter().enumerate() {
            // every round, hosts none of the agents had before
            let body = json!([
                gateway(&format!("r{round}-a{a}-1.ams"), 1194),
                gateway(&format!("r{round}-a{a}-2.ams"), 1195),
            ]);
            for _ in 0..PARALLEL {
                let (h, token, body) = (h.clone(), token.clone(), body.clone());
                tasks.spawn(async move { h.put("gateways", Some(&token), &body).await });
            }
        }
        let mut statuses = Vec::new();
        while let Some(result) = tasks.join_next().await {
            let (status, body) = result.unwrap();
            assert!(
                status == 200 || status == 201,
                "{name}: round {round}: {status} {body}"
            );
            statuses.push(status);
        }
        // one of each agent's parallel pushes created its hosts
        let created = statuses.iter().filter(|s| **s == 201).count();
        assert_eq!(created, AGENTS, "{name}: round {round}");
    }
    let store = h.store().await;
    let inventory = store.load_inventory().await.unwrap();
    let mut pushed: Vec<(String, String)> = inventory
        .resources
        .iter()
        .filter(|r| r.origin == "agent")
        .map(|r| (r.agent.clone().unwrap(), r.host.clone()))
        .collect();
    pushed.sort();
    let last = ROUNDS - 1;
    let mut expected: Vec<(String, String)> = (0..AGENTS)
        .flat_map(|a| [1, 2].map(|n| (format!("race-{a}"), format!("r{last}-a{a}-{n}.ams"))))
        .collect();
    expected.sort();
    assert_eq!(pushed, expected, "{name}");
    store.close().await;
}
