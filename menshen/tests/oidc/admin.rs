//! The admin API taking the provider's tokens.

use menshen_e2e::http::json_of;
use serde_json::json;

use super::*;

/// The admin API with an OpenID Connect provider configured: its tokens get
/// the role their claim names; a token without a role is 403; one from
/// another issuer, or an agent's, is 401; menshen's own tokens still work.
#[tokio::test]
async fn the_admin_api_takes_the_providers_tokens_by_role() {
    let provider = Provider::start(all_keys()).await;
    let backend = crate::common::Backend::sqlite();
    let mut settings = backend.settings();
    settings.oidc = Some(OidcSettings::new(ISSUER, AUDIENCE, provider.url()));
    let server = crate::common::TestServer::start_with(settings).await;
    let key = server.key();
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, token: String| {
        let client = client.clone();
        let url = server.url("/admin/v1/locations");
        async move {
            let mut request = client.request(method.clone(), url).bearer_auth(token);
            if method == reqwest::Method::POST {
                request = request.json(&json!({"label": format!("loc-{}", now()), "display_name": "Somewhere", "country_code": "NL"}));
            }
            request.send().await.unwrap().status().as_u16()
        }
    };

    let admin = RSA.mint("rsa-1", &claims(json!({"menshen_role": "admin"})));
    let viewer = P256.mint("ec-256", &claims(json!({"menshen_role": ["viewer"]})));
    let nobody = ED.mint("ed-1", &claims(json!({})));
    let other_issuer = RSA.mint(
        "rsa-1",
        &claims(json!({"iss": "https://elsewhere.example", "menshen_role": "admin"})),
    );
    let t = now();
    let agent = key.mint_agent_token("gw", "id", t, 600);
    let own = key.mint_admin_token("ops", menshen::auth::admin::Role::Viewer, t, 600);

    assert_eq!(call(reqwest::Method::GET, admin.clone()).await, 200);
    assert_eq!(call(reqwest::Method::POST, admin).await, 201);
    assert_eq!(call(reqwest::Method::GET, viewer.clone()).await, 200);
    assert_eq!(call(reqwest::Method::POST, viewer).await, 403);
    assert_eq!(call(reqwest::Method::GET, nobody).await, 403);
    assert_eq!(call(reqwest::Method::GET, other_issuer).await, 401);
    assert_eq!(call(reqwest::Method::GET, agent).await, 401);
    assert_eq!(call(reqwest::Method::GET, own).await, 200);

    // The audit log names the provider's subject.
    let audit = json_of(
        client
            .get(server.url("/admin/v1/audit"))
            .bearer_auth(RSA.mint("rsa-1", &claims(json!({"menshen_role": "viewer"})))),
    )
    .await;
    assert!(audit.to_string().contains("oidc:alice"), "{audit}");
}
