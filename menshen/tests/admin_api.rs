//! The admin API over real HTTP, on every backend: each operation, its
//! effect on client lists, the audit log, and each refusal.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, backends, get_json};
use menshen::auth::SigningKey;
use menshen::auth::admin::Role;
use menshen::store::now_millis;
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

[[gateway]]
host = "static.ams"
ip_addr = "192.0.2.1"
location = "amsterdam"
port = 1194
transport = "udp"
"#;

struct Harness {
    _backend: Backend,
    server: TestServer,
    key: SigningKey,
    client: reqwest::Client,
    admin: String,
    viewer: String,
}

impl Harness {
    async fn start(backend: Backend) -> Harness {
        Self::start_with_ttl(backend, Duration::from_secs(60)).await
    }

    async fn start_with_ttl(backend: Backend, ttl: Duration) -> Harness {
        let path = backend.data_dir().join("provider.toml");
        std::fs::write(&path, FILE).unwrap();
        let mut settings = backend.settings();
        settings.provider_file = Some(path);
        settings.resource_ttl = ttl;
        let key = SigningKey::load(&settings.signing_key, &settings.data_dir).unwrap();
        let server = TestServer::start_with(settings).await;
        let now = now_millis() / 1000;
        let admin = key.mint_admin_token("alice", Role::Admin, now, 600);
        let viewer = key.mint_admin_token("victor", Role::Viewer, now, 600);
        Harness {
            _backend: backend,
            server,
            key,
            client: reqwest::Client::new(),
            admin,
            viewer,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method.parse().unwrap(), self.server.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(&self.viewer), None).await
    }

    async fn write(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, Some(&self.admin), body).await
    }

    /// Polls a client list until `pred` holds on its sorted hosts.
    async fn wait_hosts(&self, path: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let list = get_json(&self.server.url(path), 200).await;
            let mut hosts: Vec<String> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["host"].as_str().unwrap().to_owned())
                .collect();
            hosts.sort();
            if pred(&hosts) || Instant::now() > deadline {
                return hosts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn admin_resource(&self, kind: &str, host: &str) -> Value {
        let (status, list) = self.get(&format!("/admin/v1/{kind}")).await;
        assert_eq!(status, 200);
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["host"] == host)
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn audit(&self) -> Vec<Value> {
        let (status, list) = self.get("/admin/v1/audit").await;
        assert_eq!(status, 200, "{list}");
        list.as_array().unwrap().clone()
    }
}

fn gateway(host: &str, location: &str) -> Value {
    json!({"host": host, "ip_addr": "198.51.100.7", "location": location, "port": 1194,
           "transport": "udp"})
}

fn has(hosts: &[String], host: &str) -> bool {
    hosts.iter().any(|h| h == host)
}

