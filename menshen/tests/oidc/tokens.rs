//! Which tokens pass, with which role, and which are refused.

use menshen::auth::oidc::OidcError;
use serde_json::json;

use super::*;

#[tokio::test]
async fn tokens_of_every_key_kind_pass_with_their_role() {
    let provider = Provider::start(all_keys()).await;
    let verifier = provider.verifier(|_| {});

    for (key, kid) in [
        (&*RSA, "rsa-1"),
        (&*P256, "ec-256"),
        (&*P384, "ec-384"),
        (&*ED, "ed-1"),
    ] {
        for role in ["admin", "viewer"] {
            let token = key.mint(kid, &claims(json!({ "menshen_role": role })));
            assert_eq!(
                verifier.verify(&token).await.unwrap(),
                principal("alice", Some(role)),
                "{kid} {role}"
            );
        }
    }
    for alg in ["RS384", "RS512", "PS256"] {
        let token = RSA.mint_with(
            alg,
            Some("rsa-1"),
            &claims(json!({"menshen_role": "viewer"})),
        );
        assert_eq!(
            verifier.verify(&token).await.unwrap(),
            principal("alice", Some("viewer")),
            "{alg}"
        );
    }

    // No role, or one menshen does not know: a valid token without a role.
    let token = RSA.mint("rsa-1", &claims(json!({})));
    assert_eq!(
        verifier.verify(&token).await.unwrap(),
        principal("alice", None)
    );
    let token = RSA.mint("rsa-1", &claims(json!({"menshen_role": "root"})));
    assert_eq!(verifier.verify(&token).await.unwrap().role, None);
    let token = RSA.mint("rsa-1", &claims(json!({"menshen_role": {"admin": true}})));
    assert_eq!(verifier.verify(&token).await.unwrap().role, None);

    // `aud` may be an array holding the audience among others.
    let token = RSA.mint(
        "rsa-1",
        &claims(json!({"aud": ["account", AUDIENCE], "menshen_role": "admin"})),
    );
    assert_eq!(
        verifier.verify(&token).await.unwrap().role.as_deref(),
        Some("admin")
    );

    // Everything came from one fetch.
    assert_eq!(provider.hits(), 1);
}

#[tokio::test]
async fn the_role_claim_may_be_a_dotted_path_and_an_array() {
    let provider = Provider::start(all_keys()).await;
    let verifier = provider.verifier(|s| s.role_claim = "realm_access.roles".into());
    let role = |roles: Value| {
        let token = RSA.mint(
            "rsa-1",
            &claims(json!({"realm_access": {"roles": roles}, "menshen_role": "admin"})),
        );
        let verifier = &verifier;
        async move { verifier.verify(&token).await.unwrap().role }
    };
    assert_eq!(
        role(json!(["offline_access", "viewer", "admin"])).await,
        Some("admin".into())
    );
    assert_eq!(
        role(json!(["offline_access", "viewer"])).await,
        Some("viewer".into())
    );
    assert_eq!(role(json!("viewer")).await, Some("viewer".into()));
    assert_eq!(role(json!(["offline_access", 7])).await, None);
    assert_eq!(role(json!([])).await, None);
    // The path ends early: no role (the top-level claim is not used).
    let token = RSA.mint(
        "rsa-1",
        &claims(json!({"realm_access": ["admin"], "menshen_role": "admin"})),
    );
    assert_eq!(verifier.verify(&token).await.unwrap().role, None);

    // A claim whose name has dots (namespaced claims) is found whole.
    let verifier = provider.verifier(|s| s.role_claim = "https://vpn.test/roles".into());
    let token = P256.mint(
        "ec-256",
        &claims(json!({"https://vpn.test/roles": ["viewer"]})),
    );
    assert_eq!(
        verifier.verify(&token).await.unwrap().role.as_deref(),
        Some("viewer")
    );
}

