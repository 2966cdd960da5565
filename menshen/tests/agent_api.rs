//! Agents pushing gateways and bridges, over real HTTP, on every backend.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, backends, get_json};
use menshen::auth::SigningKey;
use menshen::config::Settings;
use menshen::store::{Store, now_millis};
use serde_json::{Value, json};

const FILE: &str = r#"
[provider]
domain = "vpn.test"
api_uri = "https://api.vpn.test"

[locations.amsterdam]
display_name = "Amsterdam"
country_code = "NL"
lat = 52.37
lon = 4.89
timezone = 1

[locations.paris]
display_name = "Paris"
country_code = "FR"

[[gateway]]
host = "static.ams"
ip_addr = "192.0.2.1"
location = "amsterdam"
port = 1194
transport = "udp"
"#;

struct Harness {
    backend: Backend,
    server: TestServer,
    key: SigningKey,
    client: reqwest::Client,
}

impl Harness {
    async fn start(backend: Backend, ttl: Duration) -> Harness {
        Self::start_with(backend, |s| s.resource_ttl = ttl).await
    }

    async fn start_with(backend: Backend, change: impl FnOnce(&mut Settings)) -> Harness {
        let mut settings = backend.settings();
        change(&mut settings);
        // the hand-defined gateway at a public address where only those go
        let file = if settings.allow_private_addresses {
            FILE.to_owned()
        } else {
            FILE.replace("192.0.2.1", "93.184.215.1")
        };
        let path = backend.data_dir().join("provider.toml");
        std::fs::write(&path, file).unwrap();
        settings.provider_file = Some(path);
        let key = SigningKey::load(&settings.signing_key, &settings.data_dir).unwrap();
        let server = TestServer::start_with(settings).await;
        Harness {
            backend,
            server,
            key,
            client: reqwest::Client::new(),
        }
    }

    async fn store(&self) -> Store {
        Store::connect(&self.backend.engine()).await.unwrap()
    }

    /// Creates an agent and returns its token.
    async fn agent(&self, name: &str) -> String {
        let store = self.store().await;
        let token_id = menshen::auth::random_id(16);
        store
            .create_agent(name, &token_id, now_millis())
            .await
            .unwrap();
        store.close().await;
        self.key
            .mint_agent_token(name, &token_id, now_millis() / 1000, 3600)
    }

