//! Which tokens an agent's push is taken with, and which hosts it may
//! claim.

use std::time::Duration;

use menshen::auth::SigningKey;
use menshen::store::now_millis;
use serde_json::json;

use super::{Harness, gateway, has, provider_file};
use crate::common::audit;
use crate::common::{Backend, TestServer, assert_says, on_each_backend, sorted_hosts};

on_each_backend!(
    bad_tokens_get_401,
    an_agent_cannot_take_another_agents_or_a_hand_defined_host,
    the_signing_key_is_rotated_without_reenrolling_at_once,
);

async fn bad_tokens_get_401(backend: Backend) {
    let name = backend.name();
    let h = Harness::start(backend, Duration::from_secs(60)).await;
    let token = h.agent("gw-ams").await;
    let now = now_millis() / 1000;
    let forged = SigningKey::from_bytes(&[9u8; 32]).mint_agent_token("gw-ams", "x", now, 3600);
    let key = h.server.key();
    let expired = key.mint_agent_token("gw-ams", "x", now - 7200, 3600);
    let unknown = key.mint_agent_token("nobody", "x", now, 3600);
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
        sorted_hosts(&h.server.json("/api/5/gateways").await),
        ["static.ams"]
    );

    // Revoked: refused, and what it had pushed leaves the lists.
    let (status, _) = h.put("gateways", Some(&token), &body).await;
    assert_eq!(status, 201);
    h.wait_list("/api/5/gateways", |hs| has(hs, "a.ams")).await;
    let store = h.store().await;
    store
        .revoke_agent(
            "gw-ams",
            now_millis(),
            audit("agent.revoke", "agent/gw-ams"),
        )
        .await
        .unwrap();
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

async fn an_agent_cannot_take_another_agents_or_a_hand_defined_host(backend: Backend) {
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
    assert_says(&body, "a.ams");
    let (status, body) = h
        .put(
            "gateways",
            Some(&second),
            &json!([gateway("static.ams", 1194)]),
        )
        .await;
    assert_eq!(status, 403, "{name}");
    assert_says(&body, "static.ams");

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

/// Rotating the signing key: with the new key first and the old one still
/// given, old tokens keep working and new ones carry the new key's id;
/// once the old key is removed, its tokens get 401.
async fn the_signing_key_is_rotated_without_reenrolling_at_once(backend: Backend) {
    use menshen::auth::KeySource;
    use menshen::auth::admin::Role;
    use menshen::store::AuditEntry;
    let name = backend.name();
    let dir = backend.data_dir().to_owned();
    let (old, new) = (dir.join("old.key"), dir.join("new.key"));
    std::fs::write(&old, SigningKey::generate_text()).unwrap();
    std::fs::write(&new, SigningKey::generate_text()).unwrap();
    let keys = |files: &[&std::path::Path]| KeySource {
        inline: None,
        files: files.iter().map(|f| f.to_path_buf()).collect(),
    };
    let path = provider_file("192.0.2.1").write(&dir);
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
    };
    let admin_get = |server: &TestServer, token: &str| {
        client
            .get(server.url("/admin/v1/agents"))
            .bearer_auth(token)
    };
    async fn status(request: reqwest::RequestBuilder) -> reqwest::StatusCode {
        request.send().await.unwrap().status()
    }
    let store = backend.store().await;
    let token_id = menshen::auth::random_id(16);
    store
        .create_agent(
            "rot",
            &token_id,
            now_millis(),
            audit("agent.create", "agent/rot"),
        )
        .await
        .unwrap();
    let now = now_millis() / 1000;

    // Before: one key.
    let old_key = SigningKey::load(&keys(&[&old]), &dir).unwrap();
    let old_agent = old_key.mint_agent_token("rot", &token_id, now, 3600);
    let old_admin = old_key.mint_admin_token("alice", Role::Admin, now, 3600);
    let server = serve(keys(&[&old])).await;
    assert!(
        status(push(&server, &old_agent)).await.is_success(),
        "{name}"
    );
    assert_eq!(status(admin_get(&server, &old_admin)).await, 200, "{name}");
    server.stop().await.unwrap();

    // During: the new key signs, both verify. The agent gets a new token
    // (keeping its token id, so the old one works on meanwhile).
    let both = SigningKey::load(&keys(&[&new, &old]), &dir).unwrap();
    assert_ne!(both.signing_kid(), old_key.signing_kid());
    let reissue = |keep: bool| {
        let audit = AuditEntry::new("test", "agent.reissue", "agent/rot", 0);
        store.reissue_agent("rot", keep, audit)
    };
    let kept = reissue(true).await.unwrap();
    assert_eq!(kept, token_id);
    let new_agent = both.mint_agent_token("rot", &kept, now, 3600);
    let new_admin = both.mint_admin_token("alice", Role::Admin, now, 3600);
    let server = serve(keys(&[&new, &old])).await;
    for token in [&old_agent, &new_agent] {
        assert!(status(push(&server, token)).await.is_success(), "{name}");
    }
    for token in [&old_admin, &new_admin] {
        assert_eq!(status(admin_get(&server, token)).await, 200, "{name}");
    }
    server.stop().await.unwrap();

    // After: the old key is gone, and its tokens with it.
    let server = serve(keys(&[&new])).await;
    assert_eq!(status(push(&server, &old_agent)).await, 401, "{name}");
    assert_eq!(status(admin_get(&server, &old_admin)).await, 401, "{name}");
    assert!(
        status(push(&server, &new_agent)).await.is_success(),
        "{name}"
    );
    assert_eq!(status(admin_get(&server, &new_admin)).await, 200, "{name}");

    // A reissue without keeping replaces the token at once.
    let fresh = reissue(false).await.unwrap();
    assert_ne!(fresh, token_id);
    assert_eq!(status(push(&server, &new_agent)).await, 401, "{name}");
    let newest = SigningKey::load(&keys(&[&new]), &dir)
        .unwrap()
        .mint_agent_token("rot", &fresh, now, 3600);
    assert!(status(push(&server, &newest)).await.is_success(), "{name}");
    server.stop().await.unwrap();
    store.close().await;
}