#[tokio::test]
async fn refusals_are_401_or_403_in_json() {
    for backend in backends().await {
        let name = backend.name();
        let h = Harness::start(backend).await;
        let now = now_millis() / 1000;
        let expired = h
            .key
            .mint_admin_token("alice", Role::Admin, now - 7200, 600);
        let forged =
            SigningKey::from_bytes(&[9u8; 32]).mint_admin_token("alice", Role::Admin, now, 600);
        let agent = h.key.mint_agent_token("gw", "id", now, 600);
        let invite = "0123456789abcdef.c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";
        let location = json!({"label": "berlin", "display_name": "Berlin", "country_code": "DE"});

        for (what, token) in [
            ("no token", None),
            ("garbage", Some("not-a-jwt")),
            ("expired", Some(expired.as_str())),
            ("forged", Some(forged.as_str())),
            ("agent token", Some(agent.as_str())),
            ("invite token", Some(invite)),
        ] {
            for (method, path, body) in [
                ("GET", "/admin/v1/locations", None),
                ("POST", "/admin/v1/locations", Some(location.clone())),
                ("GET", "/admin/v1/audit", None),
            ] {
                let (status, body) = h.call(method, path, token, body).await;
                assert_eq!(status, 401, "{name}: {what} {method} {path}: {body}");
                assert_eq!(body["error"], "unauthorized", "{name}: {what}");
            }
        }
        let (_, body) = h
            .call("GET", "/admin/v1/locations", Some(&expired), None)
            .await;
        assert!(
            body["message"].as_str().unwrap().contains("expired"),
            "{body}"
        );

        // a viewer reads, and changes nothing
        for path in [
            "/admin/v1/locations",
            "/admin/v1/gateways",
            "/admin/v1/bridges",
            "/admin/v1/agents",
            "/admin/v1/invites",
            "/admin/v1/provider",
            "/admin/v1/service",
            "/admin/v1/audit",
        ] {
            let (status, _) = h.call("GET", path, Some(&h.viewer), None).await;
            assert_eq!(status, 200, "{name}: viewer GET {path}");
        }
        for (method, path, body) in [
            ("POST", "/admin/v1/locations", Some(location.clone())),
            ("DELETE", "/admin/v1/locations/amsterdam", None),
            (
                "POST",
                "/admin/v1/gateways",
                Some(gateway("x.ams", "amsterdam")),
            ),
            (
                "PUT",
                "/admin/v1/gateways/static.ams/overrides",
                Some(json!({"maintenance": true})),
            ),
            ("POST", "/admin/v1/agents", Some(json!({"name": "gw"}))),
            (
                "POST",
                "/admin/v1/invites",
                Some(json!({"buckets": ["friends"]})),
            ),
            ("DELETE", "/admin/v1/invites?all=true", None),
            (
                "PUT",
                "/admin/v1/service",
                Some(json!({"auth": "anonymous"})),
            ),
        ] {
            let (status, body) = h.call(method, path, Some(&h.viewer), body).await;
            assert_eq!(status, 403, "{name}: viewer {method} {path}: {body}");
            assert_eq!(body["error"], "forbidden");
        }
        assert!(
            h.audit().await.is_empty(),
            "{name}: refused changes are not logged"
        );
        let (_, locations) = h.get("/admin/v1/locations").await;
        assert_eq!(locations.as_array().unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn locations_are_created_updated_and_deleted_unless_used() {
    for backend in backends().await {
        let name = backend.name();
        let h = Harness::start(backend).await;

        let berlin = json!({"label": "berlin", "display_name": "Berlin", "country_code": "de",
                            "lat": 52.52, "lon": 13.4, "timezone": 1});
        let (status, body) = h
            .write("POST", "/admin/v1/locations", Some(berlin.clone()))
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(body["country_code"], "DE");
        assert_eq!(body["hemisphere"], "N");
        assert_eq!(body["origin"], "admin");
        let (status, _) = h
            .write(
                "POST",
                "/admin/v1/locations",
                Some(json!({"label": "BERLIN",
            "display_name": "B", "country_code": "DE"})),
            )
            .await;
        assert_eq!(status, 409, "{name}: same label ignoring case");

        // broken input names its fields and writes nothing
        let (status, body) = h
            .write(
                "POST",
                "/admin/v1/locations",
                Some(json!({"label": "bad label",
                "display_name": "", "country_code": "XX", "lat": 99.0})),
            )
            .await;
        assert_eq!(status, 422, "{name}");
        let fields: Vec<&str> = body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        for field in ["label", "display_name", "country_code", "lon"] {
            assert!(fields.contains(&field), "{name}: {field} in {body}");
        }
        let (status, body) = h
            .write(
                "POST",
                "/admin/v1/locations",
                Some(json!({"label": "x",
            "display_name": "X", "country_code": "DE", "colour": "red"})),
            )
            .await;
        assert_eq!(status, 422, "{name}: {body}");
        let (status, _) = h
            .write("POST", "/admin/v1/locations", Some(json!("not an object")))
            .await;
        assert_eq!(status, 422, "{name}");

        let (_, list) = h.get("/admin/v1/locations").await;
        let labels: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["label"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["amsterdam", "berlin"], "{name}");

        // the client sees it
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let service = get_json(&h.server.url("/api/5/service"), 200).await;
            if service["locations"]["berlin"]["display_name"] == "Berlin" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: berlin never reached /api/5/service"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let (status, body) = h
            .write(
                "PUT",
                "/admin/v1/locations/berlin",
                Some(json!({
            "display_name": "Berlin-Mitte", "country_code": "DE"})),
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["display_name"], "Berlin-Mitte");
        let (status, _) = h
            .write(
                "PUT",
                "/admin/v1/locations/berlin",
                Some(json!({
            "label": "paris", "display_name": "P", "country_code": "FR"})),
            )
            .await;
        assert_eq!(status, 422, "{name}: the label cannot change");
        let (status, _) = h
            .write(
                "PUT",
                "/admin/v1/locations/nowhere",
                Some(json!({
            "display_name": "N", "country_code": "FR"})),
            )
            .await;
        assert_eq!(status, 404, "{name}");
        let (status, body) = h
            .write(
                "PUT",
                "/admin/v1/locations/amsterdam",
                Some(json!({
            "display_name": "A", "country_code": "NL"})),
            )
            .await;
        assert_eq!(status, 409, "{name}: the provider file's: {body}");

        // used: refused; unused again: deleted
        let (status, body) = h
            .write(
                "POST",
                "/admin/v1/gateways",
                Some(gateway("gw.ber", "Berlin")),
            )
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(body["location"], "berlin", "{name}: canonical label");
        let (status, body) = h.write("DELETE", "/admin/v1/locations/berlin", None).await;
        assert_eq!(status, 409, "{name}: {body}");
        assert_eq!(body["error"], "conflict");
        assert!(
            body["message"].as_str().unwrap().contains("used by"),
            "{body}"
        );
        let (status, _) = h
            .write("DELETE", "/admin/v1/locations/amsterdam", None)
            .await;
        assert_eq!(status, 409, "{name}: the provider file's");
        let (status, _) = h.write("DELETE", "/admin/v1/gateways/gw.ber", None).await;
        assert_eq!(status, 204, "{name}");
        let (status, _) = h.write("DELETE", "/admin/v1/locations/berlin", None).await;
        assert_eq!(status, 204, "{name}");
        let (status, _) = h.write("DELETE", "/admin/v1/locations/berlin", None).await;
        assert_eq!(status, 404, "{name}");

        // the audit log, newest first, with before and after
        let audit = h.audit().await;
        let actions: Vec<&str> = audit
            .iter()
            .map(|a| a["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "location.delete",
                "gateway.delete",
                "gateway.create",
                "location.update",
                "location.create"
            ],
            "{name}"
        );
        assert!(audit.iter().all(|a| a["actor"] == "alice"));
        let update = &audit[3];
        assert_eq!(update["target"], "location/berlin");
        assert_eq!(update["before"]["display_name"], "Berlin");
        assert_eq!(update["after"]["display_name"], "Berlin-Mitte");
        assert!(audit[0]["after"].is_null() && audit[0]["before"]["label"] == "berlin");
        assert!(audit[4]["before"].is_null() && audit[4]["after"]["label"] == "berlin");
        assert!(audit[0]["at_millis"].as_i64().unwrap() <= now_millis());
        let (_, page) = h
            .get(&format!(
                "/admin/v1/audit?limit=2&before={}",
                audit[1]["id"]
            ))
            .await;
        let page: Vec<&str> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["action"].as_str().unwrap())
            .collect();
        assert_eq!(page, ["gateway.create", "location.update"], "{name}");
        let (status, _) = h.get("/admin/v1/audit?limit=0").await;
        assert_eq!(status, 400, "{name}");
    }
}

#[tokio::test]
async fn hand_defined_resources_and_overrides_reach_the_client_lists() {
    for backend in backends().await {
        let name = backend.name();
        let h = Harness::start(backend).await;

        let (status, body) = h
            .write(
                "POST",
                "/admin/v1/gateways",
                Some(gateway("hand.ams", "amsterdam")),
            )
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(body["origin"], "admin");
        assert_eq!(body["status"], "hand-defined");
        assert_eq!(body["type"], "openvpn");
        let (status, _) = h
            .write(
                "POST",
                "/admin/v1/gateways",
                Some(gateway("hand.ams", "amsterdam")),
            )
            .await;
        assert_eq!(status, 409, "{name}");
        let (status, body) = h
            .write(
                "POST",
                "/admin/v1/gateways",
                Some(json!({"host": "bad", "location": "mars",
                "port": 99999, "transport": "carrier-pigeon", "ip_addr": "1.2.3"})),
            )
            .await;
        assert_eq!(status, 422, "{name}");
        let fields: Vec<&str> = body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        for field in ["location", "port", "transport", "ip_addr"] {
            assert!(fields.contains(&field), "{name}: {field} in {body}");
        }
        let (status, body) = h
            .write(
                "POST",
                "/admin/v1/gateways",
                Some(json!({"host": "x", "port": "high"})),
            )
            .await;
        assert_eq!(status, 422, "{name}");
        assert_eq!(body["fields"][0]["field"], "port", "{body}");
        let hosts = h
            .wait_hosts("/api/5/gateways", |h| has(h, "hand.ams"))
            .await;
        assert_eq!(hosts, ["hand.ams", "static.ams"], "{name}");

        // a bridge needs its cert
        let (status, body) = h
            .write(
                "POST",
                "/admin/v1/bridges",
                Some(json!({"host": "br.ams",
            "ip_addr": "192.0.2.9", "location": "amsterdam", "port": 443})),
            )
            .await;
        assert_eq!(status, 422, "{name}: {body}");
        assert_eq!(body["fields"][0]["field"], "options.cert");
        let (status, body) = h
            .write(
                "POST",
                "/admin/v1/bridges",
                Some(json!({"host": "br.ams",
            "ip_addr": "192.0.2.9", "location": "amsterdam", "port": 443,
            "options": {"cert": "xvW97fMqMiBmgTy/jP5CvFGq8bqlKaPcL7xnKBnCl3n2EmlpTmSG8IMNvEsCYqkzYPsvvQ", "iatMode": "0"}})),
            )
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(
            body["options"]["cert"],
            "xvW97fMqMiBmgTy/jP5CvFGq8bqlKaPcL7xnKBnCl3n2EmlpTmSG8IMNvEsCYqkzYPsvvQ"
        );
        h.wait_hosts("/api/5/bridges", |h| has(h, "br.ams")).await;

        // maintenance hides without deleting
        let (status, body) = h
            .write(
                "PUT",
                "/admin/v1/gateways/static.ams/overrides",
                Some(json!({"maintenance": true})),
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["status"], "maintenance");
        assert_eq!(body["listed"], false);
        let hosts = h
            .wait_hosts("/api/5/gateways", |h| !has(h, "static.ams"))
            .await;
        assert_eq!(hosts, ["hand.ams"], "{name}");
        // a bucket hides from the public list, experimental likewise
        let (status, _) = h
            .write(
                "PUT",
                "/admin/v1/gateways/static.ams/overrides",
                Some(json!({"bucket": "friends"})),
            )
            .await;
        assert_eq!(status, 200);
        let (status, _) = h
            .write(
                "PUT",
                "/admin/v1/bridges/br.ams/overrides",
                Some(json!({"experimental": true})),
            )
            .await;
        assert_eq!(status, 200);
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
            json!({"experimental": null, "bucket": "friends", "maintenance": false})
        );
        let (status, body) = h
            .write(
                "PUT",
                "/admin/v1/gateways/static.ams/overrides",
                Some(json!({"bucket": "has space"})),
            )
            .await;
        assert_eq!(status, 422, "{name}: {body}");
        assert_eq!(body["fields"][0]["field"], "bucket");
        let (status, _) = h
            .write("PUT", "/admin/v1/gateways/nope/overrides", Some(json!({})))
            .await;
        assert_eq!(status, 404, "{name}");
        // cleared: back in the list
        let (status, _) = h
            .write(
                "PUT",
                "/admin/v1/gateways/static.ams/overrides",
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200);
        let hosts = h
            .wait_hosts("/api/5/gateways", |h| has(h, "static.ams"))
            .await;
        assert_eq!(hosts, ["hand.ams", "static.ams"], "{name}");

        // only hand-defined ones are deleted here
        let (status, body) = h
            .write("DELETE", "/admin/v1/gateways/static.ams", None)
            .await;
        assert_eq!(status, 409, "{name}");
        assert!(
            body["message"].as_str().unwrap().contains("provider file"),
            "{body}"
        );
        let (status, _) = h.write("DELETE", "/admin/v1/gateways/hand.ams", None).await;
        assert_eq!(status, 204, "{name}");
        let (status, _) = h.write("DELETE", "/admin/v1/gateways/hand.ams", None).await;
        assert_eq!(status, 404, "{name}");
        let (status, _) = h.write("DELETE", "/admin/v1/bridges/br.ams", None).await;
        assert_eq!(status, 204, "{name}");
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
}

#[tokio::test]
async fn agents_are_created_listed_and_revoked_and_overrides_outlive_their_pushes() {
    for backend in backends().await {
        let name = backend.name();
        let h = Harness::start_with_ttl(backend, Duration::from_millis(1500)).await;

        let (status, body) = h
            .write("POST", "/admin/v1/agents", Some(json!({"name": "gw-ams"})))
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        let token = body["token"].as_str().unwrap().to_owned();
        assert!(body["expires_millis"].as_i64().unwrap() > now_millis() + 300 * 86_400_000);
        let (status, _) = h
            .write("POST", "/admin/v1/agents", Some(json!({"name": "gw-ams"})))
            .await;
        assert_eq!(status, 409, "{name}");
        let (status, body) = h
            .write(
                "POST",
                "/admin/v1/agents",
                Some(json!({"name": "GW AMS", "ttl_secs": 1})),
            )
            .await;
        assert_eq!(status, 422, "{name}");
        assert_eq!(body["fields"].as_array().unwrap().len(), 2, "{body}");

        // the token works for the agent API, and not here
        let push = |load: f64| {
            let client = h.client.clone();
            let url = h.server.url("/api/5/agent/gateways");
            let token = token.clone();
            async move {
                let mut g = gateway("pushed.ams", "amsterdam");
                g["type"] = "openvpn".into();
                g["healthy"] = true.into();
                g["load"] = load.into();
                client
                    .put(url)
                    .bearer_auth(token)
                    .json(&json!([g]))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(push(0.5).await, 201, "{name}");
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
        let (status, body) = h
            .write("DELETE", "/admin/v1/gateways/pushed.ams", None)
            .await;
        assert_eq!(status, 409, "{name}");
        assert!(
            body["message"].as_str().unwrap().contains("agent"),
            "{body}"
        );

        // an operator's experimental outlives the next push
        let (status, _) = h
            .write(
                "PUT",
                "/admin/v1/gateways/pushed.ams/overrides",
                Some(json!({"experimental": true})),
            )
            .await;
        assert_eq!(status, 200);
        h.wait_hosts("/api/5/gateways", |h| !has(h, "pushed.ams"))
            .await;
        assert_eq!(push(0.75).await, 200, "{name}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let hosts = h
            .wait_hosts("/api/5/gateways", |h| has(h, "pushed.ams"))
            .await;
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
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = h.admin_resource("gateways", "pushed.ams").await;
            if seen["status"] == "stale" {
                assert_eq!(seen["listed"], false);
                break;
            }
            assert!(Instant::now() < deadline, "{name}: never stale: {seen}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let (status, _) = h.write("DELETE", "/admin/v1/agents/gw-ams", None).await;
        assert_eq!(status, 204, "{name}");
        let (status, _) = h.write("DELETE", "/admin/v1/agents/gw-ams", None).await;
        assert_eq!(status, 404, "{name}");
        assert_eq!(push(0.5).await, 401, "{name}: revoked");
        assert!(
            h.admin_resource("gateways", "pushed.ams").await.is_null(),
            "{name}"
        );
        let (_, agents) = h.get("/admin/v1/agents").await;
        assert!(agents[0]["revoked_millis"].as_i64().is_some());

        let audit = h.audit().await;
        let actions: Vec<&str> = audit
            .iter()
            .map(|a| a["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["agent.revoke", "gateway.overrides", "agent.create"],
            "{name}"
        );
        assert!(
            !audit.iter().any(|a| a.to_string().contains(&token)),
            "{name}: no token in the log"
        );
    }
}

#[tokio::test]
async fn invites_and_settings() {
    for backend in backends().await {
        let name = backend.name();
        let h = Harness::start(backend).await;

        let (status, body) = h.write("POST", "/admin/v1/invites",
            Some(json!({"buckets": ["friends", "press", "friends"], "count": 2, "expires_secs": 3600}))).await;
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
            .write(
                "POST",
                "/admin/v1/invites",
                Some(json!({"buckets": ["family"]})),
            )
            .await;
        assert_eq!(status, 201);
        let (status, body) = h
            .write(
                "POST",
                "/admin/v1/invites",
                Some(json!({"buckets": ["bad bucket"], "count": 0})),
            )
            .await;
        assert_eq!(status, 422, "{name}");
        let fields: Vec<&str> = body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["buckets[0]", "count"], "{name}");

        let (_, list) = h.get("/admin/v1/invites").await;
        assert_eq!(list.as_array().unwrap().len(), 3, "{name}");
        assert!(
            !list.to_string().contains(&tokens[0][17..]),
            "{name}: never a token"
        );

        // an invite token lets a client see an invite-only gateway
        let (status, _) = h
            .write(
                "PUT",
                "/admin/v1/gateways/static.ams/overrides",
                Some(json!({"bucket": "press"})),
            )
            .await;
        assert_eq!(status, 200);
        h.wait_hosts("/api/5/gateways", |h| h.is_empty()).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let list: Value = h
                .client
                .get(h.server.url("/api/5/gateways"))
                .header("x-menshen-auth-token", &tokens[0])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if list.as_array().unwrap().len() == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: the invite never granted press"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let id = list[0]["id"].as_str().unwrap().to_owned();
        let (status, _) = h
            .write("DELETE", &format!("/admin/v1/invites/{id}"), None)
            .await;
        assert_eq!(status, 204, "{name}");
        let (status, _) = h
            .write("DELETE", &format!("/admin/v1/invites/{id}"), None)
            .await;
        assert_eq!(status, 404, "{name}");
        let (status, body) = h
            .write("DELETE", "/admin/v1/invites?bucket=family", None)
            .await;
        assert_eq!((status, body["deleted"].as_u64()), (200, Some(1)), "{name}");
        let (status, _) = h.write("DELETE", "/admin/v1/invites", None).await;
        assert_eq!(status, 400, "{name}: neither bucket nor all");
        let (status, body) = h.write("DELETE", "/admin/v1/invites?all=true", None).await;
        assert_eq!((status, body["deleted"].as_u64()), (200, Some(1)), "{name}");
        let (_, list) = h.get("/admin/v1/invites").await;
        assert!(list.as_array().unwrap().is_empty(), "{name}");

        // settings: read and replace
        let (status, mut provider) = h.get("/admin/v1/provider").await;
        assert_eq!(status, 200);
        assert_eq!(provider["domain"], "vpn.test", "{name}: {provider}");
        provider["domain"] = "vpn.example".into();
        let (status, body) = h
            .write("PUT", "/admin/v1/provider", Some(provider.clone()))
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while get_json(&h.server.url("/provider.json"), 200).await["domain"] != "vpn.example" {
            assert!(
                Instant::now() < deadline,
                "{name}: provider.json never changed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, body) = h
            .write("PUT", "/admin/v1/provider", Some(json!({"domain": ""})))
            .await;
        assert_eq!(status, 422, "{name}");
        let fields: Vec<&str> = body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["domain", "api_uri", "api_versions"], "{name}");

        let (status, service) = h.get("/admin/v1/service").await;
        assert_eq!(status, 200);
        assert_eq!(service["auth"], "anonymous", "{name}: {service}");
        let new = json!({"auth": "anonymous", "openvpn_configuration": {"cipher": "AES-256-GCM", "persist-tun": true},
                         "serial": 4, "version": 3});
        let (status, _) = h.write("PUT", "/admin/v1/service", Some(new.clone())).await;
        assert_eq!(status, 200, "{name}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while get_json(&h.server.url("/api/5/service"), 200).await["serial"] != 4 {
            assert!(Instant::now() < deadline, "{name}: service never changed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, body) = h
            .write(
                "PUT",
                "/admin/v1/service",
                Some(json!({"auth": "anonymous", "openvpn_configuration": {"verb": 3}})),
            )
            .await;
        assert_eq!(status, 422, "{name}");
        assert_eq!(body["fields"][0]["field"], "openvpn_configuration.verb");
        let (status, body) = h
            .write("PUT", "/admin/v1/service", Some(json!({"serial": "four"})))
            .await;
        assert_eq!(status, 422, "{name}");
        assert_eq!(body["fields"][0]["field"], "serial");
        let (status, _) = h
            .call("PUT", "/admin/v1/service", Some(&h.admin), None)
            .await;
        assert_eq!(status, 400, "{name}: no JSON body");

        let audit = h.audit().await;
        let actions: Vec<&str> = audit
            .iter()
            .map(|a| a["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "settings.service",
                "settings.provider",
                "invite.delete",
                "invite.delete",
                "invite.delete",
                "gateway.overrides",
                "invite.create",
                "invite.create"
            ],
            "{name}"
        );
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
}

#[tokio::test]
async fn the_cli_mints_admin_tokens_the_server_accepts() {
    let backend = backends().await.remove(0);
    let data_dir = backend.data_dir().to_owned();
    let h = Harness::start(backend).await;
    let mint = |role: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_menshen"))
            .args([
                "admin",
                "token",
                "--subject",
                "ops",
                "--role",
                role,
                "--ttl",
                "1m",
                "--data-dir",
            ])
            .arg(&data_dir)
            .env_remove("MENSHEN_SIGNING_KEY")
            .env_remove("MENSHEN_SIGNING_KEY_FILE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let viewer = mint("viewer");
    let (status, _) = h.call("GET", "/admin/v1/audit", Some(&viewer), None).await;
    assert_eq!(status, 200);
    let (status, _) = h
        .call(
            "POST",
            "/admin/v1/agents",
            Some(&viewer),
            Some(json!({"name": "gw"})),
        )
        .await;
    assert_eq!(status, 403);
    let admin = mint("admin");
    let (status, _) = h
        .call(
            "POST",
            "/admin/v1/agents",
            Some(&admin),
            Some(json!({"name": "gw"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(h.audit().await[0]["actor"], "ops");

    // changes made with the CLI are in the audit log too
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["agent", "revoke", "gw", "--data-dir"])
        .arg(&data_dir)
        .env_remove("MENSHEN_DATABASE_URL")
        .env("USER", "root")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit = h.audit().await;
    assert_eq!(
        (&audit[0]["action"], &audit[0]["actor"]),
        (&json!("agent.revoke"), &json!("cli:root"))
    );
}

/// Gateways and bridges defined through the admin API follow the rules
/// agents' do: public unicast addresses unless allowed, bridge options by
/// type; each refusal names the field and stores nothing.
#[tokio::test]
async fn hand_defined_resources_follow_the_same_rules() {
    const PUBLIC_FILE: &str = r#"
[provider]
domain = "vpn.test"
api_uri = "https://api.vpn.test"

[locations.amsterdam]
display_name = "Amsterdam"
country_code = "NL"
"#;
    const CERT: &str = "h8PI8ciXlSFFPgITUT6UZC1pgZPZNIse9/5HWJW8OWLh0ilfzTtoAT39uc5doA3qwkZ1bA";
    for backend in backends().await {
        let name = backend.name();
        let path = backend.data_dir().join("provider.toml");
        std::fs::write(&path, PUBLIC_FILE).unwrap();
        let mut settings = backend.settings();
        settings.provider_file = Some(path);
        settings.allow_private_addresses = false;
        let key = SigningKey::load(&settings.signing_key, &settings.data_dir).unwrap();
        let server = TestServer::start_with(settings).await;
        let admin = key.mint_admin_token("alice", Role::Admin, now_millis() / 1000, 600);
        let client = reqwest::Client::new();
        let post = |what: &str, body: Value| {
            client
                .post(server.url(&format!("/admin/v1/{what}")))
                .bearer_auth(&admin)
                .json(&body)
                .send()
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
            let response = post(what, body.clone()).await.unwrap();
            assert_eq!(response.status(), 422, "{name}: {body}");
            let response: Value = response.json().await.unwrap();
            assert_eq!(response["error"], "invalid_fields", "{response}");
            assert_eq!(response["fields"][0]["field"], field, "{name}: {response}");
        }
        let (status, list) = {
            let r = client
                .get(server.url("/admin/v1/gateways"))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        };
        assert_eq!(status, 200);
        assert_eq!(list.as_array().map(Vec::len), Some(0), "{name}: {list}");
        let response = post("gateways", gateway("93.184.215.14")).await.unwrap();
        assert_eq!(response.status(), 201, "{name}");
        let response = post("bridges", bridge(json!({"cert": CERT, "iatMode": "1"})))
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{name}");
    }
}