#[tokio::test]
async fn wrong_issuer_audience_and_times_are_refused() {
    let provider = Provider::start(all_keys()).await;
    let verifier = provider.verifier(|_| {});
    let refused = |extra: Value| {
        let token = RSA.mint("rsa-1", &claims(extra));
        let verifier = &verifier;
        async move { verifier.verify(&token).await.unwrap_err() }
    };

    for iss in [
        json!("https://evil.test/realms/leap"),
        json!(format!("{ISSUER}/")),
        json!("https://id.vpn.test/realms/LEAP"),
        json!([ISSUER]),
        Value::Null,
    ] {
        let err = refused(json!({ "iss": iss })).await;
        assert!(matches!(err, OidcError::Invalid(_)), "iss {iss}: {err}");
    }
    for aud in [
        json!("account"),
        json!(["account", "other"]),
        json!([]),
        Value::Null,
    ] {
        let err = refused(json!({ "aud": aud })).await;
        assert!(matches!(err, OidcError::Invalid(_)), "aud {aud}: {err}");
    }
    assert!(matches!(
        refused(json!({"exp": now() - 120})).await,
        OidcError::Expired
    ));
    assert!(matches!(
        refused(json!({"exp": Value::Null})).await,
        OidcError::Invalid(_)
    ));
    assert!(matches!(
        refused(json!({"nbf": now() + 600})).await,
        OidcError::Invalid(_)
    ));
    for sub in [Value::Null, json!(""), json!(42)] {
        let err = refused(json!({ "sub": sub })).await;
        assert!(matches!(err, OidcError::Invalid(_)), "sub {sub}: {err}");
    }

    // Within the leeway (60 s) is still fine.
    let token = RSA.mint(
        "rsa-1",
        &claims(json!({"exp": now() - 10, "nbf": now() + 10})),
    );
    assert!(verifier.verify(&token).await.is_ok());

    // Bad signatures: tampered claims, another key under a known id.
    let token = RSA.mint("rsa-1", &claims(json!({"menshen_role": "viewer"})));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64(claims(json!({"menshen_role": "admin"}))
        .to_string()
        .as_bytes());
    assert!(matches!(
        verifier.verify(&parts.join(".")).await,
        Err(OidcError::Invalid(_))
    ));
    let forged = RSA_OTHER.mint("rsa-1", &claims(json!({"menshen_role": "admin"})));
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(OidcError::Invalid(_))
    ));
    for garbage in ["", "not a token", "a.b.c", "..."] {
        assert!(matches!(
            verifier.verify(garbage).await,
            Err(OidcError::Invalid(_))
        ));
    }
    assert_eq!(provider.hits(), 1);
}

#[tokio::test]
async fn none_hmac_and_mismatched_algorithms_are_refused() {
    let secret = b"a shared secret of thirty-two bytes!";
    let mut keys = all_keys();
    keys.push(json!({"kty": "oct", "kid": "hmac", "k": b64(secret), "alg": "HS256"}));
    let provider = Provider::start(keys).await;
    let verifier = provider.verifier(|_| {});
    let body = claims(json!({"menshen_role": "admin"}));

    // alg: none, with and without a signature.
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
        b64(body.to_string().as_bytes())
    );
    for token in [format!("{input}."), format!("{input}.c2lnbmF0dXJl")] {
        assert!(matches!(
            verifier.verify(&token).await,
            Err(OidcError::Invalid(_))
        ));
    }

    // HS256 signed with what is public: the JWK's modulus, the JWK itself,
    // the RSA public key's DER; and with the `oct` key the JWKS publishes.
    let TestKey::Rsa(rsa) = &*RSA else {
        unreachable!()
    };
    let jwk = RSA.jwk("rsa-1");
    let modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().unwrap())
        .unwrap();
    for (kid, secret) in [
        ("rsa-1", modulus),
        ("rsa-1", jwk.to_string().into_bytes()),
        ("rsa-1", rsa.public_key().as_ref().to_vec()),
        ("hmac", secret.to_vec()),
    ] {
        for alg in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let mut header = jsonwebtoken::Header::new(alg);
            header.kid = Some(kid.into());
            let token = jsonwebtoken::encode(
                &header,
                &body,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert!(matches!(
                verifier.verify(&token).await,
                Err(OidcError::Invalid(_))
            ));
        }
    }

    // An algorithm the named key is not for.
    let token = P256.mint_with("ES256", Some("rsa-1"), &body);
    assert!(matches!(
        verifier.verify(&token).await,
        Err(OidcError::Invalid(_))
    ));
    let token = RSA.mint_with("RS256", Some("ec-256"), &body);
    assert!(matches!(
        verifier.verify(&token).await,
        Err(OidcError::Invalid(_))
    ));
    // No kid at all.
    let token = RSA.mint_with("RS256", None, &body);
    assert!(matches!(
        verifier.verify(&token).await,
        Err(OidcError::Invalid(_))
    ));
    assert_eq!(provider.hits(), 1);
}

#[tokio::test]
async fn jwks_entries_that_are_not_signing_keys_are_ignored() {
    let provider = Provider::start(vec![
        json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA.jwk("x")["n"], "e": "AQAB"}),
        json!({"kty": "RSA", "n": RSA.jwk("x")["n"], "e": "AQAB"}),
        json!({"kty": "RSA", "kid": "ps-only", "alg": "PS256", "n": RSA.jwk("x")["n"], "e": "AQAB"}),
        json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}),
        json!({"kty": "weird", "kid": "weird"}),
        json!("not even an object"),
        P256.jwk("ec-256"),
    ])
    .await;
    let verifier = provider.verifier(|_| {});
    let body = claims(json!({"menshen_role": "viewer"}));
    assert!(verifier.verify(&P256.mint("ec-256", &body)).await.is_ok());
    assert!(verifier.verify(&RSA.mint("enc", &body)).await.is_err());
    // A key that declares its algorithm is used with that one only.
    assert!(
        verifier
            .verify(&RSA.mint_with("PS256", Some("ps-only"), &body))
            .await
            .is_ok()
    );
    assert!(
        verifier
            .verify(&RSA.mint_with("RS256", Some("ps-only"), &body))
            .await
            .is_err()
    );
}