    async fn put(&self, what: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self
            .client
            .put(self.server.url(&format!("/api/5/agent/{what}")))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Polls a client list until `pred` holds (snapshots are rebuilt
    /// asynchronously), returning the last list seen.
    async fn wait_list(&self, path: &str, pred: impl Fn(&[&str]) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let list = get_json(&self.server.url(path), 200).await;
            let hosts: Vec<&str> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["host"].as_str().unwrap())
                .collect();
            if pred(&hosts) || Instant::now() > deadline {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn gateway(host: &str, port: u16) -> Value {
    json!({"host": host, "ip_addr": "198.51.100.7", "location": "amsterdam", "port": port,
           "transport": "udp", "type": "openvpn", "load": 0.25, "healthy": true})
}

/// The hosts of a list, sorted (the order is the business of other tests).
fn hosts(list: &Value) -> Vec<&str> {
    let mut hosts: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["host"].as_str().unwrap())
        .collect();
    hosts.sort();
    hosts
}

#[tokio::test]
async fn pushes_create_update_and_retire() {
    for backend in backends().await {
        let name = backend.name();
        let h = Harness::start(backend, Duration::from_secs(60)).await;
        let token = h.agent("gw-ams").await;
        let before = now_millis();

        let (status, body) = h
            .put(
                "gateways",
                Some(&token),
                &json!([gateway("a.ams", 1194), gateway("b.ams", 1195)]),
            )
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(hosts(&body), ["a.ams", "b.ams"]);
        let seen = body[0]["last_seen_millis"].as_i64().unwrap();
        assert!(
            seen >= before && seen <= now_millis(),
            "{name}: server time, not the agent's"
        );

        let list = h
            .wait_list("/api/5/gateways", |hs| {
                hs.contains(&"a.ams") && hs.contains(&"b.ams")
            })
            .await;
        assert_eq!(hosts(&list), ["a.ams", "b.ams", "static.ams"], "{name}");

        // The same set again: nothing new, 200.
        let (status, _) = h
            .put(
                "gateways",
                Some(&token),
                &json!([gateway("a.ams", 1194), gateway("b.ams", 1195)]),
            )
            .await;
        assert_eq!(status, 200, "{name}");

        // A changed load and a missing b: b is retired, a updated.
        let mut a = gateway("a.ams", 1194);
        a["load"] = json!(0.75);
        a["last_seen_millis"] = json!(1);
        let (status, body) = h.put("gateways", Some(&token), &json!([a])).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(hosts(&body), ["a.ams"]);
        assert!(body[0]["last_seen_millis"].as_i64().unwrap() > 1);
        let list = h
            .wait_list("/api/5/gateways", |hs| !hs.contains(&"b.ams"))
            .await;
        assert_eq!(hosts(&list), ["a.ams", "static.ams"], "{name}");
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
        assert_eq!(hosts(&list), ["static.ams"], "{name}");
    }
}

#[tokio::test]
async fn bridges_are_pushed_with_their_options_and_mark_the_location() {
    for backend in backends().await {
        let name = backend.name();
        let h = Harness::start(backend, Duration::from_secs(60)).await;
        let token = h.agent("br-paris").await;
        let service = get_json(&h.server.url("/api/5/service"), 200).await;
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
        let service = get_json(&h.server.url("/api/5/service"), 200).await;
        assert_eq!(service["locations"]["paris"]["has_bridges"], true, "{name}");

        // Unhealthy: out of the lists, and the location has no bridge.
        let mut sick = bridge.clone();
        sick["healthy"] = json!(false);
        let (status, _) = h.put("bridges", Some(&token), &json!([sick])).await;
        assert_eq!(status, 200);
        let list = h.wait_list("/api/5/bridges", |hs| hs.is_empty()).await;
        assert_eq!(list, json!([]), "{name}");
        let service = get_json(&h.server.url("/api/5/service"), 200).await;
        assert!(
            service["locations"]["paris"].get("has_bridges").is_none(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn bad_tokens_get_401() {
    for backend in backends().await {
        let name = backend.name();
        let h = Harness::start(backend, Duration::from_secs(60)).await;
        let token = h.agent("gw-ams").await;
        let now = now_millis() / 1000;
        let forged = SigningKey::from_bytes(&[9u8; 32]).mint_agent_token("gw-ams", "x", now, 3600);
        let expired = h.key.mint_agent_token("gw-ams", "x", now - 7200, 3600);
        let unknown = h.key.mint_agent_token("nobody", "x", now, 3600);
        let b64 = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(
                r#"{{"iss":"menshen","aud":"menshen-agent","sub":"gw-ams","jti":"x","iat":{now},"exp":{}}}"#,
                now + 3600
            ))
        );
        // Signed with the right key, but for another audience.
        let wrong_audience = {
            use base64::Engine;
            let claims = json!({"iss": "menshen", "aud": "menshen-admin", "sub": "gw-ams",
                                "jti": "x", "iat": now, "exp": now + 3600});
            let signing_input = format!(
                "{}.{}",
                b64(r#"{"alg":"HS256","typ":"JWT"}"#),
                b64(&claims.to_string())
            );
            let secret = base64::engine::general_purpose::STANDARD
                .decode(
                    std::fs::read_to_string(h.backend.data_dir().join("signing.key"))
                        .unwrap()
                        .trim(),
                )
                .unwrap();
            let mac = hmac_sha256(&secret, signing_input.as_bytes());
            format!(
                "{signing_input}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
            )
        };
        let body = json!([gateway("a.ams", 1194)]);
        for (label, t) in [
            ("wrong audience", Some(wrong_audience.as_str())),
            ("forged", Some(forged.as_str())),
            ("expired", Some(expired.as_str())),
            ("unknown agent", Some(unknown.as_str())),
            ("alg none", Some(none.as_str())),
            ("garbage", Some("garbage")),
            ("missing", None),
        ] {
            let (status, body) = h.put("gateways", t, &body).await;
            assert_eq!(status, 401, "{name}: {label}: {body}");
            assert_eq!(body["error"], "unauthorized", "{label}");
        }
        // Client lists have nothing from these attempts.
        assert_eq!(
            hosts(&get_json(&h.server.url("/api/5/gateways"), 200).await),
            ["static.ams"]
        );

        // Revoked: refused, and what it had pushed leaves the lists.
        let (status, _) = h.put("gateways", Some(&token), &body).await;
        assert_eq!(status, 201);
        h.wait_list("/api/5/gateways", |hs| hs.contains(&"a.ams"))
            .await;
        let store = h.store().await;
        store.revoke_agent("gw-ams", now_millis()).await.unwrap();
        store.close().await;
        let (status, _) = h.put("gateways", Some(&token), &body).await;
        assert_eq!(status, 401, "{name}: revoked");
        // On SQLite another process's change is seen at the periodic reload;
        // a TTL-free check is enough here: the store no longer lists it.
        let store = h.store().await;
        let inventory = store.load_inventory().await.unwrap();
        assert!(
            inventory.resources.iter().all(|r| r.host != "a.ams"),
            "{name}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn an_agent_cannot_take_another_agents_or_a_hand_defined_host() {
    for backend in backends().await {
        let name = backend.name();
        let h = Harness::start(backend, Duration::from_secs(60)).await;
        let first = h.agent("first").await;
        let second = h.agent("second").await;
        let (status, _) = h
            .put("gateways", Some(&first), &json!([gateway("a.ams", 1194)]))
            .await;
        assert_eq!(status, 201);

        // The second agent's push names a new host and the first's: refused whole.
        let (status, body) = h
            .put(
                "gateways",
                Some(&second),
                &json!([gateway("new.ams", 1194), gateway("a.ams", 1)]),
            )
            .await;
        assert_eq!(status, 403, "{name}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("a.ams"),
            "{body}"
        );
        let (status, body) = h
            .put(
                "gateways",
                Some(&second),
                &json!([gateway("static.ams", 1194)]),
            )
            .await;
        assert_eq!(status, 403, "{name}");
        assert!(body["message"].as_str().unwrap().contains("static.ams"));

        let store = h.store().await;
        let inventory = store.load_inventory().await.unwrap();
        let a = inventory
            .resources
            .iter()
            .find(|r| r.host == "a.ams")
            .unwrap();
        assert_eq!(a.agent.as_deref(), Some("first"), "{name}");
        assert_eq!(a.port, 1194);
        assert!(
            inventory.resources.iter().all(|r| r.host != "new.ams"),
            "{name}: all or nothing"
        );
        let statik = inventory
            .resources
            .iter()
            .find(|r| r.host == "static.ams")
            .unwrap();
        assert_eq!(statik.origin, "config");
        store.close().await;
    }
}

#[tokio::test]
async fn invalid_pushes_get_422_naming_fields_and_change_nothing() {
    for backend in backends().await {
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
            let fields: Vec<&str> = response["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["field"].as_str().unwrap())
                .collect();
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
        let inventory = store.load_inventory().await.unwrap();
        let pushed: Vec<&str> = inventory
            .resources
            .iter()
            .filter(|r| r.origin == "agent")
            .map(|r| r.host.as_str())
            .collect();
        assert_eq!(pushed, ["keep.ams"], "{name}");
        store.close().await;
    }
}

#[tokio::test]
async fn silent_resources_expire_and_return_with_the_next_heartbeat() {
    for backend in backends().await {
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
        h.wait_list("/api/5/gateways", |hs| hs.contains(&"a.ams"))
            .await;

        // Gone within a second of the TTL running out.
        let list = h
            .wait_list("/api/5/gateways", |hs| !hs.contains(&"a.ams"))
            .await;
        let gone_after = pushed_at.elapsed();
        assert!(!hosts(&list).contains(&"a.ams"), "{name}");
        assert!(
            gone_after >= ttl - Duration::from_millis(100),
            "{name}: gone after {gone_after:?}"
        );
        assert!(
            gone_after <= ttl + Duration::from_secs(1),
            "{name}: gone after {gone_after:?}"
        );
        // Hand-defined gateways do not expire.
        assert!(hosts(&list).contains(&"static.ams"));

        let (status, _) = h
            .put("gateways", Some(&token), &json!([gateway("a.ams", 1194)]))
            .await;
        assert_eq!(status, 200);
        let list = h
            .wait_list("/api/5/gateways", |hs| hs.contains(&"a.ams"))
            .await;
        assert!(
            hosts(&list).contains(&"a.ams"),
            "{name}: back with the heartbeat"
        );
    }
}

/// HMAC-SHA256 (RFC 2104), to sign a token the way menshen would.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner_hash = Sha256::new()
        .chain_update(&inner)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer)
        .chain_update(inner_hash)
        .finalize()
        .to_vec()
}

/// Parallel pushes of one agent (a push retried while its first try is
/// still running) are stored one after the other: a host the agent itself
/// just created is never "another agent's".
#[tokio::test]
async fn parallel_pushes_of_one_agent_serialise() {
    const AGENTS: usize = 8;
    const PARALLEL: usize = 8;
    const ROUNDS: usize = 4;
    for backend in backends().await {
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
#[tokio::test]
async fn what_an_agent_may_claim() {
    for backend in backends().await {
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
        let message = response["fields"][0]["message"].as_str().unwrap();
        assert!(message.contains("at most 3"), "{message}");
        let three: Vec<Value> = (0..3)
            .map(|i| public_bridge(&format!("b{i}.paris"), "obfs4", json!({"cert": CERT})))
            .collect();
        let (status, response) = h.put("bridges", Some(&token), &json!(three)).await;
        assert_eq!(refused_fields(status, &response), ["bridges"], "{name}");
        assert!(
            response["fields"][0]["message"]
                .as_str()
                .unwrap()
                .contains("at most 3"),
            "{response}"
        );

        // Addresses clients would be sent to.
        let with = |field: &str, value: &str| {
            let mut g = public_gateway("x.ams");
            g[field] = json!(value);
            json!([public_gateway("keep.ams"), g])
        };
        for ip in [
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
        ] {
            let (status, response) = h.put("gateways", Some(&token), &with("ip_addr", ip)).await;
            assert_eq!(
                refused_fields(status, &response),
                ["gateways[1].ip_addr"],
                "{name}: {ip}"
            );
        }
        for ip in [
            "::1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::",
            "::ffff:10.0.0.1",
        ] {
            let (status, response) = h.put("gateways", Some(&token), &with("ip6_addr", ip)).await;
            assert_eq!(
                refused_fields(status, &response),
                ["gateways[1].ip6_addr"],
                "{name}: {ip}"
            );
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
        let inventory = store.load_inventory().await.unwrap();
        let mut pushed: Vec<&str> = inventory
            .resources
            .iter()
            .filter(|r| r.origin == "agent")
            .map(|r| r.host.as_str())
            .collect();
        pushed.sort();
        assert_eq!(pushed, ["hop.paris", "keep.ams"], "{name}");
        store.close().await;
    }
}

/// `--allow-private-addresses`: labs may send clients anywhere.
#[tokio::test]
async fn private_addresses_when_allowed() {
    for backend in backends().await {
        let name = backend.name();
        let h = Harness::start_with(backend, |s| s.allow_private_addresses = true).await;
        let token = h.agent("lab").await;
        let mut lab = gateway("lab.ams", 1194);
        lab["ip_addr"] = json!("10.0.0.7");
        lab["ip6_addr"] = json!("fd00::7");
        let (status, body) = h.put("gateways", Some(&token), &json!([lab])).await;
        assert_eq!(status, 201, "{name}: {body}");
    }
}

/// Rotating the signing key: with the new key first and the old one still
/// given, old tokens keep working and new ones carry the new key's id;
/// once the old key is removed, its tokens get 401.
#[tokio::test]
async fn the_signing_key_is_rotated_without_reenrolling_at_once() {
    use menshen::auth::KeySource;
    use menshen::auth::admin::Role;
    use menshen::store::AuditEntry;
    for backend in backends().await {
        let name = backend.name();
        let dir = backend.data_dir().to_owned();
        let (old, new) = (dir.join("old.key"), dir.join("new.key"));
        std::fs::write(&old, SigningKey::generate_text()).unwrap();
        std::fs::write(&new, SigningKey::generate_text()).unwrap();
        let keys = |files: &[&std::path::Path]| KeySource {
            inline: None,
            files: files.iter().map(|f| f.to_path_buf()).collect(),
        };
        let path = dir.join("provider.toml");
        std::fs::write(&path, FILE).unwrap();
        let serve = |source: KeySource| {
            let mut settings = backend.settings();
            settings.provider_file = Some(path.clone());
            settings.signing_key = source;
            TestServer::start_with(settings)
        };
        let client = reqwest::Client::new();
        let push = |server: &TestServer, token: &str| {
            client
                .put(server.url("/api/5/agent/gateways"))
                .bearer_auth(token)
                .json(&json!([gateway("rot.ams", 1194)]))
                .send()
        };
        let admin_get = |server: &TestServer, token: &str| {
            client
                .get(server.url("/admin/v1/agents"))
                .bearer_auth(token)
                .send()
        };
        let store = Store::connect(&backend.engine()).await.unwrap();
        let token_id = menshen::auth::random_id(16);
        store
            .create_agent("rot", &token_id, now_millis())
            .await
            .unwrap();
        let now = now_millis() / 1000;

        // Before: one key.
        let old_key = SigningKey::load(&keys(&[&old]), &dir).unwrap();
        let old_agent = old_key.mint_agent_token("rot", &token_id, now, 3600);
        let old_admin = old_key.mint_admin_token("alice", Role::Admin, now, 3600);
        let server = serve(keys(&[&old])).await;
        assert!(
            push(&server, &old_agent)
                .await
                .unwrap()
                .status()
                .is_success(),
            "{name}"
        );
        assert_eq!(
            admin_get(&server, &old_admin).await.unwrap().status(),
            200,
            "{name}"
        );
        server.stop().await.unwrap();

        // During: the new key signs, both verify. The agent gets a new token
        // (keeping its token id, so the old one works on meanwhile).
        let both = SigningKey::load(&keys(&[&new, &old]), &dir).unwrap();
        assert_ne!(both.signing_kid(), old_key.signing_kid());
        let kept = store
            .reissue_agent(
                "rot",
                true,
                AuditEntry::new("test", "agent.reissue", "agent/rot", 0),
            )
            .await
            .unwrap();
        assert_eq!(kept, token_id);
        let new_agent = both.mint_agent_token("rot", &kept, now, 3600);
        let new_admin = both.mint_admin_token("alice", Role::Admin, now, 3600);
        let server = serve(keys(&[&new, &old])).await;
        for token in [&old_agent, &new_agent] {
            assert!(
                push(&server, token).await.unwrap().status().is_success(),
                "{name}"
            );
        }
        for token in [&old_admin, &new_admin] {
            assert_eq!(
                admin_get(&server, token).await.unwrap().status(),
                200,
                "{name}"
            );
        }
        server.stop().await.unwrap();

        // After: the old key is gone, and its tokens with it.
        let server = serve(keys(&[&new])).await;
        assert_eq!(
            push(&server, &old_agent).await.unwrap().status(),
            401,
            "{name}"
        );
        assert_eq!(
            admin_get(&server, &old_admin).await.unwrap().status(),
            401,
            "{name}"
        );
        assert!(
            push(&server, &new_agent)
                .await
                .unwrap()
                .status()
                .is_success(),
            "{name}"
        );
        assert_eq!(
            admin_get(&server, &new_admin).await.unwrap().status(),
            200,
            "{name}"
        );

        // A reissue without keeping replaces the token at once.
        let fresh = store
            .reissue_agent(
                "rot",
                false,
                AuditEntry::new("test", "agent.reissue", "agent/rot", 0),
            )
            .await
            .unwrap();
        assert_ne!(fresh, token_id);
        assert_eq!(
            push(&server, &new_agent).await.unwrap().status(),
            401,
            "{name}"
        );
        let newest = SigningKey::load(&keys(&[&new]), &dir)
            .unwrap()
            .mint_agent_token("rot", &fresh, now, 3600);
        assert!(
            push(&server, &newest).await.unwrap().status().is_success(),
            "{name}"
        );
        server.stop().await.unwrap();
        store.close().await;
    }
}
